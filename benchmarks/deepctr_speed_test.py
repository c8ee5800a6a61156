import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import deepctr_speed
from benchmarks.cost_config import QUICK, Config


def test_summed_cross_entropy_by_hand():
    half = tf.fill((4, 1), 0.5)
    labels = [tf.ones((4, 1)), tf.zeros((4, 1))]
    loss = deepctr_speed.summed_cross_entropy([half, half], labels)
    assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-5)


def _tiny_model():
    inputs = keras.Input((3,))
    outputs = [
        keras.layers.Dense(1, activation="sigmoid")(inputs) for _ in range(2)
    ]
    return keras.Model(inputs, outputs)


def _tiny_batch():
    x = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    return x, [tf.ones((4, 1)), tf.zeros((4, 1))]


def test_graph_steps_is_one_sgd_step_of_the_summed_loss():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    x, labels = _tiny_batch()
    with tf.GradientTape() as tape:
        loss = deepctr_speed.summed_cross_entropy(model(x), labels)
    grads = tape.gradient(loss, model.trainable_variables)
    expected = [
        v.numpy() - 0.1 * g.numpy()
        for v, g in zip(model.trainable_variables, grads, strict=True)
    ]
    seconds = deepctr_speed.graph_steps(model, x, labels, learning_rate=0.1)(1)
    assert seconds > 0
    for v, e in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_fit_steps_times_the_steps_after_the_first():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    fn = deepctr_speed.fit_steps(model, keras.callbacks.Callback, x, labels)
    assert fn(3) > 0
    # One more batch than timed: the first one's end starts the clock.
    assert int(model.optimizer.iterations) == 4


def test_train_on_batch_steps_runs_one_call_per_step():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    assert deepctr_speed.train_on_batch_steps(model, x, labels)(3) > 0
    assert int(model.optimizer.iterations) == 3


def test_keras_mmoe_model_parameters_by_hand():
    model = deepctr_speed.keras_mmoe_model(Config())
    experts = 8 * (256 * 64 + 64)
    gates = 3 * (256 * 8 + 8)  # DeepCTR's gates have no bias: 3 * 8 fewer.
    towers = 3 * (64 * 64 + 64 + 64 + 1)
    assert model.count_params() == experts + gates + towers


def test_skipped_when_not_installed(monkeypatch, capsys):
    monkeypatch.setattr(
        deepctr_speed, "BENCH_PACKAGES", ("deepctr", "no_such_package_xyz")
    )
    result = deepctr_speed.run(QUICK)
    assert "no_such_package_xyz" in result["skipped"]
    assert "skipped" in capsys.readouterr().out
