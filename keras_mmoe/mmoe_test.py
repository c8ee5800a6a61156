import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.mmoe import MMoE

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


@pytest.mark.parametrize("units", [4, [8, 3]])
def test_outputs_equal_numpy_equations(units):
    layer = MMoE(2, num_experts=3, expert_units=units)
    layer.build(X.shape)
    _testing.randomize(layer)
    expected = _testing.mmoe(_testing.weights_of(layer), X, num_tasks=2)
    for out, ref in zip(layer(X), expected, strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), ref, rtol=1e-5, atol=1e-5
        )


def test_hand_set_weights_give_hand_computed_outputs():
    # One input feature = 1. Expert e computes relu(e + 1); gate 0 prefers
    # expert 1 (logits [0, ln 3]), gate 1 is uniform.
    layer = MMoE(2, num_experts=2, expert_units=1)
    layer.build((None, 1))
    (kernel,) = layer.experts.block_kernels  # (1, in, experts, units)
    kernel.assign(np.array([[[[1.0], [2.0]]]]))
    layer.experts.block_biases[0].assign(np.zeros((2, 1)))
    layer.gates[0].kernel.assign(np.array([[0.0, np.log(3.0)]]))
    layer.gates[0].bias.assign(np.zeros(2))
    layer.gates[1].kernel.assign(np.zeros((1, 2)))
    layer.gates[1].bias.assign(np.zeros(2))
    out0, out1 = layer(np.ones((1, 1), "float32"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(out0), [[0.25 * 1 + 0.75 * 2]]
    )
    np.testing.assert_allclose(ops.convert_to_numpy(out1), [[1.5]])


def test_return_gate_weights():
    layer = MMoE(3, num_experts=4, expert_units=8, return_gate_weights=True)
    outputs, gates = layer(X)
    assert [tuple(o.shape) for o in outputs] == [(9, 8)] * 3
    for g in gates:
        np.testing.assert_allclose(
            ops.convert_to_numpy(g).sum(axis=1), 1.0, rtol=1e-6
        )
    assert layer.compute_output_shape((None, 6)) == (
        [(None, 8)] * 3,
        [(None, 4)] * 3,
    )


@pytest.mark.parametrize("num_tasks", [1, 3])
@pytest.mark.parametrize("use_bias", [True, False])
def test_one_projection_for_all_gates_equals_each_gate_alone(
    num_tasks, use_bias
):
    """MMoE projects the input for every gate in one matmul and adds their
    biases side by side; each gate's weights must equal the gate called on
    the input by itself, with a temperature, with and without the bias."""
    layer = MMoE(
        num_tasks,
        num_experts=4,
        expert_units=8,
        gate_temperature=0.5,
        return_gate_weights=True,
        use_bias=use_bias,
    )
    layer.build(X.shape)
    _testing.randomize(layer)
    _, gates = layer(X)
    assert len(gates) == num_tasks
    for gate, weights in zip(layer.gates, gates, strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(weights),
            ops.convert_to_numpy(gate(X)),
            rtol=1e-5,
            atol=1e-6,
        )
    # The gates differ, so a mixed-up slice would fail above.
    if num_tasks > 1:
        assert (
            np.abs(
                ops.convert_to_numpy(gates[0]) - ops.convert_to_numpy(gates[1])
            ).max()
            > 0.05
        )


def test_task_gates_start_different():
    layer = MMoE(2, num_experts=4, expert_units=8)
    layer.build((None, 6))
    assert not np.allclose(layer.gates[0].kernel, layer.gates[1].kernel)


def test_weight_count_does_not_grow_with_experts():
    sizes = set()
    for num_experts in (2, 16):
        layer = MMoE(3, num_experts=num_experts, expert_units=[8, 8])
        layer.build((None, 6))
        sizes.add(len(layer.weights))
    assert sizes == {4 + 2 * 3}
    # Wide experts: a kernel and a bias per block, at most 8 blocks.
    for num_experts in (16, 64):
        layer = MMoE(3, num_experts=num_experts, expert_units=[64, 8])
        layer.build((None, 1024))
        assert len(layer.weights) == 2 * 8 + 2 + 2 * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_experts": -1, "expert_units": 4, "num_tasks": 2}, "-1"),
        ({"num_experts": 2, "expert_units": 0, "num_tasks": 2}, "units=0"),
        ({"num_experts": 2, "expert_units": 4, "num_tasks": 0}, "tasks=0"),
        (
            {
                "num_experts": 2,
                "expert_units": 4,
                "num_tasks": 2,
                "gate_dropout": -0.1,
            },
            "-0.1",
        ),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MMoE(**kwargs)


def test_arguments_after_num_tasks_are_keyword_only():
    # Only `num_tasks` is positional: more positional numbers fail at once
    # instead of binding to other arguments.
    with pytest.raises(TypeError, match="positional argument"):
        MMoE(4, 8, 2)


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: MMoE(
            2, num_experts=3, expert_units=[8, 4], gate_temperature=0.7
        ),
        X,
        tmp_path,
    )


