"""Speed of the fused `MMoE` layer against a per-expert loop of Dense layers.

Run: `python -m benchmarks.layer_speed` (TensorFlow backend; `--quick` for a
tiny run). Writes `benchmarks/results/layer_speed.json` and prints a table.

What is timed, per grid point (batch x experts x units, 3 tasks, input 256):

- train: forward + backward + Adam update, in a `tf.function` with
  `tf.GradientTape`; the gradient with respect to the input is computed too
  (as when the layer sits on embeddings), so the work is ~3x the forward
  matmuls. `steps` steps run inside one `tf.function` call (`tf.range`
  loop), so Python dispatch is paid once per block, not once per step.
- infer: `layer(x, training=False)` in a `tf.function`, `steps` calls in one
  `tf.function` call the same way.

The fused layer (A) and the loop (B) are timed in interleaved blocks
(A, B, A, B, ...) so both share the machine's drift; the figure per step is
the median over blocks of block time / steps (`benchmarks.timing`).

The loop reference `LoopMMoE` is the style of DeepCTR, PaddleRec and
torch-rechub: one `Dense` stack per expert, one `Dense` softmax gate per
task, `stack` + broadcast-multiply + `sum` to mix.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks import timing  # noqa: E402
from keras_mmoe import MMoE  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "layer_speed.json"


@dataclass
class Config:
    batches: tuple = (1, 32, 1024)
    experts: tuple = ((8, 64), (32, 16))  # (num_experts, units)
    num_tasks: int = 3
    input_dim: int = 256
    repeats: int = 21  # Interleaved blocks per implementation.
    block_seconds: float = 0.08  # Target length of one timed block.
    peak_size: int = 2048
    peak_repeats: int = 5  # Per grid point.
    intra_op_threads: int = 0  # 0: TensorFlow's default.
    inter_op_threads: int = 0
    # `_xla`: the same step compiled with XLA (`jit_compile=True`). Keras 3's
    # `model.fit` asks for XLA only by `jit_compile=True`: its default "auto"
    # turns XLA off on a machine without a GPU, like this one.
    modes: tuple = ("train", "infer", "train_xla", "infer_xla")


QUICK = Config(
    batches=(1, 8),
    experts=((4, 8),),
    num_tasks=2,
    input_dim=16,
    repeats=3,
    block_seconds=0.005,
    peak_size=256,
    peak_repeats=3,
)


class LoopMMoE(keras.layers.Layer):
    """MMoE written as a Python loop over experts and gates (reference).

    Same math and numbers as `keras_mmoe.MMoE` (temperature 1, no gate
    dropout); `copy_weights_from` makes the two equal.
    """

    def __init__(
        self, num_tasks: int, *, num_experts: int, expert_units, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.expert_units = (
            [expert_units] if isinstance(expert_units, int) else expert_units
        )
        self.expert_layers = [
            [
                keras.layers.Dense(width, activation="relu")
                for width in self.expert_units
            ]
            for _ in range(num_experts)
        ]
        self.gates = [
            keras.layers.Dense(num_experts, activation="softmax")
            for _ in range(num_tasks)
        ]

    def build(self, input_shape):
        for stack in self.expert_layers:
            shape = input_shape
            for dense in stack:
                dense.build(shape)
                shape = (*shape[:-1], dense.units)
        for gate in self.gates:
            gate.build(input_shape)

    def call(self, inputs):
        hs = []
        for stack in self.expert_layers:
            h = inputs
            for dense in stack:
                h = dense(h)
            hs.append(h)
        h = ops.stack(hs, axis=1)  # (batch, experts, units)
        return [
            ops.sum(ops.expand_dims(gate(inputs), -1) * h, axis=1)
            for gate in self.gates
        ]  # num_tasks x (batch, units)

    def copy_weights_from(self, mmoe: MMoE):
        """Sets every expert and gate to the fused layer's weights."""
        fused = mmoe.experts
        k0, b0 = first_layer(fused)
        per_part = k0.shape[2]
        for e, stack in enumerate(self.expert_layers):
            for i, dense in enumerate(stack):
                if i == 0:
                    kernel = k0[e // per_part, :, e % per_part]
                    bias = b0[e]
                else:
                    kernel = ops.convert_to_numpy(fused.deep_kernels[i - 1])[e]
                    bias = ops.convert_to_numpy(fused.deep_biases[i - 1])[e]
                dense.set_weights([kernel, bias])
        for gate, fused_gate in zip(self.gates, mmoe.gates, strict=True):
            gate.set_weights(fused_gate.get_weights())


def first_layer(experts) -> tuple[np.ndarray, np.ndarray]:
    """`Experts`' first-layer blocks stacked: kernel `(parts, in,
    experts_per_part, units0)` and bias `(experts, units0)`."""
    biases = [ops.convert_to_numpy(b) for b in experts.block_biases]
    kernels = [
        ops.convert_to_numpy(k).reshape(-1, k.shape[-2], *b.shape)
        if len(k.shape) == 2
        else ops.convert_to_numpy(k)
        for k, b in zip(experts.block_kernels, biases, strict=True)
    ]
    return np.concatenate(kernels), np.concatenate(biases)


def make_layers(num_experts, units, num_tasks, input_dim):
    fused = MMoE(
        num_tasks, num_experts=num_experts, expert_units=units, name="fused"
    )
    fused.build((None, input_dim))
    loop = LoopMMoE(
        num_tasks, num_experts=num_experts, expert_units=units, name="loop"
    )
    loop.build((None, input_dim))
    loop.copy_weights_from(fused)
    return fused, loop


def train_block(layer, x, targets, jit_compile=False):
    """A `tf.function` running `steps` training steps of `layer`."""
    optimizer = keras.optimizers.Adam(1e-4)
    variables = layer.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def run(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            # One step at a time: a while loop overlaps up to 10
            # independent iterations by default (throughput, not latency).
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = layer(x, training=True)
                loss = tf.add_n(
                    [
                        tf.reduce_mean(tf.square(o - t))
                        for o, t in zip(outputs, targets, strict=True)
                    ]
                )
            grads = tape.gradient(loss, [x, *variables])
            optimizer.apply(grads[1:], variables)
            # The input gradient must be used or it is pruned away.
            total += loss + tf.reduce_sum(grads[0][0])
        return total

    return run


def infer_block(layer, x, jit_compile=False):
    """A `tf.function` running `steps` inference calls of `layer`."""

    @tf.function(jit_compile=jit_compile)
    def run(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            outputs = layer(x, training=False)
            # Use one row of every output so nothing is pruned away.
            total += tf.add_n([tf.reduce_sum(o[0]) for o in outputs])
        return total

    return run


def batch_data(rng, batch, input_dim, units, num_tasks):
    """A `(batch, input_dim)` input and one `(batch, units)` target a task."""
    x = tf.constant(rng.normal(size=(batch, input_dim)).astype("float32"))
    targets = [
        tf.constant(rng.normal(size=(batch, units)).astype("float32"))
        for _ in range(num_tasks)
    ]
    return x, targets


def time_in_turns(layers, mode, x, targets, block_seconds, repeats):
    """Times `layers` in `mode` ("train", "infer", with "_xla" for XLA).

    Every layer runs the same steps per block, so that the slowest block
    lasts ~`block_seconds`. Returns the steps per block and
    `timing.in_turns`'s `(medians, samples)`.
    """
    jit = mode.endswith("_xla")
    runs = [
        train_block(layer, x, targets, jit)
        if mode.startswith("train")
        else infer_block(layer, x, jit)
        for layer in layers
    ]
    fns = [
        timing.clocked(lambda steps, run=run: run(tf.constant(steps)).numpy())
        for run in runs
    ]
    steps = timing.calibrate(fns, block_seconds)
    return steps, timing.in_turns(fns, steps, repeats)


def matmul_peak(size, repeats):
    """Median GFLOP/s of float32 `(size, size) @ (size, size)` matmuls.

    The best of one matmul (uses the intra-op threads) and one per core run
    side by side (uses the inter-op threads), so the peak is the machine's
    whatever the thread settings.
    """
    rng = np.random.default_rng(0)
    cores = os.cpu_count() or 1
    a = [
        tf.constant(rng.normal(size=(size, size)).astype("float32"))
        for _ in range(2 * cores)
    ]

    def gflops(count):
        @tf.function
        def mm():
            return tf.add_n(
                [
                    tf.reduce_sum(tf.matmul(a[2 * i], a[2 * i + 1])[0])
                    for i in range(count)
                ]
            )

        mm().numpy()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            mm().numpy()
            seconds.append(time.perf_counter() - start)
        return count * 2 * size**3 / statistics.median(seconds) / 1e9

    return {"one_matmul": gflops(1), "parallel_matmuls": gflops(cores)}


def train_flops(batch, num_experts, units, num_tasks, input_dim):
    """Matmul FLOPs of one training step: 3x the forward matmuls.

    Forward: every expert layer, every gate, and the gate-weighted mix.
    Backward: a gradient for the weights and one for the layer input of each
    matmul (the step computes the input gradient too), 2x forward.
    """
    widths = [input_dim, *units]
    experts = sum(
        2 * batch * a * b * num_experts
        for a, b in zip(widths, widths[1:], strict=False)
    )
    gates = 2 * batch * input_dim * num_experts * num_tasks
    mix = 2 * batch * num_experts * units[-1] * num_tasks
    return 3 * (experts + gates + mix)


def run(config: Config) -> dict:
    """Times the whole grid in this process, with its thread settings."""
    if config.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(
            config.intra_op_threads
        )
    if config.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(
            config.inter_op_threads
        )
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # The peak is measured before every grid point and the best is kept:
    # other load on the machine lowers a single measurement.
    peak_samples = []
    rows = []
    for num_experts, units in config.experts:
        for batch in config.batches:
            peak_samples.append(
                matmul_peak(config.peak_size, config.peak_repeats)
            )
            fused, loop = make_layers(
                num_experts, units, config.num_tasks, config.input_dim
            )
            x, targets = batch_data(
                rng, batch, config.input_dim, units, config.num_tasks
            )
            for mode in config.modes:
                steps, (medians, samples) = time_in_turns(
                    (fused, loop),
                    mode,
                    x,
                    targets,
                    config.block_seconds,
                    config.repeats,
                )
                t_fused, t_loop = medians
                row = {
                    "threads": threads_name(config),
                    "mode": mode,
                    "batch": batch,
                    "num_experts": num_experts,
                    "units": units,
                    "steps_per_block": steps,
                    # Spread over blocks (_iqr): 25th and 75th percentiles.
                    **timing.in_ms(("fused", "loop"), medians, samples),
                    "speedup": t_loop / t_fused,
                }
                if mode.startswith("train"):
                    row["flops_per_step"] = train_flops(
                        batch,
                        num_experts,
                        [units],
                        config.num_tasks,
                        config.input_dim,
                    )
                    for name, t in (("fused", t_fused), ("loop", t_loop)):
                        row[f"{name}_gflops"] = row["flops_per_step"] / t / 1e9
                rows.append(row)
                print(format_row(row), flush=True)
    peaks = {
        name: max(p[name] for p in peak_samples) for name in peak_samples[0]
    }
    peak = max(peaks.values())
    for row in rows:
        for name in ("fused", "loop"):
            if f"{name}_gflops" in row:
                row[f"{name}_pct_peak"] = 100 * row[f"{name}_gflops"] / peak
    return {
        "threads": threads_name(config),
        "intra_op_threads": (
            tf.config.threading.get_intra_op_parallelism_threads()
        ),
        "inter_op_threads": (
            tf.config.threading.get_inter_op_parallelism_threads()
        ),
        "matmul_peak_gflops": peak,
        "matmul_peaks_gflops": peaks,
        "matmul_peak_samples_gflops": peak_samples,
        "rows": rows,
    }


def threads_name(config: Config) -> str:
    if not (config.intra_op_threads or config.inter_op_threads):
        return "default"
    return f"{config.intra_op_threads}x{config.inter_op_threads}"


def parse_threads(name: str) -> tuple[int, int]:
    """ "default" -> (0, 0); "1x2" -> 1 intra-op, 2 inter-op threads."""
    if name == "default":
        return 0, 0
    intra, inter = name.split("x")
    return int(intra), int(inter)


def run_in_subprocess(threads: str, quick: bool) -> dict:
    """TensorFlow fixes its thread pools once per process: one each."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        args = [sys.executable, "-m", "benchmarks.layer_speed"]
        args += ["--threads", threads, "--output", str(out)]
        args += ["--quick"] if quick else []
        subprocess.run(args, check=True, cwd=Path(__file__).parent.parent)
        return json.loads(out.read_text())["runs"][0]


def describe() -> dict:
    return {
        "machine": timing.machine(("tensorflow", "keras")),
        "train_step": (
            "tf.function(jit_compile=False, or True for mode train_xla): "
            "GradientTape forward, gradients "
            "for the weights and the input, Adam.apply; steps looped in-graph "
            "(tf.range, parallel_iterations=1)"
        ),
        "infer_step": (
            "tf.function(jit_compile=False, or True for mode infer_xla): "
            "layer(x, training=False); steps "
            "looped in-graph (tf.range, parallel_iterations=1)"
        ),
        "flops": (
            "train: 3 x forward matmul FLOPs (experts + gates + gate mix); "
            "percent of the best matmul peak of the same run, measured before "
            "every grid point (rows print GFLOP/s while running)"
        ),
        "timing": (
            "fused and loop in interleaved blocks (A, B, A, B, ...); "
            "median over blocks of block seconds / steps"
        ),
    }


HEADER = (
    f"{'threads':<8}{'mode':<10}{'batch':>6}{'experts':>8}{'units':>6}"
    f"{'fused ms':>10}{'loop ms':>10}{'speedup':>9}"
    f"{'fused %pk':>10}{'loop %pk':>9}"
)


def format_row(row) -> str:
    pct = (
        f"{row['fused_pct_peak']:>10.1f}{row['loop_pct_peak']:>9.1f}"
        if "fused_pct_peak" in row
        else f"{row['fused_gflops']:>10.1f}{row['loop_gflops']:>9.1f}"
        if "fused_gflops" in row
        else ""
    )
    return (
        f"{row['threads']:<8}{row['mode']:<10}{row['batch']:>6}"
        f"{row['num_experts']:>8}{row['units']:>6}{row['fused_ms']:>10.4f}"
        f"{row['loop_ms']:>10.4f}{row['speedup']:>8.2f}x{pct}"
    )


def format_table(result) -> str:
    lines = []
    for r in result["runs"]:
        peaks = r["matmul_peaks_gflops"]
        lines.append(
            f"threads {r['threads']} (intra-op {r['intra_op_threads']}, "
            f"inter-op {r['inter_op_threads']}): matmul peak "
            f"{r['matmul_peak_gflops']:.1f} GFLOP/s (one matmul "
            f"{peaks['one_matmul']:.1f}, {os.cpu_count()} side by side "
            f"{peaks['parallel_matmuls']:.1f})"
        )
    lines.append(HEADER)
    lines += [format_row(row) for r in result["runs"] for row in r["rows"]]
    return "\n".join(lines)


def targets(runs) -> dict:
    """The issue's three targets, per thread setting and compiler."""
    out = {}
    for r in runs:
        for compiler, suffix in (("graph", ""), ("xla", "_xla")):
            rows = [
                row
                for row in r["rows"]
                if row["mode"] in (f"train{suffix}", f"infer{suffix}")
            ]
            if not rows:
                continue
            slowest = min(rows, key=lambda row: row["speedup"])
            big = [
                row
                for row in rows
                if row["mode"].startswith("train")
                and row["batch"] == max(row["batch"] for row in rows)
            ]
            wide = [row for row in big if row["num_experts"] >= 32]
            out[f"{r['threads']}/{compiler}"] = {
                "never_slower": {
                    "min_speedup": slowest["speedup"],
                    "where": {
                        k: slowest[k]
                        for k in ("mode", "batch", "num_experts", "units")
                    },
                    "met": slowest["speedup"] >= 1.0,
                },
                "speedup_32_experts_train_big_batch": {
                    "value": min(
                        (row["speedup"] for row in wide), default=None
                    ),
                    "target": ">= 1.5",
                    "met": bool(wide)
                    and min(r["speedup"] for r in wide) >= 1.5,
                },
                "pct_peak_train_big_batch": {
                    "value": max(
                        (row.get("fused_pct_peak", 0) for row in big),
                        default=None,
                    ),
                    "target": ">= 50",
                    "met": bool(big)
                    and max(row.get("fused_pct_peak", 0) for row in big) >= 50,
                },
            }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    timing.add_output_arguments(parser, RESULTS)
    parser.add_argument(
        "--threads",
        default="default,1x2",
        help='comma-separated "default" (TensorFlow\'s) or INTRAxINTER op '
        "thread counts; more than one runs each in a subprocess",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    settings = args.threads.split(",")
    if len(settings) == 1:
        intra, inter = parse_threads(settings[0])
        config = replace(config, intra_op_threads=intra, inter_op_threads=inter)
        print(HEADER, flush=True)
        runs = [run(config)]
    else:
        runs = [run_in_subprocess(t, args.quick) for t in settings]
    result = {"config": asdict(config), **describe(), "runs": runs}
    result["targets"] = targets(runs)
    print(format_table(result))
    for name, checks in result["targets"].items():
        print(
            name,
            {
                k: ("met" if v["met"] else "NOT met")
                + f" ({v.get('value', v.get('min_speedup')):.2f})"
                for k, v in checks.items()
                if v.get("value", v.get("min_speedup")) is not None
            },
        )
    timing.write_results(args, RESULTS, result)
    return result


if __name__ == "__main__":
    main()
