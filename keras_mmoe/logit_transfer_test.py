import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.logit_transfer import LogitTransfer

RNG = np.random.default_rng(0)
RATING = RNG.normal(size=(4, 5)).astype("float32")
OTHER = RNG.normal(size=(4, 3)).astype("float32")


def test_equals_concatenated_sources_times_kernel():
    layer = LogitTransfer(2)
    layer.build([RATING.shape, OTHER.shape])
    assert layer.kernel.shape == (8, 2)
    _testing.randomize(layer)
    (kernel,) = layer.get_weights()
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer([RATING, OTHER])),
        RATING @ kernel[:5] + OTHER @ kernel[5:],
        rtol=1e-5,
        atol=1e-6,
    )


def test_starts_at_zero():
    out = ops.convert_to_numpy(LogitTransfer(1)([RATING]))
    np.testing.assert_array_equal(out, np.zeros((4, 1)))


def _source_and_reader(stop_gradient):
    """A source head fit by nothing but the reader's loss."""
    inputs = keras.Input((3,))
    source = keras.layers.Dense(5, name="source")(inputs)
    reader = LogitTransfer(1, stop_gradient=stop_gradient)([source])
    model = keras.Model(inputs, reader)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


# With the gradient stopped, Keras warns that the source gets none: the point.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_stop_gradient_keeps_the_reader_from_training_the_source(
    stop_gradient,
):
    x = RNG.normal(size=(32, 3)).astype("float32")
    y = (x[:, :1] * 3.0).astype("float32")
    model = _source_and_reader(stop_gradient)
    before = model.get_layer("source").get_weights()
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)
    after = model.get_layer("source").get_weights()
    moved = max(np.abs(a - b).max() for a, b in zip(after, before, strict=True))
    reader = model.layers[-1].get_weights()[0]
    assert np.abs(reader).max() > 0.1  # The reader itself learned.
    if stop_gradient:
        assert moved == 0.0
    else:
        assert moved > 0.1


def test_saves_and_loads(tmp_path):
    a, b = keras.Input((5,)), keras.Input((3,))
    layer = LogitTransfer(2, stop_gradient=False, name="reads")
    model = keras.Model([a, b], layer([a, b]))
    _testing.randomize(layer)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert restored.get_config() == layer.get_config()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded([RATING, OTHER])),
        ops.convert_to_numpy(model([RATING, OTHER])),
        rtol=1e-6,
    )
    assert loaded.get_layer("reads").stop_gradient is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 0}, "units=0"),
        ({"stop_gradient": "yes"}, "stop_gradient='yes'"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogitTransfer(**{"units": 1, **kwargs})


@pytest.mark.parametrize(
    "shape", [(4, 5), [(4, 5, 2)], [], [(4, None)]], ids=str
)
def test_bad_inputs_name_the_shape(shape):
    with pytest.raises(ValueError, match="LogitTransfer"):
        LogitTransfer(1).build(shape)
