"""ExpertGate: one task's softmax gate over the experts."""

import keras
from keras import ops

from keras_mmoe import _validation, _weights_config


@keras.saving.register_keras_serializable(package="keras_mmoe")
class ExpertGate(keras.layers.Layer):
    """A task's gate: softmax weights over `num_experts` experts.

    `g(x) = softmax((x W + b) / temperature)`. In training, `dropout` drops
    each expert with that probability and renormalizes the softmax over the
    experts kept (never all of them), the remedy for gate polarization of
    Zhao et al. (2019). At inference the gate is deterministic.

    Args:
        num_experts: int. Number of experts to weigh.
        temperature: float. Softmax temperature; below 1 sharpens the gate
            (towards one-hot as it goes to 0), above 1 flattens it.
        dropout: float in [0, 1). Probability of dropping each expert in
            training.
        use_bias: bool. Whether the gate logits have a bias.
        kernel_initializer: initializer for the gate kernel.
        bias_initializer: initializer for the gate bias.
        kernel_regularizer: optional regularizer for the gate kernel.
        seed: optional int, seed of the gate dropout.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of shape `(batch, features)`.
        training: bool, whether gate dropout applies.

    Returns:
        Tensor of shape `(batch, num_experts)`; each row sums to 1.

    Example:
    >>> gate = ExpertGate(num_experts=4)
    >>> tuple(gate(np.ones((2, 8))).shape)
    (2, 4)

    Reference:
        - Ma et al., "Modeling Task Relationships in Multi-task Learning with
          Multi-gate Mixture-of-Experts", KDD 2018.
        - Zhao et al., "Recommending What Video to Watch Next: A Multitask
          Ranking System", RecSys 2019.
    """

    def __init__(
        self,
        num_experts: int,
        temperature: float = 1.0,
        dropout: float = 0.0,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = _validation.positive_int("num_experts", num_experts)
        self.temperature = _validation.positive_float(
            "temperature", temperature
        )
        self.dropout = _validation.rate("dropout", dropout)
        _weights_config.set_weight_args(
            self,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.num_experts),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.num_experts,),
                initializer=self.bias_initializer,
            )
            if self.use_bias
            else None
        )

    def call(self, inputs, training=None):
        logits = _weights_config.linear(inputs, self.kernel, self.bias)
        return self.weights_from_logits(logits, training=training)

    def weights_from_logits(self, logits, training=None):
        """The gate weights from `inputs @ kernel + bias` computed elsewhere.

        `MMoE` computes the logits of all its gates, which read the same
        input, in one matmul with their kernels side by side, and finishes
        them together: its gates share temperature and dropout rate.

        Args:
            logits: tensor `(..., num_experts)`, `inputs @ kernel + bias`;
                the softmax and the dropout mask are per row of experts.
            training: bool, whether gate dropout applies.
        """
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if training and self.dropout > 0:
            keep = (
                keras.random.uniform(
                    ops.shape(logits), seed=self.seed_generator
                )
                >= self.dropout
            )
            # A row that dropped every expert keeps them all instead.
            keep = ops.logical_or(
                keep, ops.logical_not(ops.any(keep, axis=-1, keepdims=True))
            )
            # Softmax over the kept experts = renormalized dropout.
            logits = ops.where(keep, logits, ops.full_like(logits, -1e9))
        return _softmax(logits)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_experts)

    def get_config(self):
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "temperature": self.temperature,
            "dropout": self.dropout,
            **_weights_config.weight_args_config(self),
            "seed": self.seed,
        }


def _softmax(logits):
    """Softmax over the last axis, written as `exp(l - max) / sum`.

    The same values as `ops.softmax`, from elementwise ops and two
    reductions. On TensorFlow's CPU kernels this is faster for a gate's
    small `(batch, gates, experts)` tensors: half the time of the whole
    layer's call at batch 1, faster at batch 32, and a training step 1-3 %
    slower at batch 1024 (benchmarks/README.md, "The gate softmax"). The
    shift by the row's maximum is held constant for the gradient: a softmax
    does not change when all its logits move together.
    """
    shifted = ops.subtract(
        logits, ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    )
    e = ops.exp(shifted)
    return ops.divide(e, ops.sum(e, axis=-1, keepdims=True))
