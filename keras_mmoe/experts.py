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
      as `(num_groups, in, experts_per_group, units[0])`; a free reshape makes
      it one plain matmul `(batch, in) @ (in, experts * units[0])` with no
      transpose per call (an einsum over `(experts, in, out)` transposes).
    - Deeper layers: kernel `(num_experts, units[i], units[i + 1])`, one
      batched matmul over experts, activations kept as
      `(num_experts, batch, units)` so only one transpose in and one out.

    With `num_groups > 1` the experts split into equal groups that read
    different inputs (the task-specific experts of CGC / PLE upper levels).

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
    >>> experts(np.ones((2, 32))).shape
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
        per_group = self.num_experts // self.num_groups
        # (groups, in, experts_per_group, units[0])
        self.kernels = [
            self.add_weight(
                name="kernel_0",
                shape=(self.num_groups, in_dim, per_group, self.units[0]),
                initializer=_initializers.per_expert(
                    self.kernel_initializer, per_group, axis=2
                )
                if self.num_groups == 1
                else self._grouped_init(per_group),
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

    def _grouped_init(self, per_group):
        per_expert = _initializers.per_expert(
            self.kernel_initializer, per_group, axis=1
        )

        def init(shape, dtype=None):
            return ops.stack(
                [per_expert(shape[1:], dtype) for _ in range(shape[0])]
            )

        return init

    def call(self, inputs):
        units0 = self.units[0]
        kernel = self.kernels[0]
        in_dim = ops.shape(kernel)[1]
        if self.num_groups == 1:
            # One plain matmul for every expert's first layer.
            h = ops.matmul(
                inputs, ops.reshape(kernel, (in_dim, -1))
            )  # (batch, experts * units0)
        else:
            x = ops.stack(inputs)  # (groups, batch, in)
            h = ops.matmul(
                x, ops.reshape(kernel, (self.num_groups, in_dim, -1))
            )  # (groups, batch, per_group * units0)
            batch = ops.shape(h)[1]
            h = ops.reshape(
                ops.transpose(
                    ops.reshape(h, (self.num_groups, batch, -1, units0)),
                    (1, 0, 2, 3),
                ),
                (batch, -1),
            )  # (batch, groups * per_group * units0)
        if self.use_bias:
            # `ops.add` of a 1-D bias straight after the matmul: TensorFlow
            # fuses the two (and the ReLU), 3x faster than a plain matmul at
            # batch 1. A reshape in between would stop it.
            h = ops.add(h, ops.reshape(self.biases[0], (-1,)))
        h = self.activation(h)
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
