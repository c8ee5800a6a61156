import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import deepctr_speed
from benchmarks.cost_config import QUICK, Config


def test_summed_cross_entropy_by_hand():
    half = tf.fill((4, 1), 0.5)
    labels = [tf.ones((4, 1)), tf.zeros((4, 1))]
    loss = deepctr_speed.summed_cross_entropy([half, half], labels)
    assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-5)


def _tiny_model():
    inputs = keras.Input((3,))
    outputs = [
        keras.layers.Dense(1, activation="sigmoid")(inputs) for _ in range(2)
    ]
    return keras.Model(inputs, outputs)


def _tiny_batch():
    x = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    return x, [tf.ones((4, 1)), tf.zeros((4, 1))]


def test_graph_steps_is_one_sgd_step_of_the_summed_loss():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    x, labels = _tiny_batch()
    with tf.GradientTape() as tape:
        loss = deepctr_speed.summed_cross_entropy(model(x), labels)
    grads = tape.gradient(loss, model.trainable_variables)
    expected = [
        v.numpy() - 0.1 * g.numpy()
        for v, g in zip(model.trainable_variables, grads, strict=True)
    ]
    seconds = deepctr_speed.graph_steps(model, x, labels, learning_rate=0.1)(1)
    assert seconds > 0
    for v, e in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_sgd_updates_a_keras_variable_with_one_op_as_a_tf_variable():
    weight = keras.Variable(np.ones(3, "float32"))
    plain = tf.Variable(np.ones(3, "float32"))

    @tf.function
    def update():
        for variable in (weight, plain):
            deepctr_speed.tf_variable(variable).assign_sub(tf.ones(3))
        return 0

    ops = [
        op.type for op in update.get_concrete_function().graph.get_operations()
    ]
    assert ops.count("AssignSubVariableOp") == 2
    assert "AssignVariableOp" not in ops
    update()
    np.testing.assert_array_equal(weight.numpy(), np.zeros(3))
    np.testing.assert_array_equal(plain.numpy(), np.zeros(3))


def test_fit_steps_times_the_steps_after_the_first():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    fn = deepctr_speed.fit_steps(model, keras.callbacks.Callback, x, labels)
    assert fn(3) > 0
    # One more batch than timed: the first one's end starts the clock.
    assert int(model.optimizer.iterations) == 4


def test_train_on_batch_steps_runs_one_call_per_step():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    assert deepctr_speed.train_on_batch_steps(model, x, labels)(3) > 0
    assert int(model.optimizer.iterations) == 3


def test_keras_mmoe_model_parameters_by_hand():
    model = deepctr_speed.keras_mmoe_model(Config())
    experts = 8 * (256 * 64 + 64)
    gates = 3 * (256 * 8 + 8)  # DeepCTR's gates have no bias: 3 * 8 fewer.
    towers = 3 * (64 * 64 + 64 + 64 + 1)
    assert model.count_params() == experts + gates + towers


def test_skipped_when_not_installed(monkeypatch, capsys):
    monkeypatch.setattr(
        deepctr_speed, "BENCH_PACKAGES", ("deepctr", "no_such_package_xyz")
    )
    result = deepctr_speed.run(QUICK)
    assert "no_such_package_xyz" in result["skipped"]
    assert "skipped" in capsys.readouterr().out


def test_train_matmul_flops_by_hand():
    config = Config(
        input_dim=4, num_experts=2, expert_units=3, num_tasks=2, tower_units=5
    )
    # Per row, forward: experts 2*4*6, gates 2*4*2*2, mix 2*2*2*3, towers
    # 2*(2*3*5 + 2*5). Experts and gates read the input: 2x; the rest 3x.
    per_row = 2 * (48 + 32) + 3 * (24 + 80)
    assert deepctr_speed.train_matmul_flops(config, 10) == 10 * per_row


def _rows(batch, ms):
    return [
        {"mode": mode, "batch": batch, "deepctr_ms": d, "keras_mmoe_ms": k}
        for mode, (d, k) in ms.items()
    ]


def test_breakdown_splits_fit_and_works_out_the_target():
    config = Config(deepctr_batches=(32, 64), deepctr_fit_targets=((32, 2.0),))
    rows = _rows(
        32,
        {
            "forward": (1.0, 0.5),
            "graph": (3.0, 2.0),
            "adam": (0.5, 0.4),
            "graph_adam": (3.5, 2.5),
            "fit": (8.0, 6.0),
            "train_on_batch": (9.0, 9.0),
        },
    ) + _rows(64, {"forward": (1.0, 1.0)})  # 64 lacks modes: left out.
    out = deepctr_speed.breakdown(rows, config, peak_gflops=100.0)
    assert list(out) == ["32"]
    entry = out["32"]
    assert entry["deepctr"] == {
        "fit": 8.0,
        "forward": 1.0,
        "backward": 2.0,
        "adam": 0.5,
        "fit_work": 4.5,
    }
    assert entry["keras_mmoe"]["fit_work"] == pytest.approx(3.5)
    flops = deepctr_speed.train_matmul_flops(config, 32)
    assert entry["forward_backward_pct_peak"] == pytest.approx(
        100 * flops / 2e-3 / 1e9 / 100.0
    )
    # 2x DeepCTR's 8 ms: 4 ms, minus fit_work 3.5 and Adam 0.4 = 0.1 ms.
    target = entry["target"]
    assert target["fit_ms_needed"] == pytest.approx(4.0)
    assert target["forward_backward_ms_needed"] == pytest.approx(0.1)
    assert target["pct_peak_needed"] == pytest.approx(
        100 * flops / 0.1e-3 / 1e9 / 100.0
    )


def test_breakdown_says_when_fit_work_alone_exceeds_the_target():
    config = Config(deepctr_batches=(32,), deepctr_fit_targets=((32, 4.0),))
    rows = _rows(
        32,
        {
            mode: (8.0 if mode == "fit" else 1.0, 6.0 if mode == "fit" else 1.0)
            for mode in deepctr_speed.BREAKDOWN_MODES
        },
    )
    target = deepctr_speed.breakdown(rows, config, 100.0)["32"]["target"]
    assert target["forward_backward_ms_needed"] < 0
    assert target["pct_peak_needed"] is None


def test_forward_and_adam_steps_run_their_steps():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    x, _ = _tiny_batch()
    assert deepctr_speed.forward_steps(model, x)(2) > 0
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    assert deepctr_speed.adam_steps(model, optimizer)(3) > 0
    assert int(optimizer.iterations) == 3
    for v, b in zip(model.trainable_variables, before, strict=True):
        assert not np.allclose(v.numpy(), b)


def test_fit_steps_runs_whole_executions_of_steps_per_execution():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy", steps_per_execution=2)
    x, labels = _tiny_batch()
    fn = deepctr_speed.fit_steps(
        model, keras.callbacks.Callback, x, labels, steps_per_execution=2
    )
    assert fn(3) > 0
    # 3 steps round up to 2 executions of 2, plus the untimed first one.
    assert int(model.optimizer.iterations) == 6
