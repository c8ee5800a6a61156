import json

from benchmarks import pipeline_scaling

# A stand-in `mmoe run`: prints the progress lines the real one prints, holds
# about 60 MB during "Big", and writes metrics.json.
FAKE_CLI = """
import json, os, sys, time
args = sys.argv[1:]
out = args[args.index("--output") + 1]
print("  Small ...", flush=True)
time.sleep(0.3)
print("  Small done (0 s)", flush=True)
print("  Big ...", flush=True)
held = bytearray(60 * 2**20)
for i in range(0, len(held), 4096):
    held[i] = 1
time.sleep(0.6)
del held
print("  Big done (1 s)", flush=True)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"ingest": {"rows": 7}}, f)
"""


def test_phases_get_their_own_wall_time_and_peak(tmp_path):
    code = tmp_path / "code" / "pipeline"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "cli.py").write_text(FAKE_CLI)
    data = tmp_path / "d.csv"
    data.write_text("a\n")
    result = pipeline_scaling.measure(
        str(data),
        str(tmp_path / "out"),
        1,
        code=tmp_path / "code",
        interval=0.05,
    )
    phases = {p["phase"]: p for p in result["phases"]}
    assert list(phases) == [
        pipeline_scaling.START,
        "Small",
        pipeline_scaling.OUTSIDE,
        "Big",
    ]
    assert phases["Big"]["peak_rss_mb"] > phases["Small"]["peak_rss_mb"] + 40
    assert phases["Big"]["wall_s"] >= 0.5
    assert result["peak_rss_mb"] >= phases["Big"]["peak_rss_mb"]
    assert result["rows"] == 7


def test_a_failed_run_raises_with_its_error(tmp_path):
    code = tmp_path / "code" / "pipeline"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "cli.py").write_text("import sys; sys.exit('bad input')")
    data = tmp_path / "d.csv"
    data.write_text("a\n")
    try:
        pipeline_scaling.measure(
            str(data), str(tmp_path / "out"), 1, code=tmp_path / "code"
        )
    except RuntimeError as e:
        assert "bad input" in str(e)
    else:
        raise AssertionError("no error")


def test_merge_and_plot(tmp_path):
    run = {
        "factor": 1,
        "wall_s": 10.0,
        "peak_rss_mb": 900.0,
        "phases": [{"phase": "Transform", "wall_s": 5.0, "peak_rss_mb": 800.0}],
    }
    results = tmp_path / "r.json"
    pipeline_scaling.merge(results, "a", [run])
    pipeline_scaling.merge(results, "b", [{**run, "factor": 10}])
    doc = json.loads(results.read_text())
    assert set(doc["runs"]) == {"a", "b"}
    pipeline_scaling.plot([run, {**run, "factor": 10}], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
