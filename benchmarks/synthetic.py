"""The MMoE paper's synthetic experiment: task correlation vs. model.

    python -m benchmarks.synthetic [--runs 100] [--output DIR]
    python -m benchmarks.synthetic --correlations 0.5 \\
        --sweep train_size=5000,10000,20000 [--runs 100] [--output DIR]

Reruns Ma et al., "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts" (KDD 2018), section 3.2 and Figures 4-5.

Data. Unit vectors `u1 ⟂ u2` in `R^d` (random orthogonal, fresh every run),
`w1 = c u1`, `w2 = c (p u1 + sqrt(1 - p^2) u2)` so that `cos(w1, w2) = p`,
the task correlation; `x ~ N(0, I_d)` and

    y_k = w_k·x + sum_{i=1..m} sin(alpha_i w_k·x + beta_i) + eps_k,

with `eps_k ~ N(0, 0.01)` (variance 0.01: noise std 0.1, so the loss floor
of the two tasks together is 0.02). Google Research's generator for this
data (google-research, dselect_k_moe/synthetic_data.py) notes that the paper
gives no values for `alpha_i, beta_i` and uses fixed sequences for them.
With `sines="fixed"` (the default) they are drawn once, `alpha_i, beta_i ~
N(0, 1)` from `sine_seed`, and shared by every run and every `p`: runs then
differ only by the rotation `u1, u2` (which leaves the distribution of
`(w1·x, w2·x)` unchanged, `x` being isotropic), the sampled rows, the
initialization and the batch order, the randomness the paper's trainability
claim is about. `sines="per_run"` redraws them from the run's seed (a new
target function, easy or hard, every run). `sines="per_task"` draws them
once like `"fixed"` but separately for each task, `alpha_ki, beta_ki`:
the tasks then share no nonlinearity either, so at `p = 0` they share
nothing at all (with the paper's common sines, two tasks at `p = 0` still
share the shape of `g(z) = z + sum sin(alpha_i z + beta_i)`, which a model
can learn from both tasks' rows). `d = 100`, `c = 1`, `m = 10`
and the noise are the values this experiment attributes to the paper; the
row counts are not known from it: 10,000 training, 1,000 validation and
1,000 test rows per run (`--sweep train_size=...` shows what the training
size does).

Correlations. The paper's `p` in {0.5, 0.9, 1.0}, and `p = 0` as the
negative-transfer point: the same generator at `cos(w1, w2) = 0` gives
uncorrelated labels (the mean label correlation is in the JSON), the least
related pair of tasks it can produce. Negative `p` is not a default: the
label correlation turns negative, which a task tower can undo with a sign,
so it mixes less relatedness with a sign flip; `--correlations` accepts any
`p` in [-1, 1].

Models: MMoE and OMoE (8 experts of 16 ReLU units; OMoE has one gate shared
by both tasks) and Shared-Bottom, whose one hidden layer is as wide as makes
its parameter count closest to MMoE's: the multi-task models. Single-task
(`single_task`), the reference for negative transfer (at `p = 0` above
all): two independent networks, one per task, each a hidden ReLU layer as
wide as Shared-Bottom's followed by that task's tower; it is trained as one
model on the summed loss, but with early stopping each task stops on its
own validation loss and reports its test loss at its own best evaluation,
as two separately trained networks would (no parameter is shared, and Adam
is per parameter, so the tasks do not interact). Every task tower is
`Dense(8, relu)` and a linear `Dense(1)` (`--num-experts`,
`--expert-units` and `--tower-units` change the sizes; Shared-Bottom's
width follows MMoE's parameter count). Adam, loss = sum of the two
tasks' MSE. All models of one run train on the same data, in the same batch
order, from the same seed.

Negative transfer. `task_scales` multiplies each task's label (its noise
included), so the summed training loss weighs task `k` by
`task_scales[k]**2`: with `--task-scales 10 1` the first task's gradient
dominates every shared parameter, as a task with a larger loss does in a
real model. Each task's test MSE is also reported on its unscaled label
(`task_losses`), and for the multi-task models, run by run, minus the
single-task model's (`task_paired_vs_single_task`; positive: sharing cost
that task loss). `findings["negative_transfer"]` marks a task where that
difference is above twice its standard error.

Training length (`stopping`):

- `"early"` (default): every run holds out `validation_size` rows of its
  own, drawn like the training and test rows and separate from both. Every
  `eval_every` steps the validation and test losses are measured; training
  stops when the validation loss has not improved (strictly) for
  `patience` evaluations, or at `max_steps`, and the weights of the best
  validation loss are restored. The reported test loss is that of the
  restored weights. Each model stops on its own validation loss: nothing
  about the other models or the test set enters. `patience = 10` (2,500
  steps) and `max_steps = 30,000` were set from validation losses alone:
  replayed on the validation curves of a 30,000-step fixed-steps pilot (2
  runs at p = 0 and 0.5, 12 curves), patience 10 stops at a median of
  17,750 steps with a validation loss a median 0.8 % (at most 4.3 %) above
  the lowest of the whole curve; patience 5 leaves 3.3 % (at most 16 %).
  Most of those curves were still falling at 30,000 steps, so the cap binds
  for some runs (their share is in the JSON); it bounds the cost.
- `"fixed"`: `steps` steps, test loss at the last step. The validation
  loss is still measured and saved per run, so `patience_replay` in the
  JSON shows what each patience would have stopped at, from validation
  losses only; and `by_training_length` gives the statistics of the test
  loss at `TRAINING_LENGTHS` steps, which is what runs of that many steps
  report (one 30,000-step run is the training-length sensitivity table).

Failure to train (the paper's Figure 5 trainability claim), two criteria
fixed before the full measurement, the same for every model, so neither
depends on the ranking. A run of a model

- "fails to train" when its final test loss is not below that of a
  least-squares linear regression with intercept fit on the same training
  rows (`linear_test_loss`): it learned nothing a linear fit does not;
- is "far above typical" when its final test loss is more than
  `TYPICAL_FACTOR` = 2 times the typical loss at its `p`, the median final
  test loss of all runs of the multi-task models run at that `p`: it ended
  at more than double what training usually reaches there. `single_task`
  does not enter the typical loss (unless it is the only model run; the
  JSON's `typical_loss_models` names the models pooled), so running it or
  not changes no other model's failure counts. (With hard sine terms the
  linear fit is far above every trained model, so the first criterion alone
  misses runs stuck well above the others; in the pilot one OMoE run ended
  at ten times the other runs' losses and below half the linear fit's.)

Every run's ratio to the linear loss and the typical loss per `p` are
saved, so any other threshold can be read off.

For each correlation `p`, `runs` runs (fresh rotation, rows and
initialization, seeded from the run index). Writes to `--output` (default
benchmarks/results):

- `synthetic.json`: config, parameter counts, the sine parameters, per `p`
  the linear-regression loss and label correlation, per `p` and model the
  final test loss (n, mean, std, standard error, median, min, max, every
  run), the paired difference to MMoE (mean ± standard error, median, runs
  where MMoE is lower) and, for the multi-task models when `single_task`
  ran, to the single-task model (positive: sharing cost loss), failure
  counts and shares, steps trained and the mean and median Figure 4 curves
  (early stopping: at each step the test loss of the lowest-validation
  weights so far, the reported value once a run has stopped; fixed steps:
  the test loss), MMoE's gate divergence per run, training seconds per
  model and per run (the models' sum);
- `synthetic_curves.png` (Figure 4), `synthetic_histograms.png` (Figure 5),
  `synthetic_gates.png` (gate divergence vs. `p`).

`--sweep NAME=V1,V2,...` runs the whole experiment once per value of one
setting (`SWEEPABLE`) and writes `synthetic_sweep_NAME.json` and
`synthetic_sweep_NAME.png` instead: per value the statistics above without
the curves, to show how the ranking moves with that setting.

Resuming. A run's data, batch order and initialization are a function of
the configuration, `p` and the run index alone (`run_seeds`), so each
model's run is a unit of its own. As each finishes, its record (what
`Trainer.fit` returns, the run's linear-fit loss and label correlation,
MMoE's gate divergence, its seconds) is appended as one JSON line to
`synthetic_runs.jsonl` in the output directory, keyed by the
configuration's fingerprint (a hash of every `Config` field but `runs`,
`correlations` and `models`, and of `RECORD_VERSION`), `p`, the run index
and the model (and a model's own record version, `MODEL_RECORD_VERSION`).
On start, the records of the same key are read back
instead of trained; lines of other fingerprints stay in the file, unused,
and a line cut short by a kill is skipped. A killed run restarted with the
same command therefore ends with the JSON and plots an uninterrupted run
writes, except the times: `checkpoint` in the JSON counts the records read
back and trained, the timing is each record's own, `wall_seconds` this
process's. Sweeps share the file (each value has its fingerprint). More
runs, another `p` or another model reuse the runs already recorded: e.g.
adding `single_task` to a finished run trains only it, on the same data
and seeds, so its paired differences are as valid as in one go. For new
measurements of the same configuration, use another output directory.

Training runs as XLA-compiled `tf.function`s, `eval_every` steps per call;
each model is built and traced once per configuration and re-initialized
between runs (fresh weights from a model built under the run's seed, Adam's
slots reset), so a run costs no retracing.
"""

