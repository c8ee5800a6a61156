"""Label-scarcity curves on the bundled reviews: every body, 1-100% labels.

    python -m benchmarks.label_scarcity [--tasks rating department]
        [--fractions 0.01 0.02 0.05 0.1 0.25 1] [--bodies mmoe ple ...]
        [--seeds 0 1 2 3 4] [--quick] [--output DIR] [--report-only]
    python -m benchmarks.label_scarcity --dataset NAME [--suite DIR] ...

One task's labels (Rating, or Department Name) are thinned to a fraction of
the train and validation rows; the other tasks keep every label and the
test split is untouched. For each (task, fraction, seed) it trains every
body of `keras_mmoe.MultiTaskModel` from plain Keras
(`benchmarks.reviews_keras.train`) on those labels, and the TF-IDF + logistic
regression baseline (`benchmarks.reviews_multitask.tfidf_baseline`) on the
kept labels of that task. The figure is the thinned task's test accuracy
(and macro-F1); both tasks are multi-class.

- Draws are nested: per (task, seed) the labelled rows of each split are put
  in one random order (`reviews_data.hide_labels(exact=True)`) and the first
  `round(fraction * labelled)` keep their label, so the 1% rows are inside
  the 2%, inside the 5%, ... At 100% nothing is hidden: the multi-task
  bodies and the baseline train once per seed for both tasks (task `all`).
- The single-task body trains only the thinned task's model, on exactly the
  kept labels (its early stopping sees only that task's validation labels).
- The seed drives the label draw (with the task), the weight
  initialisation, dropout and the order of the training batches
  (`keras.utils.set_random_seed`). At 100% the draw is the same for every
  seed, and the baseline (deterministic) is too.
- Each finished cell (task, fraction, body, seed) is appended as one JSON
  line to `label_scarcity_cells.jsonl` next to the results; a rerun with the
  same training settings reads them back and trains only the missing cells
  (a line cut short by a kill is skipped, `benchmarks.jsonl`). Cells also
  carry the thinned task's metrics on the full validation labels, which
  chose the training settings below.

Training settings: unchanged from `benchmarks.reviews_multitask` (the
pipeline Trainer's: CNN encoder, wide bag of n-grams, batch 64, Adam 1e-3,
up to 20 epochs, early stopping on the validation loss with patience 3).
A cheaper setting was tried and rejected (seed 0, Rating, mmoe and
single_task at 1%, 5% and 100%, scored on the full validation labels of
Rating, all runs niced on 2 cores shared with two other benchmarks):

- batch 256 saves little: two epochs of mmoe on every label took 39 s
  against 43 s wall (31 against 40 CPU-s); the convolutions over 128 tokens
  cost per example, not per step. But it gives the thinned head a quarter
  of the updates, and its validation macro-F1 fell at 1% (mmoe 0.160 vs
  0.177, single_task 0.144 vs 0.174) and 5% (0.272 vs 0.323, 0.264 vs
  0.309), i.e. it would bend the scarce end of the curves.
- The 20-epoch cap never binds (early stopping ends cells after 5-7
  epochs), so lowering it saves nothing; a smaller patience or a shorter
  sequence would change what is measured.

Cost with these settings (niced, the machine shared as above): one cell
takes 90-140 s wall (mmoe, Rating 5%, seed 0: 126 s wall, 110 CPU-s, 6
epochs; mmoe on every label 103 s; single_task 92-110 s), a baseline
cell 3-30 s. The full grid (2 tasks x 5 fractions x 5 bodies + 4 shared and
2 single-task cells at 100%, = 56 model cells, and 11 baseline cells, per
seed; 5 seeds) is 280 model cells: about 9-10 hours, run over several
sessions by rerunning the same command (it resumes). Seeds are the
outermost loop, so every finished seed adds one draw to every point.

Another data set. `--dataset NAME` runs the same grid on a data set of the
development suite (`benchmarks.suite_data`, in `--suite`), where a task may
be labelled on only part of the rows to begin with. There the fractions
are of the rows that carry the task's label (1 = every label the data set
has; default `1` only), `--tasks` are its label columns (default: those
missing on some training rows), a cell of every task at once scores all
its label columns, and binary tasks are plotted by their AUC. Its files are
named `label_scarcity_<dataset>*`.

Writes `label_scarcity.json` (every cell, and per (task, fraction, body)
the mean and standard error over seeds, with the paired difference to the
single-task body on the same seeds and draws) and
`label_scarcity_<task>.png` (metric against the fraction, log x, SE bars,
the baseline dashed) to `--output` (default `benchmarks/results`).
"""

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

