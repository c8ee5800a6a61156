import io
import json
import types

import pandas as pd
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import baseline, ingest, report


def _store(path):
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def _type(store, kind, name):
    put = getattr(store, f"put_{kind}_type")
    return put(getattr(mlmd, f"{kind.capitalize()}Type")(name=name))


def _record(store, types, run, node, state, outputs):
    """One execution of `node` in `run`, with OUTPUT events to `outputs`."""
    execution = mlmd.Execution(
        type_id=types["execution"], last_known_state=state
    )
    [execution_id] = store.put_executions([execution])
    for key, artifact_id in outputs.items():
        event = mlmd.Event(
            artifact_id=artifact_id,
            execution_id=execution_id,
            type=mlmd.Event.OUTPUT,
        )
        event.path.steps.add().key = key
        store.put_events([event])
    for context_id in (run, node):
        store.put_attributions_and_associations(
            [],
            [
                mlmd.Association(
                    execution_id=execution_id, context_id=context_id
                )
            ],
        )


def test_a_cached_trainer_gives_the_model_it_reused(tmp_path):
    """Run 1 trains model/1, run 2 (other config) model/2, run 3 (run 1's
    config again) hits the cache: its model is model/1, not the newest."""
    store = _store(tmp_path / "metadata.db")
    types = {
        "execution": _type(store, "execution", "Trainer"),
        "artifact": _type(store, "artifact", "Model"),
        "run": _type(store, "context", "pipeline_run"),
        "node": _type(store, "context", "node"),
    }
    [trainer, pusher] = store.put_contexts(
        [
            mlmd.Context(type_id=types["node"], name="p.Trainer"),
            mlmd.Context(type_id=types["node"], name="p.AtomicPusher"),
        ]
    )
    models = store.put_artifacts(
        [
            mlmd.Artifact(type_id=types["artifact"], uri=f"/tfx/model/{i}")
            for i in (1, 2)
        ]
    )
    pushed = mlmd.Artifact(type_id=types["artifact"], uri="/tfx/pushed/9")
    pushed.custom_properties["pushed_destination"].string_value = "/s/m/7"
    [pushed_id] = store.put_artifacts([pushed])
    runs = store.put_contexts(
        [mlmd.Context(type_id=types["run"], name=f"run-{i}") for i in range(3)]
    )
    done, cached = mlmd.Execution.COMPLETE, mlmd.Execution.CACHED
    _record(store, types, runs[0], trainer, done, {"model": models[0]})
    _record(store, types, runs[1], trainer, done, {"model": models[1]})
    _record(store, types, runs[2], trainer, cached, {"model": models[0]})
    _record(store, types, runs[2], pusher, done, {"pushed_model": pushed_id})
    del store

    outputs = report.run_outputs(str(tmp_path / "metadata.db"))
    assert outputs == {
        "Trainer": {"model": "/tfx/model/1"},
        "AtomicPusher": {"pushed_model": "/s/m/7"},
    }


def test_an_empty_store_gives_nothing(tmp_path):
    _store(tmp_path / "metadata.db")
    assert report.run_outputs(str(tmp_path / "metadata.db")) == {}


def _reviews(split_rows):
    """Rows of a liked (binary) and a colour (3-class) task."""
    colours = ["red", "green", "blue"]
    return [
        {
            "review": f"{'nice' if i % 2 else 'poor'} {colours[i % 3]} coat",
            "Liked": str(i % 2),
            "Colour": colours[i % 3],
        }
        for i in range(split_rows)
    ]


def _report(tmp_path, monkeypatch, flag, input_format="csv"):
    """`write_report` on split CSVs, with the model's test metrics and the
    run's outputs given (no pipeline run). Returns (metrics.json, printed)."""
    data_root = tmp_path / "data"
    for split, n in [("train", 30), ("validation", 12), ("test", 12)]:
        rows = _reviews(n)
        if split == "test":
            rows += [{"review": " ", "Liked": "1", "Colour": "red"}]
        (data_root / split).mkdir(parents=True)
        pd.DataFrame(rows).to_csv(data_root / split / "data.csv", index=False)
    monkeypatch.setattr(
        report,
        "run_outputs",
        lambda _: {
            "Trainer": {"model": "/m"},
            "Transform": {"transform_graph": "/t"},
        },
    )
    monkeypatch.setattr(
        report,
        "_class_names",
        lambda *_: {"liked": ["0", "1"], "colour": ["red", "green", "blue"]},
    )

    def model_metrics(n, accuracy, auc):
        return {"n": n, "accuracy": accuracy, "macro_f1": 0.5, "auc": auc}

    monkeypatch.setattr(
        report,
        "test_metrics",
        lambda *_: {
            column: {
                **model_metrics(13, 0.5, 0.5),
                "unseen_or_missing_labels": 0,
                "with_text": model_metrics(12, accuracy, auc),
            }
            for column, accuracy, auc in [
                ("Liked", 0.25, 0.75),
                ("Colour", 0.625, None),
            ]
        },
    )
    summary = ingest.IngestSummary(
        rows=37,
        rows_by_split={"train": 30, "validation": 12, "test": 13},
        bad_rows_skipped=0,
        bytes_replaced=0,
        empty_texts=1,
        missing_labels={"liked": 0, "colour": 0},
        num_classes={"liked": 2, "colour": 3},
        split_column=True,
        input_format=input_format,
    )
    args = types.SimpleNamespace(
        text_column=["review"],
        label_columns=["Liked", "Colour"],
        body="mmoe",
        baseline=flag,
    )
    paths = types.SimpleNamespace(
        output=str(tmp_path / "out"),
        data_root=str(data_root),
        metadata_path=str(tmp_path / "metadata.db"),
    )
    out = io.StringIO()
    assert report.write_report(paths, summary, args, out)
    with open(tmp_path / "out" / "metrics.json") as f:
        return json.load(f), out.getvalue()


def test_baseline_is_saved_and_printed_beside_the_model(tmp_path, monkeypatch):
    saved, printed = _report(tmp_path, monkeypatch, flag=True)
    csvs = [str(tmp_path / "data" / s / "data.csv") for s in ingest.SPLITS]
    expected = baseline.tfidf_lr(
        *csvs,
        ["review"],
        ["Liked", "Colour"],
        class_names={"Liked": ["0", "1"], "Colour": ["red", "green", "blue"]},
    )
    assert saved["baseline"] == {"name": "tfidf_lr", "tasks": expected}
    # The words give both tasks away; the row without text is apart.
    liked, colour = (
        expected["Liked"]["with_text"],
        expected["Colour"]["with_text"],
    )
    assert (liked["n"], liked["auc"], colour["accuracy"]) == (12, 1.0, 1.0)
    assert expected["Colour"]["n"] == 13
    table = printed.split("Model vs TF-IDF + LR baseline, test rows with text:")
    assert table[1].splitlines()[1:4] == [
        "task    metric         n    model  tfidf_lr     diff",
        "Liked   auc           12   0.7500    1.0000  -0.2500",
        "Colour  accuracy      12   0.6250    1.0000  -0.3750",
    ]


def test_without_the_flag_or_csv_input_there_is_no_baseline(
    tmp_path, monkeypatch
):
    saved, printed = _report(tmp_path / "a", monkeypatch, flag=False)
    assert "baseline" not in saved and "TF-IDF" not in printed
    saved, printed = _report(
        tmp_path / "b", monkeypatch, flag=True, input_format="tfrecord"
    )
    assert "baseline" not in saved
    assert printed.count("Baseline skipped: it needs CSV input.\n") == 1
    assert "TF-IDF" not in printed
