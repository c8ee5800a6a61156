"""keras_mmoe is plain Keras: no TFX, tf.Transform or TF-Text imports."""

import subprocess
import sys


def test_keras_mmoe_imports_no_pipeline_packages():
    code = (
        "import sys, keras_mmoe\n"
        "bad = [m for m in ('tfx', 'tensorflow_transform', 'tensorflow_text')"
        " if m in sys.modules]\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
