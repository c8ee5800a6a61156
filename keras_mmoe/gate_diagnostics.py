"""Gate diagnostics: how each task's gate spreads its weight over experts.

A healthy MMoE gate uses several experts, and tasks that conflict use
different ones. Two failure modes show up here: polarization (every example
puts ~all its weight on one expert: per-example `entropy` near 0) and
collapse (every example picks the same expert: `effective_experts` near 1).

`collect_gate_weights` runs a gate model over data, `gate_statistics` turns
the weights into JSON-ready numbers, `plot_gate_heatmap` draws the mean
weights, and the `GateDiagnostics` callback does all three during `fit`.
"""

import contextlib
import importlib.util
import io
import math
import os
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np

from keras_mmoe import _validation

# Softmax rows in float16/bfloat16 can miss 1 by a few thousandths; a larger
# miss means these are not gate weights (logits, say).
_ROW_SUM_TOLERANCE = 1e-2


def _as_gate_matrix(task: str, weights) -> np.ndarray:
    """Checks one task's weights; returns float64 rows renormalized to 1."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Gate weights of task {task!r} must be a numeric 2-D array "
            f"(batch, num_experts). Received: {weights!r}"
        ) from e
    if w.ndim != 2:
        raise ValueError(
            f"Gate weights of task {task!r} must be 2-D (batch, "
            f"num_experts). Received shape {w.shape}"
        )
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(
            f"Gate weights of task {task!r} need at least one example and "
            f"one expert. Received shape {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(
            f"Gate weights of task {task!r} contain NaN or infinite values."
        )
    if np.any(w < 0):
        raise ValueError(
            f"Gate weights of task {task!r} must be non-negative. Received "
            f"a minimum of {w.min()}"
        )
    sums = w.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"Gate weights of task {task!r} must be softmax rows summing to "
            f"1. Received: row {bad[0]} sums to {sums[bad[0]]}"
        )
    return w / sums[:, None]


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis, with 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return np.maximum(-np.sum(p * np.log(safe), axis=-1), 0.0)


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats, in [0, log 2]."""
    m = 0.5 * (p + q)
    return max(float(_entropy(m) - 0.5 * (_entropy(p) + _entropy(q))), 0.0)


def _cosine_similarity(p: np.ndarray, q: np.ndarray) -> float:
    norm = float(np.linalg.norm(p) * np.linalg.norm(q))
    return float(np.dot(p, q)) / norm if norm > 0 else 0.0


