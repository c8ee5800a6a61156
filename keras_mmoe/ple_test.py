import numpy as np
import pytest
from keras import ops

from keras_mmoe import _testing
from keras_mmoe.cgc import CGC
from keras_mmoe.ple import PLE

X = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")


@pytest.mark.parametrize("num_levels", [1, 3])
def test_outputs_equal_numpy_equations(num_levels):
    layer = PLE(
        num_tasks=2,
        num_levels=num_levels,
        num_shared_experts=2,
        num_task_experts=1,
        expert_units=[5, 4],
    )
    layer.build(X.shape)
    _testing.randomize(layer)
    expected = _testing.ple(_testing.weights_of(layer), X, 2, num_levels)
    outputs = layer(X)
    assert len(outputs) == 2
    for out, ref in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(out), ref, rtol=1e-4, atol=1e-5
        )


def test_one_level_is_cgc():
    ple = PLE(
        2,
        num_levels=1,
        num_shared_experts=2,
        num_task_experts=1,
        expert_units=4,
    )
    cgc = CGC(2, num_shared_experts=2, num_task_experts=1, expert_units=4)
    ple.build(X.shape)
    cgc.build(X.shape)
    cgc.set_weights(ple.get_weights())
    for a, b in zip(ple(X), cgc(X), strict=True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6
        )


def test_return_gate_weights_and_shapes():
    layer = PLE(
        3,
        num_levels=2,
        num_shared_experts=2,
        num_task_experts=2,
        expert_units=4,
        return_gate_weights=True,
    )
    outputs, gates = layer(X)
    assert [tuple(o.shape) for o in outputs] == [(9, 4)] * 3
    assert [tuple(g.shape) for g in gates] == [(9, 4)] * 3
    assert layer.compute_output_shape((None, 6)) == (
        [(None, 4)] * 3,
        [(None, 4)] * 3,
    )


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="num_levels=0"):
        PLE(
            2,
            num_levels=0,
            num_shared_experts=1,
            num_task_experts=1,
            expert_units=4,
        )


def test_arguments_after_num_tasks_are_keyword_only():
    # Only `num_tasks` is positional: more positional numbers fail at once
    # instead of binding to other arguments.
    with pytest.raises(TypeError, match="positional argument"):
        PLE(2, 2, 2, 1, 4)


def test_serialization_and_saving(tmp_path):
    _testing.assert_saves_and_loads(
        lambda: PLE(
            2,
            num_levels=2,
            num_shared_experts=1,
            num_task_experts=1,
            expert_units=4,
        ),
        X,
        tmp_path,
    )
