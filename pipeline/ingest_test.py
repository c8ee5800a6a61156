import os
import pathlib

import pandas as pd
import pytest

from pipeline import ingest

HEADER = "Title,Review Text,Rating,Recommended IND,split\n"


def _csv(tmp_path, body, header=HEADER, name="data.csv"):
    path = tmp_path / name
    path.write_bytes((header + body).encode("utf-8", "surrogateescape"))
    return str(path)


ROWS = (
    "Nice,Love it,5,1,train\n"
    "Bad,Hate it,1,0,train\n"
    "Ok,,3,,validation\n"
    ",Fine,4,1,test\n"
)


def test_writes_one_clean_csv_per_split(tmp_path):
    summary = ingest.ingest(
        _csv(tmp_path, ROWS),
        ["Title", "Review Text"],
        ["Rating", "Recommended IND"],
        str(tmp_path / "out"),
    )
    assert summary.rows_by_split == {"train": 2, "validation": 1, "test": 1}
    assert summary.num_classes == {"rating": 2, "recommended_ind": 2}
    assert summary.missing_labels == {"rating": 0, "recommended_ind": 1}
    test = pd.read_csv(tmp_path / "out" / "test" / "data.csv", dtype=str)
    assert list(test.columns) == [
        "Title",
        "Review Text",
        "Rating",
        "Recommended IND",
    ]


def test_bad_bytes_and_bad_rows_are_counted_not_fatal(tmp_path):
    body = (
        ROWS
        + "Broken\udcff,text \udcfe,5,1,train\n"
        + "too,few\n"
        + "too,many,5,1,train,x,y\n"
    )
    summary = ingest.ingest(
        _csv(tmp_path, body),
        ["Title", "Review Text"],
        ["Rating"],
        str(tmp_path / "out"),
    )
    assert summary.bytes_replaced == 2
    assert summary.rows_by_split["train"] == 3
    assert summary.bad_rows_skipped == 2
    lines = len(ROWS.splitlines())  # after the header on line 1
    assert summary.skipped_rows == [
        f"line {lines + 3}: 2 fields, expected 5",
        f"line {lines + 4}: 7 fields, expected 5",
    ]
    assert summary.rows == 5


def test_without_split_column_everything_goes_to_one_folder(tmp_path):
    path = _csv(tmp_path, "Nice,5\nBad,1\n", header="Review Text,Rating\n")
    summary = ingest.ingest(path, ["Review Text"], ["Rating"], str(tmp_path))
    assert not summary.split_column
    assert summary.rows_by_split == {"all": 2}


@pytest.mark.parametrize(
    "text, labels, body, message",
    [
        (["Nope"], ["Rating"], ROWS, "'Nope'"),
        (["Title"], ["Stars"], ROWS, "'Stars'"),
        (["Title"], ["Rating"], "A,b,5,1,train\nB,c,5,1,train\n", "single"),
        (["Title"], ["Rating"], "A,b,,1,train\nB,c,,0,train\n", "no labelled"),
        (["Title"], ["Rating"], "A,b,5,1,holdout\n", "holdout"),
    ],
)
def test_bad_input_is_named(tmp_path, text, labels, body, message):
    with pytest.raises(ingest.InputError, match=message):
        ingest.ingest(_csv(tmp_path, body), text, labels, str(tmp_path / "o"))


def test_baseline_without_split_column_is_refused_before_writing(tmp_path):
    path = _csv(tmp_path, "Nice,5\nBad,1\n", header="Review Text,Rating\n")
    with pytest.raises(ingest.InputError, match="--baseline.*'split'"):
        ingest.ingest(
            path,
            ["Review Text"],
            ["Rating"],
            str(tmp_path / "out"),
            need_csv_splits="--baseline",
        )
    assert not (tmp_path / "out").exists()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ingest.InputError, match="not found"):
        ingest.ingest(str(tmp_path / "none.csv"), ["a"], ["b"], str(tmp_path))


def _tfrecord(path, rows, gzip=False):
    import tensorflow as tf

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(
                int64_list=tf.train.Int64List(value=[value])
            )
        if isinstance(value, float):
            return tf.train.Feature(
                float_list=tf.train.FloatList(value=[value])
            )
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    with tf.io.TFRecordWriter(str(path), "GZIP" if gzip else "") as writer:
        for row in rows:
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={k: feature(v) for k, v in row.items()}
                )
            )
            writer.write(example.SerializeToString())
    return str(path)


