import json

import numpy as np
import pytest

from benchmarks import label_scarcity as ls
from benchmarks import reviews_data

SIZES = {"train": 5000, "validation": 800, "test": 300}


def _labels():
    """Every task's labels by split; some Department labels missing."""
    rng = np.random.default_rng(7)
    labels = {}
    for split, n in SIZES.items():
        labels[split] = {
            "recommended": rng.integers(0, 2, n).astype("int32"),
            "rating": rng.integers(0, 5, n).astype("int32"),
            "department": rng.integers(0, 6, n).astype("int32"),
        }
        labels[split]["department"][::50] = -1
    return labels


def test_draws_are_nested_counted_and_touch_only_one_task():
    labels = _labels()
    for task in ls.TASKS:
        for seed in (0, 1):
            previous = {s: np.zeros(SIZES[s], bool) for s in SIZES}
            for fraction in ls.FRACTIONS:
                out = ls.draw(labels, task, fraction, seed)
                for split in ("train", "validation"):
                    kept = out[split][task] >= 0
                    labelled = int((labels[split][task] >= 0).sum())
                    assert kept.sum() == round(fraction * labelled)
                    assert (kept >= previous[split]).all()  # Nested.
                    np.testing.assert_array_equal(
                        out[split][task][kept], labels[split][task][kept]
                    )
                    previous[split] = kept
                for split in SIZES:
                    for other in reviews_data.TASKS:
                        if other != task or split == "test":
                            np.testing.assert_array_equal(
                                out[split][other], labels[split][other]
                            )
    # Another seed, or the other task with the same seed, draws other rows.
    rows = {
        (task, seed): ls.draw(labels, task, 0.1, seed)["train"][task] >= 0
        for task in ls.TASKS
        for seed in (0, 1)
    }
    assert (rows["rating", 0] != rows["rating", 1]).any()
    assert (rows["rating", 0] != rows["department", 0]).any()
    # The input is not modified.
    assert (labels["train"]["rating"] >= 0).all()


def test_the_grid_trains_the_full_labels_once_for_both_tasks():
    cells = ls.grid(ls.TASKS, ls.FRACTIONS, ls.BODIES, ls.SEEDS)
    assert len(cells) == len(set(cells))
    models = [c for c in cells if c[2] != ls.BASELINE]
    # Per seed: 2 tasks x 5 fractions x 5 bodies, the 4 multi-task bodies
    # once at 100%, and a single-task model per task at 100%.
    assert len(models) == 5 * (2 * 5 * 5 + 4 + 2)
    assert len(cells) - len(models) == 5 * (2 * 5 + 1)
    assert ("all", 1.0, "mmoe", 3) in cells
    assert ("rating", 1.0, "mmoe", 3) not in cells
    assert {
        ("rating", 1.0, ls.SINGLE, 3),
        ("department", 1.0, ls.SINGLE, 3),
    } <= set(cells)
    assert cells[0] == ("rating", 0.01, ls.BASELINE, 0)


def _fake_cell(calls, fail_at=None):
    """A run_cell that scores a cell from its draw, deterministically."""

    def run_cell(cell, texts, labels, classes, args):
        calls.append(cell)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt  # The session is killed.
        task, fraction, body, seed = cell
        scored = ls.TASKS if task == ls.ALL else (task,)
        test = {}
        for t in scored:
            kept = (ls.draw(labels, t, fraction, seed)["train"][t] >= 0).mean()
            bonus = ls.BODIES.index(body) / 100 if body in ls.BODIES else 0
            score = 0.3 + 0.5 * kept + bonus + seed / 1000
            test[t] = {"accuracy": score, "macro_f1": score / 2}
        return {
            **dict(
                zip(("task", "fraction", "body", "seed"), cell, strict=True)
            ),
            "seconds": 1.0,
            "test": test,
        }

    return run_cell


@pytest.fixture
def small_data(monkeypatch):
    labels = _labels()
    texts = {s: np.array(["a b"] * n, dtype=object) for s, n in SIZES.items()}
    classes = {
        "recommended": [0, 1],
        "rating": list(range(1, 6)),
        "department": list("ABCDEF"),
    }
    monkeypatch.setattr(reviews_data, "load", lambda: (texts, labels, classes))


ARGS = [
    "--bodies",
    "single_task",
    "mmoe",
    "--fractions",
    "0.02",
    "0.1",
    "1",
    "--seeds",
    "0",
    "1",
]


