"""TF-IDF + logistic regression on a CSV with a `split` column.

    python -m benchmarks.tfidf_baseline --data FILE.csv[.gz] \\
        --text-column COL [COL ...] --label-columns COL [COL ...] \\
        [--output results.json]

Writes the train/validation/test rows to per-split CSVs in a temporary
folder and runs `pipeline.baseline.tfidf_lr` on them (what `mmoe run
--baseline` runs: C chosen on validation, scored on test). Prints the test
metrics on all rows and on the rows with text, and writes them with the wall
time to `--output`.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import pandas as pd
import sklearn

from pipeline import baseline, evaluation

SPLITS = ("train", "validation", "test")


def run(data, text_columns, label_columns) -> dict:
    """{"tasks": tfidf_lr's metrics, "wall_seconds", ...} on `data`.

    Raises:
        ValueError: a column not in `data`, or a split without rows.
    """
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    missing = [
        c
        for c in ["split", *text_columns, *label_columns]
        if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"Column(s) not in {data}: {missing}")
    counts = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    if not all(counts.values()):
        raise ValueError(
            f"{data} needs rows in every split of {SPLITS}. Received: {counts}"
        )
    with tempfile.TemporaryDirectory() as folder:
        csvs = []
        for split in SPLITS:
            csvs.append(os.path.join(folder, f"{split}.csv"))
            frame[frame["split"] == split].to_csv(csvs[-1], index=False)
        start = time.perf_counter()
        tasks = baseline.tfidf_lr(*csvs, text_columns, label_columns)
        wall = time.perf_counter() - start
    return {
        "data": str(data),
        "text_columns": list(text_columns),
        "label_columns": list(label_columns),
        "rows_by_split": counts,
        "scikit_learn": sklearn.__version__,
        "cpu_count": os.cpu_count(),
        "wall_seconds": wall,
        "tasks": tasks,
    }


def format_results(results: dict) -> str:
    """The test tables (all rows, rows with text) and each task's C."""
    tasks = results["tasks"]
    with_text = {k: v["with_text"] for k, v in tasks.items() if v["with_text"]}
    chosen = ", ".join(
        f"{task} C={m['C']:g} (validation {m['validation_metric']} "
        + (
            "-)"
            if m["validation_value"] is None
            else f"{m['validation_value']:.4f})"
        )
        for task, m in tasks.items()
    )
    return "\n".join(
        [
            "Test rows:",
            evaluation.format_table(tasks),
            "Test rows with text:",
            evaluation.format_table(with_text),
            f"Chosen: {chosen}",
            f"Wall time: {results['wall_seconds']:.1f} s",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=pathlib.Path)
    parser.add_argument("--text-column", nargs="+", required=True)
    parser.add_argument("--label-columns", nargs="+", required=True)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        results = run(args.data, args.text_column, args.label_columns)
    except ValueError as e:
        parser.error(str(e))
    print(format_results(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
