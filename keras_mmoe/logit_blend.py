"""LogitBlend: a task's logits as a weighted sum of two models' logits."""

import keras
from keras import ops

from keras_mmoe import _validation


@keras.saving.register_keras_serializable(package="keras_mmoe")
class LogitBlend(keras.layers.Layer):
    """`deep_weight * deep_logits + linear_weight * linear_logits`.

    Two models of the same task, a deep network and a linear one, blended
    in logit space (for a softmax, the normalized geometric mean of their
    probabilities). The two weights are not trained: they are chosen on
    held-out data after both models are fit (`set_blend`), because on the
    training rows a well-fit linear model looks better than it is. The
    defaults (1, 0) give the deep model alone, so training the deep model
    inside a graph that holds the blend sees only its own logits.

    Args:
        deep_weight: float >= 0. Initial weight of the first input.
        linear_weight: float >= 0. Initial weight of the second input.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[deep_logits, linear_logits]` of tensors of one
            shape `(batch, units)`.

    Returns:
        Tensor `(batch, units)`.

    Example:
    >>> layer = LogitBlend(deep_weight=0.5, linear_weight=0.5)
    >>> np.asarray(layer([np.ones((1, 2)), np.zeros((1, 2))])).tolist()
    [[0.5, 0.5]]
    """

    def __init__(
        self, deep_weight: float = 1.0, linear_weight: float = 0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.deep_weight = _validation.non_negative_float(
            "deep_weight", deep_weight
        )
        self.linear_weight = _validation.non_negative_float(
            "linear_weight", linear_weight
        )

    def build(self, input_shape):
        if not (
            isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
        ):
            raise ValueError(
                "LogitBlend expects `[deep_logits, linear_logits]`. Received "
                f"input shape: {input_shape}"
            )
        self.blend = self.add_weight(
            name="blend",
            shape=(2,),
            initializer=keras.initializers.Constant(
                [self.deep_weight, self.linear_weight]
            ),
            trainable=False,
        )

    def call(self, inputs):
        deep, linear = inputs
        return ops.add(
            self.blend[0] * ops.convert_to_tensor(deep),
            self.blend[1] * ops.convert_to_tensor(linear),
        )

    def set_blend(self, deep_weight: float, linear_weight: float) -> None:
        """Sets the two weights (the config keeps the initial ones)."""
        self.blend.assign(
            [
                _validation.non_negative_float("deep_weight", deep_weight),
                _validation.non_negative_float("linear_weight", linear_weight),
            ]
        )

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "deep_weight": self.deep_weight,
            "linear_weight": self.linear_weight,
        }
