"""Reading a user's CSV or TFRecord file into rows of strings, leniently.

`mmoe run` (the pipeline's ingest step) and `mmoe score` read their input
the same way: a CSV (`.csv`, `.csv.gz`) with bytes that are not UTF-8
replaced and malformed rows skipped and counted, or a TFRecord of
tf.Examples (a name containing `.tfrecord`, gzipped when it ends in `.gz`)
with every feature as one string cell.
"""

import csv
import dataclasses
import gzip
import io
import pathlib
import sys
import zlib

import pandas as pd


class ReadError(ValueError):
    """A file that cannot be read at all, named in one line."""


def input_format(path) -> str:
    """ "tfrecord" when the file name says so, else "csv"."""
    return "tfrecord" if ".tfrecord" in pathlib.Path(path).name else "csv"


@dataclasses.dataclass
class Table:
    """The rows read from a file.

    Attributes:
        frame: DataFrame of str cells (an empty cell is ""), one row per
            well-formed input row. Its index is the row's position among
            all the file's rows, skipped ones included (0-based), so a row
            keeps its number whatever was skipped before it.
        skipped: where each skipped row is and why, e.g.
            `"line 7: 3 fields, expected 2"` or `"record 4: not a
            tf.Example"`.
        bytes_replaced: bytes that were not UTF-8 and became U+FFFD.
    """

    frame: pd.DataFrame
    skipped: list[str]
    bytes_replaced: int


def read_table(path) -> Table:
    """The rows of a CSV or TFRecord file; see `Table`.

    A CSV row is skipped when it has another number of fields than the
    header, a NUL byte, a quote that is never closed, or a character after a
    closing quote; fields of any length are read.

    Raises:
        ReadError: the file cannot be read at all (not gzip, truncated, no
            header, not a TFRecord).
    """
    path = pathlib.Path(path)
    if input_format(path) == "tfrecord":
        return _read_tfrecord(path)
    return _read_csv(path)


def _decompressed(path: pathlib.Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ReadError(f"Could not read gzip file {path}: {e}") from None


def _read_csv(path: pathlib.Path) -> Table:
    raw = _decompressed(path)
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - raw.decode(
        "utf-8", errors="ignore"
    ).count("\ufffd")
    # strict: an unclosed quote or text after a closing quote is an error
    # (the row is skipped and named) instead of a guess.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        header, rows, index, skipped = None, [], [], []
        number = 0  # data rows seen, skipped ones included
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if header is None:
                    raise ReadError(
                        f"Could not read the header of CSV {path}: {e}"
                    ) from None
                skipped.append(f"line {line}: {e}")
                number += 1
                continue
            if not row:
                continue  # A blank line is no row.
            if header is None:
                header = row
            elif len(row) == len(header):
                rows.append(row)
                index.append(number)
                number += 1
            else:
                skipped.append(
                    f"line {line}: {len(row)} fields, expected {len(header)}"
                )
                number += 1
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise ReadError(f"CSV {path} is empty: no header row.")
    frame = pd.DataFrame(
        rows, columns=_distinct(header), index=index, dtype=str
    )
    return Table(frame, skipped, replaced)


def _distinct(names: list[str]) -> list[str]:
    """Column names made distinct as pandas makes them: a, a.1, a.2."""
    seen, out = {}, []
    for name in names:
        count = seen.get(name, 0)
        out.append(name if count == 0 else f"{name}.{count}")
        seen[name] = count + 1
    return out


def _value(feature) -> str:
    """A tf.Example feature as one CSV-like cell ("" when empty)."""
    kind = feature.WhichOneof("kind")
    if kind is None:
        return ""
    values = getattr(feature, kind).value
    if kind == "bytes_list":
        return " ".join(v.decode("utf-8", errors="replace") for v in values)
    if kind == "float_list":
        return " ".join(f"{v:g}" for v in values)
    return " ".join(str(v) for v in values)


def _read_tfrecord(path: pathlib.Path) -> Table:
    import tensorflow as tf

    compression = "GZIP" if path.name.endswith(".gz") else ""
    rows, index, skipped, replaced = [], [], [], 0
    try:
        records = tf.data.TFRecordDataset(
            str(path), compression_type=compression
        ).as_numpy_iterator()
        for number, record in enumerate(records):
            try:
                example = tf.train.Example.FromString(record)
            except Exception:
                skipped.append(f"record {number}: not a tf.Example")
                continue
            row = {}
            for name, feature in example.features.feature.items():
                row[name] = _value(feature)
                replaced += row[name].count("\ufffd")
            rows.append(row)
            index.append(number)
    except tf.errors.OpError as e:
        raise ReadError(
            f"Could not read TFRecord {path}: {e.message.splitlines()[0]}"
        ) from None
    frame = pd.DataFrame(rows, index=index, dtype=str).fillna("")
    return Table(frame, skipped, replaced)
