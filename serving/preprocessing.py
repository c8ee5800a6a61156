"""tf.Transform preprocessing: raw review columns -> token ids and labels.

Transformed features (see `serving.features` for the keys):
- `TOKEN_IDS`: int64 (batch, max_length). 0 is padding, the `V` vocabulary
  tokens are `1..V` (most frequent first), the `num_oov_buckets` hash buckets
  of unknown tokens are `V+1..V+num_oov_buckets`.
- `TERM_IDS`, `TERM_COUNTS`: int64 sparse (batch, None): the distinct word
  unigrams and bigrams of the whole text (however long; `max_text_bytes`
  still caps it) that are in the term vocabularies, as ids `1..U` for
  unigrams and `U+1..U+B` for bigrams, and how often each occurs; the input
  of the model's TF-IDF linear part.
- `label_key(task)` per label column: int64 (batch,), the class index in the
  task's label vocabulary, -1 when the cell is empty or holds a class never
  seen during analysis.

Every output depends only on its own raw columns, so the Transform graph can
serve text alone: label outputs are pruned when label columns are absent.
"""

import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from serving import features

# Words are runs of letters, digits and combining marks, separated by ASCII
# whitespace; every other character (punctuation, symbols) is a token of its
# own. Padding those with spaces and splitting on whitespace gives the same
# tokens as a regex split, with cheaper ops (benchmarks/README.md,
# "Transform timings").
_SEPARATE = r"[^ \t\n\v\f\r\p{L}\p{N}\p{M}]"
# Well-formed UTF-8: RE2 matches a class of code points only against their
# shortest encoding, so overlong forms, surrogates, code points past
# U+10FFFF and cut sequences fail to match.
_WELL_FORMED_UTF8 = r"[\x{0}-\x{D7FF}\x{E000}-\x{10FFFF}]*"
# Term ids are below this, so `row * _ROW_STRIDE + id` keys a (row, term)
# and `first * _ROW_STRIDE + second` a pair of unigram ids.
_ROW_STRIDE = 2**32


def normalize_and_tokenize(
    text: tf.Tensor, max_text_bytes: int = features.MAX_TEXT_BYTES
) -> tf.RaggedTensor:
    """Splits raw strings into normalized tokens.

    The text is cut to `max_text_bytes` bytes, invalid UTF-8 (including a
    character split by the cut) becomes a space, then NFKC normalization and
    case folding, then a split into words and single punctuation marks on
    ASCII whitespace.

    Args:
        text: string `tf.Tensor` of shape (batch,).
        max_text_bytes: int. Bytes of each string read at most.

    Returns:
        A string `tf.RaggedTensor` of shape (batch, None).

    Example:
    >>> normalize_and_tokenize(tf.constant(["Don't, STOP!"])).to_list()
    [[b'don', b"'", b't', b',', b'stop', b'!']]
    """
    # Cut first: the costly steps below then see at most max_text_bytes.
    text = tf.strings.substr(text, 0, max_text_bytes, unit="BYTE")
    text = _replace_invalid_utf8(text)
    # NFKC_Casefold: case folding with NFKC normalization built in.
    text = tf_text.case_fold_utf8(text)
    text = tf.strings.regex_replace(text, _SEPARATE, r" \0 ")
    return tf.strings.split(text)  # On ASCII whitespace.


def _replace_invalid_utf8(text: tf.Tensor) -> tf.Tensor:
    """Each byte of broken UTF-8 becomes a space, in the rows that have any.

    A space, not U+FFFD: broken bytes separate tokens instead of gluing to
    them, and never become vocabulary entries. Only the broken rows are
    transcoded: a regex check of every row is cheaper than transcoding
    every row, and broken rows are rare.
    """
    broken = tf.where(
        tf.logical_not(tf.strings.regex_full_match(text, _WELL_FORMED_UTF8))
    )  # (broken rows, 1)
    fixed = tf.strings.unicode_transcode(
        tf.gather_nd(text, broken),
        input_encoding="UTF-8",
        output_encoding="UTF-8",
        errors="replace",
        replacement_char=ord(" "),
    )
    return tf.tensor_scatter_nd_update(text, broken, fixed)


def _to_string_column(x) -> tf.Tensor:
    """A raw feature as one string per example, "" when the cell is empty.

    CsvExampleGen columns arrive as dense (batch, 1) tensors when the schema
    says every example has the column, else as SparseTensors (batch, 1) whose
    missing rows are empty; numbers are int64 or float32.
    """
    if isinstance(x, tf.RaggedTensor):
        x = x.to_sparse()
    values = x.values if isinstance(x, tf.SparseTensor) else x
    if values.dtype.is_floating:
        # Shortest form: 4.0 -> "4", the same class as the integer 4.
        values = tf.strings.as_string(values, shortest=True)
    elif values.dtype != tf.string:
        values = tf.strings.as_string(values)
    if isinstance(x, tf.SparseTensor):
        values = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, values, x.dense_shape), default_value=""
        )
    if values.shape.rank == 1:
        return values
    # (batch, k) -> (batch,); k is 1 for CSV, and may be 0 for a batch of
    # missing cells.
    values = tf.reshape(values, [tf.shape(values)[0], -1])
    return tf.strings.strip(
        tf.strings.reduce_join(values, axis=1, separator=" ")
    )


