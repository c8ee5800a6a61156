import keras
import numpy as np
import pytest

from keras_mmoe import _testing, metrics
from keras_mmoe.losses import (
    MaskedBinaryCrossentropy,
    MaskedSparseCategoricalCrossentropy,
    masked_loss_for,
)

RNG = np.random.default_rng(0)
BATCH = 12
# Labels of one binary and one 4-class task; -1 is missing.
BINARY = np.array([1, 0, -1, 1, -1, 0, 0, 1, -1, 1, 0, -1])
SPARSE = np.array([3, -1, 0, 2, 1, -1, -1, 2, 0, 1, -1, 3])
PROBS = RNG.uniform(0.05, 0.95, (BATCH, 1)).astype("float32")
LOGITS = RNG.normal(0, 2, (BATCH, 4)).astype("float32")
SOFTMAX = (np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)).astype(
    "float32"
)
WEIGHTS = RNG.uniform(0.5, 2.0, BATCH).astype("float32")


def _numpy_bce(y, p):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _numpy_sce(y, probs):
    return -np.log(probs[np.arange(len(y)), y])


@pytest.mark.parametrize("label_shape", [(BATCH,), (BATCH, 1)])
def test_binary_equals_plain_loss_over_labelled_rows(label_shape):
    labelled = BINARY >= 0
    masked = MaskedBinaryCrossentropy()(BINARY.reshape(label_shape), PROBS)
    plain = keras.losses.BinaryCrossentropy()(
        BINARY[labelled, None], PROBS[labelled]
    )
    expected = _numpy_bce(BINARY[labelled], PROBS[labelled, 0]).mean()
    np.testing.assert_allclose(float(masked), float(plain), rtol=1e-6)
    np.testing.assert_allclose(float(masked), expected, rtol=1e-5)


def test_binary_from_logits():
    logits = LOGITS[:, :1]
    labelled = BINARY >= 0
    masked = MaskedBinaryCrossentropy(from_logits=True)(BINARY, logits)
    expected = _numpy_bce(
        BINARY[labelled], 1 / (1 + np.exp(-logits[labelled, 0]))
    ).mean()
    np.testing.assert_allclose(float(masked), expected, rtol=1e-5)


@pytest.mark.parametrize("label_shape", [(BATCH,), (BATCH, 1)])
def test_sparse_equals_plain_loss_over_labelled_rows(label_shape):
    labelled = SPARSE >= 0
    masked = MaskedSparseCategoricalCrossentropy()(
        SPARSE.reshape(label_shape), SOFTMAX
    )
    plain = keras.losses.SparseCategoricalCrossentropy()(
        SPARSE[labelled], SOFTMAX[labelled]
    )
    expected = _numpy_sce(SPARSE[labelled], SOFTMAX[labelled]).mean()
    np.testing.assert_allclose(float(masked), float(plain), rtol=1e-6)
    np.testing.assert_allclose(float(masked), expected, rtol=1e-5)
    logits = MaskedSparseCategoricalCrossentropy(from_logits=True)(
        SPARSE.reshape(label_shape), LOGITS
    )
    np.testing.assert_allclose(float(logits), expected, rtol=1e-5)


def test_mean_is_over_labelled_examples_not_batch_size():
    labels = np.full(BATCH, -1)
    labels[4] = 2
    loss = MaskedSparseCategoricalCrossentropy()(labels, SOFTMAX)
    np.testing.assert_allclose(float(loss), -np.log(SOFTMAX[4, 2]), rtol=1e-6)


def test_sample_weight_multiplies_and_normalizes_by_labelled_count():
    labelled = BINARY >= 0
    masked = MaskedBinaryCrossentropy()(BINARY, PROBS, sample_weight=WEIGHTS)
    per_example = _numpy_bce(BINARY[labelled], PROBS[labelled, 0])
    expected = (WEIGHTS[labelled] * per_example).sum() / labelled.sum()
    np.testing.assert_allclose(float(masked), expected, rtol=1e-5)
    # Keras divides a weighted sum by the number of rows the same way.
    plain = keras.losses.BinaryCrossentropy()(
        BINARY[labelled, None], PROBS[labelled], WEIGHTS[labelled]
    )
    np.testing.assert_allclose(float(masked), float(plain), rtol=1e-6)

    labelled = SPARSE >= 0
    masked = MaskedSparseCategoricalCrossentropy()(
        SPARSE, SOFTMAX, sample_weight=WEIGHTS[:, None]
    )
    per_example = _numpy_sce(SPARSE[labelled], SOFTMAX[labelled])
    expected = (WEIGHTS[labelled] * per_example).sum() / labelled.sum()
    np.testing.assert_allclose(float(masked), expected, rtol=1e-5)


