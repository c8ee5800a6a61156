"""TransformerBlock: one post-norm Transformer encoder block over padding."""

import keras
from keras import ops

from keras_mmoe import _initializers, _validation


@keras.saving.register_keras_serializable(package="keras_mmoe")
class TransformerBlock(keras.layers.Layer):
    """One post-norm Transformer encoder block that ignores padding keys.

    Multi-head self-attention, residual, LayerNorm, a feed-forward of two
    Dense layers, residual, LayerNorm (Vaswani et al., 2017). Queries attend
    to the non-padding positions only. A sequence of padding only lets its
    queries attend everywhere instead: a row with no key allowed could give
    NaN, and such a sequence carries no tokens for a caller to pool.

    Args:
        num_heads: int. Attention heads; must divide the width of the
            inputs (each head has `width // num_heads` dimensions).
        ff_dim: int. Hidden width of the feed-forward.
        dropout: float in [0, 1). Dropout in training on the attention
            weights and on both residual branches.
        activation: activation of the feed-forward hidden layer.
        kernel_initializer: initializer of the attention and feed-forward
            kernels; each sub-layer gets its own copy.
        seed: optional int, seed of the dropout.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, length, width)`.
        padding_mask: optional bool tensor `(batch, length)`, True at the
            positions to attend to; None attends everywhere.
        training: bool, whether dropout applies.

    Returns:
        Tensor `(batch, length, width)`.

    Example:
    >>> block = TransformerBlock(num_heads=2, ff_dim=16)
    >>> x = np.ones((2, 5, 8), dtype="float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)
    >>> tuple(block(x, padding_mask=mask).shape)
    (2, 5, 8)

    Reference:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.0,
        activation="relu",
        kernel_initializer="glorot_uniform",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = _validation.positive_int("num_heads", num_heads)
        self.ff_dim = _validation.positive_int("ff_dim", ff_dim)
        self.dropout = _validation.rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "`TransformerBlock` expected inputs of shape (batch, length, "
                f"width). Received: input_shape={input_shape}"
            )
        width = input_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                "`num_heads` must divide the width of the inputs. Received: "
                f"num_heads={self.num_heads}, width={width}"
            )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=width // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=_initializers.clone(self.kernel_initializer, 0),
            seed=self.seed,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention_norm = keras.layers.LayerNormalization(
            dtype=self.dtype_policy, name="attention_norm"
        )
        self.feedforward_hidden = keras.layers.Dense(
            self.ff_dim,
            activation=self.activation,
            kernel_initializer=_initializers.clone(self.kernel_initializer, 1),
            dtype=self.dtype_policy,
            name="feedforward_hidden",
        )
        self.feedforward_output = keras.layers.Dense(
            width,
            kernel_initializer=_initializers.clone(self.kernel_initializer, 2),
            dtype=self.dtype_policy,
            name="feedforward_output",
        )
        self.feedforward_norm = keras.layers.LayerNormalization(
            dtype=self.dtype_policy, name="feedforward_norm"
        )
        self.residual_dropout = keras.layers.Dropout(
            self.dropout, seed=self.seed, dtype=self.dtype_policy
        )
        self.attention.build(input_shape, input_shape)
        self.attention_norm.build(input_shape)
        self.feedforward_hidden.build(input_shape)
        self.feedforward_output.build((*input_shape[:-1], self.ff_dim))
        self.feedforward_norm.build(input_shape)

    def call(self, inputs, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            mask = ops.cast(padding_mask, "bool")  # (batch, length)
            key_mask = ops.logical_or(
                mask, ops.logical_not(ops.any(mask, axis=-1, keepdims=True))
            )
            attention_mask = ops.expand_dims(key_mask, 1)  # (batch, 1, length)
        attended = self.attention(
            inputs, inputs, attention_mask=attention_mask, training=training
        )  # (batch, length, width)
        if self.dropout:
            attended = self.residual_dropout(attended, training=training)
        h = self.attention_norm(inputs + attended)
        ff = self.feedforward_output(self.feedforward_hidden(h))
        if self.dropout:
            ff = self.residual_dropout(ff, training=training)
        return self.feedforward_norm(h + ff)  # (batch, length, width)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "seed": self.seed,
        }
