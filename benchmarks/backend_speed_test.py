import dataclasses

import pytest

from benchmarks import backend_speed


def test_time_backend_gives_positive_seconds_per_step():
    config = dataclasses.replace(backend_speed.QUICK, batches=(4,))
    out = backend_speed.time_backend(config, "auto")
    assert list(out) == ["4"]
    assert out["4"]["steps"] >= 1
    assert len(out["4"]["blocks"]) == config.repeats
    assert 0 < out["4"]["median"] < 10


def test_a_missing_venv_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setattr(backend_speed, "ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="make backend-speed"):
        backend_speed.run(backend_speed.QUICK, ["jax"])


def test_table_has_a_row_per_backend():
    config = backend_speed.QUICK
    row = {
        "batches": {
            "4": {"ms_per_step": 1.234, "examples_per_second": 3241},
            "16": {"ms_per_step": 2.5, "examples_per_second": 6400},
        }
    }
    lines = backend_speed.table(config, {"jax": row}).splitlines()
    assert lines[0].startswith("| backend | batch 4: ms/step")
    assert lines[2] == "| jax | 1.23 (3,241) | 2.50 (6,400) |"
