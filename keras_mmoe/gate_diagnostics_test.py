import glob
import json
import math
import os

import keras
import numpy as np
import pytest

from keras_mmoe.gate_diagnostics import (
    GateDiagnostics,
    collect_gate_weights,
    gate_statistics,
    plot_gate_heatmap,
)
from keras_mmoe.mmoe import MMoE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    with open(path, "rb") as f:
        data = f.read()
    return (
        data,
        int.from_bytes(data[16:20], "big"),
        int.from_bytes(data[20:24], "big"),
    )


# === gate_statistics ===


def test_uniform_rows_have_maximal_entropy():
    stats = gate_statistics({"a": np.full((5, 4), 0.25)})
    a = stats["tasks"]["a"]
    assert a["num_examples"] == 5 and a["num_experts"] == 4
    np.testing.assert_allclose(a["mean_weights"], [0.25] * 4)
    assert a["entropy"] == pytest.approx(math.log(4))
    assert a["normalized_entropy"] == pytest.approx(1.0)
    # Every expert ties for the top: each gets an equal share.
    np.testing.assert_allclose(a["utilization"], [0.25] * 4)
    assert a["effective_experts"] == pytest.approx(4.0)
    assert a["mean_max_weight"] == pytest.approx(0.25)
    assert stats["pairs"] == []


def test_one_hot_rows_have_zero_entropy_and_exact_utilization():
    rows = np.eye(3)[[0, 0, 1, 2, 0]]
    a = gate_statistics({"a": rows})["tasks"]["a"]
    assert a["entropy"] == 0.0
    assert a["normalized_entropy"] == 0.0
    assert a["utilization"] == pytest.approx([0.6, 0.2, 0.2])
    assert a["mean_weights"] == pytest.approx([0.6, 0.2, 0.2])
    # exp(H([.6, .2, .2])) = exp(0.6 ln(1/.6) + 0.4 ln 5)
    #                     = exp(0.95027) = 2.58641
    assert a["effective_experts"] == pytest.approx(2.58641, abs=1e-5)
    assert a["mean_max_weight"] == 1.0


def test_mixed_rows_hand_computed():
    a = gate_statistics({"a": np.array([[0.5, 0.5], [1.0, 0.0]])})
    a = a["tasks"]["a"]
    # Row entropies ln 2 and 0.
    assert a["entropy"] == pytest.approx(math.log(2) / 2)
    assert a["normalized_entropy"] == pytest.approx(0.5)
    assert a["mean_weights"] == pytest.approx([0.75, 0.25])
    # The tied row counts half to each expert.
    assert a["utilization"] == pytest.approx([0.75, 0.25])
    assert a["mean_max_weight"] == pytest.approx(0.75)


def test_single_expert_normalized_entropy_is_zero():
    a = gate_statistics({"a": np.ones((3, 1))})["tasks"]["a"]
    assert a["entropy"] == 0.0 and a["normalized_entropy"] == 0.0
    assert a["effective_experts"] == pytest.approx(1.0)


def test_pairs_identical_tasks():
    w = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    (pair,) = gate_statistics({"a": w, "b": w.copy()})["pairs"]
    assert (pair["task_a"], pair["task_b"]) == ("a", "b")
    assert pair["js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert pair["cosine_similarity"] == pytest.approx(1.0)


def test_pairs_hand_computed():
    one_hot = np.array([[1.0, 0.0]] * 3)
    uniform = np.full((4, 2), 0.5)
    other = np.array([[0.0, 1.0]] * 2)
    stats = gate_statistics({"a": one_hot, "b": uniform, "c": other})
    pairs = {(p["task_a"], p["task_b"]): p for p in stats["pairs"]}
    assert list(pairs) == [("a", "b"), ("a", "c"), ("b", "c")]
    # m = [.75, .25]; KL(p|m) = ln 4/3, KL(q|m) = .5 ln 4/3
    # -> JS = .5 (ln 4/3 + .5 ln 4/3) = .75 ln 4/3.
    assert pairs["a", "b"]["js_divergence"] == pytest.approx(
        0.75 * math.log(4 / 3)
    )
    assert pairs["a", "b"]["cosine_similarity"] == pytest.approx(
        1 / math.sqrt(2)
    )
    # Disjoint supports: the maximum, ln 2; orthogonal.
    assert pairs["a", "c"]["js_divergence"] == pytest.approx(math.log(2))
    assert pairs["a", "c"]["cosine_similarity"] == pytest.approx(0.0)


def test_ragged_tasks_skip_incomparable_pairs():
    stats = gate_statistics(
        {
            "a": np.full((2, 3), 1 / 3),
            "b": np.full((2, 4), 0.25),
            "c": np.full((2, 3), 1 / 3),
        }
    )
    assert stats["tasks"]["b"]["num_experts"] == 4
    assert [(p["task_a"], p["task_b"]) for p in stats["pairs"]] == [("a", "c")]


def test_statistics_are_json_serializable():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 4)).astype("float32")
    w = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    stats = gate_statistics({"a": w, "b": w[::-1]})
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats
    np.testing.assert_allclose(sum(stats["tasks"]["a"]["mean_weights"]), 1)
    np.testing.assert_allclose(sum(stats["tasks"]["a"]["utilization"]), 1)


