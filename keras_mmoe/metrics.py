"""Metrics that skip missing labels (label -1) of a multi-task model.

Each metric gives a missing label (any negative label; -1 by convention) a
sample weight of 0 and replaces it by a valid class before the computation,
so a task is scored on exactly the examples labelled for it. Binary tasks
have one sigmoid unit, `y_pred` of shape `(batch, 1)`; multi-class tasks a
softmax, `y_pred` of shape `(batch, num_classes)`. Labels have shape
`(batch,)` or `(batch, 1)`.
"""

import keras
from keras import ops

from keras_mmoe.losses import _labelled, _num_classes


def _weights(mask, sample_weight):
    """`mask * sample_weight`, the weight brought to the rank of `mask`."""
    if sample_weight is None:
        return mask
    sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), mask.dtype)
    rank = len(mask.shape)
    while len(sample_weight.shape) > rank:
        sample_weight = ops.squeeze(sample_weight, axis=-1)
    while 0 < len(sample_weight.shape) < rank:
        sample_weight = ops.expand_dims(sample_weight, axis=-1)
    return mask * sample_weight


def _binary(y_true, y_pred, sample_weight, dtype):
    """Labels and weights shaped like the `(batch, 1)` predictions."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.reshape(ops.convert_to_tensor(y_true), ops.shape(y_pred))
    mask, y_true = _labelled(ops.cast(y_true, dtype), dtype)
    return y_true, y_pred, _weights(mask, sample_weight)


def _sparse(y_true, y_pred, sample_weight, dtype):
    """Labels `(batch,)` as int32, predictions, weights `(batch,)`."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
    mask, y_true = _labelled(ops.cast(y_true, "int32"), dtype)
    return y_true, y_pred, _weights(mask, sample_weight)


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedBinaryAccuracy(keras.metrics.BinaryAccuracy):
    """Binary accuracy over the labelled examples (labels 0/1, -1 missing).

    Args:
        name: str. Name of the metric.
        dtype: dtype of the metric result.
        threshold: float. A probability above it predicts 1.

    Example:
    >>> m = MaskedBinaryAccuracy()
    >>> m.update_state(np.array([1, 0, -1]), np.array([[0.9], [0.8], [0.1]]))
    >>> float(m.result())
    0.5
    """

    def __init__(
        self,
        name: str = "masked_binary_accuracy",
        dtype=None,
        threshold: float = 0.5,
    ):
        super().__init__(name=name, dtype=dtype, threshold=threshold)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, sample_weight = _binary(
            y_true, y_pred, sample_weight, self.dtype
        )
        return super().update_state(y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedAUC(keras.metrics.AUC):
    """Area under the ROC (or PR) curve over the labelled examples.

    `keras.metrics.AUC` for a binary task (labels 0/1, -1 missing): missing
    labels carry zero weight in the confusion counts. Like the Keras metric
    it approximates the curve on `num_thresholds` thresholds.

    Args:
        name: str. Name of the metric.
        **kwargs: arguments of `keras.metrics.AUC` (`num_thresholds`,
            `curve`, `summation_method`, `thresholds`, `from_logits`,
            `dtype`, ...).

    Example:
    >>> m = MaskedAUC()
    >>> m.update_state(np.array([1, 0, -1]), np.array([[0.9], [0.2], [0.95]]))
    >>> float(m.result())
    1.0
    """

    def __init__(self, name: str = "masked_auc", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, sample_weight = _binary(
            y_true, y_pred, sample_weight, self.dtype
        )
        return super().update_state(y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedSparseCategoricalAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy of the argmax class over the labelled examples (-1 missing).

    Args:
        name: str. Name of the metric.
        dtype: dtype of the metric result.

    Example:
    >>> m = MaskedSparseCategoricalAccuracy()
    >>> y_pred = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0, 0, 1.0]])
    >>> m.update_state(np.array([1, 2, -1]), y_pred)
    >>> float(m.result())
    0.5
    """

    def __init__(
        self, name: str = "masked_sparse_categorical_accuracy", dtype=None
    ):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, sample_weight = _sparse(
            y_true, y_pred, sample_weight, self.dtype
        )
        return super().update_state(y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MaskedMacroF1(keras.metrics.Metric):
    """Macro-averaged F1 of the argmax class over the labelled examples.

    Accumulates per-class (sample-weighted) true positives, false positives
    and false negatives of `argmax(y_pred)` against the labels, missing labels
    (-1) left out. The result is the mean of the per-class F1
    `2 tp / (2 tp + fp + fn)` over the classes that occur among the labels or
    the predictions, as `sklearn.metrics.f1_score(average="macro")` does; 0
    before any labelled example.

    Args:
        num_classes: int >= 2. Number of classes (width of `y_pred`).
        name: str. Name of the metric.
        dtype: dtype of the metric result.

    Call arguments (`update_state`):
        y_true: integer labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: scores of shape `(batch, num_classes)`.
        sample_weight: optional per-example weights of shape `(batch,)`.

    Example:
    >>> m = MaskedMacroF1(num_classes=3)
    >>> y_pred = np.eye(3)[[0, 1, 1, 2]]
    >>> m.update_state(np.array([0, 1, 2, -1]), y_pred)
    >>> round(float(m.result()), 4)  # F1 per class: 1, 2/3, 0
    0.5556
    """

    def __init__(
        self, num_classes: int, name: str = "masked_macro_f1", dtype=None
    ):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = _num_classes(num_classes)
        self._direction = "up"
        self.true_positives, self.false_positives, self.false_negatives = (
            self.add_variable(
                shape=(self.num_classes,),
                initializer="zeros",
                dtype=self.dtype,
                name=variable,
            )
            for variable in (
                "true_positives",
                "false_positives",
                "false_negatives",
            )
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, weight = _sparse(
            y_true, y_pred, sample_weight, self.dtype
        )
        weight = ops.expand_dims(weight, -1)  # (batch, 1)
        true = ops.one_hot(y_true, self.num_classes, dtype=self.dtype)
        pred = ops.one_hot(
            ops.argmax(y_pred, axis=-1), self.num_classes, dtype=self.dtype
        )  # (batch, num_classes)
        self.true_positives.assign_add(ops.sum(weight * true * pred, axis=0))
        self.false_positives.assign_add(
            ops.sum(weight * (1 - true) * pred, axis=0)
        )
        self.false_negatives.assign_add(
            ops.sum(weight * true * (1 - pred), axis=0)
        )

    def result(self):
        denominator = (
            2 * self.true_positives
            + self.false_positives
            + self.false_negatives
        )
        f1 = ops.divide_no_nan(2 * self.true_positives, denominator)
        occurring = ops.sum(ops.cast(denominator > 0, self.dtype))
        return ops.sum(f1) / ops.maximum(occurring, 1.0)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def default_metrics_for(num_classes: int) -> list[keras.metrics.Metric]:
    """Fresh masked metrics for a task with `num_classes` classes.

    Binary tasks (`num_classes == 2`, one sigmoid unit) get `"accuracy"` and
    `"auc"`; multi-class tasks get `"accuracy"` and `"macro_f1"`. Keras
    prefixes each name with the output name (`"ctr_auc"`).

    Args:
        num_classes: int >= 2. Number of classes of the task.

    Returns:
        A list of new `keras.metrics.Metric` instances.

    Example:
    >>> [m.name for m in default_metrics_for(5)]
    ['accuracy', 'macro_f1']
    """
    if _num_classes(num_classes) == 2:
        return [MaskedBinaryAccuracy(name="accuracy"), MaskedAUC(name="auc")]
    return [
        MaskedSparseCategoricalAccuracy(name="accuracy"),
        MaskedMacroF1(num_classes, name="macro_f1"),
    ]