from benchmarks import (
    jsonl,
    reviews_data,
    reviews_keras,
    reviews_multitask,
    suite,
)
from pipeline import evaluation

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TASKS = ("rating", "department")
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
# On a suite data set: the task's labels as the data set has them.
SUITE_FRACTIONS = (1.0,)
REVIEWS = "reviews"
BODIES = reviews_multitask.BODIES
SEEDS = (0, 1, 2, 3, 4)
BASELINE = "tfidf_lr"
# The baseline's records of an earlier version are left in the file and not
# read back: before version 2 a class missing from the kept labels shifted
# the baseline's probability columns.
BASELINE_VERSION = 2
SINGLE = "single_task"
ALL = "all"  # The task of a 100% cell that scores every task.
METRICS = ("accuracy", "macro_f1", "auc")
LABELS = {
    "single_task": "Single-task",
    "shared_bottom": "Shared-Bottom",
    "omoe": "OMoE",
    "mmoe": "MMoE",
    "ple": "PLE",
    BASELINE: "TF-IDF + LR",
}
# Defaults changed from `reviews_keras.add_training_args`'s: none (see
# the module docstring for the cheaper setting tried on validation).
CHOSEN = {}
SETTINGS_NOTE = (
    "reviews_multitask's settings unchanged; batch 256 was ~10% faster but "
    "lowered the thinned task's validation macro-F1 at 1% and 5%"
)
QUICK = {
    "rows": 400,
    "epochs": 1,
    "bodies": (SINGLE, "mmoe"),
    "fractions": (0.05, 1.0),
    "seeds": (0, 1),
}
# Flags that do not change a cell's result (`--seed`: each cell's own).
NOT_TRAINING = (
    "dataset",  # In the file names.
    "suite",
    "output",
    "bodies",
    "tasks",
    "fractions",
    "seeds",
    "seed",
    "verbose",
    "report_only",
    "argv",
)


def draw(labels, task, fraction, seed):
    """The labels of one cell: `task` thinned to `fraction` of its labelled
    train and validation rows by a draw nested across fractions for (task,
    seed); the task's place among the label columns enters the seed."""
    if fraction >= 1:
        return labels
    return reviews_multitask.scarce(
        labels,
        fraction,
        seed=(seed, list(labels["train"]).index(task)),
        task=task,
        exact=True,
    )


def grid(tasks, fractions, bodies, seeds):
    """The cells (task, fraction, body, seed), the baseline first in each
    (task, fraction, seed); a 100% cell of a body that learns every task at
    once is one cell `(ALL, 1.0, body, seed)` scoring both tasks."""
    cells = []
    for seed in seeds:
        for fraction in sorted(fractions):
            for task in tasks:
                for body in (BASELINE, *bodies):
                    shared = fraction >= 1 and body != SINGLE
                    cell = (ALL if shared else task, fraction, body, seed)
                    if cell not in cells:
                        cells.append(cell)
    return cells


def scored_tasks(task, args):
    """The tasks a cell scores: its own, or for `ALL` every task that can be
    thinned (the reviews' `TASKS`, a suite data set's label columns)."""
    if task != ALL:
        return (task,)
    return TASKS if args.dataset == REVIEWS else tuple(args.classes)


