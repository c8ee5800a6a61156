import numpy as np
import pytest

from benchmarks import reviews_data


def test_hide_labels_exact_keeps_a_nested_share_of_the_labelled_rows():
    labels = np.arange(1000) % 4
    labels[::10] = -1  # 900 labelled.
    previous = np.zeros(len(labels), bool)
    for fraction in (0.01, 0.02, 0.05, 0.1, 0.25, 1.0):
        out = reviews_data.hide_labels(
            labels, fraction, seed=(3, 1), exact=True
        )
        kept = out >= 0
        assert kept.sum() == round(fraction * 900)
        assert (kept >= previous).all()
        np.testing.assert_array_equal(out[kept], labels[kept])
        previous = kept
    assert (labels[::10] == -1).all() and (labels[1::10] >= 0).all()
    other = reviews_data.hide_labels(labels, 0.1, seed=(4, 1), exact=True)
    assert (
        (other >= 0)
        != (reviews_data.hide_labels(labels, 0.1, seed=(3, 1), exact=True) >= 0)
    ).any()


def test_hide_labels_by_default_keeps_each_row_by_chance_nested_too():
    labels = np.arange(20_000) % 5
    small = reviews_data.hide_labels(labels, 0.05, seed=0) >= 0
    large = reviews_data.hide_labels(labels, 0.2, seed=0) >= 0
    assert small.mean() == pytest.approx(0.05, abs=0.005)
    assert (large >= small).all()
