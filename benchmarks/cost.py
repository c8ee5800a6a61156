"""Cost of MMoE: against DeepCTR, one 3-task model vs three, and scaling.

    python -m benchmarks.cost [deepctr] [multitask_vs_single] [scaling]
        [--quick] [--output DIR]

All three measurements by default (TensorFlow backend). Writes
`benchmarks/results/cost.json` (machine, command, every measurement) and
`benchmarks/results/cost_scaling.png`; `--quick` is a tiny run that writes
nothing unless given `--output`. The fused layer against a per-expert loop
(issue 5, part 3, first point) is `benchmarks/layer_speed.py`.

- `deepctr`: DeepCTR 0.9.4's `MMOE` (on tf_keras, Keras 2) against the same
  network built from `keras_mmoe.MMoE` (Keras 3): 256 dense inputs, 8
  experts of 64 ReLU units, 3 binary tasks, towers of 64. Training step time
  at batch 32 and 1024, the two timed in turns (A, B, A, B, ...) so both
  share the machine's drift, in four modes. `graph`: the same hand-written
  step for both (GradientTape, summed binary cross-entropy, plain SGD) in
  one `tf.function`, steps looped in-graph: only the models differ. `fit` /
  `fit_xla`: each framework's own `compile(Adam, "binary_crossentropy")` and
  `model.fit`, without and with XLA (without is both defaults on a CPU-only
  machine: Keras 3's `jit_compile="auto"` turns XLA off there, tf_keras's
  default is off). `train_on_batch`: one call per step from Python. It
  runs in a process of its own with `TF_USE_LEGACY_KERAS=1`, so `tf.keras`
  (which DeepCTR imports) is tf_keras while `import keras` stays Keras 3.
  Skipped, with a message, when deepctr or tf_keras is not installed; the
  `bench` extra installs them:
  `uv pip install -c constraints.txt -e '.[pipeline,dev,bench]'`.
- `multitask_vs_single`: the pipeline's text model (`pipeline/configs.py`
  TRAINER_DEFAULTS: CNN encoder, wide bag of n-grams, towers, dropout,
  batch 64, Adam) with an MMoE body and the reviews' three tasks, against
  three single-task models (body `"single_task"`, one task each) trained one
  after another on the same examples. Inputs are synthetic token ids
  (uniform ids, lengths uniform in [L/8, L]), not the reviews: a step's
  cost hardly depends on which words they are. Examples/s counts each
  example once: for the three models, the examples over the time to train
  all three.
  Every model trains in a process of its own, so each peak resident memory
  (VmHWM) is its own. Rounds of (3-task, single A, B, C) share the drift.
- `scaling`: compiled training step of the `MMoE` layer alone (as in
  layer_speed: forward, gradients for the weights and the input, Adam; graph
  and XLA) against the number of experts (1-32, 3 tasks) and of tasks (1-8,
  8 experts), 64 units, batch 1024, input 256, every point timed in turns.

Processes: `multitask_vs_single` (each model) and `scaling` run in processes
of their own, forked from a server that has imported this module only
(TensorFlow's ~10 s import is paid once; no TensorFlow runtime exists before
the fork); `deepctr` in a new interpreter, for TF_USE_LEGACY_KERAS.
"""

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import layer_speed  # noqa: E402
from keras_mmoe import MMoE, MultiTaskModel, Task  # noqa: E402
from pipeline import configs  # noqa: E402
from serving import features  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("deepctr", "multitask_vs_single", "scaling")
# The `bench` extra of pyproject.toml.
BENCH_PACKAGES = ("deepctr", "tf_keras")
TRAINER = configs.TRAINER_DEFAULTS


