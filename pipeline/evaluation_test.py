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