TF_ROWS = [
    {"Review Text": b"Love it", "Rating": 5, "split": b"train"},
    {"Review Text": b"Hate \xff it", "Rating": 1.0, "split": b"train"},
    {"Review Text": b"Meh", "split": b"validation"},  # Rating missing.
    {"Review Text": b"Fine", "Rating": 4, "split": b"test"},
]


@pytest.mark.parametrize("gzip", [False, True])
def test_tfrecord_of_examples_is_read_and_staged(tmp_path, gzip):
    import tensorflow as tf

    name = "data.tfrecord.gz" if gzip else "data.tfrecord"
    path = _tfrecord(tmp_path / name, TF_ROWS, gzip=gzip)
    summary = ingest.ingest(
        path, ["Review Text"], ["Rating"], str(tmp_path / "out")
    )
    assert summary.input_format == "tfrecord"
    assert summary.rows_by_split == {"train": 2, "validation": 1, "test": 1}
    assert summary.num_classes == {"rating": 2}
    assert summary.missing_labels == {"rating": 1}
    assert summary.bytes_replaced == 1
    staged = tmp_path / "out" / "train" / "data.tfrecord"
    examples = [
        tf.train.Example.FromString(r)
        for r in tf.data.TFRecordDataset(str(staged)).as_numpy_iterator()
    ]
    ratings = [e.features.feature["Rating"].bytes_list.value for e in examples]
    # An int 5 and a float 1.0 become the classes "5" and "1", as a CSV's
    # cells would.
    assert ratings == [[b"5"], [b"1"]]
    (validation,) = tf.data.TFRecordDataset(
        str(tmp_path / "out" / "validation" / "data.tfrecord")
    ).as_numpy_iterator()
    assert (
        "Rating" not in tf.train.Example.FromString(validation).features.feature
    )
    assert not (tmp_path / "out" / "train" / "data.csv").exists()


def test_tfrecord_missing_column_and_corrupt_file_are_named(tmp_path):
    path = _tfrecord(tmp_path / "a.tfrecord", TF_ROWS)
    with pytest.raises(ingest.InputError, match="'Stars'"):
        ingest.ingest(path, ["Review Text"], ["Stars"], str(tmp_path / "o"))
    corrupt = tmp_path / "b.tfrecord"
    corrupt.write_bytes(b"this is not a tfrecord at all")
    with pytest.raises(ingest.InputError, match="Could not read TFRecord"):
        ingest.ingest(
            str(corrupt), ["Review Text"], ["Rating"], str(tmp_path / "o")
        )


def test_one_class_spelled_two_ways_is_warned(tmp_path):
    body = (
        "a,x,4,1,train\n"
        "b,y,4.0,1,train\n"
        "c,z,five,0,train\n"
        "d,w,3,0,train\n"
        "e,v,3,0,train\n"
    )
    summary = ingest.ingest(
        _csv(tmp_path, body),
        ["Title", "Review Text"],
        ["Rating", "Recommended IND"],
        str(tmp_path / "out"),
    )
    assert summary.num_classes["rating"] == 4  # still separate classes
    assert summary.warnings == [
        "Label column 'Rating': '4', '4.0' are separate classes; spell each "
        "class one way if they are one.",
        "Label column 'Rating' holds numbers and 'five'; each is a class of "
        "its own.",
    ]
    clean = ingest.ingest(
        _csv(tmp_path, ROWS, name="clean.csv"),
        ["Title", "Review Text"],
        ["Rating"],
        str(tmp_path / "out2"),
    )
    assert clean.warnings == []


# A row of too many fields and a quoted field with newlines (CRLF too),
# invalid bytes and an empty text: wherever a chunk of bytes ends, the same
# rows come out.
TRICKY = (
    b'Nice,"Love\r\nit",5,1,train\n'
    b"Bad,Hate \xff it,1,0,train\n"
    b'Odd,"x\ny",3,1,train,extra\n'
    b",,,0,validation\n"
    b'Ok,"a\nb",4,,test\n'
    b"Fine,\xc3\xa9,4,1,train\n"
)


