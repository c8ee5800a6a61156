"""Training step time of DeepCTR's MMOE against the same keras_mmoe network.

A part of `python -m benchmarks.cost` (`deepctr`). DeepCTR 0.9.4's `MMOE`
(on tf_keras, Keras 2) against the same network built from
`keras_mmoe.MMoE` (Keras 3): 256 dense inputs, 8 experts of 64 ReLU units,
3 binary tasks, towers of 64. Training step time at batch 32 and 1024, the
two timed in turns (A, B, A, B, ...) so both share the machine's drift, in
four modes. `graph`: the same hand-written step for both (GradientTape,
summed binary cross-entropy, plain SGD) in one `tf.function`, steps looped
in-graph: only the models differ. `fit` / `fit_xla`: each framework's own
`compile(Adam, "binary_crossentropy")` and `model.fit`, without and with XLA
(without is both defaults on a CPU-only machine: Keras 3's
`jit_compile="auto"` turns XLA off there, tf_keras's default is off).
`fit_spe`: `fit` with both compiled with `steps_per_execution` (32), which
runs that many steps in one call of the compiled function.
`train_on_batch`: one call per step from Python.

Where a `fit` step's time goes, from three more modes timed the same way:
`forward` (the model's training-mode forward pass alone), `adam` (each
framework's Adam applying fixed gradients to the model's variables, no
model call) and `graph_adam` (the `graph` step with each framework's Adam
instead of SGD). `breakdown` in the JSON splits each `fit` step into the
forward, the backward (`graph` - `forward`), Adam and fit's own per-step
work (`fit` - `graph_adam`: the loss and metrics fit computes, the data
iterator, callbacks), and sets the network's matmul FLOPs against the
float32 matmul peak measured in the same process: the share of the peak
the forward and backward reach, and the share a `fit` step at the target
speed-up would need.

The comparison runs in a process of its own, `python -m
benchmarks.deepctr_speed CONFIG_JSON OUTPUT_JSON`, with
`TF_USE_LEGACY_KERAS=1`, so `tf.keras` (which DeepCTR imports) is tf_keras
while `import keras` stays Keras 3. It is skipped, with a message, when
deepctr or tf_keras is not installed; the `bench` extra installs them:
`uv pip install -c constraints.txt -e '.[pipeline,dev,bench]'`.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from functools import partial
from importlib import metadata
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import layer_speed, timing  # noqa: E402
from benchmarks.cost_config import Config  # noqa: E402
from keras_mmoe import MMoE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The `bench` extra of pyproject.toml.
BENCH_PACKAGES = ("deepctr", "tf_keras")

DEEPCTR_DIFFERENCES = [
    "Gates: DeepCTR's Dense(num_experts, use_bias=False); keras_mmoe's "
    "MMoE has one use_bias for experts and gates, so its gates have "
    "num_tasks x num_experts more parameters (biases).",
    "Head: DeepCTR's Dense(1, use_bias=False) then PredictionLayer (one "
    "bias, sigmoid); ours Dense(1, sigmoid): the same parameters.",
    "Input: one DenseFeat of dimension input_dim, so both read one "
    "(batch, input_dim) tensor (DeepCTR adds a Flatten); input_dim "
    "DenseFeat columns of dimension 1 would add a concatenation to "
    "DeepCTR's graph.",
    "Experts: DeepCTR builds one DNN per expert, tf.stack and a broadcast "
    "multiply + reduce_sum per task; keras_mmoe keeps every expert in one "
    "weight and mixes with one batched matmul.",
    "Initializers (no effect on time): DeepCTR's glorot_normal with one "
    "seed for every expert DNN, ours glorot_uniform with a copy per expert.",
    "Framework: DeepCTR on tf_keras (Keras 2), ours on Keras 3; in the "
    "fit and train_on_batch modes each uses its own Adam and "
    "binary_crossentropy.",
]


def missing_bench_packages() -> list:
    return [p for p in BENCH_PACKAGES if importlib.util.find_spec(p) is None]


def run(config: Config, meanwhile=None) -> dict:
    """Runs the comparison in a process with TF_USE_LEGACY_KERAS=1.

    `meanwhile()`, if given, runs while that process imports and builds,
    before it times anything.
    """
    missing = missing_bench_packages()
    if missing:
        message = (
            f"deepctr part skipped: {', '.join(missing)} not installed "
            "(the `bench` extra: uv pip install -c constraints.txt -e "
            "'.[pipeline,dev,bench]')"
        )
        print(message, flush=True)
        return {"skipped": message}
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "config.json", Path(tmp) / "deepctr.json"
        spec.write_text(json.dumps(asdict(config)))
        args = [sys.executable, "-m", "benchmarks.deepctr_speed"]
        args += [str(spec), str(out)]
        # Must be set before TensorFlow is imported: tf.keras -> tf_keras.
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE, text=True
        )
        try:
            if meanwhile:
                meanwhile()
            process.communicate("go\n")  # The child waits for this to time.
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, args)
        return json.loads(out.read_text())


def deepctr_model(config: Config):
    from deepctr.feature_column import DenseFeat
    from deepctr.models import MMOE

    return MMOE(
        [DenseFeat("features", config.input_dim)],
        num_experts=config.num_experts,
        expert_dnn_hidden_units=(config.expert_units,),
        tower_dnn_hidden_units=(config.tower_units,),
        gate_dnn_hidden_units=(),
        task_types=("binary",) * config.num_tasks,
        task_names=tuple(f"task_{k}" for k in range(config.num_tasks)),
    )


def keras_mmoe_model(config: Config) -> keras.Model:
    """DeepCTR's MMOE network built from `keras_mmoe.MMoE` (Keras 3)."""
    inputs = keras.Input((config.input_dim,), name="features")
    mixed = MMoE(
        config.num_tasks,
        num_experts=config.num_experts,
        expert_units=config.expert_units,
    )(inputs)  # num_tasks x (batch, expert_units)
    outputs = [
        keras.layers.Dense(1, activation="sigmoid", name=f"task_{k}")(
            keras.layers.Dense(config.tower_units, activation="relu")(h)
        )
        for k, h in enumerate(mixed)
    ]
    return keras.Model(inputs, outputs)


