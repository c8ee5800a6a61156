"""Speed of the MMoE layer's training step on each Keras backend.

Run: `python -m benchmarks.backend_speed` (`make backend-speed` creates the
venvs first; `--quick` for a tiny run). Writes
`benchmarks/results/backend_speed.json` and prints a table.

What is timed: `model.fit` steps of a model `input (256) -> MMoE(3 tasks,
8 experts of 64) -> one Dense(1) head per task`, MSE losses and Adam, at
batch 32 and 1024: forward, backward and the update, as a user's `fit`
runs them, with each backend's default compilation:

- `tensorflow`: a `tf.function` (Keras's `jit_compile="auto"` is off on a
  machine without a GPU); `tensorflow_xla` the same with
  `jit_compile=True`;
- `jax`: `jax.jit` (XLA);
- `torch`: eager PyTorch, its OpenMP threads waiting passively
  (`OMP_WAIT_POLICY=PASSIVE`, see `RUNS`).

Each backend runs in its own process from its own venv (`.venv`,
`.venv-jax`, `.venv-torch`, with `KERAS_BACKEND` set), in rounds (all
backends, then all again, ...) so that they share the machine's drift. In a
process, a block is one `fit` over enough batches to last ~`block_seconds`;
a backend's figure per round is the median over its blocks of block time /
steps, and its result the median over rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import timing

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "backend_speed.json"
# Name -> (venv, KERAS_BACKEND, jit_compile, environment).
RUNS = {
    "tensorflow": (".venv", "tensorflow", "auto", {}),
    "tensorflow_xla": (".venv", "tensorflow", True, {}),
    "jax": (".venv-jax", "jax", "auto", {}),
    # PyTorch's OpenMP threads spin while they wait; beside other processes
    # on the same cores a spinning thread holds a core the others need, and
    # a step took 10-25x longer (85-300 ms at batch 32 against 12 ms).
    # Passive waiting is how they behave on cores of their own.
    "torch": (".venv-torch", "torch", "auto", {"OMP_WAIT_POLICY": "PASSIVE"}),
}
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy")


@dataclass
class Config:
    batches: tuple = (32, 1024)
    num_tasks: int = 3
    num_experts: int = 8
    expert_units: int = 64
    input_dim: int = 256
    rounds: int = 3  # Processes per backend, in turns.
    repeats: int = 5  # Timed blocks per batch size in a process.
    # Long enough that the end of `fit`'s epoch (tens of ms under
    # TensorFlow) adds ~1% or less to a step.
    block_seconds: float = 3.0


QUICK = Config(
    batches=(4, 16),
    num_tasks=2,
    num_experts=2,
    expert_units=4,
    input_dim=8,
    rounds=1,
    repeats=2,
    block_seconds=0.01,
)


def make_model(config: Config, jit_compile):
    """The timed model, compiled with `jit_compile`."""
    import keras

    from keras_mmoe import MMoE

    inputs = keras.Input((config.input_dim,))
    features = MMoE(
        config.num_tasks,
        num_experts=config.num_experts,
        expert_units=config.expert_units,
    )(inputs)
    outputs = [keras.layers.Dense(1)(h) for h in features]
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(1e-3),
        ["mse"] * config.num_tasks,
        jit_compile=jit_compile,
    )
    return model


# Steps of each `fit` before its clock starts (the first step of a process
# also traces and compiles).
WARMUP_STEPS = 2


def time_backend(config: Config, jit_compile) -> dict:
    """Seconds per training step at each batch size, under the running
    backend: `{batch: {"median": s, "blocks": [s, ...], "steps": n}}`.

    A block is one `fit` of `WARMUP_STEPS + steps` batches, clocked from
    the start of batch `WARMUP_STEPS` to the end of the epoch (where Keras
    reads the losses, so that JAX's queued steps have run): `fit`'s set-up
    per call is left out, its end of epoch is in.
    """
    import keras
    import numpy as np

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == WARMUP_STEPS:
                self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter()

    keras.utils.set_random_seed(0)
    model = make_model(config, jit_compile)
    rng = np.random.default_rng(0)
    out = {}
    for batch in config.batches:
        data = {}

        def block(steps, batch=batch, data=data):
            rows = (WARMUP_STEPS + steps) * batch
            if rows not in data:
                x = rng.normal(size=(rows, config.input_dim))
                x = x.astype("float32")
                # Task k regresses input k.
                y = [x[:, k : k + 1] for k in range(config.num_tasks)]
                data[rows] = x, y
            x, y = data[rows]
            clock = Clock()
            model.fit(
                x,
                y,
                batch_size=batch,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[clock],
            )
            return (clock.end - clock.start) / steps

        steps = timing.calibrate([block], config.block_seconds)
        medians, samples = timing.in_turns([block], steps, config.repeats)
        out[str(batch)] = {
            "median": medians[0],
            "blocks": samples[0],
            "steps": steps,
        }
    return out


def _worker(config: Config, jit_compile) -> None:
    """Times the running backend and prints the result as one JSON line."""
    import keras

    result = {
        "backend": keras.backend.backend(),
        "jit_compile": jit_compile,
        "seconds_per_step": time_backend(config, jit_compile),
        "machine": timing.machine(PACKAGES),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result))


def _run_worker(name: str, config: Config) -> dict:
    venv, backend, jit_compile, environment = RUNS[name]
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"{name}: {python} is missing; `make backend-speed` creates it"
        )
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **environment,
    }
    out = subprocess.run(
        [
            str(python),
            "-m",
            "benchmarks.backend_speed",
            "--worker",
            json.dumps({"config": asdict(config), "jit_compile": jit_compile}),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(config: Config, names) -> dict:
    """Every backend of `names` in turns, `config.rounds` processes each."""
    rounds = {name: [] for name in names}
    for _ in range(config.rounds):
        for name in names:
            rounds[name].append(_run_worker(name, config))
            print(f"  {name}: done", file=sys.stderr, flush=True)
    results = {}
    for name, runs in rounds.items():
        per_batch = {}
        for batch in map(str, config.batches):
            medians = [r["seconds_per_step"][batch]["median"] for r in runs]
            per_batch[batch] = {
                "ms_per_step": statistics.median(medians) * 1e3,
                "ms_per_step_by_round": [m * 1e3 for m in medians],
                "examples_per_second": int(
                    int(batch) / statistics.median(medians)
                ),
            }
        results[name] = {
            "backend": runs[0]["backend"],
            "jit_compile": runs[0]["jit_compile"],
            "environment": RUNS[name][3],
            "batches": per_batch,
            "versions": {
                k: v
                for k, v in runs[0]["machine"].items()
                if k in PACKAGES and v is not None
            },
            "load_average_by_round": [r["load_average"] for r in runs],
        }
    return results


def table(config: Config, results: dict) -> str:
    batches = [str(b) for b in config.batches]
    lines = [
        "| backend | "
        + " | ".join(f"batch {b}: ms/step (examples/s)" for b in batches)
        + " |",
        "| --- |" + " --- |" * len(batches),
    ]
    for name, r in results.items():
        cells = [
            f"{r['batches'][b]['ms_per_step']:.2f} "
            f"({r['batches'][b]['examples_per_second']:,})"
            for b in batches
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing.add_output_arguments(parser, RESULTS)
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=list(RUNS),
        default=list(RUNS),
        help="which runs (default: all)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        config = Config(
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in spec["config"].items()
            }
        )
        _worker(config, spec["jit_compile"])
        return 0
    config = QUICK if args.quick else Config()
    results = run(config, args.backends)
    result = {
        "config": asdict(config),
        "machine": timing.machine(()),
        "results": results,
    }
    output = timing.write_results(args, RESULTS, result)
    print(table(config, results))
    if output:
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
