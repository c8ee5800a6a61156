"""MMoE: shared experts, one softmax gate per task."""

import keras
from keras import ops

from keras_mmoe import _initializers, _validation, _weights_config
from keras_mmoe.expert_gate import ExpertGate
from keras_mmoe.experts import Experts


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MMoE(keras.layers.Layer):
    """Multi-gate Mixture-of-Experts.

    `f_k(x) = sum_i g_k(x)_i * expert_i(x)` for every task `k`, where the
    experts are shared MLPs and `g_k` is task `k`'s own softmax gate
    (`ExpertGate`). Tasks that need the same features learn similar gates;
    tasks that conflict learn to use different experts.

    All arguments after `num_tasks` are keyword-only.

    Args:
        num_tasks: int. Number of tasks (one gate and one output each).
        num_experts: int. Number of shared experts.
        expert_units: int or list of ints. Widths of each expert MLP.
        expert_activation: activation of the expert layers.
        gate_temperature: float. Softmax temperature of every gate.
        gate_dropout: float in [0, 1). Expert dropout in the gates
            (training only, renormalized).
        return_gate_weights: bool. Also return each task's gate weights.
        use_bias: bool. Whether experts and gates have biases.
        kernel_initializer: initializer of the expert and gate kernels (each
            expert gets its own copy).
        bias_initializer: initializer of the biases.
        kernel_regularizer: optional regularizer of all kernels.
        seed: optional int, seed of the gate dropout.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: tensor `(batch, features)`.
        training: bool, whether gate dropout applies.

    Returns:
        A list of `num_tasks` tensors `(batch, expert_units[-1])`; with
        `return_gate_weights=True`, a pair `(outputs, gate_weights)` where
        `gate_weights` is a list of `num_tasks` tensors `(batch, num_experts)`.

    Example:
    >>> layer = MMoE(num_tasks=2, num_experts=4, expert_units=16)
    >>> [tuple(t.shape) for t in layer(np.ones((3, 8)))]
    [(3, 16), (3, 16)]

    Reference:
        - Ma et al., "Modeling Task Relationships in Multi-task Learning with
          Multi-gate Mixture-of-Experts", KDD 2018.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        num_experts: int,
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
        self.num_experts = _validation.positive_int("num_experts", num_experts)
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
        self.experts = Experts(
            num_experts=self.num_experts,
            units=self.expert_units,
            activation=self.expert_activation,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="experts",
        )
        self.gates = [
            ExpertGate(
                num_experts=self.num_experts,
                temperature=self.gate_temperature,
                dropout=self.gate_dropout,
                use_bias=self.use_bias,
                # Own copy per gate: a shared stateless initializer would
                # start every task's gate at the same weights.
                kernel_initializer=_initializers.clone(
                    self.kernel_initializer, k
                ),
                bias_initializer=self.bias_initializer,
                kernel_regularizer=self.kernel_regularizer,
                seed=None if seed is None else seed + k,
                dtype=self.dtype_policy,
                name=f"gate_{k}",
            )
            for k in range(self._num_gates())
        ]

    def _num_gates(self) -> int:
        return self.num_tasks

    def build(self, input_shape):
        self.experts.build(input_shape)
        for gate in self.gates:
            gate.build(input_shape)

    def call(self, inputs, training=None):
        expert_outputs = self.experts(inputs)  # (batch, experts, units)
        # Every gate reads the same input: one matmul projects it for all of
        # them (kernels side by side), fewer and larger ops than a matmul per
        # gate, which trains faster at large batch (benchmarks/README.md,
        # "The layout, op by op"); their biases side by side too.
        gates = self.gates
        logits = _weights_config.linear(
            inputs,
            ops.concatenate([g.kernel for g in gates], axis=1),
            ops.concatenate([g.bias for g in gates]) if self.use_bias else None,
        )  # (batch, gates * experts)
        # The gates share their temperature and dropout rate, so one softmax
        # over (batch, gates, experts) finishes them all (gate 0's code; the
        # dropout draws its own mask for every gate and row).
        gate_weights = gates[0].weights_from_logits(
            ops.reshape(logits, (-1, len(gates), self.num_experts)),
            training=training,
        )  # (batch, gates, experts)
        # One batched matmul mixes the experts for every gate:
        # (batch, gates, experts) @ (batch, experts, units).
        mixed = ops.matmul(gate_weights, expert_outputs)
        outputs = ops.unstack(mixed, axis=1)  # gates x (batch, units)
        gate_weights = ops.unstack(gate_weights, axis=1)  # gates x (b, e)
        if len(self.gates) == 1:  # One gate shared by every task (OMoE).
            outputs = outputs * self.num_tasks
            gate_weights = gate_weights * self.num_tasks
        if self.return_gate_weights:
            return outputs, gate_weights
        return outputs

    def compute_output_shape(self, input_shape):
        out = [(input_shape[0], self.expert_units[-1])] * self.num_tasks
        if self.return_gate_weights:
            return out, [(input_shape[0], self.num_experts)] * self.num_tasks
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_tasks": self.num_tasks,
            "num_experts": self.num_experts,
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
