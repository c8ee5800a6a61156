"""TextEncoder: padded token ids -> one vector per text."""

import keras
from keras import ops

from keras_mmoe import _initializers, _validation
from keras_mmoe.transformer_block import TransformerBlock

ENCODERS = ("mean", "mean_max", "cnn", "transformer")


def _block_part(name: str) -> property:
    """A read-only view of the transformer block's sub-layer `name`."""
    return property(lambda self: getattr(self.transformer_block, name, None))


@keras.saving.register_keras_serializable(package="keras_mmoe")
class TextEncoder(keras.layers.Layer):
    """Encodes padded token ids into one fixed-size vector per text.

    Id 0 is padding. The padding mask is computed from the ids themselves
    (`ids != 0`), not taken from Keras implicit mask propagation, so the layer
    behaves the same in functional and subclassed models and on every
    backend. Padding embeddings are zeroed, and padding never enters a pooled
    value: adding trailing padding leaves the output unchanged, and a text of
    padding only encodes to a zero vector (never NaN).

    Encoders (`output_dim` in brackets):

    - `"mean"`: mean of the embeddings of the non-padding tokens
      (`embedding_dim`).
    - `"mean_max"`: that mean concatenated with the element-wise max over the
      non-padding tokens (`2 * embedding_dim`).
    - `"cnn"`: one `Conv1D` of `num_filters` filters per kernel size, each
      followed by a max over the non-padding positions, concatenated (Kim,
      2014) (`num_filters * len(kernel_sizes)`). Convolutions are causal:
      the window at token `t` reads tokens `t - k + 1 .. t`, zero embeddings
      before the text, so the output does not depend on trailing padding
      and a text shorter than a kernel still has a window. With
      `skip_padding=True` the convolutions run over the texts packed end to
      end instead of over the padded batch (see `skip_padding`).
    - `"transformer"`: token plus learned position embeddings (positions
      `0 .. max_length - 1`), one `TransformerBlock` (post-norm multi-head
      self-attention that ignores padding keys, feed-forward of width
      `ff_dim`), then the mean over the non-padding tokens
      (`embedding_dim`).

    Args:
        vocabulary_size: int. Number of token ids, padding id 0 included.
        embedding_dim: int. Width of the token embeddings.
        encoder: str. One of `"mean"`, `"mean_max"`, `"cnn"`,
            `"transformer"`.
        num_filters: int. Filters per kernel size (`"cnn"`).
        kernel_sizes: int or list of ints. Convolution widths (`"cnn"`).
        num_heads: int. Attention heads (`"transformer"`); must divide
            `embedding_dim`.
        ff_dim: int. Hidden width of the feed-forward (`"transformer"`).
        max_length: optional int. Longest sequence the position embedding
            covers; required by `"transformer"`, ignored otherwise.
        dropout: float in [0, 1). Dropout on the token embeddings in training,
            and in the Transformer block on attention weights and both
            residual branches.
        activation: activation of the convolutions and of the feed-forward
            hidden layer.
        embeddings_initializer: initializer of the token (and position)
            embeddings.
        kernel_initializer: initializer of the convolution and Transformer
            kernels; each sub-layer gets its own copy.
        embeddings_regularizer: optional regularizer of the token embeddings.
        skip_padding: bool (`"cnn"` only; the other encoders ignore it).
            Convolve each text only up to its last token: the texts are
            packed into one sequence, each after `max(kernel_sizes) - 1`
            zero embeddings, so no window reads another text. Outputs and
            gradients equal the padded computation; the work shrinks with
            the share of padding. With `dropout`
            the random draws differ from the padded path's. The packed
            length depends on the data, so under TensorFlow and PyTorch
            the layer sets `supports_jit = False` (Keras then compiles the
            model without XLA). Under JAX, whose compiled steps have
            static shapes, the layer stays compilable and a compiled step
            (`jax.jit`, Keras's `fit`) computes the padded convolution,
            with the same outputs; eager calls pack.
        seed: optional int, seed of the dropout.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: int tensor `(batch, sequence_length)` of token ids, 0 for
            padding. For `"transformer"`, `sequence_length <= max_length`.
        training: bool, whether dropout applies.

    Returns:
        Tensor `(batch, output_dim)`.

    Example:
    >>> encoder = TextEncoder(vocabulary_size=100, embedding_dim=8)
    >>> tuple(encoder(np.array([[5, 7, 0, 0], [3, 0, 0, 0]])).shape)
    (2, 8)
    >>> TextEncoder(100, 8, encoder="cnn", num_filters=4).output_dim
    12

    Reference:
        - Kim, "Convolutional Neural Networks for Sentence Classification",
          EMNLP 2014.
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    # Keras stores a sub-layer's weights in a `.keras` file under the first
    # attribute name that reaches it, public names in sorted order. These
    # names keep the block's weights at `attention/`, `attention_norm/` and
    # `feedforward_*/` of the encoder, where keras-mmoe 0.1.0 files hold
    # them (text_encoder_test loads such a file).
    attention = _block_part("attention")
    attention_norm = _block_part("attention_norm")
    feedforward_hidden = _block_part("feedforward_hidden")
    feedforward_output = _block_part("feedforward_output")
    feedforward_norm = _block_part("feedforward_norm")

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 64,
        encoder: str = "mean",
        num_filters: int = 64,
        kernel_sizes=(2, 3, 4),
        num_heads: int = 2,
        ff_dim: int = 128,
        max_length: int | None = None,
        dropout: float = 0.0,
        activation="relu",
        embeddings_initializer="uniform",
        kernel_initializer="glorot_uniform",
        embeddings_regularizer=None,
        skip_padding: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = _validation.positive_int(
            "vocabulary_size", vocabulary_size
        )
        self.embedding_dim = _validation.positive_int(
            "embedding_dim", embedding_dim
        )
        if encoder not in ENCODERS:
            raise ValueError(
                f"`encoder` expected one of {ENCODERS}. "
                f"Received: encoder={encoder!r}"
            )
        self.encoder = encoder
        self.num_filters = _validation.positive_int("num_filters", num_filters)
        self.kernel_sizes = _validation.units_list("kernel_sizes", kernel_sizes)
        self.num_heads = _validation.positive_int("num_heads", num_heads)
        self.ff_dim = _validation.positive_int("ff_dim", ff_dim)
        self.max_length = (
            None
            if max_length is None
            else _validation.positive_int("max_length", max_length)
        )
        self.dropout = _validation.rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.embeddings_regularizer = keras.regularizers.get(
            embeddings_regularizer
        )
        self.skip_padding = _validation.boolean("skip_padding", skip_padding)
        if (
            skip_padding
            and encoder == "cnn"
            and keras.backend.backend() != "jax"
        ):
            self.supports_jit = False
        self.seed = seed
        if encoder == "transformer":
            if self.max_length is None:
                raise ValueError(
                    "`max_length` is required by encoder='transformer' (it "
                    "sizes the position embedding). "
                    f"Received: max_length={max_length!r}"
                )
            if embedding_dim % num_heads:
                raise ValueError(
                    "`num_heads` must divide `embedding_dim`. Received: "
                    f"num_heads={num_heads!r}, embedding_dim={embedding_dim!r}"
                )

        if encoder == "cnn":
            self.output_dim = self.num_filters * len(self.kernel_sizes)
        elif encoder == "mean_max":
            self.output_dim = 2 * self.embedding_dim
        else:
            self.output_dim = self.embedding_dim

        # === Layers ===
        # mask_zero stays False: the mask is computed from the ids in call().
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.embedding_dim,
            embeddings_initializer=_initializers.clone(
                self.embeddings_initializer, 0
            ),
            embeddings_regularizer=self.embeddings_regularizer,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy
        )
        self.convolutions = []
        if encoder == "cnn":
            self.convolutions = [
                keras.layers.Conv1D(
                    self.num_filters,
                    width,
                    padding="causal",
                    activation=self.activation,
                    kernel_initializer=_initializers.clone(
                        self.kernel_initializer, i
                    ),
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
                for i, width in enumerate(self.kernel_sizes)
            ]
        self.transformer_block = None
        if encoder == "transformer":
            self.transformer_block = TransformerBlock(
                self.num_heads,
                self.ff_dim,
                dropout=self.dropout,
                activation=self.activation,
                kernel_initializer=self.kernel_initializer,
                seed=seed,
                dtype=self.dtype_policy,
                name="transformer_block",
            )

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                "`TextEncoder` expected token ids of shape (batch, "
                f"sequence_length). Received: input_shape={input_shape}"
            )
        sequence_length = input_shape[1]
        self.token_embedding.build(input_shape)
        embedded_shape = (*input_shape, self.embedding_dim)
        for conv in self.convolutions:
            conv.build(embedded_shape)
        if self.encoder == "transformer":
            if (
                sequence_length is not None
                and sequence_length > self.max_length
            ):
                raise ValueError(
                    "Sequences are longer than the position embedding. "
                    f"Received: sequence_length={sequence_length}, "
                    f"max_length={self.max_length}"
                )
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.max_length, self.embedding_dim),
                initializer=_initializers.clone(self.embeddings_initializer, 1),
            )
            self.transformer_block.build(embedded_shape)

    def call(self, inputs, training=None):
        ids = ops.cast(inputs, "int32")
        # Convolutions and keras.ops.max fail on an empty batch, which
        # serving sends: it encodes to an empty (0, output_dim).
        batch = ops.shape(ids)[0]
        empty = ops.zeros((0, self.output_dim), dtype=self.compute_dtype)
        if isinstance(batch, int):  # Known now: eager, JAX, PyTorch.
            return empty if batch == 0 else self._encode(ids, training)
        # A TensorFlow graph with an unknown batch size decides as it runs.
        return ops.cond(
            batch > 0, lambda: self._encode(ids, training), lambda: empty
        )

    def _encode(self, ids, training):
        mask = ops.not_equal(ids, 0)  # (batch, length)
        if (
            self.encoder == "cnn"
            and self.skip_padding
            and not _is_jax_tracer(ids)
        ):
            return self._packed_cnn(ids, mask, training)
        float_mask = ops.expand_dims(
            ops.cast(mask, self.compute_dtype), -1
        )  # (batch, length, 1)
        h = self.token_embedding(ids)  # (batch, length, embedding_dim)
        if self.encoder == "transformer":
            length = ops.shape(ids)[1]
            h = h + self.position_embeddings[:length]
        h = h * float_mask  # Padding embeddings are zero.
        if self.dropout:
            h = self.embedding_dropout(h, training=training)

        if self.encoder == "mean":
            return _masked_mean(h, float_mask)
        if self.encoder == "mean_max":
            return ops.concatenate(
                [_masked_mean(h, float_mask), _masked_max(h, mask)], axis=-1
            )  # (batch, 2 * embedding_dim)
        if self.encoder == "cnn":
            return ops.concatenate(
                [_masked_max(conv(h), mask) for conv in self.convolutions],
                axis=-1,
            )  # (batch, num_filters * len(kernel_sizes))
        h = self.transformer_block(h, padding_mask=mask, training=training)
        return _masked_mean(h, float_mask)

    def _packed_cnn(self, ids, mask, training):
        """The `"cnn"` encoder over the texts packed end to end.

        Row i keeps its positions up to its last token (padding inside a
        text stays, as zero embeddings) after `lead` zero positions, so every
        causal window reads what it reads in the padded batch. Only the
        packed positions are embedded.
        """
        batch, length = ops.shape(ids)
        lead = max(self.kernel_sizes) - 1
        ends = ops.max(
            ops.where(mask, ops.arange(1, length + 1, dtype="int32"), 0),
            axis=1,
        )  # (batch,) one past each text's last token, 0 if it has none
        # At least one position per row, so that the packed sequence is
        # never empty (a convolution fails on an empty one).
        segment_lengths = ops.maximum(ends + lead, 1)
        starts = ops.cumsum(segment_lengths) - segment_lengths
        row = ops.repeat(
            ops.arange(batch, dtype="int32"), segment_lengths
        )  # (packed,)
        offset = (
            ops.arange(ops.shape(row)[0], dtype="int32")
            - ops.take(starts, row)
            - lead
        )  # position within the text; negative in the lead
        packed_ids = ops.where(
            offset >= 0,
            ops.take(
                ops.reshape(ids, (-1,)),
                row * length + ops.maximum(offset, 0),
            ),
            0,
        )  # (packed,) 0 in the leads and at padding
        is_token = ops.not_equal(packed_ids, 0)
        h = self.token_embedding(packed_ids) * ops.expand_dims(
            ops.cast(is_token, self.compute_dtype), -1
        )  # (packed, embedding_dim), padding embeddings zero
        if self.dropout:
            h = self.embedding_dropout(h, training=training)
        h = ops.expand_dims(h, 0)  # (1, packed, embedding_dim)
        # Max over each text's tokens; leads and padding go to an extra
        # segment `batch`, dropped. A text with no token has an empty
        # segment, set to zeros below.
        segments = ops.where(is_token, row, batch)
        pooled = ops.concatenate(
            [
                ops.segment_max(conv(h)[0], segments, num_segments=batch + 1)[
                    :batch
                ]
                for conv in self.convolutions
            ],
            axis=-1,
        )  # (batch, num_filters * len(kernel_sizes))
        has_token = ops.any(mask, axis=1, keepdims=True)
        return ops.where(has_token, pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "encoder": self.encoder,
            "num_filters": self.num_filters,
            "kernel_sizes": self.kernel_sizes,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "max_length": self.max_length,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "embeddings_regularizer": keras.regularizers.serialize(
                self.embeddings_regularizer
            ),
            "skip_padding": self.skip_padding,
            "seed": self.seed,
        }


def _masked_mean(h, float_mask):
    """Mean over the positions where the mask is 1; zeros if there are none.

    h: (batch, length, dim); float_mask: (batch, length, 1).
    """
    total = ops.sum(h * float_mask, axis=1)  # (batch, dim)
    count = ops.sum(float_mask, axis=1)  # (batch, 1)
    return total / ops.maximum(count, 1.0)


def _masked_max(h, mask):
    """Max over the positions where `mask` is True; zeros if there are none.

    h: (batch, length, dim); mask: bool (batch, length).
    """
    mask = ops.expand_dims(mask, -1)  # (batch, length, 1)
    # Below every value of h yet finite in any dtype (a -1e9 fill is -inf in
    # float16); it never wins the max of a text that has a token.
    lowest = ops.min(h) - 1.0
    largest = ops.max(ops.where(mask, h, lowest), axis=1)  # (batch, dim)
    has_token = ops.any(mask, axis=1)  # (batch, 1)
    return ops.where(has_token, largest, ops.zeros_like(largest))


def _is_jax_tracer(x) -> bool:
    """Whether `x` is an abstract value of a JAX trace (`jax.jit`, Keras's
    shape inference): its shape is fixed and its values unknown, so no
    shape may depend on them. Told by class, as Keras's own JAX utilities
    do, so that other backends never import JAX."""
    return any(
        c.__name__ == "Tracer" and c.__module__.startswith("jax")
        for c in type(x).__mro__
    )
