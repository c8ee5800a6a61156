"""The names the pipeline, the exported model and its clients share.

Transformed feature keys and vocabulary assets, the SavedModel's signatures
and output keys, the exit code of bad input, and the preprocessing config.
Constants and pure helpers only: every package imports this without pulling
in TensorFlow, TFX or tf.Transform.
"""

import dataclasses
import json
import re

# === Transformed feature keys and vocabulary file names ===

# int64 (batch, max_length): token ids, 0 = padding.
TOKEN_IDS = "token_ids"
# Asset name of the token vocabulary in the Transform graph.
TOKEN_VOCABULARY = "tokens_vocab"
# int64 (batch, None), sparse: each distinct word unigram and bigram of the
# whole text once (ids 1.., 0 = padding once made dense), and its count.
TERM_IDS = "term_ids"
TERM_COUNTS = "term_counts"
# Asset names of the term vocabularies: word unigrams, and bigrams as pairs
# of unigram ids (`first * 2**32 + second`).
TERM_VOCABULARY = "terms_vocab"
BIGRAM_VOCABULARY = "bigrams_vocab"

# === The exported model's signatures and outputs (see `serving.export`) ===

SERVING_DEFAULT = "serving_default"  # serialized raw tf.Examples
PREDICT_TEXT = "predict_text"  # raw UTF-8 text
TRANSFORM_FEATURES = "transform_features"  # raw tf.Examples -> features
# The input name of each signature: string (batch,).
SIGNATURE_INPUTS = {
    SERVING_DEFAULT: "examples",
    PREDICT_TEXT: "text",
    TRANSFORM_FEATURES: "examples",
}
_PROBABILITIES = "_probabilities"

# Exit code of a command given bad input (a missing file or column, a bad
# flag value), after one line on stderr.
EXIT_BAD_INPUT = 2

# === Defaults ===

MAX_LENGTH = 128
VOCABULARY_SIZE = 20000
NUM_OOV_BUCKETS = 10
# The most frequent unigrams, and as many bigrams, kept as terms; a term
# must occur at least TERM_MIN_COUNT times in the analyzed data.
TERM_VOCABULARY_SIZE = 500_000
TERM_MIN_COUNT = 2
# Raw text is cut to this many bytes before any other work, so one huge
# review costs no more than a long one.
MAX_TEXT_BYTES = 20000

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def task_name(column: str) -> str:
    """The output name of the task predicting CSV column `column`.

    Lowercase, every run of non-alphanumerics becomes one `_`, and leading
    or trailing `_` are stripped.

    Example:
    >>> task_name("Recommended IND")
    'recommended_ind'
    """
    name = _NON_ALPHANUMERIC.sub("_", column.lower()).strip("_")
    if not name:
        raise ValueError(
            "Expected a column name with at least one letter or digit. "
            f"Received: column={column!r}"
        )
    return name


def label_key(task: str) -> str:
    """Transformed key of a task's label: int64 (batch,), -1 = missing."""
    return f"{task}_label"


def label_vocabulary_name(task: str) -> str:
    """Asset name of a task's class vocabulary: line i is class i."""
    return f"{task}_label_vocab"


@dataclasses.dataclass
class PreprocessingConfig:
    """What `preprocessing_fn` reads from the raw examples and how.

    Passed to the Transform component as `custom_config=config.to_dict()`;
    TFX hands that dict back to `preprocessing_fn(inputs, custom_config)`.

    Args:
        text_columns: list of str. Raw columns joined with a space into the
            one text the model reads, e.g. `["Title", "Review Text"]`.
        label_columns: list of str. Raw columns that are classification
            targets; each becomes the task `task_name(column)`.
        max_length: int. Token ids per example (truncated or padded with 0).
        vocabulary_size: int. The most frequent tokens kept in the vocabulary.
        num_oov_buckets: int. Hash buckets for tokens outside the vocabulary.
        max_text_bytes: int. The raw text is cut to this many bytes first.
        term_vocabulary_size: int. The most frequent word unigrams kept as
            terms, and as many bigrams (read from the whole text, not only
            the first `max_length` tokens).
        term_min_count: int. Least number of occurrences of a term.

    Example:
    >>> config = PreprocessingConfig(["Review Text"], ["Rating"])
    >>> PreprocessingConfig.from_json(config.to_json()) == config
    True
    """

    text_columns: list[str]
    label_columns: list[str]
    max_length: int = MAX_LENGTH
    vocabulary_size: int = VOCABULARY_SIZE
    num_oov_buckets: int = NUM_OOV_BUCKETS
    max_text_bytes: int = MAX_TEXT_BYTES
    term_vocabulary_size: int = TERM_VOCABULARY_SIZE
    term_min_count: int = TERM_MIN_COUNT

    def __post_init__(self):
        for field in ("text_columns", "label_columns"):
            value = getattr(self, field)
            if isinstance(value, str) or not all(
                isinstance(column, str) and column for column in value
            ):
                raise ValueError(
                    f"`{field}` expected a list of non-empty column names. "
                    f"Received: {field}={value!r}"
                )
            setattr(self, field, list(value))
        if not self.text_columns:
            raise ValueError(
                "`text_columns` expected at least one column. "
                f"Received: text_columns={self.text_columns!r}"
            )
        tasks = [task_name(column) for column in self.label_columns]
        if len(set(tasks)) != len(tasks):
            raise ValueError(
                "`label_columns` expected columns with distinct task names. "
                f"Received: label_columns={self.label_columns!r} "
                f"(task names {tasks!r})"
            )
        for field, minimum in (
            ("max_length", 1),
            ("vocabulary_size", 1),
            ("num_oov_buckets", 1),
            ("max_text_bytes", 1),
            ("term_vocabulary_size", 1),
            ("term_min_count", 1),
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                valid = False
            else:
                valid = value >= minimum
            if not valid:
                raise ValueError(
                    f"`{field}` expected an integer >= {minimum}. "
                    f"Received: {field}={value!r}"
                )

    @property
    def tasks(self) -> list[str]:
        """Task names, in the order of `label_columns`."""
        return [task_name(column) for column in self.label_columns]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> "PreprocessingConfig":
        return cls(**config)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PreprocessingConfig":
        return cls.from_dict(json.loads(text))


def probabilities_key(task: str) -> str:
    """Output key of a task's class probabilities, float32 (batch, C)."""
    return f"{task}{_PROBABILITIES}"


def predicted_label_key(task: str) -> str:
    """Output key of a task's most probable class name, string (batch,)."""
    return f"{task}_label"


def weight_key(task: str) -> str:
    """`transform_features` key of a task's example weight, float32
    (batch,): 1 when the example has the task's label, else 0."""
    return f"{task}_weight"


def output_tasks(output_keys) -> list[str]:
    """The tasks of a signature's outputs, sorted: those with a
    `probabilities_key`.

    Example:
    >>> output_tasks(["rating_label", "rating_probabilities"])
    ['rating']
    """
    return sorted(
        key[: -len(_PROBABILITIES)]
        for key in output_keys
        if key.endswith(_PROBABILITIES)
    )