def _clean_label(label: tf.Tensor) -> tf.Tensor:
    """Valid UTF-8 on one line without outer spaces: one vocabulary line."""
    label = tf.strings.unicode_transcode(
        label, "UTF-8", "UTF-8", errors="replace"
    )
    label = tf.strings.regex_replace(label, r"[\r\n]+", " ")
    return tf.strings.strip(label)


def _label_sort_key(values: list[bytes]):
    """Numbers in numeric order ("2" before "10"), else byte order."""
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        return values
    if any(np.isnan(number) for number in numbers):
        return values
    return numbers


def _write_sorted_vocabulary(
    values: list[bytes], directory: str, filename: str
) -> np.ndarray:
    if not values:
        # An empty vocabulary file cannot even initialize a lookup table.
        raise ValueError(
            f"Label vocabulary {filename!r}: every label is empty in the "
            "analyzed data, so the task has no classes."
        )
    values = sorted(set(values))
    keys = _label_sort_key(values)
    values = [value for _, value in sorted(zip(keys, values, strict=True))]
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, filename)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(b"".join(value + b"\n" for value in values))
    return np.array(path)


def _distinct_labels(batches) -> set[bytes]:
    (labels,) = batches
    return {label for label in labels.tolist() if label}


class _SortedLabelVocabulary(tft_beam.experimental.PTransformAnalyzer):
    """Writes the distinct non-empty labels, sorted, one per line."""

    def __init__(self, filename: str):
        super().__init__()
        self._filename = filename

    def expand(self, pcoll):
        return (
            pcoll
            | "DistinctPerBatch" >> beam.FlatMap(_distinct_labels)
            | "Distinct" >> beam.Distinct()
            | "ToList" >> beam.combiners.ToList()
            | "Write"
            >> beam.Map(
                _write_sorted_vocabulary,
                directory=self.base_temp_dir,
                filename=self._filename,
            )
        )


def _sorted_label_vocabulary(label: tf.Tensor, filename: str) -> tf.Tensor:
    """The deferred path of a vocabulary asset of the sorted labels.

    tft.vocabulary orders by frequency; class indices want sorted order, so
    a binary 0/1 column keeps 0 -> 0 and 1 -> 1, and Rating 1..5 stays
    ordinal.
    """
    (path,) = tft.experimental.ptransform_analyzer(
        inputs=[label],
        ptransform=_SortedLabelVocabulary(filename),
        output_dtypes=[tf.string],
        output_shapes=[[]],
        # Stands in for the file while the graph is traced before analysis.
        output_asset_default_values=[b"__placeholder__"],
        name=filename,
    )
    tft.annotate_asset(filename, filename)
    return path


# TFX Transform calls this.
def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """Raw CSV columns -> `TOKEN_IDS` and one `label_key(task)` per label.

    Args:
        inputs: dict of raw feature name -> `tf.Tensor` or `tf.SparseTensor`.
        custom_config: dict. `PreprocessingConfig.to_dict()`, passed to the
            Transform component as `custom_config`.

    Returns:
        dict of transformed feature name -> int64 `tf.Tensor` (dense) or
        `tf.SparseTensor` (the terms).
    """
    config = features.PreprocessingConfig.from_dict(
        {k: v for k, v in custom_config.items() if k != "code_version"}
    )
    missing = [
        column
        for column in config.text_columns + config.label_columns
        if column not in inputs
    ]
    if missing:
        raise ValueError(
            f"Columns {missing!r} of the config are not raw features. "
            f"Received features: {sorted(inputs)!r}"
        )
    outputs = {}

    texts = [_to_string_column(inputs[c]) for c in config.text_columns]
    text = tf.strings.strip(tf.strings.join(texts, separator=" "))
    tokens = normalize_and_tokenize(text, config.max_text_bytes)
    outputs.update(_term_counts(tokens, config))
    # The model never reads past max_length, so neither does the vocabulary.
    tokens = tokens[:, : config.max_length]  # (batch, <= max_length)
    vocabulary = tft.vocabulary(
        tokens,
        top_k=config.vocabulary_size,
        vocab_filename=features.TOKEN_VOCABULARY,
    )
    ids = tft.apply_vocabulary(
        tokens.flat_values,
        vocabulary,
        num_oov_buckets=config.num_oov_buckets,
    )
    ids = tokens.with_flat_values(ids + 1)  # 0 is padding
    outputs[features.TOKEN_IDS] = ids.to_tensor(
        default_value=0, shape=[None, config.max_length]
    )  # (batch, max_length)

    for column, task in zip(config.label_columns, config.tasks, strict=True):
        label = _clean_label(_to_string_column(inputs[column]))  # (batch,)
        vocabulary = _sorted_label_vocabulary(
            label, features.label_vocabulary_name(task)
        )
        # "" is never in the vocabulary, so a missing label is -1 too.
        outputs[features.label_key(task)] = tft.apply_vocabulary(
            label, vocabulary, default_value=-1, num_oov_buckets=0
        )  # (batch,)
    return outputs


