"""Pipeline constants and defaults (constants only)."""

PIPELINE_NAME = "keras-mmoe"
MODEL_NAME = "mmoe"

# Trainer hyperparameters (custom_config of the Trainer), overridable from
# the `mmoe run` command line.
TRAINER_DEFAULTS = {
    "body": "mmoe",
    "body_config": None,  # None: the body's defaults for text.
    "encoder": "cnn",
    "embedding_dim": 64,
    # The CNN convolves only up to each text's last token (same outputs,
    # less work; keras_mmoe.TextEncoder(skip_padding=...)).
    "skip_padding": True,
    "tower_units": [32],
    "dropout": 0.2,
    "epochs": 20,
    "batch_size": 64,
    "learning_rate": 1e-3,
    # "fixed" (the tasks' loss weights) or "uncertainty" (learned task
    # weights, Kendall et al. 2018).
    "loss_weighting": "fixed",
    # A linear model over unigrams and hashed bigrams added to every task's
    # logits (keras_mmoe.BagOfNgrams); None for the deep model alone.
    "wide": {"ngram_buckets": 200_000, "scale": 10.0},
    # A TF-IDF logistic regression per task over the whole text's word
    # unigrams and bigrams (keras_mmoe.TfidfLinear), fit with scikit-learn
    # and blended with the network's logits, C and the blend weight chosen
    # per task on validation (pipeline.linear). False for the network alone.
    "linear": True,
    # The regressions are fit on at most this many training rows, and C and
    # the blend chosen on at most this many validation rows (a seeded uniform
    # sample of a larger split; document frequencies count every row).
    "linear_max_rows": 100_000,
    # {reader: [sources]}, by label column or task name: each reader task's
    # logits add a learned map of its sources' logits (keras_mmoe.Task's
    # `reads_from`), e.g. {"Recommended IND": ["Rating"]}. None for none.
    "reads_from": None,
    "early_stopping_patience": 3,
    "distribution": "default",  # default | mirrored | multi_worker_mirrored
    # Initialization, shuffling and dropout; None for a fresh draw each run.
    "seed": 0,
}

# Evaluator: a model is blessed only if every task's metric on the test split
# is at least this (binary tasks: AUC; multi-class: accuracy), and, when a
# blessed model exists, no task's metric drops by more than CHANGE_THRESHOLD.
DEFAULT_LOWER_BOUND = {"binary": 0.5, "multiclass": 0.0}
CHANGE_THRESHOLD = 0.05

# Fraction of rows per split when the data has no `split` column (hash split).
HASH_BUCKETS = {"train": 8, "validation": 1, "test": 1}

# Set (to anything but "" or "0") in the environment, the Trainer prints
# Keras's own per-epoch output instead of one line per epoch; `mmoe run
# --verbose` sets it.
VERBOSE_ENV = "MMOE_VERBOSE"


def check_trainer_config(config: dict) -> None:
    """Raises a ValueError naming the first `--trainer-arg` value of the
    wrong kind, so `mmoe run` refuses it before any work."""

    def fail(key, expected):
        raise ValueError(
            f"--trainer-arg {key} expected {expected}. Received: "
            f"{key}={config[key]!r}"
        )

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def integer(value):
        return isinstance(value, int) and not isinstance(value, bool)

    for key, value in config.items():
        if key in (
            "epochs",
            "batch_size",
            "embedding_dim",
            "linear_max_rows",
        ) and not (integer(value) and value >= 1):
            fail(key, "an integer >= 1")
        if key == "early_stopping_patience" and not (
            integer(value) and value >= 1
        ):
            fail(key, "an integer >= 1")
        if key == "learning_rate" and not (number(value) and value > 0):
            fail(key, "a number > 0")
        if key == "dropout" and not (number(value) and 0 <= value < 1):
            fail(key, "a number in [0, 1)")
        if key == "tower_units" and not (
            isinstance(value, list)
            and all(integer(v) and v >= 1 for v in value)
        ):
            fail(key, "a JSON list of integers >= 1, e.g. [64]")
        if key == "seed" and not (value is None or integer(value)):
            fail(key, "an integer or null")
        if key in ("linear", "skip_padding") and not isinstance(value, bool):
            fail(key, "true or false")
        if key in ("body_config", "wide", "reads_from", "text_encoder_config"):
            if not (value is None or isinstance(value, dict)):
                fail(key, 'a JSON object or null, e.g. {"num_experts": 4}')
        if key == "loss_weighting" and value not in ("fixed", "uncertainty"):
            fail(key, '"fixed" or "uncertainty"')
        if key == "distribution" and value not in (
            "default",
            "mirrored",
            "multi_worker_mirrored",
        ):
            fail(key, "default, mirrored or multi_worker_mirrored")
        if key == "encoder":
            from keras_mmoe import ENCODERS

            if value not in ENCODERS:
                fail(key, f"one of {list(ENCODERS)}")
