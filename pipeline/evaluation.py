"""Per-task test metrics on labelled rows: accuracy, macro-F1, AUC."""

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score


def task_metrics(labels, probabilities):
    """labels: (n,) ints with -1 missing; probabilities: (n, 1) or (n, C)."""
    keep = labels >= 0
    y = labels[keep]
    p = np.asarray(probabilities)[keep]
    if len(np.unique(y)) < 2:
        auc = None  # Undefined with one class present; never NaN.
    if p.ndim == 1 or p.shape[1] == 1:
        score = p.reshape(-1)
        predicted = (score >= 0.5).astype(int)
        if len(np.unique(y)) >= 2:
            auc = roc_auc_score(y, score)
    else:
        predicted = p.argmax(axis=1)
        present = np.unique(y)
        auc = (
            None
            if len(present) < 2
            else (
                roc_auc_score(
                    y,
                    p[:, present] / p[:, present].sum(axis=1, keepdims=True),
                    multi_class="ovr",
                    average="macro",
                    labels=present,
                )
                if len(present) > 2
                else roc_auc_score(y == present[-1], p[:, present[-1]])
            )
        )
    return {
        "n": int(keep.sum()),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro")),
        "auc": None if auc is None else float(auc),
    }


def read_split(path: str, text_columns) -> tuple[pd.DataFrame, list[str]]:
    """A split's CSV as strings, and its texts: the text columns joined
    with a space, as the Transform joins them."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame, frame[list(text_columns)].agg(" ".join, axis=1).tolist()


def label_indices(values, class_names) -> np.ndarray:
    """Label strings -> their index in `class_names`; empty or unknown
    labels -> -1 (missing)."""
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index.get(v.strip(), -1) for v in values], dtype="int64")


def split_scores(labels, probabilities, texts) -> dict:
    """`task_metrics` on every row, the count of rows without a known label,
    and `with_text`: the metrics on the rows whose text is not empty (the
    protocol of data/README.md's reference figures), None when none of
    those is labelled."""
    has_text = np.array([bool(t.strip()) for t in texts], dtype=bool)
    p = np.asarray(probabilities)
    scores = task_metrics(labels, p)
    scores["unseen_or_missing_labels"] = int((labels < 0).sum())
    scores["with_text"] = (
        task_metrics(labels[has_text], p[has_text])
        if (has_text & (labels >= 0)).any()
        else None
    )
    return scores


def format_table(results):
    """{task: metrics} -> a plain-text table."""
    width = max([len("task"), *map(len, results)]) + 2
    lines = [
        f"{'task':<{width}}{'n':>7}{'accuracy':>10}{'macro_f1':>10}{'auc':>8}"
    ]
    for task, m in results.items():
        lines.append(
            f"{task:<{width}}{m['n']:>7}{m['accuracy']:>10.4f}"
            f"{m['macro_f1']:>10.4f}"
            + (f"{m['auc']:>8.4f}" if m["auc"] is not None else f"{'-':>8}")
        )
    return "\n".join(lines)
