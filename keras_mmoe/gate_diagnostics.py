"""Gate diagnostics: how each task's gate spreads its weight over experts.

A healthy MMoE gate uses several experts, and tasks that conflict use
different ones. Two failure modes show up here: polarization (every example
puts ~all its weight on one expert: per-example `entropy` near 0) and
collapse (every example picks the same expert: `effective_experts` near 1).

`collect_gate_weights` runs a gate model over data and `gate_statistics`
turns the weights into JSON-ready numbers (`keras_mmoe.gate_weights`),
`plot_gate_heatmap` draws the mean weights (`keras_mmoe.gate_heatmap`), and
the `GateDiagnostics` callback here does all three during `fit`.
"""

import importlib.util
import os
import time
from collections.abc import Callable

import keras

from keras_mmoe import _validation
from keras_mmoe.gate_heatmap import _png, plot_gate_heatmap, render_gate_heatmap
from keras_mmoe.gate_weights import (
    collect_gate_weights,
    gate_statistics,
    js_divergence,
)

__all__ = [
    "GateDiagnostics",
    "collect_gate_weights",
    "gate_statistics",
    "js_divergence",
    "plot_gate_heatmap",
    "render_gate_heatmap",
]


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
    >>> model = MultiTaskModel(
    ...     tasks=[Task("ctr", 2), Task("rating", 5)],
    ...     body_config={"num_experts": 4, "expert_units": 8},
    ...     input_dim=6,
    ... )
    >>> model.compile()
    >>> x = np.random.default_rng(0).normal(size=(64, 6))
    >>> y = {"ctr": (x[:, 0] > 0).astype(int), "rating": np.zeros(64, int)}
    >>> diagnostics = GateDiagnostics(x)  # log_dir=... adds TensorBoard.
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[diagnostics])
    >>> len(diagnostics.history), sorted(diagnostics.history[-1]["tasks"])
    (2, ['ctr', 'rating'])
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
        # Fail at construction rather than after the first epoch.
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
            image = render_gate_heatmap(
                stats, f"Mean gate weight per expert, epoch {epoch + 1}"
            )
            height, width, channels = image.shape
            values.append(
                Summary.Value(
                    tag="gate/heatmap",
                    image=Summary.Image(
                        height=height,
                        width=width,
                        colorspace=channels,
                        encoded_image_string=_png(image),
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
