"""Seed variance and a seed ensemble of the text MMoE model on the reviews.

    python -m benchmarks.seed_ensemble [--seeds 0,1,2] [--quick]

Trains `benchmarks.reviews_keras`'s model (the pipeline Trainer's settings,
token ids from `keras.layers.TextVectorization`) once per seed, and scores
each model and the ensemble (the mean of the seeds' probabilities) on the
validation and the test split (rows with text, as the TF-IDF reference).
Writes `benchmarks/results/seed_ensemble.json` and prints both tables.

The question it answers: how much of the gap to the TF-IDF bar is seed
noise, and what serving N models instead of one would buy.
"""

import argparse
import json
import pathlib

import numpy as np

from benchmarks import reviews_data, reviews_keras
from pipeline import evaluation

RESULTS = (
    pathlib.Path(__file__).resolve().parent / "results" / "seed_ensemble.json"
)
SPLITS = ("validation", "test")


def score(labels: dict, probabilities: dict) -> dict:
    """Recommended AUC, Rating and Department accuracy: the issue's bar."""
    metrics = {
        task: evaluation.task_metrics(labels[task], probabilities[task])
        for task in reviews_data.TASKS
    }
    return {
        "recommended_auc": metrics["recommended"]["auc"],
        "rating_accuracy": metrics["rating"]["accuracy"],
        "department_accuracy": metrics["department"]["accuracy"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--quick", action="store_true", help="1 epoch, 2 seeds: a smoke run"
    )
    reviews_keras.add_training_args(parser)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.body = "mmoe"
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.epochs = seeds[:2], 1

    texts, labels, classes = reviews_data.load()
    runs, predictions = [], {split: [] for split in SPLITS}
    for seed in seeds:
        args.seed = seed
        model, ids, _, seconds = reviews_keras.train(
            args, texts, labels, classes
        )
        run = {"seed": seed, "train_seconds": seconds}
        for split in SPLITS:
            p = model.predict(ids[split], batch_size=1024, verbose=0)
            predictions[split].append(p)
            run[split] = score(labels[split], p)
        runs.append(run)
        print(f"seed {seed}: {run}", flush=True)

    results = {"seeds": seeds, "runs": runs, "single_mean": {}, "ensemble": {}}
    for split in SPLITS:
        results["single_mean"][split] = {
            k: float(np.mean([r[split][k] for r in runs]))
            for k in runs[0][split]
        }
        mean = {
            task: np.mean([p[task] for p in predictions[split]], axis=0)
            for task in reviews_data.TASKS
        }
        results["ensemble"][split] = score(labels[split], mean)
    for split in SPLITS:
        print(f"\n{split}: Recommended AUC / Rating acc / Department acc")
        rows = [(f"seed {r['seed']}", r[split]) for r in runs]
        rows += [
            ("mean of the seeds", results["single_mean"][split]),
            (f"ensemble of {len(seeds)}", results["ensemble"][split]),
        ]
        for name, m in rows:
            print(f"  {name:<20}" + " / ".join(f"{v:.4f}" for v in m.values()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