def _staged(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(pathlib.Path(root).rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 16])
def test_chunk_boundaries_change_nothing(tmp_path, chunk_bytes):
    path = tmp_path / "data.csv"
    path.write_bytes(HEADER.encode() + TRICKY)
    args = (str(path), ["Title", "Review Text"], ["Rating", "Recommended IND"])
    whole = ingest.ingest(*args, str(tmp_path / "whole"))
    assert whole.rows == 5 and whole.bad_rows_skipped == 1
    assert whole.skipped_rows == ["line 5: 6 fields, expected 5"]
    assert whole.rows_by_split == {"test": 1, "train": 3, "validation": 1}
    assert whole.bytes_replaced == 1 and whole.empty_texts == 1
    assert whole.missing_labels == {"rating": 1, "recommended_ind": 1}
    chunked = ingest.ingest(
        *args, str(tmp_path / "chunked"), chunk_bytes=chunk_bytes
    )
    assert chunked == whole
    assert _staged(tmp_path / "chunked") == _staged(tmp_path / "whole")


def test_staged_csv_is_what_pandas_writes(tmp_path):
    from serving import table

    path = tmp_path / "data.csv"
    path.write_bytes(HEADER.encode() + TRICKY)
    ingest.ingest(str(path), ["Review Text"], ["Rating"], str(tmp_path / "o"))
    frame = table.read_table(path).frame
    for split, rows in frame.groupby("split"):
        expected = rows[["Review Text", "Rating"]].to_csv(index=False)
        written = (tmp_path / "o" / split / "data.csv").read_bytes()
        if split in ingest.SHUFFLED:
            # The same records, in another order.
            assert len(written) == len(expected.encode())
            assert sorted(_records(written.decode())) == sorted(
                _records(expected)
            )
        else:
            assert written == expected.encode()


def _records(text: str) -> list[tuple]:
    import csv
    import io

    return [tuple(r) for r in csv.reader(io.StringIO(text, newline=""))]


