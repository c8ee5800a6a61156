"""Gate collapse in MMoE on text, and what gate dropout and temperature do.

    python -m benchmarks.gate_collapse [--dataset trec] [--seeds 0 1 2 3 4]
        [--settings default dropout temperature both] [--output DIR]

A gate has collapsed when a task sends (nearly) all its weight to one
expert on every example: MMoE then is a shared bottom with extra cost for
that task. `keras_mmoe` offers two remedies on `MMoE`: `gate_dropout`
(in training, each expert is dropped from a gate's softmax with this
probability, so no task can lean on one expert alone) and
`gate_temperature` (logits divided by it, a flatter softmax above 1).

For each setting and seed it trains plain Keras `MultiTaskModel` with the
MMoE body (8 experts of 64 units, `benchmarks.reviews_keras`'s other
training settings: CNN encoder, wide bag of n-grams, Adam 1e-3, batch 64,
early stopping on the validation loss) on a data set of the development
suite (`benchmarks.suite_data`; default TREC, whose coarse task collapsed
onto one expert in a pilot), and measures on the validation rows each
task's gate: effective experts (`exp` of the entropy of its mean weights),
mean largest weight, the expert it uses most, and each task's validation
and test accuracy. Criteria, fixed before the measurement:

- a task's gate is "collapsed" when its effective experts are below
  `COLLAPSED_BELOW` = 1.5 (at least about 80 % of its weight on one
  expert);
- a run "collapsed entirely" when every task's gate collapsed onto the
  same expert.

The settings (`SETTINGS`): `default` (temperature 1, no gate dropout),
`dropout` (gate_dropout 0.1), `temperature` (2.0), `both`.

Each finished (setting, seed) is appended as one JSON line to
`gate_collapse_runs.jsonl` in `--output` and read back on a rerun of the
same data set and training settings. Writes `gate_collapse.json`: per
setting, the share of collapsed task gates and of entirely collapsed runs,
and per task the statistics over seeds (`synthetic.summary`: mean,
standard error, ...) of effective experts and validation and test
accuracy.
"""

import argparse
import hashlib
import json
import pathlib
import sys
import time

import numpy as np

