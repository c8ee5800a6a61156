import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.shared_bottom import SharedBottom

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


def test_outputs_equal_numpy_mlp():
    layer = SharedBottom(2, units=[8, 3])
    layer.build(X.shape)
    _testing.randomize(layer)
    w = _testing.weights_of(layer)
    h = _testing.relu(X @ w["dense_0/kernel"] + w["dense_0/bias"])
    h = _testing.relu(h @ w["dense_1/kernel"] + w["dense_1/bias"])
    outputs = layer(X)
    assert len(outputs) == 2
    for out in outputs:
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), h, rtol=1e-5, atol=1e-5
        )


def test_layers_start_from_different_draws():
    layer = SharedBottom(2, units=[8, 8])
    layer.build((None, 8))
    a, b = (ops.convert_to_numpy(d.kernel) for d in layer.dense_layers)
    assert not np.allclose(a, b)


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="units='wide'"):
        SharedBottom(2, units="wide")
    with pytest.raises(ValueError, match="dropout=2"):
        SharedBottom(2, units=4, dropout=2)


def test_arguments_after_num_tasks_are_keyword_only():
    # Only `num_tasks` is positional: more positional numbers fail at once
    # instead of binding to other arguments.
    with pytest.raises(TypeError, match="positional argument"):
        SharedBottom([8, 4], 2)


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: SharedBottom(3, units=[8, 4], dropout=0.1), X, tmp_path
    )
