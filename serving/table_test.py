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


def _read_all(path, **kwargs):
    reader = table.TableReader(str(path), **kwargs)
    rows = list(reader.rows())
    return rows, reader.skipped, reader.skipped_count, reader.bytes_replaced


# Every kind of row the reader meets: a genuine U+FFFD, an
# invalid byte and a 2-byte sequence cut short, a quoted field with a
# newline and CRLF line ends, a row of too many fields that is also quoted
# over two lines, a blank line and a quote never closed.
TRICKY = (
    b"id,text\r\n"
    b'0,"two\nlines"\r\n'
    b"1,caf\xc3\xa9 \xef\xbf\xbd \xff \xc3\r\n"
    b'2,"a\nb",extra\n'
    b"\n"
    b"3,last\n"
    b'4,"never closed\n'
)


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz"])
def test_every_chunk_size_reads_the_same_rows(tmp_path, name):
    path = _csv(tmp_path, TRICKY, name=name)
    rows, skipped, count, replaced = _read_all(path)
    assert rows == [
        (0, ["0", "two\nlines"]),
        (1, ["1", "caf\u00e9 \ufffd \ufffd \ufffd"]),
        (3, ["3", "last"]),
    ]
    assert skipped == [
        "line 5: 3 fields, expected 2",  # where the row starts
        "line 9: unexpected end of data",
    ]
    assert count == 2
    assert replaced == 2  # \xff and the cut-short \xc3, not the U+FFFD
    # A chunk boundary at every byte: inside the quoted newline, the CRLF,
    # each multi-byte sequence and the bad row.
    for chunk_bytes in [1, 2, 3, 5, 7, 13, 64]:
        assert _read_all(path, chunk_bytes=chunk_bytes) == (
            rows,
            skipped,
            count,
            replaced,
        ), chunk_bytes


def test_a_pattern_reads_its_files_in_order_and_numbers_rows_on(tmp_path):
    _csv(tmp_path, "id,text\n2,c\n3,d,x\n", name="part-1.csv.gz")
    _csv(tmp_path, "id,text\n0,a\n1,b\n", name="part-0.csv")
    reader = table.TableReader(str(tmp_path / "part-*"))
    assert [r for _, r in reader.rows()] == [
        ["0", "a"],
        ["1", "b"],
        ["2", "c"],
    ]
    # The skipped row is the fourth row; its file is named.
    assert reader.skipped == [
        f"{tmp_path / 'part-1.csv.gz'} line 3: 3 fields, expected 2"
    ]
    assert table.read_table(tmp_path / "part-*").frame.index.tolist() == [
        0,
        1,
        2,
    ]


def test_a_pattern_of_unlike_files_is_one_error(tmp_path):
    _csv(tmp_path, "id,text\n0,a\n", name="part-0.csv")
    _csv(tmp_path, "id,body\n1,b\n", name="part-1.csv")
    with pytest.raises(table.ReadError, match="another header"):
        list(table.TableReader(str(tmp_path / "part-*")).rows())
    (tmp_path / "part-2.tfrecord").write_bytes(b"")
    with pytest.raises(table.ReadError, match="both CSV and TFRecord"):
        table.TableReader(str(tmp_path / "part-*"))
    with pytest.raises(table.ReadError, match="No file matches"):
        table.TableReader(str(tmp_path / "nothing-*.csv"))
    with pytest.raises(table.ReadError, match="Data file not found"):
        table.TableReader(str(tmp_path / "nothing.csv"))


def test_skipped_rows_are_all_counted_and_the_first_named(tmp_path):
    path = _csv(tmp_path, "a,b\n" + "1\n" * 30 + "1,2\n")
    reader = table.TableReader(str(path), keep_skipped=3)
    assert [r for _, r in reader.rows()] == [["1", "2"]]
    assert reader.skipped_count == 30
    assert reader.skipped == [
        f"line {n}: 1 fields, expected 2" for n in (2, 3, 4)
    ]


def test_header_and_missing_file_are_known_before_any_row(tmp_path):
    path = _csv(tmp_path, "a,a,b\n" + "1,2,3\n" * 5)
    reader = table.TableReader(str(path))
    assert reader.columns == ["a", "a.1", "b"]
    assert reader.skipped_count == 0 and reader.bytes_replaced == 0


@pytest.mark.parametrize("gzip_it", [False, True])
def test_tfrecords_stream_in_any_chunk_size(tmp_path, gzip_it):
    import tensorflow as tf

    name = "data.tfrecord.gz" if gzip_it else "data.tfrecord"
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "text": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[f"t{i}".encode()])
                    ),
                    **(
                        {
                            "n": tf.train.Feature(
                                int64_list=tf.train.Int64List(value=[i])
                            )
                        }
                        if i
                        else {}
                    ),
                }
            )
        ).SerializeToString()
        for i in range(3)
    ]
    with tf.io.TFRecordWriter(
        str(tmp_path / name), "GZIP" if gzip_it else ""
    ) as writer:
        for record in examples:
            writer.write(record)
    for chunk_bytes in [1, 9, 1 << 20]:
        reader = table.TableReader(
            str(tmp_path / name), chunk_bytes=chunk_bytes
        )
        assert list(reader.rows()) == [
            (0, {"text": "t0"}),
            (1, {"text": "t1", "n": "1"}),
            (2, {"text": "t2", "n": "2"}),
        ]
        assert reader.columns == ["text", "n"]


def test_a_cut_short_tfrecord_is_one_error(tmp_path):
    import tensorflow as tf

    path = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"x" * 100)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(table.ReadError, match="Could not read TFRecord"):
        list(table.TableReader(str(path)).rows())
