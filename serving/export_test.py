"""The serving contract of `export_serving_model`, checked in a process that
imports only tensorflow and tensorflow_text."""

import os

import numpy as np
import pytest

from serving import backend, contract, export
from serving import testing as serving_testing
from serving.testing import TASKS

CLASS_NAMES = {
    "recommended_ind": ["0", "1"],
    "department_name": ["Bottoms", "Dresses", "Tops"],
}
BAD_INPUT_ROWS = {
    "empty_string": 1,
    "one_megabyte": 1,
    "non_utf8": 2,
    "empty_batch": 0,
}


def _without_labels(rows):
    return [
        {k: v for k, v in row.items() if k not in serving_testing.LABEL_COLUMNS}
        for row in rows
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("export") / "1")
    tiny, tft_output, model, _ = serving_testing.export_tiny_model(
        export_dir, warmup_texts=["", "lovely dress", "awful top"]
    )
    rows = tiny.raw_rows["validation"]
    # The same rows with and without their label columns.
    examples = serving_testing.serialize_raw(
        rows
    ) + serving_testing.serialize_raw(_without_labels(rows))
    texts = tiny.texts("validation")
    served = contract.run_probe(
        export_dir, texts, examples, str(tmp_path_factory.mktemp("check"))
    )
    return tiny, tft_output, model, export_dir, served


def test_signatures(exported):
    served = exported[-1]
    outputs = {}
    for task, n in TASKS.items():
        outputs[f"{task}_probabilities"] = ["float32", [None, n]]
        outputs[f"{task}_label"] = ["string", [None]]
    transformed = {"token_ids": ["int64", [None, serving_testing.MAX_LENGTH]]}
    for task in TASKS:
        transformed[f"{task}_label"] = ["int64", [None]]
        transformed[f"{task}_weight"] = ["float32", [None]]
    assert served["signatures"] == {
        "serving_default": {
            "inputs": {"examples": ["string", [None]]},
            "positional_inputs": 0,
            "outputs": outputs,
        },
        "predict_text": {
            "inputs": {"text": ["string", [None]]},
            "positional_inputs": 0,
            "outputs": outputs,
        },
        "transform_features": {
            "inputs": {"examples": ["string", [None]]},
            "positional_inputs": 0,
            "outputs": transformed,
        },
    }


def test_loads_without_project_or_transform_code(exported):
    served = exported[-1]
    assert served["modules"] == []


def test_predict_text_equals_the_keras_model(exported):
    import tensorflow as tf

    tiny, tft_output, model, _, served = exported
    texts = tiny.texts("validation")
    n = len(texts)
    transformed = tft_output.transform_features_layer()(
        {
            "Title": tf.sparse.from_dense(tf.constant([[t] for t in texts])),
            "Review Text": tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [n, 1]
            ),
        }
    )
    token_ids = np.asarray(transformed["token_ids"]).astype("int32")
    expected = model.predict(token_ids, verbose=0)
    out = served["predict_text"]
    p_one = np.asarray(expected["recommended_ind"])[:, 0]
    binary = np.asarray(out["recommended_ind_probabilities"])
    np.testing.assert_allclose(binary[:, 1], p_one, atol=1e-5)
    np.testing.assert_allclose(binary.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        out["department_name_probabilities"],
        expected["department_name"],
        atol=1e-5,
    )
    # The texts differ, and so do the outputs: the test can fail.
    assert np.ptp(binary[:, 1]) > 1e-3
    for task, names in CLASS_NAMES.items():
        p = np.asarray(out[f"{task}_probabilities"])
        assert out[f"{task}_label"] == [names[i] for i in p.argmax(axis=1)]


