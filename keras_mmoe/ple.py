"""PLE: Progressive Layered Extraction, stacked CGC levels."""

import keras

from keras_mmoe import _initializers, _validation, _weights_config
from keras_mmoe.cgc import CGC


@keras.saving.register_keras_serializable(package="keras_mmoe")
class PLE(keras.layers.Layer):
    """Progressive Layered Extraction: `num_levels` stacked `CGC` levels.

    Each level but the last also mixes a shared output over all its experts;
    at the next level task `k`'s experts read task `k`'s output and the
    shared experts read the shared output, so task-specific and shared
    representations separate progressively. With `num_levels=1` it is `CGC`.

    All arguments after `num_tasks` are keyword-only.

    Args:
        num_tasks: int. Number of tasks.
        num_levels: int. Number of extraction levels.
        num_shared_experts: int. Shared experts per level.
        num_task_experts: int. Experts owned by each task, per level.
        expert_units: int or list of ints. Widths of each expert MLP.
        expert_activation: activation of the expert layers.
        gate_temperature: float. Softmax temperature of every gate.
        gate_dropout: float in [0, 1). Expert dropout in the gates.
        return_gate_weights: bool. Also return the last level's task gates.
        use_bias: bool. Whether experts and gates have biases.
        kernel_initializer: initializer of the kernels (one copy per expert).
        bias_initializer: initializer of the biases.
        kernel_regularizer: optional regularizer of all kernels.
        seed: optional int, seed of the gate dropout.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: tensor `(batch, features)`.
        training: bool, whether gate dropout applies.

    Returns:
        A list of `num_tasks` tensors `(batch, expert_units[-1])`; with
        `return_gate_weights=True`, a pair `(outputs, gate_weights)` with the
        last level's task gates `(batch, num_task_experts +
        num_shared_experts)`.

    Example:
    >>> layer = PLE(num_tasks=2, num_levels=2, num_shared_experts=2,
    ...             num_task_experts=1, expert_units=16)
    >>> [tuple(t.shape) for t in layer(np.ones((3, 8)))]
    [(3, 16), (3, 16)]

    Reference:
        - Tang et al., "Progressive Layered Extraction (PLE): A Novel
          Multi-Task Learning (MTL) Model for Personalized Recommendations",
          RecSys 2020.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        num_levels: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_units,
        expert_activation="relu",
        gate_temperature: float = 1.0,
        gate_dropout: float = 0.0,
        return_gate_weights: bool = False,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = _validation.positive_int("num_tasks", num_tasks)
        self.num_levels = _validation.positive_int("num_levels", num_levels)
        self.num_shared_experts = _validation.positive_int(
            "num_shared_experts", num_shared_experts
        )
        self.num_task_experts = _validation.positive_int(
            "num_task_experts", num_task_experts
        )
        self.expert_units = _validation.units_list("expert_units", expert_units)
        self.expert_activation = keras.activations.get(expert_activation)
        self.gate_temperature = _validation.positive_float(
            "gate_temperature", gate_temperature
        )
        self.gate_dropout = _validation.rate("gate_dropout", gate_dropout)
        self.return_gate_weights = bool(return_gate_weights)
        _weights_config.set_weight_args(
            self,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
        )
        self.seed = seed

        # === Layers ===
        last = self.num_levels - 1
        self.levels = [
            CGC(
                num_tasks=self.num_tasks,
                num_shared_experts=self.num_shared_experts,
                num_task_experts=self.num_task_experts,
                expert_units=self.expert_units,
                expert_activation=self.expert_activation,
                gate_temperature=self.gate_temperature,
                gate_dropout=self.gate_dropout,
                return_shared_output=level < last,
                return_gate_weights=level == last,
                use_bias=self.use_bias,
                kernel_initializer=_initializers.clone(
                    self.kernel_initializer, 1000 * level
                ),
                bias_initializer=self.bias_initializer,
                kernel_regularizer=self.kernel_regularizer,
                seed=None if seed is None else seed + 1000 * level,
                dtype=self.dtype_policy,
                name=f"level_{level}",
            )
            for level in range(self.num_levels)
        ]

    def build(self, input_shape):
        shape = input_shape
        for level in self.levels[:-1]:
            level.build(shape)
            shape = level.compute_output_shape(shape)
        self.levels[-1].build(shape)

    def call(self, inputs, training=None):
        h = inputs
        for level in self.levels[:-1]:
            h = level(h, training=training)  # T task outputs + shared output
        outputs, gate_weights = self.levels[-1](h, training=training)
        if self.return_gate_weights:
            return outputs, gate_weights
        return outputs

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for level in self.levels[:-1]:
            shape = level.compute_output_shape(shape)
        out, gates = self.levels[-1].compute_output_shape(shape)
        return (out, gates) if self.return_gate_weights else out

    def get_config(self):
        return {
            **super().get_config(),
            "num_tasks": self.num_tasks,
            "num_levels": self.num_levels,
            "num_shared_experts": self.num_shared_experts,
            "num_task_experts": self.num_task_experts,
            "expert_units": self.expert_units,
            "expert_activation": keras.activations.serialize(
                self.expert_activation
            ),
            "gate_temperature": self.gate_temperature,
            "gate_dropout": self.gate_dropout,
            "return_gate_weights": self.return_gate_weights,
            **_weights_config.weight_args_config(self),
            "seed": self.seed,
        }
