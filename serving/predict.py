"""Predictions from an exported model, in-process (`mmoe predict`)."""

import os

import numpy as np

from serving import features


def resolve_model_dir(path: str) -> str:
    """A SavedModel dir, or the newest numbered version under a TF Serving
    model dir (`<base>/<name>/`)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = (
        sorted((d for d in os.listdir(path) if d.isdigit()), key=int)
        if os.path.isdir(path)
        else []
    )
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel at {path} (no saved_model.pb, no version folder)"
        )
    return os.path.join(path, versions[-1])


def class_names(model_dir: str, task: str) -> list[str] | None:
    """The task's class names from the SavedModel's assets, if there."""
    path = os.path.join(
        model_dir, "assets", features.label_vocabulary_name(task)
    )
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def predict_texts(model: str, texts: list[str]) -> list[dict]:
    """Per text and task: the predicted label and the class probabilities."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF-Text ops)

    model_dir = resolve_model_dir(model)
    loaded = tf.saved_model.load(model_dir)
    out = loaded.signatures[features.PREDICT_TEXT](
        text=tf.constant(np.array(texts, dtype=object))
    )
    results = [{"text": t} for t in texts]
    for task in features.output_tasks(out):
        labels = out[features.predicted_label_key(task)].numpy()
        probabilities = out[features.probabilities_key(task)].numpy()
        names = class_names(model_dir, task) or [
            str(i) for i in range(probabilities.shape[1])
        ]
        for row, label, p in zip(results, labels, probabilities, strict=True):
            row[task] = {
                "label": label.decode("utf-8"),
                "probabilities": {
                    name: round(float(v), 4)
                    for name, v in zip(names, p, strict=True)
                },
            }
    return results
