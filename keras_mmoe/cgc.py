"""CGC: Customized Gate Control, shared plus task-specific experts."""

import keras
from keras import ops

from keras_mmoe import _initializers, _validation, _weights_config
from keras_mmoe.expert_gate import ExpertGate
from keras_mmoe.experts import Experts


@keras.saving.register_keras_serializable(package="keras_mmoe")
class CGC(keras.layers.Layer):
    """Customized Gate Control: shared experts plus experts owned by a task.

    Task `k` mixes its own `num_task_experts` experts and the
    `num_shared_experts` shared ones with its gate:
    `f_k = sum_i g_k(x_k)_i * [E_k(x_k), E_s(x_s)]_i`. Separating task-owned
    from shared experts keeps a task's private features out of the others'
    reach, which reduces negative transfer and the seesaw between tasks.

    As one extraction level of `PLE`, the layer may take separate inputs per
    task plus a shared input, and return a shared output mixed over all
    experts by a shared gate.

    All arguments after `num_tasks` are keyword-only.

    Args:
        num_tasks: int. Number of tasks.
        num_shared_experts: int. Experts shared by every task.
        num_task_experts: int. Experts owned by each task.
        expert_units: int or list of ints. Widths of each expert MLP.
        expert_activation: activation of the expert layers.
        gate_temperature: float. Softmax temperature of every gate.
        gate_dropout: float in [0, 1). Expert dropout in the gates.
        return_shared_output: bool. Also return the shared gate's mixture of
            all experts (what the next PLE level's shared experts read).
        return_gate_weights: bool. Also return each task's gate weights.
        use_bias: bool. Whether experts and gates have biases.
        kernel_initializer: initializer of the kernels (one copy per expert).
        bias_initializer: initializer of the biases.
        kernel_regularizer: optional regularizer of all kernels.
        seed: optional int, seed of the gate dropout.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: a tensor `(batch, features)` read by every expert, or a list
            of `num_tasks + 1` tensors: one per task, then the shared input.
        training: bool, whether gate dropout applies.

    Returns:
        A list of `num_tasks` tensors `(batch, expert_units[-1])`, followed
        by the shared output when `return_shared_output=True`; with
        `return_gate_weights=True`, a pair `(outputs, gate_weights)` where
        task `k`'s gate weights `(batch, num_task_experts +
        num_shared_experts)` cover its own experts first, then the shared.

    Example:
    >>> layer = CGC(num_tasks=2, num_shared_experts=2, num_task_experts=1,
    ...             expert_units=16)
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
        num_shared_experts: int,
        num_task_experts: int,
        expert_units,
        expert_activation="relu",
        gate_temperature: float = 1.0,
        gate_dropout: float = 0.0,
        return_shared_output: bool = False,
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
        self.return_shared_output = bool(return_shared_output)
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
        common = dict(
            units=self.expert_units,
            activation=self.expert_activation,
            use_bias=self.use_bias,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        self.task_experts = Experts(
            num_experts=self.num_tasks * self.num_task_experts,
            num_groups=self.num_tasks,
            kernel_initializer=_initializers.clone(self.kernel_initializer, 0),
            name="task_experts",
            **common,
        )
        self.shared_experts = Experts(
            num_experts=self.num_shared_experts,
            kernel_initializer=_initializers.clone(self.kernel_initializer, 1),
            name="shared_experts",
            **common,
        )
        gate_sizes = [self.num_task_experts + self.num_shared_experts] * (
            self.num_tasks
        )
        if self.return_shared_output:
            gate_sizes.append(
                self.num_tasks * self.num_task_experts + self.num_shared_experts
            )
        self.gates = [
            ExpertGate(
                num_experts=size,
                temperature=self.gate_temperature,
                dropout=self.gate_dropout,
                use_bias=self.use_bias,
                kernel_initializer=_initializers.clone(
                    self.kernel_initializer, 2 + k
                ),
                bias_initializer=self.bias_initializer,
                kernel_regularizer=self.kernel_regularizer,
                seed=None if seed is None else seed + k,
                dtype=self.dtype_policy,
                name="shared_gate" if k == self.num_tasks else f"gate_{k}",
            )
            for k, size in enumerate(gate_sizes)
        ]

    def _split_inputs(self, inputs, shapes=False):
        """-> (one input (or shape) per task, the shared input (or shape))."""
        nested = isinstance(inputs, (list, tuple)) and (
            not shapes or isinstance(inputs[0], (list, tuple))
        )
        if nested:
            if len(inputs) != self.num_tasks + 1:
                raise ValueError(
                    f"CGC with num_tasks={self.num_tasks} takes one tensor or "
                    f"a list of {self.num_tasks + 1} (one per task, then the "
                    f"shared input). Received a list of {len(inputs)}."
                )
            return list(inputs[:-1]), inputs[-1]
        return [inputs] * self.num_tasks, inputs

    def build(self, input_shape):
        task_shapes, shared_shape = self._split_inputs(input_shape, True)
        self.task_experts.build(task_shapes)
        self.shared_experts.build(shared_shape)
        for k, gate in enumerate(self.gates):
            gate.build(shared_shape if k == self.num_tasks else task_shapes[k])

    def call(self, inputs, training=None):
        task_inputs, shared_input = self._split_inputs(inputs)
        per_task = self.num_task_experts
        task_out = self.task_experts(task_inputs)  # (batch, T * K, units)
        shared_out = self.shared_experts(shared_input)  # (batch, S, units)
        outputs, gate_weights = [], []
        for k in range(self.num_tasks):
            experts = ops.concatenate(
                [task_out[:, k * per_task : (k + 1) * per_task], shared_out],
                axis=1,
            )  # (batch, K + S, units)
            g = self.gates[k](task_inputs[k], training=training)  # (b, K + S)
            outputs.append(_mix(g, experts))
            gate_weights.append(g)
        if self.return_shared_output:
            experts = ops.concatenate([task_out, shared_out], axis=1)
            g = self.gates[-1](shared_input, training=training)
            outputs.append(_mix(g, experts))  # (batch, units)
        if self.return_gate_weights:
            return outputs, gate_weights
        return outputs

    def compute_output_shape(self, input_shape):
        _, shared_shape = self._split_inputs(input_shape, True)
        batch = shared_shape[0]
        num_out = self.num_tasks + int(self.return_shared_output)
        out = [(batch, self.expert_units[-1])] * num_out
        if self.return_gate_weights:
            width = self.num_task_experts + self.num_shared_experts
            return out, [(batch, width)] * self.num_tasks
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_tasks": self.num_tasks,
            "num_shared_experts": self.num_shared_experts,
            "num_task_experts": self.num_task_experts,
            "expert_units": self.expert_units,
            "expert_activation": keras.activations.serialize(
                self.expert_activation
            ),
            "gate_temperature": self.gate_temperature,
            "gate_dropout": self.gate_dropout,
            "return_shared_output": self.return_shared_output,
            "return_gate_weights": self.return_gate_weights,
            **_weights_config.weight_args_config(self),
            "seed": self.seed,
        }


def _mix(gate, experts):
    """(batch, E) gate x (batch, E, units) experts -> (batch, units)."""
    return ops.squeeze(ops.matmul(ops.expand_dims(gate, 1), experts), axis=1)
