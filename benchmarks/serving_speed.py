"""In-process speed of the exported SavedModel against the Keras model alone.

Run after `make demo`: `python -m benchmarks.serving_speed` (`--quick` for a
short run). Writes `benchmarks/results/serving_speed.json` and prints a
table.

What is timed, on real test-split reviews (Title + " " + Review Text):

- `predict_text`: the SavedModel's signature on raw UTF-8 strings, as TF
  Serving runs it minus the RPC: TF-Text normalization and tokenization,
  the tf.Transform vocabulary lookup, the model, the class-name lookup.
- `keras`: the Keras model (the Trainer's `model.keras`) alone in a
  `tf.function`, on the inputs `transform_features` computed beforehand
  (token ids, and the term ids and counts of the linear part).

Latency: batch 1, one call at a time, p50 and p99 over many calls.
Throughput: batches of 64 and 256, reviews per second. The two are timed in
interleaved blocks so they share the machine's drift. The signature's own
overhead at a batch size is `1 - keras time / predict_text time`.

Targets (2 CPU cores): p50 <= 2 ms for one review, >= 10,000
reviews/s at batch 256, overhead < 20% at batch 256.
"""

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402, F401  (registers the TF-Text ops)

import keras_mmoe  # noqa: E402, F401  (registers the model classes)
from benchmarks import timing  # noqa: E402
from serving import export, features  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "serving_speed.json"
DEMO = ROOT / "output" / "demo"
DATA = ROOT / "data" / "womens_clothing_reviews.csv.gz"
TARGETS = {
    "p50_ms_batch_1": 2.0,
    "reviews_per_s_batch_256": 10_000.0,
    "overhead_batch_256": 0.20,
}


def _demo_models() -> tuple[str, str]:
    """The demo's pushed SavedModel and the Trainer's model.keras of the
    newest run (as ML Metadata records them, cache hits included)."""
    from pipeline import report

    metadata = DEMO / "tfx" / "metadata.db"
    outputs = report.run_outputs(str(metadata)) if metadata.exists() else {}
    pushed = outputs.get("AtomicPusher", {}).get("pushed_model")
    run_dir = outputs.get("Trainer", {}).get("model_run")
    keras_path = os.path.join(run_dir, "model.keras") if run_dir else ""
    if not (pushed and os.path.isdir(pushed) and os.path.exists(keras_path)):
        raise SystemExit(
            f"No pushed demo model under {DEMO}: run `make demo` first, or "
            "pass --model and --keras-model."
        )
    return pushed, keras_path


def test_texts(n: int) -> list[bytes]:
    frame = pd.read_csv(DATA, keep_default_na=False)
    frame = frame[frame["split"] == "test"]
    texts = (frame["Title"] + " " + frame["Review Text"]).str.strip()
    texts = [t.encode() for t in texts if t]
    return (texts * (n // len(texts) + 1))[:n]


def measure(model_dir, keras_path, quick=False):
    loaded = tf.saved_model.load(model_dir)
    predict_text = loaded.signatures[features.PREDICT_TEXT]
    transform = loaded.signatures["transform_features"]
    model = keras.saving.load_model(keras_path, compile=False)

    terms = model.linear is not None

    @tf.function(reduce_retracing=True)
    def keras_call(inputs):
        return model(inputs, training=False)

    summary = os.path.join(os.path.dirname(keras_path), "training_summary.json")
    with open(summary) as f:
        # predict_text fills the first text column.
        text_column = json.load(f)["preprocessing"]["text_columns"][0]

    def token_ids(texts):
        examples = [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        text_column: tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[t])
                        )
                    }
                )
            ).SerializeToString()
            for t in texts
        ]
        return export.model_inputs(
            transform(examples=tf.constant(examples)), terms
        )

    def run_text(batch):
        out = predict_text(text=batch)
        next(iter(out.values())).numpy()

    def run_keras(batch):
        out = keras_call(batch)
        next(iter(out.values())).numpy()

    seconds = 0.3 if quick else 2.0
    blocks = 3 if quick else 7
    texts = test_texts(256 * 16)
    results = {}
    for batch_size in (1, 64, 256):
        text_batches = [
            tf.constant(texts[i : i + batch_size])
            for i in range(0, 16 * batch_size, batch_size)
        ]
        id_batches = [token_ids(b.numpy().tolist()) for b in text_batches]
        for fn, data in ((run_text, text_batches), (run_keras, id_batches)):
            timing.time_calls(fn, data, 0.2)  # Warm up (tracing, caches).
        per_call = {"predict_text": [], "keras": []}
        for _ in range(blocks):
            per_call["predict_text"] += timing.time_calls(
                run_text, text_batches, seconds / blocks
            )
            per_call["keras"] += timing.time_calls(
                run_keras, id_batches, seconds / blocks
            )
        row = {}
        for name, times in per_call.items():
            median = statistics.median(times)
            row[name] = {
                "calls": len(times),
                "p50_ms": 1e3 * median,
                "p99_ms": 1e3 * float(np.percentile(times, 99)),
                "reviews_per_s": batch_size / median,
            }
        row["overhead"] = (
            1 - row["keras"]["p50_ms"] / (row["predict_text"]["p50_ms"])
        )
        results[str(batch_size)] = row
    return results


def check_targets(results) -> dict:
    p50 = results["1"]["predict_text"]["p50_ms"]
    rate = results["256"]["predict_text"]["reviews_per_s"]
    overhead = results["256"]["overhead"]
    return {
        "p50_ms_batch_1": {
            "value": p50,
            "target": f"<= {TARGETS['p50_ms_batch_1']}",
            "met": p50 <= TARGETS["p50_ms_batch_1"],
        },
        "reviews_per_s_batch_256": {
            "value": rate,
            "target": f">= {TARGETS['reviews_per_s_batch_256']:.0f}",
            "met": rate >= TARGETS["reviews_per_s_batch_256"],
        },
        "overhead_batch_256": {
            "value": overhead,
            "target": f"< {TARGETS['overhead_batch_256']}",
            "met": overhead < TARGETS["overhead_batch_256"],
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="SavedModel dir (default: demo's)")
    parser.add_argument("--keras-model", help="the Trainer's model.keras")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.model and args.keras_model:
        model_dir, keras_path = args.model, args.keras_model
    elif args.model or args.keras_model:
        parser.error("pass both --model and --keras-model, or neither")
    else:
        model_dir, keras_path = _demo_models()
    results = measure(model_dir, keras_path, quick=args.quick)
    report = {
        "command": "python -m benchmarks.serving_speed",
        "model": os.path.relpath(model_dir, ROOT),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
        },
        "quick": args.quick,
        "results": results,
        "targets": check_targets(results),
    }
    timing.write_json(args.output, report)
    print(
        f"{'batch':>5} {'signature':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'reviews/s':>10}"
    )
    for batch, row in results.items():
        for name in ("predict_text", "keras"):
            r = row[name]
            print(
                f"{batch:>5} {name:>12} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
                f"{r['reviews_per_s']:10.0f}"
            )
        print(f"{batch:>5} {'overhead':>12} {row['overhead']:8.1%}")
    for name, target in report["targets"].items():
        print(
            f"{name}: {target['value']:.3f} (target {target['target']}) "
            f"{'met' if target['met'] else 'NOT met'}"
        )
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
