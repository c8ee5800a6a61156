"""Checks the input before any work starts and writes clean per-split files.

The input is a CSV (`.csv`, `.csv.gz`), or a TFRecord of tf.Examples (a
name containing `.tfrecord`; gzipped when it ends in `.gz`): one file or a
pattern of them, on any filesystem `serving.files` reads (`gs://`, `s3://`,
`hdfs://`). CsvExampleGen needs well-formed rows; this step reads the
user's files leniently (bad bytes, short or long rows), keeps only the text
and label columns, and writes `<root>/<split>/data.csv` (or `data.tfrecord`
of tf.Examples, for ImportExampleGen) for the pipeline, with a summary of
what it had to fix.

The rows stream through: the input is read in chunks of
`table.CHUNK_BYTES`, each row is counted and appended to its split's file,
and memory holds only counters, each label's classes and, at the end, one
bucket of the training rows' shuffle (`SHUFFLE_BUCKETS`), whatever the
input's size. The rows that train are staged in a seeded random order, so
nothing downstream has to hold a split to shuffle it.

What is cheap to check (the files exist, a CSV's header and columns) is
checked before any row is read. The files are written in a
hidden folder under `root` and moved into place only when every row has
been read and the checks that need all of them have passed.
"""

import csv
import dataclasses
import filecmp
import io
import operator
import os
import random
import shutil
import tempfile

from serving import features, table

SPLITS = ("train", "validation", "test")
# Skipped rows named in the summary; all are counted.
SKIPPED_ROWS_NAMED = 20
# The rows that train (the train split, or all rows when ExampleGen splits
# them) are staged in a random order through this many bucket files: the
# shuffle holds one bucket, a 1/SHUFFLE_BUCKETS share of them, in memory.
SHUFFLE_BUCKETS = 64
SHUFFLE_SEED = 0
# Splits staged in a random order.
SHUFFLED = ("train", "all")


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


class _SplitWriter:
    """One split's rows, written to `<folder>/data.<kind>`.

    With `shuffle`, the rows are written in a seeded random order, with
    memory bounded by a share of the split: each row goes, as it comes, to
    one of `SHUFFLE_BUCKETS` bucket files chosen at random, and `close`
    writes the buckets one after another, each shuffled in memory. Every
    order of the rows is then equally likely (ExampleGen keeps the order, and
    the Trainer's shuffle buffer holds only a window of it). The seed is
    fixed: the same input gives the same file.
    """

    def __init__(self, folder: str, kind: str, columns: list[str], shuffle):
        os.makedirs(folder)
        self.path = os.path.join(folder, f"data.{kind}")
        self.columns = columns
        self.rows = 0
        self._buckets = None
        if kind == "tfrecord":
            import tensorflow as tf

            self._tf = tf
            self._file = tf.io.TFRecordWriter(self.path)
            self._encode = self._example
            self._put = self._file.write
        else:
            self._file = open(self.path, "w", newline="", encoding="utf-8")
            self._line = io.StringIO()
            self._csv = csv.writer(self._line, lineterminator="\n")
            self._file.write(self._csv_line(columns))
            self._encode = self._csv_line
            self._put = self._file.write
        if shuffle:
            self._random = random.Random(SHUFFLE_SEED)
            self._buckets = [
                _Bucket(
                    os.path.join(folder, f".bucket-{i:03d}"), kind != "tfrecord"
                )
                for i in range(SHUFFLE_BUCKETS)
            ]

    def write(self, cells) -> None:
        record = self._encode(cells)
        if self._buckets is None:
            self._put(record)
        else:
            self._buckets[self._random.randrange(SHUFFLE_BUCKETS)].add(record)
        self.rows += 1

    def _csv_line(self, cells) -> str:
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(cells)
        return self._line.getvalue()

    def _example(self, cells) -> bytes:
        """Every column as a bytes feature; an empty cell is left out, as
        CsvExampleGen leaves out an empty CSV cell."""
        tf = self._tf
        feature = {
            column: tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode()])
            )
            for column, value in zip(self.columns, cells, strict=True)
            if value != ""
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        # Sorted map keys: the same row gives the same bytes in every
        # process, so an unchanged input keeps its staged file.
        return example.SerializeToString(deterministic=True)

    def close(self, keep: bool = True) -> None:
        """Finishes the file (`keep`), or only releases it."""
        try:
            for bucket in (self._buckets or ()) if keep else ():
                records = bucket.read()
                self._random.shuffle(records)
                for record in records:
                    self._put(record)
        finally:
            for bucket in self._buckets or ():
                bucket.remove()
            self._file.close()


