"""MultiTaskModel: inputs -> shared body -> per-task towers -> heads."""

import keras
from keras import ops

from keras_mmoe import _validation
from keras_mmoe.bag_of_ngrams import BagOfNgrams
from keras_mmoe.cgc import CGC
from keras_mmoe.logit_blend import LogitBlend
from keras_mmoe.logit_transfer import LogitTransfer
from keras_mmoe.losses import masked_loss_for
from keras_mmoe.metrics import default_metrics_for
from keras_mmoe.mmoe import MMoE
from keras_mmoe.omoe import OMoE
from keras_mmoe.ple import PLE
from keras_mmoe.shared_bottom import SharedBottom
from keras_mmoe.task import Task
from keras_mmoe.text_encoder import TextEncoder
from keras_mmoe.tfidf_linear import TfidfLinear

# Body name -> (layer class, default arguments besides num_tasks).
BODIES = {
    "mmoe": (MMoE, {"num_experts": 8, "expert_units": 64}),
    "omoe": (OMoE, {"num_experts": 8, "expert_units": 64}),
    "shared_bottom": (SharedBottom, {"units": 64}),
    "cgc": (
        CGC,
        {"num_shared_experts": 2, "num_task_experts": 2, "expert_units": 64},
    ),
    "ple": (
        PLE,
        {
            "num_levels": 2,
            "num_shared_experts": 2,
            "num_task_experts": 2,
            "expert_units": 64,
        },
    ),
    # One independent bottom (and text encoder) per task: no sharing.
    "single_task": (SharedBottom, {"units": 64}),
}
# The names `MultiTaskModel(body=...)` accepts.
BODY_NAMES = tuple(BODIES)
# The bodies with gates: a model with one of these has `gate_model()`.
GATED_BODIES = ("mmoe", "omoe", "cgc", "ple")
# Input names of a text model; with `linear`, the inputs are a dict.
TOKEN_IDS = "token_ids"
TERM_IDS = "term_ids"
TERM_COUNTS = "term_counts"
LOSS_WEIGHTINGS = ("fixed", "uncertainty")


