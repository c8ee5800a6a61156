import os

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


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ingest.InputError, match="not found"):
        ingest.ingest(str(tmp_path / "none.csv"), ["a"], ["b"], str(tmp_path))


def test_unchanged_data_keeps_its_files(tmp_path):
    args = (_csv(tmp_path, ROWS), ["Title"], ["Rating"], str(tmp_path / "o"))
    ingest.ingest(*args)
    written = tmp_path / "o" / "train" / "data.csv"
    before = written.stat().st_mtime_ns
    os.utime(written, ns=(before - 10**9, before - 10**9))
    ingest.ingest(*args)
    assert written.stat().st_mtime_ns == before - 10**9