def gate_statistics(gate_weights: Mapping[str, np.ndarray]) -> dict:
    """Summarizes each task's gate weights and compares tasks' gates.

    All logarithms are natural (nats). Rows are checked to sum to 1 (within
    0.01, for low-precision softmax) and renormalized.

    Args:
        gate_weights: mapping from task name to an array
            `(num_examples, num_experts)` of gate weights. Tasks may have
            different expert counts (CGC/PLE gates).

    Returns:
        A JSON-serializable dict (only dicts, lists, str, int and float):
        `{"tasks": {task: {...}}, "pairs": [{...}, ...]}`. Per task:

        - `num_examples`, `num_experts`: int.
        - `mean_weights`: list of `num_experts` floats, the mean gate weight
          on each expert (sums to 1).
        - `entropy`: mean over examples of the gate's entropy; 0 when every
          row is one-hot (polarized gate), `log(num_experts)` when uniform.
        - `normalized_entropy`: `entropy / log(num_experts)`, in [0, 1]
          (0 for a single expert).
        - `utilization`: list of `num_experts` floats, the fraction of
          examples whose largest gate weight is on each expert (an argmax
          histogram; a row tied between `k` experts counts `1/k` to each).
          Sums to 1.
        - `effective_experts`: `exp(entropy(mean_weights))`, the perplexity
          of the average gate: 1 when all examples together use a single
          expert, `num_experts` when load is spread evenly. It measures load
          spread across the data, not mixing within an example (that is
          `entropy`): one-hot rows spread evenly over experts still give
          `num_experts`.
        - `mean_max_weight`: mean over examples of the largest gate weight
          (1 for one-hot rows, `1 / num_experts` for uniform rows).

        `pairs` holds one record per pair of tasks `(a, b)`, in task order,
        with `task_a`, `task_b`, `js_divergence` (Jensen-Shannon divergence
        of the two `mean_weights`, nats, in [0, log 2]) and
        `cosine_similarity` (of the two `mean_weights`). The comparison
        assumes column `i` is the same expert for both tasks (true of MMoE;
        CGC/PLE task-specific columns are different experts); pairs with
        different expert counts are left out.

    Example:
    >>> stats = gate_statistics({"a": np.array([[0.5, 0.5], [1.0, 0.0]])})
    >>> stats["tasks"]["a"]["mean_weights"], stats["tasks"]["a"]["utilization"]
    ([0.75, 0.25], [0.75, 0.25])
    """
    if not isinstance(gate_weights, Mapping):
        raise ValueError(
            "`gate_weights` expected a mapping from task name to a 2-D array "
            f"(batch, num_experts). Received type {type(gate_weights)}"
        )
    if not gate_weights:
        raise ValueError(
            "`gate_weights` is empty: expected at least one task. "
            "Received: gate_weights={}"
        )
    tasks = {}
    means = {}
    for task, weights in gate_weights.items():
        task = str(task)
        w = _as_gate_matrix(task, weights)
        num_examples, num_experts = w.shape
        mean = w.mean(axis=0)  # (num_experts,)
        entropy = float(_entropy(w).mean())
        # Ties share the example, so uniform rows give uniform utilization.
        is_top = w >= w.max(axis=1, keepdims=True)  # (batch, num_experts)
        utilization = (is_top / is_top.sum(axis=1, keepdims=True)).mean(0)
        max_entropy = math.log(num_experts)
        tasks[task] = {
            "num_examples": int(num_examples),
            "num_experts": int(num_experts),
            "mean_weights": mean.tolist(),
            "entropy": entropy,
            "normalized_entropy": (
                entropy / max_entropy if num_experts > 1 else 0.0
            ),
            "utilization": utilization.tolist(),
            "effective_experts": float(np.exp(_entropy(mean))),
            "mean_max_weight": float(w.max(axis=1).mean()),
        }
        means[task] = mean
    names = list(tasks)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if means[a].shape != means[b].shape:
                continue
            pairs.append(
                {
                    "task_a": a,
                    "task_b": b,
                    "js_divergence": _js_divergence(means[a], means[b]),
                    "cosine_similarity": _cosine_similarity(means[a], means[b]),
                }
            )
    return {"tasks": tasks, "pairs": pairs}


def _batch_features(batch):
    """`(x, y[, sample_weight])` -> `x`, as Keras reads a tuple batch."""
    return batch[0] if isinstance(batch, tuple) else batch


def _predict_reads(x) -> bool:
    """Whether `model.predict` takes `x` whole (else: iterate batches)."""
    if isinstance(x, (Mapping, keras.utils.PyDataset)):
        return True
    if hasattr(x, "shape") and not isinstance(x, list):
        return True  # An array or tensor.
    # tf.data.Dataset, torch DataLoader: checked by module so that neither
    # framework is imported here.
    return type(x).__module__.split(".")[0] in ("tensorflow", "torch")


def _named_outputs(outputs) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        items = outputs.items()
    elif isinstance(outputs, (list, tuple)):
        items = ((f"task_{i}", o) for i, o in enumerate(outputs))
    else:
        items = [("task_0", outputs)]
    named = {str(k): np.asarray(v) for k, v in items}
    for name, w in named.items():
        if w.ndim != 2:
            raise ValueError(
                f"The gate model's output {name!r} must be 2-D (batch, "
                f"num_experts). Received shape {w.shape}"
            )
    return named


