"""A tiny Transform output for the trainer and serving tests.

`tiny_transform()` runs the real `preprocessing_fn` with tf.Transform's Beam
implementation, in process, on a few hand-written review rows, and lays the
result out as the Transform component does: a transform graph folder
(`tft.TFTransformOutput` reads it) and gzipped tf.Example TFRecords of the
transformed rows under `Split-<name>/`. The raw feature spec is what
CsvExampleGen and SchemaGen(infer_feature_shape=False) give: every column a
`VarLenFeature`, numbers int64.

Splits: `train` (analyzed and transformed), `validation` (transformed) and
`unlabelled` (transformed rows without any label, for error tests). The
label column `Single Class` has one class only, also for error tests.
"""

import dataclasses
import functools
import os
import shutil
import tempfile

TEXT_COLUMNS = ["Title", "Review Text"]
RECOMMENDED = "Recommended IND"  # int64 0/1: binary task
DEPARTMENT = "Department Name"  # string, 3 classes
SINGLE = "Single Class"  # one class only
LABEL_COLUMNS = [RECOMMENDED, DEPARTMENT, SINGLE]
MAX_LENGTH = 12
NUM_OOV_BUCKETS = 2

_DEPARTMENTS = {"dress": "Dresses", "top": "Tops", "pants": "Bottoms"}
_OPINIONS = {1: ["great", "lovely", "perfect"], 0: ["awful", "poor", "bad"]}


@dataclasses.dataclass
class TinyTransform:
    """Where `tiny_transform()` wrote its output, and the raw rows."""

    root: str
    transform_graph: str  # TFTransformOutput folder
    examples: str  # Split-<name>/ folders of transformed gzipped TFRecords
    preprocessing_config: dict  # PreprocessingConfig.to_dict()
    raw_rows: dict  # split -> list of raw row dicts (VarLen lists)

    def split_pattern(self, split: str) -> str:
        return os.path.join(self.examples, f"Split-{split}", "*")

    def texts(self, split: str) -> list[str]:
        """The rows' text columns joined as `preprocessing_fn` joins them."""
        return [
            " ".join(
                row[c][0].decode() if row[c] else "" for c in TEXT_COLUMNS
            ).strip()
            for row in self.raw_rows[split]
        ]


def raw_feature_spec() -> dict:
    import tensorflow as tf

    return {
        "Title": tf.io.VarLenFeature(tf.string),
        "Review Text": tf.io.VarLenFeature(tf.string),
        RECOMMENDED: tf.io.VarLenFeature(tf.int64),
        DEPARTMENT: tf.io.VarLenFeature(tf.string),
        SINGLE: tf.io.VarLenFeature(tf.string),
        "Age": tf.io.VarLenFeature(tf.int64),  # unused by the model
    }


def _row(i: int, labelled: bool = True) -> dict:
    word, department = list(_DEPARTMENTS.items())[i % 3]
    recommended = (i // 3) % 2
    opinion = _OPINIONS[recommended][i % 3]
    # Every fifth row misses its Recommended label, every seventh its
    # Department: missing labels are -1 and weigh nothing.
    return {
        "Title": [f"{opinion} {word}".encode()],
        "Review Text": (
            []
            if i % 4 == 3
            else [f"This {word} is {opinion}, size {i}.".encode()]
        ),
        RECOMMENDED: [recommended] if labelled and i % 5 != 4 else [],
        DEPARTMENT: ([department.encode()] if labelled and i % 7 != 6 else []),
        SINGLE: [b"only"] if labelled else [],
        "Age": [20 + i],
    }


def raw_rows() -> dict:
    return {
        "train": [_row(i) for i in range(48)],
        "validation": [_row(i) for i in range(100, 118)],
        "unlabelled": [_row(i, labelled=False) for i in range(200, 208)],
    }


def serialize_raw(rows: list[dict]) -> list[bytes]:
    """Raw rows as serialized tf.Examples, as ExampleGen writes them."""
    import tensorflow as tf

    def feature(values):
        if values and isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={k: feature(v) for k, v in row.items() if v}
            )
        ).SerializeToString()
        for row in rows
    ]


def _write_gzip_tfrecords(path: str, records: list[bytes]) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


