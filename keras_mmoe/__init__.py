"""keras_mmoe: multi-task Mixture-of-Experts layers and models for Keras 3."""

from keras_mmoe.expert_gate import ExpertGate
from keras_mmoe.experts import Experts
from keras_mmoe.mmoe import MMoE
from keras_mmoe.omoe import OMoE

__version__ = "0.1.0"
