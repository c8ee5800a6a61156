"""Timing harness of the speed benchmarks, and where they write.

A block is a function `fn(steps) -> seconds per step` that runs `steps`
steps (a training step, an inference call, ...) and times them together, so
that the clock's and Python's overhead is paid once per block. Several
implementations are timed in turns (A, B, A, B, ...), so that all of them
share the machine's drift, and each one's figure is the median over its
blocks. `time_calls` times single calls instead, for latencies. `machine`
describes what ran them, and `write_json` writes the results.
"""

import argparse
import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path


def clocked(run, clock=time.perf_counter):
    """`run(steps)` as a block: `fn(steps) -> seconds per step`."""

    def fn(steps):
        start = clock()
        run(steps)
        return (clock() - start) / steps

    return fn


def calibrate(fns, block_seconds: float) -> int:
    """Steps per block so that the slowest of `fns` lasts ~`block_seconds`.

    Runs every block of 2 steps first (tracing, compiling, warming up),
    then 1, 4, 16, ... steps until the slowest lasts a quarter block, and
    scales that count to a whole block.
    """
    for fn in fns:
        fn(2)
    steps = 1
    while True:
        worst = max(fn(steps) * steps for fn in fns)
        if worst >= block_seconds / 4 or steps >= 2**20:
            break
        steps *= 4
    return max(1, round(steps * block_seconds / max(worst, 1e-9)))


def in_turns(fns, steps, repeats: int):
    """Times the blocks `fns` in turns, `repeats` blocks each.

    `steps`: the steps per block, one int for all or one per fn.
    Returns `(medians, samples)`: each fn's median seconds per step, and
    its seconds per step of every block.
    """
    if isinstance(steps, int):
        steps = [steps] * len(fns)
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, n, times in zip(fns, steps, samples, strict=True):
            times.append(fn(n))
    return [statistics.median(t) for t in samples], samples


def time_blocks(fns, block_seconds: float, repeats: int):
    """Times the blocks `fns` in turns, each with steps of its own.

    Each fn's steps per block make a block last ~`block_seconds`.
    Returns `(medians, samples, steps)`.
    """
    steps = [calibrate([fn], block_seconds) for fn in fns]
    medians, samples = in_turns(fns, steps, repeats)
    return medians, samples, steps


def quartiles_ms(seconds) -> list:
    """25th and 75th percentiles of per-step seconds, in ms."""
    ms = [s * 1e3 for s in seconds]
    if len(ms) < 2:
        return [ms[0], ms[0]]
    q = statistics.quantiles(ms, n=4)
    return [q[0], q[2]]


def in_ms(names, medians, samples) -> dict:
    """`<name>_ms` (the median) and `<name>_ms_iqr` of each implementation,
    from seconds per step."""
    ms = {f"{n}_ms": t * 1e3 for n, t in zip(names, medians, strict=True)}
    iqr = {
        f"{n}_ms_iqr": quartiles_ms(s)
        for n, s in zip(names, samples, strict=True)
    }
    return {**ms, **iqr}


def time_calls(fn, inputs, seconds: float, min_calls: int = 20) -> list:
    """Seconds of each call `fn(x)`, cycling through `inputs`.

    Calls one at a time for `seconds`, and at least `min_calls` times.
    """
    times = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds or len(times) < min_calls:
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
        i += 1
    return times


def machine(packages=("tensorflow", "keras")) -> dict:
    """The machine, Python and the installed version of each package
    (None if not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }


def write_json(path, data) -> None:
    """Writes `data` as indented JSON, making the parent folders; written
    beside `path` and renamed, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def add_output_arguments(parser: argparse.ArgumentParser, default: Path):
    """Adds `--quick` (a tiny run) and `--output` (the JSON results; by
    default `default`, and none with `--quick`); see `write_results`."""
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON results (default: {default.name} in benchmarks/results; "
        "none with --quick)",
    )


def write_results(args, default: Path, result) -> Path | None:
    """Writes `result` to `--output`, else to `default` unless `--quick`;
    returns the path written, if any."""
    output = args.output or (None if args.quick else default)
    if output:
        write_json(output, result)
    return output
