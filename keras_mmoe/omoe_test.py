import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.omoe import OMoE

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


def test_one_shared_gate_gives_every_task_the_same_mixture():
    layer = OMoE(3, num_experts=3, expert_units=[5, 4])
    layer.build(X.shape)
    _testing.randomize(layer)
    w = _testing.weights_of(layer)
    assert sorted(name for name in w if name.startswith("gate")) == [
        "gate_0/bias",
        "gate_0/kernel",
    ]
    expected = _testing.mix(
        _testing.gate(w, X, "gate_0/"), _testing.experts(w, X)
    )
    outputs = layer(X)
    assert len(outputs) == 3
    for out in outputs:
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), expected, rtol=1e-5, atol=1e-5
        )


def test_arguments_after_num_tasks_are_keyword_only():
    # Only `num_tasks` is positional: more positional numbers fail at once
    # instead of binding to other arguments.
    with pytest.raises(TypeError, match="positional argument"):
        OMoE(4, 8, 2)


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: OMoE(2, num_experts=3, expert_units=4), X, tmp_path
    )