from benchmarks import jsonl, reviews_keras, suite, synthetic
from keras_mmoe import gate_diagnostics

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CHECKPOINT = "gate_collapse_runs.jsonl"
COLLAPSED_BELOW = 1.5
SETTINGS = {
    "default": {},
    "dropout": {"gate_dropout": 0.1},
    "temperature": {"gate_temperature": 2.0},
    "both": {"gate_dropout": 0.1, "gate_temperature": 2.0},
}


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Accuracy on the rows with a label."""
    known = labels >= 0
    predicted = np.argmax(np.asarray(probabilities), axis=-1)
    return float(np.mean(predicted[known] == labels[known]))


def gate_summary(stats: dict) -> dict:
    """Per task: effective experts, mean largest weight, top expert and
    whether it collapsed; and whether every task collapsed onto one expert."""
    tasks = {
        task: {
            "effective_experts": s["effective_experts"],
            "mean_max_weight": s["mean_max_weight"],
            "top_expert": int(np.argmax(s["mean_weights"])),
            "mean_weights": s["mean_weights"],
            "collapsed": s["effective_experts"] < COLLAPSED_BELOW,
        }
        for task, s in stats["tasks"].items()
    }
    tops = {t["top_expert"] for t in tasks.values()}
    return {
        "tasks": tasks,
        "collapsed_entirely": all(t["collapsed"] for t in tasks.values())
        and len(tops) == 1,
    }


def train_one(args, data, setting: str, seed: int) -> dict:
    """One (setting, seed): the gate summary and the accuracies."""
    texts, labels, classes = data
    args.seed = seed
    start = time.perf_counter()
    model, ids, _, seconds = reviews_keras.train(
        args,
        texts,
        labels,
        classes,
        tasks=list(classes),
        body_config=SETTINGS[setting],
    )
    weights = gate_diagnostics.collect_gate_weights(
        model.gate_model(), ids["validation"]
    )
    summary = gate_summary(gate_diagnostics.gate_statistics(weights))
    for split in ("validation", "test"):
        predicted = model.predict(ids[split], batch_size=1024, verbose=0)
        for task in classes:
            summary["tasks"][task][f"{split}_accuracy"] = accuracy(
                labels[split][task], predicted[task]
            )
    return {
        **summary,
        "fit_seconds": seconds,
        "seconds": time.perf_counter() - start,
    }


def summarize(records: list[dict]) -> dict:
    """Per setting: collapse shares, and per task mean ± SE over seeds."""
    out = {}
    for setting in SETTINGS:
        runs = [r for r in records if r["setting"] == setting]
        if not runs:
            continue
        gates = [t for r in runs for t in r["tasks"].values()]
        per_task = {}
        for task in runs[0]["tasks"]:
            per_task[task] = {
                name: synthetic.summary([r["tasks"][task][name] for r in runs])
                for name in (
                    "effective_experts",
                    "validation_accuracy",
                    "test_accuracy",
                )
            }
            per_task[task]["collapsed_runs"] = sum(
                r["tasks"][task]["collapsed"] for r in runs
            )
        out[setting] = {
            "runs": len(runs),
            "seeds": [r["seed"] for r in runs],
            "collapsed_task_gates": sum(g["collapsed"] for g in gates),
            "task_gates": len(gates),
            "collapsed_entirely": sum(r["collapsed_entirely"] for r in runs),
            "tasks": per_task,
        }
    return out


def training_key(args) -> str:
    """Hash of the data set and the training flags a record depends on."""
    fields = {
        k: v
        for k, v in vars(args).items()
        if k not in ("output", "suite", "seeds", "settings", "seed", "verbose")
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_records(path: pathlib.Path, key: str) -> dict:
    """{(setting, seed): record} of the records in `path` made with `key`."""
    return {
        (record["setting"], record["seed"]): record
        for record in jsonl.read(path)
        if record.get("key") == key
    }


def format_table(result: dict) -> str:
    lines = [
        "| setting | collapsed task gates | runs collapsed entirely | task "
        "| effective experts | validation accuracy | test accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setting, row in result["settings"].items():
        for task, t in row["tasks"].items():
            cells = [
                f"{t[n]['mean']:.4f} ± {t[n]['standard_error']:.4f}"
                for n in (
                    "effective_experts",
                    "validation_accuracy",
                    "test_accuracy",
                )
            ]
            lines.append(
                f"| {setting} | {row['collapsed_task_gates']}/"
                f"{row['task_gates']} | {row['collapsed_entirely']}/"
                f"{row['runs']} | {task} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="trec")
    parser.add_argument("--suite", default=str(suite.SUITE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS)
    )
    parser.add_argument(
        "--rows", type=int, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    reviews_keras.add_training_args(parser)
    args = parser.parse_args(argv)
    args.body = "mmoe"  # what reviews_keras.train builds
    specs = suite.datasets(pathlib.Path(args.suite))
    if args.dataset not in specs or args.dataset == "reviews":
        parser.error(
            f"--dataset: {args.dataset!r} is not a prepared suite data set "
            f"(known: {[n for n in specs if n != 'reviews']}; prepare them "
            "with `python -m benchmarks.suite_data`)"
        )
    data = suite.load(specs[args.dataset], rows=args.rows)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / CHECKPOINT
    key = training_key(args)
    done = read_records(path, key)
    start = time.perf_counter()
    for seed in args.seeds:
        for setting in args.settings:
            if (setting, seed) in done:
                continue
            record = {
                "key": key,
                "dataset": args.dataset,
                "setting": setting,
                "seed": seed,
                **train_one(args, data, setting, seed),
            }
            jsonl.append(path, record)
            done[(setting, seed)] = record
            print(
                f"{setting} seed {seed}: "
                + ", ".join(
                    f"{task} {t['effective_experts']:.2f} experts"
                    f" ({t['validation_accuracy']:.4f})"
                    for task, t in record["tasks"].items()
                )
                + f" ({record['seconds']:.0f} s)",
                flush=True,
            )
    records = [
        done[(s, seed)]
        for seed in args.seeds
        for s in args.settings
        if (s, seed) in done
    ]
    result = {
        "command": "python -m benchmarks.gate_collapse "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": args.dataset,
        "collapsed_below": COLLAPSED_BELOW,
        "settings_tried": {s: SETTINGS[s] for s in args.settings},
        "settings": summarize(records),
        "records": records,
        "wall_seconds": time.perf_counter() - start,
    }
    (args.output / "gate_collapse.json").write_text(
        json.dumps(result, indent=1)
    )
    print(format_table(result))
    return result


if __name__ == "__main__":
    main()
