"""keras_mmoe: multi-task Mixture-of-Experts layers and models for Keras 3."""

from keras_mmoe import gate_diagnostics, losses, metrics
from keras_mmoe.bag_of_ngrams import BagOfNgrams
from keras_mmoe.cgc import CGC
from keras_mmoe.expert_gate import ExpertGate
from keras_mmoe.experts import Experts
from keras_mmoe.gate_diagnostics import GateDiagnostics
from keras_mmoe.gate_heatmap import plot_gate_heatmap
from keras_mmoe.gate_weights import collect_gate_weights, gate_statistics
from keras_mmoe.logit_blend import LogitBlend
from keras_mmoe.logit_transfer import LogitTransfer
from keras_mmoe.losses import (
    MaskedBinaryCrossentropy,
    MaskedSparseCategoricalCrossentropy,
)
from keras_mmoe.mmoe import MMoE
from keras_mmoe.multitask_model import (
    BODY_NAMES,
    GATED_BODIES,
    MultiTaskModel,
    reading_order,
)
from keras_mmoe.omoe import OMoE
from keras_mmoe.ple import PLE
from keras_mmoe.shared_bottom import SharedBottom
from keras_mmoe.task import Task
from keras_mmoe.text_encoder import ENCODERS, TextEncoder
from keras_mmoe.tfidf_linear import TfidfLinear
from keras_mmoe.transformer_block import TransformerBlock

__version__ = "0.1.0"

__all__ = [
    "BagOfNgrams",
    "CGC",
    "ExpertGate",
    "Experts",
    "BODY_NAMES",
    "ENCODERS",
    "GATED_BODIES",
    "GateDiagnostics",
    "LogitBlend",
    "LogitTransfer",
    "MMoE",
    "MaskedBinaryCrossentropy",
    "MaskedSparseCategoricalCrossentropy",
    "MultiTaskModel",
    "OMoE",
    "PLE",
    "SharedBottom",
    "Task",
    "TextEncoder",
    "TfidfLinear",
    "TransformerBlock",
    "collect_gate_weights",
    "gate_diagnostics",
    "gate_statistics",
    "losses",
    "metrics",
    "plot_gate_heatmap",
    "reading_order",
]