def _result(path):
    result = json.loads((path / "label_scarcity.json").read_text())
    return result["summary"], sorted(
        result["records"], key=lambda r: json.dumps(r, sort_keys=True)
    )


def test_resume_after_a_kill_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, small_data
):
    calls = []
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls))
    ls.main([*ARGS, "--output", str(tmp_path / "whole")])
    cells = len(calls)
    assert cells == 2 * (2 * 2 * 3 + 4)

    calls.clear()
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls, fail_at=9))
    with pytest.raises(KeyboardInterrupt):
        ls.main([*ARGS, "--output", str(tmp_path / "killed")])
    checkpoint = tmp_path / "killed" / "label_scarcity_cells.jsonl"
    assert len(checkpoint.read_text().splitlines()) == 8
    calls.clear()
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls))
    ls.main([*ARGS, "--output", str(tmp_path / "killed")])
    assert len(calls) == cells - 8  # Only the missing cells ran.
    assert _result(tmp_path / "killed") == _result(tmp_path / "whole")
    assert len(checkpoint.read_text().splitlines()) == cells


def test_report_only_writes_the_recorded_cells_and_trains_none(
    tmp_path, monkeypatch, small_data
):
    calls = []
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls, fail_at=9))
    with pytest.raises(KeyboardInterrupt):
        ls.main([*ARGS, "--output", str(tmp_path)])
    calls.clear()
    result = ls.main([*ARGS, "--output", str(tmp_path), "--report-only"])
    assert calls == []
    assert result["cells_done"] == 8 < result["cells"]
    assert (tmp_path / "label_scarcity_rating.png").exists()
    # The flag is not a training setting: a normal run resumes the file.
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls))
    ls.main([*ARGS, "--output", str(tmp_path)])
    assert len(calls) == result["cells"] - 8


def test_a_half_written_last_line_is_skipped_and_its_cell_rerun(
    tmp_path, monkeypatch, small_data
):
    calls = []
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls))
    ls.main([*ARGS, "--output", str(tmp_path)])
    whole = _result(tmp_path)
    checkpoint = tmp_path / "label_scarcity_cells.jsonl"
    lines = checkpoint.read_text().splitlines(keepends=True)
    checkpoint.write_text("".join(lines[:5]) + lines[5][:40])
    calls.clear()
    ls.main([*ARGS, "--output", str(tmp_path)])
    assert len(calls) == len(lines) - 5
    assert _result(tmp_path) == whole
    # The cut line stays, ended; every record after it is whole.
    kept = checkpoint.read_text().splitlines()
    assert kept[5] == lines[5][:40]
    assert len(kept) == len(lines) + 1
    for line in kept[6:]:
        json.loads(line)
    calls.clear()
    ls.main([*ARGS, "--output", str(tmp_path)])
    assert calls == []


def test_baseline_records_of_an_earlier_version_are_rerun(
    tmp_path, monkeypatch, small_data
):
    calls = []
    monkeypatch.setattr(ls, "run_cell", _fake_cell(calls))
    ls.main([*ARGS, "--output", str(tmp_path)])
    checkpoint = tmp_path / "label_scarcity_cells.jsonl"
    records = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    baseline = [r for r in records if r["body"] == ls.BASELINE]
    assert baseline and all(
        r["version"] == ls.BASELINE_VERSION for r in baseline
    )
    for r in baseline:
        del r["version"]  # As written before versions.
    checkpoint.write_text("".join(json.dumps(r) + "\n" for r in records))
    calls.clear()
    ls.main([*ARGS, "--output", str(tmp_path)])
    assert sorted(calls) == sorted(ls.key(r) for r in baseline)
    # The old lines stay in the file, the new ones after them.
    lines = checkpoint.read_text().splitlines()
    assert len(lines) == len(records) + len(baseline)


def test_cells_of_other_training_settings_are_refused(
    tmp_path, monkeypatch, small_data
):
    monkeypatch.setattr(ls, "run_cell", _fake_cell([]))
    ls.main([*ARGS, "--output", str(tmp_path)])
    with pytest.raises(SystemExit):
        ls.main([*ARGS, "--output", str(tmp_path), "--batch-size", "32"])


def _record(task, fraction, body, seed, **accuracy):
    return {
        "task": task,
        "fraction": fraction,
        "body": body,
        "seed": seed,
        "test": {
            t: {"accuracy": a, "macro_f1": a / 2} for t, a in accuracy.items()
        },
    }


