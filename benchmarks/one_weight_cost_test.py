import json

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import layer_speed, one_weight_cost, testing

X = np.random.default_rng(0).normal(size=(5, 256)).astype("float32")


def _layers():
    layers = one_weight_cost.make_layers(8, 64, 3, 256)
    testing.randomize(layers["blocks"])
    layers["one_kernel"].copy_weights_from(layers["blocks"])
    layers["loop"].copy_weights_from(layers["blocks"])
    return layers


def test_one_kernel_holds_the_blocks_in_one_variable():
    layers = _layers()
    blocks = len(layers["blocks"].experts.block_kernels)
    assert blocks == 4  # 8 experts of 64 on 256 inputs.
    # blocks: kernel and bias per block; one_kernel: one of each; 3 gates x
    # (kernel, bias).
    assert len(layers["blocks"].trainable_variables) == 2 * blocks + 6
    assert len(layers["one_kernel"].trainable_variables) == 2 + 6
    assert tuple(layers["one_kernel"].experts.kernel.shape) == (4, 256, 2, 64)
    assert len(layers["loop"].trainable_variables) == 2 * 8 + 6


def test_the_three_layers_compute_the_same_numbers_before_and_after_a_step():
    layers = _layers()
    for name in ("one_kernel", "loop"):
        for a, b in zip(layers["blocks"](X), layers[name](X), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    before = layers["one_kernel"].experts.kernel.numpy().copy()
    x = tf.constant(X)
    targets = [tf.ones((5, 64)) * k for k in range(3)]
    losses = {
        name: float(layer_speed.train_block(layer, x, targets)(tf.constant(2)))
        for name, layer in layers.items()
    }
    np.testing.assert_allclose(
        losses["one_kernel"], losses["blocks"], rtol=1e-5
    )
    np.testing.assert_allclose(losses["loop"], losses["blocks"], rtol=1e-5)
    # After two Adam steps the weights moved the same way.
    for a, b in zip(layers["blocks"](X), layers["one_kernel"](X), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    assert not np.allclose(
        layers["one_kernel"].experts.kernel.numpy(), before
    )  # The steps did update the weights.


def test_one_kernel_experts_refuse_deep_or_grouped_experts():
    for kwargs in ({"units": [8, 4]}, {"units": 8, "num_groups": 2}):
        layer = one_weight_cost.OneKernelExperts(num_experts=4, **kwargs)
        with pytest.raises(ValueError, match="one layer and one group"):
            layer.build((None, 16))


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
        assert row["one_kernel_speedup"] == pytest.approx(
            row["loop_ms"] / row["one_kernel_ms"]
        )
    assert result["blocks_slower_than_loop"] == [
        {k: row[k] for k in ("mode", "batch", "num_experts", "units")}
        for row in result["rows"]
        if row["blocks_speedup"] < 1
    ]