@functools.cache
def tiny_transform() -> TinyTransform:
    """Runs the real preprocessing_fn on the tiny rows (once per process)."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import metadata_io

    from pipeline import features, preprocessing

    root = tempfile.mkdtemp(prefix="tiny_transform_")
    config = features.PreprocessingConfig(
        text_columns=TEXT_COLUMNS,
        label_columns=LABEL_COLUMNS,
        max_length=MAX_LENGTH,
        vocabulary_size=40,
        num_oov_buckets=NUM_OOV_BUCKETS,
    )
    rows = raw_rows()
    metadata = tft.DatasetMetadata.from_feature_spec(raw_feature_spec())
    transform_graph = os.path.join(root, "transform_graph")
    preprocessing_fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config=config.to_dict()
    )
    transformed = {}
    with beam.Pipeline() as p:
        with tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
            train = p | "Train" >> beam.Create(rows["train"])
            (train_out, out_metadata), transform_fn = (
                train,
                metadata,
            ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
            _ = transform_fn | tft_beam.WriteTransformFn(transform_graph)
            transformed["train"] = train_out
            for split in ("validation", "unlabelled"):
                data = p | f"Create{split}" >> beam.Create(rows[split])
                transformed[split], _ = (
                    (data, metadata),
                    transform_fn,
                ) | f"Transform{split}" >> tft_beam.TransformDataset()
            for split, pcoll in transformed.items():
                _ = (
                    pcoll
                    | f"Collect{split}" >> beam.combiners.ToList()
                    | (f"Store{split}")
                    >> beam.Map(_store, root=root, split=split)
                )
    # The Transform component writes the raw schema beside the graph.
    metadata_io.write_metadata(
        metadata,
        os.path.join(transform_graph, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    tft_output = tft.TFTransformOutput(transform_graph)
    coder = tft.coders.ExampleProtoCoder(tft_output.transformed_metadata.schema)
    examples = os.path.join(root, "transformed_examples")
    for split in transformed:
        instances = _load(root, split)
        _write_gzip_tfrecords(
            os.path.join(examples, f"Split-{split}", "data.gz"),
            [coder.encode(instance) for instance in instances],
        )
    shutil.rmtree(os.path.join(root, "tmp"), ignore_errors=True)
    return TinyTransform(
        root=root,
        transform_graph=transform_graph,
        examples=examples,
        preprocessing_config=config.to_dict(),
        raw_rows=rows,
    )


def _store(instances, root, split):
    import pickle

    with open(os.path.join(root, f"{split}.pkl"), "wb") as f:
        pickle.dump(instances, f)


def _load(root, split):
    import pickle

    with open(os.path.join(root, f"{split}.pkl"), "rb") as f:
        return pickle.load(f)


# Run in a fresh interpreter by `run_serving_check`: it imports only
# tensorflow and tensorflow_text, as a serving process would.
_SERVING_CHECK = r"""
import base64, json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF-Text ops)
from tensorflow_serving.apis import prediction_log_pb2

# With Keras 3 installed, `import tensorflow` itself imports keras; what
# matters is what loading and running the model brings in beyond that.
WATCHED = ("keras", "tensorflow_transform", "tfx", "keras_mmoe", "pipeline",
           "serving", "tf_keras")
baseline = {m for m in WATCHED if m in sys.modules}
model_dir, request_path, result_path = sys.argv[1:4]
with open(request_path) as f:
    request = json.load(f)
texts = [base64.b64decode(t) for t in request["texts"]]
examples = [base64.b64decode(e) for e in request["examples"]]
model = tf.saved_model.load(model_dir)


def spec(s):
    return [s.dtype.name, None if s.shape.rank is None else s.shape.as_list()]


def plain(outputs):
    out = {}
    for key, value in outputs.items():
        value = value.numpy()
        if value.dtype == object:
            value = [v.decode("utf-8", "replace") for v in value.tolist()]
        else:
            value = value.tolist()
        out[key] = value
    return out


