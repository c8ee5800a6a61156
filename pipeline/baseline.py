"""TF-IDF + logistic regression: the reference beside the neural model.

One `TfidfVectorizer` (word 1-2 grams, sublinear tf) fit on the train texts,
one `LogisticRegression` per label column fit on that column's labelled
train rows, its `C` chosen on the validation split (`pipeline.linear`'s
fit, trying every C of the grid). Scored on the test
split's rows with the same metrics `pipeline.report.test_metrics` gives the
model, so the two sit side by side.
"""

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from pipeline import evaluation, linear

NAME = "tfidf_lr"
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def tfidf_lr(
    train_csv: str,
    validation_csv: str,
    test_csv: str,
    text_columns: list[str],
    label_columns: list[str],
    class_names: dict[str, list[str]] | None = None,
    c_grid: tuple[float, ...] = C_GRID,
) -> dict[str, dict]:
    """Fits and scores the TF-IDF + logistic regression baseline.

    Args:
        train_csv: str. The train split; fits the vectorizer and models.
        validation_csv: str. The validation split; chooses each task's C.
        test_csv: str. The test split; scored.
        text_columns: list of str. Columns joined with a space into the text.
        label_columns: list of str. One task per column; an empty cell is a
            missing label.
        class_names: dict or None. {label column: class names}: a label's
            index is its position there (a label not there counts as
            missing), as the model's label vocabulary. None: the sorted
            distinct labels of the train split.
        c_grid: tuple of float. Inverse regularization strengths to try.

    Returns:
        {label column: metrics}: `evaluation.task_metrics` on the test rows,
        with `unseen_or_missing_labels`, `with_text` (the metrics on the rows
        whose text is not empty, None when none is labelled), `C` (the
        chosen one), `validation_metric` ("auc" for binary tasks, else
        "accuracy") and `validation_value` (None when that metric is
        undefined on the validation split, and C is then 1.0).

    Raises:
        ValueError: an empty or non-positive `c_grid`, or a label column
            with fewer than two classes among its labelled train rows.
    """
    if not c_grid or min(c_grid) <= 0:
        raise ValueError(
            f"c_grid expected positive numbers. Received: c_grid={c_grid}"
        )
    train, train_texts = evaluation.read_split(train_csv, text_columns)
    validation, val_texts = evaluation.read_split(validation_csv, text_columns)
    test, test_texts = evaluation.read_split(test_csv, text_columns)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform(train_texts)
    x_val = vectorizer.transform(val_texts)
    x_test = vectorizer.transform(test_texts)

    results = {}
    for column in label_columns:
        names = (
            class_names[column]
            if class_names is not None
            else sorted({v.strip() for v in train[column]} - {""})
        )
        y_train = evaluation.label_indices(train[column], names)
        keep = y_train >= 0
        if len(np.unique(y_train[keep])) < 2:
            raise ValueError(
                f"Label column {column!r} needs two or more classes among "
                f"its labelled train rows. Received: "
                f"{sorted(set(np.array(names)[y_train[keep]]))}"
            )
        # Every C of the grid is tried: this is the reference.
        fit = linear.fit_task(
            x_train,
            y_train,
            x_val,
            evaluation.label_indices(validation[column], names),
            len(names),
            c_grid=c_grid,
            patience=None,
        )
        labels = evaluation.label_indices(test[column], names)
        p = linear.logits_to_probabilities(x_test @ fit.kernel + fit.bias)
        metrics = evaluation.split_scores(labels, p, test_texts)
        metrics["C"] = fit.c
        metrics["validation_metric"] = "auc" if len(names) == 2 else "accuracy"
        metrics["validation_value"] = fit.validation_metric
        results[column] = metrics
    return results
