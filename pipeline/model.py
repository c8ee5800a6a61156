"""The Trainer's `run_fn`: trains a MultiTaskModel on the transformed data.

Reads the Transform's output (`token_ids` and one `<task>_label` per task,
-1 = missing), builds `keras_mmoe.MultiTaskModel` over a `TextEncoder`,
trains with early stopping on the validation loss, and exports a SavedModel
with the Transform graph inside (`serving.export`).

Hyperparameters come from the Trainer's `custom_config` (defaults in
`pipeline.configs.TRAINER_DEFAULTS`):

- `preprocessing`: `PreprocessingConfig.to_dict()` of the Transform (the
  pipeline passes it); gives `text_columns`, `label_columns` and
  `num_oov_buckets`.
- `text_columns`, `label_columns`: optional overrides; `label_columns` may
  pick a subset of the Transform's label columns to train on.
- `body`, `body_config`: the shared body and its arguments.
- `encoder`, `embedding_dim`, `skip_padding`: the `TextEncoder`'s kind,
  width and whether the CNN skips padding; `text_encoder_config` (dict) adds
  any other `TextEncoder` argument.
- `tower_units`, `dropout`, `loss_weighting` (`"fixed"`/`"uncertainty"`).
- `reads_from`: `{reader: [sources]}` by label column or task name; each
  reader's logits read its sources' logits (`keras_mmoe.Task.reads_from`).
- `wide`: `BagOfNgrams` arguments of the linear unigram + bigram model added
  to the logits (`MultiTaskModel(wide=...)`), or None for none.
- `linear`, `linear_max_rows`: the TF-IDF logistic regression per task
  (`pipeline.linear`), fit on at most `linear_max_rows` training rows and
  chosen on at most as many validation rows (seeded uniform samples).
- `epochs`, `batch_size` (global, across replicas), `learning_rate`,
  `early_stopping_patience`, `seed`.
- `distribution`: `"default"`, `"mirrored"` (every local GPU) or
  `"multi_worker_mirrored"`: one process per worker, each with `TF_CONFIG`;
  each worker trains on its share of every global batch, and only the chief
  (worker 0 without a `chief` task) keeps its files.
- `tasks` (task -> number of classes, from the pipeline) is only checked
  against the label vocabularies, which decide the number of classes.

Writes into `fn_args.model_run_dir`: TensorBoard logs (with gate scalars for
gated bodies), `model.keras`, and `training_summary.json` (epochs run, best
validation loss, per-task label counts, final metrics, gate statistics).
`fn_args.train_steps` (TrainArgs.num_steps) is not used: training runs
`epochs` passes over the data, stopped early on the validation loss.
Progress is one line per epoch (`pipeline.epoch_progress`), or Keras's own
output when the environment sets `MMOE_VERBOSE` (`mmoe run --verbose`).
TFX and tf.Transform are TensorFlow's: `run_fn` needs Keras's TensorFlow
backend and says so on another (`serving.backend`).
"""

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time

import keras
import numpy as np
import scipy.sparse
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx_bsl.public import tfxio

from keras_mmoe import (
    GATED_BODIES,
    GateDiagnostics,
    MultiTaskModel,
    Task,
    collect_gate_weights,
    gate_statistics,
    reading_order,
)
from pipeline import configs, linear
from pipeline.epoch_progress import EpochProgress
from serving import backend, export, features, preprocessing

SUMMARY_FILE = "training_summary.json"
KERAS_MODEL_FILE = "model.keras"
DISTRIBUTIONS = ("default", "mirrored", "multi_worker_mirrored")
# Gate statistics are measured on at most this many validation rows.
GATE_EXAMPLES = 2048
_COUNT_BATCH = 1024


def _strategy_name_check(name) -> None:
    if name not in DISTRIBUTIONS:
        raise ValueError(
            f"`distribution` expected one of {DISTRIBUTIONS}. Received: "
            f"distribution={name!r}"
        )


