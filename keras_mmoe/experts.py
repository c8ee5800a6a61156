"""Experts: same-shaped MLP experts computed fused, in a few weights."""

import keras
import numpy as np
from keras import ops

from keras_mmoe import _initializers, _validation, _weights_config


@keras.saving.register_keras_serializable(package="keras_mmoe")
class Experts(keras.layers.Layer):
    """`num_experts` MLPs of widths `units`, computed fused.

    No Python loop runs over experts, and the number of weights is set by
    the shapes only: at most 8 blocks in the first layer, one weight per
    deeper layer, however many experts. Layout, chosen by measuring on CPU:

    - First layer: every expert reads the same input, so the layer is one
      matmul `(batch, in) @ (in, experts * units[0])` cut into column
      blocks (`_column_blocks`: blocks of at most 128 columns and 32K
      floats beat one wide matmul at batch 32 and match it at batch 1 and
      1024; at most 8 blocks). Each block is a weight of its own: a plain
      matmul kernel `(in, experts_per_block * units[0])` and a bias
      `(experts_per_block, units[0])`, the bias add and activation fused
      into the matmul by TensorFlow (no transpose per call). With one
      weight for all blocks, 8 experts of 64 trained slower than a
      per-expert loop at batch 1 and 32: the gradient assembly and the
      optimizer run per weight, and a weight per block lets each block's
      update start as soon as its gradient is ready, beside the others
      (benchmarks/README.md, section 3). A layer of one block keeps its
      kernel as `(1, in, experts, units[0])`, the layout of saved models
      whose first layer is one kernel; those load into any block count
      (`load_own_variables` splits them).
    - Deeper layers: kernel `(num_experts, units[i], units[i + 1])`, one
      batched matmul over experts, activations kept as
      `(num_experts, batch, units)` so only one transpose in and one out.

    With `num_groups > 1` the experts split into equal groups that read
    different inputs (the task-specific experts of CGC / PLE upper levels);
    each group is a block. More than 8 groups share 8 blocks, neighbouring
    groups together, kernel `(groups, in, experts_per_group, units[0])`.

    Args:
        num_experts: int. Number of experts (a multiple of `num_groups`).
        units: int or list of ints. Widths of each expert's layers.
        activation: activation after every expert layer.
        num_groups: int. Number of expert groups, each reading its own input.
        use_bias: bool. Whether the expert layers have biases.
        kernel_initializer: initializer of one expert's kernel; every expert
            gets its own copy (own random stream, one expert's fans).
        bias_initializer: initializer of the biases; in the first layer
            every expert gets its own copy.
        kernel_regularizer: optional regularizer of the kernels.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: `(batch, features)` when `num_groups == 1`, else a list of
            `num_groups` tensors of shape `(batch, features)`.

    Returns:
        Tensor `(batch, num_experts, units[-1])`; experts of group `g` are
        at indices `[g * per_group, (g + 1) * per_group)`.

    Example:
    >>> experts = Experts(num_experts=4, units=[16, 8])
    >>> tuple(experts(np.ones((2, 32))).shape)
    (2, 4, 8)
    """

    def __init__(
        self,
        num_experts: int,
        units,
        activation="relu",
        num_groups: int = 1,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = _validation.positive_int("num_experts", num_experts)
        self.units = _validation.units_list("units", units)
        self.num_groups = _validation.positive_int("num_groups", num_groups)
        if num_experts % num_groups:
            raise ValueError(
                "`num_experts` must be a multiple of `num_groups`. Received: "
                f"num_experts={num_experts}, num_groups={num_groups}"
            )
        self.activation = keras.activations.get(activation)
        _weights_config.set_weight_args(
            self,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
        )

    def build(self, input_shape):
        if self.num_groups > 1:
            if len(input_shape) != self.num_groups:
                raise ValueError(
                    f"Experts with num_groups={self.num_groups} expects a "
                    f"list of {self.num_groups} inputs. Received input "
                    f"shape: {input_shape}"
                )
            input_shape = input_shape[0]
        in_dim = input_shape[-1]
        units0 = self.units[0]
        # A part is one group's experts, or with one group a column block.
        self._parts = _parts_per_block(
            self.num_experts, units0, in_dim, self.num_groups
        )
        self._per_part = self.num_experts // sum(self._parts)
        blocks = [
            (n, sum(self._parts[:b]) * self._per_part)  # (parts, 1st expert)
            for b, n in enumerate(self._parts)
        ]
        # The weights are created in the order kernels, then biases, each
        # first layer's blocks then deeper layers: `load_own_variables`
        # relies on it.
        self.block_kernels = [
            self.add_weight(
                name=f"kernel_0_{b}",
                shape=self._block_kernel_shape(n, in_dim),
                initializer=_block_initializer(
                    self.kernel_initializer,
                    (n, in_dim, self._per_part, units0),
                    first,
                ),
                regularizer=self.kernel_regularizer,
            )
            for b, (n, first) in enumerate(blocks)
        ]
        # (num_experts, units[i], units[i + 1])
        self.deep_kernels = [
            self.add_weight(
                name=f"kernel_{i}",
                shape=(self.num_experts, self.units[i - 1], self.units[i]),
                initializer=_initializers.per_expert(
                    self.kernel_initializer, self.num_experts, axis=0
                ),
                regularizer=self.kernel_regularizer,
            )
            for i in range(1, len(self.units))
        ]
        self.block_biases, self.deep_biases = [], []
        if self.use_bias:
            # (parts * experts_per_part, units0) each
            self.block_biases = [
                self.add_weight(
                    name=f"bias_0_{b}",
                    shape=(n * self._per_part, units0),
                    # Own copy per expert: one seeded random initializer
                    # would start every block's biases the same.
                    initializer=_initializers.per_expert(
                        self.bias_initializer,
                        n * self._per_part,
                        axis=0,
                        first=first,
                    ),
                )
                for b, (n, first) in enumerate(blocks)
            ]
            self.deep_biases = [
                self.add_weight(
                    name=f"bias_{i}",
                    shape=(self.num_experts, self.units[i]),
                    initializer=self.bias_initializer,
                )
                for i in range(1, len(self.units))
            ]

    def _block_kernel_shape(self, parts: int, in_dim: int) -> tuple:
        """`(in, columns)` for a block of one part when there are several
        blocks: a plain matmul kernel. Else `(parts, in, experts_per_part,
        units[0])`: the only block (saved models whose first layer is one
        kernel have this layout), or several groups."""
        if parts == 1 and len(self._parts) > 1:
            return (in_dim, self._per_part * self.units[0])
        return (parts, in_dim, self._per_part, self.units[0])

    def call(self, inputs):
        xs = inputs if self.num_groups > 1 else [inputs] * sum(self._parts)
        biases = self.block_biases or [None] * len(self.block_kernels)
        hs = []
        for kernel, bias in zip(self.block_kernels, biases, strict=True):
            for k, b in _part_weights(kernel, bias):
                x = xs[len(hs)]
                hs.append(self.activation(_weights_config.linear(x, k, b)))
        h = hs[0] if len(hs) == 1 else ops.concatenate(hs, axis=-1)
        h = ops.reshape(h, (-1, self.num_experts, self.units[0]))
        if len(self.units) == 1:
            return h  # (batch, experts, units0)
        h = ops.transpose(h, (1, 0, 2))  # (experts, batch, units0)
        for i, kernel in enumerate(self.deep_kernels):
            h = ops.matmul(h, kernel)  # (experts, batch, units[i + 1])
            if self.use_bias:
                h = h + ops.expand_dims(self.deep_biases[i], 1)
            h = self.activation(h)
        return ops.transpose(h, (1, 0, 2))  # (batch, experts, units[-1])

    def load_own_variables(self, store):
        # Saved models whose first layer is one kernel `(parts, in,
        # experts_per_part, units0)` and one bias `(num_experts, units0)`
        # hold this layer's blocks stacked: split them. With one block that
        # is this layout.
        one_kernel = len(self.units) * (2 if self.use_bias else 1)
        if len(self.block_kernels) > 1 and len(store.keys()) == one_kernel:
            store = self._split_first_layer(store)
        super().load_own_variables(store)

    def _split_first_layer(self, store) -> dict:
        """A store of the first layer as one kernel, in this layout."""
        depth = len(self.units)
        # kernel_0, kernel_1, ..., then bias_0, bias_1, ...
        values = [np.asarray(store[str(i)]) for i in range(len(store.keys()))]
        kernels, biases = values[:depth], values[depth:]
        cuts = np.cumsum(self._parts)[:-1]
        out = [
            np.reshape(k, w.shape)
            for k, w in zip(
                np.split(kernels[0], cuts), self.block_kernels, strict=True
            )
        ] + kernels[1:]
        if self.use_bias:
            out += np.split(biases[0], cuts * self._per_part) + biases[1:]
        return {str(i): v for i, v in enumerate(out)}

    def compute_output_shape(self, input_shape):
        if self.num_groups > 1:
            input_shape = input_shape[0]
        return (input_shape[0], self.num_experts, self.units[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "num_groups": self.num_groups,
            **_weights_config.weight_args_config(self),
        }


def _part_weights(kernel, bias):
    """`(in, columns)` kernel and `(columns,)` bias of each part of a block.

    kernel: `(in, columns)` or `(parts, in, experts_per_part, units0)`;
    bias: `(parts * experts_per_part, units0)` or None.
    """
    if len(kernel.shape) == 2:
        return [(kernel, None if bias is None else ops.reshape(bias, (-1,)))]
    # A tensor, not the variable: ops.unstack passes a variable on to the
    # backend as it is, and JAX's jit would then keep the variable as a
    # constant of the compiled step, which has no value when the trainer
    # runs it.
    kernel = ops.convert_to_tensor(kernel)
    parts, in_dim = kernel.shape[:2]
    if parts == 1:
        ks = [ops.reshape(kernel, (in_dim, -1))]
        bs = [None if bias is None else ops.reshape(bias, (-1,))]
    else:
        ks = [ops.reshape(k, (in_dim, -1)) for k in ops.unstack(kernel)]
        bs = (
            [None] * parts
            if bias is None
            else ops.unstack(ops.reshape(bias, (parts, -1)))
        )
    return zip(ks, bs, strict=True)


# Column blocks of the first layer: at most this many columns and weights
# (floats) each, the block size at which a batch-32 matmul ran faster than
# one over all columns, with batch 1 and 1024 no slower
# (benchmarks/README.md, "The layout, op by op").
_BLOCK_COLUMNS = 128
_BLOCK_FLOATS = 32 * 1024
# Bounds the number of matmuls for wide layers, and the number of weights
# of the first layer.
_MAX_BLOCKS = 8


def _column_blocks(num_experts: int, units: int, in_dim: int) -> int:
    """How many column blocks the first layer's matmul is split into.

    The most blocks (a divisor of `num_experts`, at most `_MAX_BLOCKS`) that
    still leave each block at least `min(_BLOCK_COLUMNS, _BLOCK_FLOATS /
    in_dim)` columns; 1 when all experts together are narrower.
    """
    columns = max(units, min(_BLOCK_COLUMNS, _BLOCK_FLOATS // in_dim))
    return max(
        d
        for d in range(1, min(num_experts, _MAX_BLOCKS) + 1)
        if num_experts % d == 0
        and (d == 1 or num_experts // d * units >= columns)
    )


def _block_initializer(initializer, parts_shape, first: int):
    """Initializer of a first-layer block kernel holding `parts_shape =
    (parts, in, per_part, units)` in whatever shape the block has: expert
    `first + e` of the layer starts from its own copy of `initializer` (see
    `_initializers.per_expert`) whatever block it is in."""
    parts, in_dim, per_part, units = parts_shape
    per_expert = _initializers.per_expert(
        initializer, parts * per_part, axis=1, first=first
    )

    def init(shape, dtype=None):
        full = per_expert((in_dim, parts * per_part, units), dtype=dtype)
        full = ops.transpose(
            ops.reshape(full, (in_dim, parts, per_part, units)),
            (1, 0, 2, 3),
        )  # (parts, in, per_part, units)
        return ops.reshape(full, shape)

    return init


def _parts_per_block(
    num_experts: int, units: int, in_dim: int, num_groups: int
) -> list[int]:
    """How many parts each first-layer weight holds, at most `_MAX_BLOCKS`
    weights: one part each, except that more groups than that share them
    evenly, neighbours together."""
    parts = (
        num_groups
        if num_groups > 1
        else _column_blocks(num_experts, units, in_dim)
    )
    blocks = min(parts, _MAX_BLOCKS)
    return [parts // blocks + (b < parts % blocks) for b in range(blocks)]
