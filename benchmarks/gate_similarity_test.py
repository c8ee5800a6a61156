import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmarks import gate_similarity


def test_cramers_v_and_dependence_of_known_tables():
    independent = np.array([[10, 20], [30, 60]])
    assert gate_similarity.cramers_v(independent) == pytest.approx(0.0)
    assert gate_similarity.dependence(independent) == pytest.approx(0.0)
    # A coarse label that is a function of a fine one: both measures 1.
    fine = ["a", "b", "c", "d"] * 25
    coarse = ["x" if v in "ab" else "y" for v in fine]
    table = gate_similarity.contingency(coarse, fine)
    assert gate_similarity.cramers_v(table) == pytest.approx(1.0)
    assert gate_similarity.dependence(table) == pytest.approx(1.0)
    # Two binary labels: V is the absolute Pearson correlation.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 500)
    b = np.where(rng.random(500) < 0.8, a, 1 - a)
    v = gate_similarity.cramers_v(gate_similarity.contingency(a, b))
    assert v == pytest.approx(abs(np.corrcoef(a, b)[0, 1]))


def test_spearman_ranks():
    assert gate_similarity.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert gate_similarity.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert np.isnan(gate_similarity.spearman([1, 1, 1], [1, 2, 3]))


def _summary(js, task_a="coarse", task_b="fine"):
    return {
        "tasks": {
            task_a: {"column": "Coarse"},
            task_b: {"column": "Fine"},
        },
        "gates": {
            "pairs": [
                {
                    "task_a": task_a,
                    "task_b": task_b,
                    "js_divergence": js,
                    "cosine_similarity": 1 - js,
                }
            ]
        },
    }


def _write_run(root, dataset, seed, trials):
    for trial, js in trials:
        folder = root / dataset / f"mmoe_seed{seed}" / "tfx" / "Trainer"
        folder = folder / "model_run" / str(trial)
        folder.mkdir(parents=True)
        (folder / "training_summary.json").write_text(json.dumps(_summary(js)))


def test_main_reads_each_runs_last_trainer_and_the_training_rows(
    tmp_path, write_suite
):
    fine = ["a", "b", "c", "d"] * 10
    frame = pd.DataFrame(
        {
            "text": ["t"] * 44,
            "Coarse": [("x" if v in "ab" else "y") for v in fine] + ["x"] * 4,
            "Fine": fine + ["", "", "a", "b"],
            # The last rows are not training rows (and break the function).
            "split": ["train"] * 40 + ["train", "train", "test", "test"],
        }
    )
    suite = write_suite(tmp_path / "suite", frame, ["Coarse", "Fine"])
    runs = tmp_path / "runs"
    # Trainer run 10 is the last (not run 9, which sorts after it as text).
    _write_run(runs, "toy", 0, [(9, 0.5), (10, 0.2)])
    _write_run(runs, "toy", 1, [(3, 0.4)])
    (runs / "toy" / "single_task_seed0").mkdir()
    out = tmp_path / "out"
    result = gate_similarity.main(
        ["--runs", str(runs), "--suite", str(suite), "--output", str(out)]
    )
    (pair,) = result["pairs"]
    assert pair["rows"] == 40  # both labels, training rows only
    assert pair["cramers_v"] == pytest.approx(1.0)
    assert pair["dependence"] == pytest.approx(1.0)
    assert pair["seeds"] == [0, 1]
    assert pair["js_divergence"] == [0.2, 0.4]
    assert pair["mean_js_divergence"] == pytest.approx(0.3)
    assert json.loads((out / "gate_similarity.json").read_text())["pairs"]
    assert (out / "gate_similarity.png").stat().st_size > 0

    # Redrawn from that result alone, the run folders gone, with a
    # synthetic panel: the same pairs and correlations.
    shutil.rmtree(runs)
    synthetic = tmp_path / "synthetic.json"
    synthetic.write_text(json.dumps(_SYNTHETIC))
    again = gate_similarity.main(
        [
            "--pairs-from",
            str(out / "gate_similarity.json"),
            "--synthetic",
            str(synthetic),
            "--output",
            str(tmp_path / "again"),
        ]
    )
    assert again["pairs"] == result["pairs"]
    assert again["runs"] == result["runs"]
    assert [p["p"] for p in again["synthetic"]] == [0.5, 1.0]
    assert (tmp_path / "again" / "gate_similarity.png").stat().st_size > 0


_SYNTHETIC = {
    "gate_js_divergence": {
        "0.5": {"mean": 0.03, "runs": [0.02, 0.04]},
        "1": {"mean": 0.01, "runs": [0.01, 0.01]},
    },
    "label_correlation": {"0.5": {"mean": 0.3}, "1": {"mean": 0.99}},
}


def test_synthetic_points_per_p():
    points = gate_similarity.synthetic_points(_SYNTHETIC)
    assert [p["p"] for p in points] == [0.5, 1.0]
    assert points[0]["label_correlation"] == 0.3
    assert points[0]["js_divergence"] == [0.02, 0.04]


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as missing:
        gate_similarity.main(["--runs", str(tmp_path / "nope")])
    assert missing.value.code == 2
    with pytest.raises(SystemExit) as empty:
        gate_similarity.main(["--runs", str(tmp_path)])
    assert empty.value.code == 2
    assert "no mmoe_seed" in capsys.readouterr().err
    not_result = tmp_path / "other.json"
    not_result.write_text("[1, 2]")
    with pytest.raises(SystemExit) as wrong:
        gate_similarity.main(["--pairs-from", str(not_result)])
    assert wrong.value.code == 2
    assert "--pairs-from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as neither:
        gate_similarity.main([])
    assert neither.value.code == 2
