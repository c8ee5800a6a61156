import argparse
import gzip
import io
import json

import numpy as np
import pytest

from serving import score
from serving import testing as serving_testing

TITLE, BODY = serving_testing.TEXT_COLUMNS
N = 41


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "mmoe"
    serving_testing.export_tiny_model(str(base / "7"))
    return str(base)


def _texts():
    words = ["lovely", "dress", "awful", "top", "jeans", "fit", "small"]
    rows = []
    for i in range(N):
        title = words[i % 7] if i % 5 else ""
        body = " ".join(words[(i + k) % 7] for k in range(i % 4))
        rows.append((title, body))
    rows[3] = ("", "")  # An empty text.
    rows[4] = rows[5]  # A repeated text.
    return rows


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv.gz"
    lines = [f"key,{TITLE},{BODY}"]
    lines += [f"r{i},{t},{b}" for i, (t, b) in enumerate(_texts())]
    data = "\n".join(lines).encode() + b"\nr41,caf\xe9 \xff,broken bytes\n"
    path.write_bytes(gzip.compress(data))
    return str(path)


def _expected(model_dir, texts):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from serving import predict

    loaded = tf.saved_model.load(predict.resolve_model_dir(model_dir))
    out = loaded.signatures["predict_text"](text=tf.constant(texts))
    return {k: v.numpy() for k, v in out.items()}


def _read(folder):
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.fixture(scope="module")
def scored(model_dir, csv_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "predictions"
    result = score.score(
        model_dir, csv_path, str(out), text_columns=[TITLE, BODY], batch_size=8
    )
    return result, _read(out)


def test_one_prediction_per_row_equal_to_the_saved_model(model_dir, scored):
    result, rows = scored
    assert result["rows"] == N + 1 == len(rows)
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted(range(N + 1))  # Each row once.
    texts = [f"{t} {b}".strip().encode() for t, b in _texts()]
    texts.append("caf\ufffd \ufffd broken bytes".encode())
    expected = _expected(model_dir, texts)
    for task, n in serving_testing.TASKS.items():
        got = np.array(
            [
                list(by_id[i][task]["probabilities"].values())
                for i in range(N + 1)
            ]
        )
        assert got.shape == (N + 1, n)
        np.testing.assert_allclose(
            got, expected[f"{task}_probabilities"], atol=1e-5
        )
        labels = [by_id[i][task]["label"] for i in range(N + 1)]
        assert labels == [v.decode() for v in expected[f"{task}_label"]]
    # Class names come from the model's label vocabularies.
    assert list(rows[0]["department_name"]["probabilities"]) == [
        "Bottoms",
        "Dresses",
        "Tops",
    ]


def test_id_column_and_tfrecord_input_agree(model_dir, csv_path, tmp_path):
    import tensorflow as tf

    by_number = {
        row["id"]: row for row in _read_scored(model_dir, csv_path, tmp_path)
    }
    keyed = score.score(
        model_dir,
        csv_path,
        str(tmp_path / "keyed"),
        text_columns=[TITLE, BODY],
        id_column="key",
    )
    assert keyed["rows"] == N + 1
    for row in _read(tmp_path / "keyed"):
        assert row["id"].startswith("r")
        number = int(row["id"][1:])
        assert row["recommended_ind"] == by_number[number]["recommended_ind"]

    path = str(tmp_path / "reviews.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for title, body in _texts():
            feature = {
                TITLE: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[title.encode()])
                ),
                BODY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[body.encode()])
                ),
            }
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(feature=feature)
                ).SerializeToString()
            )
    result = score.score(model_dir, path, str(tmp_path / "examples"))
    assert result["rows"] == N
    for row in _read(tmp_path / "examples"):
        want = by_number[row["id"]]
        for task in serving_testing.TASKS:
            assert row[task]["label"] == want[task]["label"]
            np.testing.assert_allclose(
                list(row[task]["probabilities"].values()),
                list(want[task]["probabilities"].values()),
                atol=1e-5,
            )


def test_a_pattern_of_parts_scores_as_the_whole_file(
    model_dir, csv_path, tmp_path
):
    lines = gzip.decompress(open(csv_path, "rb").read()).splitlines(True)
    header, rows = lines[0], lines[1:]
    for part, chunk in enumerate([rows[:17], rows[17:]]):
        (tmp_path / f"part-{part}.csv").write_bytes(b"".join([header, *chunk]))
    whole = {
        row["id"]: row for row in _read_scored(model_dir, csv_path, tmp_path)
    }
    result = score.score(
        model_dir,
        str(tmp_path / "part-*.csv"),
        str(tmp_path / "parts"),
        text_columns=[TITLE, BODY],
    )
    parts = {row["id"]: row for row in _read(tmp_path / "parts")}
    # Rows are numbered on across the files, in the files' order.
    assert result["rows"] == N + 1 and sorted(parts) == sorted(whole)
    for number, row in parts.items():
        for task in serving_testing.TASKS:
            assert row[task]["label"] == whole[number][task]["label"]
    with pytest.raises(score.ScoreError, match="No file matches"):
        score.score(
            model_dir,
            str(tmp_path / "nope-*.csv"),
            str(tmp_path / "none"),
            text_columns=[TITLE, BODY],
        )
    assert not (tmp_path / "none").exists()