import argparse
import hashlib
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

from benchmarks import jsonl  # noqa: E402
from keras_mmoe import (  # noqa: E402
    MMoE,
    OMoE,
    SharedBottom,
    gate_diagnostics,
)

RESULTS = Path(__file__).resolve().parent / "results"
# The paper's three models, which share parameters between the tasks.
MULTI_TASK = ("mmoe", "omoe", "shared_bottom")
MODELS = (*MULTI_TASK, "single_task")
LABELS = {
    "mmoe": "MMoE",
    "omoe": "OMoE",
    "shared_bottom": "Shared-Bottom",
    "single_task": "Single-task",
}
SHORT = {"omoe": "OMoE", "shared_bottom": "SB", "single_task": "ST"}
COLORS = {
    "mmoe": "C0",
    "omoe": "C1",
    "shared_bottom": "C2",
    "single_task": "C3",
}
NUM_TASKS = 2
# Failure criteria (see the module docstring).
FAILURE_CRITERIA = {
    "fails_to_train": "final test loss >= the linear regression's",
    "far_above_typical": "final test loss > 2 x the typical loss at this p: "
    "the median final test loss of all runs of the multi-task models run "
    "(MMoE, OMoE, Shared-Bottom; single_task enters only when it is the "
    "only model run)",
}
# Checkpoint file in the output directory: one JSON line per model and run.
CHECKPOINT = "synthetic_runs.jsonl"
# Part of the fingerprint: raised when a change to the code changes a run's
# numbers, so that records of the older code are no longer read back.
RECORD_VERSION = 1
# A model's record version where its training changed on its own: records
# of another version are trained again (single_task: each task stopped on
# its own validation loss; version 1, absent from the record, stopped both
# on their sum).
MODEL_RECORD_VERSION = {"single_task": 2}
# The Config fields that choose which runs are made, not their numbers.
NOT_FINGERPRINTED = ("runs", "correlations", "models")
# Fields added after runs were recorded: left out of the fingerprint at
# these values, so that the records made before they existed still match.
ADDED_FIELDS = {"task_scales": (1.0, 1.0)}
TYPICAL_FACTOR = 2.0
# Fixed steps: the steps at which `by_training_length` reads the test loss
# (besides the last).
TRAINING_LENGTHS = (2_500, 5_000, 10_000, 20_000, 30_000)
# Stream of the shared sine parameters, apart from every run's stream.
SINE_STREAM = 7_919


@dataclass
class Config:
    correlations: tuple = (0.0, 0.5, 0.9, 1.0)
    runs: int = 100
    # Data (paper, section 3.2: d, c, m, the noise).
    input_dim: int = 100
    scale: float = 1.0  # c
    num_sines: int = 10  # m
    noise_std: float = 0.1  # eps ~ N(0, 0.01)
    sines: str = "fixed"  # or "per_run", "per_task"
    sine_seed: int = 0
    task_scales: tuple = (1.0, 1.0)  # each task's label times this
    train_size: int = 10_000
    validation_size: int = 1_000
    test_size: int = 1_000
    # Models (the paper's synthetic experiment).
    num_experts: int = 8
    expert_units: int = 16
    tower_units: int = 8
    # Training.
    batch_size: int = 128
    learning_rate: float = 1e-3
    stopping: str = "early"  # or "fixed"
    eval_every: int = 250
    patience: int = 10  # evaluations without a lower validation loss
    max_steps: int = 30_000  # early stopping's cap
    steps: int = 10_000  # "fixed": 128 epochs of 10,000 rows at batch 128
    seed: int = 0
    models: tuple = field(default=MODELS)


SWEEPABLE = {
    "train_size": int,
    "validation_size": int,
    "batch_size": int,
    "learning_rate": float,
    "patience": int,
    "max_steps": int,
    "steps": int,
    "sines": str,
    "sine_seed": int,
}


def step_budget(config: Config) -> int:
    """Steps a run may train: `max_steps` (early) or `steps` (fixed)."""
    return config.max_steps if config.stopping == "early" else config.steps


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


def sine_parameters(config: Config, rng=None):
    """`(alpha, beta)`, each `(m,)` values from N(0, 1) (`(tasks, m)` for
    `sines="per_task"`): from `sine_seed` when `sines` is `"fixed"` or
    `"per_task"` (the same for every run), else from `rng`."""
    shape = config.num_sines
    if config.sines in ("fixed", "per_task"):
        rng = np.random.default_rng(
            np.random.SeedSequence([config.sine_seed, SINE_STREAM])
        )
        if config.sines == "per_task":
            shape = (NUM_TASKS, config.num_sines)
    elif config.sines != "per_run":
        raise ValueError(
            "sines expected 'fixed', 'per_run' or 'per_task'. "
            f"Received: {config.sines}"
        )
    alpha = rng.normal(size=shape)
    beta = rng.normal(size=shape)
    return alpha, beta


