import json

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import layer_speed, testing
from keras_mmoe import MMoE

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


def _pair(num_experts, units, num_tasks):
    fused = MMoE(num_tasks, num_experts=num_experts, expert_units=units)
    fused.build(X.shape)
    testing.randomize(fused)
    loop = layer_speed.LoopMMoE(
        num_tasks, num_experts=num_experts, expert_units=units
    )
    loop.build(X.shape)
    loop.copy_weights_from(fused)
    return fused, loop


@pytest.mark.parametrize("units", [4, [8, 3]])
def test_loop_reference_equals_fused_layer(units):
    # The fused layer is checked against the paper's equations in numpy
    # (keras_mmoe/mmoe_test.py), so the loop is too when the two agree.
    fused, loop = _pair(num_experts=3, units=units, num_tasks=2)
    for f, lp in zip(fused(X), loop(X), strict=True):
        np.testing.assert_allclose(np.asarray(lp), np.asarray(f), atol=1e-5)


def test_loop_reference_equals_fused_layer_in_column_blocks():
    # The benchmark's 8 experts of 64 on 256 inputs: 4 blocks of 2 experts.
    x = np.random.default_rng(1).normal(size=(4, 256)).astype("float32")
    fused, loop = layer_speed.make_layers(8, 64, 3, 256)
    assert len(fused.experts.block_kernels) == 4
    for f, lp in zip(fused(x), loop(x), strict=True):
        np.testing.assert_allclose(np.asarray(lp), np.asarray(f), atol=1e-5)


def test_loop_reference_has_one_weight_set_per_expert_and_gate():
    _, loop = _pair(num_experts=3, units=[8, 3], num_tasks=2)
    # 3 experts x 2 Dense (kernel, bias) + 2 gates (kernel, bias).
    assert len(loop.trainable_weights) == 3 * 2 * 2 + 2 * 2


def test_timed_train_steps_do_the_same_math():
    # One step of each timed function from equal weights: equal losses and,
    # after the Adam update, still equal outputs.
    fused, loop = _pair(num_experts=4, units=8, num_tasks=3)
    x = tf.constant(X)
    targets = [tf.ones((5, 8)) * k for k in range(3)]
    losses = [
        float(layer_speed.train_block(layer, x, targets)(tf.constant(1)))
        for layer in (fused, loop)
    ]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for f, lp in zip(fused(X), loop(X), strict=True):
        np.testing.assert_allclose(np.asarray(lp), np.asarray(f), atol=1e-5)
    assert not np.allclose(
        np.asarray(fused.experts.block_biases[0]), 0.0
    )  # The step did update the weights.


def test_train_flops_by_hand():
    # experts 2*2*5*4*3 = 240, gates 2*2*5*3*2 = 120, mix 2*2*3*4*2 = 96.
    flops = layer_speed.train_flops(
        batch=2, num_experts=3, units=[4], num_tasks=2, input_dim=5
    )
    assert flops == 3 * (240 + 120 + 96)


def test_quick_run_writes_every_grid_point(tmp_path):
    out = tmp_path / "layer_speed.json"
    layer_speed.main(["--quick", "--threads", "default", "--output", str(out)])
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    quick = layer_speed.QUICK
    assert len(run["rows"]) == (
        len(quick.batches) * len(quick.experts) * len(quick.modes)
    )
    assert run["matmul_peak_gflops"] > 0
    for row in run["rows"]:
        assert row["fused_ms"] > 0 and row["loop_ms"] > 0
        assert row["speedup"] == pytest.approx(row["loop_ms"] / row["fused_ms"])
        assert ("fused_pct_peak" in row) == row["mode"].startswith("train")
    assert set(result["targets"]) == {"default/graph", "default/xla"}
    for checks in result["targets"].values():
        assert {"never_slower", "pct_peak_train_big_batch"} <= set(checks)