@pytest.mark.parametrize(
    "gate_weights, match",
    [
        ({}, "empty"),
        ([np.ones((2, 2)) / 2], "mapping"),
        ({"a": np.array([0.5, 0.5])}, "2-D"),
        ({"a": np.full((2, 2, 2), 0.5)}, "2-D"),
        ({"a": np.zeros((0, 3))}, "at least one example"),
        ({"a": np.array([[0.5, 0.2]])}, "sum"),
        ({"a": np.array([[1.5, -0.5]])}, "non-negative"),
        ({"a": np.array([[np.nan, 1.0]])}, "NaN"),
    ],
)
def test_bad_gate_weights(gate_weights, match):
    with pytest.raises(ValueError, match=match):
        gate_statistics(gate_weights)


def test_bad_input_names_the_task():
    with pytest.raises(ValueError, match="'b'"):
        gate_statistics({"a": np.ones((2, 1)), "b": np.ones(3)})


# === collect_gate_weights ===


def _gate_model(num_experts=4, seed=0):
    inp = keras.Input((8,))
    mmoe = MMoE(
        2,
        num_experts=num_experts,
        expert_units=16,
        return_gate_weights=True,
        seed=seed,
    )
    _, gates = mmoe(inp)
    return keras.Model(inp, {"a": gates[0], "b": gates[1]}), mmoe


def test_collect_gate_weights_known_values():
    gate_model, mmoe = _gate_model()
    # Zero kernel, bias log([1, 2, 3, 4]) -> softmax [.1, .2, .3, .4].
    mmoe.gates[0].kernel.assign(np.zeros((8, 4)))
    mmoe.gates[0].bias.assign(np.log([1.0, 2.0, 3.0, 4.0]))
    x = np.random.default_rng(0).normal(size=(37, 8)).astype("float32")
    weights = collect_gate_weights(gate_model, x, batch_size=8)
    assert list(weights) == ["a", "b"]
    assert weights["a"].shape == (37, 4) and weights["b"].shape == (37, 4)
    np.testing.assert_allclose(
        weights["a"], np.tile([0.1, 0.2, 0.3, 0.4], (37, 1)), rtol=1e-5
    )
    np.testing.assert_allclose(weights["b"].sum(axis=1), 1.0, rtol=1e-5)
    # Gate b still reads x: its rows differ.
    assert np.ptp(weights["b"], axis=0).max() > 1e-3


def test_collect_gate_weights_input_forms_agree():
    gate_model, _ = _gate_model()
    x = np.random.default_rng(1).normal(size=(20, 8)).astype("float32")
    y = np.zeros((20, 1))
    reference = collect_gate_weights(gate_model, x)
    from_tuple = collect_gate_weights(gate_model, (x, y))
    batches = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 20, 6)]
    from_list = collect_gate_weights(gate_model, batches)
    from_iterator = collect_gate_weights(gate_model, iter(batches))
    from_generator = collect_gate_weights(gate_model, (b for b in batches))
    forms = [from_tuple, from_list, from_iterator, from_generator]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
        forms.append(collect_gate_weights(gate_model, dataset))
    for other in forms:
        assert other["a"].shape == (20, 4)
        for task in ("a", "b"):
            np.testing.assert_allclose(
                other[task], reference[task], rtol=1e-5, atol=1e-6
            )