def collect_gate_weights(
    gate_model: keras.Model, x, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Runs a gate model over data (inference mode) and gathers its outputs.

    Args:
        gate_model: `keras.Model` mapping inputs to a dict
            `{task: (batch, num_experts)}` (a list of outputs is named
            `task_0`, `task_1`, ...).
        x: the inputs, as in `model.predict`: an array or a dict of arrays
            (predicted in slices of `batch_size`); a tuple
            `(x, y[, sample_weight])` as in `validation_data`, of which `x`
            is used; or batches: a `tf.data.Dataset` or
            `keras.utils.PyDataset` (read by `model.predict`), or a list,
            generator or other iterable (run batch by batch). A tuple batch
            is read as `(x, y[, sample_weight])`.
        batch_size: int. Batch size for in-memory arrays.

    Returns:
        Dict from task name to a numpy array `(num_examples, num_experts)`.

    Example:
    >>> inp = keras.Input((8,))
    >>> mmoe = MMoE(num_tasks=2, num_experts=4, expert_units=16,
    ...             return_gate_weights=True)
    >>> _, gates = mmoe(inp)
    >>> gate_model = keras.Model(inp, {"a": gates[0], "b": gates[1]})
    >>> w = collect_gate_weights(gate_model, np.ones((5, 8)))
    >>> w["a"].shape
    (5, 4)
    """
    _validation.positive_int("batch_size", batch_size)
    if isinstance(x, tuple):
        x = _batch_features(x)
    if _predict_reads(x):
        outputs = gate_model.predict(x, batch_size=batch_size, verbose=0)
        return _named_outputs(outputs)
    if not isinstance(x, Iterable):
        raise ValueError(
            "`x` expected an array, a dict of arrays, a tuple (x, y) or an "
            f"iterable of batches. Received type {type(x)}"
        )
    parts = [
        _named_outputs(gate_model.predict_on_batch(_batch_features(b)))
        for b in x
    ]
    if not parts:
        raise ValueError("`x` is empty: it yielded no batches.")
    names = list(parts[0])
    if any(list(p) != names for p in parts):
        raise ValueError(
            "The gate model returned different outputs for different "
            f"batches. Received: {[list(p) for p in parts]}"
        )
    return {n: np.concatenate([p[n] for p in parts]) for n in names}


def _mean_weight_rows(gate_weights_or_stats) -> tuple[list, list]:
    """Task names and mean-weight vectors from weights or statistics."""
    if not isinstance(gate_weights_or_stats, Mapping):
        raise ValueError(
            "`gate_weights_or_stats` expected a mapping (gate weights by task, "
            "or `gate_statistics` output). Received type "
            f"{type(gate_weights_or_stats)}"
        )
    stats = gate_weights_or_stats
    if not isinstance(stats.get("tasks"), Mapping):
        stats = gate_statistics(stats)
    if not stats["tasks"]:
        raise ValueError("The statistics hold no tasks: `tasks` is empty.")
    names, rows = [], []
    for task, task_stats in stats["tasks"].items():
        row = np.asarray(task_stats["mean_weights"], dtype=np.float64)
        if row.ndim != 1 or row.size == 0:
            raise ValueError(
                f"`mean_weights` of task {task!r} must be a non-empty 1-D "
                f"list. Received shape {row.shape}"
            )
        names.append(str(task))
        rows.append(row)
    return names, rows


def _render_heatmap_png(names: list, rows: list, title: str | None) -> bytes:
    """Tasks x experts heatmap of mean gate weights, as PNG bytes."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plotting gate heatmaps needs matplotlib: pip install matplotlib"
        ) from e

    num_tasks = len(rows)
    num_columns = max(len(r) for r in rows)
    # Ragged tasks (CGC/PLE) leave NaN cells, drawn blank.
    grid = np.full((num_tasks, num_columns), np.nan)
    for i, row in enumerate(rows):
        grid[i, : len(row)] = row
    vmax = max(float(np.nanmax(grid)), 1e-12)

    # A bare Figure on the Agg canvas: no pyplot global state or backend.
    fig = Figure(
        figsize=(
            max(4.0, 0.6 * num_columns + 2.5),
            max(2.2, 0.5 * num_tasks + 1.6),
        ),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    fontsize = 9 if num_columns <= 12 else 6
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if value < 0.6 * vmax else "black",
            )
    ax.set_xticks(range(num_columns), [str(j) for j in range(num_columns)])
    ax.set_yticks(range(num_tasks), names)
    ax.set_xlabel("expert")
    ax.set_ylabel("task")
    ax.set_title(title or "Mean gate weight per expert")
    fig.colorbar(image, ax=ax, label="mean gate weight")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _atomic_write(path: str, data: bytes) -> None:
    """Writes beside `path` then renames, so readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
    )
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def plot_gate_heatmap(
    gate_weights_or_stats, path, title: str | None = None
) -> str:
    """Writes a tasks x experts heatmap PNG of the mean gate weights.

    Rows are tasks, columns expert indices, and each cell is annotated with
    its value. Tasks with fewer experts (CGC/PLE gates see their own plus
    the shared experts) leave their extra cells blank. The file is written
    to a temporary name and renamed, so it is never seen half-written.

    Args:
        gate_weights_or_stats: gate weights by task (as for
            `gate_statistics`) or the output of `gate_statistics` (or an
            entry of `GateDiagnostics.history`).
        path: str or path-like. Destination PNG; parent folders are made.
        title: optional str. Figure title.

    Returns:
        The path written, as a str.

    Example:
    >>> plot_gate_heatmap({"a": np.full((3, 4), 0.25)}, "/tmp/gates.png")
    '/tmp/gates.png'
    """
    path = os.fspath(path)
    names, rows = _mean_weight_rows(gate_weights_or_stats)
    _atomic_write(path, _render_heatmap_png(names, rows, title))
    return path


def _scalars(stats: dict, detailed: bool) -> dict[str, float]:
    """Flat `gate/...` scalars; `detailed` adds per-expert values."""
    out = {}
    for task, s in stats["tasks"].items():
        prefix = f"gate/{task}"
        out[f"{prefix}/entropy"] = s["entropy"]
        out[f"{prefix}/normalized_entropy"] = s["normalized_entropy"]
        out[f"{prefix}/effective_experts"] = s["effective_experts"]
        if detailed:
            out[f"{prefix}/mean_max_weight"] = s["mean_max_weight"]
            for j, value in enumerate(s["mean_weights"]):
                out[f"{prefix}/mean_weight/expert_{j}"] = value
            for j, value in enumerate(s["utilization"]):
                out[f"{prefix}/utilization/expert_{j}"] = value
    for pair in stats["pairs"]:
        prefix = f"gate/{pair['task_a']}_vs_{pair['task_b']}"
        out[f"{prefix}/js_divergence"] = pair["js_divergence"]
        if detailed:
            out[f"{prefix}/cosine_similarity"] = pair["cosine_similarity"]
    return out


def _png_size_and_colorspace(png: bytes) -> tuple[int, int, int]:
    """(height, width, channels) from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", png[16:24])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(png[25], 4)
    return height, width, channels


