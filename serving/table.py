"""Reading a user's CSV or TFRecord files as rows of strings, leniently.

`mmoe run` (the pipeline's ingest step) and `mmoe score` read their input
the same way: a CSV (`.csv`, `.csv.gz`) with bytes that are not UTF-8
replaced and malformed rows skipped and counted, or a TFRecord of
tf.Examples (a name containing `.tfrecord`, gzipped when it ends in `.gz`)
with every feature as one string cell. The input is a file or a pattern
(`data/part-*.csv.gz`, `gs://bucket/reviews-*.csv`) on any filesystem
`serving.files` reads; `TableReader` streams its rows in fixed-size chunks
of bytes, so memory does not grow with the input.
"""

import csv
import dataclasses
import gzip
import io
import pathlib
import struct
import sys
import zlib
from collections.abc import Iterator

import pandas as pd

from serving import files

# Bytes read from a file at a time.
CHUNK_BYTES = 1 << 20
_REPLACEMENT = "\ufffd"
# U+FFFD's own UTF-8 bytes: a replacement character that was in the input.
_REPLACEMENT_BYTES = _REPLACEMENT.encode()


class ReadError(ValueError):
    """A file that cannot be read at all, named in one line."""


def input_format(path) -> str:
    """ "tfrecord" when the file name says so, else "csv"."""
    return "tfrecord" if ".tfrecord" in pathlib.PurePath(path).name else "csv"


class TableReader:
    """Streams the rows of the files a path or pattern names.

    Matching the files and reading a CSV's header happen when the reader is
    made, so a missing file, an unreadable header or a missing column is
    known before any row is read.

    Args:
        pattern: str. A file, or a glob of files read in sorted order; a
            CSV's files must share one header.
        chunk_bytes: int. Bytes read at a time.
        keep_skipped: optional int. How many skipped rows to name in
            `skipped` (all by default); `skipped_count` counts them all.
        beam_args: optional list of Beam pipeline options for a URL's
            filesystem (`serving.files.match`).

    Attributes:
        files: the matched files.
        format: "csv" or "tfrecord".
        columns: the column names, made distinct as pandas makes them (a,
            a.1). A CSV's come from its header; a TFRecord's are the
            feature names seen so far, in order of first appearance.
        skipped: where skipped rows are and why, e.g. `"line 7: 3 fields,
            expected 2"` or `"record 4: not a tf.Example"` (with the file
            name first when a pattern matched several files).
        skipped_count: int. Rows skipped so far.
        bytes_replaced: int. Bytes that were not UTF-8 and became U+FFFD
            (in a TFRecord: U+FFFD characters in its features).

    Raises:
        ReadError: no file matched, the files mix formats, or a CSV's
            header cannot be read.
    """

    def __init__(
        self,
        pattern: str,
        chunk_bytes: int = CHUNK_BYTES,
        keep_skipped: int | None = None,
        beam_args: list[str] | None = None,
    ):
        self.beam_args = beam_args
        try:
            self.files = files.match(str(pattern), beam_args)
        except files.FilesError as e:
            raise ReadError(str(e)) from None
        formats = {input_format(f) for f in self.files}
        if len(formats) > 1:
            raise ReadError(
                f"{pattern} matches both CSV and TFRecord files; name one kind."
            )
        (self.format,) = formats
        self.chunk_bytes = chunk_bytes
        self.keep_skipped = keep_skipped
        self.skipped, self.skipped_count, self.bytes_replaced = [], 0, 0
        self.columns = []
        if self.format == "csv":
            with self._open(self.files[0]) as stream:
                reader, _ = self._csv_reader(stream)
                header, _ = _header(reader, self.files[0])
            self.columns = _distinct(header)

    def rows(self) -> Iterator[tuple[int, list[str] | dict[str, str]]]:
        """`(number, row)` for each well-formed row: its 0-based position
        among all rows, skipped ones included (so a row keeps its number
        whatever was skipped before it), and its cells: a list in `columns`'
        order for a CSV, a dict of the features present for a TFRecord.

        Raises:
            ReadError: a file turns out unreadable (not gzip, truncated, a
                corrupt TFRecord, a CSV header that differs).
        """
        rows = self._csv_rows if self.format == "csv" else self._tfrecord_rows
        number = 0
        for path in self.files:
            number = yield from rows(path, number)

    def _skip(self, path, where):
        if len(self.files) > 1:
            where = f"{path} {where}"
        if self.keep_skipped is None or len(self.skipped) < self.keep_skipped:
            self.skipped.append(where)
        self.skipped_count += 1

    def _open(self, path):
        """`path`'s bytes, decompressed when it ends in `.gz`."""
        raw = files.open_binary(path, self.beam_args)
        if not path.endswith(".gz"):
            return raw
        return gzip.GzipFile(fileobj=raw, mode="rb")

    def _csv_reader(self, stream):
        """A strict csv.reader over `stream`'s lines, decoded as UTF-8 in
        chunks with invalid bytes replaced, and those lines (which count
        the replacements)."""
        lines = _DecodedLines(stream, self.chunk_bytes)
        # strict: an unclosed quote or text after a closing quote is an
        # error (the row is skipped and named) instead of a guess.
        return csv.reader(lines, strict=True), lines

    def _csv_rows(self, path, number):
        limit = csv.field_size_limit()
        csv.field_size_limit(sys.maxsize)
        try:
            with self._open(path) as stream:
                reader, lines = self._csv_reader(stream)
                header, width = _header(reader, path)
                if _distinct(header) != self.columns:
                    raise ReadError(
                        f"CSV {path} has another header than "
                        f"{self.files[0]}: {header}"
                    )
                while True:
                    line = reader.line_num + 1
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as e:
                        self._skip(path, f"line {line}: {e}")
                        number += 1
                        continue
                    if not row:
                        continue  # A blank line is no row.
                    if len(row) == width:
                        yield number, row
                    else:
                        self._skip(
                            path,
                            f"line {line}: {len(row)} fields, expected {width}",
                        )
                    number += 1
                self.bytes_replaced += lines.replaced
        except (OSError, EOFError, zlib.error) as e:
            raise ReadError(f"Could not read gzip file {path}: {e}") from None
        finally:
            csv.field_size_limit(limit)
        return number

    def _tfrecord_rows(self, path, number):
        from tensorflow.core.example import example_pb2

        seen = set(self.columns)
        try:
            with self._open(path) as stream:
                for record in _records(stream, path):
                    try:
                        example = example_pb2.Example.FromString(record)
                    except Exception:
                        self._skip(path, f"record {number}: not a tf.Example")
                        number += 1
                        continue
                    row = {}
                    for name, feature in example.features.feature.items():
                        row[name] = value = _value(feature)
                        self.bytes_replaced += value.count(_REPLACEMENT)
                        if name not in seen:
                            seen.add(name)
                            self.columns.append(name)
                    yield number, row
                    number += 1
        except (OSError, EOFError, zlib.error) as e:
            raise ReadError(f"Could not read TFRecord {path}: {e}") from None
        return number


