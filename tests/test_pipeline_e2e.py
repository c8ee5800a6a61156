"""The whole TFX pipeline on a small slice of the bundled reviews."""

import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "womens_clothing_reviews.csv.gz"
TEXT = ["Title", "Review Text"]
LABELS = ["Recommended IND", "Rating", "Department Name"]
COMPONENTS = [
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "AtomicPusher",
]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    frame = pd.read_csv(DATA)
    parts = [
        frame[frame.split == split].head(n)
        for split, n in [("train", 400), ("validation", 100), ("test", 100)]
    ]
    path = tmp_path_factory.mktemp("data") / "small.csv"
    pd.concat(parts).to_csv(path, index=False)
    return str(path)


def _executions(metadata_path):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    types = {t.id: t.name for t in store.get_execution_types()}
    return [
        (types[e.type_id].split(".")[-1], e.last_known_state)
        for e in store.get_executions()
    ]


@pytest.fixture(scope="module")
def run(small_csv, tmp_path_factory):
    from pipeline import local_runner, report

    out = str(tmp_path_factory.mktemp("run"))

    def once():
        paths, summary = local_runner.run(
            data=small_csv,
            text_columns=TEXT,
            label_columns=LABELS,
            output=out,
            trainer_config={"epochs": 2, "embedding_dim": 16},
        )
        args = type(
            "Args",
            (),
            {"body": "mmoe", "text_column": TEXT, "label_columns": LABELS},
        )
        with open(os.devnull, "w") as sink:
            assert report.write_report(paths, summary, args, sink)
        return paths

    first = once()
    executions_first = _executions(first.metadata_path)
    once()
    return first, executions_first, _executions(first.metadata_path)


def test_every_component_ran(run):
    _, executions, _ = run
    ran = {name for name, _ in executions}
    for component in COMPONENTS:
        assert any(component in name for name in ran), (component, ran)


def test_model_was_pushed_whole(run):
    paths, _, _ = run
    versions = os.listdir(os.path.join(paths.serving_root, "mmoe"))
    assert len(versions) >= 1 and all(v.isdigit() for v in versions)
    model = os.path.join(paths.serving_root, "mmoe", versions[0])
    assert os.path.exists(os.path.join(model, "saved_model.pb"))
    assert os.path.exists(
        os.path.join(model, "assets.extra", "tf_serving_warmup_requests")
    )


def test_metrics_json_is_sane(run):
    paths, _, _ = run
    report = json.loads(open(os.path.join(paths.output, "metrics.json")).read())
    assert report["body"] == "mmoe"
    assert set(report["tasks"]) == set(LABELS)
    for metrics in report["tasks"].values():
        assert metrics["n"] > 50
        for key in ("accuracy", "macro_f1", "auc"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    # The binary task learns something even in 2 epochs on 400 rows.
    assert report["tasks"]["Recommended IND"]["auc"] > 0.6


def test_second_run_hits_the_cache(run):
    _, first, both = run
    from ml_metadata.proto import metadata_store_pb2

    second = both[len(first) :]
    cached = [n for n, s in second if s == metadata_store_pb2.Execution.CACHED]
    for component in ("Transform", "Trainer", "Evaluator"):
        assert any(component in name for name in cached), second


def test_cli_names_a_missing_column_with_exit_code_2(small_csv, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--data",
            small_csv,
            "--text-column",
            "Body",
            "--label-columns",
            "Rating",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "'Body'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
