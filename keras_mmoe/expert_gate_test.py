import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.expert_gate import ExpertGate

X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")


def _gate(**kwargs):
    gate = ExpertGate(num_experts=5, name="gate", **kwargs)
    gate.build(X.shape)
    _testing.randomize(gate)
    return gate


def test_gate_equals_softmax_of_affine_logits():
    gate = _gate(temperature=2.0)
    expected = _testing.gate(_testing.weights_of(gate), X, "", 2.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(gate(X)), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(gate(X)).sum(axis=1), 1.0, rtol=1e-6
    )


def test_temperature_towards_zero_gives_one_hot():
    gate = _gate(temperature=1e-4)
    weights = ops.convert_to_numpy(gate(X))
    logits = X @ ops.convert_to_numpy(gate.kernel) + ops.convert_to_numpy(
        gate.bias
    )
    np.testing.assert_allclose(
        weights, np.eye(5)[logits.argmax(axis=1)], atol=1e-6
    )


def test_high_temperature_flattens():
    flat = ops.convert_to_numpy(_gate(temperature=1e4)(X))
    np.testing.assert_allclose(flat, 0.2, atol=1e-3)


def test_gate_dropout_drops_experts_and_renormalizes():
    gate = _gate(dropout=0.5, seed=3)
    full = ops.convert_to_numpy(gate(X))
    dropped = ops.convert_to_numpy(gate(X, training=True))
    kept = dropped > 0
    assert 0 < (~kept).sum() < kept.size  # Some experts dropped, not all.
    assert kept.any(axis=1).all()  # Never every expert of a row.
    np.testing.assert_allclose(dropped.sum(axis=1), 1.0, rtol=1e-6)
    # Kept experts keep their relative weights: full renormalized over kept.
    renormalized = full * kept / (full * kept).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dropped, renormalized, rtol=1e-5, atol=1e-7)
    # Inference is deterministic and untouched by dropout.
    np.testing.assert_allclose(
        ops.convert_to_numpy(gate(X, training=False)), full
    )


def test_dropout_rate_is_about_the_rate():
    gate = _gate(dropout=0.3, seed=1)
    x = np.repeat(X, 200, axis=0)
    dropped_fraction = (
        ops.convert_to_numpy(gate(x, training=True)) == 0
    ).mean()
    assert 0.25 < dropped_fraction < 0.35


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_experts": 0}, "num_experts=0"),
        ({"num_experts": 2, "temperature": 0.0}, "temperature=0.0"),
        ({"num_experts": 2, "dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExpertGate(**kwargs)


def test_output_shape_and_serialization(tmp_path):
    assert ExpertGate(4).compute_output_shape((None, 3)) == (None, 4)
    _testing.assert_saves_and_loads(
        lambda: ExpertGate(4, temperature=0.5, dropout=0.1), X, tmp_path
    )


def test_large_logits_give_the_softmax_without_overflow():
    gate = ExpertGate(num_experts=3, name="gate")
    logits = np.array([[1e4, 1e4 - 1.0, -1e4], [-50.0, 0.0, 88.0]], "float32")
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    weights = ops.convert_to_numpy(gate.weights_from_logits(logits))
    np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-30)


def test_gradient_through_the_gate_weights_is_the_softmax_gradient():
    gate = ExpertGate(num_experts=4, name="gate")
    logits = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    upstream = np.random.default_rng(2).normal(size=(3, 4)).astype("float32")
    _, grad = _testing.value_and_gradient(
        lambda z: ops.sum(
            ops.multiply(gate.weights_from_logits(z), ops.array(upstream))
        ),
        logits,
    )
    p = _testing.softmax(logits)
    # d/dz of sum(u * softmax(z)) = p * (u - sum(u * p)) per row.
    expected = p * (upstream - (upstream * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
