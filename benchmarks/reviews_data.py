"""The bundled clothing reviews as texts and per-task integer labels.

A missing label is -1. Task names are output names (no spaces); each maps to
the CSV column it comes from.
"""

import pathlib

import numpy as np
import pandas as pd

DATA = (
    pathlib.Path(__file__).resolve().parent.parent
    / "data"
    / "womens_clothing_reviews.csv.gz"
)
# Task name -> CSV column.
TASKS = {
    "recommended": "Recommended IND",
    "rating": "Rating",
    "department": "Department Name",
}
SPLITS = ("train", "validation", "test")


def load(path=DATA, drop_empty_text=True):
    """-> ({split: texts}, {split: {task: labels}}, {task: class names}).

    Text is Title + " " + Review Text. Rows with no text are dropped, as in
    the TF-IDF reference figures of data/README.md.
    """
    frame = pd.read_csv(path, keep_default_na=True)
    text = (
        frame["Title"].fillna("") + " " + frame["Review Text"].fillna("")
    ).str.strip()
    if drop_empty_text:
        keep = text != ""
        frame, text = frame[keep], text[keep]
    classes = {
        task: sorted(frame[column].dropna().unique().tolist())
        for task, column in TASKS.items()
    }
    texts, labels = {}, {}
    for split in SPLITS:
        rows = (frame["split"] == split).to_numpy()
        texts[split] = text[rows].to_numpy(dtype=object)
        labels[split] = {}
        for task, column in TASKS.items():
            index = {c: i for i, c in enumerate(classes[task])}
            labels[split][task] = np.array(
                [index.get(v, -1) for v in frame[column][rows]], dtype="int32"
            )
    return texts, labels, classes


def hide_labels(labels, keep_fraction, seed=0, exact=False):
    """A copy of `labels` with all but `keep_fraction` of them set to -1.

    By default each row keeps its label with probability `keep_fraction`.
    With `exact`, the labelled rows are put in one random order drawn from
    `seed` and the first `round(keep_fraction * labelled)` of them keep their
    label. Both ways, the rows kept at a smaller fraction are among those
    kept at a larger one for the same `seed` (an int or a sequence of ints).
    """
    rng = np.random.default_rng(seed)
    hidden = labels.copy()
    if not exact:
        hidden[rng.random(len(labels)) >= keep_fraction] = -1
        return hidden
    labelled = np.flatnonzero(labels >= 0)
    order = rng.permutation(labelled)
    hidden[order[round(keep_fraction * len(labelled)) :]] = -1
    return hidden
