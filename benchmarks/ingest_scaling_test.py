import gzip
import json

from benchmarks import ingest_scaling

SOURCE = (
    "Title,Review Text,Recommended IND,Rating,Department Name,split\n"
    "a,good,1,5,Tops,train\n"
    "b,bad,0,1,Dresses,train\n"
    "c,fine,1,4,Tops,test\n"
)


def test_repeated_input_is_ingested_in_a_child_and_merged(tmp_path):
    source = tmp_path / "reviews.csv.gz"
    source.write_bytes(gzip.compress(SOURCE.encode()))
    data = ingest_scaling.build_input(3, tmp_path / "work", source)
    text = open(data).read()
    assert text.count("Title,") == 1 and text.count("a,good") == 3
    result = ingest_scaling.measure(data, str(tmp_path / "out"))
    assert result["rows"] == 9
    assert result["rows_by_split"] == {"test": 3, "train": 6}
    assert result["peak_rss_mb"] > 10 and result["wall_s"] >= 0
    results = tmp_path / "results.json"
    ingest_scaling.merge(results, "before", [{"factor": 1}])
    ingest_scaling.merge(results, "after", [result])
    runs = json.loads(results.read_text())["runs"]
    assert runs["before"] == [{"factor": 1}]
    assert runs["after"][0]["rows"] == 9


def test_code_runs_another_checkouts_ingest(tmp_path):
    fake = tmp_path / "code" / "pipeline"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "ingest.py").write_text(
        "import types\n"
        "def ingest(data, text, labels, root):\n"
        "    return types.SimpleNamespace(rows=-1, rows_by_split={})\n"
    )
    data = tmp_path / "d.csv"
    data.write_text("a\n")
    result = ingest_scaling.measure(
        str(data), str(tmp_path / "out"), code=tmp_path / "code"
    )
    assert result["rows"] == -1
