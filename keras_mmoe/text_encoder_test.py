import io
import pathlib
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.text_encoder import TextEncoder

VOCAB = 12
DIM = 4
# Trailing padding, padding in the middle, one token, all padding.
IDS = np.array(
    [
        [3, 1, 4, 1, 5, 0],
        [2, 7, 0, 0, 0, 0],
        [9, 0, 6, 0, 0, 0],
        [11, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ],
    dtype="int32",
)
_CNN = {"encoder": "cnn", "num_filters": 3, "kernel_sizes": [1, 2, 3]}
# Test case -> TextEncoder arguments.
ENCODER_KWARGS = {
    "mean": {"encoder": "mean"},
    "mean_max": {"encoder": "mean_max"},
    "cnn": _CNN,
    "cnn_skip_padding": {**_CNN, "skip_padding": True},
    "transformer": {
        "encoder": "transformer",
        "num_heads": 2,
        "ff_dim": 5,
        "max_length": 10,
    },
}


def _encoder(case, **kwargs):
    layer = TextEncoder(
        VOCAB, DIM, name="enc", **{**ENCODER_KWARGS[case], **kwargs}
    )
    layer.build(IDS.shape)
    _testing.randomize(layer)
    return layer


def _reference(layer, ids):
    """Per-text numpy loop that only ever looks at the non-padding tokens."""
    w = _testing.weights_of(layer)
    table = w["token_embedding/embeddings"]
    out = []
    for row in ids:
        positions = np.nonzero(row)[0]
        tokens = table[row[positions]]  # (tokens, dim)
        if not len(positions):
            out.append(np.zeros(layer.output_dim, "float32"))
        elif layer.encoder == "mean":
            out.append(tokens.mean(axis=0))
        elif layer.encoder == "mean_max":
            out.append(np.concatenate([tokens.mean(0), tokens.max(0)]))
        elif layer.encoder == "cnn":
            # Embedding of each position, zero for padding and before text.
            embedded = np.where(row[:, None] != 0, table[row], 0.0)
            pooled = []
            for i, width in enumerate(layer.kernel_sizes):
                kernel = w[f"conv_{i}/kernel"]  # (width, dim, filters)
                padded = np.concatenate([np.zeros((width - 1, DIM)), embedded])
                windows = [
                    _testing.relu(
                        np.einsum("wd,wdf->f", padded[t : t + width], kernel)
                        + w[f"conv_{i}/bias"]
                    )
                    for t in positions
                ]
                pooled.append(np.max(windows, axis=0))
            out.append(np.concatenate(pooled))
        else:
            x = tokens + w["position_embeddings"][positions]
            x = _testing.transformer_block(
                w, x, layer.num_heads, prefix="transformer_block/"
            )
            out.append(x.mean(axis=0))
    return np.stack(out).astype("float32")


def test_mean_is_numpy_mean_of_non_padding_embeddings():
    layer = TextEncoder(VOCAB, DIM)
    layer.build(IDS.shape)
    table = np.arange(VOCAB * DIM, dtype="float32").reshape(VOCAB, DIM)
    table[0] = 1000.0  # Padding's own row must never be read.
    layer.token_embedding.embeddings.assign(table)
    expected = np.stack(
        [
            table[[3, 1, 4, 1, 5]].mean(axis=0),
            table[[2, 7]].mean(axis=0),
            table[[9, 6]].mean(axis=0),
            table[11],
            np.zeros(DIM),
        ]
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(IDS)), expected, rtol=1e-6
    )


@pytest.mark.parametrize("encoder", list(ENCODER_KWARGS))
def test_equals_per_text_numpy_reference(encoder):
    layer = _encoder(encoder)
    out = ops.convert_to_numpy(layer(IDS))
    assert out.shape == (len(IDS), layer.output_dim)
    np.testing.assert_allclose(
        out, _reference(layer, IDS), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("encoder", list(ENCODER_KWARGS))
def test_padding_does_not_change_the_output(encoder):
    layer = _encoder(encoder)
    out = ops.convert_to_numpy(layer(IDS))
    # Trailing padding, in the same batch or longer.
    longer = np.pad(IDS, ((0, 0), (0, 4)))
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(longer)), out, atol=1e-5
    )
    # The embedding of the padding id is never read.
    table = np.array(layer.token_embedding.embeddings)
    table[0] = 50.0
    layer.token_embedding.embeddings.assign(table)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(IDS)), out, atol=1e-5)
    # A text gives the same vector alone, unpadded, as in a padded batch.
    alone = ops.convert_to_numpy(layer(IDS[1:2, :2]))
    np.testing.assert_allclose(alone, out[1:2], atol=1e-5)


