import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _initializers, _testing
from keras_mmoe.experts import Experts, _column_blocks, _parts_per_block


def _first_kernel(layer):
    """The first layer's kernel as (parts, in, per_part, units0)."""
    blocks = [ops.convert_to_numpy(k) for k in layer.block_kernels]
    return np.concatenate(
        [
            k.reshape(1, k.shape[0], -1, layer.units[0]) if k.ndim == 2 else k
            for k in blocks
        ]
    )


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
    assert [tuple(k.shape) for k in layer.block_kernels] == [(256, 128)] * 4
    assert [tuple(b.shape) for b in layer.block_biases] == [(2, 64)] * 4
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


@pytest.mark.parametrize(
    "num_experts, units, in_dim, num_groups, parts",
    [
        (8, 64, 256, 1, [1, 1, 1, 1]),  # A weight per column block.
        (4, 16, 32, 1, [1]),
        (64, 64, 1024, 1, [1] * 8),  # At most 8 column blocks.
        (6, 8, 16, 3, [1, 1, 1]),  # A weight per group...
        (8, 8, 16, 8, [1] * 8),
        (10, 8, 16, 10, [2, 2, 1, 1, 1, 1, 1, 1]),  # ...at most 8.
        (48, 8, 16, 24, [3] * 8),
    ],
)
def test_parts_per_block(num_experts, units, in_dim, num_groups, parts):
    assert _parts_per_block(num_experts, units, in_dim, num_groups) == parts


@pytest.mark.parametrize("num_groups", [1, 2])
def test_blocks_keep_each_experts_own_seeded_initial_values(num_groups):
    """Expert e starts from copy e of the initializer whatever block or group
    it is stored in, so seeded experts in different blocks differ."""
    init = keras.initializers.GlorotUniform(seed=5)
    layer = Experts(8, 64, num_groups=num_groups, kernel_initializer=init)
    layer.build((None, 256) if num_groups == 1 else [(None, 256)] * 2)
    assert len(layer.block_kernels) in (4, 2)
    k0 = _first_kernel(layer)  # (parts, in, per_part, units)
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


@pytest.mark.parametrize("num_groups", [1, 2, 64])
def test_weight_count_stays_at_most_8_blocks(num_groups):
    """Kernel and bias per first-layer block, at most 8 blocks, and one of
    each per deeper layer, whatever `num_experts`."""
    counts = []
    for num_experts in (64, 128, 256):
        layer = Experts(
            num_experts=num_experts, units=[64, 4], num_groups=num_groups
        )
        inputs = (None, 256)
        layer.build(inputs if num_groups == 1 else [inputs] * num_groups)
        counts.append(len(layer.weights))
    blocks = 2 if num_groups == 2 else 8
    assert counts == [2 * blocks + 2] * 3


@pytest.mark.parametrize("num_groups", [10, 12])
def test_more_than_8_groups_share_8_weights_and_read_their_own_input(
    num_groups,
):
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(3, 5)).astype("float32") for _ in range(num_groups)]
    layer = Experts(2 * num_groups, [4, 2], num_groups=num_groups, name="e")
    layer.build([x.shape for x in xs])
    assert len(layer.block_kernels) == 8
    _testing.randomize(layer)
    out = ops.convert_to_numpy(layer(xs))
    expected = _testing.experts(_testing.weights_of(layer), xs, prefix="")
    assert len(expected) == 2 * num_groups
    for e, h in enumerate(expected):
        np.testing.assert_allclose(out[:, e], h, rtol=1e-5, atol=1e-5)


def _one_kernel_store(rng, parts, in_dim, per_part, units, use_bias=True):
    """Weights as saved with the first layer one kernel `(parts, in,
    per_part, units[0])` and one bias `(experts, units[0])`, then the deeper
    layers: kernels first, then biases. Returns the store and the weights."""
    experts = parts * per_part
    kernels = [rng.normal(size=(parts, in_dim, per_part, units[0]))]
    kernels += [
        rng.normal(size=(experts, a, b))
        for a, b in zip(units[:-1], units[1:], strict=True)
    ]
    biases = [rng.normal(size=(experts, u)) for u in units] if use_bias else []
    values = [v.astype("float32") for v in kernels + biases]
    return {str(i): v for i, v in enumerate(values)}, values


@pytest.mark.parametrize(
    "num_experts, units, in_dim, num_groups, use_bias",
    [
        (8, [64], 256, 1, True),  # 4 column blocks.
        (8, [64, 8], 256, 1, False),
        (6, [4, 2], 5, 3, True),  # 3 groups.
        (10, [4], 5, 10, True),  # 10 groups in 8 weights.
        (3, [8, 4], 6, 1, True),  # One block: the same layout.
    ],
)
def test_weights_saved_as_one_first_kernel_load_and_compute_the_same(
    num_experts, units, in_dim, num_groups, use_bias
):
    rng = np.random.default_rng(5)
    layer = Experts(
        num_experts, units, num_groups=num_groups, use_bias=use_bias
    )
    shapes = [(None, in_dim)] * num_groups
    layer.build(shapes if num_groups > 1 else shapes[0])
    parts = sum(_parts_per_block(num_experts, units[0], in_dim, num_groups))
    store, values = _one_kernel_store(
        rng, parts, in_dim, num_experts // parts, units, use_bias
    )
    layer.load_own_variables(store)

    xs = [rng.normal(size=(4, in_dim)).astype("float32") for _ in shapes]
    out = ops.convert_to_numpy(layer(xs if num_groups > 1 else xs[0]))
    # Expert e's weights read straight from the saved arrays.
    depth = len(units)
    kernels, biases = values[:depth], values[depth:]
    per_part = num_experts // parts
    for e in range(num_experts):
        part, j = divmod(e, per_part)
        x = xs[part] if num_groups > 1 else xs[0]
        h = x @ kernels[0][part, :, j] + (biases[0][e] if use_bias else 0)
        h = _testing.relu(h)
        for i in range(1, depth):
            h = h @ kernels[i][e] + (biases[i][e] if use_bias else 0)
            h = _testing.relu(h)
        np.testing.assert_allclose(out[:, e], h, rtol=1e-4, atol=1e-4)


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
    first = _first_kernel(layer)[0]  # (in, experts, units)
    deep = ops.convert_to_numpy(layer.deep_kernels[0])  # (experts, in, out)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.allclose(first[:, a], first[:, b])
            assert not np.allclose(deep[a], deep[b])
    np.testing.assert_allclose(deep.std(), std, rtol=0.1)


def test_seeded_initializer_builds_the_same_experts_twice():
    def build():
        layer = Experts(
            8,
            [64, 8],
            kernel_initializer=keras.initializers.GlorotUniform(seed=3),
            bias_initializer=keras.initializers.RandomNormal(seed=4),
        )
        layer.build((None, 256))
        assert len(layer.block_kernels) == 4
        return [ops.convert_to_numpy(w) for w in layer.weights]

    first, second = build(), build()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # Every first-layer block's biases differ: one seeded initializer per
    # expert, not one shared by the blocks.
    biases = np.concatenate(first[5:9])  # (experts, units0)
    for a in range(8):
        for b in range(a + 1, 8):
            assert not np.allclose(biases[a], biases[b])


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