def test_serving_default_equals_predict_text(exported):
    tiny, *_, served = exported
    n = len(tiny.raw_rows["validation"])
    text, examples = served["predict_text"], served["serving_default"]
    positional = served["serving_default_positional"]
    for key in text:
        with_labels, without_labels = examples[key][:n], examples[key][n:]
        if key in TASKS or key.endswith("_probabilities"):
            np.testing.assert_allclose(with_labels, text[key], atol=1e-6)
            np.testing.assert_allclose(without_labels, text[key], atol=1e-6)
            np.testing.assert_allclose(positional[key], examples[key])
        else:
            assert with_labels == without_labels == text[key]
            assert positional[key] == examples[key]


def test_transform_features_gives_labels_and_weights(exported):
    tiny, tft_output, *_, served = exported
    rows = tiny.raw_rows["validation"]
    out = served["transform_features"]
    index = {
        "recommended_ind": (serving_testing.RECOMMENDED, {0: 0, 1: 1}),
        "department_name": (
            serving_testing.DEPARTMENT,
            {b"Bottoms": 0, b"Dresses": 1, b"Tops": 2},
        ),
    }
    for task, (column, classes) in index.items():
        labels = [classes[r[column][0]] if r[column] else -1 for r in rows]
        labels += [-1] * len(rows)  # the copies without label columns
        assert -1 in labels and 1 in labels
        assert out[f"{task}_label"] == [max(label, 0) for label in labels]
        assert out[f"{task}_weight"] == [float(x >= 0) for x in labels]
    token_ids = np.asarray(out["token_ids"])
    assert token_ids.shape == (2 * len(rows), serving_testing.MAX_LENGTH)
    np.testing.assert_array_equal(
        token_ids[: len(rows)], token_ids[len(rows) :]
    )
    assert (token_ids[:, 0] > 0).all()  # every row has a title


def test_bad_text_gives_valid_outputs(exported):
    served = exported[-1]
    for name, rows in BAD_INPUT_ROWS.items():
        result = served["bad_inputs"][name]
        for task, n in TASKS.items():
            key = f"{task}_probabilities"
            assert result["shapes"][key] == [rows, n], name
            assert result["shapes"][f"{task}_label"] == [rows], name
            p = np.asarray(result["values"][key]).reshape(rows, n)
            assert np.isfinite(p).all(), name
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
            assert set(result["values"][f"{task}_label"]) <= set(
                CLASS_NAMES[task]
            )


def test_warmup_requests_run(exported):
    export_dir, served = exported[-2:]
    assert os.path.isfile(os.path.join(export_dir, export.WARMUP_FILE))
    warmup = served["warmup"]
    assert [w["signature"] for w in warmup] == [
        "serving_default",
        "predict_text",
    ]
    assert [w["inputs"] for w in warmup] == [["examples"], ["text"]]
    for record in warmup:
        assert record["batch"] == 3
        assert record["outputs"]["department_name_probabilities"] == [3, 3]
        assert record["outputs"]["recommended_ind_label"] == [3]


def test_export_rejects_bad_arguments(exported, tmp_path):
    _, tft_output, model, export_dir, _ = exported
    with pytest.raises(ValueError, match="already holds a SavedModel"):
        export.export_serving_model(
            model,
            tft_output,
            export_dir,
            ["Title"],
            serving_testing.LABEL_COLUMNS,
        )
    with pytest.raises(ValueError, match="'department_name' has 3 classes"):
        export.export_serving_model(
            model,
            tft_output,
            str(tmp_path / "a"),
            ["Title"],
            serving_testing.LABEL_COLUMNS,
            class_names={**CLASS_NAMES, "department_name": ["x", "y"]},
        )
    with pytest.raises(ValueError, match="Text column 'Age'"):
        export.export_serving_model(
            model, tft_output, str(tmp_path / "b"), ["Age"], []
        )
    with pytest.raises(ValueError, match="'Nope'"):
        export.export_serving_model(
            model, tft_output, str(tmp_path / "c"), ["Nope"], []
        )


def test_export_on_another_keras_backend_says_so_first(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(backend.BackendError, match="^Exporting a SavedModel"):
        export.export_serving_model(None, None, str(tmp_path), ["t"], ["y"])
    assert os.listdir(tmp_path) == []
