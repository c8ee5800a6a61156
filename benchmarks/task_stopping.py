"""Stopping on the summed validation loss against stopping per task.

    python -m benchmarks.task_stopping [--bodies mmoe shared_bottom ...]
        [--seeds 0 1 2 3 4] [--thin TASK FRACTION] [--quick] [--output DIR]
        [--report-only]

A multi-task model trained with early stopping on its validation loss stops
at the epoch where the sum of the tasks' losses is lowest, and every task
is reported with those weights. A single-task model stops where its own
task's loss is lowest. When the tasks' best epochs differ, the multi-task
model can be behind on a task because of where it stopped, not because of
what it shares. This measures how much.

For each body and seed it trains plain Keras `MultiTaskModel` on every
label of the bundled reviews (`benchmarks.reviews_keras.train`, the
settings of `benchmarks.label_scarcity`'s 100% cells) with `BestEpochs`
in place of early stopping: as training goes it keeps the weights of the
epoch with the lowest summed validation loss (the weights early stopping
restores, so "summed" is the usual report) and, for each scored task, of
the epoch with that task's lowest validation loss ("per task"); training
stops when neither the sum nor any scored task has improved for `patience`
epochs, or at `epochs`. Each scored task is then measured on the test split
with both sets of weights. The single-task body trains one model per
scored task, on that task's labels only; its two selections are the same.
`--thin department 0.01` keeps that task's labels on 1% of the training
and validation rows, the draw of `benchmarks.label_scarcity`'s cell of
the same task, fraction and seed (its thinned cells, with both
selections); the records then go to `task_stopping_department_1pct*`.

Each finished (body, seed) is appended as one JSON line to
`task_stopping_runs.jsonl` in `--output` and read back by a rerun with the
same training settings. Writes `task_stopping.json`: every record, and
per body, task and selection the test accuracy over seeds (mean, standard
error), the paired difference to the single-task body, and per task minus
summed.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import keras

from benchmarks import (
    jsonl,
    label_scarcity,
    reviews_data,
    reviews_keras,
    reviews_multitask,
)
from pipeline import evaluation

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TASKS = ("rating", "department")
BODIES = ("mmoe", "shared_bottom", "single_task")
SEEDS = (0, 1, 2, 3, 4)
SINGLE = "single_task"
SUMMED = "val_loss"
SELECTIONS = ("summed", "per_task")
QUICK = {"rows": 300, "epochs": 2}
# Flags that do not change a record.
NOT_TRAINING = (
    "output",
    "bodies",
    "seeds",
    "seed",
    "verbose",
    "report_only",
    "argv",
)


class BestEpochs(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest value of each of
    `monitors` (strictly lower, as early stopping counts an improvement);
    stops training when none has improved for `patience` epochs."""

    def __init__(self, monitors, patience: int):
        super().__init__()
        self.monitors = list(monitors)
        self.patience = patience
        self.best = {m: math.inf for m in self.monitors}
        self.best_epoch = dict.fromkeys(self.monitors, 0)
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        weights = None
        for monitor in self.monitors:
            value = float(logs[monitor])
            if value < self.best[monitor]:
                if weights is None:
                    weights = self.model.get_weights()
                self.best[monitor] = value
                self.best_epoch[monitor] = epoch
                self.weights[monitor] = weights
        if all(epoch - e >= self.patience for e in self.best_epoch.values()):
            self.model.stop_training = True


def train_one(args, texts, labels, classes, body, seed) -> dict:
    """One (body, seed): per scored task, the best epochs and the test
    metrics of each selection."""
    start = time.perf_counter()
    train_args = argparse.Namespace(
        **{**vars(args), "body": body, "seed": seed, "verbose": 0}
    )
    groups = [(t,) for t in TASKS] if body == SINGLE else [None]
    record = {"body": body, "seed": seed, "tasks": {}, "epochs": []}
    if args.thin:
        task, fraction = args.thin
        labels = label_scarcity.draw(labels, task, fraction, seed)
    for tasks in groups:
        names = list(reviews_data.TASKS if tasks is None else tasks)
        scored = [t for t in TASKS if t in names]
        monitors = [SUMMED, *(f"val_{t}_loss" for t in scored)]
        stopping = BestEpochs(monitors, args.patience)
        model, ids, _, _ = reviews_keras.train(
            train_args, texts, labels, classes, tasks=tasks, stopping=stopping
        )
        record["epochs"].append(len(model.history.history["loss"]))
        for task in scored:
            found = {}
            for selection, monitor in zip(
                SELECTIONS, (SUMMED, f"val_{task}_loss"), strict=True
            ):
                model.set_weights(stopping.weights[monitor])
                predicted = model.predict(
                    ids["test"], batch_size=1024, verbose=0
                )
                found[selection] = {
                    "best_epoch": stopping.best_epoch[monitor],
                    **evaluation.task_metrics(
                        labels["test"][task], predicted[task]
                    ),
                }
            record["tasks"][task] = found
    record["seconds"] = time.perf_counter() - start
    return record


