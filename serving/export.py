"""Exports a trained MultiTaskModel with its Transform graph for TF Serving.

The SavedModel holds the Keras 3 model and the tf.Transform graph, so it
reads raw data and needs no Python code at serving time: loading it takes
`tensorflow` plus `import tensorflow_text` (the tokenizer's ops). Exporting
is TensorFlow's: it needs Keras's TensorFlow backend, and says so on another
(`serving.backend`).

Signatures (`T` is each task name, `C_T` its number of classes):

- `serving_default`: `examples`, string `(batch,)` serialized raw
  tf.Examples (the CSV columns as ExampleGen writes them; label columns may
  be absent) -> per task `T_probabilities` float32 `(batch, C_T)` and
  `T_label` string `(batch,)`. This is what TF Serving's Predict API and
  TFMA's Evaluator call; TFMA looks a model's predictions up by the
  MetricsSpec's `output_names`, which the pipeline sets to
  `T_probabilities`.
- `predict_text`: `text`, string `(batch,)` raw UTF-8 text -> the same
  outputs. The text goes into the first text column, the other text
  columns are empty (the Transform joins them with a space, so pass them
  joined).
- `transform_features`: `examples`, as `serving_default` -> the transformed
  features: `token_ids` int64 `(batch, max_length)`; for a model with a
  linear part, `term_ids` int32 and `term_counts` float32 `(batch, n)`,
  padded with 0 to the batch's most terms; and per task
  `T_label` int64 `(batch,)` (the class index, a missing label clamped to
  0) and `T_weight` float32 `(batch,)` (1 when labelled, else 0). TFMA runs
  it through `preprocessing_function_names` to get labels and weights.

`T_probabilities[:, i]` is the probability of class `i`, line `i` of the
task's label vocabulary; binary tasks get two columns `[p(class 0),
p(class 1)]` from the model's one sigmoid unit. `T_label` is the name of
the most probable class (the first one on ties).

`assets.extra/tf_serving_warmup_requests` holds PredictionLog records, one
Predict request per signature above that serves predictions, which TF
Serving replays at load so the first real request is not slow.
"""

import os
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from serving import backend, features

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_WARMUP_TEXTS = ("", "A lovely dress, true to size.")


def _text_feature(spec, texts: tf.Tensor):
    """A raw text column as parsing `spec` from tf.Examples would give it."""
    batch = tf.shape(texts, out_type=tf.int64)[0]
    if isinstance(spec, tf.io.VarLenFeature):
        indices = tf.stack(
            [tf.range(batch), tf.zeros([batch], tf.int64)], axis=1
        )  # (batch, 2): one value per row
        return tf.SparseTensor(indices, texts, tf.stack([batch, 1]))
    # A FixedLenFeature of one string per example.
    return tf.reshape(texts, tf.concat([[batch], spec.shape], axis=0))


def _empty_feature(spec, batch: tf.Tensor):
    """A raw column with no value in any row, as parsing would give it."""
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.SparseTensor(
            tf.zeros([0, 2], tf.int64),
            tf.zeros([0], spec.dtype),
            tf.stack([tf.cast(batch, tf.int64), 0]),
        )
    default = spec.default_value
    if default is None:
        default = "" if spec.dtype == tf.string else 0
    return tf.fill(
        tf.concat([[batch], spec.shape], axis=0),
        tf.constant(default, spec.dtype),
    )


def _check_text_spec(column: str, spec) -> None:
    supported = isinstance(spec, tf.io.VarLenFeature) or (
        isinstance(spec, tf.io.FixedLenFeature)
        and list(spec.shape) in ([], [1])
    )
    if not supported or spec.dtype != tf.string:
        raise ValueError(
            f"Text column {column!r} must be a string VarLenFeature or a "
            f"FixedLenFeature of one string per example. Received: {spec!r}"
        )


