import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe.logit_blend import LogitBlend

RNG = np.random.default_rng(0)
DEEP = RNG.normal(size=(4, 3)).astype("float32")
LINEAR = RNG.normal(size=(4, 3)).astype("float32")


def test_defaults_give_the_first_input_alone():
    np.testing.assert_allclose(
        ops.convert_to_numpy(LogitBlend()([DEEP, LINEAR])), DEEP
    )


def test_set_blend_weighs_both_inputs():
    layer = LogitBlend()
    layer([DEEP, LINEAR])
    layer.set_blend(0.3, 0.7)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer([DEEP, LINEAR])),
        0.3 * DEEP + 0.7 * LINEAR,
        rtol=1e-6,
    )


def test_is_not_trained():
    deep = keras.Input((3,))
    linear = keras.Input((3,))
    layer = LogitBlend(0.5, 0.5)
    model = keras.Model([deep, linear], layer([deep, linear]))
    assert not model.trainable_weights
    model.compile("adam", "mse")
    model.fit([DEEP, LINEAR], np.zeros((4, 3)), epochs=2, verbose=0)
    np.testing.assert_array_equal(layer.blend.numpy(), [0.5, 0.5])


def test_saves_and_loads_the_chosen_weights(tmp_path):
    deep = keras.Input((3,))
    linear = keras.Input((3,))
    layer = LogitBlend(name="blend")
    model = keras.Model([deep, linear], layer([deep, linear]))
    layer.set_blend(0.2, 0.8)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded([DEEP, LINEAR])),
        0.2 * DEEP + 0.8 * LINEAR,
        rtol=1e-6,
    )
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"deep_weight": -1.0}, "deep_weight=-1.0"),
        ({"linear_weight": "a"}, "linear_weight='a'"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogitBlend(**kwargs)
    layer = LogitBlend()
    layer([DEEP, LINEAR])
    with pytest.raises(ValueError, match=message):
        layer.set_blend(**{"deep_weight": 1.0, "linear_weight": 0.0, **kwargs})
