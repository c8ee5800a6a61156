"""Checks the input before any work starts and writes clean per-split files.

The input is a CSV (`.csv`, `.csv.gz`), or a TFRecord of tf.Examples (a
name containing `.tfrecord`; gzipped when it ends in `.gz`). CsvExampleGen
needs well-formed rows; this step reads the user's file leniently (bad
bytes, short or long rows), keeps only the text and label columns, and
writes `<root>/<split>/data.csv` (or `data.tfrecord` of tf.Examples, for
ImportExampleGen) for the pipeline, with a summary of what it had to fix.
"""

import dataclasses
import os
import pathlib

import pandas as pd

from serving import features, table

SPLITS = ("train", "validation", "test")
# Skipped rows named in the summary; all are counted.
SKIPPED_ROWS_NAMED = 20


class InputError(ValueError):
    """Bad input named in one line: the command exits with code 2."""


@dataclasses.dataclass
class IngestSummary:
    rows: int
    rows_by_split: dict
    bad_rows_skipped: int
    bytes_replaced: int
    empty_texts: int
    missing_labels: dict
    num_classes: dict  # task -> classes seen in the train split
    split_column: bool
    input_format: str = "csv"  # "csv" | "tfrecord": which ExampleGen reads
    # Where the first skipped rows are and why ("line 7: 3 fields, ...").
    skipped_rows: list = dataclasses.field(default_factory=list)
    # Label classes that look like one class spelled two ways.
    warnings: list = dataclasses.field(default_factory=list)


def _spelling_warnings(column: str, classes: list[str]) -> list[str]:
    """Classes that are likely one class spelled differently: the same
    number (`4`, `4.0`), the same words in another case or spacing
    (`Dresses`, `dresses `), or numbers beside a few words (`five`)."""
    groups = {}
    numbers, words = [], []
    for label in classes:
        try:
            key = float(label)
            numbers.append(label)
        except ValueError:
            key = " ".join(label.lower().split())
            words.append(label)
        groups.setdefault(key, []).append(label)
    found = [
        f"Label column {column!r}: {', '.join(map(repr, spellings))} are "
        "separate classes; spell each class one way if they are one."
        for spellings in groups.values()
        if len(spellings) > 1
    ]
    if numbers and words and len(words) < len(numbers):
        found.append(
            f"Label column {column!r} holds numbers and "
            f"{', '.join(map(repr, words[:3]))}; each is a class of its own."
        )
    return found


def _write_tfrecord(rows: pd.DataFrame, path: pathlib.Path) -> None:
    """Every column as a bytes feature; an empty cell is left out, as
    CsvExampleGen leaves out an empty CSV cell."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows.itertuples(index=False):
            feature = {
                column: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[value.encode()])
                )
                for column, value in zip(rows.columns, row, strict=True)
                if value != ""
            }
            example = tf.train.Example(
                features=tf.train.Features(feature=feature)
            )
            writer.write(example.SerializeToString())


def ingest(
    data: str,
    text_columns: list[str],
    label_columns: list[str],
    root: str,
    split_column: str = "split",
    need_csv_splits: str | None = None,
) -> IngestSummary:
    """Validates `data` and writes the pipeline's input files under `root`.

    Args:
        need_csv_splits: optional str. What needs per-split CSVs (e.g.
            "--baseline"): a CSV without a split column is then refused.

    Raises:
        InputError: missing file or column, a label column with no labelled
            rows or a single class (named), no training rows, or CSV splits
            needed but not given.
    """
    path = pathlib.Path(data)
    if not path.is_file():
        raise InputError(f"Data file not found: {data}")
    kind = table.input_format(data)
    try:
        read = table.read_table(data)
    except table.ReadError as e:
        raise InputError(str(e)) from None
    frame = read.frame
    if kind == "tfrecord" and frame.empty:
        raise InputError(f"No tf.Example records in {data}.")
    missing = [
        c for c in [*text_columns, *label_columns] if c not in frame.columns
    ]
    if missing:
        raise InputError(
            f"Column(s) not in {data}: {', '.join(map(repr, missing))}. "
            f"Columns there: {', '.join(map(repr, frame.columns))}"
        )
    has_split = split_column in frame.columns
    if need_csv_splits and not (has_split and kind == "csv"):
        raise InputError(
            f"{need_csv_splits} fits on the same splits as the model: it "
            f"needs a CSV with a {split_column!r} column "
            "(train/validation/test)."
        )
    if has_split:
        unknown = sorted(set(frame[split_column]) - set(SPLITS))
        if unknown:
            raise InputError(
                f"Column {split_column!r} holds values other than "
                f"{'/'.join(SPLITS)}: {unknown[:5]}"
            )
        train = frame[frame[split_column] == "train"]
    else:
        train = frame
    if train.empty:
        raise InputError(f"No training rows in {data}.")
    num_classes, warnings = {}, []
    for column in label_columns:
        values = train[column].str.strip()
        classes = sorted(set(values[values != ""]))
        if not classes:
            raise InputError(
                f"Label column {column!r} has no labelled training rows."
            )
        if len(classes) == 1:
            raise InputError(
                f"Label column {column!r} has a single class in the training "
                f"rows ({classes[0]!r}); a classifier needs two or more."
            )
        num_classes[features.task_name(column)] = len(classes)
        warnings += _spelling_warnings(column, classes)

    columns = [*dict.fromkeys([*text_columns, *label_columns])]
    out = pathlib.Path(root)
    rows_by_split = {}
    groups = frame.groupby(split_column) if has_split else [("all", frame)]
    for split, rows in groups:
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        name = f"data.{kind}"
        # ExampleGen reads every file of the folder: no stale other format.
        for stale in folder.glob("data.*"):
            if stale.name != name:
                stale.unlink()
        tmp, final = folder / f"{name}.tmp", folder / name
        if kind == "tfrecord":
            _write_tfrecord(rows[columns], tmp)
        else:
            rows[columns].to_csv(tmp, index=False)
        # Unchanged data keeps its file (and mtime), so ExampleGen's input
        # fingerprint, and with it every cached component, stays valid.
        if final.exists() and final.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            os.replace(tmp, final)
        rows_by_split[split] = len(rows)
    text = frame[text_columns].apply(lambda r: "".join(r).strip(), axis=1)
    return IngestSummary(
        rows=len(frame),
        rows_by_split=rows_by_split,
        bad_rows_skipped=len(read.skipped),
        skipped_rows=read.skipped[:SKIPPED_ROWS_NAMED],
        warnings=warnings,
        bytes_replaced=read.bytes_replaced,
        empty_texts=int((text == "").sum()),
        missing_labels={
            features.task_name(c): int((frame[c].str.strip() == "").sum())
            for c in label_columns
        },
        num_classes=num_classes,
        split_column=has_split,
        input_format=kind,
    )
