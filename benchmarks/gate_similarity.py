"""Do similar tasks get similar gates? MMoE's gates against label association.

    python -m benchmarks.gate_similarity --runs DIR [DIR ...]
        [--synthetic benchmarks/results/synthetic.json] [--output DIR]
    python -m benchmarks.gate_similarity --pairs-from gate_similarity.json
        --synthetic FILE

The seed's claim: MMoE's per-task gates learn how much to share, so related
tasks end with similar gate distributions and unrelated ones with different
experts. This reads what the pipeline already measured and relates it to
how related the tasks' labels are.

- Gates: every `mmoe run` with the MMoE body writes, in its Trainer's
  `training_summary.json`, each task's mean gate over the validation rows
  and, per pair of tasks, the Jensen-Shannon divergence (natural log, 0 for
  equal gates, at most ln 2 = 0.693) and the cosine similarity of the two
  mean gates. `--runs` folders are searched for `<data set>/mmoe_seed<N>/`
  run folders (what `benchmarks.suite` writes); the last Trainer run of each
  is read.
- Label association, on the training rows where both tasks have a label
  (the data set's file, as `benchmarks.suite` runs it): Cramér's V of the
  contingency table (for two binary labels, the absolute Pearson
  correlation) and the dependence `I(a; b) / min(H(a), H(b))`, 1 when one
  label is a function of the other (a coarse and a fine label of the same
  texts) and 0 when they are independent.
- Across pairs: the Spearman rank correlation of each association with the
  pair's mean divergence over seeds. "Similar tasks, similar gates" predicts
  a negative one.
- `--synthetic`: a `benchmarks.synthetic` result beside it, MMoE's gate
  divergence per run against the label correlation `p` sets there.
- `--pairs-from`: instead of `--runs`, the text pairs of an earlier
  `gate_similarity.json` (their run folders need not exist any more), to
  redraw the result with another `--synthetic`.

Writes `gate_similarity.json` and `gate_similarity.png` to `--output`
(default benchmarks/results).
"""

import argparse
import json
import math
import pathlib
import re
import sys

import numpy as np
import pandas as pd

from benchmarks import suite

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RUN_DIR = re.compile(r"mmoe_seed(\d+)$")


