"""Cost of MMoE: against DeepCTR, one 3-task model vs three, and scaling.

    python -m benchmarks.cost [deepctr] [multitask_vs_single] [scaling]
        [--quick] [--output DIR]

All three measurements by default (TensorFlow backend). Writes
`benchmarks/results/cost.json` (machine, command, every measurement) and
`benchmarks/results/cost_scaling.png`; `--quick` is a tiny run that writes
nothing unless given `--output`. The fused layer against a per-expert loop
(issue 5, part 3, first point) is `benchmarks/layer_speed.py`.

- `deepctr` (`benchmarks/deepctr_speed.py`): training step time of
  DeepCTR's MMOE (tf_keras) against the same network from `keras_mmoe.MMoE`,
  in four modes; skipped when the `bench` extra is not installed.
- `multitask_vs_single` (`benchmarks/multitask_vs_single.py`): the
  pipeline's text model with an MMoE body and three tasks against three
  single-task models: examples/s and peak memory.
- `scaling` (`benchmarks/mmoe_scaling.py`): training step time of the
  `MMoE` layer against the number of experts and of tasks.

Sizes and timing settings: `benchmarks/cost_config.py`. Processes:
`multitask_vs_single` (each model) and `scaling` run in processes of their
own, forked from a server that has imported this module only
(`benchmarks/processes.py`; no TensorFlow runtime exists before the fork);
`deepctr` in a new interpreter, for TF_USE_LEGACY_KERAS.
"""

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import (  # noqa: E402
    deepctr_speed,
    mmoe_scaling,
    multitask_vs_single,
    processes,
    timing,
)
from benchmarks.cost_config import QUICK, Config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("deepctr", "multitask_vs_single", "scaling")
# Versions that cost.json records.
PACKAGES = ("tensorflow", "keras", "tf-keras", "deepctr", "numpy")


def describe() -> dict:
    return {
        "machine": timing.machine(PACKAGES),
        "timing": (
            "implementations timed in turns (A, B, A, B, ...), each block "
            "~block_seconds; per step: median over blocks of block seconds "
            "/ steps; *_iqr: 25th and 75th percentiles over blocks"
        ),
    }


RUNNERS = {
    "deepctr": deepctr_speed.run,
    "multitask_vs_single": multitask_vs_single.run,
    "scaling": mmoe_scaling.run,
}


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "parts", nargs="*", metavar="PART", help=f"of {PARTS}; default: all"
    )
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument(
        "--output",
        type=Path,
        help="directory of cost.json and cost_scaling.png (default: "
        "benchmarks/results; none with --quick)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; expected some of {PARTS}")

    config = QUICK if args.quick else Config()
    parts = args.parts or list(PARTS)
    start = time.perf_counter()
    result = {
        "command": " ".join(["python -m benchmarks.cost", *argv]),
        "config": asdict(config),
        **describe(),
        "load_average_start": os.getloadavg(),
    }
    for part in parts:
        print(f"\n=== {part} ===", flush=True)
        part_start = time.perf_counter()
        if part == "deepctr" and set(parts) - {"deepctr"}:
            # The fork server's import overlaps the child's, not its timing.
            result[part] = deepctr_speed.run(
                config, meanwhile=processes.start_forkserver
            )
        else:
            result[part] = RUNNERS[part](config)
        result[part]["wall_seconds"] = time.perf_counter() - part_start
    result["load_average_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - start
    output = args.output or (None if args.quick else RESULTS)
    if output:
        timing.write_json(output / "cost.json", result)
        print(f"\nResults: {output / 'cost.json'}")
        if "scaling" in result:
            png = mmoe_scaling.plot(
                result["scaling"], output / "cost_scaling.png"
            )
            print(f"Plot: {png}")
    return result


if __name__ == "__main__":
    main()
