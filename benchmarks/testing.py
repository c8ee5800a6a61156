"""Shared helpers of the benchmark tests."""

import numpy as np


def randomize(layer, seed: int = 0) -> None:
    """Sets every weight of a built layer to distinct random values.

    Fresh layers start with zero biases and gates near uniform, which would
    hide a bias or gate that one implementation drops.
    """
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights]
    )
