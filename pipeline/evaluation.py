"""Per-task test metrics on labelled rows: accuracy, macro-F1, AUC."""

import numpy as np
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