def run_cell(cell, texts, labels, classes, args):
    """Trains and scores one cell -> its record (a JSON-able dict)."""
    task, fraction, body, seed = cell
    scored = scored_tasks(task, args)
    cell_labels = draw(labels, scored[0], fraction, seed)
    record = {
        "task": task,
        "fraction": fraction,
        "body": body,
        "seed": seed,
        "kept": {
            t: {s: int((cell_labels[s][t] >= 0).sum()) for s in labels}
            for t in scored
        },
    }
    start, cpu = time.perf_counter(), time.process_time()
    if body == BASELINE:
        test = reviews_multitask.tfidf_baseline(
            texts, cell_labels, quick=args.quick, tasks=scored
        )
    else:
        train_args = argparse.Namespace(
            **{**vars(args), "body": body, "seed": seed, "verbose": 0}
        )
        model, ids, test, _ = reviews_keras.train(
            train_args,
            texts,
            cell_labels,
            classes,
            tasks=scored if body == SINGLE else list(classes),
        )
        p = model.predict(ids["validation"], batch_size=1024, verbose=0)
        record["epochs"] = len(model.history.history["loss"])
        record["validation"] = {
            t: evaluation.task_metrics(labels["validation"][t], p[t])
            for t in scored
        }
    record["seconds"] = time.perf_counter() - start
    # CPU time of this process (all its threads): less sensitive than the
    # wall time to other jobs on the machine.
    record["cpu_seconds"] = time.process_time() - cpu
    record["test"] = test
    return record


def key(record):
    return (
        record["task"],
        record["fraction"],
        record["body"],
        record["seed"],
    )


def read_checkpoint(path, training):
    """{cell: record} of the finished cells in `path` (a line cut short by
    a kill is skipped, `benchmarks.jsonl`, and so is a baseline record
    older than `BASELINE_VERSION`). Raises `ValueError` if a cell
    was trained with other settings than `training`."""
    found = {}
    for record in jsonl.read(path):
        stale = record.get("version", 1) != BASELINE_VERSION
        if record.get("body") == BASELINE and stale:
            continue
        if record.get("training") != training:
            raise ValueError(
                f"{path} holds cells trained with other settings "
                f"({record.get('training')}, not {training}): give another "
                "--output or the same settings"
            )
        found[key(record)] = record
    return found


def value(records, task, fraction, body, seed, metric):
    """The test `metric` of `task` in a cell, or None if not run."""
    for owner in (task, ALL):
        record = records.get((owner, fraction, body, seed))
        if record is not None:
            return record["test"][task].get(metric)
    return None


def mean_se(values):
    """{"n", "mean", "se"}: the standard error is std (ddof 1) / sqrt(n),
    None below 2 values."""
    n = len(values)
    return {
        "n": n,
        "mean": float(np.mean(values)) if n else None,
        "se": (float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else None),
    }


def summarize(records, tasks, fractions, bodies, seeds):
    """Per (task, fraction, body, metric): mean and SE over the seeds, and
    the paired difference to the single-task body on the same seeds."""
    rows = []
    for task in tasks:
        for fraction in sorted(fractions):
            for body in (*bodies, BASELINE):
                for metric in METRICS:
                    found = {
                        s: value(records, task, fraction, body, s, metric)
                        for s in seeds
                    }
                    found = {s: v for s, v in found.items() if v is not None}
                    row = {
                        "task": task,
                        "fraction": fraction,
                        "body": body,
                        "metric": metric,
                        **mean_se(list(found.values())),
                    }
                    if body != SINGLE:
                        diffs = []
                        for s, v in found.items():
                            ref = value(
                                records, task, fraction, SINGLE, s, metric
                            )
                            if ref is not None:
                                diffs.append(v - ref)
                        row["minus_single_task"] = mean_se(diffs)
                    rows.append(row)
    return rows


def main_metric(task, classes):
    """The metric a task is plotted and tabled by: AUC if binary."""
    return "auc" if len(classes[task]) == 2 else "accuracy"