def test_summary_means_standard_errors_and_paired_differences():
    records = [
        _record("rating", 0.05, "single_task", 0, rating=0.5),
        _record("rating", 0.05, "single_task", 1, rating=0.6),
        _record("rating", 0.05, "single_task", 2, rating=0.7),
        _record("rating", 0.05, "mmoe", 0, rating=0.6),
        _record("rating", 0.05, "mmoe", 1, rating=0.6),
        _record("rating", 0.05, "mmoe", 2, rating=0.9),
        # The 100% point: one multi-task run scores both tasks.
        _record("all", 1.0, "mmoe", 0, rating=0.8, department=0.9),
        _record("rating", 1.0, "single_task", 0, rating=0.75),
        _record("all", 1.0, "tfidf_lr", 0, rating=0.7, department=0.85),
    ]
    records = {ls.key(r): r for r in records}
    summary = ls.summarize(
        records, ls.TASKS, (0.05, 1.0), ("single_task", "mmoe"), (0, 1, 2)
    )
    rows = {
        (r["task"], r["fraction"], r["body"], r["metric"]): r for r in summary
    }
    mmoe = rows["rating", 0.05, "mmoe", "accuracy"]
    assert (mmoe["n"], mmoe["mean"]) == (3, pytest.approx(0.7))
    assert mmoe["se"] == pytest.approx(0.1)  # std(.6, .6, .9) / sqrt(3)
    diff = mmoe["minus_single_task"]  # 0.1, 0, 0.2
    assert diff["mean"] == pytest.approx(0.1)
    assert diff["se"] == pytest.approx(0.1 / np.sqrt(3))
    f1 = rows["rating", 0.05, "mmoe", "macro_f1"]
    assert f1["mean"] == pytest.approx(0.35)
    assert f1["minus_single_task"]["mean"] == pytest.approx(0.05)
    single = rows["rating", 0.05, "single_task", "accuracy"]
    assert single["mean"] == pytest.approx(0.6)
    assert "minus_single_task" not in single
    assert rows["rating", 1.0, "mmoe", "accuracy"] == {
        "task": "rating",
        "fraction": 1.0,
        "body": "mmoe",
        "metric": "accuracy",
        "n": 1,
        "mean": 0.8,
        "se": None,
        "minus_single_task": {"n": 1, "mean": pytest.approx(0.05), "se": None},
    }
    department = rows["department", 1.0, "mmoe", "accuracy"]
    assert department["mean"] == 0.9
    assert department["minus_single_task"]["n"] == 0  # No single run.
    baseline = rows["department", 1.0, ls.BASELINE, "accuracy"]
    assert baseline["mean"] == 0.85
    assert rows["department", 0.05, "mmoe", "accuracy"]["n"] == 0


def test_the_table_gives_each_body_and_its_difference_to_single_task():
    records = [
        _record("rating", 0.05, "single_task", 0, rating=0.5),
        _record("rating", 0.05, "single_task", 1, rating=0.6),
        _record("rating", 0.05, "mmoe", 0, rating=0.7),
        _record("rating", 0.05, "mmoe", 1, rating=0.7),
        _record("rating", 0.1, "mmoe", 0, rating=0.8),
    ]
    summary = ls.summarize(
        {ls.key(r): r for r in records},
        ("rating",),
        (0.05, 0.1),
        ("single_task", "mmoe"),
        (0, 1),
    )
    lines = ls.format_table(summary, "rating").splitlines()
    assert lines[0] == "| labels kept | Single-task | MMoE | TF-IDF + LR |"
    assert lines[2] == ("| 5% | 0.5500 ± 0.0500 (2) | 0.7000 ± 0.0000 (2) |  |")
    # +0.2, +0.1: a mean of 0.15 with an SE of 0.05, beyond 2 SE.
    assert lines[3] == "| minus single-task |  | **+0.1500 ± 0.0500** |  |"
    # One seed: no standard error.
    assert lines[4] == "| 10% |  | 0.8000 (1) |  |"
    assert len(lines) == 5