@dataclass
class Config:
    # === deepctr (and the fixed sizes of scaling) ===
    input_dim: int = 256
    num_experts: int = 8
    expert_units: int = 64
    num_tasks: int = 3
    tower_units: int = 64  # DeepCTR's default tower_dnn_hidden_units=(64,).
    deepctr_batches: tuple = (32, 1024)
    deepctr_modes: tuple = ("graph", "fit", "train_on_batch", "fit_xla")
    # === multitask_vs_single: the pipeline's Trainer defaults ===
    text_tasks: tuple = (("recommended", 2), ("rating", 5), ("department", 6))
    # The Transform's largest vocabulary: top tokens, padding, OOV buckets.
    vocabulary_size: int = (
        features.VOCABULARY_SIZE + 1 + features.NUM_OOV_BUCKETS
    )
    sequence_length: int = features.MAX_LENGTH
    encoder: str = TRAINER["encoder"]
    embedding_dim: int = TRAINER["embedding_dim"]
    text_tower_units: tuple = tuple(TRAINER["tower_units"])
    dropout: float = TRAINER["dropout"]
    batch_size: int = TRAINER["batch_size"]
    learning_rate: float = TRAINER["learning_rate"]
    wide: dict | None = field(default_factory=lambda: dict(TRAINER["wide"]))
    # None: the body's defaults, as in the Trainer.
    mmoe_config: dict | None = None
    single_config: dict | None = None
    text_encoder_config: dict = field(default_factory=dict)
    text_examples: int = 4096  # Per epoch; a multiple of batch_size.
    text_epochs: int = 3  # Timed, after a one-batch warm-up fit.
    text_rounds: int = 3
    # === scaling ===
    scaling_batch: int = 1024
    scaling_experts: tuple = (1, 2, 4, 8, 16, 32)
    scaling_tasks: tuple = (1, 2, 4, 8)
    scaling_modes: tuple = ("train", "train_xla")
    # === timing ===
    repeats: int = 11  # Timed blocks per implementation.
    block_seconds: float = 0.25  # Target length of one block.
    seed: int = 0


QUICK = replace(
    Config(),
    input_dim=16,
    num_experts=4,
    expert_units=8,
    num_tasks=2,
    tower_units=4,
    deepctr_batches=(8,),
    deepctr_modes=("graph", "fit_xla"),
    vocabulary_size=100,
    sequence_length=16,
    embedding_dim=8,
    text_tower_units=(4,),
    batch_size=16,
    wide={"ngram_buckets": 64, "scale": 10.0},
    mmoe_config={"num_experts": 2, "expert_units": 4},
    single_config={"units": 4},
    text_encoder_config={"num_filters": 4},
    text_examples=32,
    text_epochs=1,
    text_rounds=1,
    scaling_batch=8,
    scaling_experts=(1, 2),
    scaling_tasks=(1, 2),
    repeats=2,
    block_seconds=0.005,
)


# === Helpers ===


def examples_per_second(num_examples: int, seconds) -> float:
    """Examples/s of models trained one after another on the same
    `num_examples`, taking `seconds` each: every example counts once."""
    return num_examples / sum(seconds)