def contingency(a, b) -> np.ndarray:
    """Counts of each (value of a, value of b)."""
    return pd.crosstab(pd.Series(list(a)), pd.Series(list(b))).to_numpy()


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (no bias correction)."""
    table = np.asarray(table, dtype=float)
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    expected = np.outer(rows, cols) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    k = min(table.shape) - 1
    return math.sqrt(chi2 / (n * k)) if k > 0 else 0.0


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def dependence(table: np.ndarray) -> float:
    """`I(a; b) / min(H(a), H(b))` of a contingency table."""
    joint = np.asarray(table, dtype=float)
    joint = joint / joint.sum()
    h_a, h_b = _entropy(joint.sum(axis=1)), _entropy(joint.sum(axis=0))
    mutual = h_a + h_b - _entropy(joint.ravel())
    smaller = min(h_a, h_b)
    return max(0.0, mutual) / smaller if smaller > 0 else 0.0


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def find_runs(folders) -> list[dict]:
    """Every MMoE run under `folders`: its data set, seed and gate summary."""
    found = []
    for folder in folders:
        for run in sorted(pathlib.Path(folder).glob("*/mmoe_seed*")):
            match = RUN_DIR.search(run.name)
            if not match or not run.is_dir():
                continue
            summaries = sorted(
                run.glob("tfx/Trainer/model_run/*/training_summary.json"),
                key=lambda p: int(p.parent.name),
            )
            if not summaries:
                continue
            summary = json.loads(summaries[-1].read_text())
            if not summary.get("gates"):
                continue
            found.append(
                {
                    "dataset": run.parent.name,
                    "seed": int(match.group(1)),
                    # The run folder from the --runs folder's name on.
                    "path": str(run.relative_to(pathlib.Path(folder).parent)),
                    "columns": {
                        task: entry["column"]
                        for task, entry in summary["tasks"].items()
                    },
                    "gates": summary["gates"],
                }
            )
    return found


def label_association(spec: dict, column_a: str, column_b: str) -> dict:
    """Cramér's V and the dependence of two label columns on the training
    rows where both have a label."""
    frame = pd.read_csv(
        spec["file"],
        dtype=str,
        keep_default_na=False,
        usecols=[column_a, column_b, "split"],
    )
    frame = frame[frame["split"].str.strip() == "train"]
    a, b = frame[column_a].str.strip(), frame[column_b].str.strip()
    both = (a != "") & (b != "")
    table = contingency(a[both], b[both])
    return {
        "rows": int(both.sum()),
        "cramers_v": cramers_v(table),
        "dependence": dependence(table),
    }


def pairs(runs: list[dict], specs: dict) -> list[dict]:
    """Per (data set, pair of tasks): the label association and the gate
    divergence and cosine of each seed, with their means."""
    grouped = {}
    for run in runs:
        for pair in run["gates"]["pairs"]:
            key = (run["dataset"], pair["task_a"], pair["task_b"])
            entry = grouped.setdefault(
                key,
                {
                    "dataset": run["dataset"],
                    "task_a": pair["task_a"],
                    "task_b": pair["task_b"],
                    "columns": [
                        run["columns"][pair["task_a"]],
                        run["columns"][pair["task_b"]],
                    ],
                    "seeds": [],
                    "js_divergence": [],
                    "cosine_similarity": [],
                },
            )
            entry["seeds"].append(run["seed"])
            entry["js_divergence"].append(pair["js_divergence"])
            entry["cosine_similarity"].append(pair["cosine_similarity"])
    out = []
    for (dataset, _, _), entry in sorted(grouped.items()):
        if dataset not in specs:
            raise SystemExit(
                f"gate_similarity: no data file for data set {dataset!r} "
                "(run benchmarks.suite_data, or pass --suite)"
            )
        entry.update(label_association(specs[dataset], *entry["columns"]))
        entry["mean_js_divergence"] = float(np.mean(entry["js_divergence"]))
        entry["mean_cosine_similarity"] = float(
            np.mean(entry["cosine_similarity"])
        )
        out.append(entry)
    return out


def synthetic_points(result: dict) -> list[dict]:
    """Per `p` of a synthetic result: the mean label correlation and MMoE's
    gate divergence of every run."""
    points = []
    for key, gates in sorted(result.get("gate_js_divergence", {}).items()):
        points.append(
            {
                "p": float(key),
                "label_correlation": result["label_correlation"][key]["mean"],
                "js_divergence": gates.get("runs", []),
                "mean_js_divergence": gates["mean"],
                "standard_error": gates.get("standard_error"),
            }
        )
    return points


def measure(runs: list[dict], specs: dict, synthetic: dict | None) -> dict:
    return summarize(pairs(runs, specs), [r["path"] for r in runs], synthetic)


def summarize(found: list[dict], paths: list[str], synthetic: dict | None):
    """The result of the text pairs `found` (read from the runs at
    `paths`), and of a synthetic result."""
    mean_js = [p["mean_js_divergence"] for p in found]
    result = {
        "command": "python -m benchmarks.gate_similarity",
        "runs": paths,
        "pairs": found,
        "spearman": {
            "cramers_v_vs_js": spearman(
                [p["cramers_v"] for p in found], mean_js
            ),
            "dependence_vs_js": spearman(
                [p["dependence"] for p in found], mean_js
            ),
        },
    }
    if synthetic is not None:
        result["synthetic"] = synthetic_points(synthetic)
    return result


def _label(pair: dict) -> str:
    return f"{pair['dataset']}: {pair['task_a']} / {pair['task_b']}"


def _points(ax, x, entry, label, color, size, font) -> None:
    """At `x`: each of `entry`'s divergences in grey, their mean in
    `color`, labelled."""
    values = entry["js_divergence"]
    ax.scatter([x] * len(values), values, s=size, color="0.6")
    ax.scatter([x], [entry["mean_js_divergence"]], s=30, color=color)
    ax.annotate(
        label,
        (x, entry["mean_js_divergence"]),
        fontsize=font,
        xytext=(3, 3),
        textcoords="offset points",
    )


def plot(result: dict, output: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if result.get("synthetic") else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(6.5 * panels, 5), squeeze=False
    )
    ax = axes[0][0]
    for pair in result["pairs"]:
        _points(
            ax, pair["cramers_v"], pair, _label(pair), "C0", size=10, font=6
        )
    rho = result["spearman"]["cramers_v_vs_js"]
    ax.set_title(f"pipeline MMoE, text tasks (Spearman {rho:+.2f})")
    ax.set_xlabel("label association (Cramér's V, training rows)")
    ax.set_ylabel("gate Jensen-Shannon divergence (validation)")
    ax.set_ylim(0, math.log(2))
    if panels == 2:
        ax = axes[0][1]
        for point in result["synthetic"]:
            _points(
                ax,
                point["label_correlation"],
                point,
                f"p = {point['p']}",
                "C1",
                size=6,
                font=7,
            )
        ax.set_title("synthetic (Ma et al. 2018), one point per run")
        ax.set_xlabel("label correlation (Pearson)")
        ax.set_ylabel("gate Jensen-Shannon divergence (test rows)")
    fig.tight_layout()
    path = output / "gate_similarity.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    lines = [
        "| data set | tasks | rows | Cramér's V | dependence "
        "| gate JS per seed | mean | cosine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in sorted(result["pairs"], key=lambda p: p["cramers_v"]):
        lines.append(
            f"| {p['dataset']} | {p['task_a']} / {p['task_b']} | {p['rows']:,} "
            f"| {p['cramers_v']:.2f} | {p['dependence']:.2f} | "
            + ", ".join(f"{v:.3f}" for v in p["js_divergence"])
            + f" | {p['mean_js_divergence']:.3f} "
            f"| {p['mean_cosine_similarity']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", nargs="+")
    source.add_argument("--pairs-from", type=pathlib.Path)
    parser.add_argument("--suite", default=str(suite.SUITE))
    parser.add_argument("--synthetic", default=None)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    missing = [f for f in args.runs or [] if not pathlib.Path(f).is_dir()]
    if missing:
        parser.error(f"--runs: no such folder: {', '.join(missing)}")
    if args.synthetic and not pathlib.Path(args.synthetic).is_file():
        parser.error(f"--synthetic: no such file: {args.synthetic}")
    if args.pairs_from:
        try:
            earlier = json.loads(args.pairs_from.read_text())
            found, paths = earlier["pairs"], earlier["runs"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--pairs-from: not a gate_similarity.json: {error}")
    else:
        runs = find_runs(args.runs)
        if not runs:
            parser.error(
                "--runs: no mmoe_seed<N> run with gate statistics found"
            )
    synthetic = (
        json.loads(pathlib.Path(args.synthetic).read_text())
        if args.synthetic
        else None
    )
    if args.pairs_from:
        result = summarize(found, paths, synthetic)
    else:
        specs = suite.datasets(pathlib.Path(args.suite))
        result = measure(runs, specs, synthetic)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "gate_similarity.json").write_text(json.dumps(result, indent=1))
    plot(result, output)
    print(format_table(result))
    print(f"Spearman: {result['spearman']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