def _strategy(name: str) -> tf.distribute.Strategy:
    _strategy_name_check(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Every local GPU; without GPUs, every logical CPU device (one unless
        # the process split its CPU into several, as the tests do).
        devices = tf.config.list_logical_devices("GPU") or (
            tf.config.list_logical_devices("CPU")
        )
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        # The cluster and this worker's place in it come from TF_CONFIG.
        return _MultiWorkerMirroredStrategy()


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` with the `reduce` Keras 3 calls.

    Keras 3 reduces across replicas in two ways that this strategy refuses
    across workers (as MirroredStrategy on one machine accepts them):
    before training, the first whole batch, a nest of per-replica values,
    only to read its shapes (keras-team/keras#20329); and after every step,
    each scalar metric with `axis=0` (tensorflow/tensorflow#72388). A nest
    gets this worker's own values, which have the shapes Keras needs; a
    scalar is averaged across replicas, as on one machine.
    """

    def reduce(self, reduce_op, value, axis):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(
                lambda v: self.experimental_local_results(v)[0], value
            )
        if axis is not None and (
            self.experimental_local_results(value)[0].shape.rank == 0
        ):
            axis = None
        return super().reduce(reduce_op, value, axis)


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the only one, the chief,
    or worker 0 of a cluster without a chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in cluster
    )


def _dataset(
    fn_args,
    tft_output: tft.TFTransformOutput,
    files,
    tasks: list[str],
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    terms: bool = False,
    rows: int | None = None,
) -> tf.data.Dataset:
    """Transformed examples -> `(inputs, {task: label int32})`.

    `inputs` is the int32 token ids, or with `terms` a dict that adds each
    text's term ids (int32) and counts (float32), padded with 0 to the
    batch's longest. With `rows` (the files' row count), the dataset has a
    known number of batches.
    """
    dataset = fn_args.data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size,
            num_epochs=1,
            shuffle=shuffle,
            shuffle_seed=seed,
            label_key=None,
        ),
        tft_output.transformed_metadata.schema,
    )

    def split(batch):
        x = export.model_inputs(batch, terms)
        y = {
            task: tf.cast(
                tf.reshape(batch[features.label_key(task)], [-1]), tf.int32
            )
            for task in tasks
        }  # (batch,) each, -1 = missing
        return x, y

    dataset = dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE)
    # Under a multi-worker strategy, every worker reads all files and keeps
    # its part of each global batch: the batches are one worker's, whatever
    # the number of files (sharding by file needs at least one per worker).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = dataset.with_options(options)
    if rows is None:
        return dataset
    # Keras ends a pass over a dataset of unknown length only when a step
    # finds no data: it warns "Your input ran out of data", and that empty
    # step still counts in the per-task loss means (`<task>_loss`).
    return dataset.apply(
        tf.data.experimental.assert_cardinality(math.ceil(rows / batch_size))
    )


def _label_counts(dataset: tf.data.Dataset, num_classes: dict) -> tuple:
    """Rows, and per task the count of each class index (one pass)."""
    counts = {task: np.zeros(n, np.int64) for task, n in num_classes.items()}
    rows = 0
    for _, labels in dataset:
        for task, label in labels.items():
            label = label.numpy()
            label = label[(label >= 0) & (label < num_classes[task])]
            counts[task] += np.bincount(label, minlength=num_classes[task])
        rows += int(next(iter(labels.values())).shape[0])
    return rows, counts


def _check_trainable(
    columns: dict[str, str], counts: dict, files, rows: int
) -> None:
    """A clear error for a task that cannot be trained, naming its column."""
    if rows == 0:
        raise ValueError(f"The training data has no rows. Files: {files!r}")
    for task, column in columns.items():
        labelled = int(counts[task].sum())
        present = int((counts[task] > 0).sum())
        if labelled == 0:
            raise ValueError(
                f"Label column {column!r} (task {task!r}) has no labelled "
                f"rows in the training data ({rows} rows): every label is "
                "missing. Drop the column or label some rows."
            )
        if present < 2:
            raise ValueError(
                f"Label column {column!r} (task {task!r}) has a single class "
                f"in the training data ({labelled} labelled rows): a "
                "classifier needs at least two. Drop the column."
            )


def _class_names(tft_output, columns: dict[str, str]) -> dict[str, list]:
    names = {}
    for task, column in columns.items():
        names[task] = preprocessing.class_names(tft_output, task)
        if len(names[task]) < 2:
            raise ValueError(
                f"Label column {column!r} (task {task!r}) has "
                f"{len(names[task])} class(es) in its label vocabulary "
                f"{names[task]!r}: a classifier needs at least two. Drop the "
                "column."
            )
    return names


def _config(custom_config: dict | None) -> dict:
    """TRAINER_DEFAULTS overridden by custom_config, checked."""
    custom_config = dict(custom_config or {})
    config = {**configs.TRAINER_DEFAULTS, **custom_config}
    transform = dict(custom_config.get("preprocessing") or {})
    overrides = {
        k: custom_config[k]
        for k in ("text_columns", "label_columns")
        if custom_config.get(k)
    }
    if not {"text_columns", "label_columns"} <= {*transform, *overrides}:
        raise ValueError(
            "custom_config needs `preprocessing` (the Transform's "
            "PreprocessingConfig as a dict) or `text_columns` and "
            f"`label_columns`. Received keys: {sorted(custom_config)!r}"
        )
    prep = features.PreprocessingConfig.from_dict({**transform, **overrides})
    config["preprocessing"] = prep
    # Serving must not parse any of the Transform's labels, trained or not.
    config["transform_label_columns"] = list(
        transform.get("label_columns", prep.label_columns)
    )
    _strategy_name_check(config["distribution"])
    for key in (
        "epochs",
        "batch_size",
        "early_stopping_patience",
        "linear_max_rows",
    ):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{key}` expected a positive integer. Received: "
                f"{key}={value!r}"
            )
    return config


def resolve_reads_from(reads_from, label_columns) -> dict[str, list[str]]:
    """`reads_from` by label column or task name -> by task name, checked.

    Raises a ValueError naming an unknown name, a malformed value or a
    cycle, so `mmoe run` can refuse it before any work.
    """
    columns = {features.task_name(c): c for c in label_columns}
    known = {**{c: t for t, c in columns.items()}, **{t: t for t in columns}}
    if not reads_from:
        return {}
    if not isinstance(reads_from, dict) or not all(
        isinstance(k, str)
        and isinstance(v, list)
        and all(isinstance(n, str) for n in v)
        for k, v in reads_from.items()
    ):
        raise ValueError(
            "`reads_from` expected {reader: [source, ...]} of label columns "
            f"or task names. Received: reads_from={reads_from!r}"
        )
    names = [*reads_from, *(n for v in reads_from.values() for n in v)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"`reads_from` names unknown task(s) {unknown}: expected label "
            f"columns {list(label_columns)} or task names {list(columns)}."
        )
    resolved = {known[k]: [known[n] for n in v] for k, v in reads_from.items()}
    reading_order([Task(t, 2, reads_from=resolved.get(t, ())) for t in columns])
    return resolved


def _term_batches(dataset: tf.data.Dataset, tasks: list[str]):
    """`(term ids, term counts, {task: labels})` numpy batches, in order."""
    for x, y in dataset:
        yield (
            x[features.TERM_IDS].numpy(),
            x[features.TERM_COUNTS].numpy(),
            {t: y[t].numpy() for t in tasks},
        )


def _document_frequency(layer, batches) -> int:
    """Sets the layer's document frequencies from one pass over `batches`
    (`_term_batches`); returns their number of rows."""
    df = np.zeros(layer.vocabulary_size, np.int64)
    rows = 0
    for ids, counts, _ in batches:
        df += np.bincount(ids[counts > 0], minlength=layer.vocabulary_size)
        rows += ids.shape[0]
    layer.set_document_frequency(df, rows)
    return rows


def _sample(rows: int, max_rows: int, rng: np.random.Generator):
    """Sorted indices of `max_rows` of `rows` rows drawn uniformly without
    replacement, or None when all `rows` fit."""
    if rows <= max_rows:
        return None
    return np.sort(rng.choice(rows, size=max_rows, replace=False))


def _sampled(batches, sample):
    """The rows of `batches` (`_term_batches`) whose number, counted on
    across the batches from 0, is in `sample` (sorted); every row when
    `sample` is None."""
    if sample is None:
        yield from batches
        return
    start = 0
    for ids, counts, labels in batches:
        end = start + ids.shape[0]
        low, high = np.searchsorted(sample, [start, end])
        keep = sample[low:high] - start
        start = end
        if keep.size:
            yield (
                ids[keep],
                counts[keep],
                {t: y[keep] for t, y in labels.items()},
            )


def _rows(dataset: tf.data.Dataset, sample, batch_size: int):
    """The rows of `dataset` (`_dataset`'s batches) whose number, counted on
    across the batches from 0, is in `sample` (sorted), batched again with
    term ids and counts padded with 0; `dataset` itself when `sample` is
    None."""
    if sample is None:
        return dataset
    table = tf.constant(sample, tf.int64)
    last = len(sample) - 1

    def kept(i, row):
        j = tf.minimum(tf.searchsorted(table, tf.reshape(i, [1]))[0], last)
        return tf.equal(table[j], i)

    return (
        dataset.unbatch()
        .enumerate()
        .filter(kept)
        .map(lambda i, row: row)
        .padded_batch(batch_size)
        .apply(
            tf.data.experimental.assert_cardinality(
                math.ceil(len(sample) / batch_size)
            )
        )
    )


def _tfidf_rows(layer, batches, tasks) -> tuple:
    """The layer's TF-IDF vectors as a CSR matrix, and the labels."""
    data, indices, indptr = [], [], [0]
    labels = {t: [] for t in tasks}
    for ids, counts, y in batches:
        weights = np.asarray(layer.term_weights([ids, counts]))
        present = counts > 0
        data.append(weights[present])
        indices.append(ids[present])
        indptr.extend(indptr[-1] + np.cumsum(present.sum(axis=1)))
        for t in tasks:
            labels[t].append(y[t])
    matrix = scipy.sparse.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.asarray(indptr),
        ),
        shape=(len(indptr) - 1, layer.vocabulary_size),
    )
    return matrix, {
        t: np.concatenate(v) if v else np.zeros(0, np.int32)
        for t, v in labels.items()
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# === Steps of run_fn ===


@dataclasses.dataclass
class _Transformed:
    """The Transform's output, and the tasks its vocabularies define."""

    tft_output: tft.TFTransformOutput
    columns: dict[str, str]  # task -> label column
    reads_from: dict[str, list[str]]
    class_names: dict[str, list]
    sequence_length: int
    vocabulary_size: int

    @property
    def tasks(self) -> list[str]:
        return list(self.columns)

    @property
    def num_classes(self) -> dict[str, int]:
        return {t: len(self.class_names[t]) for t in self.columns}


@dataclasses.dataclass
class _LabelCounts:
    """Rows, and per task the count of each class, of the two splits."""

    rows: int
    counts: dict[str, np.ndarray]
    val_rows: int
    val_counts: dict[str, np.ndarray]


def _read_transform_output(fn_args, config: dict) -> _Transformed:
    """Opens the Transform output and checks the tasks against it."""
    prep = config["preprocessing"]
    # `transform_output` is the deprecated name of `transform_graph_path`.
    tft_output = tft.TFTransformOutput(
        getattr(fn_args, "transform_graph_path", None)
        or fn_args.transform_output
    )
    columns = {features.task_name(c): c for c in prep.label_columns}
    reads_from = resolve_reads_from(
        config.get("reads_from"), prep.label_columns
    )
    spec = tft_output.transformed_feature_spec()
    missing = [
        features.label_key(t)
        for t in columns
        if features.label_key(t) not in spec
    ]
    if missing:
        raise ValueError(
            f"Label features {missing!r} are not in the Transform output. "
            f"Its features: {sorted(spec)!r}"
        )
    sequence_length = int(spec[features.TOKEN_IDS].shape[0])
    vocabulary_size = (
        tft_output.vocabulary_size_by_name(features.TOKEN_VOCABULARY)
        + 1  # padding id 0
        + prep.num_oov_buckets
    )
    data = _Transformed(
        tft_output=tft_output,
        columns=columns,
        reads_from=reads_from,
        class_names=_class_names(tft_output, columns),
        sequence_length=sequence_length,
        vocabulary_size=vocabulary_size,
    )
    num_classes = data.num_classes
    for task, expected in (config.get("tasks") or {}).items():
        if task in num_classes and expected != num_classes[task]:
            logging.warning(
                "Task %r: %d classes in the training split's vocabulary, %d "
                "in the pipeline's tasks; using the vocabulary.",
                task,
                num_classes[task],
                expected,
            )
    return data


def _in_order(fn_args, data: _Transformed, files, terms=False):
    """The files' examples unshuffled, in large batches, for one pass."""
    return _dataset(
        fn_args,
        data.tft_output,
        files,
        data.tasks,
        _COUNT_BATCH,
        shuffle=False,
        terms=terms,
    )


def _count_labels(fn_args, data: _Transformed) -> _LabelCounts:
    """Counts both splits' rows and labels; refuses untrainable data."""
    rows, counts = _label_counts(
        _in_order(fn_args, data, fn_args.train_files),
        data.num_classes,
    )
    _check_trainable(data.columns, counts, fn_args.train_files, rows)
    val_rows, val_counts = _label_counts(
        _in_order(fn_args, data, fn_args.eval_files),
        data.num_classes,
    )
    if val_rows == 0:
        raise ValueError(
            "The validation data has no rows; early stopping needs some. "
            f"Files: {fn_args.eval_files!r}"
        )
    return _LabelCounts(rows, counts, val_rows, val_counts)


@contextlib.contextmanager
def _validation_cache():
    """The file name the validation batches are cached under, in a temporary
    folder removed on exit (also on an error).

    Every process gets its own folder, so the workers of a multi-worker
    strategy, each a process, never share a cache file.
    """
    with tempfile.TemporaryDirectory(prefix="mmoe_validation_cache_") as tmp:
        yield os.path.join(tmp, "validation")


def _datasets(
    fn_args, data: _Transformed, labels: _LabelCounts, config, cache_file
):
    """The shuffled training batches, and the validation batches cached in
    `cache_file` (read once here to fill it)."""
    terms = bool(config.get("linear"))
    train = _dataset(
        fn_args,
        data.tft_output,
        fn_args.train_files,
        data.tasks,
        config["batch_size"],
        shuffle=True,
        seed=config.get("seed"),
        terms=terms,
        rows=labels.rows,
    ).prefetch(tf.data.AUTOTUNE)
    validation = _dataset(
        fn_args,
        data.tft_output,
        fn_args.eval_files,
        data.tasks,
        config["batch_size"],
        shuffle=False,
        terms=terms,
        rows=labels.val_rows,
    ).cache(cache_file)
    # A file cache is complete only once read to the end, and refuses a
    # second reader while a first one is still writing it: fill it before
    # anything reads part of it (the gate statistics take a few batches).
    # TensorFlow still logs that the iterator "did not fully read the
    # dataset being cached" (tensorflow/tensorflow#60174): the files stay.
    validation.reduce(np.int64(0), lambda n, _: n + 1)
    return train, validation


def _build_model(config, data: _Transformed, strategy) -> MultiTaskModel:
    """The compiled MultiTaskModel, its variables in the strategy's scope."""
    tft_output = data.tft_output
    with strategy.scope():
        model = MultiTaskModel(
            tasks=[
                Task(t, n, reads_from=data.reads_from.get(t, ()))
                for t, n in data.num_classes.items()
            ],
            body=config["body"],
            body_config=config.get("body_config"),
            text_encoder={
                "vocabulary_size": data.vocabulary_size,
                "embedding_dim": config["embedding_dim"],
                "encoder": config["encoder"],
                "max_length": data.sequence_length,
                "skip_padding": config["skip_padding"],
                **(config.get("text_encoder_config") or {}),
            },
            sequence_length=data.sequence_length,
            tower_units=config["tower_units"],
            dropout=config["dropout"],
            loss_weighting=config["loss_weighting"],
            wide=config.get("wide"),
            linear=(
                {
                    "vocabulary_size": tft_output.vocabulary_size_by_name(
                        features.TERM_VOCABULARY
                    )
                    + tft_output.vocabulary_size_by_name(
                        features.BIGRAM_VOCABULARY
                    )
                    + 1  # padding id 0
                }
                if config.get("linear")
                else None
            ),
        )
        model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
    return model


def _linear_rows(fn_args, layer, data, validation, labels, config) -> tuple:
    """Sets the layer's document frequencies from every training row; returns
    the TF-IDF rows and labels the regressions are fit and chosen on.

    Returns `((x, y) of the training sample, (x, y) of the validation
    sample, the validation sample, training rows)`: a sample is every row of
    a split of at most `linear_max_rows` rows, else that many drawn
    uniformly with the Trainer's seed (a validation sample is None when it
    is every row).
    """
    tasks = data.tasks

    def train_batches():
        train = _in_order(fn_args, data, fn_args.train_files, terms=True)
        return _term_batches(train, tasks)

    rows = _document_frequency(layer, train_batches())
    rng = np.random.default_rng(config.get("seed"))
    max_rows = config["linear_max_rows"]
    train_sample = _sample(rows, max_rows, rng)
    val_sample = _sample(labels.val_rows, max_rows, rng)
    train = _tfidf_rows(layer, _sampled(train_batches(), train_sample), tasks)
    val = _tfidf_rows(
        layer, _sampled(_term_batches(validation, tasks), val_sample), tasks
    )
    return train, val, val_sample, rows


def _fit_linear(fn_args, model, data, validation, labels, config) -> dict:
    """Fits the TF-IDF logistic regressions, C per task on validation.

    Memory follows `linear_max_rows`, not the splits' rows: the training
    split is read twice as a stream (document frequencies, then the rows
    of its sample). Validation is sampled too, as its matrix would grow
    with the rows as well: the sample's rows are returned with their
    logits and labels (`validation_sample`), and `_choose_blends` takes
    the network's outputs on the same rows (`_rows`), so C, the blend
    weight and the metrics they report all see one set of rows.
    """
    start_time = time.perf_counter()
    layer = model.linear_layer()
    (x_train, y_train), (x_val, y_val), val_sample, rows = _linear_rows(
        fn_args, layer, data, validation, labels, config
    )
    used = {
        "train_rows": rows,
        "train_rows_used": x_train.shape[0],
        "validation_rows": labels.val_rows,
        "validation_rows_used": x_val.shape[0],
    }
    kernel = np.zeros(layer.kernel.shape, np.float32)
    bias = np.zeros(layer.bias.shape, np.float32)
    fits, logits, start = {}, {}, 0
    for task in model.tasks:
        name = task.name
        fit = linear.fit_task(
            x_train,
            y_train[name],
            x_val,
            y_val[name],
            data.num_classes[name],
            seed=config.get("seed"),
        )
        end = start + task.output_units
        kernel[:, start:end], bias[start:end] = fit.kernel, fit.bias
        logits[name] = fit.validation_logits
        start = end
        fits[name] = {
            "c": fit.c,
            "validation_metric": fit.validation_metric,
            "fitted_after_seconds": round(time.perf_counter() - start_time, 1),
            **used,
        }
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    return {
        "fits": fits,
        "validation_logits": logits,
        "validation_labels": y_val,
        "validation_sample": val_sample,
    }


def _gate_data(validation: tf.data.Dataset, batch_size: int):
    """The validation batches the gate statistics are measured on."""
    return validation.take(max(1, GATE_EXAMPLES // batch_size))


def _keras_output() -> bool:
    """Whether Keras prints its own per-epoch output (`VERBOSE_ENV`)."""
    return os.environ.get(configs.VERBOSE_ENV, "") not in ("", "0")


def _train_network(model, train, validation, data, config, run_dir) -> dict:
    """Fits, stopping early on the validation loss; returns the history."""
    batch_size = config["batch_size"]
    diagnostics = (
        GateDiagnostics(
            _gate_data(validation, batch_size),
            log_dir=run_dir,
            batch_size=batch_size,
        )
        if config["body"] in GATED_BODIES
        else None
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=config["early_stopping_patience"],
        restore_best_weights=True,
    )
    keras_output = _keras_output()
    callbacks = [
        *([diagnostics] if diagnostics else []),
        early_stopping,
        keras.callbacks.TensorBoard(log_dir=run_dir),
        *([] if keras_output else [EpochProgress(data.num_classes)]),
    ]
    return model.fit(
        train,
        validation_data=validation,
        epochs=config["epochs"],
        callbacks=callbacks,
        verbose=2 if keras_output else 0,
    ).history


def _evaluate(model, validation) -> dict:
    """The model's loss and metrics on the validation data."""
    return model.evaluate(validation, return_dict=True, verbose=0)


def _choose_blends(model, validation, linear_fit: dict, batch_size) -> dict:
    """Per task, the linear weight of the blend that validation prefers,
    on the validation rows the linear part was chosen on."""
    rows = _rows(validation, linear_fit["validation_sample"], batch_size)
    probabilities = model.predict(
        rows.map(lambda x, y: x), verbose=0
    )  # The blends still give the network alone.
    chosen = {}
    for task in model.tasks:
        name = task.name
        labels = linear_fit["validation_labels"][name]
        deep = linear.probabilities_to_logits(probabilities[name])
        lin = linear_fit["validation_logits"][name]
        weight, score = linear.choose_blend(labels, deep, lin)
        model.blend_layer(name).set_blend(1.0 - weight, weight)
        chosen[name] = {
            **linear_fit["fits"][name],
            "linear_weight": weight,
            "network_validation_metric": linear.main_metric(labels, deep),
            "blend_validation_metric": score,
        }
    return chosen


def _gate_statistics(model, validation, config) -> dict | None:
    """The gates' statistics on validation rows; None without gates."""
    if config["body"] not in GATED_BODIES:
        return None
    batch_size = config["batch_size"]
    return gate_statistics(
        collect_gate_weights(
            model.gate_model(),
            _gate_data(validation, batch_size),
            batch_size=batch_size,
        )
    )


def _summary(
    config,
    data: _Transformed,
    labels: _LabelCounts,
    history: dict,
    replicas: int,
    final: dict,
    network: dict,
    blends: dict | None,
    gates: dict | None,
) -> dict:
    """The content of `training_summary.json`."""
    val_losses = history["val_loss"]
    best_epoch = int(np.nanargmin(val_losses)) if val_losses else None
    return {
        "epochs_run": len(val_losses),
        "replicas": replicas,
        "best_epoch": best_epoch,
        "best_val_loss": None if best_epoch is None else val_losses[best_epoch],
        "validation_metrics": final,
        "network_validation_metrics": network,
        "linear": blends,
        "history": history,
        "tasks": {
            t: {
                "column": data.columns[t],
                "num_classes": len(data.class_names[t]),
                "class_names": data.class_names[t],
                "train_label_counts": labels.counts[t].tolist(),
                "validation_label_counts": labels.val_counts[t].tolist(),
            }
            for t in data.tasks
        },
        "train_rows": labels.rows,
        "validation_rows": labels.val_rows,
        "vocabulary_size": data.vocabulary_size,
        "sequence_length": data.sequence_length,
        "config": {
            k: v
            for k, v in config.items()
            if k not in ("preprocessing", "tasks")
        },
        "preprocessing": config["preprocessing"].to_dict(),
        "gates": gates,
    }


def _write_summary(run_dir: str, summary: dict) -> None:
    """Writes `summary` as `training_summary.json` into `run_dir`."""
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, SUMMARY_FILE), "w") as f:
        json.dump(_jsonable(summary), f, indent=2)


def _export(model, data: _Transformed, config, serving_model_dir) -> None:
    """Exports the SavedModel for serving, the Transform graph inside."""
    export.export_serving_model(
        model,
        data.tft_output,
        serving_model_dir,
        text_columns=config["preprocessing"].text_columns,
        label_columns=config["transform_label_columns"],
        class_names=data.class_names,
    )


@contextlib.contextmanager
def _output_dirs(fn_args, strategy):
    """(run dir, serving dir): the Trainer's for the chief, a temporary
    folder's for any other worker.

    Every worker saves and exports, as a multi-worker strategy needs each
    to take part in reading its variables; only the chief's files are kept.
    """
    if _is_chief(strategy):
        yield fn_args.model_run_dir, fn_args.serving_model_dir
        return
    with tempfile.TemporaryDirectory(prefix="mmoe_worker_") as tmp:
        yield (
            os.path.join(tmp, "model_run"),
            os.path.join(tmp, "serving_model"),
        )


# TFX Trainer calls this.
def run_fn(fn_args) -> None:
    """Trains, writes TensorBoard logs and a summary, exports for serving.

    Args:
        fn_args: `tfx.components.FnArgs` from the Trainer: `train_files`,
            `eval_files`, `data_accessor`, `transform_graph_path`,
            `custom_config` (see the module docstring), `model_run_dir` and
            `serving_model_dir`.
    """
    backend.require_tensorflow("The pipeline's Trainer")
    config = _config(fn_args.custom_config)
    # Before any TensorFlow op: a multi-worker strategy configures the
    # collective ops, which TensorFlow allows only at program start.
    strategy = _strategy(config["distribution"])
    data = _read_transform_output(fn_args, config)
    labels = _count_labels(fn_args, data)
    seed = config.get("seed")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    with (
        _validation_cache() as cache_file,
        _output_dirs(fn_args, strategy) as (run_dir, serving_dir),
    ):
        train, validation = _datasets(fn_args, data, labels, config, cache_file)
        model = _build_model(config, data, strategy)
        linear_fit = (
            _fit_linear(fn_args, model, data, validation, labels, config)
            if config.get("linear")
            else None
        )
        history = _train_network(
            model, train, validation, data, config, run_dir
        )
        # The restored (best) weights, measured again; then with the blends.
        network = _evaluate(model, validation)
        blends = (
            _choose_blends(model, validation, linear_fit, config["batch_size"])
            if linear_fit
            else None
        )
        final = _evaluate(model, validation) if linear_fit else network
        summary = _summary(
            config,
            data,
            labels,
            history,
            replicas=strategy.num_replicas_in_sync,
            final=final,
            network=network,
            blends=blends,
            gates=_gate_statistics(model, validation, config),
        )
        _write_summary(run_dir, summary)
        model.save(os.path.join(run_dir, KERAS_MODEL_FILE))
        _export(model, data, config, serving_dir)
