import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.bag_of_ngrams import BagOfNgrams

VOCAB = 50
BUCKETS = 7
IDS = np.array(
    [
        [3, 1, 4, 1, 5, 0],  # Trailing padding.
        [2, 0, 7, 9, 0, 0],  # Padding in the middle breaks the bigrams.
        [11, 0, 0, 0, 0, 0],  # One token, no bigram.
        [0, 0, 0, 0, 0, 0],  # Padding only.
    ],
    dtype="int32",
)


def _reference(table, ids, vocabulary_size, buckets, scale):
    """Per-text loop over the n-grams, with the bigram hash worked out."""
    out = []
    for row in ids:
        rows = [table[t] for t in row if t]
        if buckets:
            for a, b in zip(row[:-1], row[1:], strict=True):
                if a and b:
                    h = ((a % 46337) * 46337 + b % 46337) % buckets
                    rows.append(table[vocabulary_size + h])
        if rows:
            out.append(scale * np.sum(rows, axis=0) / np.sqrt(len(rows)))
        else:
            out.append(np.zeros(table.shape[1], "float32"))
    return np.array(out)


@pytest.mark.parametrize("buckets", [0, BUCKETS])
def test_equals_the_per_text_reference(buckets):
    layer = BagOfNgrams(VOCAB, 3, ngram_buckets=buckets, scale=2.5)
    layer.build(IDS.shape)
    _testing.randomize(layer)
    table = layer.get_weights()[0]
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(IDS)),
        _reference(table, IDS, VOCAB, buckets, 2.5),
        rtol=1e-5,
        atol=1e-6,
    )


def test_hand_worked_value():
    # Unigrams 3, 4 and the bigram (3, 4): rows 3, 4 and 50 + (3*46337 + 4)
    # mod 7 = 50 + 2; with row i holding [i], the sum is 3 + 4 + 52 = 59
    # over sqrt(3) n-grams.
    layer = BagOfNgrams(VOCAB, 1, ngram_buckets=BUCKETS)
    layer.build((1, 3))
    layer.set_weights([np.arange(VOCAB + BUCKETS, dtype="float32")[:, None]])
    assert (3 * 46337 + 4) % 7 == 2
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(np.array([[3, 4, 0]]))),
        [[59 / np.sqrt(3)]],
        rtol=1e-6,
    )


def test_starts_at_zero_and_padding_gives_zero():
    layer = BagOfNgrams(VOCAB, 4, ngram_buckets=BUCKETS)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(IDS)), np.zeros((4, 4))
    )
    _testing.randomize(layer)
    out = ops.convert_to_numpy(layer(IDS))
    np.testing.assert_array_equal(out[-1], np.zeros(4))
    assert np.all(np.isfinite(out))


def test_scale_speeds_up_learning_under_adam():
    """Same data and steps: a larger scale moves the output further."""
    x = np.array([[1, 2, 3], [4, 5, 0]])
    y = np.array([[1.0], [-1.0]])

    def moved(scale):
        inputs = keras.Input((3,), dtype="int32")
        model = keras.Model(inputs, BagOfNgrams(10, 1, scale=scale)(inputs))
        model.compile(keras.optimizers.Adam(0.01), "mse")
        model.fit(x, y, epochs=5, verbose=0)
        return np.abs(ops.convert_to_numpy(model(x))).mean()

    assert moved(10.0) > 5 * moved(1.0)


def test_saves_and_loads(tmp_path):
    def factory():
        return BagOfNgrams(
            VOCAB,
            3,
            ngram_buckets=BUCKETS,
            scale=3.0,
            kernel_regularizer="l2",
            name="wide",
        )

    _testing.assert_saves_and_loads(factory, IDS, tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary_size": 0}, "vocabulary_size=0"),
        ({"units": -1}, "units=-1"),
        ({"ngram_buckets": -2}, "ngram_buckets=-2"),
        ({"scale": 0.0}, "scale=0.0"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BagOfNgrams(**{"vocabulary_size": 5, "units": 2, **kwargs})