def _term_counts(tokens: tf.RaggedTensor, config) -> dict:
    """Each text's distinct vocabulary unigrams and bigrams and counts.

    Unigrams are looked up as strings; a bigram is looked up as the pair of
    its unigram ids in one int64, which costs a fraction of joining and
    hashing bigram strings. A bigram with a word outside the unigram
    vocabulary is dropped: it occurs no more often than that word.

    Everything runs on the flat tokens of the batch: the bigram starting at
    a token sits right after that token's unigram, so one `unique` over
    (row, term) keys keeps every row's terms together, in order of first
    occurrence, with no ragged slicing or sorting.
    """

    def vocabulary(terms, filename):
        return tft.vocabulary(
            terms,
            top_k=config.term_vocabulary_size,
            frequency_threshold=config.term_min_count,
            vocab_filename=filename,
        )

    rows = tokens.value_rowids()  # (n,) the row of every token
    unigram_vocabulary = vocabulary(tokens, features.TERM_VOCABULARY)
    unigrams = tft.apply_vocabulary(
        tokens.flat_values, unigram_vocabulary, default_value=-1
    )  # (n,) int64, -1 outside the vocabulary
    first, second = unigrams[:-1], unigrams[1:]
    is_pair = tf.logical_and(
        tf.logical_and(first >= 0, second >= 0), tf.equal(rows[:-1], rows[1:])
    )  # (n - 1,): both words known and in the same text
    pairs = first * _ROW_STRIDE + second
    # Analysis only: the vocabulary counts the pairs of each text.
    bigram_vocabulary = vocabulary(
        tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(pairs, is_pair),
            tf.boolean_mask(rows[:-1], is_pair),
            nrows=tokens.nrows(),
            validate=False,
        ),
        features.BIGRAM_VOCABULARY,
    )
    bigrams = tft.apply_vocabulary(
        pairs, bigram_vocabulary, default_value=-1
    )  # (n - 1,)
    offset = tf.cast(
        tft.experimental.get_vocabulary_size_by_name(features.TERM_VOCABULARY),
        tf.int64,
    )
    # Keys that are no pair are dropped after the lookup, whatever they
    # match (an empty vocabulary holds one placeholder entry).
    bigrams = tf.where(
        tf.logical_and(is_pair, bigrams >= 0), bigrams + offset, -1
    )
    # (n,): the last token starts no bigram (and n may be 0).
    bigrams = tf.concat([bigrams, [-1]], axis=0)[: tf.size(unigrams)]
    ids = tf.reshape(tf.stack([unigrams, bigrams], axis=1), [-1])  # (2n,)
    keys = tf.reshape(tf.stack([rows, rows], axis=1), [-1]) * _ROW_STRIDE
    keys = tf.boolean_mask(keys + ids, ids >= 0)
    # Row-major keys: unique() keeps first occurrences in order, so the
    # distinct keys stay grouped by row.
    keys, _, counts = tf.unique_with_counts(keys)

    def by_row(values):
        return tf.RaggedTensor.from_value_rowids(
            values, keys // _ROW_STRIDE, nrows=tokens.nrows(), validate=False
        ).to_sparse()

    return {
        features.TERM_IDS: by_row(keys % _ROW_STRIDE + 1),  # 0 = padding
        features.TERM_COUNTS: by_row(tf.cast(counts, tf.int64)),
    }


def vocabulary_sizes(
    tft_output: tft.TFTransformOutput, config: features.PreprocessingConfig
) -> tuple[int, dict[str, int]]:
    """Embedding input size and the number of classes of each task.

    Returns:
        `(token_vocabulary_size, num_classes)`: the token count includes the
        padding id 0 and the OOV buckets (every id is `< size`);
        `num_classes` maps each task to the length of its label vocabulary.
    """
    tokens = tft_output.vocabulary_size_by_name(features.TOKEN_VOCABULARY)
    num_classes = {
        task: tft_output.vocabulary_size_by_name(
            features.label_vocabulary_name(task)
        )
        for task in config.tasks
    }
    return tokens + config.num_oov_buckets + 1, num_classes


def class_names(tft_output: tft.TFTransformOutput, task: str) -> list[str]:
    """The class names of a task: `class_names(...)[i]` is label index i."""
    return [
        value.decode("utf-8")
        for value in tft_output.vocabulary_by_name(
            features.label_vocabulary_name(task)
        )
    ]
