"""After a run: per-task test metrics, the gate heatmap, where things went."""

import json
import os
import time

import numpy as np

from pipeline import evaluation, ingest
from serving import features

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
    predict = model.signatures[features.PREDICT_TEXT]
    frame, texts = evaluation.read_split(test_csv, config.text_columns)
    probabilities = {features.task_name(c): [] for c in config.label_columns}
    for start in range(0, len(texts), BATCH):
        out = predict(text=np.array(texts[start : start + BATCH], dtype=object))
        for task in probabilities:
            probabilities[task].append(
                out[features.probabilities_key(task)].numpy()
            )
    results = {}
    for column in config.label_columns:
        task = features.task_name(column)
        labels = evaluation.label_indices(frame[column], class_names[task])
        p = np.concatenate(probabilities[task])
        p = p[:, 1:] if p.shape[1] == 2 else p
        results[column] = evaluation.split_scores(labels, p, texts)
    return results


def _class_names(transform_dir: str, config) -> dict[str, list[str]]:
    """{task: class names}: the label vocabularies the model was built on."""
    import tensorflow_transform as tft

    from serving import preprocessing

    tft_output = tft.TFTransformOutput(transform_dir)
    return {
        task: preprocessing.class_names(tft_output, task)
        for task in config.tasks
    }


def baseline_report(data_root, config, class_names, input_format, out):
    """{"name", "tasks"} of `baseline.tfidf_lr` on the ingested splits.

    Fit on the train CSV, C chosen on the validation CSV, scored on the
    test CSV with the model's class names. None, with one line to `out`,
    when the splits are not CSVs.
    """
    from pipeline import baseline

    csvs = [os.path.join(data_root, s, "data.csv") for s in ingest.SPLITS]
    if input_format != "csv":
        print("Baseline skipped: it needs CSV input.", file=out)
        return None
    if not all(os.path.exists(path) for path in csvs):
        print(
            "Baseline skipped: it needs train/validation/test CSVs "
            "(a `split` column).",
            file=out,
        )
        return None
    print(f"  {baseline.NAME} baseline ...", file=out, flush=True)
    start = time.perf_counter()
    tasks = baseline.tfidf_lr(
        *csvs,
        config.text_columns,
        config.label_columns,
        class_names={
            c: class_names[features.task_name(c)] for c in config.label_columns
        },
    )
    took = time.perf_counter() - start
    print(f"  {baseline.NAME} baseline done ({took:.0f} s)", file=out)
    return {"name": baseline.NAME, "tasks": tasks}


def format_comparison(results, baseline_tasks) -> str:
    """Per task, the model's main test metric beside the baseline's.

    The main metric is AUC for a binary task, accuracy for a multi-class
    one (the baseline's `validation_metric`). On the rows with text when,
    for some task, those are fewer than all rows (as the "Test rows with
    text" table).
    """
    with_text = any(
        v["with_text"] is not None and v["with_text"]["n"] < v["n"]
        for v in results.values()
    )
    width = max([len("task"), *map(len, results)]) + 2
    lines = [
        "Model vs TF-IDF + LR baseline, test "
        + ("rows with text:" if with_text else "rows:"),
        f"{'task':<{width}}{'metric':<10}{'n':>6}{'model':>9}{'tfidf_lr':>10}"
        f"{'diff':>9}",
    ]
    for task, model in results.items():
        base = baseline_tasks[task]
        metric = base["validation_metric"]
        if with_text:
            model, base = model["with_text"], base["with_text"]
        a = model and model[metric]
        b = base and base[metric]
        cells = [
            f"{a:>9.4f}" if a is not None else f"{'-':>9}",
            f"{b:>10.4f}" if b is not None else f"{'-':>10}",
            f"{a - b:>+9.4f}" if None not in (a, b) else f"{'-':>9}",
        ]
        n = model["n"] if model else 0
        lines.append(f"{task:<{width}}{metric:<10}{n:>6}" + "".join(cells))
    return "\n".join(lines)


def gate_failures(metadata_path: str) -> list[str]:
    """Why the newest run's Evaluator did not bless its model, one entry
    per failed threshold (e.g. "rating_probabilities accuracy 0.517 below
    the bound 0.99"); empty when it blessed it or did not run."""
    outputs = run_outputs(metadata_path).get("Evaluator", {})
    blessing, evaluation = outputs.get("blessing"), outputs.get("evaluation")
    if blessing is None or os.path.exists(os.path.join(blessing, "BLESSED")):
        return []
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            threshold = failure.metric_threshold
            if threshold.HasField("change_threshold"):
                limit = (
                    "a drop against the last blessed model beyond "
                    f"{-threshold.change_threshold.absolute.value:g}"
                )
            else:
                bound = threshold.value_threshold.lower_bound.value
                limit = f"below the bound {bound:g}"
            failures.append(
                f"{key.output_name} {key.name} "
                f"{failure.metric_value.double_value.value:.4f}: {limit}"
            )
    return failures or ["the Evaluator did not bless it"]


def write_report(paths, summary: ingest.IngestSummary, args, out) -> bool:
    """Writes metrics.json and gates.png into the output dir; prints a table.

    With `args.baseline`, also fits the TF-IDF + LR baseline on the same
    splits, keeps its metrics in metrics.json and prints it beside the
    model.

    Returns whether a model was exported (and so metrics computed).
    """
    outputs = run_outputs(paths.metadata_path)
    model_dir = outputs.get("Trainer", {}).get("model")
    transform_dir = outputs.get("Transform", {}).get("transform_graph")
    if model_dir is None or transform_dir is None:
        print("mmoe: the pipeline exported no model.", file=out)
        return False
    model_dir = os.path.join(model_dir, "Format-Serving")
    config = features.PreprocessingConfig(args.text_column, args.label_columns)
    class_names = _class_names(transform_dir, config)
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
    baseline = None
    if getattr(args, "baseline", False):
        baseline = baseline_report(
            paths.data_root, config, class_names, summary.input_format, out
        )
    if baseline is not None:
        report["baseline"] = baseline
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
    if baseline is not None:
        print(format_comparison(results, baseline["tasks"]), file=out)
    print(f"\nMetrics: {metrics_path}", file=out)
    run_dir = outputs.get("Trainer", {}).get("model_run")
    summary_path = run_dir and os.path.join(run_dir, "training_summary.json")
    if summary_path and os.path.exists(summary_path):
        with open(summary_path) as f:
            gates = json.load(f).get("gates")
        if gates:
            from keras_mmoe import gate_diagnostics

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
