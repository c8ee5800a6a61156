"""Training step time of the MMoE layer against its experts and tasks.

A part of `python -m benchmarks.cost` (`scaling`). The compiled training
step of the `MMoE` layer alone (as in `layer_speed`: forward, gradients for
the weights and the input, Adam; graph and XLA) against the number of
experts (1-32, 3 tasks) and of tasks (1-8, 8 experts), 64 units, batch
1024, input 256, every point timed in turns, in a process of its own
(`benchmarks.processes`). `plot` draws both sweeps.
"""

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import layer_speed, processes, timing  # noqa: E402
from benchmarks.cost_config import Config  # noqa: E402
from keras_mmoe import MMoE  # noqa: E402


def linear_fit(xs, ys) -> dict:
    """Least-squares `y = slope * x + intercept`."""
    slope, intercept = np.polyfit(np.asarray(xs, float), ys, 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def points(config: Config) -> list:
    """(num_experts, num_tasks) of both sweeps, shared point once."""
    points = [(e, config.num_tasks) for e in config.scaling_experts]
    points += [(config.num_experts, t) for t in config.scaling_tasks]
    return list(dict.fromkeys(points))


def child(config: Config) -> list:
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    batch, units = config.scaling_batch, config.expert_units
    x = tf.constant(
        rng.normal(size=(batch, config.input_dim)).astype("float32")
    )
    keys, fns = [], []
    for num_experts, num_tasks in points(config):
        layer = MMoE(num_tasks, num_experts=num_experts, expert_units=units)
        layer.build((None, config.input_dim))
        targets = [
            tf.constant(rng.normal(size=(batch, units)).astype("float32"))
            for _ in range(num_tasks)
        ]
        for mode in config.scaling_modes:
            run = layer_speed.train_block(
                layer, x, targets, jit_compile=mode.endswith("_xla")
            )
            keys.append((num_experts, num_tasks, mode))
            fns.append(
                timing.clocked(
                    lambda steps, run=run: run(tf.constant(steps)).numpy()
                )
            )
    medians, samples, steps = timing.time_blocks(
        fns, config.block_seconds, config.repeats
    )
    rows = []
    for (num_experts, num_tasks, mode), t, s, n in zip(
        keys, medians, samples, steps, strict=True
    ):
        flops = layer_speed.train_flops(
            batch, num_experts, [units], num_tasks, config.input_dim
        )
        rows.append(
            {
                "mode": mode,
                "num_experts": num_experts,
                "num_tasks": num_tasks,
                "steps_per_block": n,
                "ms": t * 1e3,
                "ms_iqr": timing.quartiles_ms(s),
                "flops_per_step": flops,
                "gflops": flops / t / 1e9,
            }
        )
    return rows


def run(config: Config) -> dict:
    rows = processes.run_forked(child, config)
    print(f"{'mode':<11}{'experts':>8}{'tasks':>6}{'ms':>10}{'GFLOP/s':>9}")
    for row in rows:
        print(
            f"{row['mode']:<11}{row['num_experts']:>8}{row['num_tasks']:>6}"
            f"{row['ms']:>10.3f}{row['gflops']:>9.1f}"
        )
    # Both sweeps with every point that has their fixed value.
    fits = {}
    for mode in config.scaling_modes:
        rows_of = [r for r in rows if r["mode"] == mode]
        by_experts = [r for r in rows_of if r["num_tasks"] == config.num_tasks]
        by_tasks = [
            r for r in rows_of if r["num_experts"] == config.num_experts
        ]
        fits[mode] = {
            "ms_per_expert": linear_fit(
                [r["num_experts"] for r in by_experts],
                [r["ms"] for r in by_experts],
            ),
            "ms_per_task": linear_fit(
                [r["num_tasks"] for r in by_tasks], [r["ms"] for r in by_tasks]
            ),
        }
    return {
        "step": (
            "layer_speed.train_block: tf.function (train) or with "
            "jit_compile=True (train_xla), GradientTape forward, gradients "
            "for the weights and the input, Adam.apply; steps looped "
            "in-graph; every point and mode timed in turns"
        ),
        "batch": config.scaling_batch,
        "input_dim": config.input_dim,
        "expert_units": config.expert_units,
        "experts_sweep_num_tasks": config.num_tasks,
        "tasks_sweep_num_experts": config.num_experts,
        "linear_fits": fits,
        "rows": rows,
    }


MODE_LABELS = {"train": "tf.function", "train_xla": "XLA (jit_compile)"}


def plot(scaling: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scaling["rows"]
    sweeps = (
        ("num_experts", "num_tasks", scaling["experts_sweep_num_tasks"]),
        ("num_tasks", "num_experts", scaling["tasks_sweep_num_experts"]),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (x_key, fixed_key, fixed) in zip(axes, sweeps, strict=True):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            points = sorted(
                (r[x_key], r["ms"], *r["ms_iqr"])
                for r in rows
                if r["mode"] == mode and r[fixed_key] == fixed
            )
            xs, ms, low, high = (np.array(v) for v in zip(*points, strict=True))
            ax.errorbar(
                xs,
                ms,
                yerr=[ms - low, high - ms],
                marker="o",
                capsize=3,
                label=MODE_LABELS.get(mode, mode),
            )
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(int(v)) for v in xs])
        ax.set_xlabel(x_key.replace("num_", "number of "))
        ax.set_title(f"{fixed_key.replace('num_', '')} = {fixed}")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training step, ms (median, IQR)")
    axes[0].legend()
    fig.suptitle(
        f"MMoE layer: batch {scaling['batch']}, input {scaling['input_dim']}, "
        f"{scaling['expert_units']} units per expert",
        fontsize=10,
    )
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