result = {
    "signatures": {
        name: {
            "inputs": {k: spec(s) for k, s in
                       fn.structured_input_signature[1].items()},
            "positional_inputs": len(fn.structured_input_signature[0]),
            "outputs": {k: spec(s) for k, s in fn.structured_outputs.items()},
        }
        for name, fn in model.signatures.items()
    },
}
sigs = model.signatures
texts = tf.constant(texts, tf.string)
examples = tf.constant(examples, tf.string)
result["predict_text"] = plain(sigs["predict_text"](text=texts))
result["serving_default"] = plain(sigs["serving_default"](examples=examples))
# TFMA calls the signatures with one positional tensor.
result["serving_default_positional"] = plain(
    sigs["serving_default"](examples))
result["transform_features"] = plain(sigs["transform_features"](examples))

bad = {
    "empty_string": [b""],
    "one_megabyte": [b"lovely dress " * 80660],
    "non_utf8": [b"\xff\xfe\x80 caf\xc3", b"ok \xe9t\xe9"],
    "empty_batch": [],
}
result["bad_inputs"] = {}
for name, values in bad.items():
    out = sigs["predict_text"](text=tf.constant(values, tf.string))
    result["bad_inputs"][name] = {
        "values": plain(out),
        "shapes": {k: list(v.shape) for k, v in out.items()},
    }

warmup = []
path = model_dir + "/assets.extra/tf_serving_warmup_requests"
for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    req = log.predict_log.request
    inputs = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
    out = sigs[req.model_spec.signature_name or "serving_default"](
        **{k: tf.constant(v) for k, v in inputs.items()})
    warmup.append({
        "signature": req.model_spec.signature_name,
        "inputs": sorted(inputs),
        "batch": int(next(iter(inputs.values())).shape[0]),
        "outputs": {k: list(v.shape) for k, v in out.items()},
    })
result["warmup"] = warmup
result["modules"] = sorted(
    m for m in WATCHED if m in sys.modules and m not in baseline)
with open(result_path, "w") as f:
    json.dump(result, f)
"""


def run_serving_check(
    model_dir: str, texts: list, examples: list[bytes], workdir: str
) -> dict:
    """Loads `model_dir` in a subprocess importing only TF and TF-Text.

    Calls `predict_text` on `texts` (str or bytes), `serving_default`
    (keyword and positional) and `transform_features` on `examples`, bad
    inputs through `predict_text`, and every warmup record; returns the
    signatures' specs, every output as JSON-ready lists, and under
    "modules" the Keras or project modules that loading and running the
    model imported beyond `import tensorflow, tensorflow_text`.
    """
    import base64
    import json
    import subprocess
    import sys

    def b64(value):
        value = value.encode() if isinstance(value, str) else value
        return base64.b64encode(value).decode()

    request = os.path.join(workdir, "serving_check_request.json")
    result = os.path.join(workdir, "serving_check_result.json")
    with open(request, "w") as f:
        json.dump(
            {
                "texts": [b64(t) for t in texts],
                "examples": [b64(e) for e in examples],
            },
            f,
        )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    process = subprocess.run(
        [sys.executable, "-c", _SERVING_CHECK, model_dir, request, result],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if process.returncode:
        raise AssertionError(
            "Loading the SavedModel in a fresh process failed:\n"
            + process.stderr[-5000:]
        )
    with open(result) as f:
        return json.load(f)


def trainer_fn_args(
    tiny: TinyTransform,
    output_dir: str,
    custom_config: dict,
    train_split: str = "train",
    eval_split: str = "validation",
):
    """`FnArgs` as the Trainer's GenericExecutor builds them, on `tiny`."""
    import json

    from tfx.components.trainer import fn_args_utils
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = tiny.examples
    examples.split_names = artifact_utils.encode_split_names(
        list(tiny.raw_rows)
    )
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = tiny.transform_graph
    fn_args = fn_args_utils.get_common_fn_args(
        {"examples": [examples], "transform_graph": [transform_graph]},
        {
            "train_args": json.dumps({"splits": [train_split]}),
            "eval_args": json.dumps({"splits": [eval_split]}),
            "custom_config": json.dumps(custom_config),
        },
        working_dir=os.path.join(output_dir, "working"),
    )
    fn_args.serving_model_dir = os.path.join(output_dir, "serving_model")
    fn_args.model_run_dir = os.path.join(output_dir, "model_run")
    return fn_args
