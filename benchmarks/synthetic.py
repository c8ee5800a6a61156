"""The MMoE paper's synthetic experiment: task correlation vs. model.

    python -m benchmarks.synthetic [--runs 20] [--output DIR]

Reproduces Ma et al., "Modeling Task Relationships in Multi-task Learning
with Multi-gate Mixture-of-Experts" (KDD 2018), section 3.2 and Figures 4-5.

Data, fresh for every run: unit vectors `u1 ⟂ u2` in `R^d` (random
orthogonal), `w1 = c u1`, `w2 = c (p u1 + sqrt(1 - p^2) u2)` so that
`cos(w1, w2) = p`, the task correlation; `x ~ N(0, I_d)` and

    y_k = w_k·x + sum_{i=1..m} sin(alpha_i w_k·x + beta_i) + eps_k,

with `alpha_i, beta_i ~ N(0, 1)` shared by both tasks and
`eps_k ~ N(0, 0.01)`.

Models: MMoE and OMoE (8 experts of 16 ReLU units; OMoE has one gate shared
by both tasks) and Shared-Bottom, whose one hidden layer is as wide as makes
its parameter count closest to MMoE's. Every task tower is `Dense(8, relu)`
and a linear `Dense(1)`. Adam, loss = sum of the two tasks' MSE, a fixed
number of steps per run; the test loss (same sum) is measured every
`eval_every` steps. All three models of one run train on the same data, in
the same batch order, from the same seed.

For each correlation `p`, `runs` runs (fresh data and initialization, seeded
from the run index). Writes to `--output` (default benchmarks/results):

- `synthetic.json`: config, parameter counts, per `p` and model the final
  test loss (mean, std, min, max, every run) and the mean loss curve, and
  MMoE's gate divergence (Jensen-Shannon divergence between the two tasks'
  mean gate distributions over the test set) per run;
- `synthetic_curves.png` (Figure 4), `synthetic_histograms.png` (Figure 5),
  `synthetic_gates.png` (gate divergence vs. `p`).

Training runs as XLA-compiled `tf.function`s, `eval_every` steps per call;
each model is built and traced once and re-initialized between runs (fresh
weights from a model built under the run's seed, Adam's slots reset), so a
run costs no retracing.
"""

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mmoe import (  # noqa: E402
    MMoE,
    OMoE,
    SharedBottom,
    gate_diagnostics,
)

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("mmoe", "omoe", "shared_bottom")
LABELS = {"mmoe": "MMoE", "omoe": "OMoE", "shared_bottom": "Shared-Bottom"}
NUM_TASKS = 2


@dataclass
class Config:
    correlations: tuple = (0.5, 0.9, 1.0)
    runs: int = 20
    # Data (paper, section 3.2).
    input_dim: int = 100
    scale: float = 1.0  # c
    num_sines: int = 10  # m
    noise_std: float = 0.1  # eps ~ N(0, 0.01)
    train_size: int = 10_000
    test_size: int = 1_000
    # Models (the paper's synthetic experiment).
    num_experts: int = 8
    expert_units: int = 16
    tower_units: int = 8
    # Training.
    batch_size: int = 128
    steps: int = 10_000  # 128 epochs of 10,000 rows at batch 128.
    eval_every: int = 250
    learning_rate: float = 1e-3
    seed: int = 0
    models: tuple = field(default=MODELS)


# === Data ===


def task_weights(
    correlation: float, input_dim: int, scale: float, rng
) -> np.ndarray:
    """`(2, input_dim)`: `w1 = c u1`, `w2 = c (p u1 + sqrt(1 - p^2) u2)`."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(
            f"correlation expected in [-1, 1]. Received: {correlation}"
        )
    # QR of a Gaussian matrix: two random orthonormal columns.
    q, _ = np.linalg.qr(rng.normal(size=(input_dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    return scale * np.stack(
        [u1, correlation * u1 + math.sqrt(1.0 - correlation**2) * u2]
    )


def make_data(correlation: float, config: Config, rng) -> dict:
    """One run's train and test sets: `x (n, d)`, `y (n, 2)`, float32."""
    w = task_weights(correlation, config.input_dim, config.scale, rng)
    alpha = rng.normal(size=config.num_sines)
    beta = rng.normal(size=config.num_sines)

    def sample(n):
        x = rng.normal(size=(n, config.input_dim))
        z = x @ w.T  # (n, tasks)
        sines = np.sin(alpha * z[..., None] + beta).sum(axis=-1)
        y = z + sines + config.noise_std * rng.normal(size=z.shape)
        return x.astype("float32"), y.astype("float32")

    x_train, y_train = sample(config.train_size)
    x_test, y_test = sample(config.test_size)
    return {
        "w": w,
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }


