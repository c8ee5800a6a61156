"""The Trainer's console progress: one line per epoch."""

import sys
import time
from collections.abc import Mapping

import keras


def main_metric(num_classes: int) -> tuple[str, str]:
    """A task's main metric: `(its Keras name, its short name)`; AUC for a
    binary task, accuracy otherwise."""
    return ("auc", "auc") if num_classes == 2 else ("accuracy", "acc")


def format_epoch(
    epoch: int,
    epochs: int | None,
    seconds: float,
    logs: Mapping[str, float],
    tasks: Mapping[str, int],
) -> str:
    """One epoch's line, e.g.
    `  epoch  3/20   12s  loss 1.234  val_loss 1.456  rating acc 0.671`.

    Args:
        epoch: int. The epoch, 0-based (shown 1-based).
        epochs: int or None. The number of epochs asked for.
        seconds: float. How long the epoch took, validation included.
        logs: the epoch's logs (`loss`, `val_loss`, `val_<task>_auc`, ...);
            a value missing from them is left out of the line.
        tasks: task name -> number of classes, in the order to show.
    """
    width = len(str(epochs)) if epochs else 1
    total = f"/{epochs}" if epochs else ""
    parts = [f"  epoch {epoch + 1:>{width}}{total}", f"{seconds:3.0f}s"]
    for key in ("loss", "val_loss"):
        if key in logs:
            parts.append(f"{key} {float(logs[key]):.3f}")
    for task, num_classes in tasks.items():
        name, short = main_metric(num_classes)
        key = f"val_{task}_{name}"
        if key in logs:
            parts.append(f"{task} {short} {float(logs[key]):.3f}")
    return "  ".join(parts)


class EpochProgress(keras.callbacks.Callback):
    """Prints one line per epoch: its time, the training and validation
    losses and each task's main validation metric (`format_epoch`).

    For `model.fit(..., verbose=0)`: Keras's own line lists every metric of
    every task.

    Args:
        tasks: Mapping[str, int]. Task name -> number of classes, in the
            order to show.
        out: optional text stream; defaults to `sys.stdout` at each print.

    Example:
    >>> progress = EpochProgress({"recommended_ind": 2, "rating": 5})
    >>> model.fit(train, validation_data=val, callbacks=[progress], verbose=0)
    """

    def __init__(self, tasks: Mapping[str, int], out=None):
        super().__init__()
        self.tasks = dict(tasks)
        self.out = out
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        line = format_epoch(
            epoch,
            (self.params or {}).get("epochs"),
            seconds,
            logs or {},
            self.tasks,
        )
        print(line, file=self.out or sys.stdout, flush=True)
