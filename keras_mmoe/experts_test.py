import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _initializers, _testing
from keras_mmoe.experts import Experts, _column_blocks


@pytest.mark.parametrize("units", [8, [8, 4], [6, 5, 3]])
def test_fused_experts_equal_a_per_expert_loop(units):
    x = np.random.default_rng(1).normal(size=(7, 5)).astype("float32")
    layer = Experts(num_experts=4, units=units, name="experts")
    layer.build(x.shape)
    _testing.randomize(layer)
    out = ops.convert_to_numpy(layer(x))
    expected = _testing.experts(_testing.weights_of(layer), x, prefix="")
    assert out.shape == (7, 4, np.atleast_1d(units)[-1])
    for e, h in enumerate(expected):
        np.testing.assert_allclose(out[:, e], h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("units", [64, [64, 8]])
def test_experts_in_column_blocks_equal_a_per_expert_loop(units):
    # 8 experts of 64 on 256 inputs: 4 blocks of 2 experts (128 columns).
    x = np.random.default_rng(3).normal(size=(5, 256)).astype("float32")
    layer = Experts(num_experts=8, units=units, name="experts")
    layer.build(x.shape)
    assert tuple(layer.kernels[0].shape) == (4, 256, 2, 64)
    _testing.randomize(layer)
    out = ops.convert_to_numpy(layer(x))
    expected = _testing.experts(_testing.weights_of(layer), x, prefix="")
    for e, h in enumerate(expected):
        np.testing.assert_allclose(out[:, e], h, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "num_experts, units, in_dim, blocks",
    [
        (8, 64, 256, 4),  # 128 columns a block.
        (32, 16, 256, 4),
        (8, 64, 512, 8),  # 64 columns: 512 x 64 = 32K floats.
        (16, 256, 1024, 8),  # At most 8 blocks.
        (3, 64, 256, 1),  # 3 blocks of 64 columns would be too narrow.
        (4, 16, 32, 1),  # All experts together are 64 columns.
    ],
)
def test_column_blocks(num_experts, units, in_dim, blocks):
    assert _column_blocks(num_experts, units, in_dim) == blocks


@pytest.mark.parametrize("num_groups", [1, 2])
def test_blocks_keep_each_experts_own_seeded_initial_values(num_groups):
    """Expert e starts from copy e of the initializer whatever block or group
    it is stored in, so seeded experts in different blocks differ."""
    init = keras.initializers.GlorotUniform(seed=5)
    layer = Experts(8, 64, num_groups=num_groups, kernel_initializer=init)
    layer.build((None, 256) if num_groups == 1 else [(None, 256)] * 2)
    k0 = ops.convert_to_numpy(
        layer.kernels[0]
    )  # (blocks, in, per_block, units)
    assert k0.shape[0] in (4, 2)
    per_block = k0.shape[2]
    for e in range(8):
        np.testing.assert_array_equal(
            k0[e // per_block, :, e % per_block],
            ops.convert_to_numpy(_initializers.clone(init, e)((256, 64))),
        )


def test_grouped_experts_read_their_own_input():
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(3, 5)).astype("float32") for _ in range(3)]
    layer = Experts(num_experts=6, units=[4, 2], num_groups=3, name="experts")
    layer.build([x.shape for x in xs])
    _testing.randomize(layer)
    out = ops.convert_to_numpy(layer(xs))
    expected = _testing.experts(_testing.weights_of(layer), xs, prefix="")
    for e, h in enumerate(expected):
        np.testing.assert_allclose(out[:, e], h, rtol=1e-5, atol=1e-5)


def test_weight_count_does_not_grow_with_experts():
    for num_experts in (1, 8, 64):
        layer = Experts(num_experts=num_experts, units=[4, 4])
        layer.build((None, 3))
        assert len(layer.weights) == 4


@pytest.mark.parametrize(
    "initializer, std",
    [
        # Fans are one expert's (16 in, 16 out), not the fused tensor's.
        ("glorot_uniform", np.sqrt(2 / (16 + 16))),
        (keras.initializers.HeNormal(seed=7), np.sqrt(2 / 16)),
    ],
)
def test_each_expert_gets_its_own_initial_values(initializer, std):
    layer = Experts(
        num_experts=4, units=[16, 16], kernel_initializer=initializer
    )
    layer.build((None, 32))
    first = ops.convert_to_numpy(layer.kernels[0])[0]  # (in, experts, units)
    deep = ops.convert_to_numpy(layer.kernels[1])  # (experts, in, out)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.allclose(first[:, a], first[:, b])
            assert not np.allclose(deep[a], deep[b])
    np.testing.assert_allclose(deep.std(), std, rtol=0.1)


def test_seeded_initializer_builds_the_same_experts_twice():
    def build():
        layer = Experts(
            2, 8, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
        )
        layer.build((None, 4))
        return ops.convert_to_numpy(layer.kernels[0])

    np.testing.assert_array_equal(build(), build())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_experts": 0, "units": 4}, "num_experts=0"),
        ({"num_experts": 2, "units": []}, "units=[]"),
        ({"num_experts": 2, "units": [4, -1]}, "units=[4, -1]"),
        ({"num_experts": 3, "units": 4, "num_groups": 2}, "num_groups=2"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        Experts(**kwargs)


def test_output_shape_and_serialization(tmp_path):
    layer = Experts(3, [8, 2])
    assert layer.compute_output_shape((None, 5)) == (None, 3, 2)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    _testing.assert_saves_and_loads(lambda: Experts(3, [8, 2]), x, tmp_path)
