import json
import math

import keras
import numpy as np
import pytest

from keras_mmoe.gate_weights import (
    collect_gate_weights,
    gate_statistics,
    js_divergence,
)
from keras_mmoe.mmoe import MMoE

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


# === js_divergence ===


def test_js_divergence_against_hand_worked_values():
    # Disjoint supports: log 2.
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3), KL(q||m) = ln(4/3),
    # JS = 1/2 (1/2 ln(4/3)) + 1/2 ln(4/3) = 3/4 ln(4/3).
    js = js_divergence([0.5, 0.5], [1.0, 0.0])
    assert js == pytest.approx(0.75 * math.log(4 / 3))
    assert js_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(js)
    assert js_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # Weights are scaled to sum to 1 first.
    assert js_divergence([2.0, 2.0], [3.0, 0.0]) == pytest.approx(js)


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, 0.5], [1.0, 0.0, 0.0], "same length"),
        ([[0.5, 0.5]], [0.5, 0.5], "p="),
        ([], [], "p="),
        ([0.5, 0.5], [1.5, -0.5], "q="),
        ([0.0, 0.0], [0.5, 0.5], "positive sum"),
        ([np.nan, 1.0], [0.5, 0.5], "p="),
    ],
)
def test_js_divergence_bad_input(p, q, match):
    with pytest.raises(ValueError, match=match):
        js_divergence(p, q)


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