def make_data(correlation: float, config: Config, rng) -> dict:
    """One run's test, validation and training sets (drawn in that order,
    so the test and validation rows do not depend on `train_size` and a
    smaller training set is the start of a larger one): `x (n, d)`,
    `y (n, 2)`, float32."""
    w = task_weights(correlation, config.input_dim, config.scale, rng)
    alpha, beta = sine_parameters(config, rng)

    def sample(n):
        # One draw per row, features then the tasks' noise: the first rows
        # of a larger sample are a smaller sample.
        draw = rng.normal(size=(n, config.input_dim + NUM_TASKS))
        x, noise = draw[:, : config.input_dim], draw[:, config.input_dim :]
        z = x @ w.T  # (n, tasks)
        # alpha, beta: (m,) or (tasks, m), against z[..., None] (n, tasks, 1).
        sines = np.sin(alpha * z[..., None] + beta).sum(axis=-1)
        y = z + sines + config.noise_std * noise
        y = y * np.asarray(config.task_scales, dtype=float)
        return x.astype("float32"), y.astype("float32")

    x_test, y_test = sample(config.test_size)
    x_val, y_val = sample(config.validation_size)
    x_train, y_train = sample(config.train_size)
    return {
        "w": w,
        "alpha": alpha,
        "beta": beta,
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val,
        "y_val": y_val,
        "x_test": x_test,
        "y_test": y_test,
    }


def label_correlation(y: np.ndarray) -> float:
    """Pearson correlation of the two tasks' labels."""
    return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])


def linear_test_loss(data: dict) -> dict:
    """Least squares with intercept on the training rows, both tasks:
    `{"task_losses": [test MSE per task], "loss": their sum}`."""

    def design(x):
        return np.column_stack([x.astype(float), np.ones(len(x))])

    coef, *_ = np.linalg.lstsq(
        design(data["x_train"]), data["y_train"].astype(float), rcond=None
    )
    residual = design(data["x_test"]) @ coef - data["y_test"]
    task = np.mean(residual**2, axis=0)
    return {"task_losses": task.tolist(), "loss": float(task.sum())}


def run_seeds(config: Config, correlation: float, run: int):
    """(numpy Generator of the data and batch order, int init seed)."""
    seq = np.random.SeedSequence(
        [config.seed, run, round(correlation * 1000) % 2**32]
    )
    data_seq, init_seq = seq.spawn(2)
    return np.random.default_rng(data_seq), int(
        init_seq.generate_state(1)[0] % (2**31 - 1)
    )


