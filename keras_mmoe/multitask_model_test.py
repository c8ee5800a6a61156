import keras
import numpy as np
import pytest
from keras import ops

from keras_mmoe.multitask_model import BODIES, MultiTaskModel
from keras_mmoe.task import Task

TASKS = [Task("a", 2), Task("b", 3, loss_weight=0.5)]
SMALL = {
    "mmoe": {"num_experts": 3, "expert_units": 8},
    "omoe": {"num_experts": 3, "expert_units": 8},
    "shared_bottom": {"units": 8},
    "cgc": {"num_shared_experts": 2, "num_task_experts": 1, "expert_units": 8},
    "ple": {
        "num_levels": 2,
        "num_shared_experts": 1,
        "num_task_experts": 1,
        "expert_units": 8,
    },
    "single_task": {"units": 8},
}


def synthetic(n=1024, seed=0):
    """Two related tasks on 6 features: a = sign(x0 + x1), b = bin of x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    a = (x[:, 0] + x[:, 1] > 0).astype("int32")
    b = np.digitize(x[:, 0], [-0.5, 0.5]).astype("int32")
    return x, {"a": a, "b": b}


def dense_model(body="mmoe", **kwargs):
    return MultiTaskModel(
        TASKS, body=body, body_config=SMALL[body], input_dim=6, **kwargs
    )


@pytest.mark.parametrize("body", sorted(BODIES))
def test_every_body_gives_a_dict_of_heads_and_learns(body):
    keras.utils.set_random_seed(0)
    x, y = synthetic()
    model = dense_model(body)
    out = model(x[:4])
    assert sorted(out) == ["a", "b"]
    assert tuple(out["a"].shape) == (4, 1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["b"]).sum(axis=1), 1, rtol=1e-5
    )
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, epochs=12, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] / 2.5, history["loss"]
    assert history["a_accuracy"][-1] > 0.9
    assert {"a_loss", "b_loss", "b_macro_f1", "a_auc"} <= set(history)


def test_missing_labels_add_nothing_and_never_nan():
    keras.utils.set_random_seed(0)
    x, y = synthetic(256)
    model = dense_model()
    model.compile()
    full = model.evaluate(x, y, verbose=0, return_dict=True)
    missing = {"a": y["a"], "b": np.full_like(y["b"], -1)}
    partial = model.evaluate(x, missing, verbose=0, return_dict=True)
    assert partial["b_loss"] == 0.0
    np.testing.assert_allclose(partial["a_loss"], full["a_loss"], rtol=1e-5)
    np.testing.assert_allclose(partial["loss"], full["a_loss"], rtol=1e-5)
    # Half the rows unlabelled: the task loss is the mean over the others.
    half = {"a": np.where(np.arange(256) % 2, -1, y["a"]), "b": y["b"]}
    on_half = model.evaluate(
        x[::2],
        {"a": y["a"][::2], "b": y["b"][::2]},
        verbose=0,
        return_dict=True,
        batch_size=128,
    )
    masked = model.evaluate(
        x, half, verbose=0, return_dict=True, batch_size=256
    )
    np.testing.assert_allclose(masked["a_loss"], on_half["a_loss"], rtol=1e-5)
    history = model.fit(x, missing, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()


def test_total_loss_uses_fixed_weights():
    x, y = synthetic(128)
    model = dense_model()
    model.compile()
    m = model.evaluate(x, y, verbose=0, return_dict=True, batch_size=128)
    np.testing.assert_allclose(
        m["loss"], m["a_loss"] + 0.5 * m["b_loss"], rtol=1e-5
    )


def test_uncertainty_weighting_formula_and_learning():
    keras.utils.set_random_seed(0)
    x, y = synthetic(512)
    model = dense_model(loss_weighting="uncertainty")
    model.compile(keras.optimizers.Adam(5e-2))
    model.task_log_variances.assign([0.5, -1.0])
    y_pred = model(x)
    total = model.compute_loss(x, y, y_pred)
    la = model._task_losses[0](y["a"], y_pred["a"])
    lb = model._task_losses[1](y["b"], y_pred["b"])
    expected = (np.exp(-0.5) * la + 0.25) + 0.5 * (np.exp(1.0) * lb - 0.5)
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-5)
    model.task_log_variances.assign([0.0, 0.0])
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    s = ops.convert_to_numpy(model.task_log_variances)
    assert np.all(np.isfinite(s)) and not np.allclose(s, 0.0)


def test_gate_model_rows_sum_to_one():
    x, _ = synthetic(16)
    for body, width in [("mmoe", 3), ("ple", 2)]:
        gates = dense_model(body).gate_model()(x)
        assert sorted(gates) == ["a", "b"]
        for g in gates.values():
            assert tuple(g.shape) == (16, width)
            np.testing.assert_allclose(
                ops.convert_to_numpy(ops.sum(g, axis=1)), 1.0, rtol=1e-5
            )
    with pytest.raises(ValueError, match="shared_bottom"):
        dense_model("shared_bottom").gate_model()


@pytest.mark.parametrize("body", ["mmoe", "ple", "single_task", "wide"])
def test_text_model_saves_and_loads(body, tmp_path):
    wide = {"ngram_buckets": 13, "scale": 4.0} if body == "wide" else None
    body = "mmoe" if body == "wide" else body
    model = MultiTaskModel(
        TASKS,
        body=body,
        body_config=SMALL[body],
        text_encoder={"vocabulary_size": 50, "embedding_dim": 8},
        sequence_length=7,
        loss_weighting="uncertainty",
        wide=wide,
    )
    if wide:  # Non-zero wide weights, so the reload is really checked.
        layer = model.get_layer("wide")
        layer.set_weights([np.ones(w.shape) * 0.3 for w in layer.weights])
    model.compile()
    ids = np.random.default_rng(0).integers(0, 50, size=(5, 7)).astype("int32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.compiled and loaded.loss_weighting == "uncertainty"
    for task in ("a", "b"):
        np.testing.assert_allclose(
            ops.convert_to_numpy(loaded(ids)[task]),
            ops.convert_to_numpy(model(ids)[task]),
            rtol=1e-6,
        )


def test_wide_logits_add_to_the_deep_logits():
    model = MultiTaskModel(
        TASKS,
        body_config=SMALL["mmoe"],
        text_encoder={"vocabulary_size": 50, "embedding_dim": 8},
        sequence_length=6,
        wide={"ngram_buckets": 11},
    )
    ids = np.random.default_rng(1).integers(0, 50, size=(4, 6))
    wide = model.get_layer("wide")
    rng = np.random.default_rng(2)
    wide.set_weights([rng.normal(size=w.shape) for w in wide.weights])
    logits = ops.convert_to_numpy(wide(ids))  # (4, 1 + 3): task a, then task b.
    deep = keras.Model(
        model.inputs,
        [model.get_layer(f"{t}_deep_logits").output for t in ("a", "b")],
    )
    deep_a, deep_b = (ops.convert_to_numpy(v) for v in deep(ids))
    out = model(ids)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["a"]),
        1 / (1 + np.exp(-(deep_a + logits[:, :1]))),
        rtol=1e-5,
    )
    b = np.exp(deep_b + logits[:, 1:])
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["b"]),
        b / b.sum(axis=1, keepdims=True),
        rtol=1e-5,
    )


def _linear_model(**kwargs):
    return MultiTaskModel(
        TASKS,
        body_config=SMALL["mmoe"],
        text_encoder={"vocabulary_size": 50, "embedding_dim": 8},
        sequence_length=6,
        linear={"vocabulary_size": 20},
        **kwargs,
    )


def _linear_inputs(seed=1):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(0, 50, size=(4, 6)).astype("int32"),
        "term_ids": rng.integers(0, 20, size=(4, 5)).astype("int32"),
        "term_counts": rng.integers(0, 3, size=(4, 5)).astype("float32"),
    }


def test_linear_logits_blend_with_the_network_as_set():
    model = _linear_model(wide={"ngram_buckets": 11})
    x = _linear_inputs()
    layer = model.linear_layer()
    assert not layer.trainable
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    linear = ops.convert_to_numpy(
        layer([x["term_ids"], x["term_counts"]])
    )  # (4, 4)
    network = model(x)
    # The blends start at the network alone: the terms change nothing.
    other = {**x, **{k: v[::-1] for k, v in _linear_inputs(3).items()}}
    other["token_ids"] = x["token_ids"]
    for task in ("a", "b"):
        np.testing.assert_allclose(
            ops.convert_to_numpy(model(other)[task]),
            ops.convert_to_numpy(network[task]),
            rtol=1e-6,
        )
    deep = keras.Model(
        model.inputs,
        [model.get_layer(f"{t}_blend").input[0] for t in ("a", "b")],
    )
    deep_a, deep_b = (ops.convert_to_numpy(v) for v in deep(x))
    model.blend_layer("a").set_blend(0.25, 0.75)
    model.blend_layer("b").set_blend(0.0, 1.0)
    out = model(x)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["a"]),
        1 / (1 + np.exp(-(0.25 * deep_a + 0.75 * linear[:, :1]))),
        rtol=1e-5,
    )
    b = np.exp(linear[:, 1:])
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["b"]),
        b / b.sum(axis=1, keepdims=True),
        rtol=1e-5,
    )


def test_linear_model_trains_the_network_only_and_saves_and_loads(tmp_path):
    model = _linear_model()
    layer = model.linear_layer()
    rng = np.random.default_rng(4)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    before = [w.numpy().copy() for w in layer.weights]
    model.compile()
    x = _linear_inputs()
    y = {"a": np.array([0, 1, 1, 0]), "b": np.array([2, 0, 1, -1])}
    model.fit(x, y, epochs=2, verbose=0)
    for b, w in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)
    model.blend_layer("b").set_blend(0.5, 0.5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    for task in ("a", "b"):
        np.testing.assert_allclose(
            ops.convert_to_numpy(loaded(x)[task]),
            ops.convert_to_numpy(model(x)[task]),
            rtol=1e-6,
        )


def test_linear_needs_a_text_model():
    with pytest.raises(ValueError, match="`linear` reads a text's terms"):
        dense_model(linear={"vocabulary_size": 5})
    with pytest.raises(ValueError, match="no linear part"):
        dense_model("mmoe").linear_layer()


def test_single_task_body_shares_nothing():
    model = dense_model("single_task")
    names = {w.path.split("/")[0] for w in model.weights}
    assert {"a_bottom", "b_bottom"} <= names


def test_wide_needs_token_ids():
    with pytest.raises(ValueError, match="`wide` reads token ids"):
        dense_model(wide={"ngram_buckets": 5})
    with pytest.raises(ValueError, match="BagOfNgrams.*buckets"):
        MultiTaskModel(
            TASKS,
            text_encoder={"vocabulary_size": 50},
            wide={"buckets": 5},
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": []}, "at least one task"),
        ({"tasks": [Task("a", 2), Task("a", 3)]}, "unique"),
        ({"body": "moe"}, "body='moe'"),
        ({"input_dim": None}, "exactly one"),
        ({"loss_weighting": "gradnorm"}, "gradnorm"),
        ({"body_config": {"num_expert": 3}}, "num_expert"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs, message):
    args = {"tasks": TASKS, "input_dim": 6, **kwargs}
    with pytest.raises(ValueError, match=message):
        MultiTaskModel(**args)


_MIRRORED_STEP = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import numpy as np

sys.path.insert(0, sys.argv[1])
from keras_mmoe.multitask_model_test import dense_model, synthetic

x, y = synthetic(64)


def train(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = dense_model(dropout=0.0)
        model.compile(keras.optimizers.SGD(0.5))
    history = model.fit(
        x, y, batch_size=32, epochs=2, shuffle=False, verbose=0
    ).history
    weights = [np.asarray(w).tolist() for w in model.get_weights()]
    return {"history": history, "weights": weights}


strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "single": train(tf.distribute.get_strategy()),
    "mirrored": train(strategy),
}))
"""


