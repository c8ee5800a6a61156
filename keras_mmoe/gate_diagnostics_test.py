import glob
import os

import keras
import numpy as np
import pytest

import keras_mmoe
from keras_mmoe import gate_diagnostics
from keras_mmoe.gate_diagnostics import (
    GateDiagnostics,
    collect_gate_weights,
    gate_statistics,
)
from keras_mmoe.mmoe import MMoE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_gate_functions_are_importable_from_here_and_the_package():
    # What pipeline/ and benchmarks/ call through this module.
    assert callable(gate_diagnostics.js_divergence)
    names = ("GateDiagnostics", "collect_gate_weights", "gate_statistics")
    for name in (*names, "plot_gate_heatmap"):
        assert getattr(keras_mmoe, name) is getattr(gate_diagnostics, name)


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


def test_tensorboard_without_its_package_fails_when_made(monkeypatch, tmp_path):
    """TensorBoard files need the `tensorboard` package (not TensorFlow):
    without it, asking for them fails at once, naming the package."""
    find_spec = gate_diagnostics.importlib.util.find_spec
    monkeypatch.setattr(
        gate_diagnostics.importlib.util,
        "find_spec",
        lambda name, *args: (
            None if name == "tensorboard" else find_spec(name, *args)
        ),
    )
    with pytest.raises(ImportError, match="pip install tensorboard"):
        GateDiagnostics(np.ones((2, 8)), log_dir=tmp_path)
    assert GateDiagnostics(np.ones((2, 8))).log_dir is None