def stat_text(stat, difference=False, count=False):
    """`mean_se`'s `stat` as "mean ± SE" ("" without values): with a sign
    and in bold beyond two standard errors for a `difference`, with "(n)"
    for `count`."""
    if not stat or not stat["n"]:
        return ""
    text = f"{stat['mean']:{'+' if difference else ''}.4f}"
    if stat["se"] is not None:
        text += f" ± {stat['se']:.4f}"
        if difference and abs(stat["mean"]) > 2 * stat["se"]:
            text = f"**{text}**"
    return text + (f" ({stat['n']})" if count else "")


def format_table(summary, task, metric="accuracy"):
    """A markdown table of `task`'s test `metric`: a row per fraction, a
    column per body with mean ± SE over the seeds (n), and under each
    multi-task body its paired difference to the single-task body on the
    same seeds (bold beyond two standard errors)."""
    rows = [r for r in summary if r["task"] == task and r["metric"] == metric]
    bodies = list(dict.fromkeys(r["body"] for r in rows))
    cell = {(r["fraction"], r["body"]): r for r in rows}
    header = ["labels kept", *(LABELS.get(b, b) for b in bodies)]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for fraction in sorted({r["fraction"] for r in rows}):
        values = [stat_text(cell[fraction, b], count=True) for b in bodies]
        lines.append(f"| {100 * fraction:g}% | " + " | ".join(values) + " |")
        differences = [
            stat_text(
                cell[fraction, b].get("minus_single_task"), difference=True
            )
            for b in bodies
        ]
        if any(differences):
            lines.append(
                "| minus single-task | " + " | ".join(differences) + " |"
            )
    return "\n".join(lines)