def test_training_rows_are_staged_in_a_seeded_random_order(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(ingest, "SHUFFLE_BUCKETS", 3)
    body = "".join(f"text {i},{i % 5},{s}\n" for i, s in _splits(200))
    data = _csv(tmp_path, body, header="Review Text,Rating,split\n")
    for out in ("a", "b"):
        ingest.ingest(data, ["Review Text"], ["Rating"], str(tmp_path / out))
    train = (tmp_path / "a" / "train" / "data.csv").read_text()
    rows = train.splitlines()[1:]
    given = [f"text {i},{i % 5}" for i, s in _splits(200) if s == "train"]
    assert sorted(rows) == sorted(given) and rows != given
    # Rows of every part of the input are spread over the whole file.
    first_half = {int(r.split(",")[0][5:]) for r in rows[: len(rows) // 2]}
    assert min(first_half) < 20 and max(first_half) > 180
    assert train == (tmp_path / "b" / "train" / "data.csv").read_text()
    # Other splits keep the input's order; no bucket file is left.
    test = (tmp_path / "a" / "test" / "data.csv").read_text().splitlines()
    assert test[1:] == [
        f"text {i},{i % 5}" for i, s in _splits(200) if s == "test"
    ]
    assert not list((tmp_path / "a").rglob(".bucket-*"))


def _splits(n: int):
    return [
        (i, ("train", "train", "validation", "test")[i % 4]) for i in range(n)
    ]


def test_a_pattern_of_gzipped_and_plain_parts_is_one_input(tmp_path):
    import gzip

    lines = ROWS.splitlines(keepends=True)
    single = _csv(tmp_path, ROWS, name="all.csv")
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-0.csv.gz").write_bytes(
        gzip.compress((HEADER + "".join(lines[:2])).encode())
    )
    (parts / "part-1.csv").write_text(HEADER + "".join(lines[2:]))
    args = (["Title", "Review Text"], ["Rating", "Recommended IND"])
    one = ingest.ingest(single, *args, str(tmp_path / "one"))
    both = ingest.ingest(str(parts / "part-*.csv*"), *args, str(tmp_path / "p"))
    assert both == one
    assert _staged(tmp_path / "p") == _staged(tmp_path / "one")
    with pytest.raises(ingest.InputError, match="No file matches"):
        ingest.ingest(str(parts / "x-*.csv"), *args, str(tmp_path / "x"))


def test_a_failed_ingest_leaves_the_last_output_as_it_was(tmp_path):
    root = tmp_path / "out"
    args = (["Title"], ["Rating"], str(root))
    ingest.ingest(_csv(tmp_path, ROWS), *args)
    before = _staged(root)
    # Found only after every row is read: the train rows' single class, and
    # a split value far down the file.
    single = "A,b,5,1,train\n" * 100 + "Ok,,3,,validation\n"
    late = ROWS * 50 + "A,b,5,1,holdout\n"
    for body, message in [(single, "single class"), (late, "holdout")]:
        with pytest.raises(ingest.InputError, match=message):
            ingest.ingest(_csv(tmp_path, body, name="bad.csv"), *args)
        assert _staged(root) == before
        assert sorted(p.name for p in root.iterdir()) == [
            "test",
            "train",
            "validation",
        ]
    fresh = tmp_path / "fresh"
    with pytest.raises(ingest.InputError):
        ingest.ingest(
            _csv(tmp_path, late, name="bad.csv"), ["Title"], ["Rating"], fresh
        )
    assert not fresh.exists()


def test_a_split_the_input_no_longer_has_is_not_left_behind(tmp_path):
    args = (["Title"], ["Rating"], str(tmp_path / "o"))
    ingest.ingest(_csv(tmp_path, ROWS), *args)
    no_test = "".join(r for r in ROWS.splitlines(True) if "test" not in r)
    summary = ingest.ingest(_csv(tmp_path, no_test, name="b.csv"), *args)
    assert summary.rows_by_split == {"train": 2, "validation": 1}
    assert not (tmp_path / "o" / "test" / "data.csv").exists()


@pytest.mark.parametrize("kind", ["csv", "tfrecord"])
def test_unchanged_input_keeps_its_staged_files(tmp_path, kind):
    # A rewrite would change the file's mtime and miss TFX's cache.
    if kind == "csv":
        data, text = _csv(tmp_path, ROWS), "Title"
    else:
        data = _tfrecord(tmp_path / "data.tfrecord", TF_ROWS)
        text = "Review Text"
    args = (data, [text], ["Rating"], str(tmp_path / "o"))
    ingest.ingest(*args)
    written = tmp_path / "o" / "train" / f"data.{kind}"
    before = written.stat().st_mtime_ns
    os.utime(written, ns=(before - 10**9, before - 10**9))
    ingest.ingest(*args)
    assert written.stat().st_mtime_ns == before - 10**9


def test_a_tfrecord_without_a_column_in_any_example_is_named(tmp_path):
    rows = [
        {**r, "Title": b"t"} if i == 3 else r for i, r in enumerate(TF_ROWS)
    ]
    path = _tfrecord(tmp_path / "data.tfrecord", rows)
    summary = ingest.ingest(
        path, ["Title", "Review Text"], ["Rating"], str(tmp_path / "o")
    )
    assert summary.empty_texts == 0 and summary.rows == 4
    with pytest.raises(ingest.InputError, match="'Stars'.*'Title'"):
        ingest.ingest(path, ["Stars"], ["Rating"], str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_a_gs_pattern_is_read_from_the_storage_emulator(tmp_path):
    import gzip

    pytest.importorskip(
        "gcp_storage_emulator",
        reason="gcp-storage-emulator (the dev extra) serves gs:// here",
    )
    from serving import testing

    lines = ROWS.splitlines(keepends=True)
    args = (["Title", "Review Text"], ["Rating", "Recommended IND"])
    local = ingest.ingest(_csv(tmp_path, ROWS), *args, str(tmp_path / "l"))
    with testing.gcs_emulator("ingest-test") as bucket:
        bucket.blob("reviews/part-0.csv.gz").upload_from_string(
            gzip.compress((HEADER + "".join(lines[:3])).encode())
        )
        bucket.blob("reviews/part-1.csv.gz").upload_from_string(
            gzip.compress((HEADER + "".join(lines[3:])).encode())
        )
        remote = ingest.ingest(
            "gs://ingest-test/reviews/part-*.csv.gz",
            *args,
            str(tmp_path / "r"),
            chunk_bytes=5,
        )
        with pytest.raises(ingest.InputError, match="'Stars'"):
            ingest.ingest(
                "gs://ingest-test/reviews/part-*.csv.gz",
                ["Stars"],
                ["Rating"],
                str(tmp_path / "x"),
            )
    assert remote == local
    assert _staged(tmp_path / "r") == _staged(tmp_path / "l")
