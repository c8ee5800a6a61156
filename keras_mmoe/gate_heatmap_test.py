import os

import numpy as np
import pytest

from keras_mmoe.gate_heatmap import plot_gate_heatmap, render_gate_heatmap
from keras_mmoe.gate_weights import gate_statistics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    with open(path, "rb") as f:
        data = f.read()
    return (
        data,
        int.from_bytes(data[16:20], "big"),
        int.from_bytes(data[20:24], "big"),
    )


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


def _softmax_rows(num_examples, num_experts, seed=0):
    logits = np.random.default_rng(seed).normal(
        size=(num_examples, num_experts)
    )
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_render_gate_heatmap_is_an_rgba_image():
    image = render_gate_heatmap({"a": _softmax_rows(4, 3)}, title="Gates")
    assert image.dtype == np.uint8 and image.ndim == 3
    height, width, channels = image.shape
    assert channels == 4 and height > 100 and width > 100
    # Not a blank canvas: cells, text and colorbar give many colours.
    assert len(np.unique(image.reshape(-1, 4), axis=0)) > 50
    # More experts, a wider figure.
    wide = render_gate_heatmap({"a": _softmax_rows(4, 12)})
    assert wide.shape[1] > width


def test_plot_gate_heatmap_writes_the_rendered_image(tmp_path):
    weights = {"a": _softmax_rows(4, 4), "b": _softmax_rows(4, 4, seed=1)}
    path = plot_gate_heatmap(weights, tmp_path / "gates.png", title="G")
    import matplotlib.image

    pixels = matplotlib.image.imread(path)  # float RGBA in [0, 1]
    np.testing.assert_array_equal(
        np.round(pixels * 255).astype(np.uint8),
        render_gate_heatmap(weights, title="G"),
    )


def test_plot_gate_heatmap_from_weights(tmp_path):
    weights = {"a": _softmax_rows(4, 4), "b": _softmax_rows(4, 4, seed=1)}
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


def test_plot_gate_heatmap_bad_input_keeps_the_existing_file(tmp_path):
    path = tmp_path / "gates.png"
    path.write_bytes(b"existing")
    with pytest.raises(ValueError, match="empty"):
        plot_gate_heatmap({}, path)
    with pytest.raises(ValueError, match="2-D"):
        plot_gate_heatmap({"a": np.array([0.5, 0.5])}, path)
    with pytest.raises(ValueError, match="mapping"):
        plot_gate_heatmap(np.ones((2, 2)), path)
    assert path.read_bytes() == b"existing"