def plot(summary, task, path, metric="accuracy", dataset=REVIEWS):
    """The task's `metric` against the fraction (log x), one line per
    body with SE bars, the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r
        for r in summary
        if r["task"] == task and r["metric"] == metric and r["n"]
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    bodies = list(dict.fromkeys(r["body"] for r in rows))
    for i, body in enumerate(bodies):
        mine = [r for r in rows if r["body"] == body]
        ax.errorbar(
            [100 * r["fraction"] for r in mine],
            [r["mean"] for r in mine],
            yerr=[r["se"] or 0 for r in mine],
            label=LABELS.get(body, body),
            color="0.3" if body == BASELINE else f"C{i}",
            linestyle="--" if body == BASELINE else "-",
            marker="o",
            markersize=3,
            capsize=3,
        )
    fractions = sorted({r["fraction"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in fractions])
    ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    name = reviews_data.TASKS.get(task, task)
    kept = (
        "labels kept" if dataset == REVIEWS else f"of {dataset}'s labels kept"
    )
    ax.set_xlabel(f"{name} {kept} (train, validation)")
    ax.set_ylabel(f"{name} test {metric}")
    seeds = max((r["n"] for r in rows), default=0)
    ax.set_title(
        f"mean ± SE over up to {seeds} seeds; other tasks fully labelled"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(records, cells, args, training, stem, wall, plots=True):
    """Writes `<stem>.json` and (`plots`) one plot per task; returns the
    report."""
    done = {c: records[c] for c in cells if c in records}
    summary = summarize(
        done, args.tasks, args.fractions, args.bodies, args.seeds
    )
    seconds = {}
    for body in (BASELINE, *args.bodies):
        mine = [r for c, r in done.items() if c[2] == body]
        seconds[body] = {
            "wall": mean_se([r["seconds"] for r in mine]),
            "cpu": mean_se([r.get("cpu_seconds", 0) for r in mine]),
        }
    result = {
        "command": " ".join(
            ["python -m benchmarks.label_scarcity", *args.argv]
        ),
        "dataset": args.dataset,
        "quick": args.quick,
        "tasks": list(args.tasks),
        "fractions": list(args.fractions),
        "bodies": list(args.bodies),
        "seeds": list(args.seeds),
        "seed_drives": "label draw (with the task), initialisation, "
        "dropout, batch order",
        "training": training,
        "settings_note": SETTINGS_NOTE,
        "cells_done": len(done),
        "cells": len(cells),
        "wall_seconds_this_run": wall,
        "seconds_per_cell": seconds,
        "summary": summary,
        "records": [
            {k: v for k, v in r.items() if k != "training"}
            for r in done.values()
        ],
    }
    out = args.output / f"{stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for task in args.tasks if plots else ():
        plot(
            summary,
            task,
            args.output / f"{stem}_{task}.png",
            metric=main_metric(task, args.classes),
            dataset=args.dataset,
        )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default=REVIEWS,
        help="the bundled reviews, or a prepared suite data set",
    )
    parser.add_argument("--suite", type=pathlib.Path, default=suite.SUITE)
    parser.add_argument("--tasks", nargs="+")
    parser.add_argument("--fractions", nargs="+", type=float)
    parser.add_argument("--bodies", nargs="+", choices=BODIES)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['rows']} rows a split, {QUICK['epochs']} epoch, "
        "fewer cells: a smoke run",
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the JSON and plots from the cells recorded so far; "
        "train nothing",
    )
    reviews_keras.add_training_args(parser)
    parser.set_defaults(**CHOSEN)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    specs = suite.datasets(args.suite)
    if args.dataset not in specs:
        parser.error(
            f"--dataset: {args.dataset!r} is not the reviews or a prepared "
            f"suite data set (known: {list(specs)}; prepare them with "
            "`python -m benchmarks.suite_data`)"
        )
    reviews = args.dataset == REVIEWS
    choices = TASKS if reviews else specs[args.dataset]["label_columns"]
    if args.tasks is not None and not set(args.tasks) <= set(choices):
        parser.error(f"--tasks: choose from {list(choices)}: {args.tasks}")
    for name, full in (
        ("fractions", FRACTIONS if reviews else SUITE_FRACTIONS),
        ("bodies", BODIES),
        ("seeds", SEEDS),
    ):
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else full)
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions must be in (0, 1]: {args.fractions}")
    if reviews:
        texts, labels, classes = reviews_data.load()
        args.tasks = args.tasks or TASKS
    else:
        texts, labels, classes = suite.load(specs[args.dataset])
        partial = [c for c in choices if (labels["train"][c] < 0).any()]
        args.tasks = args.tasks or partial or list(choices)
    args.classes = classes
    if args.quick:
        texts, labels = reviews_multitask.head(texts, labels, QUICK["rows"])
        args.epochs = QUICK["epochs"]
    training = {
        k: v
        for k, v in sorted(vars(args).items())
        if k not in (*NOT_TRAINING, "classes")
    }
    stem = "label_scarcity" + ("" if reviews else f"_{args.dataset}")
    stem += "_quick" if args.quick else ""
    args.output.mkdir(parents=True, exist_ok=True)
    checkpoint = args.output / f"{stem}_cells.jsonl"
    try:
        records = read_checkpoint(checkpoint, training)
    except ValueError as e:
        parser.error(str(e))
    cells = grid(args.tasks, args.fractions, args.bodies, args.seeds)
    todo = [] if args.report_only else [c for c in cells if c not in records]
    done = sum(c in records for c in cells)
    print(
        f"{done} of {len(cells)} cells read back from {checkpoint}",
        flush=True,
    )
    start = time.perf_counter()
    for i, cell in enumerate(todo):
        record = run_cell(cell, texts, labels, classes, args)
        record["training"] = training
        if record["body"] == BASELINE:
            record["version"] = BASELINE_VERSION
        jsonl.append(checkpoint, record)
        records[cell] = record
        scored = scored_tasks(cell[0], args)
        print(
            f"[{i + 1}/{len(todo)}] {cell}: {record['seconds']:.0f} s, "
            + ", ".join(
                f"{t} acc {record['test'][t]['accuracy']:.4f}" for t in scored
            ),
            flush=True,
        )
        wall = time.perf_counter() - start
        report(records, cells, args, training, stem, wall, plots=False)
    result = report(
        records, cells, args, training, stem, time.perf_counter() - start
    )
    for task in args.tasks:
        metric = main_metric(task, classes)
        print(f"{task}, test {metric}:")
        print(format_table(result["summary"], task, metric))
    print(f"Wrote {args.output / stem}.json and the plots")
    return result


if __name__ == "__main__":
    main()