def test_mirrored_strategy_takes_the_same_steps_as_one_device():
    """Two replicas, each with half of every batch, must move the weights as
    one device with the whole batch: the loss is scaled for the replicas."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute is TensorFlow's")
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run(
        [sys.executable, "-c", _MIRRORED_STEP, root],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    for a, b in zip(single["weights"], mirrored["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for key in ("loss", "a_loss", "b_loss"):
        np.testing.assert_allclose(
            single["history"][key], mirrored["history"][key], rtol=1e-4
        )
    # The step was a real one: the loss moved.
    assert single["history"]["loss"][1] < single["history"]["loss"][0]


def _reading_tasks(order=("a", "b", "c")):
    """c (3 classes) reads b (4 classes), which reads a (binary)."""
    tasks = {
        "a": Task("a", 2),
        "b": Task("b", 4, reads_from=["a"]),
        "c": Task("c", 3, reads_from=["b"]),
    }
    return [tasks[name] for name in order]


@pytest.mark.parametrize("wide", [None, {"ngram_buckets": 11}])
def test_reads_from_adds_a_linear_map_of_the_sources_final_logits(wide):
    # Listed readers first: the model still builds sources before readers.
    model = MultiTaskModel(
        _reading_tasks(order=("c", "b", "a")),
        body_config=SMALL["mmoe"],
        text_encoder={"vocabulary_size": 50, "embedding_dim": 8},
        sequence_length=6,
        wide=wide,
    )
    assert list(model.output) == ["c", "b", "a"]
    rng = np.random.default_rng(3)
    for layer in [model.get_layer(n) for n in ("b_reads", "c_reads")] + (
        [model.get_layer("wide")] if wide else []
    ):
        layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    ids = rng.integers(0, 50, size=(4, 6))
    own = {t: model.get_layer(f"{t}_deep_logits").output for t in "abc"}
    own = dict(
        zip(
            "abc",
            keras.Model(model.inputs, list(own.values()))(ids),
            strict=True,
        )
    )
    own = {t: ops.convert_to_numpy(v) for t, v in own.items()}
    if wide:
        w = ops.convert_to_numpy(
            model.get_layer("wide")(ids)
        )  # c, b, a: 3 + 4 + 1
        own = {
            "c": own["c"] + w[:, :3],
            "b": own["b"] + w[:, 3:7],
            "a": own["a"] + w[:, 7:],
        }
    logit_a = own["a"]
    logit_b = own["b"] + logit_a @ model.get_layer("b_reads").get_weights()[0]
    logit_c = own["c"] + logit_b @ model.get_layer("c_reads").get_weights()[0]
    out = {t: ops.convert_to_numpy(v) for t, v in model(ids).items()}

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(out["a"], 1 / (1 + np.exp(-logit_a)), rtol=1e-5)
    np.testing.assert_allclose(out["b"], softmax(logit_b), rtol=1e-5)
    np.testing.assert_allclose(out["c"], softmax(logit_c), rtol=1e-5)


def test_reading_model_learns_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = synthetic()
    tasks = [Task("a", 2, reads_from=["b"]), Task("b", 3)]
    model = MultiTaskModel(tasks, body_config=SMALL["mmoe"], input_dim=6)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, epochs=8, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] / 2.5, history["loss"]
    assert np.abs(model.get_layer("a_reads").get_weights()[0]).max() > 0.05
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.tasks[0].reads_from == ("b",)
    for task in ("a", "b"):
        np.testing.assert_allclose(
            ops.convert_to_numpy(loaded(x[:8])[task]),
            ops.convert_to_numpy(model(x[:8])[task]),
            rtol=1e-6,
        )


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([Task("a", 2, reads_from=["z"])], r"'a' reads from unknown.*\['z'\]"),
        (
            [Task("a", 2, reads_from=["b"]), Task("b", 3, reads_from=["a"])],
            "cycle: a -> b -> a",
        ),
        (
            [
                Task("a", 2, reads_from=["b"]),
                Task("b", 3, reads_from=["c"]),
                Task("c", 3, reads_from=["b"]),
            ],
            "cycle: b -> c -> b",
        ),
    ],
)
def test_bad_reads_from_names_the_problem(tasks, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskModel(tasks, body_config=SMALL["mmoe"], input_dim=6)
