import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.cgc import CGC

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


@pytest.mark.parametrize("shared_output", [False, True])
def test_outputs_equal_numpy_equations(shared_output):
    layer = CGC(
        num_tasks=3,
        num_shared_experts=2,
        num_task_experts=2,
        expert_units=[5, 4],
        return_shared_output=shared_output,
    )
    layer.build(X.shape)
    _testing.randomize(layer)
    expected = _testing.cgc(
        _testing.weights_of(layer), X, 3, shared_output=shared_output
    )
    outputs = layer(X)
    assert len(outputs) == 3 + shared_output
    for out, ref in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), ref, rtol=1e-5, atol=1e-5
        )


def test_separate_task_and_shared_inputs():
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]
    layer = CGC(
        2,
        num_shared_experts=1,
        num_task_experts=2,
        expert_units=3,
        return_shared_output=True,
    )
    layer.build([x.shape for x in xs])
    _testing.randomize(layer)
    expected = _testing.cgc(
        _testing.weights_of(layer), xs, 2, shared_output=True
    )
    for out, ref in zip(layer(xs), expected, strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), ref, rtol=1e-5, atol=1e-5
        )


def test_gate_weights_cover_own_then_shared_experts():
    layer = CGC(
        2,
        num_shared_experts=3,
        num_task_experts=1,
        expert_units=4,
        return_gate_weights=True,
    )
    _, gates = layer(X)
    assert [tuple(g.shape) for g in gates] == [(9, 4)] * 2
    for g in gates:
        np.testing.assert_allclose(
            ops.convert_to_numpy(g).sum(axis=1), 1.0, rtol=1e-6
        )


def test_wrong_number_of_inputs_is_named():
    with pytest.raises(ValueError, match="list of 3"):
        CGC(2, num_shared_experts=1, num_task_experts=1, expert_units=4)([X, X])


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="num_shared_experts=0"):
        CGC(2, num_shared_experts=0, num_task_experts=1, expert_units=4)


def test_arguments_after_num_tasks_are_keyword_only():
    # Only `num_tasks` is positional: more positional numbers fail at once
    # instead of binding to other arguments.
    with pytest.raises(TypeError, match="positional argument"):
        CGC(2, 2, 1, 4)


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: CGC(
            2, num_shared_experts=2, num_task_experts=1, expert_units=[8, 4]
        ),
        X,
        tmp_path,
    )
