"""Checks an exported model's serving contract in a fresh process.

    python -m serving.contract output/demo/serving/mmoe [--text-column Title]

The model is loaded in a subprocess that imports only TensorFlow and
TF-Text (`pipeline.testing.run_serving_check`), as TF Serving would hold it,
and must: have the three signatures with string `(batch,)` inputs; give for
every task `T_probabilities` float32 `(batch, C)` rows summing to 1 and
`T_label` among the class names; give the same answers on raw text
(`predict_text`) and on tf.Examples (`serving_default`, also called
positionally as TFMA does); give valid outputs for an empty string, a 1 MB
text, invalid UTF-8 and an empty batch; run every warmup record. Prints what
failed, exit code 1, or "contract holds", exit code 0.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

TEXTS = [
    "Lovely dress, true to size.",
    "The fabric ripped after one wash. Returned it.",
    "",
]
# Rows of the bad inputs `run_serving_check` sends to predict_text.
BAD_INPUT_ROWS = {
    "empty_string": 1,
    "one_megabyte": 1,
    "non_utf8": 2,
    "empty_batch": 0,
}
FORBIDDEN = {"keras", "tensorflow_transform", "tfx", "keras_mmoe", "pipeline"}


def check(model: str, text_column: str = "Title") -> list[str]:
    """The problems found (an empty list when the contract holds)."""
    from pipeline import testing
    from serving import client, predict

    model_dir = os.path.abspath(predict.resolve_model_dir(model))
    examples = [client.text_example(text_column, t) for t in TEXTS]
    with tempfile.TemporaryDirectory() as tmp:
        served = testing.run_serving_check(model_dir, TEXTS, examples, tmp)
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
