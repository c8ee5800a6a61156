"""pipeline/ and serving/ run Keras on TensorFlow; keras_mmoe runs anywhere.

TFX, tf.Transform, TF-Text, the SavedModel export and TF Serving are
TensorFlow's, so training through the pipeline and exporting a model need
Keras's TensorFlow backend. `require_tensorflow` says so in one line when
another backend is asked for, before any TensorFlow work starts. It imports
nothing: call it before Keras is imported and it picks TensorFlow.
"""

import os
import sys


class BackendError(RuntimeError):
    """Keras runs, or is set to run, on a backend other than TensorFlow."""


def require_tensorflow(what: str) -> None:
    """Makes Keras use TensorFlow, or raises `BackendError`.

    Sets `KERAS_BACKEND=tensorflow` unless it is set (so a `keras.json`
    naming another backend does not apply), and raises if it names
    another backend or Keras is already running on one.

    Args:
        what: str. What needs TensorFlow, to begin the error message.
    """
    asked = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = sys.modules.get("keras")
    running = keras.backend.backend() if keras is not None else asked
    if asked != "tensorflow" or running != "tensorflow":
        raise BackendError(
            f"{what} needs Keras's TensorFlow backend (TFX, tf.Transform, "
            "TF-Text and the SavedModel are TensorFlow's); Keras is set to "
            f"{running if running != 'tensorflow' else asked!r} here. Set "
            "KERAS_BACKEND=tensorflow. keras_mmoe's layers and "
            "MultiTaskModel run on TensorFlow, JAX and PyTorch."
        )
