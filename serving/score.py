"""Batch scoring with the exported model on Apache Beam (`mmoe score`).

    mmoe score --model output/demo/serving/mmoe --data reviews.csv \\
      --text-column Title "Review Text" --output predictions/ \\
      [--beam-arg=--direct_running_mode=multi_processing \\
       --beam-arg=--direct_num_workers=2 | --beam-arg=--runner=FlinkRunner]

Input: a CSV (`.csv`, `.csv.gz`; the text is the `--text-column` cells
joined with a space, as the pipeline's Transform joins them) or a TFRecord
of tf.Examples (a name containing `.tfrecord`, gzipped if it ends in `.gz`;
each example goes to `serving_default` as it is); a file or a pattern of
files, as `mmoe run` reads them. Rows are numbered as they are read (on
across a pattern's files), so every row keeps its identity however the
runner reorders or retries work: its `--id-column` value, else its 0-based
row number (malformed rows are skipped, named in the summary, and keep
their numbers, so the ids of the rows after them do not shift).

The scoring runs in Beam's `RunInference` with a model handler that loads the
SavedModel (`tf.saved_model.load` after `import tensorflow_text`) once per
worker and calls the signature on batches of up to `batch_size` rows.

Output: `OUTPUT/predictions-SSSSS-of-NNNNN.jsonl`, one JSON object per input
row: `{"id": ..., "<task>": {"label": ..., "probabilities": {class: p}}}`.
The job writes into a hidden folder beside `OUTPUT` and moves its files into
place when it has succeeded: a failed job leaves `OUTPUT` as it was. An
existing `OUTPUT` may only hold prediction files of an earlier run, which
`--overwrite` replaces; a folder with any other file is refused.
"""

import fnmatch
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Sequence

from serving import features, files, predict, table

SUFFIX = ".jsonl"
PREFIX = "predictions"
# What the job writes: predictions-SSSSS-of-NNNNN.jsonl.
_PATTERN = f"{PREFIX}-*-of-*{SUFFIX}"


class ScoreError(ValueError):
    """Bad input, named in one line (the command exits with code 2)."""


def read_rows(data, text_columns=None, id_column=None):
    """`([(id, bytes)], skipped)`: the texts of a CSV or the serialized
    tf.Examples of a TFRecord, each with its `id_column` value or else its
    0-based row number (skipped rows keep their numbers), and where the
    skipped malformed rows are (`table.Table.skipped`)."""
    try:
        paths = files.match(data)
    except files.FilesError as e:
        raise ScoreError(str(e)) from None
    if table.input_format(data) == "tfrecord":
        return _read_tfrecord(paths, id_column)
    if not text_columns:
        raise ScoreError("A CSV needs --text-column: which columns hold text.")
    try:
        read = table.read_table(data)
    except table.ReadError as e:
        raise ScoreError(str(e)) from None
    frame = read.frame
    missing = [
        c
        for c in [*text_columns, *([id_column] if id_column else [])]
        if c not in frame.columns
    ]
    if missing:
        raise ScoreError(
            f"Column(s) not in {data}: {', '.join(map(repr, missing))}. "
            f"Columns there: {', '.join(map(repr, frame.columns))}"
        )
    texts = frame[list(text_columns)].agg(" ".join, axis=1).str.strip()
    ids = frame[id_column].tolist() if id_column else frame.index.tolist()
    rows = [(i, t.encode("utf-8")) for i, t in zip(ids, texts, strict=True)]
    return rows, read.skipped


def _read_tfrecord(paths, id_column):
    import tensorflow as tf

    name = paths[0] if len(paths) == 1 else f"{paths[0]} ..."
    compression = "GZIP" if paths[0].endswith(".gz") else ""
    rows, skipped = [], []
    try:
        records = tf.data.TFRecordDataset(paths, compression_type=compression)
        for number, record in enumerate(records.as_numpy_iterator()):
            key = number
            try:
                # serving_default would fail the whole job on it.
                example = tf.train.Example.FromString(record)
            except Exception:
                skipped.append(f"record {number}: not a tf.Example")
                continue
            if id_column:
                feature = example.features.feature.get(id_column)
                if feature is None:
                    raise ScoreError(
                        f"Record {number} of {name} has no {id_column!r}."
                    )
                kind = feature.WhichOneof("kind")
                (key,) = getattr(feature, kind).value[:1] or [None]
                key = key.decode() if isinstance(key, bytes) else key
            rows.append((key, record))
    except tf.errors.OpError as e:
        raise ScoreError(
            f"Could not read TFRecord {name}: {e.message.splitlines()[0]}"
        ) from None
    return rows, skipped


def _handler(model_dir, signature, batch_size):
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

    class SavedModelHandler(ModelHandler):
        """Loads the SavedModel once per worker; calls one signature."""

        def load_model(self):
            import tensorflow as tf
            import tensorflow_text  # noqa: F401  (registers the ops)

            return tf.saved_model.load(model_dir)

        def run_inference(self, batch, model, inference_args=None):
            import tensorflow as tf

            fn = model.signatures[signature]
            name = features.SIGNATURE_INPUTS[signature]
            out = fn(**{name: tf.constant(list(batch), tf.string)})
            out = {k: v.numpy() for k, v in out.items()}
            return [
                {k: v[i] for k, v in out.items()} for i in range(len(batch))
            ]

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": batch_size}

    return KeyedModelHandler(SavedModelHandler())


