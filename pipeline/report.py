"""After a run: per-task test metrics, the gate heatmap, where things went."""

import json
import os

import numpy as np
import pandas as pd

from pipeline import evaluation, features, ingest

BATCH = 256


def run_outputs(metadata_path: str) -> dict[str, dict[str, str]]:
    """{node id: {output key: artifact uri}} of the newest pipeline run.

    Read from ML Metadata, so a component that hit the cache gives the
    artifact it reused, not the newest one of that kind on disk (a rerun
    with an earlier config reuses an earlier model). Pushed models give
    their `pushed_destination`.
    """
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    )
    store = metadata_store.MetadataStore(config)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    outputs = {}
    for execution in store.get_executions_by_context(run.id):
        node = next(
            (
                c.name.rsplit(".", 1)[-1]
                for c in store.get_contexts_by_execution(execution.id)
                if c.type == "node"
            ),
            None,
        )
        events = [
            e
            for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps
        ]
        artifacts = {
            a.id: a
            for a in store.get_artifacts_by_id([e.artifact_id for e in events])
        }
        for event in events:
            artifact = artifacts[event.artifact_id]
            pushed = artifact.custom_properties.get("pushed_destination")
            outputs.setdefault(node, {})[event.path.steps[0].key] = (
                pushed.string_value if pushed else artifact.uri
            )
    return outputs


def _load(model_dir: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF-Text ops)

    return tf.saved_model.load(model_dir)


def test_metrics(model_dir, test_csv, config, class_names):
    """{task: metrics} of the exported model on the test CSV's rows.

    Each task's metrics also hold `with_text`: the same metrics on the rows
    whose text is not empty (the protocol of data/README.md's reference
    figures, which drop rows without text).
    """
    model = _load(model_dir)
    predict = model.signatures["predict_text"]
    frame = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    texts = frame[config.text_columns].agg(" ".join, axis=1).tolist()
    has_text = np.array([bool(t.strip()) for t in texts])
    probabilities = {features.task_name(c): [] for c in config.label_columns}
    for start in range(0, len(texts), BATCH):
        out = predict(text=np.array(texts[start : start + BATCH], dtype=object))
        for task in probabilities:
            probabilities[task].append(out[f"{task}_probabilities"].numpy())
    results = {}
    for column in config.label_columns:
        task = features.task_name(column)
        index = {name: i for i, name in enumerate(class_names[task])}
        labels = np.array(
            [index.get(v.strip(), -1) for v in frame[column]], dtype="int64"
        )
        p = np.concatenate(probabilities[task])
        p = p[:, 1:] if p.shape[1] == 2 else p
        results[column] = evaluation.task_metrics(labels, p)
        results[column]["unseen_or_missing_labels"] = int((labels < 0).sum())
        labelled_text = has_text & (labels >= 0)
        results[column]["with_text"] = (
            evaluation.task_metrics(labels[has_text], p[has_text])
            if labelled_text.any()
            else None
        )
    return results


def write_report(paths, summary: ingest.IngestSummary, args, out) -> bool:
    """Writes metrics.json and gates.png into the output dir; prints a table.

    Returns whether a model was exported (and so metrics computed).
    """
    import tensorflow_transform as tft

    from keras_mmoe import gate_diagnostics
    from pipeline import preprocessing

    outputs = run_outputs(paths.metadata_path)
    model_dir = outputs.get("Trainer", {}).get("model")
    transform_dir = outputs.get("Transform", {}).get("transform_graph")
    if model_dir is None or transform_dir is None:
        print("mmoe: the pipeline exported no model.", file=out)
        return False
    model_dir = os.path.join(model_dir, "Format-Serving")
    config = features.PreprocessingConfig(args.text_column, args.label_columns)
    tft_output = tft.TFTransformOutput(transform_dir)
    class_names = {
        task: preprocessing.class_names(tft_output, task)
        for task in config.tasks
    }
    test_csv = os.path.join(paths.data_root, "test", "data.csv")
    results = (
        test_metrics(model_dir, test_csv, config, class_names)
        if os.path.exists(test_csv)
        else {}
    )
    blessing = outputs.get("Evaluator", {}).get("blessing")
    blessed = blessing is not None and os.path.exists(
        os.path.join(blessing, "BLESSED")
    )
    report = {
        "body": args.body,
        "tasks": results,
        "blessed": blessed,
        "ingest": summary.__dict__,
    }
    os.makedirs(paths.output, exist_ok=True)
    metrics_path = os.path.join(paths.output, "metrics.json")
    tmp = metrics_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, metrics_path)

    print("\nTest split metrics:", file=out)
    print(evaluation.format_table(results), file=out)
    with_text = {
        k: v["with_text"] for k, v in results.items() if v["with_text"]
    }
    if any(v["n"] < results[k]["n"] for k, v in with_text.items()):
        print("Test rows with text:", file=out)
        print(evaluation.format_table(with_text), file=out)
    print(f"\nMetrics: {metrics_path}", file=out)
    run_dir = outputs.get("Trainer", {}).get("model_run")
    summary_path = run_dir and os.path.join(run_dir, "training_summary.json")
    if summary_path and os.path.exists(summary_path):
        with open(summary_path) as f:
            gates = json.load(f).get("gates")
        if gates:
            png = gate_diagnostics.plot_gate_heatmap(
                gates,
                os.path.join(paths.output, "gates.png"),
                title=f"{args.body} gates, validation split",
            )
            print(f"Gate heatmap: {png}", file=out)
    pushed = next((v for k, v in outputs.items() if "Pusher" in k), {}).get(
        "pushed_model"
    )
    if blessed and pushed:
        print(f"Pushed model: {pushed}", file=out)
    else:
        print("Model not blessed by the Evaluator: not pushed.", file=out)
    print(f"TensorBoard: tensorboard --logdir {run_dir}", file=out)
    return True
