"""Gate weights: gathered from a gate model, summarized in statistics.

`collect_gate_weights` runs a gate model over data and returns each task's
gate weights `(num_examples, num_experts)`; `gate_statistics` turns them into
JSON-ready numbers per task (entropy, utilization, effective experts) and per
pair of tasks (`js_divergence`, cosine similarity).
"""

import math
from collections.abc import Iterable, Mapping

import keras
import numpy as np

from keras_mmoe import _validation

# Softmax rows in float16/bfloat16 can miss 1 by a few thousandths; a larger
# miss means these are not gate weights (logits, say).
_ROW_SUM_TOLERANCE = 1e-2


def _float64(values) -> np.ndarray | None:
    """`values` as a float64 array, or None if they are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _as_gate_matrix(task: str, weights) -> np.ndarray:
    """Checks one task's weights; returns float64 rows renormalized to 1."""
    w = _float64(weights)
    if w is None:
        raise ValueError(
            f"Gate weights of task {task!r} must be a numeric 2-D array "
            f"(batch, num_experts). Received: {weights!r}"
        )
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


def _as_distribution(name: str, values) -> np.ndarray:
    """A non-empty 1-D array of non-negative weights, scaled to sum to 1."""
    p = _float64(values)
    if (
        p is None
        or p.ndim != 1
        or not p.size
        or not np.all(np.isfinite(p))
        or np.any(p < 0)
        or not p.sum() > 0
    ):
        raise ValueError(
            f"`{name}` expected a 1-D array of non-negative numbers with a "
            f"positive sum. Received: {name}={values!r}"
        )
    return p / p.sum()


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats of two rows that sum to 1."""
    m = 0.5 * (p + q)
    return max(float(_entropy(m) - 0.5 * (_entropy(p) + _entropy(q))), 0.0)


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence of two distributions, in nats.

    `JS(p, q) = H(m) - (H(p) + H(q)) / 2` with `m = (p + q) / 2`: symmetric,
    0 for equal distributions, `log 2` for disjoint supports.

    Args:
        p: 1-D array of non-negative weights (e.g. a task's mean gate
            weights); scaled to sum to 1.
        q: 1-D array of the same length, scaled likewise.

    Returns:
        A float in [0, log 2].

    Example:
    >>> round(js_divergence([1.0, 0.0], [0.5, 0.5]), 4)
    0.2158
    """
    p = _as_distribution("p", p)
    q = _as_distribution("q", q)
    if p.shape != q.shape:
        raise ValueError(
            "`p` and `q` expected the same length. Received lengths "
            f"{p.size} and {q.size}"
        )
    return _js_divergence(p, q)


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
        with `task_a`, `task_b`, `js_divergence` (`js_divergence` of the
        two `mean_weights`, nats, in [0, log 2]) and
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
