import gzip

import pytest

from serving import table


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def test_every_row_is_read_or_named(tmp_path):
    path = _csv(
        tmp_path,
        "id,text\n"
        "0,plain\n"
        '1,"two\nlines"\n'  # a quoted newline: one row on lines 3-4
        "\n"  # a blank line is no row
        "2,too,many\n"
        "3,nul \x00 byte\n"
        "4,short\n"
        "5\n"
        '6,"unclosed\n',
    )
    read = table.read_table(path)
    assert read.frame["id"].tolist() == ["0", "1", "4"]
    assert read.frame.index.tolist() == [0, 1, 4]  # skipped rows keep numbers
    assert read.frame["text"].tolist() == ["plain", "two\nlines", "short"]
    assert read.skipped == [
        "line 6: 3 fields, expected 2",
        "line 7: line contains NUL",
        "line 9: 1 fields, expected 2",
        "line 10: unexpected end of data",
    ]


def test_long_cells_and_replaced_bytes(tmp_path):
    long = "x" * 300_000
    path = _csv(tmp_path, f"a,b\n{long},caf\xe9\n".encode("latin-1"))
    read = table.read_table(path)
    assert read.frame["a"].tolist() == [long]
    assert read.frame["b"].tolist() == ["caf\ufffd"]
    assert read.bytes_replaced == 1 and read.skipped == []


def test_repeated_column_names_are_made_distinct(tmp_path):
    read = table.read_table(_csv(tmp_path, "a,a,b\n1,2,3\n"))
    assert list(read.frame.columns) == ["a", "a.1", "b"]


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("data.csv.gz", b"not gzip at all", "Could not read gzip"),
        (
            "data.csv.gz",
            gzip.compress(b"a,b\n1,2\n" * 100, mtime=0)[:-12],
            "gzip",
        ),
        ("data.csv", b"", "empty: no header"),
        ("data.csv", b"\n\n", "empty: no header"),
    ],
    ids=["not-gzip", "truncated-gzip", "empty", "blank-lines"],
)
def test_unreadable_files_are_one_error(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(table.ReadError, match=message):
        table.read_table(path)


def test_tfrecord_records_that_are_no_example_are_named(tmp_path):
    import tensorflow as tf

    path = tmp_path / "data.tfrecord"
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "text": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[b"hello"])
                )
            }
        )
    ).SerializeToString()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in (example, b"\xff\xfe not a proto", example):
            writer.write(record)
    read = table.read_table(path)
    assert read.frame["text"].tolist() == ["hello", "hello"]
    assert read.frame.index.tolist() == [0, 2]
    assert read.skipped == ["record 1: not a tf.Example"]
