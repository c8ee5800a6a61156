"""SharedBottom: hard parameter sharing, one MLP for every task."""

import keras

from keras_mmoe import _initializers, _validation, _weights_config


@keras.saving.register_keras_serializable(package="keras_mmoe")
class SharedBottom(keras.layers.Layer):
    """Hard parameter sharing: one bottom MLP whose output every task reads.

    The classic multi-task baseline (Caruana, 1997): tasks share all bottom
    parameters and differ only in their towers, so conflicting tasks pull the
    shared features in different directions (negative transfer).

    All arguments after `num_tasks` are keyword-only.

    Args:
        num_tasks: int. Number of tasks (outputs).
        units: int or list of ints. Widths of the shared MLP.
        activation: activation of the MLP layers.
        dropout: float in [0, 1). Dropout after each layer in training.
        use_bias: bool. Whether the layers have biases.
        kernel_initializer: initializer of the kernels.
        bias_initializer: initializer of the biases.
        kernel_regularizer: optional regularizer of the kernels.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: tensor `(batch, features)`.
        training: bool, whether dropout applies.

    Returns:
        A list of `num_tasks` tensors `(batch, units[-1])`, all the same
        shared representation.

    Example:
    >>> layer = SharedBottom(num_tasks=2, units=[32, 16])
    >>> [tuple(t.shape) for t in layer(np.ones((3, 8)))]
    [(3, 16), (3, 16)]

    Reference:
        - Caruana, "Multitask Learning", Machine Learning 28, 1997.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        units,
        activation="relu",
        dropout: float = 0.0,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = _validation.positive_int("num_tasks", num_tasks)
        self.units = _validation.units_list("units", units)
        self.activation = keras.activations.get(activation)
        self.dropout = _validation.rate("dropout", dropout)
        _weights_config.set_weight_args(
            self,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
        )

        # === Layers ===
        self.dense_layers = [
            keras.layers.Dense(
                width,
                activation=self.activation,
                use_bias=self.use_bias,
                kernel_initializer=_initializers.clone(
                    self.kernel_initializer, i
                ),
                bias_initializer=self.bias_initializer,
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name=f"dense_{i}",
            )
            for i, width in enumerate(self.units)
        ]
        self.dropout_layer = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        shape = input_shape
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        h = inputs
        for layer in self.dense_layers:
            h = layer(h)  # (batch, units[i])
            if self.dropout:
                h = self.dropout_layer(h, training=training)
        return [h] * self.num_tasks

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.units[-1])] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(),
            "num_tasks": self.num_tasks,
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
            **_weights_config.weight_args_config(self),
        }