def label_correlation(y: np.ndarray) -> float:
    """Pearson correlation of the two tasks' labels."""
    return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])


def run_seeds(config: Config, correlation: float, run: int):
    """(numpy Generator of the data and batch order, int init seed)."""
    seq = np.random.SeedSequence([config.seed, run, round(correlation * 1000)])
    data_seq, init_seq = seq.spawn(2)
    return np.random.default_rng(data_seq), int(
        init_seq.generate_state(1)[0] % (2**31 - 1)
    )


# === Models ===


def dense_params(fan_in: int, units: int) -> int:
    return fan_in * units + units


def parameter_count(kind: str, config: Config, bottom_units: int = 0) -> int:
    """Trainable parameters of a model, by formula (checked by the test)."""
    d, e, u = config.input_dim, config.num_experts, config.expert_units

    def towers(fan_in):
        t = config.tower_units
        return NUM_TASKS * (dense_params(fan_in, t) + dense_params(t, 1))

    if kind == "shared_bottom":
        return dense_params(d, bottom_units) + towers(bottom_units)
    gates = NUM_TASKS if kind == "mmoe" else 1
    return e * dense_params(d, u) + gates * dense_params(d, e) + towers(u)


def shared_bottom_units(config: Config) -> int:
    """Width of Shared-Bottom's hidden layer whose parameter count is closest
    to MMoE's (the paper matches the two models' sizes)."""
    target = parameter_count("mmoe", config)
    # The count is linear in the width: units * per_unit + fixed.
    fixed = parameter_count("shared_bottom", config, 0)
    per_unit = parameter_count("shared_bottom", config, 1) - fixed
    low = max(1, (target - fixed) // per_unit)
    return min(
        (low, low + 1),
        key=lambda h: abs(parameter_count("shared_bottom", config, h) - target),
    )


def build_model(kind: str, config: Config, seed: int):
    """`(model, gate_model)`: model maps `(batch, d)` to a list of one
    `(batch, 1)` prediction per task; gate_model (MMoE only, else None) to
    the tasks' gate weights `(batch, num_experts)`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((config.input_dim,), name="features")
    gates = None
    if kind in ("mmoe", "omoe"):
        body = (MMoE if kind == "mmoe" else OMoE)(
            NUM_TASKS,
            num_experts=config.num_experts,
            expert_units=config.expert_units,
            return_gate_weights=True,
            name=kind,
        )
        features, gates = body(inputs)
    elif kind == "shared_bottom":
        body = SharedBottom(
            NUM_TASKS,
            units=shared_bottom_units(config),
            name=kind,
        )
        features = body(inputs)
    else:
        raise ValueError(f"kind expected one of {MODELS}. Received: {kind}")
    outputs = [
        keras.layers.Dense(1, name=f"output_{k}")(
            keras.layers.Dense(
                config.tower_units, activation="relu", name=f"tower_{k}"
            )(h)
        )
        for k, h in enumerate(features)
    ]
    model = keras.Model(inputs, outputs, name=kind)
    gate_model = (
        keras.Model(inputs, gates, name=f"{kind}_gates")
        if kind == "mmoe"
        else None
    )
    return model, gate_model


# === Training ===


class Trainer:
    """One model and its Adam, traced once and re-initialized per run."""

    def __init__(self, kind: str, config: Config):
        self.kind = kind
        self.config = config
        self.model, self.gate_model = build_model(kind, config, config.seed)
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        variables = self.model.trainable_variables
        self.optimizer.build(variables)
        # Adam as built (zero slots, zero step count, the learning rate).
        self._optimizer_start = [v.numpy() for v in self.optimizer.variables]

        def loss_fn(x, y):
            outputs = self.model(x, training=True)
            per_task = [
                tf.reduce_mean(tf.square(o[:, 0] - y[:, k]))
                for k, o in enumerate(outputs)
            ]
            return tf.add_n(per_task)

        @tf.function(jit_compile=True)
        def train_steps(x, y):
            # x (steps, batch, d), y (steps, batch, tasks): one step a row.
            total = tf.constant(0.0)
            for i in tf.range(tf.shape(x)[0]):
                tf.autograph.experimental.set_loop_options(
                    parallel_iterations=1
                )
                with tf.GradientTape() as tape:
                    loss = loss_fn(x[i], y[i])
                grads = tape.gradient(loss, variables)
                self.optimizer.apply(grads, variables)
                total += loss
            return total / tf.cast(tf.shape(x)[0], tf.float32)

        @tf.function(jit_compile=True)
        def task_losses(x, y):
            outputs = self.model(x, training=False)
            # (tasks,): each task's test MSE.
            return tf.stack(
                [
                    tf.reduce_mean(tf.square(o[:, 0] - y[:, k]))
                    for k, o in enumerate(outputs)
                ]
            )

        self.train_steps = train_steps
        self.task_losses = task_losses

    def reset(self, seed: int) -> None:
        """Fresh weights (as a model built under `seed`), fresh Adam."""
        fresh, _ = build_model(self.kind, self.config, seed)
        for var, value in zip(
            self.model.weights, fresh.get_weights(), strict=True
        ):
            var.assign(value)
        for var, value in zip(
            self.optimizer.variables, self._optimizer_start, strict=True
        ):
            var.assign(value)

    def mean_gates(self, x) -> np.ndarray | None:
        """`(tasks, num_experts)`: each task's mean gate over `x`."""
        if self.gate_model is None:
            return None
        gates = self.gate_model(x, training=False)
        return np.stack([np.asarray(g).mean(axis=0) for g in gates])

    def fit(self, data: dict, batches: np.ndarray) -> dict:
        """Trains on `batches` (steps, batch) row indices; returns the test
        loss curve (every `eval_every` steps, from step 0) and final
        per-task test losses."""
        c = self.config
        x_test = tf.constant(data["x_test"])
        y_test = tf.constant(data["y_test"])
        curve = [float(tf.reduce_sum(self.task_losses(x_test, y_test)))]
        for start in range(0, c.steps, c.eval_every):
            rows = batches[start : start + c.eval_every]
            self.train_steps(
                tf.constant(data["x_train"][rows]),
                tf.constant(data["y_train"][rows]),
            )
            task = self.task_losses(x_test, y_test).numpy()
            curve.append(float(task.sum()))
        return {"curve": curve, "final_task_losses": task.tolist()}


def batch_order(config: Config, rng) -> np.ndarray:
    """`(steps, batch_size)` row indices: epochs of shuffled rows, one after
    the other (a batch may span two epochs, so every row is seen equally)."""
    batch, n = config.batch_size, config.train_size
    epochs = -(-config.steps * batch // n)
    stream = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return stream[: config.steps * batch].reshape(config.steps, batch)


# === Statistics ===


def summary(values) -> dict:
    """Mean, sample std (ddof=1; 0 for one value), median, min and max."""
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def findings(result: dict) -> dict:
    """The paper's claims, read off the numbers (not asserted)."""
    by_p = result["results"]
    out = {"order_mmoe_le_omoe_le_shared_bottom": {}}
    out["widest_spread"] = {}
    out["mmoe_lower_in_fraction_of_runs"] = {}
    out["paired_difference_over_mmoe"] = {}
    for p, models in by_p.items():
        mean = {k: models[k]["final_loss"]["mean"] for k in models}
        if all(k in mean for k in MODELS):
            out["order_mmoe_le_omoe_le_shared_bottom"][p] = bool(
                mean["mmoe"] <= mean["omoe"] <= mean["shared_bottom"]
            )
        if "mmoe" in mean:
            # Same data and batches per run: compare run by run too.
            mmoe = np.asarray(models["mmoe"]["final_losses"])
            out["mmoe_lower_in_fraction_of_runs"][p] = {}
            out["paired_difference_over_mmoe"][p] = {}
            for k in mean:
                if k == "mmoe":
                    continue
                diff = np.asarray(models[k]["final_losses"]) - mmoe
                out["mmoe_lower_in_fraction_of_runs"][p][k] = float(
                    np.mean(diff > 0)
                )
                # Mean of (model - MMoE) run by run, with its standard error.
                out["paired_difference_over_mmoe"][p][k] = {
                    "mean": float(diff.mean()),
                    "standard_error": float(
                        diff.std(ddof=1) / np.sqrt(diff.size)
                    )
                    if diff.size > 1
                    else 0.0,
                }
        spread = {k: models[k]["final_loss"] for k in models}
        out["widest_spread"][p] = {
            stat: max(spread, key=lambda k, stat=stat: spread[k][stat])
            for stat in ("std", "range")
        }
    gates = result.get("gate_js_divergence", {})
    if gates:
        ps = sorted(gates, key=float)
        means = [gates[p]["mean"] for p in ps]
        out["gate_js_divergence_falls_as_p_rises"] = bool(
            all(a >= b for a, b in zip(means[:-1], means[1:], strict=True))
        )
    return out


# === Experiment ===


def run(config: Config, log=print) -> dict:
    start = time.perf_counter()
    trainers = {kind: Trainer(kind, config) for kind in config.models}
    counts = {k: t.model.count_params() for k, t in trainers.items()}
    log(f"parameters: {counts}")
    per_p = {}
    gate_js = {}
    label_corr = {}
    for p in config.correlations:
        runs = {kind: [] for kind in config.models}
        js = []
        corr = []
        for r in range(config.runs):
            rng, init_seed = run_seeds(config, p, r)
            data = make_data(p, config, rng)
            batches = batch_order(config, rng)
            corr.append(label_correlation(data["y_train"]))
            for kind, trainer in trainers.items():
                trainer.reset(init_seed)
                out = trainer.fit(data, batches)
                runs[kind].append(out)
                gates = trainer.mean_gates(data["x_test"])
                if gates is not None:
                    js.append(
                        gate_diagnostics.js_divergence(gates[0], gates[1])
                    )
            log(
                f"p={p} run {r + 1}/{config.runs}: "
                + ", ".join(f"{k} {runs[k][-1]['curve'][-1]:.4f}" for k in runs)
                + (f", mmoe gate JS {js[-1]:.4f}" if js else "")
                + f" ({time.perf_counter() - start:.0f} s)",
            )
        key = f"{p:g}"
        per_p[key] = {}
        for kind, outs in runs.items():
            final = [o["curve"][-1] for o in outs]
            curves = np.array([o["curve"] for o in outs])
            per_p[key][kind] = {
                "final_loss": {
                    **summary(final),
                    "range": float(np.ptp(final)),
                },
                "final_task_losses_mean": np.mean(
                    [o["final_task_losses"] for o in outs], axis=0
                ).tolist(),
                "final_losses": final,
                "mean_curve": curves.mean(axis=0).tolist(),
            }
        if js:
            gate_js[key] = {**summary(js), "runs": js}
        label_corr[key] = summary(corr)
    result = {
        "command": "python -m benchmarks.synthetic",
        "config": asdict(config),
        "shared_bottom_units": shared_bottom_units(config),
        "parameter_counts": counts,
        "steps": list(range(0, config.steps + 1, config.eval_every)),
        "loss": "test MSE of task 1 + test MSE of task 2",
        "label_correlation": label_corr,
        "results": per_p,
        "gate_js_divergence": gate_js,
        "environment": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "backend": keras.backend.backend(),
            "cpus": os.cpu_count(),
        },
        "wall_seconds": time.perf_counter() - start,
    }
    result["findings"] = findings(result)
    return result


# === Plots ===


def plot(result: dict, output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    by_p = result["results"]
    ps = list(by_p)
    models = list(next(iter(by_p.values())))
    colors = {"mmoe": "C0", "omoe": "C1", "shared_bottom": "C2"}
    runs = result["config"]["runs"]
    paths = []

    fig, axes = plt.subplots(1, len(ps), figsize=(4.2 * len(ps), 3.6))
    for ax, p in zip(np.atleast_1d(axes), ps, strict=True):
        for kind in models:
            ax.plot(
                steps,
                by_p[p][kind]["mean_curve"],
                label=LABELS[kind],
                color=colors[kind],
            )
        # Zoom on the end of training: the start (loss ~10) is off the top.
        finals = [by_p[p][k]["final_loss"]["mean"] for k in models]
        ax.set_ylim(0, 2.5 * max(finals))
        ax.set_title(f"correlation p = {p}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"test loss (mean of {runs} runs)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    paths.append(output / "synthetic_curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(
        len(ps),
        len(models),
        figsize=(3.6 * len(models), 2.6 * len(ps)),
        squeeze=False,
    )
    for row, p in zip(axes, ps, strict=True):
        finals = {k: by_p[p][k]["final_losses"] for k in models}
        everything = np.concatenate(list(finals.values()))
        bins = np.linspace(everything.min(), everything.max(), 21)
        for ax, kind in zip(row, models, strict=True):
            ax.hist(finals[kind], bins=bins, color=colors[kind])
            ax.set_title(f"{LABELS[kind]}, p = {p}", fontsize=9)
            ax.set_xlabel("final test loss", fontsize=8)
        row[0].set_ylabel("runs")
    fig.tight_layout()
    paths.append(output / "synthetic_histograms.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    gates = result["gate_js_divergence"]
    if gates:
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        xs = [float(p) for p in gates]
        rng = np.random.default_rng(0)
        for x, p in zip(xs, gates, strict=True):
            per_run = gates[p]["runs"]
            jitter = rng.uniform(-0.008, 0.008, size=len(per_run))
            ax.scatter(x + jitter, per_run, s=8, color="0.6", zorder=1)
        ax.errorbar(
            xs,
            [gates[p]["mean"] for p in gates],
            yerr=[gates[p]["std"] for p in gates],
            fmt="o-",
            color="C0",
            capsize=4,
            zorder=2,
            label="mean ± std",
        )
        ax.set_xlabel("task correlation p")
        ax.set_ylabel("JS divergence of mean gates (nats)")
        ax.set_title("MMoE: task 1 vs task 2 gates")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths.append(output / "synthetic_gates.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def format_table(result: dict) -> str:
    lines = [
        f"{'p':>4}  {'model':<14}"
        + "".join(f"{h:>8}" for h in ("mean", "std", "median", "min", "max"))
    ]
    for p, models in result["results"].items():
        for kind, row in models.items():
            s = row["final_loss"]
            lines.append(
                f"{p:>4}  {LABELS[kind]:<14}{s['mean']:>8.4f}"
                f"{s['std']:>8.4f}{s['median']:>8.4f}{s['min']:>8.4f}"
                f"{s['max']:>8.4f}"
            )
    for p, s in result["gate_js_divergence"].items():
        lines.append(f"p={p}: MMoE gate JS {s['mean']:.4f} ± {s['std']:.4f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Config()
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-size", type=int, default=defaults.train_size)
    parser.add_argument("--test-size", type=int, default=defaults.test_size)
    parser.add_argument(
        "--correlations",
        type=float,
        nargs="+",
        default=list(defaults.correlations),
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS)
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory"
    )
    args = parser.parse_args(argv)
    for name in ("runs", "steps", "eval_every", "batch_size", "train_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.steps % args.eval_every:
        parser.error("--steps must be a multiple of --eval-every")
    config = replace(
        defaults,
        runs=args.runs,
        steps=args.steps,
        eval_every=args.eval_every,
        batch_size=args.batch_size,
        train_size=args.train_size,
        test_size=args.test_size,
        correlations=tuple(args.correlations),
        seed=args.seed,
        models=tuple(args.models),
    )
    result = run(config)
    print(format_table(result))
    print(json.dumps(result["findings"], indent=1))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "synthetic.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )
    for path in plot(result, args.output):
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
