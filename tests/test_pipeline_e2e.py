"""The whole TFX pipeline on a small slice of the bundled reviews."""

import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
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
def small_csv(reviews_slice):
    return reviews_slice(train=400, validation=100, test=100)


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
            # Seeded, and a mean encoder that learns fast from 400 rows
            # (test AUC of Recommended IND 0.78-0.86 over seeds 0-2).
            trainer_config={
                "epochs": 8,
                "batch_size": 16,
                "embedding_dim": 16,
                "encoder": "mean",
                "learning_rate": 0.003,
                "seed": 0,
            },
            # Any model passes: this test is about the mechanics.
            lower_bounds={"recommended_ind": 0.0},
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


def test_an_unchanged_rerun_pushes_nothing_new(run):
    """The second run's Evaluator blesses the same model again; no pushed
    version may be a byte-identical copy of another."""
    from pipeline import atomic_pusher

    paths, _, _ = run
    base = os.path.join(paths.serving_root, "mmoe")
    digests = [
        atomic_pusher._tree_digest(os.path.join(base, v))
        for v in os.listdir(base)
    ]
    assert len(set(digests)) == len(digests)


def test_pushed_model_holds_the_serving_contract(run):
    """Loaded in a process importing only TensorFlow and TF-Text; the same
    check `python -m serving.contract` runs on the demo's model."""
    from serving import contract

    paths, _, _ = run
    assert contract.check(os.path.join(paths.serving_root, "mmoe")) == []


def test_metrics_json_is_sane(run):
    paths, _, _ = run
    report = json.loads(open(os.path.join(paths.output, "metrics.json")).read())
    assert report["body"] == "mmoe"
    assert set(report["tasks"]) == set(LABELS)
    for metrics in report["tasks"].values():
        assert metrics["n"] > 50
        for key in ("accuracy", "macro_f1", "auc"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    # The binary task learns something even from 400 rows.
    assert report["tasks"]["Recommended IND"]["auc"] > 0.6


def test_second_run_hits_the_cache(run):
    _, first, both = run
    from ml_metadata.proto import metadata_store_pb2

    second = both[len(first) :]
    cached = [n for n, s in second if s == metadata_store_pb2.Execution.CACHED]
    # Evaluator runs again: its baseline is now the first run's blessed
    # model, a new input. Everything upstream of it is reused.
    for component in COMPONENTS[:6]:
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


def test_a_tfrecord_of_examples_runs_through_import_example_gen(
    small_csv, tmp_path
):
    import tensorflow as tf

    from pipeline import local_runner

    frame = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    frame = frame.groupby("split").head(60)
    data = str(tmp_path / "reviews.tfrecord.gz")
    with tf.io.TFRecordWriter(data, "GZIP") as writer:
        for row in frame.itertuples(index=False):
            feature = {
                column: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[value.encode()])
                )
                for column, value in zip(frame.columns, row, strict=True)
                if value
            }
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(feature=feature)
                ).SerializeToString()
            )
    paths, summary = local_runner.run(
        data=data,
        text_columns=TEXT,
        label_columns=["Recommended IND", "Rating"],
        output=str(tmp_path / "out"),
        trainer_config={"epochs": 1, "embedding_dim": 8, "encoder": "mean"},
        lower_bounds={"recommended_ind": 0.0},
    )
    assert summary.input_format == "tfrecord"
    ran = {name for name, _ in _executions(paths.metadata_path)}
    assert any("ImportExampleGen" in name for name in ran), ran
    (version,) = os.listdir(os.path.join(paths.serving_root, "mmoe"))
    assert os.path.exists(
        os.path.join(paths.serving_root, "mmoe", version, "saved_model.pb")
    )


@pytest.mark.slow
def test_a_model_below_its_bound_is_not_pushed(small_csv, tmp_path):
    """`--min-metric` by label column name; the failed gate is named on
    stderr and the command exits non-zero."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--data", small_csv]
        + ["--text-column", *TEXT, "--label-columns", *LABELS]
        + ["--output", str(out), "--epochs", "1"]
        + ["--trainer-arg", "embedding_dim=8", "--trainer-arg", "linear=false"]
        + ["--min-metric", "Rating=0.999"],  # Accuracy never reaches it.
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "mmoe: the model failed its quality gate, not pushed: "
    ), result.stderr[-2000:]
    assert "rating_probabilities sparse_categorical_accuracy 0." in last
    assert "below the bound 0.999" in last
    blessing = out / "tfx" / "Evaluator" / "blessing"
    (execution,) = os.listdir(blessing)
    assert os.listdir(blessing / execution) == ["NOT_BLESSED"]
    serving = out / "serving" / "mmoe"
    assert not serving.exists() or os.listdir(serving) == []


def test_a_rerun_with_another_task_is_evaluated_without_the_old_model(
    run, small_csv
):
    """The last pushed model lacks the new task, so comparing with it would
    fail; the run says so and is evaluated on its own."""
    from pipeline import local_runner

    paths, _, _ = run
    _, summary = local_runner.run(
        data=small_csv,
        text_columns=TEXT,
        label_columns=[*LABELS, "Division Name"],
        output=paths.output,
        trainer_config={"epochs": 1, "encoder": "mean", "seed": 0},
        lower_bounds={"recommended_ind": 0.0},
    )
    assert any("other tasks" in w for w in summary.warnings), summary.warnings
    assert local_runner.pushed_tasks(
        os.path.join(paths.serving_root, "mmoe")
    ) == {
        "recommended_ind": 2,
        "rating": 5,
        "department_name": summary.num_classes["department_name"],
        "division_name": summary.num_classes["division_name"],
    }