def batch_order(config: Config, rng) -> np.ndarray:
    """`(step_budget, batch_size)` row indices: epochs of shuffled rows, one
    after the other (a batch may span two epochs, so every row is seen
    equally)."""
    batch, n = config.batch_size, config.train_size
    steps = step_budget(config)
    epochs = -(-steps * batch // n)
    stream = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return stream[: steps * batch].reshape(steps, batch).astype("int32")


# === Models ===


def dense_params(fan_in: int, units: int) -> int:
    return fan_in * units + units


def parameter_count(kind: str, config: Config, bottom_units: int = 0) -> int:
    """Trainable parameters of a model, by formula (checked by the test).
    `bottom_units`: the width of Shared-Bottom's bottom, which is also that
    of each single-task network's hidden layer."""
    d, e, u = config.input_dim, config.num_experts, config.expert_units

    def towers(fan_in):
        t = config.tower_units
        return NUM_TASKS * (dense_params(fan_in, t) + dense_params(t, 1))

    if kind == "shared_bottom":
        return dense_params(d, bottom_units) + towers(bottom_units)
    if kind == "single_task":
        # One hidden layer per task, then that task's tower.
        return NUM_TASKS * dense_params(d, bottom_units) + towers(bottom_units)
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
    the tasks' gate weights `(batch, num_experts)`. `single_task` is two
    networks in one model, no weight shared: per task a hidden ReLU layer as
    wide as Shared-Bottom's bottom, then the task's tower."""
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
    elif kind == "single_task":
        units = shared_bottom_units(config)
        features = [
            keras.layers.Dense(units, activation="relu", name=f"hidden_{k}")(
                inputs
            )
            for k in range(NUM_TASKS)
        ]
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


def early_stopping_update(val, best: int, patience: int) -> tuple:
    """After the latest validation loss `val[-1]`: `(best, stop)`, the
    index of the lowest loss so far (a later one only if strictly lower)
    and whether `patience` evaluations have passed since it."""
    latest = len(val) - 1
    if val[latest] < val[best]:
        return latest, False
    return best, latest - best >= patience


def per_task_stopping(val_tasks, best: list, patience: int) -> tuple:
    """`early_stopping_update` on each task's own validation losses
    (`val_tasks`: one `(tasks,)` row per evaluation): `(best, stop)`, each
    task's best index and whether every task has passed `patience`."""
    updates = [
        early_stopping_update([v[k] for v in val_tasks], b, patience)
        for k, b in enumerate(best)
    ]
    return [b for b, _ in updates], all(stop for _, stop in updates)


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
            # (tasks,): each task's MSE.
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
        self.set_weights(fresh.get_weights())
        for var, value in zip(
            self.optimizer.variables, self._optimizer_start, strict=True
        ):
            var.assign(value)

    def get_weights(self) -> list:
        return [v.numpy() for v in self.model.weights]

    def set_weights(self, values) -> None:
        for var, value in zip(self.model.weights, values, strict=True):
            var.assign(value)

    def mean_gates(self, x) -> np.ndarray | None:
        """`(tasks, num_experts)`: each task's mean gate over `x`."""
        if self.gate_model is None:
            return None
        gates = self.gate_model(x, training=False)
        return np.stack([np.asarray(g).mean(axis=0) for g in gates])

    def fit(self, data: dict, batches: np.ndarray) -> dict:
        """Trains on `batches` (steps, batch) row indices, `eval_every` steps
        at a time, measuring the validation and test losses (sum of the
        tasks) from step 0 on. Early stopping: stops after `patience`
        evaluations without a strictly lower validation loss and restores
        the weights of the lowest one. Returns the curves, the steps
        trained, the step of the reported weights and their test losses.

        `single_task` stops each task on its own validation loss, as two
        separately trained networks would: training goes on until every
        task has passed `patience` evaluations without a lower loss of its
        own, and each task reports its test loss at its own best
        evaluation (`task_best_steps`); its networks share no weight, so
        that loss is the one of its weights at that evaluation."""
        c = self.config
        x_val, y_val = tf.constant(data["x_val"]), tf.constant(data["y_val"])
        x_test = tf.constant(data["x_test"])
        y_test = tf.constant(data["y_test"])
        early = c.stopping == "early"
        per_task = early and self.kind == "single_task"
        # Per evaluation: each task's validation and test loss.
        val_tasks = [self.task_losses(x_val, y_val).numpy()]
        test_tasks = [self.task_losses(x_test, y_test).numpy()]
        val = [float(val_tasks[0].sum())]
        test = [float(test_tasks[0].sum())]
        best, best_weights = 0, self.get_weights() if early else None
        task_best = [0] * NUM_TASKS
        for start in range(0, len(batches), c.eval_every):
            rows = batches[start : start + c.eval_every]
            self.train_steps(
                tf.constant(data["x_train"][rows]),
                tf.constant(data["y_train"][rows]),
            )
            val_tasks.append(self.task_losses(x_val, y_val).numpy())
            test_tasks.append(self.task_losses(x_test, y_test).numpy())
            val.append(float(val_tasks[-1].sum()))
            test.append(float(test_tasks[-1].sum()))
            if not early:
                continue
            if per_task:
                task_best, stop = per_task_stopping(
                    val_tasks, task_best, c.patience
                )
                if stop:
                    break
                continue
            improved, stop = early_stopping_update(val, best, c.patience)
            if improved != best:
                best, best_weights = improved, self.get_weights()
            if stop:
                break
        if per_task:
            task = np.array([test_tasks[b][k] for k, b in enumerate(task_best)])
            final_validation = float(
                sum(val_tasks[b][k] for k, b in enumerate(task_best))
            )
            best = max(task_best)
        else:
            if early:
                self.set_weights(best_weights)
            else:
                best = len(val) - 1
            task = self.task_losses(x_test, y_test).numpy()
            final_validation = val[best]
        out = {
            "validation_curve": val,
            "test_curve": test,
            "steps_trained": (len(val) - 1) * c.eval_every,
            "best_step": best * c.eval_every,
            "final_task_losses": task.tolist(),
            "final_loss": float(task.sum()),
            "final_validation_loss": final_validation,
        }
        if per_task:
            out["task_best_steps"] = [b * c.eval_every for b in task_best]
            out["task_validation_curves"] = np.array(val_tasks).tolist()
            out["task_test_curves"] = np.array(test_tasks).tolist()
        if self.kind in MODEL_RECORD_VERSION:
            # Under any stopping, so that `Checkpoint` reads it back.
            out["model_version"] = MODEL_RECORD_VERSION[self.kind]
        return out


def reported_curve(out: dict, config: Config, length: int) -> np.ndarray:
    """Figure 4's curve of one run, one value per evaluation up to
    `length`: early stopping's test loss of the lowest-validation weights
    so far (what would be reported had training stopped there), carried
    on at the reported value after the run stopped; fixed steps: the test
    loss as measured. A record with per-task stopping (`task_best_steps`)
    sums each task's test loss at its own lowest validation loss so far."""
    test = np.asarray(out["test_curve"])
    if "task_best_steps" in out:
        val = np.asarray(out["task_validation_curves"])  # (evals, tasks)
        tasks = np.asarray(out["task_test_curves"])
        tasks_so_far = [
            [
                tasks[int(np.argmin(val[: i + 1, k])), k]
                for k in range(val.shape[1])
            ]
            for i in range(len(val))
        ]
        test = np.sum(tasks_so_far, axis=1)
    elif config.stopping == "early":
        val = np.asarray(out["validation_curve"])
        best = [int(np.argmin(val[: i + 1])) for i in range(len(val))]
        test = test[best]
    curve = np.full(length, out["final_loss"])
    curve[: len(test)] = test
    return curve


def patience_replay(validation_curves, patiences, eval_every: int) -> dict:
    """From validation curves measured for a fixed number of steps, what
    early stopping with each patience would do: the median step it stops at
    and its validation loss over the lowest of the whole curve (median and
    max), and the share of runs where it keeps that lowest one."""
    out = {}
    for patience in patiences:
        stops, gaps = [], []
        for val in validation_curves:
            val = np.asarray(val)
            best, stop = 0, len(val) - 1
            for i in range(1, len(val)):
                best, stopped = early_stopping_update(
                    val[: i + 1], best, patience
                )
                if stopped:
                    stop = i
                    break
            stops.append(stop * eval_every)
            gaps.append(val[best] / val.min() - 1.0)
        out[str(patience)] = {
            "median_stop_step": float(np.median(stops)),
            "median_relative_gap": float(np.median(gaps)),
            "max_relative_gap": float(np.max(gaps)),
            "share_at_lowest": float(np.mean(np.asarray(gaps) == 0.0)),
        }
    return out


# === Statistics ===


def summary(values) -> dict:
    """n, mean, sample std (ddof=1; 0 for one value), its standard error,
    median, min and max."""
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": std,
        "standard_error": std / math.sqrt(v.size),
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def paired_difference(losses, reference, lower: str = "mmoe_lower") -> dict:
    """Run by run `losses - reference` (MMoE's losses, or the single-task
    model's): mean, standard error, median, and the runs where the
    reference is lower (`lower`, of `n`)."""
    diff = np.asarray(losses, float) - np.asarray(reference, float)
    s = summary(diff)
    return {
        "mean": s["mean"],
        "standard_error": s["standard_error"],
        "median": s["median"],
        lower: int(np.sum(diff > 0)),
        "n": s["n"],
    }


def task_rows(runs: dict, task_scales) -> dict:
    """Per model, each task's final test MSE on the unscaled label (the
    scaled MSE over `task_scales[k]**2`) as `task_losses`, and for the
    multi-task models, when single_task ran, each task's paired difference
    to it as `task_paired_vs_single_task` (positive: sharing cost that task
    loss, i.e. negative transfer)."""
    scales = np.asarray(task_scales, dtype=float) ** 2
    losses = {
        kind: np.array([o["final_task_losses"] for o in outs]) / scales
        for kind, outs in runs.items()
    }
    out = {}
    for kind, values in losses.items():
        row = {"task_losses": [summary(v) for v in values.T]}
        if kind in MULTI_TASK and "single_task" in losses:
            row["task_paired_vs_single_task"] = [
                paired_difference(v, ref, lower="single_task_lower")
                for v, ref in zip(
                    values.T, losses["single_task"].T, strict=True
                )
            ]
        out[kind] = row
    return out


def paired_rows(losses: dict) -> dict:
    """`losses`: model -> its losses, run by run. Per model, the paired
    differences: `paired_vs_mmoe` for every other model (when MMoE ran),
    `paired_vs_single_task` for the multi-task models (when single_task
    ran; positive: the shared parameters cost that model loss)."""
    out = {kind: {} for kind in losses}
    for kind, values in losses.items():
        if kind != "mmoe" and "mmoe" in losses:
            out[kind]["paired_vs_mmoe"] = paired_difference(
                values, losses["mmoe"]
            )
        if kind in MULTI_TASK and "single_task" in losses:
            out[kind]["paired_vs_single_task"] = paired_difference(
                values, losses["single_task"], lower="single_task_lower"
            )
    return out


def typical_models(models) -> list:
    """The models whose runs the typical loss pools: the multi-task ones
    run, or every model run when none of them is."""
    return [k for k in models if k in MULTI_TASK] or list(models)


def failures(losses, linear_losses, typical: float) -> dict:
    """Per criterion of `FAILURE_CRITERIA`: the runs whose loss is at least
    the linear regression's (`fails_to_train`) or above `TYPICAL_FACTOR`
    times `typical` (`far_above_typical`): count, n, share and the share's
    binomial standard error."""
    losses = np.asarray(losses, float)
    failed = {
        "fails_to_train": losses >= np.asarray(linear_losses, float),
        "far_above_typical": losses > TYPICAL_FACTOR * typical,
    }
    out = {}
    for name, runs in failed.items():
        share = float(runs.mean())
        out[name] = {
            "count": int(runs.sum()),
            "n": int(runs.size),
            "share": share,
            "standard_error": math.sqrt(share * (1 - share) / runs.size),
        }
    return out


def by_training_length(test_curves: dict, checkpoints, eval_every) -> dict:
    """Fixed steps: per checkpoint step and model, the test loss the runs
    had at that step, which is what a run of that many steps reports (same
    data, batches and initialization; Adam's steps do not depend on the
    total). `test_curves`: model -> one test curve per run, from step 0
    every `eval_every` steps. Per step and model: the loss summary, the
    paired differences (`paired_rows`), and whether MMoE <= OMoE <=
    Shared-Bottom holds by mean and by median."""
    out = {}
    for step in checkpoints:
        i = step // eval_every
        losses = {
            k: [c[i] for c in curves] for k, curves in test_curves.items()
        }
        paired = paired_rows(losses)
        row = {
            kind: {"final_loss": summary(values), **paired[kind]}
            for kind, values in losses.items()
        }
        if all(k in row for k in MULTI_TASK):
            row["order_mmoe_le_omoe_le_shared_bottom"] = {
                stat: bool(
                    row["mmoe"]["final_loss"][stat]
                    <= row["omoe"]["final_loss"][stat]
                    <= row["shared_bottom"]["final_loss"][stat]
                )
                for stat in ("mean", "median")
            }
        out[str(step)] = row
    return out


def findings(result: dict) -> dict:
    """The paper's claims, read off the numbers (not asserted)."""
    by_p = result["results"]
    out = {
        "order_mmoe_le_omoe_le_shared_bottom": {"mean": {}, "median": {}},
        "paired_difference_over_mmoe": {},
        "mmoe_lower_in_fraction_of_runs": {},
        "paired_difference_over_single_task": {},
        "fails_to_train_share": {},
        "far_above_typical_share": {},
        "widest_spread": {},
        "negative_transfer": {},
    }
    for p, models in by_p.items():
        stats = {k: models[k]["final_loss"] for k in models}
        if all(k in stats for k in MULTI_TASK):
            for stat in ("mean", "median"):
                order = out["order_mmoe_le_omoe_le_shared_bottom"][stat]
                order[p] = bool(
                    stats["mmoe"][stat]
                    <= stats["omoe"][stat]
                    <= stats["shared_bottom"][stat]
                )
        for reference in ("mmoe", "single_task"):
            key = f"paired_vs_{reference}"
            paired = {k: m[key] for k, m in models.items() if key in m}
            if not paired:
                continue
            out[f"paired_difference_over_{reference}"][p] = {
                k: {"mean": v["mean"], "standard_error": v["standard_error"]}
                for k, v in paired.items()
            }
            if reference == "mmoe":
                out["mmoe_lower_in_fraction_of_runs"][p] = {
                    k: v["mmoe_lower"] / v["n"] for k, v in paired.items()
                }
        for name in FAILURE_CRITERIA:
            out[f"{name}_share"][p] = {
                k: m["failures"][name]["share"] for k, m in models.items()
            }
        transfer = {
            k: [
                {
                    "mean": d["mean"],
                    "standard_error": d["standard_error"],
                    "worse_than_single_task": d["mean"]
                    > 2 * d["standard_error"],
                }
                for d in m["task_paired_vs_single_task"]
            ]
            for k, m in models.items()
            if "task_paired_vs_single_task" in m
        }
        if transfer:
            out["negative_transfer"][p] = transfer
        out["widest_spread"][p] = {
            "std": max(stats, key=lambda k: stats[k]["std"]),
            "range": max(
                stats, key=lambda k: stats[k]["max"] - stats[k]["min"]
            ),
        }
    gates = result.get("gate_js_divergence", {})
    if len(gates) > 1:
        ps = sorted(gates, key=float)
        means = [gates[p]["mean"] for p in ps]
        out["gate_js_divergence_falls_as_p_rises"] = bool(
            all(a >= b for a, b in zip(means[:-1], means[1:], strict=True))
        )
    return out


# === Experiment ===


def fingerprint(config: Config) -> str:
    """Hash of every Config field that changes a run's numbers (all but
    `NOT_FINGERPRINTED`) and `RECORD_VERSION`."""
    fields = {
        k: v
        for k, v in asdict(config).items()
        if k not in NOT_FINGERPRINTED
        and not (k in ADDED_FIELDS and tuple(v) == ADDED_FIELDS[k])
    }
    text = json.dumps({"version": RECORD_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoint:
    """Run records in `path`, one JSON line per (p, run index, model),
    appended as each model's run finishes. Reads back the records of
    `config`'s fingerprint; other lines (other configurations, a line cut
    short by a kill) are skipped and stay in the file."""

    def __init__(self, path: Path, config: Config):
        self.path = Path(path)
        self.fingerprint = fingerprint(config)
        self.records = {}
        for record in jsonl.read(self.path):
            try:
                key = self.key(record["p"], record["run"], record["model"])
            except (ValueError, KeyError, TypeError):
                continue
            version = MODEL_RECORD_VERSION.get(record["model"], 1)
            if (
                record.get("fingerprint") == self.fingerprint
                and record.get("model_version", 1) == version
            ):
                self.records.setdefault(key, record)

    @staticmethod
    def key(p, run, kind) -> tuple:
        return float(p), int(run), str(kind)

    def get(self, p, run, kind) -> dict | None:
        return self.records.get(self.key(p, run, kind))

    def append(self, record: dict) -> None:
        jsonl.append(self.path, record)
        self.records[self.key(record["p"], record["run"], record["model"])] = (
            record
        )


def train_run(config: Config, p: float, r: int, trainers: dict):
    """Run `r` at `p` of the models in `trainers` (the same data, batch
    order and initialization seed for each). Yields `(model, record)` as
    each model finishes; the record: `Trainer.fit`'s output, the run's
    linear-fit loss and label correlation, MMoE's gate JS divergence (else
    None) and the model's seconds."""
    rng, init_seed = run_seeds(config, p, r)
    data = make_data(p, config, rng)
    batches = batch_order(config, rng)
    shared = {
        "linear_loss": linear_test_loss(data)["loss"],
        "label_correlation": label_correlation(data["y_train"]),
    }
    for kind, trainer in trainers.items():
        t0 = time.perf_counter()
        trainer.reset(init_seed)
        out = trainer.fit(data, batches)
        gates = trainer.mean_gates(data["x_test"])
        yield (
            kind,
            {
                "p": p,
                "run": r,
                "model": kind,
                **out,
                **shared,
                "gate_js": (
                    None
                    if gates is None
                    else float(
                        gate_diagnostics.js_divergence(gates[0], gates[1])
                    )
                ),
                "seconds": time.perf_counter() - t0,
            },
        )


def run(
    config: Config,
    log=print,
    checkpoint: Path | None = None,
    train: bool = True,
) -> dict:
    """The experiment. `checkpoint`: a `Checkpoint` file; each model's run
    found there is read back, each other one appended once trained. With
    `train=False` nothing trains: each `p` reports the models with a
    recorded run 0 there, their runs from 0 up to the first one missing
    for any of them (a `p` without any is left out)."""
    start = time.perf_counter()
    trainers = {kind: Trainer(kind, config) for kind in config.models}
    counts = {k: t.model.count_params() for k, t in trainers.items()}
    log(f"parameters: {counts}")
    store = Checkpoint(checkpoint, config) if checkpoint else None
    if store:
        log(
            f"checkpoint {store.path}: {len(store.records)} records of this "
            f"configuration ({store.fingerprint})"
        )
    read_back = 0
    budget = step_budget(config)
    length = budget // config.eval_every + 1
    seconds = dict.fromkeys(config.models, 0.0)
    steps_done = dict.fromkeys(config.models, 0)
    runs_done = dict.fromkeys(config.models, 0)
    per_p, gate_js, label_corr, linear, typical = {}, {}, {}, {}, {}
    lengths = {}
    run_seconds = []
    pooled = typical_models(config.models)
    for p in config.correlations:
        models = config.models
        if store and not train:
            models = [k for k in models if store.get(p, 0, k) is not None]
        runs = {kind: [] for kind in models}
        js, corr, lin = [], [], []
        for r in range(config.runs):
            by_model = {
                kind: store.get(p, r, kind) if store else None
                for kind in models
            }
            missing = {k: trainers[k] for k, v in by_model.items() if v is None}
            if missing and not train:
                break
            read_back += len(by_model) - len(missing)
            if missing:
                for kind, record in train_run(config, p, r, missing):
                    if store:
                        store.append(
                            {"fingerprint": store.fingerprint, **record}
                        )
                    by_model[kind] = record
            any_record = by_model[models[0]]
            corr.append(any_record["label_correlation"])
            lin.append(any_record["linear_loss"])
            for kind, record in by_model.items():
                seconds[kind] += record["seconds"]
                steps_done[kind] += record["steps_trained"]
                runs_done[kind] += 1
                runs[kind].append(record)
                if record["gate_js"] is not None:
                    js.append(record["gate_js"])
            run_seconds.append(sum(v["seconds"] for v in by_model.values()))
            log(
                f"p={p} run {r + 1}/{config.runs}: linear {lin[-1]:.4f}, "
                + ", ".join(
                    f"{k} {runs[k][-1]['final_loss']:.4f}"
                    f" ({runs[k][-1]['steps_trained']} steps)"
                    for k in runs
                )
                + (f", mmoe gate JS {js[-1]:.4f}" if js else "")
                + ("" if missing else ", read back")
                + f" ({time.perf_counter() - start:.0f} s)",
            )
        if not corr:
            log(f"p={p}: no run recorded for every model")
            continue
        key = f"{p:g}"
        per_p[key] = {}
        typical[key] = float(
            np.median(
                [
                    o["final_loss"]
                    for k in typical_models(models)
                    for o in runs[k]
                ]
            )
        )
        paired = paired_rows(
            {k: [o["final_loss"] for o in outs] for k, outs in runs.items()}
        )
        task_paired = task_rows(runs, config.task_scales)
        reported = {}
        for kind, outs in runs.items():
            final = [o["final_loss"] for o in outs]
            curves = np.array([reported_curve(o, config, length) for o in outs])
            reported[kind] = curves
            trained = np.array([o["steps_trained"] for o in outs])
            row = {
                "final_loss": summary(final),
                "final_losses": final,
                "ratio_to_linear": (np.asarray(final) / lin).tolist(),
                "final_task_losses_mean": np.mean(
                    [o["final_task_losses"] for o in outs], axis=0
                ).tolist(),
                "failures": failures(final, lin, typical[key]),
                "steps_trained": summary(trained),
                "best_step": summary([o["best_step"] for o in outs]),
                "share_at_step_budget": float(np.mean(trained >= budget)),
                "curve": {
                    "mean": curves.mean(axis=0).tolist(),
                    "median": np.median(curves, axis=0).tolist(),
                    "share_training": [
                        float(np.mean(trained >= i * config.eval_every))
                        for i in range(length)
                    ],
                },
            }
            row.update(paired[kind])
            row.update(task_paired[kind])
            if config.stopping == "fixed":
                row["validation_curves"] = [o["validation_curve"] for o in outs]
                row["patience_replay"] = patience_replay(
                    row["validation_curves"], (5, 10, 20, 40), config.eval_every
                )
            per_p[key][kind] = row
        # The test loss a run of each training length reports: fixed steps,
        # the loss at that step; early stopping, that of the lowest
        # validation loss up to that step, i.e. with `max_steps` there.
        checkpoints = [
            c
            for c in TRAINING_LENGTHS
            if c < budget and c % config.eval_every == 0
        ] + [budget]
        lengths[key] = by_training_length(
            reported
            if config.stopping == "early"
            else {
                k: [o["test_curve"] for o in outs] for k, outs in runs.items()
            },
            checkpoints,
            config.eval_every,
        )
        if js:
            gate_js[key] = {**summary(js), "runs": js}
        label_corr[key] = summary(corr)
        linear[key] = {**summary(lin), "runs": lin}
    if config.sines in ("fixed", "per_task"):
        alpha, beta = sine_parameters(config)
        sines = {"alpha": alpha.tolist(), "beta": beta.tolist()}
    else:
        sines = "drawn per run"
    wall = time.perf_counter() - start
    result = {
        "command": "python -m benchmarks.synthetic",
        "config": asdict(config),
        "sine_parameters": sines,
        "shared_bottom_units": shared_bottom_units(config),
        "parameter_counts": counts,
        "steps": list(range(0, budget + 1, config.eval_every)),
        "loss": "test MSE of task 1 + test MSE of task 2",
        "noise_floor": NUM_TASKS * config.noise_std**2,
        "failure_criteria": FAILURE_CRITERIA,
        "typical_loss": typical,
        "typical_loss_models": pooled,
        "label_correlation": label_corr,
        "linear_regression_loss": linear,
        "results": per_p,
        "gate_js_divergence": gate_js,
        **({"by_training_length": lengths} if lengths else {}),
        "checkpoint": (
            {
                "path": str(store.path),
                "fingerprint": store.fingerprint,
                "records_read_back": read_back,
                "records_trained": sum(runs_done.values()) - read_back,
                "note": "timing: each record's seconds from the process "
                "that trained it; wall_seconds: this process only",
            }
            if store
            else None
        ),
        "timing": {
            "seconds_per_run": summary(run_seconds),
            "seconds_per_model": {
                k: seconds[k] / max(1, runs_done[k]) for k in seconds
            },
            "ms_per_step": {
                k: 1000 * seconds[k] / max(1, steps_done[k]) for k in seconds
            },
        },
        "environment": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "backend": keras.backend.backend(),
            "cpus": os.cpu_count(),
        },
        "wall_seconds": wall,
    }
    result["findings"] = findings(result)
    return result


def compact(result: dict) -> dict:
    """A result without its per-run curves and Figure 4 curves."""
    out = {k: v for k, v in result.items() if k != "steps"}
    out["results"] = {
        p: {
            kind: {
                k: v
                for k, v in row.items()
                if k not in ("curve", "validation_curves")
            }
            for kind, row in models.items()
        }
        for p, models in result["results"].items()
    }
    return out


def parse_sweep(text: str):
    """`"NAME=V1,V2"` -> `(NAME, [V1, V2])`, values of NAME's type."""
    name, sep, values = text.partition("=")
    if not sep or name not in SWEEPABLE or not values:
        raise ValueError(
            f"sweep expected NAME=V1,V2,... with NAME one of "
            f"{sorted(SWEEPABLE)}. Received: {text}"
        )
    kind = SWEEPABLE[name]
    return name, [
        kind(float(v)) if kind is int else kind(v) for v in values.split(",")
    ]


def sweep(
    config: Config, name: str, values, log=print, checkpoint=None
) -> dict:
    """The experiment once per value of `name`, the rest as `config`; every
    value's records in the one `checkpoint` file (their fingerprints
    differ)."""
    start = time.perf_counter()
    results = {}
    for value in values:
        log(f"=== {name} = {value} ===")
        results[str(value)] = compact(
            run(replace(config, **{name: value}), log, checkpoint)
        )
    return {
        "command": "python -m benchmarks.synthetic --sweep",
        "parameter": name,
        "values": [str(v) for v in values],
        "config": asdict(config),
        "results": results,
        "wall_seconds": time.perf_counter() - start,
    }


# === Plots ===


LOG_TICKS = (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(result: dict, output: Path) -> list[Path]:
    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    steps = result["steps"]
    by_p = result["results"]
    ps = list(by_p)
    # Every model reported at some p, in their order; each p plots its own.
    models = list(dict.fromkeys(k for r in by_p.values() for k in r))
    config = result["config"]
    # Runs per p as reported (fewer than `runs` in a partial report).
    counts = sorted(
        {m["final_loss"]["n"] for r in by_p.values() for m in r.values()}
    )
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    early = config["stopping"] == "early"
    linear = result["linear_regression_loss"]
    paths = []

    rows = 2 if early else 1
    fig, axes = plt.subplots(
        rows,
        len(ps),
        figsize=(4.2 * len(ps), 3.4 + 1.6 * (rows - 1)),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1] if early else [1]},
    )
    for col, p in enumerate(ps):
        ax = axes[0, col]
        for kind in by_p[p]:
            curve = by_p[p][kind]["curve"]
            ax.plot(
                steps, curve["mean"], color=COLORS[kind], label=LABELS[kind]
            )
            ax.plot(steps, curve["median"], color=COLORS[kind], ls="--", lw=1)
        # Zoom on the end of training: the start (loss ~10) is off the top.
        finals = [m["final_loss"]["mean"] for m in by_p[p].values()]
        ax.set_ylim(0, 2.5 * max(finals))
        ax.set_title(f"correlation p = {p}")
        ax.grid(alpha=0.3)
        if early:
            share = axes[1, col]
            for kind in by_p[p]:
                share.plot(
                    steps,
                    by_p[p][kind]["curve"]["share_training"],
                    color=COLORS[kind],
                )
            share.set_ylim(0, 1.05)
            share.grid(alpha=0.3)
        axes[-1, col].set_xlabel("training step")
    axes[0, 0].set_ylabel(
        f"test loss, {runs} runs\n(solid mean, dashed median)"
        + ("\nbest-validation weights" if early else "")
    )
    if early:
        axes[1, 0].set_ylabel("share of runs\nstill training")
    # One entry per model, from whichever panels show it.
    handles = {}
    for ax in axes[0]:
        shown, names = ax.get_legend_handles_labels()
        handles.update(zip(names, shown, strict=True))
    axes[0, 0].legend(handles.values(), handles.keys(), fontsize=8)
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
        finals = {
            k: [v for v in by_p[p][k]["final_losses"] if np.isfinite(v)]
            for k in models
            if k in by_p[p]
        }
        everything = np.concatenate(list(finals.values()))
        # Log-spaced bins: the losses span more than a decade.
        low, high = everything.min(), everything.max()
        bins = np.geomspace(low, high * (1 + 1e-9) + 1e-12, 21)
        for ax, kind in zip(row, models, strict=True):
            if kind not in finals:
                ax.axis("off")
                continue
            ax.hist(finals[kind], bins=bins, color=COLORS[kind])
            ax.set_xscale("log")
            ax.set_xticks(
                [t for t in LOG_TICKS if low / 1.5 <= t <= high * 1.5],
                minor=False,
            )
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.axvline(linear[p]["median"], color="0.3", ls=":", lw=1)
            ax.axvline(
                TYPICAL_FACTOR * result["typical_loss"][p],
                color="0.3",
                ls="--",
                lw=1,
            )
            fail = by_p[p][kind]["failures"]
            ax.set_title(
                f"{LABELS[kind]}, p = {p}: fail "
                f"{fail['fails_to_train']['count']}, far "
                f"{fail['far_above_typical']['count']} of "
                f"{fail['far_above_typical']['n']}",
                fontsize=9,
            )
            ax.set_xlabel(
                "final test loss (dotted: linear fit, dashed: 2 x typical)",
                fontsize=8,
            )
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
            yerr=[gates[p]["standard_error"] for p in gates],
            fmt="o-",
            color="C0",
            capsize=4,
            zorder=2,
            label="mean ± SE",
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


def plot_sweep(swept: dict, output: Path) -> Path:
    """Mean ± standard error of each model's final loss per value, one
    panel per `p`."""
    plt = _pyplot()
    values = swept["values"]
    first = swept["results"][values[0]]["results"]
    ps = list(first)
    models = list(next(iter(first.values())))
    fig, axes = plt.subplots(
        1, len(ps), figsize=(4.2 * len(ps), 3.4), squeeze=False
    )
    xs = np.arange(len(values))
    offsets = 0.1 * (np.arange(len(models)) - (len(models) - 1) / 2)
    for ax, p in zip(axes[0], ps, strict=True):
        for offset, kind in zip(offsets, models, strict=True):
            stats = [
                swept["results"][v]["results"][p][kind]["final_loss"]
                for v in values
            ]
            ax.errorbar(
                xs + offset,
                [s["mean"] for s in stats],
                yerr=[s["standard_error"] for s in stats],
                fmt="o-",
                capsize=3,
                color=COLORS[kind],
                label=LABELS[kind],
            )
            ax.plot(
                xs + offset,
                [s["median"] for s in stats],
                "x",
                color=COLORS[kind],
            )
        ax.set_xticks(xs, values)
        ax.set_xlabel(swept["parameter"])
        ax.set_title(f"p = {p}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("final test loss (mean ± SE; x median)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    path = output / f"synthetic_sweep_{swept['parameter']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    """Per `p` and model: mean ± SE, median, min, max, the paired difference
    to MMoE ± SE, runs where MMoE is lower, failures under both criteria and
    the median steps trained; then each multi-task model minus the
    single-task one (when run), the linear fit and MMoE's gates."""
    header = (
        f"{'p':>4}  {'model':<14}{'mean ± SE':>17}{'median':>8}{'min':>8}"
        f"{'max':>8}{'Δ vs MMoE ± SE':>18}{'MMoE<':>8}{'fail':>8}"
        f"{'>2×typ':>8}{'steps':>7}"
    )
    lines = [header]
    for p, models in result["results"].items():
        for kind, row in models.items():
            s = row["final_loss"]
            d = row.get("paired_vs_mmoe")
            fail = row["failures"]
            lines.append(
                f"{p:>4}  {LABELS[kind]:<14}"
                f"{s['mean']:>8.4f} ± {s['standard_error']:<6.4f}"
                f"{s['median']:>8.4f}{s['min']:>8.4f}{s['max']:>8.4f}"
                + (
                    f"{d['mean']:>+9.4f} ± {d['standard_error']:<6.4f}"
                    f"{d['mmoe_lower']:>5}/{d['n']:<3}"
                    if d
                    else " " * 26
                )
                + "".join(
                    f"{fail[name]['count']:>5}/{fail[name]['n']:<3}"
                    for name in FAILURE_CRITERIA
                )
                + f"{row['steps_trained']['median']:>7.0f}"
            )
    for p, steps in result.get("by_training_length", {}).items():
        lines.append(
            f"p={p}, test loss after a fixed number of steps:"
            if result["config"]["stopping"] == "fixed"
            else f"p={p}, test loss with training capped at a number of "
            "steps (`max_steps`):"
        )
        for step, row in steps.items():
            lines.append(
                f"{step:>8} steps: "
                + ", ".join(
                    f"{LABELS[k]} {row[k]['final_loss']['mean']:.4f} ± "
                    f"{row[k]['final_loss']['standard_error']:.4f} "
                    f"(median {row[k]['final_loss']['median']:.4f})"
                    + (
                        f" Δ {row[k]['paired_vs_mmoe']['mean']:+.4f} ± "
                        f"{row[k]['paired_vs_mmoe']['standard_error']:.4f}"
                        if "paired_vs_mmoe" in row[k]
                        else ""
                    )
                    for k in MODELS
                    if k in row
                )
            )
    for p, models in result["results"].items():
        single = {
            k: row["paired_vs_single_task"]
            for k, row in models.items()
            if "paired_vs_single_task" in row
        }
        if single:
            lines.append(
                f"p={p}, minus single-task (single-task lower in): "
                + ", ".join(
                    f"{LABELS[k]} {d['mean']:+.4f} ± {d['standard_error']:.4f}"
                    f" ({d['single_task_lower']}/{d['n']})"
                    for k, d in single.items()
                )
            )
            lines.append(
                f"p={p}, per task (unscaled), minus single-task: "
                + ", ".join(
                    f"{LABELS[k]} "
                    + " / ".join(
                        f"{d['mean']:+.4f} ± {d['standard_error']:.4f}"
                        for d in row["task_paired_vs_single_task"]
                    )
                    for k, row in models.items()
                    if "task_paired_vs_single_task" in row
                )
            )
    for p, s in result["linear_regression_loss"].items():
        lines.append(
            f"p={p}: linear regression {s['mean']:.4f} ± "
            f"{s['standard_error']:.4f} (median {s['median']:.4f}), "
            f"label correlation {result['label_correlation'][p]['mean']:.3f}"
        )
    for p, s in result["gate_js_divergence"].items():
        lines.append(
            f"p={p}: MMoE gate JS {s['mean']:.4f} ± {s['standard_error']:.4f}"
            f" (median {s['median']:.4f})"
        )
    t = result["timing"]["seconds_per_run"]
    lines.append(
        f"{t['mean']:.1f} s per run ({len(result['config']['models'])} "
        f"models), {result['wall_seconds']:.0f} s"
    )
    if result.get("checkpoint"):
        c = result["checkpoint"]
        lines.append(
            f"{c['records_read_back']} records read back from "
            f"{c['path']}, {c['records_trained']} trained"
        )
    return "\n".join(lines)


def format_sweep_table(swept: dict) -> str:
    """Per value and `p`: each model's mean ± SE and median, the paired
    differences to MMoE ± SE, and whether the paper's order holds by mean
    and by median."""
    name = swept["parameter"]
    others = [k for k in MODELS if k != "mmoe"]
    lines = [
        f"{name:>14}{'p':>5}  "
        + "".join(f"{LABELS[k]:>22}" for k in MODELS)
        + "".join(f"{SHORT[k] + '-MMoE':>18}" for k in others)
        + "  order(mean,median)"
    ]
    for value in swept["values"]:
        result = swept["results"][value]
        for p, models in result["results"].items():
            cells = "".join(
                f"{models[k]['final_loss']['mean']:>9.4f}±"
                f"{models[k]['final_loss']['standard_error']:<6.4f}"
                f"({models[k]['final_loss']['median']:.3f})"
                if k in models
                else " " * 22
                for k in MODELS
            )
            diffs = "".join(
                f"{models[k]['paired_vs_mmoe']['mean']:>+10.4f}±"
                f"{models[k]['paired_vs_mmoe']['standard_error']:<7.4f}"
                if k in models and "paired_vs_mmoe" in models[k]
                else " " * 18
                for k in others
            )
            order = result["findings"]["order_mmoe_le_omoe_le_shared_bottom"]
            lines.append(
                f"{value:>14}{p:>5}  {cells}{diffs}  "
                f"{order['mean'].get(p)}, {order['median'].get(p)}"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Config()
    integers = (
        "runs",
        "train_size",
        "validation_size",
        "test_size",
        "batch_size",
        "eval_every",
        "patience",
        "max_steps",
        "steps",
        "sine_seed",
        "seed",
        "num_experts",
        "expert_units",
        "tower_units",
    )
    for name in integers:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(defaults, name),
        )
    parser.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate
    )
    parser.add_argument(
        "--stopping", choices=("early", "fixed"), default=defaults.stopping
    )
    parser.add_argument(
        "--sines",
        choices=("fixed", "per_run", "per_task"),
        default=defaults.sines,
    )
    parser.add_argument(
        "--correlations",
        type=float,
        nargs="+",
        default=list(defaults.correlations),
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS)
    )
    parser.add_argument(
        "--task-scales",
        nargs=NUM_TASKS,
        type=float,
        default=list(defaults.task_scales),
        metavar="S",
        help="each task's label times this (the training loss weighs the "
        "tasks by its square); per-task losses are reported unscaled",
    )
    parser.add_argument(
        "--sweep",
        metavar="NAME=V1,V2,...",
        help="the experiment once per value; NAME one of "
        + ", ".join(sorted(SWEEPABLE)),
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the JSON and plots from the runs recorded in --output "
        "(per p, up to --runs); train nothing",
    )
    args = parser.parse_args(argv)
    for name in integers:
        if name not in ("sine_seed", "seed") and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("steps", "max_steps"):
        if getattr(args, name) % args.eval_every:
            parser.error(
                f"--{name.replace('_', '-')} must be a multiple of --eval-every"
            )
    if any(not -1.0 <= p <= 1.0 for p in args.correlations):
        parser.error("--correlations must lie in [-1, 1]")
    if any(not s > 0 for s in args.task_scales):
        parser.error("--task-scales must be positive")
    config = replace(
        defaults,
        **{name: getattr(args, name) for name in integers},
        learning_rate=args.learning_rate,
        stopping=args.stopping,
        sines=args.sines,
        task_scales=tuple(args.task_scales),
        correlations=tuple(args.correlations),
        models=tuple(args.models),
    )
    if args.report_only and args.sweep:
        parser.error("--report-only does not go with --sweep")
    args.output.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        try:
            name, values = parse_sweep(args.sweep)
        except ValueError as error:
            parser.error(str(error))
        if name in ("steps", "max_steps") and any(
            v % config.eval_every for v in values
        ):
            parser.error(f"--sweep {name} values must divide by --eval-every")
        needs = {"steps": "fixed", "patience": "early", "max_steps": "early"}
        if needs.get(name, config.stopping) != config.stopping:
            parser.error(f"--sweep {name} needs --stopping {needs[name]}")
        swept = sweep(config, name, values, checkpoint=args.output / CHECKPOINT)
        print(format_sweep_table(swept))
        path = args.output / f"synthetic_sweep_{name}.json"
        path.write_text(json.dumps(swept, indent=1) + "\n")
        print(f"wrote {path}")
        print(f"wrote {plot_sweep(swept, args.output)}")
        return swept
    checkpoint = args.output / CHECKPOINT
    if args.report_only and not checkpoint.exists():
        parser.error(f"--report-only: no {checkpoint}")
    result = run(config, checkpoint=checkpoint, train=not args.report_only)
    if not result["results"]:
        parser.error(
            f"--report-only: no run of this configuration in {checkpoint}"
        )
    print(format_table(result))
    print(json.dumps(result["findings"], indent=1))
    (args.output / "synthetic.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )
    for path in plot(result, args.output):
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