def _default_gate_model_fn(model: keras.Model) -> keras.Model:
    if not callable(getattr(model, "gate_model", None)):
        raise ValueError(
            "GateDiagnostics needs `gate_model_fn` for a model without a "
            f"`gate_model()` method. Received a {type(model).__name__}"
        )
    return model.gate_model()


class GateDiagnostics(keras.callbacks.Callback):
    """Tracks gate statistics during `fit`, into logs and TensorBoard.

    Every `every_n_epochs` epochs, runs the model's gate model over `data`
    in inference mode, computes `gate_statistics`, appends them (with
    `"epoch"`, 0-based) to `history`, and adds to the epoch `logs`, for the
    callbacks after it (`History`, `EarlyStopping`, ...):
    `gate/<task>/entropy`, `gate/<task>/normalized_entropy`,
    `gate/<task>/effective_experts` and `gate/<a>_vs_<b>/js_divergence`.

    With `log_dir`, it also writes TensorBoard scalars at step `epoch`:
    the above plus `gate/<task>/mean_max_weight`,
    `gate/<task>/mean_weight/expert_<i>`, `gate/<task>/utilization/expert_<i>`
    and `gate/<a>_vs_<b>/cosine_similarity`, and with `write_images=True` the
    mean-weight heatmap as image `gate/heatmap`. The event files are written
    with the `tensorboard` package, without TensorFlow ops, so this works on
    any Keras backend.

    Args:
        data: inputs to measure the gates on, in any form
            `collect_gate_weights` takes (e.g. `(x_val, y_val)`); it is read
            again at every measurement, so a one-shot generator works once.
        log_dir: optional str. TensorBoard folder (may be the one given to
            `keras.callbacks.TensorBoard`: the tags do not clash).
        every_n_epochs: int. Measure after every N-th epoch.
        gate_model_fn: optional callable `model -> keras.Model` giving the
            gate model (outputs `{task: (batch, num_experts)}`); defaults to
            `model.gate_model()`. Called once per `fit`.
        batch_size: int. Batch size for in-memory `data`.
        write_images: bool. Also write the heatmap image (needs `log_dir`
            and matplotlib).

    Example:
    >>> diagnostics = GateDiagnostics((x_val, y_val), log_dir="logs/gates")
    >>> model.fit(x, y, epochs=5, callbacks=[diagnostics])
    >>> diagnostics.history[-1]["tasks"]["ctr"]["normalized_entropy"]
    """

    def __init__(
        self,
        data,
        log_dir=None,
        every_n_epochs: int = 1,
        gate_model_fn: Callable[[keras.Model], keras.Model] | None = None,
        batch_size: int = 256,
        write_images: bool = False,
    ):
        super().__init__()
        self.data = data
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.every_n_epochs = _validation.positive_int(
            "every_n_epochs", every_n_epochs
        )
        if gate_model_fn is not None and not callable(gate_model_fn):
            raise ValueError(
                "`gate_model_fn` expected a callable `model -> keras.Model`. "
                f"Received: gate_model_fn={gate_model_fn!r}"
            )
        self.gate_model_fn = gate_model_fn or _default_gate_model_fn
        self.batch_size = _validation.positive_int("batch_size", batch_size)
        self.write_images = bool(write_images)
        if self.write_images and self.log_dir is None:
            raise ValueError(
                "`write_images=True` writes to TensorBoard and needs "
                "`log_dir`. Received: log_dir=None"
            )
        # Fail now rather than after the first epoch.
        if self.log_dir is not None and not importlib.util.find_spec(
            "tensorboard"
        ):
            raise ImportError(
                "GateDiagnostics(log_dir=...) writes TensorBoard event files "
                "with the `tensorboard` package: pip install tensorboard"
            )
        if self.write_images and not importlib.util.find_spec("matplotlib"):
            raise ImportError(
                "GateDiagnostics(write_images=True) needs matplotlib: "
                "pip install matplotlib"
            )
        self.history = []
        self._gate_model = None
        self._writer = None

    def on_train_begin(self, logs=None):
        # The gate model shares the model's layers; build it once per fit.
        self._gate_model = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if self._gate_model is None:
            self._gate_model = self.gate_model_fn(self.model)
        weights = collect_gate_weights(
            self._gate_model, self.data, batch_size=self.batch_size
        )
        stats = gate_statistics(weights)
        self.history.append({"epoch": int(epoch), **stats})
        if logs is not None:
            logs.update(_scalars(stats, detailed=False))
        if self.log_dir is not None:
            self._write_tensorboard(epoch, stats)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._gate_model = None

    def _write_tensorboard(self, epoch: int, stats: dict) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import (
            EventFileWriter,
        )

        if self._writer is None:
            self._writer = EventFileWriter(
                self.log_dir, filename_suffix=".gates"
            )
        values = [
            Summary.Value(tag=tag, simple_value=value)
            for tag, value in _scalars(stats, detailed=True).items()
        ]
        if self.write_images:
            names, rows = _mean_weight_rows(stats)
            png = _render_heatmap_png(
                names, rows, f"Mean gate weight per expert, epoch {epoch + 1}"
            )
            height, width, channels = _png_size_and_colorspace(png)
            values.append(
                Summary.Value(
                    tag="gate/heatmap",
                    image=Summary.Image(
                        height=height,
                        width=width,
                        colorspace=channels,
                        encoded_image_string=png,
                    ),
                )
            )
        self._writer.add_event(
            Event(
                wall_time=time.time(),
                step=int(epoch),
                summary=Summary(value=values),
            )
        )
        self._writer.flush()