def _header(reader, path) -> tuple[list[str], int]:
    """The first non-blank row of a CSV and its width."""
    try:
        for row in reader:
            if row:
                return row, len(row)
    except csv.Error as e:
        raise ReadError(
            f"Could not read the header of CSV {path}: {e}"
        ) from None
    except (OSError, EOFError, zlib.error) as e:
        raise ReadError(f"Could not read gzip file {path}: {e}") from None
    raise ReadError(f"CSV {path} is empty: no header row.")


class _CountingStream(io.RawIOBase):
    """Passes a binary stream through, counting U+FFFD's UTF-8 bytes in it
    (`genuine`): the decoder's replacements are the U+FFFD it outputs less
    these."""

    def __init__(self, stream):
        self.stream = stream
        self.genuine = 0
        self._tail = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.stream.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        # The last 2 bytes carry over: a sequence split between two reads
        # is counted once (its 3 bytes cannot overlap another's).
        joined = self._tail + data
        self.genuine += joined.count(_REPLACEMENT_BYTES)
        self._tail = joined[-2:]
        return size


class _DecodedLines:
    """The lines of a binary stream decoded as UTF-8 a chunk at a time,
    line ends kept as they are (as csv wants them); `replaced` counts the
    invalid byte sequences that became U+FFFD so far."""

    def __init__(self, stream, chunk_bytes):
        self._counted = _CountingStream(stream)
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._counted, chunk_bytes),
            encoding="utf-8",
            errors="replace",
            newline="",
        )
        self._text._CHUNK_SIZE = chunk_bytes
        self._found = 0

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self._text)
        if _REPLACEMENT in line:
            self._found += line.count(_REPLACEMENT)
        return line

    @property
    def replaced(self) -> int:
        return self._found - self._counted.genuine


def _read_exact(stream, size) -> bytes:
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _records(stream, path) -> Iterator[bytes]:
    """The records of a TFRecord stream (length, its CRC, data, its CRC),
    each checked."""
    offset = 0
    while True:
        head = _read_exact(stream, 12)
        if not head:
            return
        length, length_crc = struct.unpack("<QI", head.ljust(12, b"\0"))
        if len(head) < 12 or _masked_crc(head[:8]) != length_crc:
            raise ReadError(
                f"Could not read TFRecord {path}: corrupted record at {offset}"
            )
        body = _read_exact(stream, length + 4)
        if (
            len(body) < length + 4
            or _masked_crc(body[:length])
            != struct.unpack("<I", body[length:])[0]
        ):
            raise ReadError(
                f"Could not read TFRecord {path}: truncated or corrupted "
                f"record at {offset}"
            )
        yield body[:length]
        offset += 12 + length + 4


@dataclasses.dataclass
class Table:
    """The rows read from a file.

    Attributes:
        frame: DataFrame of str cells (an empty cell is ""), one row per
            well-formed input row. Its index is the row's position among
            all the file's rows, skipped ones included (0-based), so a row
            keeps its number whatever was skipped before it.
        skipped: where each skipped row is and why (`TableReader.skipped`).
        bytes_replaced: bytes that were not UTF-8 and became U+FFFD.
    """

    frame: pd.DataFrame
    skipped: list[str]
    bytes_replaced: int


def read_table(path) -> Table:
    """All the rows of a CSV or TFRecord file (or pattern) in memory; see
    `Table`. `TableReader` streams them instead.

    A CSV row is skipped when it has another number of fields than the
    header, a NUL byte, a quote that is never closed, or a character after a
    closing quote; fields of any length are read.

    Raises:
        ReadError: the file cannot be read at all (missing, not gzip,
            truncated, no header, not a TFRecord).
    """
    reader = TableReader(str(path))
    index, rows = [], []
    for number, row in reader.rows():
        index.append(number)
        rows.append(row)
    if reader.format == "csv":
        frame = pd.DataFrame(
            rows, columns=reader.columns, index=index, dtype=str
        )
    else:
        frame = pd.DataFrame(rows, index=index, dtype=str).fillna("")
    return Table(frame, reader.skipped, reader.bytes_replaced)


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
