import pytest

from benchmarks import mmoe_scaling
from benchmarks.cost_config import Config


def test_linear_fit_by_hand():
    fit = mmoe_scaling.linear_fit([1, 2, 4], [3, 5, 9])  # y = 2x + 1
    assert fit["slope"] == pytest.approx(2)
    assert fit["intercept"] == pytest.approx(1)


def test_points_cover_both_sweeps_once():
    points = mmoe_scaling.points(Config())
    assert len(points) == 6 + 4
    assert (32, 3) in points and (8, 8) in points
    # (8 experts, 3 tasks) in both sweeps: timed once.
    shared = mmoe_scaling.points(Config(scaling_tasks=(1, 3)))
    assert len(shared) == 6 + 2 - 1
    assert len(set(shared)) == len(shared)
