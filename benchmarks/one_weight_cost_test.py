import json

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import layer_speed, one_weight_cost, testing

X = np.random.default_rng(0).normal(size=(5, 256)).astype("float32")


def _layers():
    layers = one_weight_cost.make_layers(8, 64, 3, 256)
    testing.randomize(layers["fused"])
    layers["split"].copy_weights_from(layers["fused"])
    layers["loop"].copy_weights_from(layers["fused"])
    return layers


def test_split_kernel_holds_one_variable_per_block():
    layers = _layers()
    blocks = layers["fused"].experts.kernels[0].shape[0]
    assert blocks == 4  # 8 experts of 64 on 256 inputs.
    # fused: kernel + bias; split: both per block; 3 gates x (kernel, bias).
    assert len(layers["fused"].trainable_variables) == 2 + 6
    assert len(layers["split"].trainable_variables) == 2 * blocks + 6
    assert len(layers["loop"].trainable_variables) == 2 * 8 + 6


def test_the_three_layers_compute_the_same_numbers_before_and_after_a_step():
    layers = _layers()
    for name in ("split", "loop"):
        for a, b in zip(layers["fused"](X), layers[name](X), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    before = layers["split"].experts.block_kernels[0].numpy().copy()
    x = tf.constant(X)
    targets = [tf.ones((5, 64)) * k for k in range(3)]
    losses = {
        name: float(layer_speed.train_block(layer, x, targets)(tf.constant(2)))
        for name, layer in layers.items()
    }
    np.testing.assert_allclose(losses["split"], losses["fused"], rtol=1e-5)
    np.testing.assert_allclose(losses["loop"], losses["fused"], rtol=1e-5)
    # After two Adam steps the weights moved the same way.
    for a, b in zip(layers["fused"](X), layers["split"](X), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    assert not np.allclose(
        layers["split"].experts.block_kernels[0].numpy(), before
    )  # The steps did update the weights.


def test_split_kernel_experts_refuse_deep_or_grouped_experts():
    for kwargs in ({"units": [8, 4]}, {"units": 8, "num_groups": 2}):
        layer = one_weight_cost.SplitKernelExperts(num_experts=4, **kwargs)
        try:
            layer.build((None, 16))
        except ValueError as error:
            assert "one layer and one group" in str(error)
        else:
            raise AssertionError(f"built with {kwargs}")


def test_quick_run_writes_every_point(tmp_path):
    out = tmp_path / "one_weight_cost.json"
    one_weight_cost.main(["--quick", "--output", str(out)])
    result = json.loads(out.read_text())
    quick = one_weight_cost.QUICK
    assert len(result["rows"]) == (
        len(quick.batches) * len(quick.experts) * len(quick.modes)
    )
    for row in result["rows"]:
        for name in one_weight_cost.IMPLEMENTATIONS:
            assert row[f"{name}_ms"] > 0
        assert row["split_speedup"] == pytest.approx(
            row["loop_ms"] / row["split_ms"]
        )
    assert result["fused_slower_than_loop"] == [
        {k: row[k] for k in ("mode", "batch", "num_experts", "units")}
        for row in result["rows"]
        if row["fused_speedup"] < 1
    ]
