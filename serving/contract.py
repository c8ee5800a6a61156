"""Checks an exported model's serving contract in a fresh process.

    python -m serving.contract output/demo/serving/mmoe [--text-column Title]

The model is loaded in a subprocess that imports only TensorFlow and
TF-Text (`run_probe`), as TF Serving would hold it,
and must: have the three signatures with string `(batch,)` inputs; give for
every task `T_probabilities` float32 `(batch, C)` rows summing to 1 and
`T_label` among the class names; give the same answers on raw text
(`predict_text`) and on tf.Examples (`serving_default`, also called
positionally as TFMA does); give valid outputs for an empty string, a 1 MB
text, invalid UTF-8 and an empty batch; run every warmup record. Prints what
failed, exit code 1, or "contract holds", exit code 0.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TEXTS = [
    "Lovely dress, true to size.",
    "The fabric ripped after one wash. Returned it.",
    "",
]
# Rows of the bad inputs `contract_probe.py` sends to predict_text.
BAD_INPUT_ROWS = {
    "empty_string": 1,
    "one_megabyte": 1,
    "non_utf8": 2,
    "empty_batch": 0,
}
FORBIDDEN = {"keras", "tensorflow_transform", "tfx", "keras_mmoe", "pipeline"}
_PROBE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "contract_probe.py"
)


def run_probe(
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
        [sys.executable, _PROBE, model_dir, request, result],
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


def check(model: str, text_column: str = "Title") -> list[str]:
    """The problems found (an empty list when the contract holds)."""
    from serving import client, predict

    model_dir = os.path.abspath(predict.resolve_model_dir(model))
    examples = [client.text_example(text_column, t) for t in TEXTS]
    with tempfile.TemporaryDirectory() as tmp:
        served = run_probe(model_dir, TEXTS, examples, tmp)
    problems = []
    loaded = FORBIDDEN & set(served["modules"])
    if loaded:
        problems.append(f"loading needed project modules: {sorted(loaded)}")
    signatures = served["signatures"]
    for name, input_name in (
        ("serving_default", "examples"),
        ("predict_text", "text"),
        ("transform_features", "examples"),
    ):
        inputs = signatures.get(name, {}).get("inputs")
        if inputs != {input_name: ["string", [None]]}:
            problems.append(f"{name}: inputs {inputs!r}")
    outputs = signatures.get("predict_text", {}).get("outputs", {})
    tasks = sorted(
        k[: -len("_probabilities")]
        for k in outputs
        if k.endswith("_probabilities")
    )
    if not tasks:
        problems.append(f"predict_text has no T_probabilities: {outputs}")
    text_out = served["predict_text"]
    for task in tasks:
        p = np.array(text_out[f"{task}_probabilities"])
        names = predict.class_names(model_dir, task)
        if outputs[f"{task}_label"] != ["string", [None]]:
            problems.append(f"{task}_label spec {outputs[f'{task}_label']}")
        if p.shape != (len(TEXTS), len(names or p[0])):
            problems.append(f"{task}_probabilities shape {p.shape}")
        if not np.allclose(p.sum(axis=1), 1, atol=1e-4):
            problems.append(f"{task}_probabilities rows do not sum to 1")
        if names and not set(text_out[f"{task}_label"]) <= set(names):
            problems.append(f"{task}_label outside the class names {names}")
        for key in ("serving_default", "serving_default_positional"):
            q = np.array(served[key][f"{task}_probabilities"])
            if q.shape != p.shape or not np.allclose(q, p, atol=1e-5):
                problems.append(f"{key} differs from predict_text ({task})")
    for name, bad in served["bad_inputs"].items():
        rows = BAD_INPUT_ROWS[name]
        for key, shape in bad["shapes"].items():
            if shape[0] != rows:
                problems.append(f"bad input {name}: {key} shape {shape}")
        for task in tasks:
            p = np.array(bad["values"][f"{task}_probabilities"])
            if rows and not np.allclose(p.sum(axis=1), 1, atol=1e-4):
                problems.append(f"bad input {name}: {task} not a distribution")
    if len(served["warmup"]) < 2:
        problems.append(f"{len(served['warmup'])} warmup records, expected 2")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a SavedModel or TF Serving model dir")
    parser.add_argument("--text-column", default="Title")
    args = parser.parse_args(argv)
    problems = check(args.model, args.text_column)
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(f"contract holds: {args.model}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