@keras.saving.register_keras_serializable(package="keras_mmoe")
class MultiTaskModel(keras.Model):
    """A multi-output classification model: body shared across tasks.

    `inputs -> [TextEncoder] -> body -> one tower and head per task`, with the
    body one of `"mmoe"`, `"omoe"`, `"shared_bottom"`, `"cgc"`, `"ple"` or
    `"single_task"` (a separate encoder and bottom per task: the one model
    per task baseline, trained side by side). Outputs are a dict keyed by
    task name: binary tasks a sigmoid `(batch, 1)`, others a softmax
    `(batch, num_classes)`.

    `compile()` defaults to each task's masked loss (a label of -1 is missing
    and adds nothing; the loss is the mean over the task's labelled rows) and
    masked metrics. `loss_weighting="uncertainty"` learns the task weights
    (Kendall et al., 2018): `sum_k exp(-s_k) * L_k + s_k / 2`, with
    `s_k = log(sigma_k^2)` a trainable weight per task.

    With `wide` (text models), a `BagOfNgrams` linear model over the token
    ids' unigrams and hashed bigrams adds to every task's logits (Wide &
    Deep): the deep path learns what the tasks share, the wide one the
    words that go with each class.

    With `linear`, a `TfidfLinear` model over each text's distinct terms
    and their counts (inputs `"term_ids"` and `"term_counts"`, beside
    `"token_ids"`) gives every task a second set of logits, and a
    `LogitBlend` per task (`"<task>_blend"`) mixes them with the network's.
    The blend starts at the network alone and the linear part is not
    trainable: fit it and choose the blend on held-out data
    (`linear_layer()`, `blend_layer(task)`), as the pipeline's Trainer does.

    A task with `reads_from` (see `Task`) adds a learned linear map of those
    tasks' logits to its own (`LogitTransfer`, their gradient stopped): a
    coarse task reads a finer related one, e.g. a binary "recommended" the
    5-class rating.

    `gate_model()` maps the inputs to every task's gate weights; it needs a
    body with gates, one of `GATED_BODIES`.

    Args:
        tasks: list of `Task` (or dicts / `(name, num_classes)` tuples).
        body: str. Which shared body, see above.
        body_config: dict. Arguments of the body layer over its defaults
            (`BODIES`), e.g. `{"num_experts": 4, "gate_dropout": 0.1}`.
        input_dim: int. Width of a dense `"features"` input. Give this or
            `text_encoder`.
        text_encoder: dict. Arguments of `TextEncoder`; the input is then
            `"token_ids"`, int `(batch, sequence_length)` with 0 as padding.
        sequence_length: optional int, fixed length of `"token_ids"`.
        tower_units: list of ints. Hidden widths of every task tower.
        dropout: float in [0, 1). Dropout before each tower layer and head.
        loss_weighting: `"fixed"` (the tasks' `loss_weight`) or
            `"uncertainty"`.
        wide: optional dict. Arguments of the `BagOfNgrams` added to the
            logits (`ngram_buckets`, `scale`, `kernel_regularizer`); its
            vocabulary is the text encoder's. Only with `text_encoder`.
        linear: optional dict. Arguments of the `TfidfLinear` blended into
            the logits (`vocabulary_size`, the number of term ids). Only
            with `text_encoder`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> model = MultiTaskModel(
    ...     tasks=[Task("click", 2), Task("rating", 5)],
    ...     body="mmoe",
    ...     body_config={"num_experts": 4, "expert_units": 16},
    ...     input_dim=8,
    ... )
    >>> model.compile(optimizer="adam")
    >>> sorted(model(np.ones((2, 8))))
    ['click', 'rating']

    Reference:
        - Ma et al., "Modeling Task Relationships in Multi-task Learning with
          Multi-gate Mixture-of-Experts", KDD 2018.
        - Kendall et al., "Multi-Task Learning Using Uncertainty to Weigh
          Losses for Scene Geometry and Semantics", CVPR 2018.
    """

    def __init__(
        self,
        tasks,
        body: str = "mmoe",
        body_config: dict | None = None,
        input_dim: int | None = None,
        text_encoder: dict | None = None,
        sequence_length: int | None = None,
        tower_units=(32,),
        dropout: float = 0.0,
        loss_weighting: str = "fixed",
        wide: dict | None = None,
        linear: dict | None = None,
        **kwargs,
    ):
        tasks = [Task.coerce(t) for t in tasks]
        if not tasks:
            raise ValueError("`tasks` expected at least one task. Received: []")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"Task names must be unique. Received: {names}")
        order = reading_order(tasks)
        if body not in BODIES:
            raise ValueError(
                f"`body` expected one of {sorted(BODIES)}. Received: "
                f"body={body!r}"
            )
        if (input_dim is None) == (text_encoder is None):
            raise ValueError(
                "Give exactly one of `input_dim` (dense features) and "
                "`text_encoder` (token ids). Received: "
                f"input_dim={input_dim!r}, text_encoder={text_encoder!r}"
            )
        if wide is not None and text_encoder is None:
            raise ValueError(
                "`wide` reads token ids: it needs `text_encoder`. Received: "
                f"wide={wide!r}, text_encoder=None"
            )
        if linear is not None and text_encoder is None:
            raise ValueError(
                "`linear` reads a text's terms: it needs `text_encoder`. "
                f"Received: linear={linear!r}, text_encoder=None"
            )
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"`loss_weighting` expected one of {LOSS_WEIGHTINGS}. "
                f"Received: loss_weighting={loss_weighting!r}"
            )
        tower_units = (
            []
            if tower_units in (None, [], ())
            else _validation.units_list("tower_units", tower_units)
        )
        dropout = _validation.rate("dropout", dropout)
        layer_class, defaults = BODIES[body]
        body_config = dict(body_config or {})
        layer_config = {**defaults, **body_config}
        gated = body in GATED_BODIES
        num_body_tasks = 1 if body == "single_task" else len(tasks)

        # === Layers ===
        def make_body(name):
            try:
                return layer_class(
                    num_tasks=num_body_tasks,
                    **({"return_gate_weights": True} if gated else {}),
                    **layer_config,
                    name=name,
                )
            except TypeError as e:
                raise ValueError(
                    f"`body_config` has an argument {body!r} does not take: "
                    f"{e}. Received: body_config={body_config!r}"
                ) from None

        # === Functional Model ===
        if text_encoder is not None:
            token_ids = keras.Input(
                (sequence_length,), dtype="int32", name=TOKEN_IDS
            )
            inputs = token_ids
            if linear is not None:
                inputs = {
                    TOKEN_IDS: token_ids,
                    TERM_IDS: keras.Input(
                        (None,), dtype="int32", name=TERM_IDS
                    ),
                    TERM_COUNTS: keras.Input((None,), name=TERM_COUNTS),
                }

            def encode(name):
                return TextEncoder(**text_encoder, name=name)(token_ids)
        else:
            input_dim = _validation.positive_int("input_dim", input_dim)
            inputs = keras.Input((input_dim,), name="features")

            def encode(name):
                return inputs

        gate_outputs = {}
        if body == "single_task":
            task_features = [
                make_body(f"{t.name}_bottom")(encode(f"{t.name}_encoder"))[0]
                for t in tasks
            ]
        else:
            body_out = make_body(body)(encode("text_encoder"))
            if gated:
                task_features, gates = body_out
                gate_outputs = {
                    t.name: g for t, g in zip(tasks, gates, strict=True)
                }
            else:
                task_features = body_out
        wide_logits, linear_logits = {}, {}
        if wide is not None:
            # Keras names an unknown argument of `wide` itself.
            layer = BagOfNgrams(
                vocabulary_size=text_encoder["vocabulary_size"],
                units=sum(t.output_units for t in tasks),
                **wide,
                name="wide",
            )
            wide_logits = _split_by_task(layer(token_ids), tasks)
        if linear is not None:
            layer = TfidfLinear(
                units=sum(t.output_units for t in tasks),
                **linear,
                name="linear",
                trainable=False,
            )
            linear_logits = _split_by_task(
                layer([inputs[TERM_IDS], inputs[TERM_COUNTS]]), tasks
            )
        # Tasks whose logits are added to (wide, reads) or read by another
        # keep them apart from the activation; the others fuse it.
        read = {name for t in tasks for name in t.reads_from}
        logits, outputs = {}, {}
        for task, h in zip(tasks, task_features, strict=True):
            for i, width in enumerate(tower_units):
                if dropout:
                    h = keras.layers.Dropout(dropout)(h)
                h = keras.layers.Dense(
                    width, activation="relu", name=f"{task.name}_tower_{i}"
                )(h)
            if dropout:
                h = keras.layers.Dropout(dropout)(h)
            if not (
                task.name in wide_logits
                or task.name in linear_logits
                or task.name in read
                or task.reads_from
            ):
                outputs[task.name] = keras.layers.Dense(
                    task.output_units,
                    activation=_activation(task),
                    name=task.name,
                )(h)
                continue
            logits[task.name] = keras.layers.Dense(
                task.output_units, name=f"{task.name}_deep_logits"
            )(h)
            if task.name in wide_logits:
                logits[task.name] = keras.layers.Add()(
                    [logits[task.name], wide_logits[task.name]]
                )
        for task in order:  # Sources before their readers.
            if task.reads_from:
                transfer = LogitTransfer(
                    task.output_units, name=f"{task.name}_reads"
                )([logits[name] for name in task.reads_from])
                logits[task.name] = keras.layers.Add()(
                    [logits[task.name], transfer]
                )
            if task.name in linear_logits:
                logits[task.name] = LogitBlend(name=f"{task.name}_blend")(
                    [logits[task.name], linear_logits[task.name]]
                )
            if task.name in logits:
                outputs[task.name] = keras.layers.Activation(
                    _activation(task), name=task.name
                )(logits[task.name])
        outputs = {t.name: outputs[t.name] for t in tasks}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.tasks = tasks
        self.body = body
        self.body_config = body_config
        self.input_dim = input_dim
        self.text_encoder = text_encoder
        self.sequence_length = sequence_length
        self.tower_units = tower_units
        self.dropout = dropout
        self.loss_weighting = loss_weighting
        self.wide = wide
        self.linear = linear
        self._gate_outputs = gate_outputs
        self._task_losses = [masked_loss_for(t.num_classes) for t in tasks]
        self.task_loss_trackers = [
            keras.metrics.Mean(name=f"{t.name}_loss") for t in tasks
        ]
        self.task_log_variances = (
            self.add_weight(
                name="task_log_variances",
                shape=(len(tasks),),
                initializer="zeros",
            )
            if loss_weighting == "uncertainty"
            else None
        )

    def gate_model(self) -> keras.Model:
        """A model from the same inputs to `{task: gate weights}`."""
        if not self._gate_outputs:
            raise ValueError(
                f"Body {self.body!r} has no gates; gate diagnostics need one "
                f"of {GATED_BODIES}."
            )
        # A plain dict: the attribute is Keras's tracked dict, which JAX's
        # compiled predict step cannot return.
        return keras.Model(self.input, dict(self._gate_outputs))

    def linear_layer(self) -> TfidfLinear:
        """The `TfidfLinear` of a model built with `linear`.

        Its output columns are the tasks' logits in task order (one column
        for a binary task, one per class otherwise).
        """
        if self.linear is None:
            raise ValueError("This model has no linear part (`linear=None`).")
        return self.get_layer("linear")

    def blend_layer(self, task: str) -> LogitBlend:
        """The `LogitBlend` of a task of a model built with `linear`."""
        self.linear_layer()
        return self.get_layer(f"{task}_blend")

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Compiles with the tasks' masked losses and metrics by default.

        Passing `loss` uses Keras' own compiled loss instead (and so fixed
        weights only).
        """
        if loss is not None and self.loss_weighting == "uncertainty":
            raise ValueError(
                "loss_weighting='uncertainty' weighs the tasks' own masked "
                "losses; do not pass `loss` to compile()."
            )
        self._use_task_losses = loss is None
        if metrics is None:
            metrics = {
                t.name: default_metrics_for(t.num_classes) for t in self.tasks
            }
        super().compile(
            optimizer=optimizer, loss=loss, metrics=metrics, **kwargs
        )

    def compile_from_config(self, config):
        # Keras skips models whose compile() is overridden; ours takes the
        # base arguments, so restore them the base way.
        config = _portable_optimizer(config)
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if not getattr(self, "_use_task_losses", False) or y is None:
            return super().compute_loss(
                x, y, y_pred, sample_weight, training=training
            )
        total = ops.zeros(())
        for k, task in enumerate(self.tasks):
            weight = _by_task(sample_weight, task.name, k)
            loss = self._task_losses[k](
                _by_task(y, task.name, k), y_pred[task.name], weight
            )
            self.task_loss_trackers[k].update_state(loss)
            if self.task_log_variances is not None:
                s = self.task_log_variances[k]
                loss = ops.exp(-s) * loss + 0.5 * s
            total = total + task.loss_weight * loss
        for extra in self.losses:
            total = total + ops.cast(extra, total.dtype)
        return _scale_for_replicas(total)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "tasks": [t.get_config() for t in self.tasks],
            "body": self.body,
            "body_config": self.body_config,
            "input_dim": self.input_dim,
            "text_encoder": self.text_encoder,
            "sequence_length": self.sequence_length,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "loss_weighting": self.loss_weighting,
            "wide": self.wide,
            "linear": self.linear,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _split_by_task(logits, tasks):
    """`(batch, sum of the tasks' widths)` -> {task: its columns}."""
    split, start = {}, 0
    for task in tasks:
        split[task.name] = logits[:, start : start + task.output_units]
        start += task.output_units
    return split


def _activation(task: Task) -> str:
    return "sigmoid" if task.is_binary else "softmax"


def reading_order(tasks: list[Task]) -> list[Task]:
    """The tasks with every task after the tasks it reads from.

    `MultiTaskModel` builds the tasks' logits in this order; calling it
    first checks a set of tasks' `reads_from` without building a model.

    Args:
        tasks: list of `Task`.

    Returns:
        The same tasks, each after every task in its `reads_from`, otherwise
        in their given order.

    Raises:
        ValueError: naming a task in `reads_from` that is not among `tasks`,
            or the tasks of a cycle.

    Example:
    >>> tasks = [Task("recommended", 2, reads_from=["rating"]),
    ...          Task("rating", 5)]
    >>> [t.name for t in reading_order(tasks)]
    ['rating', 'recommended']
    """
    by_name = {t.name: t for t in tasks}
    for task in tasks:
        unknown = [n for n in task.reads_from if n not in by_name]
        if unknown:
            raise ValueError(
                f"Task {task.name!r} reads from unknown task(s) {unknown}. "
                f"Tasks: {list(by_name)}"
            )
    order, done, path = [], set(), []

    def visit(task):
        if task.name in done:
            return
        if task.name in path:
            cycle = [*path[path.index(task.name) :], task.name]
            raise ValueError(
                "Tasks' `reads_from` form a cycle: " + " -> ".join(cycle)
            )
        path.append(task.name)
        for name in task.reads_from:
            visit(by_name[name])
        path.pop()
        done.add(task.name)
        order.append(task)

    for task in tasks:
        visit(task)
    return order


def _portable_optimizer(compile_config: dict) -> dict:
    """The compile config with the optimizer named by its public class.

    Under PyTorch, Keras makes `keras.optimizers.Adam` (and others) an
    instance of a class of its torch backend and saves that module
    (`keras.src.backend.torch.optimizers.torch_adam`), which other backends
    cannot import. The public class of the same name has the same arguments
    and variables.
    """
    optimizer = compile_config.get("optimizer")
    if isinstance(optimizer, dict) and str(
        optimizer.get("module", "")
    ).startswith("keras.src.backend."):
        optimizer = {**optimizer, "module": "keras.optimizers"}
        optimizer.pop("registered_name", None)
        compile_config = {**compile_config, "optimizer": optimizer}
    return compile_config


def _scale_for_replicas(loss):
    """Divides by the number of replicas under a tf.distribute strategy.

    Each replica's loss is a mean over its own share of the batch, and the
    strategy sums the replicas' gradients; dividing here makes the step the
    gradient of the mean, as Keras does for its own losses (and Keras's
    loss tracker multiplies it back for display).
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * ops.cast(1.0 / replicas, loss.dtype)


def _by_task(values, name, index):
    if values is None:
        return None
    if isinstance(values, dict):
        return values.get(name)
    return values[index]
