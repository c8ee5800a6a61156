"""LogitTransfer: a task's logits read from the logits of related tasks."""

import keras
from keras import ops

from keras_mmoe import _validation


@keras.saving.register_keras_serializable(package="keras_mmoe")
class LogitTransfer(keras.layers.Layer):
    """A learned linear map of other tasks' logits, added to a task's logits.

    `output = concatenate(source logits) @ kernel`, kernel
    `(sum of the sources' widths, units)`, starting at zero (so the task
    starts as if it read nothing), no bias (the task's own logits have one).

    For a task whose labels are a coarser view of another's: a binary
    "recommended" read from the 5-class rating's logits. The ordinal rating
    is the richer training signal; on the bundled reviews, ranking by the
    rating head's expected rating alone beat the recommended head's own
    AUC, and reading the rating logits raised the recommended AUC on
    validation for each of six seeds (benchmarks/README.md, section 5).
    This is the transfer of ESMM and AITM (a later task reads an earlier
    one's output) as one linear readout.

    With `stop_gradient=True` (the default) the read does not train the
    source: each source task's head is still fit by its own labels only,
    and the reader learns how to use its prediction.

    Args:
        units: int. Width of the reading task's logits.
        stop_gradient: bool. Whether the reading task's loss is kept from
            flowing into the source logits.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list of tensors `(batch, width_i)`, the source tasks'
            logits.

    Returns:
        Tensor `(batch, units)`.

    Example:
    >>> layer = LogitTransfer(units=1)
    >>> tuple(layer([np.ones((4, 5)), np.ones((4, 1))]).shape)
    (4, 1)

    Reference:
        - Ma et al., "Entire Space Multi-Task Model", SIGIR 2018.
        - Xi et al., "Modeling the Sequential Dependence among Audience
          Multi-step Conversions with Multi-task Learning in Targeted
          Display Advertising" (AITM), KDD 2021.
    """

    def __init__(self, units: int, stop_gradient: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units = _validation.positive_int("units", units)
        self.stop_gradient = _validation.boolean("stop_gradient", stop_gradient)

    def build(self, input_shape):
        widths = _source_widths(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(sum(widths), self.units),
            initializer="zeros",
        )

    def call(self, inputs):
        sources = [ops.convert_to_tensor(x) for x in inputs]
        if self.stop_gradient:
            sources = [ops.stop_gradient(x) for x in sources]
        x = sources[0] if len(sources) == 1 else ops.concatenate(sources, -1)
        return ops.matmul(x, self.kernel)

    def compute_output_shape(self, input_shape):
        _source_widths(input_shape)
        return (input_shape[0][0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "stop_gradient": self.stop_gradient,
        }


def _source_widths(input_shape) -> list[int]:
    shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else []
    if not shapes or not all(
        isinstance(s, (list, tuple)) and len(s) == 2 for s in shapes
    ):
        raise ValueError(
            "LogitTransfer expects a non-empty list of 2D logits "
            f"(batch, width). Received input shape: {input_shape}"
        )
    widths = [s[-1] for s in shapes]
    if any(w is None for w in widths):
        raise ValueError(
            "LogitTransfer needs each source's width known. Received input "
            f"shape: {input_shape}"
        )
    return widths
