import json

import pandas as pd
import pytest

from benchmarks import suite


@pytest.fixture()
def suite_dir(tmp_path, write_suite):
    frame = pd.DataFrame(
        {
            "text": ["a", "b", "c", "d"],
            "topic": ["x", "y", "z", "x"],
            "flag": ["1", "0", "", "1"],
            "split": ["train", "train", "validation", "test"],
        }
    )
    return write_suite(tmp_path, frame, ["topic", "flag"])


def test_datasets_are_the_reviews_and_the_prepared_suite(suite_dir):
    specs = suite.datasets(suite_dir)
    assert list(specs) == ["reviews", "toy"]
    toy = specs["toy"]
    assert toy["label_columns"] == ["topic", "flag"]
    assert suite.binary_columns(toy) == {"flag"}
    cmd = suite.command(toy, "out/toy", "mmoe", 2)
    assert cmd[1:] == [
        "run",
        "--data",
        str(suite_dir / "toy.csv.gz"),
        "--text-column",
        "text",
        "--label-columns",
        "topic",
        "flag",
        "--output",
        "out/toy",
        "--body",
        "mmoe",
        "--baseline",
        "--trainer-arg",
        "seed=2",
    ]
    assert suite.command(specs["reviews"], "o", "mmoe", 0)[-2:] == [
        "--trainer-arg",
        'reads_from={"Recommended IND": ["Rating"]}',
    ]


def _metrics(value, n=4):
    return {
        "n": n,
        "accuracy": value,
        "auc": value + 0.1,
        "with_text": {"n": n - 1, "accuracy": value - 0.1, "auc": value},
    }


def test_main_metrics_pick_auc_for_binary_and_the_rows_with_text():
    metrics = {
        "tasks": {"topic": _metrics(0.8), "flag": _metrics(0.7)},
        "baseline": {
            "tasks": {"topic": _metrics(0.75), "flag": _metrics(0.72)}
        },
    }
    spec = {"with_text": False}
    picked = suite.main_metrics(metrics, spec, {"flag"})
    assert picked == {
        "topic accuracy": (0.8, 0.75),
        "flag AUC": (pytest.approx(0.8), pytest.approx(0.82)),
        "flag accuracy": (0.7, 0.72),
    }
    picked = suite.main_metrics(metrics, {"with_text": True}, {"flag"})
    assert picked["topic accuracy"] == (
        pytest.approx(0.7),
        pytest.approx(0.65),
    )
    assert picked["flag AUC"] == (0.7, 0.72)
    assert picked["flag accuracy"] == (pytest.approx(0.6), pytest.approx(0.62))


def test_summarize_gives_mean_std_and_whether_the_baseline_is_beaten():
    runs = [
        {
            "dataset": "toy",
            "body": "mmoe",
            "seed": s,
            "metrics": {"t": (m, 0.5)},
        }
        for s, m in enumerate([0.4, 0.8])
    ]
    table = suite.summarize(runs)
    stats = table["toy"]["t"]["bodies"]["mmoe"]
    assert stats["mean"] == pytest.approx(0.6)
    assert stats["std"] == pytest.approx(0.2)
    assert stats["seeds"] == [0.4, 0.8]
    assert stats["beats_tfidf_lr"]
    text = suite.format_table(table)
    assert (
        "| toy | t | 0.5000 | mmoe | 0.6000 ± 0.2000 | 0.4000, 0.8000 |" in text
    )


def test_format_bodies_puts_each_body_in_a_column():
    runs = [
        {
            "dataset": "toy",
            "body": body,
            "seed": s,
            "metrics": {"t": (m, 0.5)},
        }
        for body, values in (("mmoe", [0.4, 0.8]), ("single_task", [0.7]))
        for s, m in enumerate(values)
    ]
    runs.append(
        {
            "dataset": "toy",
            "body": "mmoe",
            "seed": 0,
            "metrics": {"u": (0.9, None)},
        }
    )
    text = suite.format_bodies(suite.summarize(runs))
    assert (
        "| TF-IDF + LR | `mmoe`, mean ± std | `single_task`, mean ± std |"
        in text
    )
    assert (
        "| toy | t | 0.5000 | 0.6000 ± 0.2000 (2) | 0.7000 ± 0.0000 (1) |"
        in text
    )
    assert "| toy | u | - | 0.9000 ± 0.0000 (1) | - |" in text


def test_unknown_data_set_is_refused(suite_dir, tmp_path):
    with pytest.raises(SystemExit, match="unknown data set"):
        suite.main(
            ["--suite", str(suite_dir), "--datasets", "nope"]
            + ["--output", str(tmp_path / "r.json")]
        )


def test_linear_choices_come_from_the_newest_trainer_run(tmp_path):
    assert suite.linear_choices(str(tmp_path)) is None
    for run, weight in ((2, 0.3), (10, 0.7)):
        folder = tmp_path / "tfx" / "Trainer" / "model_run" / str(run)
        folder.mkdir(parents=True)
        (folder / "training_summary.json").write_text(
            json.dumps({"linear": {"t": {"linear_weight": weight}}})
        )
    assert suite.linear_choices(str(tmp_path)) == {"t": {"linear_weight": 0.7}}


def test_runs_of_other_selections_stay_in_the_output(suite_dir, tmp_path):
    output = tmp_path / "r.json"
    kept = {
        "dataset": "reviews",
        "body": "mmoe",
        "seed": 5,
        "metrics": {"t": [0.9, 0.8]},
    }
    output.write_text(json.dumps({"runs": [kept]}))
    runs_dir = tmp_path / "runs"
    (runs_dir / "toy" / "mmoe_seed0").mkdir(parents=True)
    metrics = {
        "tasks": {"topic": _metrics(0.8), "flag": _metrics(0.7)},
        "baseline": {"tasks": {"topic": _metrics(0.7), "flag": _metrics(0.6)}},
    }
    (runs_dir / "toy" / "mmoe_seed0" / "metrics.json").write_text(
        json.dumps(metrics)
    )
    result = suite.main(
        ["--suite", str(suite_dir), "--datasets", "toy", "--seeds", "0"]
        + ["--runs", str(runs_dir), "--output", str(output)]
    )
    assert [(r["dataset"], r["seed"]) for r in result["runs"]] == [
        ("reviews", 5),
        ("toy", 0),
    ]
    assert result["table"]["toy"]["topic accuracy"]["tfidf_lr"] == 0.7


def test_load_reads_splits_labels_and_missing_labels(toy_suite):
    spec = suite.datasets(toy_suite)["toy"]
    texts, labels, classes = suite.load(spec)
    assert classes == {"coarse": ["x", "y"], "fine": ["f0", "f1", "f2", "f3"]}
    assert [len(texts[s]) for s in suite.SPLITS] == [48, 16, 16]
    assert (labels["train"]["fine"] == -1).any()
    assert set(labels["train"]["coarse"]) == {0, 1}
    assert len(suite.load(spec, rows=5)[0]["train"]) == 5
