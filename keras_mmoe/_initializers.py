"""Per-expert initialization of fused expert weights."""

import random as py_random

import keras
from keras import ops


def clone(initializer, seed_offset: int):
    """A copy of `initializer` whose random stream differs per expert.

    Keras 3 initializers are stateless: one instance (or a clone with the same
    seed) returns the same values on every call, which would make every expert
    identical, and identical experts stay identical under training.
    """
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if "seed" not in config:  # Deterministic (zeros, ones, constant).
        return initializer
    seed = config["seed"]
    config["seed"] = (
        py_random.randrange(2**31 - 1) if seed is None else seed + seed_offset
    )
    return initializer.__class__.from_config(config)


def per_expert(initializer, num_experts: int, axis: int, first: int = 0):
    """Initializer for a weight holding `num_experts` stacked on `axis`.

    Each expert's slice is drawn with its own copy of `initializer` and the
    shape of one expert, so fan-in and fan-out (Glorot, He) are those of one
    expert, not of the fused tensor. The slices are experts `first`,
    `first + 1`, ...: a weight holding a block of a layer's experts starts
    them as the whole layer's copies would.
    """

    def init(shape, dtype=None):
        one_shape = list(shape)
        del one_shape[axis]
        slices = [
            clone(initializer, first + e)(tuple(one_shape), dtype=dtype)
            for e in range(num_experts)
        ]
        return ops.stack(slices, axis=axis)

    return init