@pytest.mark.parametrize("encoder", list(ENCODER_KWARGS))
def test_empty_batch_gives_an_empty_output(encoder):
    # Serving sends empty batches; a causal Conv1D alone fails on them.
    layer = _encoder(encoder)
    out = layer(IDS[:0])
    assert tuple(out.shape) == (0, layer.output_dim)
    inputs = keras.Input((IDS.shape[1],), dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    traced = keras.ops.convert_to_numpy(model(IDS[:0], training=False))
    assert traced.shape == (0, layer.output_dim)
    if keras.backend.backend() == "tensorflow":
        # A graph of unknown batch size, as serving traces: both branches.
        import tensorflow as tf

        graph = tf.function(
            lambda ids: model(ids, training=False),
            input_signature=[tf.TensorSpec((None, IDS.shape[1]), tf.int32)],
        )
        assert tuple(graph(IDS[:0]).shape) == (0, layer.output_dim)
        np.testing.assert_allclose(
            graph(IDS).numpy(), ops.convert_to_numpy(model(IDS)), atol=1e-6
        )


@pytest.mark.parametrize("encoder", list(ENCODER_KWARGS))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_all_padding_text_gives_zeros(encoder, dropout):
    layer = _encoder(encoder, dropout=dropout)
    for training in (False, True):
        out = ops.convert_to_numpy(layer(IDS, training=training))
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[-1], 0.0)
        assert np.abs(out[:-1]).sum(axis=1).min() > 0


