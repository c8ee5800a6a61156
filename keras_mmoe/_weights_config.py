"""The weight arguments every layer here shares, kept and serialized alike."""

import keras


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
