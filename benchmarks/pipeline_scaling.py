"""Wall time and peak memory of each pipeline component as the input grows.

    python -m benchmarks.pipeline_scaling [--factors 1 10 40] [--epochs 1]
        [--label NAME] [--code DIR] [--work /tmp/pipeline_scaling]

The bundled reviews are repeated `factor` times into one plain CSV under
`--work` (never committed; see `ingest_scaling.build_input`), and one
`mmoe run --no-cache --epochs E` runs on each in a child process. The child's
printed progress lines ("  CsvExampleGen ...", "  CsvExampleGen done") split
its run into phases; the resident memory of the child and its own children
is sampled every `--interval` seconds and each sample is credited to the
phase that was running. Per factor it records each phase's wall time and
peak RSS, the whole run's, and the rows ingested. `--code DIR` runs another
checkout's pipeline on the same inputs. Results are merged by `--label` into
`benchmarks/results/pipeline_scaling.json`, and `pipeline_scaling.png`
plots peak RSS and wall time per component against the factor.
"""

import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import psutil

from benchmarks import ingest_scaling

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pipeline_scaling.json"
PLOT = ROOT / "benchmarks" / "results" / "pipeline_scaling.png"
# What runs before the first component: the CLI's imports and ingest.
START = "start and ingest"
# Between two components, and after the last (the CLI's report).
OUTSIDE = "outside components (report)"


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of `process` and every process below it."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Phases:
    """Phase wall times and peak RSS, from progress lines and samples."""

    def __init__(self):
        self.current = START
        self.order = [START]
        self.started = {START: time.perf_counter()}
        self.wall = {}
        self.peak = {START: 0}
        self.last = 0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        """One progress line of the child's stdout."""
        words = text.strip().split()
        if len(words) < 2 or not words[0][:1].isupper():
            return
        name = words[0]
        now = time.perf_counter()
        with self.lock:
            if words[1] == "...":
                self._close(now)
                self.current = name
                self.order.append(name)
                self.started[name] = now
                # A phase shorter than the sampling interval keeps the
                # memory it started with.
                self.peak[name] = max(self.peak.get(name, 0), self.last)
            elif words[1] == "done" and name == self.current:
                self._close(now)
                self.current = OUTSIDE
                self.started[OUTSIDE] = now
                if OUTSIDE not in self.order:
                    self.order.append(OUTSIDE)

    def sample(self, rss: int) -> None:
        with self.lock:
            self.last = rss
            if self.current is not None:
                key = self.current
                self.peak[key] = max(self.peak.get(key, 0), rss)

    def _close(self, now: float) -> None:
        if self.current is not None:
            took = now - self.started[self.current]
            self.wall[self.current] = self.wall.get(self.current, 0.0) + took

    def finish(self) -> list[dict]:
        self._close(time.perf_counter())
        return [
            {
                "phase": name,
                "wall_s": round(self.wall.get(name, 0.0), 1),
                "peak_rss_mb": round(self.peak.get(name, 0) / 2**20, 1),
            }
            for name in self.order
        ]


def command(data: str, output: str, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--data",
        data,
        "--text-column",
        *ingest_scaling.TEXT,
        "--label-columns",
        *ingest_scaling.LABELS,
        "--output",
        output,
        "--epochs",
        str(epochs),
        "--no-cache",
    ]


def measure(
    data: str, output: str, epochs: int, code=None, interval: float = 0.5
) -> dict:
    """One `mmoe run` of `data` into `output` (emptied first), in a child:
    each phase's wall time and peak RSS, and the whole run's."""
    shutil.rmtree(output, ignore_errors=True)
    path = os.pathsep.join(str(p) for p in [code, ROOT] if p)
    phases = Phases()
    start = time.perf_counter()
    child = subprocess.Popen(
        command(data, output, epochs),
        env={**os.environ, "PYTHONPATH": path},
        cwd=str(code or ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process = psutil.Process(child.pid)
    stdout = []
    stderr = []

    def read(stream, into, parse):
        for text in stream:
            into.append(text)
            if parse:
                phases.line(text)

    readers = [
        threading.Thread(target=read, args=(child.stdout, stdout, True)),
        threading.Thread(target=read, args=(child.stderr, stderr, False)),
    ]
    for reader in readers:
        reader.start()
    peak = 0
    while child.poll() is None:
        try:
            rss = tree_rss(process)
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        phases.sample(rss)
        time.sleep(interval)
    child.wait()
    for reader in readers:
        reader.join()
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(
            f"mmoe run exited {child.returncode}:\n{''.join(stderr)[-2000:]}"
        )
    result = {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "phases": phases.finish(),
        "input_mb": round(os.path.getsize(data) / 2**20, 1),
    }
    metrics = pathlib.Path(output) / "metrics.json"
    if metrics.exists():
        result["rows"] = json.loads(metrics.read_text())["ingest"]["rows"]
    return result


NOTE = (
    "mmoe run --no-cache --epochs E on the reviews repeated, plain CSV, "
    "one child process per run; RSS of the child and its children "
    "sampled, each sample credited to the component then running"
)


def merge(results_path: pathlib.Path, label: str, runs: list[dict]) -> dict:
    """Replaces `label`'s runs in the results file, keeps the others."""
    return ingest_scaling.merge(results_path, label, runs, NOTE)


def plot(runs: list[dict], path: pathlib.Path) -> None:
    """Peak RSS and wall time per phase against the input factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = [r["factor"] for r in runs]
    names = []
    for r in runs:
        for p in r["phases"]:
            if p["phase"] not in names:
                names.append(p["phase"])
    fig, (rss_ax, wall_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names + ["whole run"]:
        rss, wall = [], []
        for r in runs:
            if name == "whole run":
                rss.append(r["peak_rss_mb"] / 1024)
                wall.append(r["wall_s"])
                continue
            found = [p for p in r["phases"] if p["phase"] == name]
            rss.append(found[0]["peak_rss_mb"] / 1024 if found else None)
            wall.append(found[0]["wall_s"] if found else None)
        style = (
            {"linewidth": 2.5, "color": "black"} if name == "whole run" else {}
        )
        rss_ax.plot(factors, rss, marker="o", label=name, **style)
        wall_ax.plot(factors, wall, marker="o", label=name, **style)
    rss_ax.set(
        xscale="log", xlabel="input (x the reviews)", ylabel="peak RSS (GB)"
    )
    wall_ax.set(
        xscale="log",
        yscale="log",
        xlabel="input (x the reviews)",
        ylabel="wall time (s)",
    )
    for ax in (rss_ax, wall_ax):
        ax.set_xticks(factors, [str(f) for f in factors])
        ax.grid(alpha=0.3)
    wall_ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("mmoe run per component as the input grows")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 40])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--label", default="main")
    parser.add_argument("--code", help="another checkout's root to run")
    parser.add_argument("--work", default="/tmp/pipeline_scaling")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--plot", default=str(PLOT))
    args = parser.parse_args(argv)
    if any(f < 1 for f in args.factors) or args.epochs < 1:
        parser.error("--factors and --epochs must be positive")
    work = pathlib.Path(args.work)
    runs = []
    for factor in args.factors:
        data = ingest_scaling.build_input(factor, work)
        result = measure(
            data,
            str(work / f"run_{args.label}_x{factor}"),
            args.epochs,
            args.code,
            args.interval,
        )
        result = {
            "factor": factor,
            "epochs": args.epochs,
            **result,
            "date": datetime.date.today().isoformat(),
        }
        print(json.dumps(result), flush=True)
        runs.append(result)
        merge(pathlib.Path(args.output), args.label, runs)
    plot(runs, pathlib.Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
