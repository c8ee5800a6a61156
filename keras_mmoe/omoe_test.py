import numpy as np

from keras_mmoe import _testing
from keras_mmoe.omoe import OMoE

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


def test_one_shared_gate_gives_every_task_the_same_mixture():
    layer = OMoE(num_experts=3, expert_units=[5, 4], num_tasks=3)
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
            np.asarray(out), expected, rtol=1e-5, atol=1e-5
        )


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(lambda: OMoE(3, 4, 2), X, tmp_path)
