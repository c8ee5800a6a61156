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


class ModelError(ValueError):
    """No SavedModel that loads, named in one line."""


def load_model(path: str, warn=None):
    """Loads a SavedModel, or under a TF Serving model dir the newest
    version that loads: a corrupt or partly written newer version is
    skipped with one line to `warn` (a callable), as TF Serving keeps
    serving the last version it could load.

    Returns:
        `(loaded model, its directory)`.

    Raises:
        FileNotFoundError: no SavedModel at `path`.
        ModelError: none of the SavedModels there loads.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF-Text ops)

    if os.path.exists(os.path.join(path, "saved_model.pb")):
        candidates = [path]
    else:
        resolve_model_dir(path)  # FileNotFoundError when there is none
        versions = sorted(
            (d for d in os.listdir(path) if d.isdigit()), key=int, reverse=True
        )
        candidates = [os.path.join(path, v) for v in versions]
    problems = []
    for model_dir in candidates:
        try:
            loaded = tf.saved_model.load(model_dir)
            if features.PREDICT_TEXT not in loaded.signatures:
                raise ValueError(f"no {features.PREDICT_TEXT!r} signature")
        except Exception as e:  # a broken SavedModel fails in many ways
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            problems.append(f"{model_dir}: {reason}")
            if warn is not None and model_dir != candidates[-1]:
                warn(f"skipping {model_dir}, which does not load: {reason}")
            continue
        return loaded, model_dir
    raise ModelError(
        f"No SavedModel under {path} loads; {problems[0]}"
        + (f" (and {len(problems) - 1} older)" if len(problems) > 1 else "")
    )


def class_names(model_dir: str, task: str) -> list[str] | None:
    """The task's class names from the SavedModel's assets, if there."""
    path = os.path.join(
        model_dir, "assets", features.label_vocabulary_name(task)
    )
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def predict_texts(model: str, texts: list[str], warn=None) -> list[dict]:
    """Per text and task: the predicted label and the class probabilities,
    from the newest version of `model` that loads (see `load_model`)."""
    import tensorflow as tf

    loaded, model_dir = load_model(model, warn=warn)
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