def _to_json(keyed, class_names):
    key, outputs = keyed
    row = {"id": key}
    for task in features.output_tasks(outputs):
        value = outputs[features.probabilities_key(task)]
        names = class_names.get(task) or [str(i) for i in range(len(value))]
        label = outputs[features.predicted_label_key(task)]
        row[task] = {
            "label": label.decode("utf-8", errors="replace"),
            "probabilities": {
                n: round(float(p), 6) for n, p in zip(names, value, strict=True)
            },
        }
    return json.dumps(row, ensure_ascii=False)


def score(
    model: str,
    data: str,
    output: str,
    text_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    beam_args: Sequence[str] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
) -> dict:
    """Scores every row of `data` with the model; see the module docstring.

    Returns {"rows": n scored, "skipped": where the skipped malformed rows
    are, "files": [...], "replaced": earlier prediction files replaced}.
    """
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    try:
        model_dir = predict.resolve_model_dir(model)
    except FileNotFoundError as e:
        raise ScoreError(str(e)) from None
    if batch_size < 1:
        raise ScoreError(f"--batch-size must be >= 1. Received: {batch_size}")
    output = os.path.abspath(output)
    earlier = _earlier_predictions(output, overwrite)
    rows, skipped = read_rows(data, text_columns, id_column)
    ids = [key for key, _ in rows]
    if len(set(ids)) != len(ids):
        raise ScoreError(f"Column {id_column!r} has repeated values.")
    signature = (
        features.SERVING_DEFAULT
        if table.input_format(data) == "tfrecord"
        else features.PREDICT_TEXT
    )
    tasks = _tasks(model_dir)
    class_names = {t: predict.class_names(model_dir, t) for t in tasks}

    staging = os.path.join(
        os.path.dirname(output), f".{os.path.basename(output)}.{os.getpid()}"
    )
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.makedirs(staging)
    except OSError as e:
        raise ScoreError(f"Cannot write next to {output}: {e}") from None
    try:
        options = PipelineOptions(list(beam_args or []))
        with beam.Pipeline(options=options) as pipeline:
            _ = (
                pipeline
                | "Rows" >> beam.Create(rows, reshuffle=True)
                | "Score"
                >> RunInference(_handler(model_dir, signature, batch_size))
                | "ToJson" >> beam.Map(_to_json, class_names=class_names)
                | "Write"
                >> beam.io.WriteToText(
                    os.path.join(staging, PREFIX), file_name_suffix=SUFFIX
                )
            )
        if not os.path.exists(output):
            os.replace(staging, output)
        else:
            # Only the files an earlier `mmoe score` wrote are replaced.
            new = set(os.listdir(staging))
            for name in new:
                os.replace(
                    os.path.join(staging, name), os.path.join(output, name)
                )
            for name in earlier:
                if name not in new:
                    os.remove(os.path.join(output, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "rows": len(rows),
        "skipped": skipped,
        "files": sorted(str(p) for p in pathlib.Path(output).glob(_PATTERN)),
        "replaced": len(earlier),
    }


def _earlier_predictions(output: str, overwrite: bool) -> list[str]:
    """The prediction files an earlier run left in `output`, which
    `overwrite` allows to replace; anything else there is refused."""
    if not os.path.exists(output):
        return []
    if not os.path.isdir(output):
        raise ScoreError(f"--output {output} is a file, not a folder.")
    names = sorted(os.listdir(output))
    others = [n for n in names if not fnmatch.fnmatch(n, _PATTERN)]
    if others:
        raise ScoreError(
            f"Output folder {output} holds files `mmoe score` did not write "
            f"({', '.join(map(repr, others[:3]))}); use a new or empty folder."
        )
    if names and not overwrite:
        raise ScoreError(
            f"Output folder {output} holds {len(names)} prediction file(s) "
            "of an earlier run; pass --overwrite to replace them."
        )
    return names


def _tasks(model_dir) -> list[str]:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    outputs = (
        tf.saved_model.load(model_dir)
        .signatures[features.PREDICT_TEXT]
        .structured_outputs
    )
    return features.output_tasks(outputs)


# === The `mmoe score` command ===


def add_score_command(subparsers) -> None:
    """Registers `mmoe score` on an argparse subparsers object."""
    cmd = subparsers.add_parser(
        "score", help="score a CSV or TFRecord with a model, on Apache Beam"
    )
    cmd.add_argument("--model", required=True, help="SavedModel or model dir")
    cmd.add_argument(
        "--data",
        required=True,
        help="CSV or TFRecord file, or a quoted pattern of files",
    )
    cmd.add_argument("--output", required=True, help="folder to create")
    cmd.add_argument("--text-column", nargs="+", metavar="COL")
    cmd.add_argument("--id-column")
    cmd.add_argument("--batch-size", type=int, default=256)
    cmd.add_argument("--overwrite", action="store_true")
    cmd.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a Beam pipeline option, e.g. --beam-arg=--runner=FlinkRunner",
    )
    cmd.set_defaults(func=cmd_score)


def cmd_score(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = score(
            args.model,
            args.data,
            args.output,
            text_columns=args.text_column,
            id_column=args.id_column,
            beam_args=args.beam_arg,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
    except ScoreError as e:
        print(f"mmoe: {e}", file=err)
        return features.EXIT_BAD_INPUT
    print(
        f"Scored {result['rows']} rows into {len(result['files'])} file(s) "
        f"under {os.path.abspath(args.output)}"
        + (
            f" (replacing {result['replaced']} earlier file(s))"
            if result["replaced"]
            else ""
        ),
        file=out,
    )
    skipped = result["skipped"]
    if skipped:
        print(
            f"Skipped {len(skipped)} malformed row(s): "
            + "; ".join(skipped[:5])
            + ("; ..." if len(skipped) > 5 else ""),
            file=out,
        )
    return 0
