"""`mmoe run` on the development suite and the reviews, against TF-IDF + LR.

For every data set (the bundled reviews and those `benchmarks.suite_data`
prepares), every body and every seed, runs the pipeline as a user would
(`mmoe run ... --baseline --trainer-arg seed=N`) in its own process, and
collects each task's main test metric (AUC for a binary task, accuracy
otherwise) beside the TF-IDF + logistic-regression reference of the same
run. The reviews are scored on the test rows with text, as their reference
figures are; the suite on every test row.

    python -m benchmarks.suite [--datasets NAME ...] [--seeds 0 1 2]
        [--bodies mmoe single_task] [--runs output/suite]
        [--output benchmarks/results/suite.json]

Results are written after every run, so an interrupted benchmark keeps what
it measured; a run whose metrics.json is there is not repeated (its metrics
are read again, its wall time kept from the output file).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITE = ROOT / "data" / "suite"
SPLITS = ("train", "validation", "test")
REVIEWS = {
    "file": str(ROOT / "data" / "womens_clothing_reviews.csv.gz"),
    "text_columns": ["Title", "Review Text"],
    "label_columns": ["Recommended IND", "Rating", "Department Name"],
    "trainer_args": ['reads_from={"Recommended IND": ["Rating"]}'],
    "with_text": True,
}


def datasets(suite_dir: pathlib.Path = SUITE) -> dict[str, dict]:
    """{name: how to run it}: the reviews, then the prepared suite."""
    found = {"reviews": REVIEWS}
    summary = suite_dir / "suite.json"
    if summary.exists():
        for name, entry in json.loads(summary.read_text())["datasets"].items():
            found[name] = {
                "file": str(suite_dir / entry["file"]),
                "text_columns": ["text"],
                "label_columns": list(entry["labels"]),
                "trainer_args": [],
                "with_text": False,
            }
    return found


def load(spec: dict, rows: int | None = None):
    """A suite data set as `({split: texts}, {split: {task: labels}},
    {task: class names})`; a missing label is -1. `rows`: the first rows of
    each split only (for quick runs)."""
    frame = pd.read_csv(spec["file"], dtype=str, keep_default_na=False)
    columns = spec["label_columns"]
    text = frame[spec["text_columns"]].agg(" ".join, axis=1).str.strip()
    classes = {c: sorted(set(frame[c].str.strip()) - {""}) for c in columns}
    texts, labels = {}, {}
    for split in SPLITS:
        chosen = (frame["split"].str.strip() == split).to_numpy()
        index = np.flatnonzero(chosen)[:rows]
        texts[split] = text.to_numpy(dtype=object)[index]
        labels[split] = {}
        for column in columns:
            code = {c: i for i, c in enumerate(classes[column])}
            values = frame[column].str.strip().to_numpy()[index]
            labels[split][column] = np.array(
                [code.get(v, -1) for v in values], dtype="int32"
            )
    return texts, labels, classes


def command(spec: dict, output: str, body: str, seed: int) -> list[str]:
    """The `mmoe run` command line of one run."""
    args = [
        os.path.join(os.path.dirname(sys.executable), "mmoe"),
        "run",
        "--data",
        spec["file"],
        "--text-column",
        *spec["text_columns"],
        "--label-columns",
        *spec["label_columns"],
        "--output",
        output,
        "--body",
        body,
        "--baseline",
        "--trainer-arg",
        f"seed={seed}",
    ]
    for value in spec["trainer_args"]:
        args += ["--trainer-arg", value]
    return args


def binary_columns(spec: dict) -> set[str]:
    """Label columns with two classes in the data."""
    frame = pd.read_csv(
        spec["file"],
        dtype=str,
        keep_default_na=False,
        usecols=spec["label_columns"],
    )
    return {
        c
        for c in spec["label_columns"]
        if len(set(frame[c].str.strip()) - {""}) == 2
    }


def main_metrics(metrics: dict, spec: dict, binary: set[str]) -> dict:
    """{"<column> <metric>": (model, baseline)} test metrics of one run:
    every column's accuracy, and a binary column's AUC too."""

    def pick(values, name):
        if spec["with_text"]:
            values = values["with_text"]
        return values[name]

    baseline = metrics.get("baseline") or {"tasks": {}}
    picked = {}
    for column, values in metrics["tasks"].items():
        base = baseline["tasks"].get(column)
        names = ["auc", "accuracy"] if column in binary else ["accuracy"]
        for name in names:
            key = f"{column} {'AUC' if name == 'auc' else name}"
            picked[key] = (
                pick(values, name),
                None if base is None else pick(base, name),
            )
    return picked


def linear_choices(out: str) -> dict | None:
    """Per task, the Trainer's chosen C and blend weight and the validation
    metric of the linear part, the network and the blend."""
    summaries = sorted(
        pathlib.Path(out).glob("tfx/Trainer/model_run/*/training_summary.json"),
        key=lambda p: int(p.parent.name),
    )
    if not summaries:
        return None
    return json.loads(summaries[-1].read_text()).get("linear")


def summarize(runs: list[dict]) -> dict:
    """Per data set, task and body: mean, std and the seeds' values."""
    table = {}
    for run in runs:
        for column, (model, base) in run["metrics"].items():
            entry = table.setdefault(run["dataset"], {}).setdefault(
                column, {"tfidf_lr": base, "bodies": {}}
            )
            entry["bodies"].setdefault(run["body"], []).append(model)
    for tasks in table.values():
        for entry in tasks.values():
            entry["bodies"] = {
                body: {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "seeds": values,
                    "beats_tfidf_lr": entry["tfidf_lr"] is not None
                    and float(np.mean(values)) > entry["tfidf_lr"],
                }
                for body, values in entry["bodies"].items()
            }
    return table


