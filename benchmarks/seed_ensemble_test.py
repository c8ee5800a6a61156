import numpy as np
import pytest

from benchmarks import seed_ensemble


def test_score_is_the_bar_metrics_skipping_missing_labels():
    labels = {
        "recommended": np.array([1, 0, 1, 0, -1]),
        "rating": np.array([0, 2, 1, -1, 2]),
        "department": np.array([1, 1, 0, 0, 1]),
    }
    probabilities = {
        # Ranks 3 of the 4 positive-negative pairs right: AUC 0.75.
        "recommended": np.array([[0.9], [0.8], [0.4], [0.1], [0.0]]),
        # Right on rows 0 and 1, wrong on row 2; row 3 is unlabelled.
        "rating": np.array(
            [
                [0.6, 0.2, 0.2],
                [0.1, 0.1, 0.8],
                [0.5, 0.3, 0.2],
                [0.0, 1.0, 0.0],
                [0.1, 0.1, 0.8],
            ]
        ),
        "department": np.array([[0.2, 0.8]] * 5),  # Always class 1.
    }
    assert seed_ensemble.score(labels, probabilities) == pytest.approx(
        {
            "recommended_auc": 0.75,
            "rating_accuracy": 3 / 4,
            "department_accuracy": 3 / 5,
        }
    )
