import pandas as pd
import pytest

from pipeline import baseline


def _colour_rows(labels, text_column="t"):
    """Rows whose text names their label, with filler words around it."""
    return [
        {text_column: f"the {label} one number{i}", "y": label}
        for i, label in enumerate(labels)
    ]


def _splits(tmp_path, train, validation, test):
    """Writes the three row lists as CSVs; returns their paths."""
    paths = []
    for name, rows in [
        ("train", train),
        ("validation", validation),
        ("test", test),
    ]:
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        paths.append(str(path))
    return paths


COLOURS = ["red", "green", "blue"]


def test_a_separable_task_scores_one_and_the_larger_c_wins(tmp_path):
    csvs = _splits(
        tmp_path,
        _colour_rows(COLOURS * 10),
        _colour_rows(COLOURS * 3),
        _colour_rows(COLOURS * 4),
    )
    # At C=1e-4 the weights stay near 0: one class for all rows, 1/3 right
    # on the balanced validation split; at C=100 all are right.
    [result] = baseline.tfidf_lr(
        *csvs, ["t"], ["y"], c_grid=(100.0, 1e-4)
    ).values()
    assert result["C"] == 100.0
    assert result["validation_metric"] == "accuracy"
    assert result["validation_value"] == 1.0
    assert result["n"] == 12
    assert result["accuracy"] == 1.0
    assert result["macro_f1"] == 1.0
    assert result["auc"] == 1.0
    assert result["unseen_or_missing_labels"] == 0
    assert result["with_text"] == {k: result[k] for k in result["with_text"]}


def test_ties_go_to_the_smaller_c(tmp_path):
    csvs = _splits(
        tmp_path,
        _colour_rows(COLOURS * 10),
        _colour_rows(COLOURS * 3),
        _colour_rows(COLOURS),
    )
    [result] = baseline.tfidf_lr(
        *csvs, ["t"], ["y"], c_grid=(100.0, 10.0)
    ).values()
    assert (result["C"], result["validation_value"]) == (10.0, 1.0)


def test_a_smaller_c_wins_when_validation_disagrees_with_the_words(tmp_path):
    # Train: "red" is the majority class. Validation: every row is red,
    # half of them with the words of another colour. A strong fit follows
    # the words (accuracy 1/2); a weak one answers the majority (1).
    csvs = _splits(
        tmp_path,
        _colour_rows(["red"] * 12 + ["green", "blue"] * 3),
        [
            {"t": f"the {word} one", "y": "red"}
            for word in ["red", "red", "green", "blue"]
        ],
        _colour_rows(COLOURS),
    )
    [result] = baseline.tfidf_lr(
        *csvs, ["t"], ["y"], c_grid=(1e-4, 100.0)
    ).values()
    assert (result["C"], result["validation_value"]) == (1e-4, 1.0)
    assert result["accuracy"] == pytest.approx(1 / 3)


def test_binary_tasks_are_chosen_and_scored_by_the_auc_of_class_1(tmp_path):
    def rows(n):
        return [
            {"t": f"review {'great' if i % 2 else 'awful'}", "y": str(i % 2)}
            for i in range(n)
        ]

    csvs = _splits(tmp_path, rows(20), rows(6), rows(8))
    [result] = baseline.tfidf_lr(*csvs, ["t"], ["y"]).values()
    assert result["C"] in baseline.C_GRID
    assert result["validation_metric"] == "auc"
    assert result["validation_value"] == 1.0
    # P(class 0) as the score would give AUC 0.
    assert (result["n"], result["auc"], result["accuracy"]) == (8, 1.0, 1.0)
    # Class names set the index: "1" is class 0 now, still scored right.
    [result] = baseline.tfidf_lr(
        *csvs, ["t"], ["y"], class_names={"y": ["1", "0"]}
    ).values()
    assert (result["auc"], result["accuracy"]) == (1.0, 1.0)


def test_missing_and_unknown_labels_are_skipped_and_counted(tmp_path):
    train = _colour_rows(COLOURS * 6)
    # Missing (empty, blank) labels never train; "purple" trains a class
    # only when no class names are given.
    train += [
        {"t": f"the purple one {i}", "y": label}
        for i, label in enumerate(["", "  ", "purple", "purple"])
    ]
    test = _colour_rows(COLOURS * 2) + [
        {"t": "the red one", "y": " "},
        {"t": "the red one", "y": "purple"},
    ]
    csvs = _splits(tmp_path, train, _colour_rows(COLOURS), test)
    # Without class names "purple" is a class of its own...
    [result] = baseline.tfidf_lr(*csvs, ["t"], ["y"]).values()
    assert (result["n"], result["unseen_or_missing_labels"]) == (7, 1)
    assert result["accuracy"] == pytest.approx(6 / 7)
    # ...with them it is unknown: missing, as the model's vocabulary does.
    # "yellow" has no training row: a column of zeros, never predicted.
    [result] = baseline.tfidf_lr(
        *csvs,
        ["t"],
        ["y"],
        class_names={"y": ["blue", "yellow", "green", "red"]},
    ).values()
    assert (result["n"], result["unseen_or_missing_labels"]) == (6, 2)
    assert result["accuracy"] == 1.0


def test_rows_without_text_count_in_all_rows_not_in_with_text(tmp_path):
    # Two text columns joined with a space; blank in both is no text.
    def rows(labels):
        return [
            {"title": label if i % 2 else "", "body": "" if i % 2 else label}
            | {"y": label}
            for i, label in enumerate(labels)
        ]

    test = rows(COLOURS * 2) + [
        {"title": "", "body": " ", "y": "red"},
        {"title": "", "body": "", "y": ""},
    ]
    csvs = _splits(tmp_path, rows(COLOURS * 8), rows(COLOURS * 2), test)
    [result] = baseline.tfidf_lr(*csvs, ["title", "body"], ["y"]).values()
    assert (result["n"], result["unseen_or_missing_labels"]) == (7, 1)
    assert result["with_text"]["n"] == 6
    assert result["with_text"]["accuracy"] == 1.0
    # The row without text gets the intercepts' class, whichever it is.
    assert result["accuracy"] in (6 / 7, 1.0)


def test_no_labelled_validation_row_falls_back_to_c_1(tmp_path):
    validation = [{"t": "the red one", "y": ""}]
    csvs = _splits(
        tmp_path, _colour_rows(COLOURS * 4), validation, _colour_rows(COLOURS)
    )
    [result] = baseline.tfidf_lr(*csvs, ["t"], ["y"]).values()
    assert (result["C"], result["validation_value"]) == (1.0, None)


def test_bad_arguments_are_named(tmp_path):
    csvs = _splits(
        tmp_path,
        _colour_rows(["red"] * 3 + [""]),
        _colour_rows(COLOURS),
        _colour_rows(COLOURS),
    )
    with pytest.raises(ValueError, match="'y' needs two or more classes"):
        baseline.tfidf_lr(*csvs, ["t"], ["y"])
    with pytest.raises(ValueError, match=r"c_grid=\(0.0, 1.0\)"):
        baseline.tfidf_lr(*csvs, ["t"], ["y"], c_grid=(0.0, 1.0))
