"""BagOfNgrams: a linear model over a text's word unigrams and bigrams."""

import keras
from keras import ops

from keras_mmoe import _validation

# Bigram ids are hashed from two token ids in int32 arithmetic (every
# backend has it): each id is first reduced modulo this prime, whose square
# is below 2**31, so `a * P + b` never overflows.
_HASH_PRIME = 46337


@keras.saving.register_keras_serializable(package="keras_mmoe")
class BagOfNgrams(keras.layers.Layer):
    """A linear model over the unigrams and hashed bigrams of padded ids.

    The "wide" half of Wide & Deep for text, and the model of fastText's
    linear classifier: every unigram id `t` and every bigram of adjacent
    non-padding ids `(a, b)` has a row of `units` weights; the output is the
    sum of the rows of a text's n-grams divided by the square root of their
    number. Bigrams are hashed into `ngram_buckets` rows:
    `((a mod P) * P + (b mod P)) mod ngram_buckets`, `P = 46337`. Id 0 is
    padding and adds nothing; a text of padding only gives zeros.

    Added to the deep model's logits (see `MultiTaskModel(wide=...)`), it
    memorizes which words and word pairs go with which class, which a small
    deep model trained jointly on several tasks is slow to do.

    Weights start at zero. `scale` multiplies the table in the forward pass:
    under Adam, whose steps do not depend on the gradient's size, that makes
    this layer learn `scale` times faster than the rest of the model.

    Args:
        vocabulary_size: int. Number of token ids, padding id 0 included.
        units: int. Output width (e.g. the number of logits it adds to).
        ngram_buckets: int >= 0. Hashed bigram rows; 0 for unigrams only.
        scale: float > 0. Multiplier of the weight table.
        kernel_regularizer: optional regularizer of the weight table.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: int tensor `(batch, sequence_length)` of token ids, 0 for
            padding.

    Returns:
        Tensor `(batch, units)`.

    Example:
    >>> layer = BagOfNgrams(vocabulary_size=10, units=2, ngram_buckets=5)
    >>> tuple(layer(np.array([[3, 4, 0], [0, 0, 0]])).shape)
    (2, 2)

    Reference:
        - Cheng et al., "Wide & Deep Learning for Recommender Systems",
          DLRS 2016.
        - Joulin et al., "Bag of Tricks for Efficient Text Classification",
          EACL 2017.
    """

    def __init__(
        self,
        vocabulary_size: int,
        units: int,
        ngram_buckets: int = 0,
        scale: float = 1.0,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = _validation.positive_int(
            "vocabulary_size", vocabulary_size
        )
        self.units = _validation.positive_int("units", units)
        self.ngram_buckets = _validation.non_negative_int(
            "ngram_buckets", ngram_buckets
        )
        self.scale = _validation.positive_float("scale", scale)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.vocabulary_size + self.ngram_buckets, self.units),
            initializer="zeros",
            regularizer=self.kernel_regularizer,
        )

    def call(self, inputs):
        ids = ops.cast(inputs, "int32")  # (batch, length)
        present = ops.cast(ops.not_equal(ids, 0), self.compute_dtype)
        if self.ngram_buckets:
            first, second = ids[:, :-1], ids[:, 1:]  # (batch, length - 1)
            bigrams = ops.mod(
                ops.mod(first, _HASH_PRIME) * _HASH_PRIME
                + ops.mod(second, _HASH_PRIME),
                self.ngram_buckets,
            )
            ids = ops.concatenate([ids, bigrams + self.vocabulary_size], 1)
            present = ops.concatenate(
                [present, present[:, :-1] * present[:, 1:]], 1
            )  # (batch, 2 * length - 1)
        rows = ops.take(self.kernel, ids, axis=0)  # (batch, n, units)
        total = ops.sum(rows * present[..., None], axis=1)  # (batch, units)
        count = ops.sum(present, axis=1, keepdims=True)  # (batch, 1)
        return self.scale * total / ops.sqrt(ops.maximum(count, 1.0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "units": self.units,
            "ngram_buckets": self.ngram_buckets,
            "scale": self.scale,
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
        }