def test_collect_gate_weights_dict_inputs():
    inputs = {
        "u": keras.Input((3,), name="u"),
        "v": keras.Input((5,), name="v"),
    }
    features = keras.layers.Concatenate()([inputs["u"], inputs["v"]])
    _, gates = MMoE(2, num_experts=3, expert_units=8, return_gate_weights=True)(
        features
    )
    gate_model = keras.Model(inputs, {"ctr": gates[0], "cvr": gates[1]})
    x = {"u": np.ones((9, 3)), "v": np.zeros((9, 5))}
    weights = collect_gate_weights(gate_model, x, batch_size=4)
    assert {k: v.shape for k, v in weights.items()} == {
        "ctr": (9, 3),
        "cvr": (9, 3),
    }
    stats = gate_statistics(weights)
    assert set(stats["tasks"]) == {"ctr", "cvr"}


def test_collect_gate_weights_list_outputs_are_named():
    inp = keras.Input((8,))
    _, gates = MMoE(3, num_experts=2, expert_units=4, return_gate_weights=True)(
        inp
    )
    weights = collect_gate_weights(keras.Model(inp, gates), np.ones((3, 8)))
    assert list(weights) == ["task_0", "task_1", "task_2"]


def test_collect_gate_weights_bad_input():
    gate_model, _ = _gate_model()
    with pytest.raises(ValueError, match="empty"):
        collect_gate_weights(gate_model, [])
    with pytest.raises(ValueError, match="batch_size"):
        collect_gate_weights(gate_model, np.ones((2, 8)), batch_size=0)


# === GateDiagnostics ===


class GatedModel(keras.Model):
    """A two-task MMoE model exposing `gate_model()`, as the lead's will."""

    def gate_model(self):
        # MMoE's output, flattened: (out_a, out_b, gate_a, gate_b).
        gates = self.get_layer("mmoe").output[2:]
        return keras.Model(self.inputs, {"a": gates[0], "b": gates[1]})


def _two_task_model(cls=keras.Model):
    inp = keras.Input((8,), name="x")
    outs, _ = MMoE(
        2,
        num_experts=4,
        expert_units=8,
        return_gate_weights=True,
        seed=1,
        name="mmoe",
    )(inp)
    outputs = {
        "a": keras.layers.Dense(1, name="a")(outs[0]),
        "b": keras.layers.Dense(1, activation="sigmoid", name="b")(outs[1]),
    }
    model = cls(inp, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={"a": "mse", "b": "binary_crossentropy"},
    )
    return model


def _task_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = {
        "a": x[:, :1] * 2.0,
        "b": (x[:, 1:2] > 0).astype("float32"),
    }
    return x, y


def test_callback_writes_tensorboard_and_history(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    model = _two_task_model(GatedModel)
    x, y = _task_data()
    log_dir = tmp_path / "gates"
    diagnostics = GateDiagnostics(
        (x, y), log_dir=log_dir, batch_size=16, write_images=True
    )
    fit = model.fit(
        x, y, epochs=3, batch_size=16, verbose=0, callbacks=[diagnostics]
    )

    assert [h["epoch"] for h in diagnostics.history] == [0, 1, 2]
    # The last entry is the trained model's gates on the data.
    expected = gate_statistics(collect_gate_weights(model.gate_model(), x))
    last = diagnostics.history[-1]
    for task in ("a", "b"):
        for key in ("entropy", "effective_experts", "mean_max_weight"):
            assert last["tasks"][task][key] == pytest.approx(
                expected["tasks"][task][key], rel=1e-5
            )
        np.testing.assert_allclose(
            last["tasks"][task]["mean_weights"],
            expected["tasks"][task]["mean_weights"],
            rtol=1e-5,
        )
    # Training moved the gates.
    assert (
        diagnostics.history[0]["tasks"]["a"]["mean_weights"]
        != last["tasks"]["a"]["mean_weights"]
    )
    # Scalars reached the epoch logs, hence History.
    logged = fit.history["gate/a/entropy"]
    assert logged == pytest.approx(
        [h["tasks"]["a"]["entropy"] for h in diagnostics.history]
    )
    assert "gate/a_vs_b/js_divergence" in fit.history
    assert "gate/b/normalized_entropy" in fit.history

    event_files = glob.glob(str(log_dir / "events.out.tfevents.*"))
    assert len(event_files) == 1
    accumulator = EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "images": 0}
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    assert "gate/heatmap" in tags["images"]
    for j in range(4):
        events = accumulator.Scalars(f"gate/b/mean_weight/expert_{j}")
        assert [e.step for e in events] == [0, 1, 2]
        assert [e.value for e in events] == pytest.approx(
            [h["tasks"]["b"]["mean_weights"][j] for h in diagnostics.history],
            rel=1e-6,
        )
    entropy = accumulator.Scalars("gate/a/entropy")
    assert [e.value for e in entropy] == pytest.approx(logged, rel=1e-6)
    assert "gate/a_vs_b/cosine_similarity" in tags["scalars"]
    image = accumulator.Images("gate/heatmap")[-1]
    assert image.encoded_image_string.startswith(PNG_SIGNATURE)
    assert image.width > 100 and image.height > 100


