"""OMoE: the MMoE paper's one-gate baseline."""

import keras

from keras_mmoe.mmoe import MMoE


@keras.saving.register_keras_serializable(package="keras_mmoe")
class OMoE(MMoE):
    """One-gate Mixture-of-Experts: the experts of `MMoE`, one shared gate.

    Every task receives the same mixture `sum_i g(x)_i * expert_i(x)`; the
    baseline of Ma et al. (KDD 2018) that isolates the effect of per-task
    gates. Arguments, call arguments and returns are those of `MMoE` (the
    returned gate weights are the one gate's, repeated per task). All
    arguments after `num_tasks` are keyword-only.

    Example:
    >>> layer = OMoE(num_tasks=2, num_experts=4, expert_units=16)
    >>> [tuple(t.shape) for t in layer(np.ones((3, 8)))]
    [(3, 16), (3, 16)]

    Reference:
        - Ma et al., "Modeling Task Relationships in Multi-task Learning with
          Multi-gate Mixture-of-Experts", KDD 2018.
    """

    def _num_gates(self) -> int:
        return 1
