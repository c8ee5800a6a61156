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