class _Bucket:
    """Records appended to a file, length-prefixed, read back whole."""

    def __init__(self, path: str, text: bool):
        self.path = path
        self._file = open(path, "wb")
        self._text = text

    def add(self, record) -> None:
        if self._text:
            record = record.encode("utf-8")
        self._file.write(len(record).to_bytes(4, "little"))
        self._file.write(record)

    def read(self) -> list:
        self._file.close()
        with open(self.path, "rb") as f:
            data = f.read()
        records, at = [], 0
        while at < len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            records.append(data[at + 4 : at + 4 + size])
            at += 4 + size
        if self._text:
            return [r.decode("utf-8") for r in records]
        return records

    def remove(self) -> None:
        self._file.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def _check_columns(data, wanted, columns) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"Column(s) not in {data}: {', '.join(map(repr, missing))}. "
            f"Columns there: {', '.join(map(repr, columns))}"
        )


def _cells(kind: str, header: list[str], columns: list[str]):
    """A function: a row as read -> the cells of `columns`, in order."""
    if kind == "tfrecord":
        return lambda row: tuple(row.get(c, "") for c in columns)
    getter = operator.itemgetter(*(header.index(c) for c in columns))
    if len(columns) == 1:
        return lambda row: (getter(row),)
    return getter


def ingest(
    data: str,
    text_columns: list[str],
    label_columns: list[str],
    root: str,
    split_column: str = "split",
    need_csv_splits: str | None = None,
    chunk_bytes: int = table.CHUNK_BYTES,
    beam_args: list[str] | None = None,
) -> IngestSummary:
    """Validates `data` and writes the pipeline's input files under `root`.

    Args:
        data: str. A file or a glob of files, local or a URL.
        need_csv_splits: optional str. What needs per-split CSVs (e.g.
            "--baseline"): a CSV without a split column is then refused.
        chunk_bytes: int. Bytes of input read at a time.
        beam_args: optional list of Beam pipeline options, for the
            filesystem of a URL (e.g. `--s3_region_name=...`).

    Raises:
        InputError: no file or a missing column, a split value other than
            train/validation/test, a label column with no labelled rows or a
            single class (named), no training rows, or CSV splits needed but
            not given. Nothing under `root` is changed then.
    """
    try:
        reader = table.TableReader(
            data,
            chunk_bytes=chunk_bytes,
            keep_skipped=SKIPPED_ROWS_NAMED,
            beam_args=beam_args,
        )
    except table.ReadError as e:
        raise InputError(str(e)) from None
    kind = reader.format
    columns = [*dict.fromkeys([*text_columns, *label_columns])]
    has_split = None  # A TFRecord's first example tells.
    if kind == "csv":
        _check_columns(data, columns, reader.columns)
        has_split = split_column in reader.columns
    if need_csv_splits and not (has_split and kind == "csv"):
        raise InputError(
            f"{need_csv_splits} fits on the same splits as the model: it "
            f"needs a CSV with a {split_column!r} column "
            "(train/validation/test)."
        )
    made_root = not os.path.isdir(root)
    os.makedirs(root, exist_ok=True)
    # Hidden: ExampleGen reads `<root>/<split>/*` or `<root>/all/*` only.
    staging = tempfile.mkdtemp(prefix=".ingest-", dir=root)
    try:
        counts = _stream(
            reader,
            data,
            columns,
            text_columns,
            label_columns,
            split_column,
            has_split,
            staging,
        )
        summary = _summarize(data, reader, counts, label_columns)
        _move_into_place(staging, root, kind, counts.writers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return summary


@dataclasses.dataclass
class _Counts:
    """What one pass over the rows found."""

    rows: int
    writers: dict  # split -> _SplitWriter
    classes: dict  # label column -> classes of its training rows
    missing: dict  # label column -> rows without a label
    empty_texts: int
    has_split: bool
    columns: list  # the columns kept


def _stream(
    reader,
    data,
    columns,
    text_columns,
    label_columns,
    split_column,
    has_split,
    staging,
) -> _Counts:
    """Reads every row once: counts it and appends it to its split's file
    in `staging`."""
    kind = reader.format
    select = _cells(kind, reader.columns, columns)
    texts = [columns.index(c) for c in text_columns]
    labels = [(c, columns.index(c)) for c in label_columns]
    split_of = None
    if has_split:
        split_of = _cells(kind, reader.columns, [split_column])
    writers = {}
    classes = {c: set() for c in label_columns}
    missing = dict.fromkeys(label_columns, 0)
    rows = empty_texts = 0
    read_all = False
    try:
        for _, row in reader.rows():
            if has_split is None:  # A TFRecord's first example.
                has_split = split_column in row
                if has_split:
                    split_of = _cells(kind, [], [split_column])
            split = split_of(row)[0] if has_split else "all"
            if has_split and split not in SPLITS:
                raise InputError(
                    f"Column {split_column!r} holds values other than "
                    f"{'/'.join(SPLITS)}: {[split]}"
                )
            if not has_split and kind == "tfrecord" and split_column in row:
                raise InputError(
                    f"Column {split_column!r} is in some examples of {data} "
                    f"and not in others (the first has none)."
                )
            cells = select(row)
            if not "".join(cells[i] for i in texts).strip():
                empty_texts += 1
            for column, i in labels:
                label = cells[i].strip()
                if not label:
                    missing[column] += 1
                elif split in ("train", "all"):
                    classes[column].add(label)
            writer = writers.get(split)
            if writer is None:
                writer = writers[split] = _SplitWriter(
                    os.path.join(staging, split),
                    kind,
                    columns,
                    shuffle=split in SHUFFLED,
                )
            writer.write(cells)
            rows += 1
        read_all = True
    except table.ReadError as e:
        raise InputError(str(e)) from None
    finally:
        for writer in writers.values():
            writer.close(keep=read_all)
    return _Counts(
        rows, writers, classes, missing, empty_texts, bool(has_split), columns
    )


def _summarize(data, reader, counts: _Counts, label_columns) -> IngestSummary:
    """The summary of a finished read; raises InputError for what only all
    the rows can tell."""
    kind, writers = reader.format, counts.writers
    if kind == "tfrecord":
        if not counts.rows:
            raise InputError(f"No tf.Example records in {data}.")
        _check_columns(data, counts.columns, reader.columns)
    train = writers.get("train" if counts.has_split else "all")
    if train is None:
        raise InputError(f"No training rows in {data}.")
    num_classes, warnings = {}, []
    for column in label_columns:
        classes = sorted(counts.classes[column])
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
    return IngestSummary(
        rows=counts.rows,
        rows_by_split={s: writers[s].rows for s in sorted(writers)},
        bad_rows_skipped=reader.skipped_count,
        skipped_rows=reader.skipped,
        warnings=warnings,
        bytes_replaced=reader.bytes_replaced,
        empty_texts=counts.empty_texts,
        missing_labels={
            features.task_name(c): counts.missing[c] for c in label_columns
        },
        num_classes=num_classes,
        split_column=counts.has_split,
        input_format=kind,
    )


def _move_into_place(staging, root, kind, writers) -> None:
    """Each split's staged file replaces `<root>/<split>/data.<kind>`; the
    files this step wrote earlier for other splits or formats go."""
    name = f"data.{kind}"
    ours = {f"data.{k}" for k in ("csv", "tfrecord")}
    for split in [*SPLITS, "all"]:
        folder = os.path.join(root, split)
        if split not in writers:
            # A split the input no longer has: ExampleGen must not read
            # last run's rows for it.
            if split != "all" and "all" not in writers:
                for stale in ours & set(_listdir(folder)):
                    os.remove(os.path.join(folder, stale))
            continue
        os.makedirs(folder, exist_ok=True)
        # ExampleGen reads every file of the folder: no stale other format.
        for stale in (ours - {name}) & set(_listdir(folder)):
            os.remove(os.path.join(folder, stale))
        staged, final = writers[split].path, os.path.join(folder, name)
        # Unchanged data keeps its file (and mtime), so ExampleGen's input
        # fingerprint, and with it every cached component, stays valid.
        if os.path.exists(final) and filecmp.cmp(staged, final, shallow=False):
            continue
        os.replace(staged, final)


def _listdir(folder) -> list[str]:
    return os.listdir(folder) if os.path.isdir(folder) else []
