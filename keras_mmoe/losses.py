"""Cross-entropy losses that skip missing labels (label -1).

In multi-task data most examples carry labels for only some tasks. A missing
label is written -1 (any negative label counts as missing). These losses give
a missing label no loss and no gradient, and average each task's loss over
the examples labelled for that task in the batch, so a rarely labelled task
is not diluted by the batch size. A batch with no label for the task gives a
loss of exactly 0 and zero gradients.
"""

import keras
from keras import ops


def _num_classes(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(
            "`num_classes` expected an integer >= 2. "
            f"Received: num_classes={value!r}"
        )
    return value


def _labelled(y_true, dtype):
    """(mask, labels): mask 1 where labelled; missing labels set to 0.

    A valid stand-in class keeps log and one-hot finite on missing rows, so
    their zero weight gives zero, not NaN, gradients.
    """
    is_labelled = ops.greater_equal(y_true, 0)
    labels = ops.where(is_labelled, y_true, ops.zeros_like(y_true))
    return ops.cast(is_labelled, dtype), labels


class _MaskedLoss(keras.losses.Loss):
    """Mean of a per-label loss over the labelled examples of the batch.

    `call` returns `mask * loss / max(num_labelled, 1)` per example, and the
    reduction is fixed to `"sum"`, so the sample weights Keras multiplies in
    before summing stay normalized by the number of labelled examples.
    Keras applies no distribution scaling to a `"sum"` reduction: under a
    multi-replica strategy each replica averages over its own labelled
    examples, and `MultiTaskModel.compute_loss` divides the total by the
    number of replicas so that the summed gradients are their mean.
    """

    def __init__(
        self, from_logits: bool = False, name: str | None = None, dtype=None
    ):
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {
            "name": self.name,
            "from_logits": self.from_logits,
            "dtype": self.dtype,
        }


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedBinaryCrossentropy(_MaskedLoss):
    """Binary cross-entropy averaged over the labelled examples only.

    Labels are 0, 1, or -1 for missing. A missing label adds nothing to the
    loss (nor to its gradient); the loss is the (sample-weighted) sum over the
    labelled examples divided by their number, and exactly 0 for a batch with
    no label. The reduction is always `"sum"` over these normalized terms.

    Args:
        from_logits: bool. Whether `y_pred` holds logits instead of sigmoid
            probabilities.
        name: str. Name of the loss.
        dtype: dtype of the loss computation, `keras.backend.floatx()` by
            default.

    Call arguments:
        y_true: labels of shape `(batch,)` or `(batch, 1)`, in {0, 1, -1}.
        y_pred: probabilities (or logits) of shape `(batch, 1)` or `(batch,)`.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Returns:
        Scalar loss.

    Example:
    >>> loss = MaskedBinaryCrossentropy()
    >>> float(loss(np.array([1, -1]), np.array([[0.5], [0.9]])))  # ln 2
    0.6931...
    """

    def __init__(
        self,
        from_logits: bool = False,
        name: str = "masked_binary_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(y_true, ops.shape(y_pred))
        mask, y_true = _labelled(y_true, y_pred.dtype)  # like y_pred
        losses = mask * ops.binary_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )
        num_labelled = ops.maximum(ops.sum(mask), 1.0)
        if len(losses.shape) > 1:
            losses = ops.sum(losses, axis=-1)  # (batch,)
        return losses / num_labelled


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedSparseCategoricalCrossentropy(_MaskedLoss):
    """Sparse categorical cross-entropy over the labelled examples only.

    Labels are class indices `0..num_classes-1`, or -1 for missing. A missing
    label adds nothing to the loss (nor to its gradient); the loss is the
    (sample-weighted) sum over the labelled examples divided by their number,
    and exactly 0 for a batch with no label. The reduction is always `"sum"`
    over these normalized terms.

    Args:
        from_logits: bool. Whether `y_pred` holds logits instead of softmax
            probabilities.
        name: str. Name of the loss.
        dtype: dtype of the loss computation, `keras.backend.floatx()` by
            default.

    Call arguments:
        y_true: integer labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: probabilities (or logits) of shape `(batch, num_classes)`.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Returns:
        Scalar loss.

    Example:
    >>> loss = MaskedSparseCategoricalCrossentropy()
    >>> y_pred = np.array([[0.25, 0.25, 0.5], [0.9, 0.05, 0.05]])
    >>> float(loss(np.array([2, -1]), y_pred))  # ln 2
    0.6931...
    """

    def __init__(
        self,
        from_logits: bool = False,
        name: str = "masked_sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(y_true, (-1,))  # (batch,)
        mask, y_true = _labelled(y_true, y_pred.dtype)
        losses = mask * ops.sparse_categorical_crossentropy(
            ops.cast(y_true, "int32"), y_pred, from_logits=self.from_logits
        )  # (batch,)
        return losses / ops.maximum(ops.sum(mask), 1.0)


def masked_loss_for(
    num_classes: int, from_logits: bool = False
) -> keras.losses.Loss:
    """The masked loss of a task with `num_classes` classes.

    A binary task (`num_classes == 2`) has one sigmoid unit, labels 0/1/-1,
    and gets `MaskedBinaryCrossentropy`; a task with more classes has a
    softmax over `num_classes` units, labels `0..num_classes-1` or -1, and
    gets `MaskedSparseCategoricalCrossentropy`.

    Args:
        num_classes: int >= 2. Number of classes of the task.
        from_logits: bool. Whether the task's output is logits.

    Returns:
        A fresh `keras.losses.Loss` instance.

    Example:
    >>> masked_loss_for(2).name
    'masked_binary_crossentropy'
    """
    if _num_classes(num_classes) == 2:
        return MaskedBinaryCrossentropy(from_logits=from_logits)
    return MaskedSparseCategoricalCrossentropy(from_logits=from_logits)