def test_fit_reduces_loss_on_two_synthetic_tasks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y1 = np.sin(x[:, :4].sum(axis=1, keepdims=True))
    y2 = np.cos(x[:, 4:].sum(axis=1, keepdims=True))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    t1, t2 = MMoE(2, num_experts=4, expert_units=32)(inputs)
    model = keras.Model(
        inputs,
        {
            "a": keras.layers.Dense(1, name="a")(t1),
            "b": keras.layers.Dense(1, name="b")(t2),
        },
    )
    model.compile(keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(
        x, {"a": y1, "b": y2}, epochs=15, batch_size=128, verbose=0
    )
    losses = history.history["loss"]
    assert losses[-1] < losses[0] / 3, losses


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow graph ops"
)
@pytest.mark.parametrize(
    "num_experts, units, in_dim", [(4, 8, 6), (8, 64, 256)]
)
def test_every_matmul_feeds_a_bias_add_tensorflow_can_fuse(
    num_experts, units, in_dim
):
    """TensorFlow fuses `MatMul` + `BiasAdd` (+ `Relu`) into one kernel, 3x
    faster than a plain matmul at batch 1; an `AddV2` (what `x + bias`
    gives) is not fused. The experts' and the gates' matmuls must both end
    in a `BiasAdd`."""
    import tensorflow as tf

    layer = MMoE(3, num_experts=num_experts, expert_units=units)
    layer.build((None, in_dim))
    graph = (
        tf.function(lambda x: layer(x))
        .get_concrete_function(tf.TensorSpec((None, in_dim)))
        .graph
    )
    matmuls = [op for op in graph.get_operations() if op.type == "MatMul"]
    # The experts' first layer (one matmul per column block) and all gates.
    assert len(matmuls) == len(layer.experts.block_kernels) + 1
    for op in matmuls:
        consumers = {c.type for c in op.outputs[0].consumers()}
        assert consumers == {"BiasAdd"}, (op.name, consumers)


def test_gate_dropout_draws_its_own_mask_for_every_gate():
    """The gates are finished together (one softmax over all of them); each
    gate and row must still drop its own experts."""
    layer = MMoE(
        3,
        num_experts=6,
        expert_units=4,
        gate_dropout=0.5,
        return_gate_weights=True,
        seed=1,
    )
    layer.build(X.shape)
    for gate in layer.gates[1:]:  # Identical gates: only the masks differ.
        gate.set_weights(layer.gates[0].get_weights())
    _, gates = layer(X, training=True)
    dropped = [
        ops.convert_to_numpy(g) == 0 for g in gates
    ]  # (batch, experts) each
    for d in dropped:
        assert 0.2 < d.mean() < 0.8  # About half the experts dropped...
        np.testing.assert_allclose(d.sum(axis=1) < 6, True)  # ...every row.
    assert (dropped[0] != dropped[1]).any() and (dropped[1] != dropped[2]).any()
    for g in gates:  # Renormalized over the kept experts.
        np.testing.assert_allclose(
            ops.convert_to_numpy(g).sum(axis=1), 1.0, rtol=1e-5
        )
