"""Wall time and peak memory of `mmoe run`'s ingest step as the input grows.

    python -m benchmarks.ingest_scaling [--factors 1 10 40] [--label after]
        [--code DIR] [--work /tmp/ingest_scaling]

The bundled reviews are repeated `factor` times into one plain CSV under
`--work` (never committed), and `pipeline.ingest.ingest` reads each into a
fresh output folder in a child process of its own: the child's peak resident
memory (`ru_maxrss`) is ingest's plus the imports'. `--code DIR` runs another
checkout of the code (e.g. `git archive` of an older commit), so two
versions are measured on the same inputs. Results are merged by `--label`
into `benchmarks/results/ingest_scaling.json`.
"""

import argparse
import datetime
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "womens_clothing_reviews.csv.gz"
RESULTS = ROOT / "benchmarks" / "results" / "ingest_scaling.json"
TEXT = ["Title", "Review Text"]
LABELS = ["Recommended IND", "Rating", "Department Name"]


def _child(data: str, root: str, text: str, labels: str) -> None:
    """In the child: one ingest (timed after the imports), and the
    process's peak RSS, as one JSON line."""
    import resource
    import time

    from pipeline import ingest

    start = time.perf_counter()
    summary = ingest.ingest(data, json.loads(text), json.loads(labels), root)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak, 1),
        "rows": summary.rows,
        "rows_by_split": summary.rows_by_split,
    }
    print(json.dumps(result))


def build_input(factor: int, folder: pathlib.Path, source=SOURCE) -> str:
    """The source's data rows `factor` times under one header, as a plain
    CSV in `folder` (made once, reused)."""
    path = folder / f"reviews_x{factor}.csv"
    if path.exists():
        return str(path)
    folder.mkdir(parents=True, exist_ok=True)
    raw = gzip.decompress(source.read_bytes())
    header, _, body = raw.partition(b"\n")
    if not body.endswith(b"\n"):
        body += b"\n"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(header + b"\n")
        for _ in range(factor):
            f.write(body)
    os.replace(tmp, path)
    return str(path)


def measure(data: str, root: str, code=None, text=TEXT, labels=LABELS) -> dict:
    """One ingest of `data` into `root` (emptied first) in a child process:
    its wall time, the child's peak RSS, the rows it wrote."""
    shutil.rmtree(root, ignore_errors=True)
    # `code` first (the child starts in it, and `-m` puts the working
    # folder first on its path): its pipeline and serving; this checkout's
    # benchmarks.
    path = os.pathsep.join(str(p) for p in [code, ROOT] if p)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_scaling",
            "--child",
            data,
            root,
            json.dumps(text),
            json.dumps(labels),
        ],
        env={**os.environ, "PYTHONPATH": path},
        cwd=str(code or ROOT),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["input_mb"] = round(os.path.getsize(data) / 2**20, 1)
    return result


NOTE = (
    "ingest alone (pipeline.ingest.ingest) on the reviews repeated, "
    "plain CSV, one child process per run; peak_rss_mb includes the "
    "child's imports"
)


def merge(
    results_path: pathlib.Path, label: str, runs: list[dict], note: str = NOTE
) -> dict:
    """Replaces `label`'s runs in the results file, keeps the others, and
    sets the file's `note` (what was measured)."""
    doc = (
        json.loads(results_path.read_text())
        if results_path.exists()
        else {"runs": {}}
    )
    doc["runs"][label] = runs
    doc["note"] = note
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 40])
    parser.add_argument("--label", default="after")
    parser.add_argument("--code", help="another checkout's root to run")
    parser.add_argument("--work", default="/tmp/ingest_scaling")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work)
    runs = []
    for factor in args.factors:
        data = build_input(factor, work)
        result = measure(data, str(work / f"out_{args.label}"), args.code)
        result = {
            "factor": factor,
            **result,
            "date": datetime.date.today().isoformat(),
        }
        print(json.dumps(result), flush=True)
        runs.append(result)
    merge(pathlib.Path(args.output), args.label, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
