"""TfidfLinear: a linear model over the TF-IDF vector of a text's terms."""

import keras
import numpy as np
from keras import ops

from keras_mmoe import _validation


@keras.saving.register_keras_serializable(package="keras_mmoe")
class TfidfLinear(keras.layers.Layer):
    """A linear model over the TF-IDF vector of a text's terms.

    A text arrives as its distinct terms (word n-gram ids from a vocabulary)
    and how often each occurs. Each term gets the weight
    `(1 + log(count)) * idf[id]`, the text's weights are divided by their
    L2 norm, and the output is `sum_j weight_j * kernel[id_j] + bias`: the
    features of scikit-learn's `TfidfVectorizer(sublinear_tf=True)` (smooth
    idf, L2 norm) and a linear model over them, as one layer that reads
    every term of a text however long it is.

    The idf starts at one; `set_document_frequency` sets it from a corpus,
    as `ln((1 + N) / (1 + df)) + 1`. The kernel and bias start at zero: fit
    them with any solver on `term_weights(...)` and assign them (the
    pipeline's Trainer fits a regularized logistic regression per task), or
    train them as usual.

    Args:
        vocabulary_size: int. Number of term ids, padding id 0 included.
        units: int. Output width (e.g. the logits of the tasks it feeds).
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[term_ids, term_counts]` of tensors `(batch, n)`:
            each distinct term of a text once, with its count; id 0 with
            count 0 is padding.

    Returns:
        Tensor `(batch, units)`.

    Example:
    >>> layer = TfidfLinear(vocabulary_size=10, units=3)
    >>> ids = np.array([[4, 7, 0], [2, 0, 0]])
    >>> counts = np.array([[1.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    >>> tuple(layer([ids, counts]).shape)
    (2, 3)

    Reference:
        - Salton and Buckley, "Term-weighting approaches in automatic text
          retrieval", Information Processing & Management, 1988.
        - Wang and Manning, "Baselines and Bigrams: Simple, Good Sentiment
          and Topic Classification", ACL 2012.
    """

    def __init__(
        self,
        vocabulary_size: int,
        units: int,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = _validation.positive_int(
            "vocabulary_size", vocabulary_size
        )
        self.units = _validation.positive_int("units", units)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        _check_input_shape(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.vocabulary_size, self.units),
            initializer="zeros",
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer="zeros"
        )
        self.idf = self.add_weight(
            name="idf",
            shape=(self.vocabulary_size,),
            initializer="ones",
            trainable=False,
        )

    def term_weights(self, inputs):
        """The L2-normalized TF-IDF weight of each term, `(batch, n)`."""
        ids, counts = inputs
        ids = ops.cast(ids, "int32")
        counts = ops.cast(counts, self.compute_dtype)
        present = ops.greater(counts, 0.0)
        sublinear = ops.where(
            present, 1.0 + ops.log(ops.maximum(counts, 1.0)), 0.0
        )
        weights = sublinear * ops.take(self.idf, ids, axis=0)  # (batch, n)
        norm = ops.sqrt(ops.sum(ops.square(weights), axis=1, keepdims=True))
        return weights / ops.maximum(norm, 1e-12)

    def call(self, inputs):
        weights = self.term_weights(inputs)  # (batch, n)
        rows = ops.take(self.kernel, ops.cast(inputs[0], "int32"), axis=0)
        # (batch, n, units) -> (batch, units)
        total = ops.einsum("bn,bnu->bu", weights, rows)
        return ops.add(total, self.bias)

    def set_document_frequency(self, document_frequency, num_documents):
        """Sets the idf from each term id's document count in a corpus.

        Args:
            document_frequency: array `(vocabulary_size,)`: in how many of
                the corpus's texts each id occurs.
            num_documents: int. Number of texts in the corpus.
        """
        df = np.asarray(document_frequency, dtype="float64")
        if df.shape != (self.vocabulary_size,):
            raise ValueError(
                "`document_frequency` expected shape "
                f"({self.vocabulary_size},). Received: shape={df.shape}"
            )
        n = _validation.positive_int("num_documents", num_documents)
        if not self.built:
            self.build([(None, None), (None, None)])
        self.idf.assign(np.log((1.0 + n) / (1.0 + df)) + 1.0)

    def compute_output_shape(self, input_shape):
        _check_input_shape(input_shape)
        return (input_shape[0][0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "units": self.units,
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
        }


def _check_input_shape(input_shape) -> None:
    if not (
        isinstance(input_shape, (list, tuple))
        and len(input_shape) == 2
        and all(
            isinstance(s, (list, tuple)) and len(s) == 2 for s in input_shape
        )
    ):
        raise ValueError(
            "TfidfLinear expects `[term_ids, term_counts]`, two tensors "
            f"(batch, n). Received input shape: {input_shape}"
        )