def summarize(records, bodies, seeds) -> dict:
    """Per body, task and selection: test accuracy over seeds, its paired
    difference to the single-task body, and per task minus summed."""

    def accuracy(body, seed, task, selection):
        record = records.get((body, seed))
        if record is None:
            return None
        return record["tasks"][task][selection]["accuracy"]

    def paired(a, b):
        pairs = [
            (x, y) for x, y in zip(a, b, strict=True) if None not in (x, y)
        ]
        return label_scarcity.mean_se([x - y for x, y in pairs])

    out = {}
    for body in bodies:
        for task in TASKS:
            row = {}
            for selection in SELECTIONS:
                values = [accuracy(body, s, task, selection) for s in seeds]
                single = [accuracy(SINGLE, s, task, selection) for s in seeds]
                row[selection] = {
                    **label_scarcity.mean_se(
                        [v for v in values if v is not None]
                    ),
                    "minus_single_task": paired(values, single),
                }
            row["per_task_minus_summed"] = paired(
                [accuracy(body, s, task, "per_task") for s in seeds],
                [accuracy(body, s, task, "summed") for s in seeds],
            )
            out.setdefault(body, {})[task] = row
    return out


def format_table(summary) -> str:
    """A markdown table: per task and body, accuracy (mean ± SE, n) with
    each selection and its difference to single-task, and per task minus
    summed (`label_scarcity.stat_text`: differences in bold beyond two
    standard errors)."""
    text = label_scarcity.stat_text

    lines = [
        "| task | body | summed | minus single-task | per task "
        "| minus single-task | per task minus summed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in TASKS:
        for body, rows in summary.items():
            row = rows[task]
            lines.append(
                f"| {task} | {label_scarcity.LABELS.get(body, body)} | "
                + " | ".join(
                    [
                        text(row["summed"], count=True),
                        text(
                            row["summed"]["minus_single_task"], difference=True
                        ),
                        text(row["per_task"]),
                        text(
                            row["per_task"]["minus_single_task"],
                            difference=True,
                        ),
                        text(row["per_task_minus_summed"], difference=True),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def thin_setting(parser, task, fraction):
    """(task, fraction) of `--thin`, or a parser error (exit 2)."""
    try:
        value = float(fraction)
    except ValueError:
        value = math.nan
    if task not in TASKS or not 0 < value < 1:
        parser.error(
            f"--thin expects a task of {', '.join(TASKS)} and a fraction "
            f"between 0 and 1 (exclusive); got {task} {fraction}"
        )
    return [task, value]  # As JSON reads it back.


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bodies",
        nargs="+",
        choices=reviews_multitask.BODIES,
        default=list(BODIES),
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['rows']} rows a split, {QUICK['epochs']} epochs",
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the JSON from the runs recorded so far; train nothing",
    )
    parser.add_argument(
        "--thin",
        nargs=2,
        metavar=("TASK", "FRACTION"),
        help="keep TASK's labels on FRACTION (0 < FRACTION < 1) of the "
        "training and validation rows",
    )
    reviews_keras.add_training_args(parser)
    args = parser.parse_args(argv)
    if args.thin:
        args.thin = thin_setting(parser, *args.thin)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if SINGLE not in args.bodies:
        args.bodies.append(SINGLE)  # The reference of every difference.
    texts, labels, classes = reviews_data.load()
    if args.quick:
        texts, labels = reviews_multitask.head(texts, labels, QUICK["rows"])
        args.epochs = QUICK["epochs"]
    training = {
        k: v for k, v in sorted(vars(args).items()) if k not in NOT_TRAINING
    }
    args.output.mkdir(parents=True, exist_ok=True)
    stem = "task_stopping"
    if args.thin:
        stem += f"_{args.thin[0]}_{args.thin[1] * 100:g}pct"
    stem += "_quick" if args.quick else ""
    path = args.output / f"{stem}_runs.jsonl"
    records = {
        (r["body"], r["seed"]): r
        for r in jsonl.read(path)
        if r.get("training") == training
    }
    start = time.perf_counter()
    for seed in args.seeds:
        for body in args.bodies:
            if (body, seed) in records or args.report_only:
                continue
            record = train_one(args, texts, labels, classes, body, seed)
            record["training"] = training
            jsonl.append(path, record)
            records[body, seed] = record
            print(
                f"{body} seed {seed}: "
                + ", ".join(
                    f"{task} {s['summed']['accuracy']:.4f} summed, "
                    f"{s['per_task']['accuracy']:.4f} per task"
                    for task, s in record["tasks"].items()
                )
                + f" ({record['seconds']:.0f} s)",
                flush=True,
            )
    summary = summarize(records, args.bodies, args.seeds)
    result = {
        "command": " ".join(["python -m benchmarks.task_stopping", *args.argv]),
        "training": training,
        "bodies": args.bodies,
        "seeds": args.seeds,
        "summary": summary,
        "records": [
            {k: v for k, v in records[b, s].items() if k != "training"}
            for s in args.seeds
            for b in args.bodies
            if (b, s) in records
        ],
        "wall_seconds_this_run": time.perf_counter() - start,
    }
    (args.output / f"{stem}.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )
    print(format_table(summary))
    return result


if __name__ == "__main__":
    main()