def summed_cross_entropy(outputs, labels):
    eps = 1e-7
    return tf.add_n(
        [
            -tf.reduce_mean(
                y * tf.math.log(p + eps) + (1 - y) * tf.math.log(1 - p + eps)
            )
            for p, y in zip(outputs, labels, strict=True)
        ]
    )


def in_graph_steps(step):
    """A block running `step()` (a scalar tensor) `steps` times in one
    `tf.function`, one iteration at a time, summing what it returns."""

    @tf.function
    def run(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            total += step()
        return total

    return timing.clocked(lambda steps: run(tf.constant(steps)).numpy())


def loss_steps(model, inputs, labels, update):
    """Training steps in-graph: forward, summed cross-entropy, gradients,
    then `update(grads, variables)`."""
    variables = model.trainable_variables

    def step():
        with tf.GradientTape() as tape:
            loss = summed_cross_entropy(model(inputs, training=True), labels)
        update(tape.gradient(loss, variables), variables)
        return loss

    return in_graph_steps(step)


def graph_steps(model, inputs, labels, learning_rate=1e-3):
    """`steps` SGD steps of `model` in one `tf.function` (either Keras).

    Both frameworks' updates are one `AssignSubVariableOp` per weight, on
    the `tf.Variable` itself: a Keras 3 variable's own `assign_sub` is a
    read, a subtraction and an assign (two more ops per weight, 52 in the
    compared network's step, which at batch 32 is a measurable part of it).
    """

    def sgd(grads, variables):
        for variable, grad in zip(variables, grads, strict=True):
            tf_variable(variable).assign_sub(learning_rate * grad)

    return loss_steps(model, inputs, labels, sgd)


def tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras 3 variable (a tf_keras one is one)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def graph_adam_steps(model, optimizer, inputs, labels):
    """The `graph` step with `optimizer` (Adam) instead of SGD."""
    return loss_steps(model, inputs, labels, partial(_apply, optimizer))


def forward_steps(model, inputs):
    """`steps` training-mode forward passes in one `tf.function`."""
    return in_graph_steps(
        lambda: tf.add_n(
            [tf.reduce_sum(o) for o in model(inputs, training=True)]
        )
    )


def _apply(optimizer, grads, variables):
    """One Adam update in either Keras (`apply_gradients` in both)."""
    optimizer.apply_gradients(zip(grads, variables, strict=True))


def adam_steps(model, optimizer):
    """`steps` Adam updates of `model`'s variables from fixed gradients."""
    variables = model.trainable_variables
    grads = [tf.fill(v.shape, 1e-3) for v in variables]

    def step():
        _apply(optimizer, grads, variables)
        return tf.constant(0.0)

    return in_graph_steps(step)


def train_matmul_flops(config: Config, batch: int) -> int:
    """Matmul FLOPs of one training step of the compared network.

    Forward: experts and gates read the input, the gate-weighted mix, the
    towers and heads. Backward: a weight gradient for every matmul and an
    input gradient for all but those reading the input (data needs none),
    so 2x forward for experts and gates, 3x for the rest: the least the
    step must compute, so the share of the peak it implies is a floor.
    """
    d, e, u = config.input_dim, config.num_experts, config.expert_units
    t, k = config.tower_units, config.num_tasks
    reads_input = 2 * d * e * u + 2 * d * e * k
    rest = 2 * k * e * u + k * (2 * u * t + 2 * t)
    return batch * (2 * reads_input + 3 * rest)


def train_on_batch_steps(model, inputs, labels):
    def run(steps):
        for _ in range(steps):
            model.train_on_batch(inputs, labels)

    return timing.clocked(run)


def fit_steps(model, callback_base, inputs, labels, steps_per_execution=1):
    """`model.fit` on the batch repeated; per step: from the end of the
    first execution to the end of the last, so fit's setup is left out.

    `steps_per_execution`: what `model` was compiled with; fit calls the
    batch callbacks once per execution of that many steps, so a block
    runs whole executions (at least one timed).
    """
    data = tf.data.Dataset.from_tensors((inputs, tuple(labels))).repeat()

    class BatchEnds(callback_base):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    ends = []

    def fn(steps):
        executions = max(1, -(-steps // steps_per_execution))
        ends.clear()
        model.fit(
            data,
            epochs=1,
            steps_per_epoch=(executions + 1) * steps_per_execution,
            callbacks=[BatchEnds()],
            verbose=0,
        )
        if len(ends) != executions + 1:
            raise RuntimeError(
                f"{len(ends)} batch ends for {executions + 1} executions"
            )
        return (ends[-1] - ends[0]) / (executions * steps_per_execution)

    return fn


def child(config: Config) -> dict:
    """The comparison itself (in the TF_USE_LEGACY_KERAS=1 process)."""
    import tf_keras

    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("Run with TF_USE_LEGACY_KERAS=1 (see run).")
    # DeepCTR's import asks PyPI for a newer version from a thread; a
    # benchmark makes no network calls.
    import requests

    def offline(*args, **kwargs):
        return requests.Response()  # No status: DeepCTR says nothing.

    requests.get = offline
    keras.utils.set_random_seed(config.seed)
    theirs, ours = deepctr_model(config), keras_mmoe_model(config)
    if not type(theirs).__module__.startswith("tf_keras"):
        raise RuntimeError(
            f"DeepCTR built a {type(theirs).__module__} model, not tf_keras."
        )
    experts = [
        theirs.get_layer(f"expert_{i}").get_weights()[0]
        for i in range(config.num_experts)
    ]
    sys.stdin.readline()  # The parent's go: nothing else is starting up.
    print(HEADER, flush=True)
    rng = np.random.default_rng(config.seed)
    rows = []
    compiled = None
    for batch in config.deepctr_batches:
        x = tf.constant(
            rng.normal(size=(batch, config.input_dim)).astype("float32")
        )
        labels = [
            tf.constant(rng.integers(0, 2, (batch, 1)).astype("float32"))
            for _ in range(config.num_tasks)
        ]
        inputs = ({"features": x}, x)  # DeepCTR's inputs are named.
        for mode in config.deepctr_modes:
            pairs = list(zip((theirs, ours), inputs, strict=True))
            if mode == "graph":
                fns = [graph_steps(model, xs, labels) for model, xs in pairs]
            elif mode == "forward":
                fns = [forward_steps(model, xs) for model, xs in pairs]
            elif mode in ("adam", "graph_adam"):
                optimizers = [
                    tf_keras.optimizers.Adam(1e-3),
                    keras.optimizers.Adam(1e-3),
                ]
                for optimizer, (model, _) in zip(
                    optimizers, pairs, strict=True
                ):
                    optimizer.build(model.trainable_variables)
                fns = [
                    adam_steps(model, optimizer)
                    if mode == "adam"
                    else graph_adam_steps(model, optimizer, xs, labels)
                    for optimizer, (model, xs) in zip(
                        optimizers, pairs, strict=True
                    )
                ]
            else:
                jit = mode.endswith("_xla")
                spe = (
                    config.deepctr_steps_per_execution
                    if mode == "fit_spe"
                    else 1
                )
                # The fit modes and train_on_batch share a compiled step
                # while the compile settings stay.
                if (jit, spe) != compiled:
                    theirs.compile(
                        tf_keras.optimizers.Adam(1e-3),
                        "binary_crossentropy",
                        jit_compile=jit,
                        steps_per_execution=spe,
                    )
                    ours.compile(
                        keras.optimizers.Adam(1e-3),
                        "binary_crossentropy",
                        jit_compile=jit,
                        steps_per_execution=spe,
                    )
                    compiled = (jit, spe)
                if mode.startswith("fit"):
                    fns = [
                        fit_steps(model, base, xs, labels, spe)
                        for model, base, xs in zip(
                            (theirs, ours),
                            (
                                tf_keras.callbacks.Callback,
                                keras.callbacks.Callback,
                            ),
                            inputs,
                            strict=True,
                        )
                    ]
                else:
                    fns = [
                        train_on_batch_steps(model, xs, labels)
                        for model, xs in zip(
                            (theirs, ours), inputs, strict=True
                        )
                    ]
            medians, samples, steps = timing.time_blocks(
                fns, config.block_seconds, config.repeats
            )
            t_theirs, t_ours = medians
            row = {
                "mode": mode,
                "batch": batch,
                "steps_per_block": steps,
                **timing.in_ms(("deepctr", "keras_mmoe"), medians, samples),
                # > 1: keras_mmoe's step is faster.
                "deepctr_over_keras_mmoe": t_theirs / t_ours,
            }
            rows.append(row)
            print(format_row(row), flush=True)
    peak = layer_speed.matmul_peak(config.peak_size, config.peak_repeats)
    return {
        "matmul_peak_gflops": max(peak.values()),
        "matmul_peaks_gflops": peak,
        "breakdown": breakdown(rows, config, max(peak.values())),
        "versions": {
            "deepctr": metadata.version("deepctr"),
            "tf_keras": tf_keras.__version__,
            "keras": keras.__version__,
        },
        "parameters": {
            "deepctr": int(theirs.count_params()),
            "keras_mmoe": int(ours.count_params()),
        },
        # DeepCTR seeds every expert's initializer alike (seed=1024).
        "deepctr_experts_start_identical": all(
            np.array_equal(experts[0], e) for e in experts[1:]
        ),
        "modes": {
            "graph": (
                "one tf.function per model, steps looped in-graph (tf.range, "
                "parallel_iterations=1): GradientTape forward, summed binary "
                "cross-entropy, gradients, SGD assign_sub on each tf.Variable "
                "(one AssignSubVariableOp per weight in both); same code for "
                "both"
            ),
            "fit": (
                "each framework's compile(Adam(1e-3), 'binary_crossentropy', "
                "jit_compile=False) and model.fit on a tf.data batch "
                "repeated (steps_per_execution 1); per step: from the end of "
                "the first batch to the end of the last (a callback), so "
                "fit's setup is left out"
            ),
            "fit_xla": (
                "the same with jit_compile=True (on a CPU-only machine "
                "neither framework's default)"
            ),
            "forward": (
                "each model's training-mode forward pass, steps looped "
                "in-graph as in graph"
            ),
            "adam": (
                "each framework's Adam(1e-3) applying fixed gradients to the "
                "model's variables, in-graph; no model call"
            ),
            "graph_adam": (
                "the graph step with each framework's Adam(1e-3) instead of SGD"
            ),
            "fit_spe": (
                "fit compiled with steps_per_execution="
                f"{config.deepctr_steps_per_execution} in both frameworks "
                "(no XLA): fit's per-step work paid once per execution"
            ),
            "train_on_batch": (
                "the same compile (no XLA), model.train_on_batch once per "
                "step from Python: each framework's per-call overhead"
            ),
        },
        "differences": DEEPCTR_DIFFERENCES,
        "rows": rows,
    }


BREAKDOWN_MODES = ("forward", "graph", "adam", "graph_adam", "fit")


def breakdown(rows, config: Config, peak_gflops: float) -> dict:
    """Each framework's `fit` step split into parts, per batch (ms).

    `forward`, `backward` (`graph` - `forward`, with the SGD update),
    `adam`, `fit_work` (`fit` - `graph_adam`). For keras_mmoe also: the
    network's matmul FLOPs per step, the share of `peak_gflops` its
    forward and backward reach (`graph`), and for the target speed-up
    over DeepCTR's `fit` the forward and backward time and share of the
    peak it would need, with `fit_work` and `adam` as measured. Batches
    missing a mode are left out.
    """
    out = {}
    for batch in config.deepctr_batches:
        ms = {
            row["mode"]: row
            for row in rows
            if row["batch"] == batch and row["mode"] in BREAKDOWN_MODES
        }
        if set(ms) != set(BREAKDOWN_MODES):
            continue
        parts = {}
        for side in ("deepctr", "keras_mmoe"):
            t = {mode: ms[mode][f"{side}_ms"] for mode in BREAKDOWN_MODES}
            parts[side] = {
                "fit": t["fit"],
                "forward": t["forward"],
                "backward": t["graph"] - t["forward"],
                "adam": t["adam"],
                "fit_work": t["fit"] - t["graph_adam"],
            }
        ours = parts["keras_mmoe"]
        flops = train_matmul_flops(config, batch)
        target = dict(config.deepctr_fit_targets).get(batch)
        entry = {
            **parts,
            "matmul_flops_per_step": flops,
            "forward_backward_pct_peak": pct_peak(
                flops, ours["forward"] + ours["backward"], peak_gflops
            ),
        }
        if target is not None:
            fit_needed = parts["deepctr"]["fit"] / target
            compute = fit_needed - ours["fit_work"] - ours["adam"]
            entry["target"] = {
                "speedup": target,
                "fit_ms_needed": fit_needed,
                "forward_backward_ms_needed": compute,
                # None: fit's own work and Adam alone take longer.
                "pct_peak_needed": (
                    pct_peak(flops, compute, peak_gflops)
                    if compute > 0
                    else None
                ),
            }
        out[str(batch)] = entry
    return out


def pct_peak(flops: int, ms: float, peak_gflops: float) -> float:
    return 100 * flops / (ms * 1e-3) / 1e9 / peak_gflops


HEADER = (
    f"{'mode':<20}{'batch':>6}{'deepctr ms':>12}{'ours ms':>10}"
    f"{'deepctr/ours':>14}"
)


def format_row(row) -> str:
    return (
        f"{row['mode']:<20}{row['batch']:>6}{row['deepctr_ms']:>12.3f}"
        f"{row['keras_mmoe_ms']:>10.3f}{row['deepctr_over_keras_mmoe']:>13.2f}x"
    )


def main(argv=None) -> None:
    """The child: reads the config, writes the comparison's JSON."""
    spec, out = sys.argv[1:] if argv is None else argv
    config = Config(**json.loads(Path(spec).read_text()))
    timing.write_json(out, child(config))


if __name__ == "__main__":
    main()
