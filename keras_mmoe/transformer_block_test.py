import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.transformer_block import TransformerBlock

WIDTH = 4
X = np.random.default_rng(1).normal(size=(3, 5, WIDTH)).astype("float32")
# Trailing padding, padding in the middle, padding only.
MASK = np.array(
    [
        [1, 1, 1, 0, 0],
        [1, 0, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ],
    dtype=bool,
)


def _block(**kwargs):
    layer = TransformerBlock(
        **{"num_heads": 2, "ff_dim": 5, "name": "block", **kwargs}
    )
    layer.build(X.shape)
    _testing.randomize(layer)
    return layer


def test_equals_a_numpy_reference_on_each_sequence_tokens():
    layer = _block()
    out = ops.convert_to_numpy(layer(X, padding_mask=MASK))
    w = _testing.weights_of(layer)
    for row, mask in zip(range(2), MASK[:2], strict=True):
        positions = np.flatnonzero(mask)
        expected = _testing.transformer_block(w, X[row, positions], 2)
        np.testing.assert_allclose(
            out[row, positions], expected, rtol=1e-4, atol=1e-5
        )


def test_padding_keys_are_ignored():
    layer = _block()
    out = ops.convert_to_numpy(layer(X, padding_mask=MASK))
    changed = X.copy()
    changed[~MASK] = 100.0  # Values at padding, never read as keys.
    again = ops.convert_to_numpy(layer(changed, padding_mask=MASK))
    np.testing.assert_allclose(again[MASK], out[MASK], atol=1e-5)


def test_without_a_mask_every_position_is_attended():
    layer = _block()
    w = _testing.weights_of(layer)
    expected = _testing.transformer_block(w, X[0], 2)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(X))[0], expected, rtol=1e-4, atol=1e-5
    )
    everywhere = np.ones(MASK.shape, bool)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(X, padding_mask=everywhere)),
        ops.convert_to_numpy(layer(X)),
        atol=1e-6,
    )


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_padding_only_sequence_is_finite(dropout):
    layer = _block(dropout=dropout, seed=0)
    for training in (False, True):
        out = ops.convert_to_numpy(
            layer(X, padding_mask=MASK, training=training)
        )
        assert np.isfinite(out).all()
    # Padding only attends everywhere, as if there were no mask.
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(X, padding_mask=MASK))[2],
        ops.convert_to_numpy(layer(X))[2],
        atol=1e-6,
    )


def test_each_sub_layer_gets_its_own_initializer_copy():
    # A shared seeded initializer would give the two equal-shaped kernels
    # equal values.
    layer = TransformerBlock(
        2, 4, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
    )
    layer.build((None, 3, 4))
    hidden = ops.convert_to_numpy(layer.feedforward_hidden.kernel)  # (4, 4)
    output = ops.convert_to_numpy(layer.feedforward_output.kernel)  # (4, 4)
    assert not np.allclose(hidden, output)


def test_output_shape():
    layer = TransformerBlock(2, 8)
    assert layer.compute_output_shape((None, 6, 4)) == (None, 6, 4)
    inputs = keras.Input((None, 4))
    assert layer(inputs).shape == (None, None, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_heads": 0, "ff_dim": 4}, "num_heads=0"),
        ({"num_heads": 2, "ff_dim": -1}, "ff_dim=-1"),
        ({"num_heads": 2, "ff_dim": 4, "dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerBlock(**kwargs)


def test_invalid_input_shapes_are_refused():
    with pytest.raises(ValueError, match="num_heads=3, width=4"):
        TransformerBlock(3, 4).build((None, 5, 4))
    with pytest.raises(ValueError, match=r"input_shape=\(None, 4\)"):
        TransformerBlock(2, 4).build((None, 4))


def test_serialization(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: TransformerBlock(
            2,
            5,
            dropout=0.1,
            activation="gelu",
            kernel_initializer=keras.initializers.HeNormal(seed=2),
            seed=1,
        ),
        X,
        tmp_path,
    )


def test_fit_learns_a_sum_over_the_sequence():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 8)).astype("float32")
    y = x[:, :, :1].sum(axis=1)  # Needs every position: attention mixes.
    inputs = keras.Input((6, 8))
    h = TransformerBlock(2, 16)(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] / 3, losses