def format_table(table: dict) -> str:
    lines = [
        "| data set | task | TF-IDF + LR | body | mean ± std | seeds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dataset, tasks in table.items():
        for column, entry in tasks.items():
            for body, stats in entry["bodies"].items():
                base = entry["tfidf_lr"]
                lines.append(
                    f"| {dataset} | {column} | "
                    + ("-" if base is None else f"{base:.4f}")
                    + f" | {body} | {stats['mean']:.4f} ± "
                    f"{stats['std']:.4f} | "
                    + ", ".join(f"{v:.4f}" for v in stats["seeds"])
                    + " |"
                )
    return "\n".join(lines)


def format_bodies(table: dict) -> str:
    """One row per data set and task, one `mean ± std` column per body."""
    bodies = []
    for tasks in table.values():
        for entry in tasks.values():
            bodies += [b for b in entry["bodies"] if b not in bodies]
    lines = [
        "| data set | task | TF-IDF + LR | "
        + " | ".join(f"`{b}`, mean ± std" for b in bodies)
        + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in bodies) + " |",
    ]
    for dataset, tasks in table.items():
        for column, entry in tasks.items():
            base = entry["tfidf_lr"]
            cells = []
            for body in bodies:
                stats = entry["bodies"].get(body)
                cells.append(
                    "-"
                    if stats is None
                    else f"{stats['mean']:.4f} ± {stats['std']:.4f} "
                    f"({len(stats['seeds'])})"
                )
            lines.append(
                f"| {dataset} | {column} | "
                + ("-" if base is None else f"{base:.4f}")
                + " | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def run(args) -> dict:
    specs = datasets(pathlib.Path(args.suite))
    names = args.datasets or list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SystemExit(
            f"suite: unknown data set(s) {unknown}; known: {list(specs)} "
            "(prepare the suite with `python -m benchmarks.suite_data`)"
        )
    output = pathlib.Path(args.output)
    done = json.loads(output.read_text())["runs"] if output.exists() else []
    chosen = {
        (name, body, seed)
        for name in names
        for body in args.bodies
        for seed in args.seeds
    }
    # Runs of other data sets, bodies or seeds stay in the output file.
    runs = [
        r for r in done if (r["dataset"], r["body"], r["seed"]) not in chosen
    ]
    for name in names:
        spec = specs[name]
        binary = binary_columns(spec)
        for body in args.bodies:
            for seed in args.seeds:
                key = (name, body, seed)
                out = os.path.join(args.runs, name, f"{body}_seed{seed}")
                metrics_path = os.path.join(out, "metrics.json")
                earlier = [
                    r
                    for r in done
                    if (r["dataset"], r["body"], r["seed"]) == key
                ]
                if os.path.exists(metrics_path):
                    # Run before: its metrics are read again.
                    with open(metrics_path) as f:
                        metrics = main_metrics(json.load(f), spec, binary)
                    record = (
                        earlier[0]
                        if earlier
                        else {
                            "dataset": name,
                            "body": body,
                            "seed": seed,
                            "wall_seconds": None,
                            "command": " ".join(
                                command(spec, out, body, seed)[1:]
                            ),
                        }
                    )
                    runs.append(
                        {
                            **record,
                            "metrics": metrics,
                            "linear": linear_choices(out),
                        }
                    )
                    continue
                cmd = command(spec, out, body, seed)
                print(f"{name} {body} seed {seed} ...", flush=True)
                start = time.perf_counter()
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out + ".log", "w") as log:
                    code = subprocess.run(
                        cmd, stdout=log, stderr=subprocess.STDOUT
                    ).returncode
                wall = time.perf_counter() - start
                if code != 0 or not os.path.exists(metrics_path):
                    print(f"  failed (exit {code}); see {out}.log")
                    continue
                with open(metrics_path) as f:
                    metrics = main_metrics(json.load(f), spec, binary)
                runs.append(
                    {
                        "dataset": name,
                        "body": body,
                        "seed": seed,
                        "wall_seconds": round(wall, 1),
                        "command": " ".join(cmd[1:]),
                        "metrics": metrics,
                        "linear": linear_choices(out),
                    }
                )
                print(
                    f"  {wall:.0f} s: "
                    + ", ".join(
                        f"{c} {m:.4f} (tfidf_lr {b:.4f})"
                        for c, (m, b) in metrics.items()
                    ),
                    flush=True,
                )
                _write(output, runs)
    result = _write(output, runs)
    print(format_table(result["table"]))
    if len({r["body"] for r in runs}) > 1:
        print(format_bodies(result["table"]))
    return result


def _write(output: pathlib.Path, runs: list[dict]) -> dict:
    result = {"runs": runs, "table": summarize(runs)}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, output)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--bodies", nargs="+", default=["mmoe"])
    parser.add_argument("--suite", default=str(SUITE))
    parser.add_argument("--runs", default=str(ROOT / "output" / "suite"))
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results" / "suite.json")
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
