"""Sizes and timing settings of the cost benchmarks (`benchmarks.cost`).

One `Config` for every part, in sections; `QUICK` is the tiny run of
`--quick`. Constants only.
"""

from dataclasses import dataclass, field, replace

from pipeline import configs
from serving import features

TRAINER = configs.TRAINER_DEFAULTS


@dataclass
class Config:
    # === deepctr (and the fixed sizes of scaling) ===
    input_dim: int = 256
    num_experts: int = 8
    expert_units: int = 64
    num_tasks: int = 3
    tower_units: int = 64  # DeepCTR's default tower_dnn_hidden_units=(64,).
    deepctr_batches: tuple = (32, 1024)
    deepctr_modes: tuple = (
        "forward",
        "graph",
        "adam",
        "graph_adam",
        "fit",
        "fit_spe",
        "train_on_batch",
        "fit_xla",
    )
    # fit_spe's steps_per_execution (fit's default is 1).
    deepctr_steps_per_execution: int = 32
    # Speed-ups over DeepCTR's fit whose cost `breakdown` works out.
    deepctr_fit_targets: tuple = ((32, 1.0), (1024, 1.5))
    # The float32 matmul peak the breakdown compares with.
    peak_size: int = 2048
    peak_repeats: int = 5
    # === multitask_vs_single: the pipeline's Trainer defaults ===
    text_tasks: tuple = (("recommended", 2), ("rating", 5), ("department", 6))
    # The Transform's largest vocabulary: top tokens, padding, OOV buckets.
    vocabulary_size: int = (
        features.VOCABULARY_SIZE + 1 + features.NUM_OOV_BUCKETS
    )
    sequence_length: int = features.MAX_LENGTH
    encoder: str = TRAINER["encoder"]
    embedding_dim: int = TRAINER["embedding_dim"]
    text_tower_units: tuple = tuple(TRAINER["tower_units"])
    dropout: float = TRAINER["dropout"]
    batch_size: int = TRAINER["batch_size"]
    learning_rate: float = TRAINER["learning_rate"]
    wide: dict | None = field(default_factory=lambda: dict(TRAINER["wide"]))
    # None: the body's defaults, as in the Trainer.
    mmoe_config: dict | None = None
    single_config: dict | None = None
    text_encoder_config: dict = field(default_factory=dict)
    text_examples: int = 4096  # Per epoch; a multiple of batch_size.
    text_epochs: int = 3  # Timed, after a one-batch warm-up fit.
    text_rounds: int = 3
    # === scaling ===
    scaling_batch: int = 1024
    scaling_experts: tuple = (1, 2, 4, 8, 16, 32)
    scaling_tasks: tuple = (1, 2, 4, 8)
    scaling_modes: tuple = ("train", "train_xla")
    # === timing ===
    repeats: int = 11  # Timed blocks per implementation.
    block_seconds: float = 0.25  # Target length of one block.
    seed: int = 0


QUICK = replace(
    Config(),
    input_dim=16,
    num_experts=4,
    expert_units=8,
    num_tasks=2,
    tower_units=4,
    deepctr_batches=(8,),
    # The default modes but train_on_batch.
    deepctr_modes=tuple(
        m for m in Config().deepctr_modes if m != "train_on_batch"
    ),
    deepctr_steps_per_execution=2,
    peak_size=64,
    peak_repeats=2,
    vocabulary_size=100,
    sequence_length=16,
    embedding_dim=8,
    text_tower_units=(4,),
    batch_size=16,
    wide={"ngram_buckets": 64, "scale": 10.0},
    mmoe_config={"num_experts": 2, "expert_units": 4},
    single_config={"units": 4},
    text_encoder_config={"num_filters": 4},
    text_examples=32,
    text_epochs=1,
    text_rounds=1,
    scaling_batch=8,
    scaling_experts=(1, 2),
    scaling_tasks=(1, 2),
    repeats=2,
    block_seconds=0.005,
)
