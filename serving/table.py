"""Reading a user's CSV or TFRecord file into rows of strings, leniently.

`mmoe run` (the pipeline's ingest step) and `mmoe score` read their input
the same way: a CSV (`.csv`, `.csv.gz`) with bytes that are not UTF-8
replaced and malformed rows skipped and counted, or a TFRecord of
tf.Examples (a name containing `.tfrecord`, gzipped when it ends in `.gz`)
with every feature as one string cell.
"""

import io
import pathlib

import pandas as pd


class ReadError(ValueError):
    """A file that cannot be read at all, named in one line."""


def input_format(path) -> str:
    """ "tfrecord" when the file name says so, else "csv"."""
    return "tfrecord" if ".tfrecord" in pathlib.Path(path).name else "csv"


def read_table(path) -> tuple[pd.DataFrame, int, int]:
    """The rows of a CSV or TFRecord file as a DataFrame of str cells.

    Returns:
        `(frame, bad_rows, bytes_replaced)`: the well-formed rows (an empty
        cell is ""), how many rows were skipped as malformed, and how many
        bytes that were not UTF-8 became U+FFFD.

    Raises:
        ReadError: the file is not a CSV or TFRecord that can be parsed.
    """
    path = pathlib.Path(path)
    if input_format(path) == "tfrecord":
        return _read_tfrecord(path)
    try:
        return _read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ReadError(f"Could not read CSV {path}: {e}") from None


def _read_csv(path: pathlib.Path) -> tuple[pd.DataFrame, int, int]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - raw.decode(
        "utf-8", errors="ignore"
    ).count("\ufffd")
    bad = []
    frame = pd.read_csv(
        io.StringIO(text),
        dtype=str,
        keep_default_na=False,
        engine="python",
        on_bad_lines=lambda line: bad.append(line) and None,
    )
    # Rows with too few fields come back padded with NaN: skip them too.
    short = frame.isna().any(axis=1)
    return (
        frame[~short].reset_index(drop=True),
        len(bad) + int(short.sum()),
        replaced,
    )


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


def _read_tfrecord(path: pathlib.Path) -> tuple[pd.DataFrame, int, int]:
    import tensorflow as tf

    compression = "GZIP" if path.name.endswith(".gz") else ""
    rows, bad, replaced = [], 0, 0
    try:
        for record in tf.data.TFRecordDataset(
            str(path), compression_type=compression
        ).as_numpy_iterator():
            try:
                example = tf.train.Example.FromString(record)
            except Exception:
                bad += 1
                continue
            row = {}
            for name, feature in example.features.feature.items():
                row[name] = _value(feature)
                replaced += row[name].count("\ufffd")
            rows.append(row)
    except tf.errors.OpError as e:
        raise ReadError(
            f"Could not read TFRecord {path}: {e.message.splitlines()[0]}"
        ) from None
    return pd.DataFrame(rows, dtype=str).fillna(""), bad, replaced
