import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.tfidf_linear import TfidfLinear

# The independent reference; not a dependency of the package.
sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")

CORPUS = [
    "good good dress",
    "bad dress bad bad",
    "good fit",
    "small",
]


def _sklearn_reference():
    """scikit-learn's TF-IDF rows, and the corpus as (ids, counts)."""
    vectorizer = sklearn_text.TfidfVectorizer(
        sublinear_tf=True, token_pattern=r"\S+"
    )
    matrix = vectorizer.fit_transform(CORPUS).toarray()
    vocabulary = vectorizer.vocabulary_  # term -> column; id = column + 1
    width = max(len(set(text.split())) for text in CORPUS) + 1  # + padding
    ids = np.zeros((len(CORPUS), width), "int32")
    counts = np.zeros((len(CORPUS), width), "float32")
    for row, text in enumerate(CORPUS):
        for j, term in enumerate(dict.fromkeys(text.split())):
            ids[row, j] = vocabulary[term] + 1
            counts[row, j] = text.split().count(term)
    df = np.zeros(len(vocabulary) + 1)
    for text in CORPUS:
        for term in set(text.split()):
            df[vocabulary[term] + 1] += 1
    return matrix, ids, counts, df


def test_term_weights_equal_scikit_learn_sublinear_tfidf():
    matrix, ids, counts, df = _sklearn_reference()
    layer = TfidfLinear(vocabulary_size=len(df), units=2)
    layer.set_document_frequency(df, num_documents=len(CORPUS))
    weights = ops.convert_to_numpy(layer.term_weights([ids, counts]))
    dense = np.zeros((len(CORPUS), len(df)))
    for row in range(len(CORPUS)):
        for j in range(ids.shape[1]):
            dense[row, ids[row, j]] += weights[row, j]
    np.testing.assert_allclose(dense[:, 1:], matrix, rtol=1e-5, atol=1e-6)


def test_output_is_tfidf_times_kernel_plus_bias():
    matrix, ids, counts, df = _sklearn_reference()
    layer = TfidfLinear(vocabulary_size=len(df), units=3)
    layer([ids, counts])
    _testing.randomize(layer)
    layer.set_document_frequency(df, num_documents=len(CORPUS))
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer([ids, counts])),
        matrix @ kernel[1:] + bias,
        rtol=1e-5,
        atol=1e-5,
    )


def test_padding_changes_nothing_and_an_empty_text_gives_the_bias():
    _, ids, counts, df = _sklearn_reference()
    layer = TfidfLinear(vocabulary_size=len(df), units=2)
    layer([ids, counts])
    _testing.randomize(layer)
    padded = [np.pad(ids, ((0, 0), (0, 3))), np.pad(counts, ((0, 0), (0, 3)))]
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(padded)),
        ops.convert_to_numpy(layer([ids, counts])),
        rtol=1e-6,
    )
    empty = [np.zeros((1, 4), "int32"), np.zeros((1, 4), "float32")]
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(empty))[0], layer.bias.numpy(), rtol=1e-6
    )


def test_starts_at_zero_and_learns_when_trained():
    _, ids, counts, df = _sklearn_reference()
    labels = np.array([1.0, 0.0, 1.0, 0.0], "float32")[:, None]
    term_ids = keras.Input((None,), dtype="int32")
    term_counts = keras.Input((None,))
    logits = TfidfLinear(len(df), 1)([term_ids, term_counts])
    model = keras.Model([term_ids, term_counts], logits)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model([ids, counts])), np.zeros((4, 1))
    )
    model.compile(
        keras.optimizers.Adam(0.1),
        keras.losses.BinaryCrossentropy(from_logits=True),
    )
    history = model.fit([ids, counts], labels, epochs=30, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]


def test_saves_and_loads_with_its_idf(tmp_path):
    _, ids, counts, df = _sklearn_reference()
    term_ids = keras.Input((None,), dtype="int32")
    term_counts = keras.Input((None,))
    layer = TfidfLinear(len(df), 2, kernel_regularizer="l2", name="linear")
    model = keras.Model([term_ids, term_counts], layer([term_ids, term_counts]))
    _testing.randomize(layer)
    layer.set_document_frequency(df, num_documents=len(CORPUS))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded([ids, counts])),
        ops.convert_to_numpy(model([ids, counts])),
        rtol=1e-6,
    )
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert restored.get_config() == layer.get_config()


def test_document_frequency_of_the_wrong_shape_is_refused():
    layer = TfidfLinear(vocabulary_size=5, units=1)
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        layer.set_document_frequency(np.ones(4), num_documents=3)
    with pytest.raises(ValueError, match="num_documents=0"):
        layer.set_document_frequency(np.ones(5), num_documents=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary_size": 0}, "vocabulary_size=0"),
        ({"units": -1}, "units=-1"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TfidfLinear(**{"vocabulary_size": 5, "units": 2, **kwargs})


def test_one_input_is_refused():
    with pytest.raises(ValueError, match="term_ids, term_counts"):
        TfidfLinear(5, 2).build((None, 3))