def test_tfrecord_records_that_are_no_example_are_named(model_dir, tmp_path):
    import tensorflow as tf

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                TITLE: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[b"lovely dress"])
                )
            }
        )
    ).SerializeToString()
    path = str(tmp_path / "mixed.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in (example, b"\xff\xfe random bytes", example):
            writer.write(record)
    result = score.score(model_dir, path, str(tmp_path / "out"))
    assert result["rows"] == 2
    assert result["skipped"] == ["record 1: not a tf.Example"]
    assert sorted(row["id"] for row in _read(tmp_path / "out")) == [0, 2]


def _read_scored(model_dir, csv_path, tmp_path):
    out = tmp_path / "plain"
    score.score(model_dir, csv_path, str(out), text_columns=[TITLE, BODY])
    return _read(out)


@pytest.mark.slow
def test_multi_processing_runner_loses_nothing(model_dir, csv_path, tmp_path):
    result = score.score(
        model_dir,
        csv_path,
        str(tmp_path / "mp"),
        text_columns=[TITLE, BODY],
        beam_args=[
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ],
        batch_size=4,
    )
    ids = sorted(row["id"] for row in _read(tmp_path / "mp"))
    assert ids == list(range(N + 1)) and result["rows"] == N + 1


def test_bad_input_is_named_and_nothing_is_written(
    model_dir, csv_path, tmp_path
):
    out = tmp_path / "out"
    cases = [
        (dict(data=str(tmp_path / "nope.csv")), "not found"),
        (dict(text_columns=["Nope"]), "'Nope'"),
        (dict(text_columns=None), "--text-column"),
        (dict(model=str(tmp_path)), "No SavedModel"),
        (dict(id_column=TITLE), "repeated"),
    ]
    for overrides, message in cases:
        kwargs = {
            "model": model_dir,
            "data": csv_path,
            "output": str(out),
            "text_columns": [TITLE, BODY],
            **overrides,
        }
        with pytest.raises(score.ScoreError, match=message):
            score.score(**kwargs)
        assert not out.exists()


def test_overwrite_replaces_only_earlier_predictions(
    model_dir, csv_path, tmp_path
):
    out = tmp_path / "out"
    score.score(model_dir, csv_path, str(out), text_columns=[TITLE])
    # A stale shard of a run with more shards is removed too.
    stale = out / "predictions-00007-of-00009.jsonl"
    stale.write_text("")
    with pytest.raises(score.ScoreError, match="--overwrite"):
        score.score(model_dir, csv_path, str(out), text_columns=[TITLE])
    result = score.score(
        model_dir, csv_path, str(out), text_columns=[TITLE], overwrite=True
    )
    assert result["replaced"] == 2 and not stale.exists()
    assert len(_read(out)) == N + 1


def test_never_deletes_what_it_did_not_write(model_dir, csv_path, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(score.ScoreError, match="'keep.txt'"):
            score.score(
                model_dir,
                csv_path,
                str(out),
                text_columns=[TITLE],
                overwrite=overwrite,
            )
    assert (out / "keep.txt").read_text() == "mine" and (out / "sub").is_dir()
    with pytest.raises(score.ScoreError, match="is a file"):
        score.score(
            model_dir,
            csv_path,
            str(out / "keep.txt"),
            text_columns=[TITLE],
            overwrite=True,
        )


def test_malformed_rows_are_named_and_ids_do_not_shift(model_dir, tmp_path):
    path = tmp_path / "bad.csv"
    lines = [
        "key,text",
        "a,lovely dress",  # row 0
        "b,too,many,fields",  # row 1: skipped
        "c,awful top",  # row 2
        'd,"a quote closed"x',  # row 3: skipped
        "e," + "long " * 40000,  # row 4: a 200,000-character cell
        'f,"never closed',  # row 5: skipped
    ]
    path.write_text("\n".join(lines) + "\n")
    result = score.score(
        model_dir, str(path), str(tmp_path / "out"), text_columns=["text"]
    )
    assert [s.split(":")[0] for s in result["skipped"]] == [
        "line 3",
        "line 5",
        "line 7",
    ]
    rows = _read(tmp_path / "out")
    assert sorted(r["id"] for r in rows) == [0, 2, 4]
    assert result["rows"] == 3


def test_command_exit_codes(model_dir, csv_path, tmp_path):
    parser = argparse.ArgumentParser()
    score.add_score_command(parser.add_subparsers(dest="command"))

    def run(*argv):
        args = parser.parse_args(["score", *argv])
        out, err = io.StringIO(), io.StringIO()
        return args.func(args, out=out, err=err), out.getvalue(), err.getvalue()

    common = ["--model", model_dir, "--data", csv_path]
    code, out, _ = run(
        *common, "--output", str(tmp_path / "a"), "--text-column", TITLE
    )
    assert code == 0 and f"Scored {N + 1} rows" in out
    code, out, err = run(
        *common, "--output", str(tmp_path / "b"), "--text-column", "Nope"
    )
    assert code == 2 and not out
    assert err.startswith("mmoe: ") and len(err.splitlines()) == 1
