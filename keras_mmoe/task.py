"""Task: what one output of a multi-task model predicts."""

import dataclasses
import re

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclasses.dataclass(frozen=True)
class Task:
    """One classification task of a multi-task model.

    Args:
        name: str. Output name (the key of the model's output and label
            dicts). Letters, digits, `_`, `.` and `-`.
        num_classes: int. 2 makes a binary task (one sigmoid unit, labels
            0/1); more makes a softmax over class indices `0..num_classes-1`.
            A label of -1 is missing, in both cases.
        loss_weight: float. Fixed weight of the task's loss.
        reads_from: names of other tasks whose logits this task's logits
            read, through a learned linear map (`LogitTransfer`, the source
            logits' gradient stopped). For a task that is a coarser view of
            another: "recommended" reading "rating". A tuple of names; the
            model checks that they exist and form no cycle.

    Example:
    >>> Task("rating", num_classes=5, loss_weight=0.5).is_binary
    False
    >>> Task("recommended", 2, reads_from=["rating"]).reads_from
    ('rating',)
    """

    name: str
    num_classes: int
    loss_weight: float = 1.0
    reads_from: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                "Task `name` expected a non-empty string of letters, digits, "
                f"'_', '.' or '-'. Received: name={self.name!r}"
            )
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 2
        ):
            raise ValueError(
                f"Task {self.name!r}: `num_classes` expected an integer >= 2. "
                f"Received: num_classes={self.num_classes!r}"
            )
        if (
            isinstance(self.loss_weight, bool)
            or not isinstance(self.loss_weight, (int, float))
            or not self.loss_weight >= 0
        ):
            raise ValueError(
                f"Task {self.name!r}: `loss_weight` expected a non-negative "
                f"number. Received: loss_weight={self.loss_weight!r}"
            )
        reads_from = self.reads_from
        if (
            isinstance(reads_from, str)
            or not isinstance(reads_from, (list, tuple))
            or not all(isinstance(n, str) and n for n in reads_from)
            or len(set(reads_from)) != len(reads_from)
            or self.name in reads_from
        ):
            raise ValueError(
                f"Task {self.name!r}: `reads_from` expected a list of other "
                "tasks' names, each once, not the task itself. Received: "
                f"reads_from={reads_from!r}"
            )
        # Frozen dataclass: store the names as a tuple (hashable, and equal
        # after a JSON round trip of get_config()).
        object.__setattr__(self, "reads_from", tuple(reads_from))

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def output_units(self) -> int:
        return 1 if self.is_binary else self.num_classes

    def get_config(self) -> dict:
        return {**dataclasses.asdict(self), "reads_from": list(self.reads_from)}

    @classmethod
    def from_config(cls, config: dict) -> "Task":
        return cls(**config)

    @classmethod
    def coerce(cls, value) -> "Task":
        """A Task from a Task, a config dict or a (name, num_classes) pair."""
        if isinstance(value, Task):
            return value
        if isinstance(value, dict):
            return cls.from_config(value)
        if isinstance(value, (list, tuple)):
            return cls(*value)
        raise ValueError(
            "Expected a Task, a dict or a (name, num_classes[, loss_weight"
            f"[, reads_from]]) tuple. Received: {value!r}"
        )
