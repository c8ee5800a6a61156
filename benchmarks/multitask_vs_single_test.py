import numpy as np

from benchmarks import multitask_vs_single
from benchmarks.cost_config import QUICK


def test_examples_per_second_counts_each_example_once():
    # One 3-task model: 1000 examples in 2 s.
    assert multitask_vs_single.examples_per_second(1000, [2.0]) == 500
    # Three models, one after another, each on the same 1000 examples.
    assert multitask_vs_single.examples_per_second(1000, [1.0, 2.0, 2.0]) == 200


def test_synthetic_text_is_padded_in_range_and_repeatable():
    ids, labels = multitask_vs_single.synthetic_text(QUICK)
    length = QUICK.sequence_length
    assert ids.shape == (QUICK.text_examples, length)
    assert ids.min() >= 0 and ids.max() < QUICK.vocabulary_size
    lengths = (ids > 0).sum(axis=1)
    assert lengths.min() >= length // 8 and lengths.max() <= length
    # Padding only at the end.
    for row, n in zip(ids, lengths, strict=True):
        assert (row[:n] > 0).all() and (row[n:] == 0).all()
    for name, classes in QUICK.text_tasks:
        assert labels[name].min() >= 0 and labels[name].max() < classes
    again, _ = multitask_vs_single.synthetic_text(QUICK)
    np.testing.assert_array_equal(again, ids)
