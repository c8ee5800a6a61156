import numpy as np
import pytest

from pipeline import evaluation


def test_binary_metrics_skip_missing_labels():
    labels = np.array([1, 0, -1, 1, 0])
    p = np.array([[0.9], [0.2], [0.99], [0.4], [0.6]])
    m = evaluation.task_metrics(labels, p)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.5)  # 0.9 ok, .2 ok, .4 x, .6 x
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 pairs ranked right


def test_multiclass_macro_f1_and_auc():
    labels = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    m = evaluation.task_metrics(labels, p)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert 0 < m["auc"] <= 1


def test_one_class_present_gives_no_auc_not_nan():
    m = evaluation.task_metrics(
        np.array([1, 1, -1]), np.array([[0.7], [0.2], [0.1]])
    )
    assert m["auc"] is None and m["accuracy"] == pytest.approx(0.5)
    assert "-" in evaluation.format_table({"t": m})


def test_read_split_joins_the_text_columns(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("a,b,y\nGood,fit,1\n,,0\n")
    frame, texts = evaluation.read_split(str(path), ["a", "b"])
    assert texts == ["Good fit", " "]
    assert frame["y"].tolist() == ["1", "0"]


def test_label_indices_map_unknown_and_empty_labels_to_missing():
    labels = evaluation.label_indices(
        [" Tops", "Dresses", "", "Hats"], ["Dresses", "Tops"]
    )
    assert labels.tolist() == [1, 0, -1, -1]


def test_split_scores_count_missing_labels_and_score_rows_with_text():
    labels = np.array([0, 1, 1, 0, -1])
    p = np.array([[0.2], [0.9], [0.4], [0.6], [0.5]])
    texts = ["a", "b", " ", "c", "d"]
    scores = evaluation.split_scores(labels, p, texts)
    assert scores["n"] == 4 and scores["unseen_or_missing_labels"] == 1
    with_text = scores["with_text"]
    assert with_text["n"] == 3
    assert with_text == evaluation.task_metrics(
        labels[[0, 1, 3, 4]], p[[0, 1, 3, 4]]
    )
    assert evaluation.split_scores(labels, p, [""] * 5)["with_text"] is None
