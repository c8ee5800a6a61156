"""Experts: same-shaped MLP experts computed fused, one weight a layer."""

import keras
from keras import ops

from keras_mmoe import _initializers, _validation, _weights_config


@keras.saving.register_keras_serializable(package="keras_mmoe")
class Experts(keras.layers.Layer):
    """`num_experts` MLPs of widths `units`, fused into one weight per layer.

    The number of weights does not grow with `num_experts`, and no Python loop
    runs over experts. Layout, chosen by measuring on CPU:

    - First layer: every expert reads the same input, so its kernel is stored
      as `(blocks, in, experts_per_block, units[0])`: each block is a free
      reshape away from a plain matmul `(batch, in) @ (in, columns)` with its
      bias add and activation fused into it by TensorFlow (no transpose per
      call; an einsum over `(experts, in, out)` transposes). The blocks are
      column blocks of what could be one matmul over all experts: on CPU,
      blocks of at most 128 columns and 32K floats (128 KB) beat one wide
      matmul at batch 32 and match it at batch 1 and 1024 (see
      `_column_blocks`; benchmarks/README.md, "The layout, op by op").
      Their count depends on the shapes only, not on the machine, so a
      saved layer loads anywhere.
    - Deeper layers: kernel `(num_experts, units[i], units[i + 1])`, one
      batched matmul over experts, activations kept as
      `(num_experts, batch, units)` so only one transpose in and one out.

    With `num_groups > 1` the experts split into equal groups that read
    different inputs (the task-specific experts of CGC / PLE upper levels);
    each group is one block.

    Args:
        num_experts: int. Number of experts (a multiple of `num_groups`).
        units: int or list of ints. Widths of each expert's layers.
        activation: activation after every expert layer.
        num_groups: int. Number of expert groups, each reading its own input.
        use_bias: bool. Whether the expert layers have biases.
        kernel_initializer: initializer of one expert's kernel; every expert
            gets its own copy (own random stream, one expert's fans).
        bias_initializer: initializer of the biases.
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
        blocks = (
            self.num_groups
            if self.num_groups > 1
            else _column_blocks(self.num_experts, self.units[0], in_dim)
        )
        # (blocks, in, experts_per_block, units[0])
        self.kernels = [
            self.add_weight(
                name="kernel_0",
                shape=(
                    blocks,
                    in_dim,
                    self.num_experts // blocks,
                    self.units[0],
                ),
                initializer=_blocked(
                    _initializers.per_expert(
                        self.kernel_initializer, self.num_experts, axis=1
                    ),
                    blocks,
                ),
                regularizer=self.kernel_regularizer,
            )
        ]
        # (num_experts, units[i], units[i + 1])
        for i in range(1, len(self.units)):
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{i}",
                    shape=(self.num_experts, self.units[i - 1], self.units[i]),
                    initializer=_initializers.per_expert(
                        self.kernel_initializer, self.num_experts, axis=0
                    ),
                    regularizer=self.kernel_regularizer,
                )
            )
        self.biases = (
            [
                self.add_weight(
                    name=f"bias_{i}",
                    shape=(self.num_experts, width),
                    initializer=self.bias_initializer,
                )
                for i, width in enumerate(self.units)
            ]
            if self.use_bias
            else []
        )

    def call(self, inputs):
        # A tensor, not the variable: ops.unstack passes a variable on to
        # the backend as it is, and JAX's jit would then keep the variable
        # as a constant of the compiled step, which has no value when the
        # trainer runs it.
        kernel = ops.convert_to_tensor(self.kernels[0])
        # kernel: (blocks, in, experts_per_block, units0)
        blocks, in_dim = kernel.shape[:2]
        xs = inputs if self.num_groups > 1 else [inputs] * blocks
        biases = (
            ops.unstack(ops.reshape(self.biases[0], (blocks, -1)))
            if self.use_bias
            else [None] * blocks
        )
        hs = []
        for x, k, b in zip(xs, ops.unstack(kernel), biases, strict=True):
            h = _weights_config.linear(x, ops.reshape(k, (in_dim, -1)), b)
            hs.append(self.activation(h))
        h = hs[0] if blocks == 1 else ops.concatenate(hs, axis=-1)
        units0 = self.units[0]
        h = ops.reshape(h, (-1, self.num_experts, units0))
        if len(self.units) == 1:
            return h  # (batch, experts, units0)
        h = ops.transpose(h, (1, 0, 2))  # (experts, batch, units0)
        for i in range(1, len(self.units)):
            h = ops.matmul(h, self.kernels[i])  # (experts, batch, units[i])
            if self.use_bias:
                h = h + ops.expand_dims(self.biases[i], 1)
            h = self.activation(h)
        return ops.transpose(h, (1, 0, 2))  # (batch, experts, units[-1])

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


# Column blocks of the first layer: at most this many columns and weights
# (floats) each, the block size at which a batch-32 matmul ran faster than
# one over all columns, with batch 1 and 1024 no slower
# (benchmarks/README.md, "The layout, op by op").
_BLOCK_COLUMNS = 128
_BLOCK_FLOATS = 32 * 1024
_MAX_BLOCKS = 8  # Bounds the number of matmuls for wide layers.


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


def _blocked(initializer, blocks: int):
    """Initializer of a `(blocks, in, per_block, units)` kernel from one of
    `(in, experts, units)`: expert `e` lands in block `e // per_block`."""

    def init(shape, dtype=None):
        blocks_, in_dim, per_block, units = shape
        full = initializer((in_dim, blocks_ * per_block, units), dtype=dtype)
        return ops.transpose(
            ops.reshape(full, (in_dim, blocks_, per_block, units)),
            (1, 0, 2, 3),
        )

    return init
