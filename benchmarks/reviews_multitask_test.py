import numpy as np
import pytest

from benchmarks import reviews_multitask


def test_scarce_keeps_five_percent_of_rating_outside_test():
    n = 20_000
    labels = {
        split: {
            "rating": np.arange(n) % 5,
            "recommended": np.arange(n) % 2,
        }
        for split in ("train", "validation", "test")
    }
    out = reviews_multitask.scarce(labels)
    for split in ("train", "validation"):
        kept = out[split]["rating"] >= 0
        assert kept.mean() == pytest.approx(0.05, abs=0.005)
        np.testing.assert_array_equal(
            out[split]["rating"][kept], labels[split]["rating"][kept]
        )
        np.testing.assert_array_equal(
            out[split]["recommended"], labels[split]["recommended"]
        )
    np.testing.assert_array_equal(
        out["test"]["rating"], labels["test"]["rating"]
    )
    # The input is not modified.
    assert (labels["train"]["rating"] >= 0).all()


def test_tfidf_baseline_scores_a_class_missing_from_the_kept_labels():
    # Each class has its own word; class 1 keeps no training label, so
    # the model knows classes 0 and 2 only and must not call 2 "1".
    words = np.array(["apple fruit", "banana fruit", "cherry fruit"])
    y = np.arange(60) % 3
    texts = {split: list(words[y]) for split in ("train", "test")}
    train = np.where(y == 1, -1, y)
    labels = {"train": {"t": train}, "test": {"t": y}}
    (result,) = reviews_multitask.tfidf_baseline(
        texts, labels, tasks=["t"]
    ).values()
    # Right on every row of classes 0 and 2, wrong on every row of 1.
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["n"] == 60
    # Binary: the score is the probability of class 1.
    binary = {"train": {"t": y % 2}, "test": {"t": y % 2}}
    texts = {s: list(np.array(["even", "odd"])[y % 2]) for s in texts}
    (result,) = reviews_multitask.tfidf_baseline(
        texts, binary, tasks=["t"]
    ).values()
    assert result["accuracy"] == 1.0
    assert result["auc"] == 1.0