def test_predictions_on_missing_rows_do_not_matter():
    missing = BINARY < 0
    probs = PROBS.copy()
    probs[missing] = 1.0  # Would be a huge loss for any label.
    np.testing.assert_allclose(
        float(MaskedBinaryCrossentropy()(BINARY, probs)),
        float(MaskedBinaryCrossentropy()(BINARY, PROBS)),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "loss, labels, outputs",
    [
        (MaskedBinaryCrossentropy(), BINARY, PROBS),
        (MaskedBinaryCrossentropy(from_logits=True), BINARY, LOGITS[:, :1]),
        (MaskedSparseCategoricalCrossentropy(), SPARSE, SOFTMAX),
        (
            MaskedSparseCategoricalCrossentropy(from_logits=True),
            SPARSE,
            LOGITS,
        ),
    ],
)
def test_gradients_are_finite_and_zero_on_missing_rows(loss, labels, outputs):
    all_missing = np.full(BATCH, -1)
    for y in (labels, all_missing):
        value, grad = _testing.value_and_gradient(
            lambda y_pred, y=y: loss(y, y_pred), outputs
        )
        assert np.isfinite(value) and np.isfinite(grad).all()
        np.testing.assert_array_equal(grad[y < 0], 0.0)
        if (y < 0).all():
            assert value == 0.0
        else:
            assert np.abs(grad[y >= 0]).sum() > 0


def test_masked_loss_for_picks_by_num_classes():
    binary = masked_loss_for(2)
    assert isinstance(binary, MaskedBinaryCrossentropy)
    assert not binary.from_logits
    sparse = masked_loss_for(7, from_logits=True)
    assert isinstance(sparse, MaskedSparseCategoricalCrossentropy)
    assert sparse.from_logits
    assert masked_loss_for(2) is not binary  # Fresh instances.


@pytest.mark.parametrize("num_classes", [1, 0, 2.0, True, "3"])
def test_masked_loss_for_rejects_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=f"num_classes={num_classes!r}"):
        masked_loss_for(num_classes)


@pytest.mark.parametrize(
    "loss",
    [
        MaskedBinaryCrossentropy(from_logits=True, name="ctr"),
        MaskedSparseCategoricalCrossentropy(),
    ],
)
def test_serialization_round_trip(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert restored.reduction == "sum"


def _two_task_model():
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(
        inputs,
        {
            "click": keras.layers.Dense(1, activation="sigmoid", name="click")(
                hidden
            ),
            "rating": keras.layers.Dense(
                4, activation="softmax", name="rating"
            )(hidden),
        },
    )


def _two_task_data(n=128):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 6)).astype("float32")
    click = (x[:, 0] > 0).astype("int64")
    rating = np.digitize(x[:, 1], [-0.7, 0.0, 0.7]).astype("int64")
    click[rng.uniform(size=n) < 0.4] = -1
    rating[rng.uniform(size=n) < 0.4] = -1
    rating[:16] = -1  # One batch of 16 with no rating label at all.
    return x, {"click": click, "rating": rating}


def test_fit_two_task_model_with_missing_labels(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _two_task_data()
    model = _two_task_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss={"click": masked_loss_for(2), "rating": masked_loss_for(4)},
        metrics={
            "click": metrics.default_metrics_for(2),
            "rating": metrics.default_metrics_for(4),
        },
    )
    history = model.fit(
        x, y, batch_size=16, epochs=8, shuffle=False, verbose=0
    ).history
    losses = np.array(history["loss"])
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]
    for key in ("click_accuracy", "click_auc", "rating_macro_f1"):
        assert np.isfinite(history[key]).all()

    # The per-task losses of `evaluate` are the masked means over the
    # labelled rows, computed independently in numpy.
    results = model.evaluate(x, y, batch_size=len(x), return_dict=True)
    pred = model.predict(x, verbose=0)
    click, rating = y["click"] >= 0, y["rating"] >= 0
    expected_click = _numpy_bce(
        y["click"][click], np.clip(pred["click"][click, 0], 1e-7, 1 - 1e-7)
    ).mean()
    expected_rating = _numpy_sce(
        y["rating"][rating], np.clip(pred["rating"][rating], 1e-7, 1)
    ).mean()
    np.testing.assert_allclose(results["click_loss"], expected_click, 1e-4)
    np.testing.assert_allclose(results["rating_loss"], expected_rating, 1e-4)
    np.testing.assert_allclose(
        results["loss"], expected_click + expected_rating, 1e-4
    )
    accuracy = (pred["click"][click, 0] > 0.5) == y["click"][click]
    np.testing.assert_allclose(results["click_accuracy"], accuracy.mean(), 1e-6)

    # Losses and metrics come back from a saved model.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = loaded.evaluate(x, y, batch_size=len(x), return_dict=True)
    for key, value in results.items():
        np.testing.assert_allclose(reloaded[key], value, rtol=1e-5)
