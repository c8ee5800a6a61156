import json
import math

import pytest

from benchmarks import cost, deepctr_speed, mmoe_scaling
from benchmarks.cost_config import QUICK

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# === The quick run ===
# One test (not a module fixture): under pytest-xdist every worker would
# run the fixture again.


def _positive(value):
    return math.isfinite(value) and value > 0


def test_quick_run(tmp_path):
    cost.main(["--quick", "--output", str(tmp_path)])
    result = json.loads((tmp_path / "cost.json").read_text())
    _check_files_and_machine(tmp_path, result)
    _check_deepctr(result["deepctr"])
    _check_multitask_vs_single(result["multitask_vs_single"])
    _check_scaling(result["scaling"])


def _check_files_and_machine(out, result):
    assert sorted(p.name for p in out.iterdir()) == [
        "cost.json",
        "cost_scaling.png",
    ]  # No temporary files left.
    assert (out / "cost_scaling.png").read_bytes()[:8] == PNG_MAGIC
    assert set(result) == {
        "command",
        "config",
        "machine",
        "timing",
        "load_average_start",
        *cost.PARTS,
        "load_average_end",
        "wall_seconds",
    }
    assert result["command"].startswith("python -m benchmarks.cost --quick")
    assert result["machine"]["cpu_count"] >= 1
    assert result["machine"]["keras"].startswith("3.")
    for part in cost.PARTS:
        assert _positive(result[part]["wall_seconds"])


def _check_deepctr(deepctr):
    if deepctr_speed.missing_bench_packages():
        assert "not installed" in deepctr["skipped"]
        return
    assert len(deepctr["rows"]) == (
        len(QUICK.deepctr_batches) * len(QUICK.deepctr_modes)
    )
    for row in deepctr["rows"]:
        assert _positive(row["deepctr_ms"]) and _positive(row["keras_mmoe_ms"])
        assert row["deepctr_over_keras_mmoe"] == pytest.approx(
            row["deepctr_ms"] / row["keras_mmoe_ms"]
        )
    # The same network but for the gate biases.
    params = deepctr["parameters"]
    assert params["keras_mmoe"] - params["deepctr"] == (
        QUICK.num_tasks * QUICK.num_experts
    )
    assert deepctr["versions"]["tf_keras"].startswith("2.")
    assert deepctr["versions"]["keras"].startswith("3.")


def _check_multitask_vs_single(part):
    names = [name for name, _ in QUICK.text_tasks]
    models = part["models"]
    assert set(models) == {"multitask"} | {f"single_{n}" for n in names}
    for model in models.values():
        assert _positive(model["seconds_per_epoch"])
        assert model["peak_rss_mb"] >= model["baseline_rss_mb"] > 0
    summary = part["summary"]
    n = QUICK.text_examples
    assert summary["multitask_examples_per_second"] == pytest.approx(
        n / models["multitask"]["seconds_per_epoch"]
    )
    assert summary["three_single_examples_per_second"] == pytest.approx(
        n / sum(models[f"single_{t}"]["seconds_per_epoch"] for t in names)
    )
    assert _positive(summary["multitask_speedup"])
    assert len(part["rounds"]) == QUICK.text_rounds


def _check_scaling(scaling):
    assert len(scaling["rows"]) == (
        len(mmoe_scaling.points(QUICK)) * len(QUICK.scaling_modes)
    )
    for row in scaling["rows"]:
        assert _positive(row["ms"]) and _positive(row["gflops"])
    for fits in scaling["linear_fits"].values():
        for fit in fits.values():
            assert math.isfinite(fit["slope"])


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit):
        cost.main(["--quick", "no_such_part"])
