"""Models saved under each Keras backend load under the running one.

`testdata/saved_blocks/<backend>/` holds, for every case in `CASES`, a model
trained for two epochs and saved as `.keras` under that backend, with its
inputs and predictions (`<case>.npz`). Every backend loads every file and
must predict the same numbers, then train on. Write a backend's files with
`KERAS_BACKEND=<backend> python -m keras_mmoe.backends_test`.

`testdata/saved/<backend>/` holds the same cases saved with every expert
layer's first layer as one kernel and one bias, which `Experts` splits into
its blocks on load: they must predict the same numbers too.

Tolerance: the predictions are probabilities, and each backend runs float32
kernels of its own (Eigen, XLA, ATen) that round differently: they agree
within `ATOL` = 1e-6 absolute (at most 1.2e-7 apart when measured across
the three backends), far below what a misplaced or missing weight changes.
"""

import pathlib
import sys

import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe import CGC, PLE, MMoE, MultiTaskModel, OMoE, SharedBottom, Task

TESTDATA = pathlib.Path(__file__).parent / "testdata"
# Layout of the expert layers' first weights -> the models saved in it.
SAVED = {"blocks": TESTDATA / "saved_blocks", "one_kernel": TESTDATA / "saved"}
# Cases whose expert layers have several first-layer blocks (the task experts
# of CGC and PLE, a block per task). Keras restores an optimizer's state by
# position, which cannot follow the split of one kernel into blocks: saved
# with one kernel, they load their weights and start a fresh optimizer
# (Keras warns).
SEVERAL_BLOCKS = {"cgc", "ple", "multitask_cnn"}
BACKENDS = ("tensorflow", "jax", "torch")
ATOL = 1e-6
BATCH = 16


def _body_model(body):
    """Features -> a body layer -> one sigmoid head per task."""
    inputs = keras.Input((6,), name="features")
    features = body(inputs)
    outputs = {
        f"task_{k}": keras.layers.Dense(
            1, activation="sigmoid", name=f"task_{k}"
        )(h)
        for k, h in enumerate(features)
    }
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    return model


def _features(rng):
    x = rng.normal(size=(BATCH, 6)).astype("float32")
    y = {
        "task_0": (x[:, 0] > 0).astype("float32")[:, None],
        "task_1": (x[:, 1] + x[:, 2] > 0).astype("float32")[:, None],
    }
    return x, y


def _text(rng, linear=False):
    ids = rng.integers(0, 30, size=(BATCH, 7)).astype("int32")
    ids[:, 5:] = 0  # Trailing padding.
    ids[0] = 0  # A text of padding only.
    y = {
        "rating": rng.integers(-1, 5, size=BATCH).astype("int32"),
        "recommended": rng.integers(-1, 2, size=BATCH).astype("int32"),
    }
    if not linear:
        return ids, y
    return {
        "token_ids": ids,
        "term_ids": rng.integers(0, 20, size=(BATCH, 5)).astype("int32"),
        "term_counts": rng.integers(0, 3, size=(BATCH, 5)).astype("float32"),
    }, y


TEXT_TASKS = [Task("rating", 5), Task("recommended", 2, reads_from=["rating"])]

# Case name -> (model factory, data factory).
CASES = {
    "mmoe": (
        lambda: _body_model(MMoE(2, num_experts=3, expert_units=[8, 4])),
        _features,
    ),
    "omoe": (
        lambda: _body_model(OMoE(2, num_experts=3, expert_units=8)),
        _features,
    ),
    "shared_bottom": (
        lambda: _body_model(SharedBottom(2, units=[8, 4])),
        _features,
    ),
    "cgc": (
        lambda: _body_model(
            CGC(2, num_shared_experts=2, num_task_experts=1, expert_units=8)
        ),
        _features,
    ),
    "ple": (
        lambda: _body_model(
            PLE(
                2,
                num_levels=2,
                num_shared_experts=1,
                num_task_experts=2,
                expert_units=[8, 4],
            )
        ),
        _features,
    ),
    # A CNN text encoder, PLE, a wide part, a task reading another's logits
    # and learned task weights.
    "multitask_cnn": (
        lambda: MultiTaskModel(
            TEXT_TASKS,
            body="ple",
            body_config={
                "num_levels": 2,
                "num_shared_experts": 1,
                "num_task_experts": 1,
                "expert_units": 8,
            },
            text_encoder={
                "vocabulary_size": 30,
                "embedding_dim": 8,
                "encoder": "cnn",
                "num_filters": 4,
                "kernel_sizes": [2, 3],
            },
            tower_units=[8],
            loss_weighting="uncertainty",
            wide={"ngram_buckets": 16},
        ),
        _text,
    ),
    # A Transformer encoder, MMoE and a TF-IDF linear part blended in.
    "multitask_transformer": (
        lambda: MultiTaskModel(
            TEXT_TASKS,
            body="mmoe",
            body_config={"num_experts": 3, "expert_units": 8},
            text_encoder={
                "vocabulary_size": 30,
                "embedding_dim": 8,
                "encoder": "transformer",
                "num_heads": 2,
                "ff_dim": 8,
                "max_length": 7,
            },
            sequence_length=7,
            linear={"vocabulary_size": 20},
        ),
        lambda rng: _text(rng, linear=True),
    ),
}