def test_callback_every_n_epochs_with_gate_model_fn(tmp_path):
    model = _two_task_model()

    def gate_model_fn(m):
        gates = m.get_layer("mmoe").output[2:]
        return keras.Model(m.inputs, {"a": gates[0], "b": gates[1]})

    x, y = _task_data(32)
    diagnostics = GateDiagnostics(
        x, every_n_epochs=2, gate_model_fn=gate_model_fn
    )
    fit = model.fit(
        x, y, epochs=5, batch_size=16, verbose=0, callbacks=[diagnostics]
    )
    assert [h["epoch"] for h in diagnostics.history] == [1, 3]
    assert len(fit.history["loss"]) == 5
    # Only measured epochs carry the gate scalars.
    assert len(fit.history["gate/a/entropy"]) == 2
    assert os.listdir(tmp_path) == []


def test_callback_without_gate_model_method():
    model = _two_task_model()
    x, y = _task_data(16)
    with pytest.raises(ValueError, match="gate_model"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GateDiagnostics(x)])


def test_callback_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        GateDiagnostics(np.ones((2, 8)), every_n_epochs=0)
    with pytest.raises(ValueError, match="log_dir"):
        GateDiagnostics(np.ones((2, 8)), write_images=True)
    with pytest.raises(ValueError, match="gate_model_fn"):
        GateDiagnostics(np.ones((2, 8)), gate_model_fn="gate_model")


# === plot_gate_heatmap ===


def _check_png(path):
    data, width, height = _png_size(path)
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    # Not a blank canvas: cells, text and colorbar give many colours.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50
    # The write was atomic: no temporary file left beside it.
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


def test_plot_gate_heatmap_from_weights(tmp_path):
    gate_model, _ = _gate_model()
    weights = collect_gate_weights(gate_model, np.ones((4, 8)))
    path = tmp_path / "plots" / "gates.png"
    returned = plot_gate_heatmap(weights, path, title="Gates")
    assert returned == str(path)
    _check_png(returned)


def test_plot_gate_heatmap_ragged_stats(tmp_path):
    # PLE-like: task gates over 2 own + 2 shared experts, a shared gate
    # over all 6.
    stats = gate_statistics(
        {
            "ctr": np.full((3, 4), 0.25),
            "cvr": np.array([[0.7, 0.1, 0.1, 0.1]] * 3),
            "shared": np.full((3, 6), 1 / 6),
        }
    )
    path = plot_gate_heatmap(stats, str(tmp_path / "ragged.png"))
    _check_png(path)


def test_plot_gate_heatmap_bad_input_keeps_old_file(tmp_path):
    path = tmp_path / "gates.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="empty"):
        plot_gate_heatmap({}, path)
    with pytest.raises(ValueError, match="2-D"):
        plot_gate_heatmap({"a": np.array([0.5, 0.5])}, path)
    with pytest.raises(ValueError, match="mapping"):
        plot_gate_heatmap(np.ones((2, 2)), path)
    assert path.read_bytes() == b"old"
