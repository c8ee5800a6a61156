"""Plain Keras: the text MMoE model on the bundled reviews, per-task metrics.

    python -m benchmarks.reviews_keras [--body mmoe] [--epochs 20]

Token ids come from `keras.layers.TextVectorization` fitted on the train
split; the model is `keras_mmoe.MultiTaskModel`; early stopping watches the
validation loss; the figures are on the test split.
"""

import argparse
import json
import pathlib
import time

import keras
import numpy as np

from benchmarks import reviews_data
from keras_mmoe import MultiTaskModel, Task, gate_diagnostics
from pipeline import evaluation

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "output" / "keras_demo"


def vectorize(texts, max_tokens, sequence_length):
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length
    )
    vectorizer.adapt(texts["train"], batch_size=1024)
    return {
        split: np.asarray(vectorizer(values)).astype("int32")
        for split, values in texts.items()
    }, vectorizer.vocabulary_size()


def train(
    args,
    texts,
    labels,
    classes,
    log=print,
    tasks=None,
    body_config=None,
    stopping=None,
):
    """-> (model, token ids by split, test metrics by task, fit seconds).

    The model has the heads of `tasks` (default: every task of
    `reviews_data.TASKS`) and learns from their labels only.
    `body_config` overrides entries of the body's `BODY_CONFIGS`.
    `stopping`: the callback that stops training (and chooses the weights
    the test metrics are of) instead of early stopping on the validation
    loss with the best weights restored.
    """
    names = list(reviews_data.TASKS if tasks is None else tasks)
    labels = {s: {t: labels[s][t] for t in names} for s in labels}
    ids, vocabulary_size = vectorize(
        texts, args.max_tokens, args.sequence_length
    )
    keras.utils.set_random_seed(args.seed)
    tasks = [Task(name, len(classes[name])) for name in names]
    model = MultiTaskModel(
        tasks=tasks,
        body=args.body,
        body_config={**BODY_CONFIGS[args.body], **(body_config or {})},
        text_encoder={
            "vocabulary_size": vocabulary_size,
            "embedding_dim": args.embedding_dim,
            "encoder": args.encoder,
        },
        sequence_length=args.sequence_length,
        tower_units=[32],
        dropout=args.dropout,
        wide=(
            {"ngram_buckets": args.wide_buckets, "scale": args.wide_scale}
            if args.wide_buckets
            else None
        ),
    )
    model.compile(keras.optimizers.Adam(args.learning_rate))
    start = time.perf_counter()
    model.fit(
        ids["train"],
        labels["train"],
        validation_data=(ids["validation"], labels["validation"]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[
            stopping
            or keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=args.patience,
                restore_best_weights=True,
            )
        ],
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    predictions = model.predict(ids["test"], batch_size=1024, verbose=0)
    results = {
        task: evaluation.task_metrics(labels["test"][task], predictions[task])
        for task in names
    }
    return model, ids, results, seconds


BODY_CONFIGS = {
    "mmoe": {"num_experts": 8, "expert_units": 64},
    "omoe": {"num_experts": 8, "expert_units": 64},
    "shared_bottom": {"units": 128},
    "cgc": {"num_shared_experts": 4, "num_task_experts": 2, "expert_units": 64},
    "ple": {
        "num_levels": 2,
        "num_shared_experts": 4,
        "num_task_experts": 2,
        "expert_units": 64,
    },
    "single_task": {"units": 64},
}


def add_training_args(parser):
    """The model and training flags (defaults: the pipeline's Trainer)."""
    parser.add_argument("--encoder", default="cnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument(
        "--wide-buckets",
        type=int,
        default=200_000,
        help="hashed bigram rows of the wide BagOfNgrams; 0: no wide part",
    )
    parser.add_argument("--wide-scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", default="mmoe", choices=sorted(BODY_CONFIGS))
    add_training_args(parser)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    texts, labels, classes = reviews_data.load()
    model, ids, results, seconds = train(args, texts, labels, classes)
    print(f"\nTest split, body={args.body}, trained in {seconds:.0f} s:")
    print(evaluation.format_table(results))

    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"reviews_keras_{args.body}.json"
    out.write_text(
        json.dumps(
            {"body": args.body, "train_seconds": seconds, "tasks": results},
            indent=2,
        )
    )
    print(f"Metrics: {out}")
    if args.body in ("mmoe", "omoe", "cgc", "ple"):
        weights = gate_diagnostics.collect_gate_weights(
            model.gate_model(), ids["test"]
        )
        png = gate_diagnostics.plot_gate_heatmap(
            weights, args.output / f"gates_{args.body}.png"
        )
        print(f"Gate heatmap: {png}")


if __name__ == "__main__":
    main()
