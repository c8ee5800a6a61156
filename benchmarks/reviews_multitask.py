"""Multi-task text on the bundled reviews: every body, and label scarcity.

    python -m benchmarks.reviews_multitask [--quick] [--bodies mmoe ple ...]

For each body (single-task, Shared-Bottom, OMoE, MMoE, PLE) a
`keras_mmoe.MultiTaskModel` is trained on Recommended IND, Rating and
Department Name from plain Keras (`benchmarks.reviews_keras.train`: token ids
from `TextVectorization`, the pipeline's model settings), twice:

- `all`: every label;
- `rating_5pct`: only 5% of the Rating labels of the train and validation
  splits kept (the rest missing, -1), the other tasks complete. The
  single-task body then trains Rating on exactly those 5%.

In the same run, the TF-IDF word 1-2 gram + logistic regression baseline
(scikit-learn, one model per task) on the same texts and labels. Figures are
on the test split (rows with text, as in data/README.md). Gated bodies also
get a tasks x experts gate heatmap and the Jensen-Shannon divergence between
the mean gates of the related pair (Rating, Recommended IND) and of the
unrelated pair (Rating, Department Name).

Writes `benchmarks/results/reviews_multitask.json` and
`benchmarks/results/gates_<body>.png`.
"""

import argparse
import json
import pathlib
import time

import numpy as np

from benchmarks import reviews_data, reviews_keras
from pipeline import evaluation

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
BODIES = ("single_task", "shared_bottom", "omoe", "mmoe", "ple")
GATED = ("omoe", "mmoe", "cgc", "ple")
SCARCE_TASK = "rating"
SCARCE_FRACTION = 0.05
RELATED = ("rating", "recommended")
UNRELATED = ("rating", "department")


def scarce(
    labels, fraction=SCARCE_FRACTION, seed=0, task=SCARCE_TASK, exact=False
):
    """Labels with only `fraction` of the `task` labels (Rating) of the
    train and validation splits kept (`reviews_data.hide_labels`, `seed` and
    `exact` passed on); the other tasks and the test split untouched."""
    out = {split: dict(tasks) for split, tasks in labels.items()}
    for split in ("train", "validation"):
        out[split][task] = reviews_data.hide_labels(
            labels[split][task], fraction, seed=seed, exact=exact
        )
    return out


def head(texts, labels, rows):
    """The first `rows` rows of every split."""
    return (
        {s: t[:rows] for s, t in texts.items()},
        {s: {k: v[:rows] for k, v in t.items()} for s, t in labels.items()},
    )


def tfidf_baseline(texts, labels, quick=False, tasks=None):
    """TF-IDF word 1-2 grams + logistic regression, one model per task of
    `tasks` (default: every task), trained on train (labelled rows only),
    measured on test."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, sublinear_tf=True
    )
    x_train = vectorizer.fit_transform(texts["train"])
    x_test = vectorizer.transform(texts["test"])
    results = {}
    for task in reviews_data.TASKS if tasks is None else tasks:
        y = labels["train"][task]
        keep = y >= 0
        model = LogisticRegression(max_iter=100 if quick else 1000)
        model.fit(x_train[keep], y[keep])
        # One column per class index, 0 for a class the kept training
        # labels lack (`predict_proba` has columns for `classes_` only).
        count = 1 + max(int(split[task].max()) for split in labels.values())
        p = np.zeros((x_test.shape[0], count))
        p[:, model.classes_] = model.predict_proba(x_test)
        if count == 2:
            p = p[:, 1:]
        results[task] = evaluation.task_metrics(labels["test"][task], p)
    return results


def gate_report(model, ids, body, out_dir):
    """Mean gates per task on the test split, the pairs' divergences, and
    the heatmap. PLE/CGC gates of different tasks mix different expert sets
    (shared + own), so only their shared experts' share is comparable:
    their divergence is left out."""
    from keras_mmoe import gate_diagnostics

    weights = gate_diagnostics.collect_gate_weights(
        model.gate_model(), ids["test"]
    )
    png = gate_diagnostics.plot_gate_heatmap(
        weights, out_dir / f"gates_{body}.png"
    )
    means = {t: np.asarray(w).mean(axis=0).tolist() for t, w in weights.items()}
    report = {"mean_gates": means, "heatmap": pathlib.Path(png).name}
    if body in ("mmoe", "omoe"):
        report["js_related"] = gate_diagnostics.js_divergence(
            means[RELATED[0]], means[RELATED[1]]
        )
        report["js_unrelated"] = gate_diagnostics.js_divergence(
            means[UNRELATED[0]], means[UNRELATED[1]]
        )
    return report


def run_body(body, setting, texts, labels, classes, args, out_dir):
    train_args = argparse.Namespace(**{**vars(args), "body": body})
    model, ids, results, seconds = reviews_keras.train(
        train_args, texts, labels, classes, log=lambda *a: None
    )
    row = {"train_seconds": seconds, "tasks": results}
    if body in GATED and setting == "all":
        row["gates"] = gate_report(model, ids, body, out_dir)
    return row


def format_rows(results) -> str:
    lines = [
        f"{'setting':<12}{'model':<15}"
        f"{'Recommended AUC':>16}{'Rating acc':>11}{'Rating F1':>10}"
        f"{'Dept acc':>9}"
    ]
    for setting, models in results.items():
        for name, row in models.items():
            t = row["tasks"]
            lines.append(
                f"{setting:<12}{name:<15}"
                f"{t['recommended']['auc']:>16.4f}"
                f"{t['rating']['accuracy']:>11.4f}"
                f"{t['rating']['macro_f1']:>10.4f}"
                f"{t['department']['accuracy']:>9.4f}"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", nargs="+", default=list(BODIES))
    parser.add_argument(
        "--quick", action="store_true", help="2 epochs on 1,500 rows"
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    reviews_keras.add_training_args(parser)
    args = parser.parse_args(argv)
    args.verbose = 0

    texts, labels, classes = reviews_data.load()
    if args.quick:
        texts, labels = head(texts, labels, 1500)
        args.epochs = 2
    args.output.mkdir(parents=True, exist_ok=True)
    settings = {"all": labels, "rating_5pct": scarce(labels)}
    results = {}
    start = time.perf_counter()
    for setting, setting_labels in settings.items():
        results[setting] = {
            "tfidf_lr": {"tasks": tfidf_baseline(texts, setting_labels)}
        }
        for body in args.bodies:
            print(f"{setting}: training {body} ...", flush=True)
            results[setting][body] = run_body(
                body, setting, texts, setting_labels, classes, args, args.output
            )
        print(format_rows({setting: results[setting]}), flush=True)
    kept = int((settings["rating_5pct"]["train"][SCARCE_TASK] >= 0).sum())
    report = {
        "command": "python -m benchmarks.reviews_multitask",
        "quick": args.quick,
        "settings": {
            "all": "every label",
            "rating_5pct": (
                f"{SCARCE_FRACTION:.0%} of the Rating labels of train and "
                f"validation kept ({kept} train labels), others complete"
            ),
        },
        "training": {
            k: v
            for k, v in vars(args).items()
            if k not in ("output", "bodies", "verbose")
        },
        "test_rows": len(texts["test"]),
        "wall_seconds": time.perf_counter() - start,
        "results": results,
    }
    path = args.output / (
        "reviews_multitask_quick.json"
        if args.quick
        else "reviews_multitask.json"
    )
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(format_rows(results))
    print(f"Wrote {path}")
    return report


if __name__ == "__main__":
    main()
