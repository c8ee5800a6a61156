"""Loads a SavedModel in this fresh interpreter and calls every signature.

    python serving/contract_probe.py MODEL_DIR REQUEST_JSON RESULT_JSON

Run by `serving.contract.run_probe`. It imports only TensorFlow, TF-Text and
the TF Serving protos, as a serving process holds a model, and writes as
JSON: the signatures' input and output specs, the outputs of `predict_text`
and `serving_default` (keyword and positional) and `transform_features` on
the request's texts and tf.Examples, the outputs of bad inputs, the replay
of every warmup record, and the Keras or project modules that loading and
running the model imported.
"""

import base64
import json
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF-Text ops)
from tensorflow_serving.apis import prediction_log_pb2

# With Keras 3 installed, `import tensorflow` itself imports keras; what
# matters is what loading and running the model brings in beyond that.
WATCHED = (
    "keras",
    "tensorflow_transform",
    "tfx",
    "keras_mmoe",
    "pipeline",
    "serving",
    "tf_keras",
)
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
            "inputs": {
                k: spec(s) for k, s in fn.structured_input_signature[1].items()
            },
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
result["serving_default_positional"] = plain(sigs["serving_default"](examples))
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
        **{k: tf.constant(v) for k, v in inputs.items()}
    )
    warmup.append(
        {
            "signature": req.model_spec.signature_name,
            "inputs": sorted(inputs),
            "batch": int(next(iter(inputs.values())).shape[0]),
            "outputs": {k: list(v.shape) for k, v in out.items()},
        }
    )
result["warmup"] = warmup
result["modules"] = sorted(
    m for m in WATCHED if m in sys.modules and m not in baseline
)
with open(result_path, "w") as f:
    json.dump(result, f)
