import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from keras_mmoe.metrics import (
    MaskedAUC,
    MaskedBinaryAccuracy,
    MaskedMacroF1,
    MaskedSparseCategoricalAccuracy,
    default_metrics_for,
)

RNG = np.random.default_rng(0)
N = 40
NUM_CLASSES = 4
BINARY = RNG.integers(0, 2, N)
BINARY[RNG.uniform(size=N) < 0.3] = -1
SPARSE = RNG.integers(0, NUM_CLASSES, N)
SPARSE[RNG.uniform(size=N) < 0.3] = -1
PROBS = RNG.uniform(0, 1, (N, 1)).astype("float32")
SCORES = RNG.dirichlet(np.ones(NUM_CLASSES), N).astype("float32")
WEIGHTS = RNG.uniform(0.5, 2.0, N).astype("float32")


def _result(metric, y_true, y_pred, sample_weight=None, batches=2):
    """Streams the rows through `update_state` in `batches` chunks."""
    for rows in np.array_split(np.arange(len(y_true)), batches):
        metric.update_state(
            y_true[rows],
            y_pred[rows],
            None if sample_weight is None else sample_weight[rows],
        )
    return float(metric.result())


@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_binary_accuracy_over_labelled_rows(label_shape):
    labelled = BINARY >= 0
    correct = (PROBS[:, 0] > 0.5) == BINARY
    np.testing.assert_allclose(
        _result(MaskedBinaryAccuracy(), BINARY.reshape(label_shape), PROBS),
        correct[labelled].mean(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _result(MaskedBinaryAccuracy(), BINARY, PROBS, WEIGHTS),
        np.average(correct[labelled], weights=WEIGHTS[labelled]),
        rtol=1e-6,
    )


def test_auc_equals_sklearn_over_labelled_rows():
    labelled = BINARY >= 0
    y, p, w = BINARY[labelled], PROBS[labelled, 0], WEIGHTS[labelled]
    # Thresholds between all distinct scores make the Keras curve exact.
    exact = {"thresholds": list(np.unique(PROBS) - 1e-7)}
    np.testing.assert_allclose(
        _result(MaskedAUC(**exact), BINARY, PROBS),
        roc_auc_score(y, p),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        _result(MaskedAUC(**exact), BINARY[:, None], PROBS, WEIGHTS),
        roc_auc_score(y, p, sample_weight=w),
        rtol=1e-5,
    )
    # The default 200 thresholds approximate it.
    np.testing.assert_allclose(
        _result(MaskedAUC(), BINARY, PROBS), roc_auc_score(y, p), atol=1e-2
    )


def test_auc_from_logits():
    labelled = BINARY >= 0
    logits = np.log(PROBS / (1 - PROBS))
    np.testing.assert_allclose(
        _result(
            MaskedAUC(from_logits=True, num_thresholds=2000), BINARY, logits
        ),
        roc_auc_score(BINARY[labelled], PROBS[labelled, 0]),
        atol=2e-3,
    )


@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_sparse_accuracy_over_labelled_rows(label_shape):
    labelled = SPARSE >= 0
    correct = SCORES.argmax(axis=1) == SPARSE
    np.testing.assert_allclose(
        _result(
            MaskedSparseCategoricalAccuracy(),
            SPARSE.reshape(label_shape),
            SCORES,
        ),
        correct[labelled].mean(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _result(MaskedSparseCategoricalAccuracy(), SPARSE, SCORES, WEIGHTS),
        np.average(correct[labelled], weights=WEIGHTS[labelled]),
        rtol=1e-6,
    )


@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_macro_f1_equals_sklearn_over_labelled_rows(label_shape):
    labelled = SPARSE >= 0
    y, pred = SPARSE[labelled], SCORES.argmax(axis=1)[labelled]
    np.testing.assert_allclose(
        _result(
            MaskedMacroF1(NUM_CLASSES),
            SPARSE.reshape(label_shape),
            SCORES,
            batches=3,
        ),
        f1_score(y, pred, average="macro"),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _result(MaskedMacroF1(NUM_CLASSES), SPARSE, SCORES, WEIGHTS),
        f1_score(y, pred, average="macro", sample_weight=WEIGHTS[labelled]),
        rtol=1e-6,
    )


def test_macro_f1_by_hand_and_absent_classes():
    # Class 3 never occurs in labels or predictions: sklearn leaves it out
    # of the average, and so does the metric. Per class: tp, fp, fn =
    # (1, 1, 1), (1, 1, 0), (0, 0, 1) -> F1 1/2, 2/3, 0; mean 7/18.
    y_true = np.array([0, 0, 1, 2, -1, -1])
    y_pred = np.eye(4)[[0, 1, 1, 0, 3, 3]]
    metric = MaskedMacroF1(4)
    metric.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(metric.result()), 7 / 18, rtol=1e-6)
    assert f1_score([0, 0, 1, 2], [0, 1, 1, 0], average="macro") == (
        pytest.approx(7 / 18)
    )
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state(np.array([-1, -1]), y_pred[:2])
    assert float(metric.result()) == 0.0


def test_predictions_on_missing_rows_do_not_matter():
    missing = SPARSE < 0
    scores = SCORES.copy()
    scores[missing] = np.roll(scores[missing], 1, axis=1)
    for metric in (MaskedSparseCategoricalAccuracy, MaskedMacroF1):
        args = (NUM_CLASSES,) if metric is MaskedMacroF1 else ()
        assert _result(metric(*args), SPARSE, scores) == pytest.approx(
            _result(metric(*args), SPARSE, SCORES)
        )


def test_all_missing_gives_zero_not_nan():
    missing = np.full(N, -1)
    for metric, y_pred in (
        (MaskedBinaryAccuracy(), PROBS),
        (MaskedSparseCategoricalAccuracy(), SCORES),
        (MaskedMacroF1(NUM_CLASSES), SCORES),
    ):
        assert _result(metric, missing, y_pred) == 0.0


def test_default_metrics_for():
    binary = default_metrics_for(2)
    assert [m.name for m in binary] == ["accuracy", "auc"]
    assert [type(m) for m in binary] == [MaskedBinaryAccuracy, MaskedAUC]
    multi = default_metrics_for(5)
    assert [m.name for m in multi] == ["accuracy", "macro_f1"]
    assert isinstance(multi[0], MaskedSparseCategoricalAccuracy)
    assert multi[1].num_classes == 5
    assert default_metrics_for(2)[0] is not binary[0]  # Fresh instances.


@pytest.mark.parametrize("num_classes", [1, 2.5, None])
def test_invalid_num_classes_name_the_value(num_classes):
    with pytest.raises(ValueError, match=f"num_classes={num_classes!r}"):
        default_metrics_for(num_classes)
    with pytest.raises(ValueError, match=f"num_classes={num_classes!r}"):
        MaskedMacroF1(num_classes)


@pytest.mark.parametrize(
    "metric",
    [
        MaskedBinaryAccuracy(threshold=0.3, name="acc"),
        MaskedAUC(num_thresholds=50, curve="PR", from_logits=True),
        MaskedAUC(thresholds=[0.2, 0.5, 0.8]),
        MaskedSparseCategoricalAccuracy(),
        MaskedMacroF1(6, name="f1"),
    ],
)
def test_serialization_round_trip(metric):
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()