def test_plots_are_written_for_each_task(tmp_path):
    records = {
        ls.key(r): r
        for seed in (0, 1)
        for r in [
            _record("all", 1.0, "mmoe", seed, rating=0.7, department=0.9),
            _record("all", 1.0, ls.BASELINE, seed, rating=0.6, department=0.8),
            *[
                _record(task, f, body, seed, **{task: 0.4 + f / 2 + seed / 50})
                for task in ls.TASKS
                for f in (0.01, 0.1)
                for body in ("mmoe", ls.BASELINE)
            ],
        ]
    }
    summary = ls.summarize(
        records, ls.TASKS, (0.01, 0.1, 1.0), ("mmoe",), (0, 1)
    )
    for task in ls.TASKS:
        path = ls.plot(summary, task, tmp_path / f"label_scarcity_{task}.png")
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_quick_run_trains_real_cells_and_writes_the_results(tmp_path):
    # A small model: the test checks the plumbing, not the figures.
    small = ["--max-tokens", "500", "--sequence-length", "16"]
    small += ["--embedding-dim", "8", "--wide-buckets", "1000"]
    result = ls.main(
        ["--quick", "--tasks", "rating", "--bodies", "single_task", "mmoe"]
        + ["--fractions", "0.05", "--seeds", "0", "--output", str(tmp_path)]
        + small
    )
    assert result["cells_done"] == result["cells"] == 3
    assert result["training"]["epochs"] == ls.QUICK["epochs"]
    rows = ls.QUICK["rows"]
    records = {r["body"]: r for r in result["records"]}
    for record in records.values():
        assert record["kept"]["rating"] == {
            "train": round(0.05 * rows),
            "validation": round(0.05 * rows),
            "test": rows,
        }
        assert 0 <= record["test"]["rating"]["accuracy"] <= 1
    single, mmoe = records["single_task"], records["mmoe"]
    assert set(single["test"]) == set(single["validation"]) == {"rating"}
    assert set(mmoe["test"]) == set(ls.reviews_data.TASKS)
    assert single["epochs"] == mmoe["epochs"] == 1
    assert (tmp_path / "label_scarcity_quick_rating.png").exists()
    assert (tmp_path / "label_scarcity_quick_cells.jsonl").exists()


def test_a_suite_data_set_thins_its_partial_task_and_scores_every_column(
    tmp_path, toy_suite
):
    small = ["--max-tokens", "100", "--sequence-length", "8"]
    small += ["--embedding-dim", "4", "--wide-buckets", "0", "--epochs", "1"]
    result = ls.main(
        ["--dataset", "toy", "--suite", str(toy_suite), "--seeds", "0"]
        + ["--bodies", "single_task", "mmoe", "--fractions", "0.5", "1"]
        + ["--output", str(tmp_path / "out")]
        + small
    )
    # `fine` is the column missing on some rows: the default task.
    assert result["tasks"] == ["fine"] and result["dataset"] == "toy"
    cells = {
        (r["task"], r["fraction"], r["body"]): r for r in result["records"]
    }
    assert set(cells) == {
        ("fine", 0.5, ls.BASELINE),
        ("fine", 0.5, "single_task"),
        ("fine", 0.5, "mmoe"),
        ("all", 1.0, ls.BASELINE),
        ("fine", 1.0, "single_task"),
        ("all", 1.0, "mmoe"),
    }
    texts, labels, _ = ls.suite.load(ls.suite.datasets(toy_suite)["toy"])
    labelled = {s: int((labels[s]["fine"] >= 0).sum()) for s in labels}
    # The fractions are of the rows the data set labels, test untouched.
    assert cells["fine", 1.0, "single_task"]["kept"]["fine"] == labelled
    half = cells["fine", 0.5, "mmoe"]["kept"]["fine"]
    assert half == {
        "train": round(0.5 * labelled["train"]),
        "validation": round(0.5 * labelled["validation"]),
        "test": labelled["test"],
    }
    # The cell of every task at once scores both label columns.
    assert set(cells["all", 1.0, "mmoe"]["test"]) == {"coarse", "fine"}
    assert set(cells["fine", 1.0, "single_task"]["test"]) == {"fine"}
    out = tmp_path / "out"
    assert (out / "label_scarcity_toy_cells.jsonl").exists()
    assert (out / "label_scarcity_toy_fine.png").exists()
    assert not (out / "label_scarcity.json").exists()


def test_an_unknown_data_set_or_task_exits_2_before_training(
    tmp_path, toy_suite, capsys
):
    for argv in (
        ["--dataset", "nope", "--suite", str(toy_suite)],
        ["--dataset", "toy", "--suite", str(toy_suite), "--tasks", "rating"],
    ):
        with pytest.raises(SystemExit) as exit_:
            ls.main([*argv, "--output", str(tmp_path)])
        assert exit_.value.code == 2
    assert not list(tmp_path.glob("*.jsonl"))
    assert "--tasks: choose from ['coarse', 'fine']" in capsys.readouterr().err
