import types

import pytest

from serving import backend


def test_another_backend_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(backend.BackendError) as raised:
        backend.require_tensorflow("mmoe run")
    message = str(raised.value)
    assert message.startswith("mmoe run needs Keras's TensorFlow backend")
    assert "'jax'" in message and "KERAS_BACKEND=tensorflow" in message
    assert "\n" not in message


def test_keras_already_running_elsewhere_is_refused(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    running = types.SimpleNamespace(
        backend=types.SimpleNamespace(backend=lambda: "torch")
    )
    monkeypatch.setitem(backend.sys.modules, "keras", running)
    with pytest.raises(backend.BackendError, match="'torch'"):
        backend.require_tensorflow("Exporting a SavedModel")


def test_unset_backend_becomes_tensorflow(monkeypatch):
    # Before Keras loads, so that a keras.json naming another does not apply.
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delitem(backend.sys.modules, "keras", raising=False)
    backend.require_tensorflow("mmoe run")
    assert backend.os.environ["KERAS_BACKEND"] == "tensorflow"