def test_all_padding_text_has_finite_gradients():
    for encoder in ENCODER_KWARGS:
        layer = _encoder(encoder)
        model = keras.Sequential([layer, keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.train_on_batch(IDS[-1:], np.ones((1, 1)))
        model.train_on_batch(IDS, np.ones((len(IDS), 1)))
        for w in model.weights:
            assert np.isfinite(ops.convert_to_numpy(w)).all(), (encoder, w.path)


@pytest.mark.parametrize(
    "encoder, kwargs, output_dim",
    [
        ("mean", {}, 8),
        ("mean_max", {}, 16),
        ("cnn", {"num_filters": 5, "kernel_sizes": (2, 3, 4)}, 15),
        ("cnn", {"num_filters": 5, "kernel_sizes": 3}, 5),
        ("transformer", {"max_length": 6}, 8),
    ],
)
def test_output_dim_and_shape(encoder, kwargs, output_dim):
    layer = TextEncoder(20, 8, encoder=encoder, **kwargs)
    assert layer.output_dim == output_dim
    assert layer.compute_output_shape((None, 6)) == (None, output_dim)
    inputs = keras.Input((None,), dtype="int32")
    assert layer(inputs).shape == (None, output_dim)
    ids = np.random.default_rng(0).integers(0, 20, (3, 6))
    assert layer(ids).shape == (3, output_dim)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary_size": 0}, "vocabulary_size=0"),
        ({"vocabulary_size": 10, "embedding_dim": -1}, "embedding_dim=-1"),
        ({"vocabulary_size": 10, "encoder": "bogus"}, "encoder='bogus'"),
        ({"vocabulary_size": 10, "num_filters": 0}, "num_filters=0"),
        ({"vocabulary_size": 10, "kernel_sizes": []}, r"kernel_sizes=\[\]"),
        ({"vocabulary_size": 10, "dropout": 1.0}, "dropout=1.0"),
        ({"vocabulary_size": 10, "max_length": 0}, "max_length=0"),
        ({"vocabulary_size": 10, "skip_padding": "yes"}, "skip_padding='yes'"),
        (
            {"vocabulary_size": 10, "encoder": "transformer"},
            "max_length=None",
        ),
        (
            {
                "vocabulary_size": 10,
                "embedding_dim": 6,
                "encoder": "transformer",
                "max_length": 8,
                "num_heads": 4,
            },
            "num_heads=4, embedding_dim=6",
        ),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextEncoder(**kwargs)


def test_sequences_longer_than_max_length_are_refused():
    layer = TextEncoder(10, 4, encoder="transformer", max_length=3)
    with pytest.raises(ValueError, match="sequence_length=5, max_length=3"):
        layer(np.ones((2, 5), dtype="int32"))
    with pytest.raises(ValueError, match=r"input_shape=\(2, 5, 1\)"):
        TextEncoder(10, 4)(np.ones((2, 5, 1), dtype="int32"))


@pytest.mark.parametrize("encoder", list(ENCODER_KWARGS))
def test_serialization(encoder, tmp_path):
    _testing.assert_saves_and_loads(
        lambda: TextEncoder(
            VOCAB,
            DIM,
            dropout=0.1,
            seed=1,
            **ENCODER_KWARGS[encoder],
        ),
        IDS,
        tmp_path,
    )


def _token_data(num_texts=512, length=12, seed=0):
    """Label: whether token 5 appears. Lengths vary, padding is trailing."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 30, (num_texts, length))
    ids[ids == 5] = 6
    labels = rng.random(num_texts) < 0.5
    ids[labels, rng.integers(0, 3, num_texts)[labels]] = 5
    lengths = rng.integers(3, length + 1, num_texts)
    ids[np.arange(length) >= lengths[:, None]] = 0
    labels = (ids == 5).any(axis=1)
    return ids.astype("int32"), labels.astype("float32")


@pytest.mark.parametrize("kernel_sizes", [[1], [2, 3, 4]])
def test_skip_padding_equals_the_padded_cnn_in_outputs_and_training(
    kernel_sizes,
):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (16, 16)).astype("int32")
    lengths = rng.integers(0, 17, 16)
    lengths[:2] = 0, 16  # An empty text and a full one.
    ids[np.arange(16) >= lengths[:, None]] = 0
    ids[rng.random(ids.shape) < 0.1] = 0  # Padding inside texts too.
    models = []
    for skip_padding in (False, True):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16,), dtype="int32")
        encoded = TextEncoder(
            VOCAB,
            DIM,
            encoder="cnn",
            num_filters=3,
            kernel_sizes=kernel_sizes,
            skip_padding=skip_padding,
        )(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(encoded))
        # The packed model not by XLA: JAX's compiled step would not pack.
        model.compile(
            keras.optimizers.SGD(0.5),
            "mse",
            jit_compile=False if skip_padding else "auto",
        )
        models.append(model)
    padded, packed = models
    packed.set_weights(padded.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(packed(ids)),
        ops.convert_to_numpy(padded(ids)),
        atol=1e-6,
    )
    initial = padded.get_weights()
    targets = rng.normal(size=(16, 1))
    for model in models:  # The same batches in the same order.
        model.fit(
            ids, targets, epochs=2, batch_size=8, shuffle=False, verbose=0
        )
    trained = padded.get_weights()
    for a, b in zip(trained, packed.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    # The equality is not that of untouched weights.
    for a, b in zip(initial, trained, strict=True):
        assert np.abs(a - b).max() > 1e-3


def test_skip_padding_on_a_batch_of_padding_only_gives_zeros():
    for kernel_sizes in ([1], [2, 3]):
        layer = TextEncoder(
            VOCAB,
            DIM,
            encoder="cnn",
            kernel_sizes=kernel_sizes,
            skip_padding=True,
        )
        out = ops.convert_to_numpy(layer(np.zeros((3, 5), "int32")))
        np.testing.assert_array_equal(out, np.zeros((3, layer.output_dim)))


def test_skip_padding_opts_out_of_xla():
    # JAX compiles the padded convolution instead (same outputs).
    assert TextEncoder(
        VOCAB, DIM, encoder="cnn", skip_padding=True
    ).supports_jit == (keras.backend.backend() == "jax")
    assert TextEncoder(
        VOCAB, DIM, encoder="mean", skip_padding=True
    ).supports_jit


@pytest.mark.parametrize(
    "encoder", ["mean", "cnn", "cnn_skip_padding", "transformer"]
)
def test_fit_learns_whether_a_token_appears(encoder):
    # Observed drop over 8 epochs, seeds 0-1: 65-980x (mean), 160-700x
    # (transformer), over 6000x (cnn); 20x leaves a margin. The mean learns
    # slowest at 0.02 under JAX and PyTorch: TensorFlow's Adam squares each
    # occurrence's gradient of a repeated embedding row on its own (Keras's
    # IndexedSlices), a smaller second moment and so larger steps.
    keras.utils.set_random_seed(0)
    ids, labels = _token_data()
    inputs = keras.Input((ids.shape[1],), dtype="int32")
    kwargs = {**ENCODER_KWARGS[encoder]}
    if encoder == "transformer":
        kwargs["max_length"] = ids.shape[1]
    encoded = TextEncoder(30, 16, **kwargs)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid")(encoded))
    learning_rate = 0.05 if encoder == "mean" else 0.02
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy")
    history = model.fit(ids, labels, epochs=8, batch_size=64, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] / 20, losses


# A model saved by keras-mmoe 0.1.0: TextEncoder(12, 4, encoder="transformer",
# num_heads=2, ff_dim=5, max_length=6, dropout=0.1, seed=1) with random
# weights, and its outputs on four texts (the last one all padding).
TESTDATA = pathlib.Path(__file__).parent / "testdata"
SAVED_TRANSFORMER = TESTDATA / "text_encoder_transformer.keras"


def _stored_weights(path):
    """{h5 dataset path: shape} of a `.keras` file's weights."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as f:
        found = {}
        f.visititems(
            lambda name, item: (
                found.setdefault(name, item.shape)
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
    return found


def test_a_saved_transformer_model_loads_with_its_outputs():
    expected = np.load(TESTDATA / "text_encoder_transformer.npz")
    model = keras.saving.load_model(SAVED_TRANSFORMER)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(expected["ids"])),
        expected["outputs"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_transformer_weights_keep_their_place_in_keras_files(tmp_path):
    model = keras.saving.load_model(SAVED_TRANSFORMER)
    path = tmp_path / "again.keras"
    model.save(path)
    assert _stored_weights(path) == _stored_weights(SAVED_TRANSFORMER)
