"""The weight arguments every layer here shares, kept, serialized and applied
alike."""

import keras
from keras import ops


def set_weight_args(
    layer, use_bias, kernel_initializer, bias_initializer, kernel_regularizer
) -> None:
    """Keeps the arguments on `layer` under their own names."""
    layer.use_bias = bool(use_bias)
    layer.kernel_initializer = keras.initializers.get(kernel_initializer)
    layer.bias_initializer = keras.initializers.get(bias_initializer)
    layer.kernel_regularizer = keras.regularizers.get(kernel_regularizer)


def weight_args_config(layer) -> dict:
    """Their part of `layer.get_config()`."""
    return {
        "use_bias": layer.use_bias,
        "kernel_initializer": keras.initializers.serialize(
            layer.kernel_initializer
        ),
        "bias_initializer": keras.initializers.serialize(
            layer.bias_initializer
        ),
        "kernel_regularizer": keras.regularizers.serialize(
            layer.kernel_regularizer
        ),
    }


def linear(inputs, kernel, bias=None):
    """`inputs @ kernel + bias`, the bias added so TensorFlow fuses it.

    `ops.add` of a 1-D bias straight after the matmul becomes a `BiasAdd`,
    which TensorFlow fuses with the matmul (and a following ReLU) into one
    op: that matters most at small batch, where a step is a few tiny ops
    (benchmarks/README.md, "The layout, op by op"). `x + bias` (an
    `AddV2`), or a reshape between the two, is not fused.
    """
    out = ops.matmul(inputs, kernel)
    return out if bias is None else ops.add(out, bias)