def _train(case, epochs=2):
    keras.utils.set_random_seed(0)
    make_model, make_data = CASES[case]
    x, y = make_data(np.random.default_rng(0))
    model = make_model()
    if isinstance(model, MultiTaskModel):
        model.compile(keras.optimizers.Adam(1e-2))
        if model.linear is not None:
            layer = model.linear_layer()
            rng = np.random.default_rng(1)
            layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
            model.blend_layer("rating").set_blend(0.5, 0.5)
    history = model.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    return model, x, history.history["loss"]


def _flat(outputs):
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


def write(backend_dir: pathlib.Path):
    """Trains and saves every case under the running backend."""
    backend_dir.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        model, x, _ = _train(case)
        model.save(backend_dir / f"{case}.keras")
        inputs = x if isinstance(x, dict) else {"x": x}
        outputs = _flat(model(x))
        np.savez(
            backend_dir / f"{case}.npz",
            **{f"input/{k}": v for k, v in inputs.items()},
            **{f"output/{k}": v for k, v in outputs.items()},
        )


def _stored(path):
    data = np.load(path)
    inputs = {k.removeprefix("input/"): data[k] for k in data if "input/" in k}
    outputs = {
        k.removeprefix("output/"): data[k] for k in data if "output/" in k
    }
    return inputs.get("x", inputs), outputs


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("saved_under", BACKENDS)
@pytest.mark.parametrize("layout", sorted(SAVED))
def test_a_model_saved_under_a_backend_predicts_the_same_here(
    layout, saved_under, case
):
    path = SAVED[layout] / saved_under / f"{case}.keras"
    x, expected = _stored(path.with_suffix(".npz"))
    custom_objects = None
    if saved_under == "torch" and not case.startswith("multitask"):
        # Keras names the optimizer of a model compiled under PyTorch by
        # its torch class, which other backends cannot import:
        # MultiTaskModel maps it to the public class, other models are
        # told it.
        custom_objects = {"Adam": keras.optimizers.Adam}
    fresh_optimizer = layout == "one_kernel" and case in SEVERAL_BLOCKS
    if fresh_optimizer:
        with pytest.warns(UserWarning, match="Skipping variable loading"):
            model = keras.saving.load_model(path, custom_objects=custom_objects)
    else:
        model = keras.saving.load_model(path, custom_objects=custom_objects)
    actual = _flat(model(x))
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(
            actual[name], expected[name], atol=ATOL, rtol=0, err_msg=name
        )
    # The compile arguments and the optimizer state came along: two epochs
    # of two batches.
    assert model.compiled
    assert int(model.optimizer.iterations) == (0 if fresh_optimizer else 4)


def test_several_blocks_names_the_cases_whose_experts_have_several():
    from keras_mmoe.experts import Experts

    several = set()
    for case in CASES:
        model = keras.saving.load_model(
            SAVED["blocks"] / "tensorflow" / f"{case}.keras"
        )
        if any(
            len(layer.block_kernels) > 1
            for layer in model._flatten_layers()
            if isinstance(layer, Experts)
        ):
            several.add(case)
    assert several == SEVERAL_BLOCKS


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_trains_and_saves_here(case, tmp_path):
    model, x, losses = _train(case, epochs=4)
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    expected = _flat(model(x))
    actual = _flat(loaded(x))
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], name)


def test_seeded_training_is_reproducible_here():
    first, _, first_losses = _train("ple")
    second, _, second_losses = _train("ple")
    assert first_losses == second_losses
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), a.path
        )


if __name__ == "__main__":
    directory = SAVED["blocks"] / keras.backend.backend()
    write(directory)
    print(f"wrote {len(CASES)} cases to {directory}", file=sys.stderr)