class _ServingModule(tf.Module):
    """Tracks the Keras model and the Transform layer; holds the signatures."""

    def __init__(
        self,
        model: keras.Model,
        tft_output,
        text_columns: Sequence[str],
        label_columns: Sequence[str],
        class_names: Mapping[str, Sequence[str]],
    ):
        super().__init__(name="mmoe_serving")
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        raw_spec = tft_output.raw_feature_spec()
        missing = [
            c
            for c in list(text_columns) + list(label_columns)
            if c not in raw_spec
        ]
        if missing:
            raise ValueError(
                f"Columns {missing!r} are not raw features of the Transform "
                f"graph. Its raw features: {sorted(raw_spec)!r}"
            )
        for column in text_columns:
            _check_text_spec(column, raw_spec[column])
        self._raw_spec = raw_spec
        # Serving reads everything but the labels, which clients never have.
        self._serving_spec = {
            k: v for k, v in raw_spec.items() if k not in set(label_columns)
        }
        self._text_columns = list(text_columns)
        self._tasks = list(model.tasks)
        self._class_names = {
            t.name: tf.constant(list(class_names[t.name]), tf.string)
            for t in self._tasks
        }

        examples = tf.TensorSpec([None], tf.string, name="examples")
        text = tf.TensorSpec([None], tf.string, name="text")
        self.serve_examples = tf.function(
            self._serve_examples, input_signature=[examples]
        )
        self.predict_text = tf.function(
            self._predict_text, input_signature=[text]
        )
        self.transform_features = tf.function(
            self._transform_features, input_signature=[examples]
        )

    def _predict(self, raw_features: dict) -> dict:
        transformed = self.tft_layer(raw_features)
        predictions = self.model(
            model_inputs(transformed, terms=self.model.linear is not None),
            training=False,
        )
        outputs = {}
        for task in self._tasks:
            p = tf.cast(predictions[task.name], tf.float32)
            if task.is_binary:
                p = tf.concat([1.0 - p, p], axis=1)  # (batch, 2)
            outputs[features.probabilities_key(task.name)] = p  # (batch, C)
            outputs[features.predicted_label_key(task.name)] = tf.gather(
                self._class_names[task.name], tf.argmax(p, axis=1)
            )  # (batch,)
        return outputs

    def _serve_examples(self, examples):
        raw = tf.io.parse_example(examples, self._serving_spec)
        return self._predict(raw)

    def _predict_text(self, text):
        batch = tf.shape(text)[0]
        first, *others = self._text_columns
        raw = {first: _text_feature(self._raw_spec[first], text)}
        for column in others:
            raw[column] = _empty_feature(self._raw_spec[column], batch)
        return self._predict(raw)

    def _transform_features(self, examples):
        raw = tf.io.parse_example(examples, self._raw_spec)
        transformed = self.tft_layer(raw)
        outputs = {features.TOKEN_IDS: transformed[features.TOKEN_IDS]}
        if self.model.linear is not None:
            inputs = model_inputs(transformed, terms=True)
            for key in (features.TERM_IDS, features.TERM_COUNTS):
                outputs[key] = inputs[key]
        for task in self._tasks:
            label = transformed[features.label_key(task.name)]  # (batch,)
            outputs[features.label_key(task.name)] = tf.maximum(
                label, tf.constant(0, label.dtype)
            )
            outputs[features.weight_key(task.name)] = tf.cast(
                label >= 0, tf.float32
            )
        return outputs


def model_inputs(transformed: dict, terms: bool):
    """The Transform's output as the model's input: int32 token ids, or
    with `terms` a dict adding the term ids and counts, dense, 0-padded."""
    # The model's ids are int32; every id is < its vocabulary size.
    token_ids = tf.cast(transformed[features.TOKEN_IDS], tf.int32)
    if not terms:
        return token_ids

    def dense(key, dtype):
        value = transformed[key]
        if isinstance(value, tf.SparseTensor):
            value = tf.sparse.to_dense(value)
        return tf.cast(value, dtype)

    return {
        features.TOKEN_IDS: token_ids,
        features.TERM_IDS: dense(features.TERM_IDS, tf.int32),
        features.TERM_COUNTS: dense(features.TERM_COUNTS, tf.float32),
    }


