"""One 3-task text model against three single-task models: speed, memory.

A part of `python -m benchmarks.cost` (`multitask_vs_single`). The
pipeline's text model (`pipeline/configs.py` TRAINER_DEFAULTS: CNN encoder,
wide bag of n-grams, towers, dropout, batch 64, Adam) with an MMoE body and
the reviews' three tasks, against three single-task models (body
`"single_task"`, one task each) trained one after another on the same
examples. Inputs are synthetic token ids (uniform ids, lengths uniform in
[L/8, L]), not the reviews: a step's cost hardly depends on which words they
are. Examples/s counts each example once: for the three models, the
examples over the time to train all three.

Every model trains in a process of its own (`benchmarks.processes`), so each
peak resident memory (VmHWM) is its own. Rounds of (3-task, single A, B, C)
share the machine's drift.
"""

import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import processes  # noqa: E402
from benchmarks.cost_config import Config  # noqa: E402
from keras_mmoe import MultiTaskModel, Task  # noqa: E402


def examples_per_second(num_examples: int, seconds) -> float:
    """Examples/s of models trained one after another on the same
    `num_examples`, taking `seconds` each: every example counts once."""
    return num_examples / sum(seconds)


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
    # Imports only: the fork's inherited pages.
    baseline = processes.peak_rss_mb()
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
        "peak_rss_mb": processes.peak_rss_mb(),
    }


def run(config: Config) -> dict:
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
            runs[key] = processes.run_forked(
                train_text_model, config, job_tasks, body
            )
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