def linear_fit(xs, ys) -> dict:
    """Least-squares `y = slope * x + intercept`."""
    slope, intercept = np.polyfit(np.asarray(xs, float), ys, 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def quartiles_ms(seconds) -> list:
    """25th and 75th percentiles of per-step seconds, in ms."""
    ms = [s * 1e3 for s in seconds]
    if len(ms) < 2:
        return [ms[0], ms[0]]
    q = statistics.quantiles(ms, n=4)
    return [q[0], q[2]]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def clocked(run, clock=time.perf_counter):
    """`run(steps)` as a block: `fn(steps) -> seconds per step`."""

    def fn(steps):
        start = clock()
        run(steps)
        return (clock() - start) / steps

    return fn


def calibrate(fn, block_seconds) -> int:
    """Steps per block so that `fn(steps)` lasts ~`block_seconds`."""
    fn(2)  # Trace, compile, warm up.
    steps = 1
    while True:
        seconds = fn(steps) * steps
        if seconds >= block_seconds / 4 or steps >= 2**20:
            break
        steps *= 4
    return max(1, round(steps * block_seconds / max(seconds, 1e-9)))


def time_blocks(fns, block_seconds, repeats):
    """Seconds per step of each block `fn(steps) -> seconds per step`,
    run in turns (A, B, A, B, ...) so all share the machine's drift.

    Each fn gets its own steps per block (a block lasts ~`block_seconds`);
    its figure is the median over `repeats` blocks.
    Returns `(medians, samples, steps)`.
    """
    steps = [calibrate(fn, block_seconds) for fn in fns]
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, n, times in zip(fns, steps, samples, strict=True):
            times.append(fn(n))
    return [statistics.median(t) for t in samples], samples, steps


def write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# === Processes ===


def run_forked(fn, *args):
    """`fn(*args)` in a process of its own, forked from a server that has
    imported this module only; returns its value or raises its error."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["benchmarks.cost"])
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_forked, args=(send, fn, args))
    process.start()
    send.close()  # Only the child's end is open: EOF if it dies.
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "error", "the process died without a result"
    process.join()
    if status == "error":
        raise RuntimeError(
            f"{fn.__name__} failed in its process (exit code "
            f"{process.exitcode}):\n{value}"
        )
    return value


def start_forkserver():
    """Starts the fork server (its imports) and waits until it is ready."""
    run_forked(os.getpid)


def _forked(send, fn, args):
    try:
        send.send(("ok", fn(*args)))
    except BaseException:
        send.send(("error", traceback.format_exc()))
    finally:
        send.close()


def versions() -> dict:
    out = {}
    for name in ("tensorflow", "keras", "tf-keras", "deepctr", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def describe() -> dict:
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            **versions(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        },
        "timing": (
            "implementations timed in turns (A, B, A, B, ...), each block "
            "~block_seconds; per step: median over blocks of block seconds "
            "/ steps; *_iqr: 25th and 75th percentiles over blocks"
        ),
    }


# === deepctr: DeepCTR's MMOE against ours ===

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


def run_deepctr(config: Config, meanwhile=None) -> dict:
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
        args = [sys.executable, "-m", "benchmarks.cost"]
        args += ["--deepctr-child", str(spec), str(out)]
        # Must be set before TensorFlow is imported: tf.keras -> tf_keras.
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        child = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE, text=True
        )
        try:
            if meanwhile:
                meanwhile()
            child.communicate("go\n")  # The child waits for this to time.
        except BaseException:
            child.kill()
            child.wait()
            raise
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, args)
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


def graph_steps(model, inputs, labels, learning_rate=1e-3):
    """`steps` SGD steps of `model` in one `tf.function` (either Keras)."""
    variables = model.trainable_variables

    @tf.function
    def run(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            with tf.GradientTape() as tape:
                loss = summed_cross_entropy(
                    model(inputs, training=True), labels
                )
            grads = tape.gradient(loss, variables)
            for variable, grad in zip(variables, grads, strict=True):
                variable.assign_sub(learning_rate * grad)
            total += loss
        return total

    return clocked(lambda steps: run(tf.constant(steps)).numpy())


def train_on_batch_steps(model, inputs, labels):
    def run(steps):
        for _ in range(steps):
            model.train_on_batch(inputs, labels)

    return clocked(run)


def fit_steps(model, callback_base, inputs, labels):
    """`model.fit` on the batch repeated; per step: from the end of the
    first batch to the end of the last, so fit's setup is left out."""
    data = tf.data.Dataset.from_tensors((inputs, tuple(labels))).repeat()

    class BatchEnds(callback_base):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    ends = []

    def fn(steps):
        ends.clear()
        model.fit(
            data,
            epochs=1,
            steps_per_epoch=steps + 1,
            callbacks=[BatchEnds()],
            verbose=0,
        )
        return (ends[-1] - ends[0]) / steps

    return fn


def deepctr_child(config: Config) -> dict:
    """The comparison itself (in the TF_USE_LEGACY_KERAS=1 process)."""
    import tf_keras

    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("Run with TF_USE_LEGACY_KERAS=1 (run_deepctr).")
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
    rng = np.random.default_rng(config.seed)
    rows = []
    compiled_jit = None
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
            if mode == "graph":
                fns = [
                    graph_steps(model, xs, labels)
                    for model, xs in zip((theirs, ours), inputs, strict=True)
                ]
            else:
                jit = mode.endswith("_xla")
                # fit and train_on_batch share one compiled train step.
                if jit != compiled_jit:
                    theirs.compile(
                        tf_keras.optimizers.Adam(1e-3),
                        "binary_crossentropy",
                        jit_compile=jit,
                    )
                    ours.compile(
                        keras.optimizers.Adam(1e-3),
                        "binary_crossentropy",
                        jit_compile=jit,
                    )
                    compiled_jit = jit
                if mode.startswith("fit"):
                    fns = [
                        fit_steps(model, base, xs, labels)
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
            (t_theirs, t_ours), samples, steps = time_blocks(
                fns, config.block_seconds, config.repeats
            )
            row = {
                "mode": mode,
                "batch": batch,
                "steps_per_block": steps,
                "deepctr_ms": t_theirs * 1e3,
                "keras_mmoe_ms": t_ours * 1e3,
                # > 1: keras_mmoe's step is faster.
                "deepctr_over_keras_mmoe": t_theirs / t_ours,
                "deepctr_ms_iqr": quartiles_ms(samples[0]),
                "keras_mmoe_ms_iqr": quartiles_ms(samples[1]),
            }
            rows.append(row)
            print(format_deepctr_row(row), flush=True)
    return {
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
                "cross-entropy, gradients, SGD assign_sub; same code for both"
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
            "train_on_batch": (
                "the same compile (no XLA), model.train_on_batch once per "
                "step from Python: each framework's per-call overhead"
            ),
        },
        "differences": DEEPCTR_DIFFERENCES,
        "rows": rows,
    }


DEEPCTR_HEADER = (
    f"{'mode':<20}{'batch':>6}{'deepctr ms':>12}{'ours ms':>10}"
    f"{'deepctr/ours':>14}"
)


def format_deepctr_row(row) -> str:
    return (
        f"{row['mode']:<20}{row['batch']:>6}{row['deepctr_ms']:>12.3f}"
        f"{row['keras_mmoe_ms']:>10.3f}{row['deepctr_over_keras_mmoe']:>13.2f}x"
    )


# === multitask_vs_single: one 3-task text model against three ===


def synthetic_text(config: Config):
    """Token ids `(examples, L)`, lengths uniform in [L/8, L], and a label
    per task; the same for every model (one seed)."""
    rng = np.random.default_rng(config.seed)
    n, length = config.text_examples, config.sequence_length
    ids = rng.integers(1, config.vocabulary_size, (n, length), dtype="int32")
    lengths = rng.integers(max(1, length // 8), length + 1, n)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0  # Padding.
    labels = {
        name: rng.integers(0, classes, n).astype("int32")
        for name, classes in config.text_tasks
    }
    return ids, labels


def text_model(config: Config, tasks, body: str) -> MultiTaskModel:
    body_config = config.mmoe_config if body == "mmoe" else config.single_config
    return MultiTaskModel(
        tasks=[Task(name, classes) for name, classes in tasks],
        body=body,
        body_config=body_config,
        text_encoder={
            "vocabulary_size": config.vocabulary_size,
            "embedding_dim": config.embedding_dim,
            "encoder": config.encoder,
            "max_length": config.sequence_length,
            **config.text_encoder_config,
        },
        sequence_length=config.sequence_length,
        tower_units=list(config.text_tower_units),
        dropout=config.dropout,
        wide=config.wide,
    )


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def train_text_model(config: Config, tasks, body: str) -> dict:
    """Trains one model (in its own process): seconds per epoch, memory."""
    baseline = peak_rss_mb()  # Imports only: the fork's inherited pages.
    keras.utils.set_random_seed(config.seed)
    ids, labels = synthetic_text(config)
    labels = {name: labels[name] for name, _ in tasks}
    model = text_model(config, tasks, body)
    model.compile(keras.optimizers.Adam(config.learning_rate))
    batch = config.batch_size
    # Traces (and compiles) the train step on one batch of the same shape.
    model.fit(
        ids[:batch],
        {name: y[:batch] for name, y in labels.items()},
        batch_size=batch,
        verbose=0,
    )
    timer = EpochTimer()
    model.fit(
        ids,
        labels,
        batch_size=batch,
        epochs=config.text_epochs,
        callbacks=[timer],
        verbose=0,
    )
    return {
        "body": body,
        "tasks": [name for name, _ in tasks],
        "parameters": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
        "epoch_seconds": timer.seconds,
        "seconds_per_epoch": statistics.median(timer.seconds),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_multitask_vs_single(config: Config) -> dict:
    if config.text_examples % config.batch_size:
        raise ValueError(
            "text_examples expected a multiple of batch_size (one batch "
            f"shape, one compiled step). Received: text_examples="
            f"{config.text_examples}, batch_size={config.batch_size}"
        )
    tasks = [tuple(t) for t in config.text_tasks]
    jobs = {"multitask": (tasks, "mmoe")}
    jobs.update({f"single_{t[0]}": ([t], "single_task") for t in tasks})
    rounds = []
    for r in range(config.text_rounds):
        runs = {}
        for key, (job_tasks, body) in jobs.items():
            runs[key] = run_forked(train_text_model, config, job_tasks, body)
            print(
                f"round {r}: {key:<22} "
                f"{runs[key]['seconds_per_epoch']:.2f} s/epoch, peak "
                f"{runs[key]['peak_rss_mb']:.0f} MiB",
                flush=True,
            )
        rounds.append(runs)
    models = {
        key: {
            "seconds_per_epoch": statistics.median(
                r[key]["seconds_per_epoch"] for r in rounds
            ),
            "peak_rss_mb": statistics.median(
                r[key]["peak_rss_mb"] for r in rounds
            ),
            "baseline_rss_mb": statistics.median(
                r[key]["baseline_rss_mb"] for r in rounds
            ),
            "parameters": rounds[0][key]["parameters"],
            "jit_compile": rounds[0][key]["jit_compile"],
        }
        for key in jobs
    }
    for m in models.values():
        m["training_rss_mb"] = m["peak_rss_mb"] - m["baseline_rss_mb"]
    singles = [models[k] for k in jobs if k != "multitask"]
    n = config.text_examples
    multi_rate = examples_per_second(
        n, [models["multitask"]["seconds_per_epoch"]]
    )
    single_rate = examples_per_second(
        n, [m["seconds_per_epoch"] for m in singles]
    )
    summary = {
        "multitask_examples_per_second": multi_rate,
        "three_single_examples_per_second": single_rate,
        "multitask_speedup": multi_rate / single_rate,
        "multitask_peak_rss_mb": models["multitask"]["peak_rss_mb"],
        # One after another the peak is the largest; side by side, the sum.
        "single_peak_rss_mb_max": max(m["peak_rss_mb"] for m in singles),
        "single_peak_rss_mb_sum": sum(m["peak_rss_mb"] for m in singles),
        "multitask_parameters": models["multitask"]["parameters"],
        "single_parameters_sum": sum(m["parameters"] for m in singles),
    }
    print(
        f"3-task MMoE {multi_rate:.0f} examples/s, three single-task models "
        f"{single_rate:.0f} examples/s ({summary['multitask_speedup']:.2f}x); "
        f"peak RSS {summary['multitask_peak_rss_mb']:.0f} MiB vs "
        f"{summary['single_peak_rss_mb_max']:.0f} MiB (largest single)",
        flush=True,
    )
    return {
        "data": (
            f"synthetic token ids: {n} examples per epoch, ids uniform in "
            f"[1, {config.vocabulary_size}), lengths uniform in "
            f"[{max(1, config.sequence_length // 8)}, "
            f"{config.sequence_length}], random labels"
        ),
        "timing": (
            "model.fit on in-memory arrays after a one-batch warm-up fit; "
            "seconds per epoch: median over the timed epochs, then over "
            "rounds; each model in its own process, rounds of (multitask, "
            "single ...) in turn"
        ),
        "memory": (
            "peak_rss_mb: the process's VmHWM after training; "
            "baseline_rss_mb: VmHWM before building the model (imports); "
            "training_rss_mb: the difference"
        ),
        "models": models,
        "summary": summary,
        "rounds": rounds,
    }


# === scaling: the MMoE layer against experts and tasks ===


def scaling_points(config: Config) -> list:
    """(num_experts, num_tasks) of both sweeps, shared point once."""
    points = [(e, config.num_tasks) for e in config.scaling_experts]
    points += [(config.num_experts, t) for t in config.scaling_tasks]
    return list(dict.fromkeys(points))


def scaling_child(config: Config) -> list:
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    batch, units = config.scaling_batch, config.expert_units
    x = tf.constant(
        rng.normal(size=(batch, config.input_dim)).astype("float32")
    )
    keys, fns = [], []
    for num_experts, num_tasks in scaling_points(config):
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
                clocked(lambda steps, run=run: run(tf.constant(steps)).numpy())
            )
    medians, samples, steps = time_blocks(
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
                "ms_iqr": quartiles_ms(s),
                "flops_per_step": flops,
                "gflops": flops / t / 1e9,
            }
        )
    return rows


def run_scaling(config: Config) -> dict:
    rows = run_forked(scaling_child, config)
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


def plot_scaling(scaling: dict, path: Path) -> Path:
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


# === Main ===

RUNNERS = {
    "deepctr": run_deepctr,
    "multitask_vs_single": run_multitask_vs_single,
    "scaling": run_scaling,
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
    parser.add_argument("--deepctr-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; expected some of {PARTS}")
    if args.deepctr_child:
        spec, out = args.deepctr_child
        config = Config(**json.loads(Path(spec).read_text()))
        write_atomic(Path(out), json.dumps(deepctr_child(config)))
        return {}

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
            result[part] = run_deepctr(config, meanwhile=start_forkserver)
        else:
            result[part] = RUNNERS[part](config)
        result[part]["wall_seconds"] = time.perf_counter() - part_start
    result["load_average_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - start
    output = args.output or (None if args.quick else RESULTS)
    if output:
        output.mkdir(parents=True, exist_ok=True)
        write_atomic(output / "cost.json", json.dumps(result, indent=2) + "\n")
        print(f"\nResults: {output / 'cost.json'}")
        if "scaling" in result:
            png = plot_scaling(result["scaling"], output / "cost_scaling.png")
            print(f"Plot: {png}")
    return result


if __name__ == "__main__":
    main()