def _raw_example(column: str, text: str) -> bytes:
    """A serialized tf.Example with `text` in the (string) column."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                column: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[text.encode()])
                )
            }
        )
    ).SerializeToString()


def _write_warmup(
    export_dir: str, text_column: str, texts: Sequence[str]
) -> str:
    from tensorflow_serving.apis import (
        model_pb2,
        predict_pb2,
        prediction_log_pb2,
    )

    requests = {
        features.SERVING_DEFAULT: [_raw_example(text_column, t) for t in texts],
        features.PREDICT_TEXT: [t.encode() for t in texts],
    }
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature, values in requests.items():
            input_name = features.SIGNATURE_INPUTS[signature]
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=signature)
            )
            request.inputs[input_name].CopyFrom(
                tf.make_tensor_proto(values, dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def export_serving_model(
    model: keras.Model,
    tft_output,
    export_dir: str,
    text_columns: Sequence[str],
    label_columns: Sequence[str],
    class_names: Mapping[str, Sequence[str]] | None = None,
    warmup_texts: Sequence[str] | None = None,
) -> str:
    """Writes a SavedModel serving raw examples and raw text.

    See the module docstring for the signatures and their outputs.

    Args:
        model: a trained `keras_mmoe.MultiTaskModel` on `token_ids` (its
            `tasks` name the outputs).
        tft_output: `tft.TFTransformOutput` of the Transform that made the
            model's training data.
        export_dir: str. Destination folder (TF Serving wants it named by a
            version number); it must not hold a SavedModel already.
        text_columns: list of str. Raw text columns, in the Transform's
            order; `predict_text` fills the first.
        label_columns: list of str. Raw label columns, left out of what
            `serving_default` parses (all of the Transform's, not only the
            model's tasks).
        class_names: optional dict task -> class names, index i first; read
            from the Transform's label vocabularies when not given.
        warmup_texts: optional list of str for the warmup requests.

    Returns:
        `export_dir`.

    Example:
    >>> export_serving_model(
    ...     model, tft.TFTransformOutput(graph_dir), "serving/mmoe/1",
    ...     text_columns=["Title", "Review Text"],
    ...     label_columns=["Recommended IND", "Department Name"],
    ... )
    """
    backend.require_tensorflow("Exporting a SavedModel")
    text_columns = list(text_columns)
    if not text_columns:
        raise ValueError(
            "`text_columns` expected at least one column. Received: []"
        )
    if not hasattr(model, "tasks"):
        raise ValueError(
            "`model` expected a keras_mmoe.MultiTaskModel (with `tasks`). "
            f"Received a {type(model).__name__}"
        )
    if class_names is None:
        class_names = {
            t.name: [
                v.decode("utf-8")
                for v in tft_output.vocabulary_by_name(
                    features.label_vocabulary_name(t.name)
                )
            ]
            for t in model.tasks
        }
    for task in model.tasks:
        names = list(class_names.get(task.name, []))
        if len(names) != task.num_classes:
            raise ValueError(
                f"Task {task.name!r} has {task.num_classes} classes but "
                f"{len(names)} class names: {names!r}"
            )
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(
            f"`export_dir` already holds a SavedModel: {export_dir!r}"
        )

    module = _ServingModule(
        model, tft_output, text_columns, label_columns, class_names
    )
    signatures = {
        name: fn.get_concrete_function()
        for name, fn in (
            (features.SERVING_DEFAULT, module.serve_examples),
            (features.PREDICT_TEXT, module.predict_text),
            (features.TRANSFORM_FEATURES, module.transform_features),
        )
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    _write_warmup(
        export_dir,
        text_columns[0],
        list(warmup_texts or DEFAULT_WARMUP_TEXTS),
    )
    return export_dir
