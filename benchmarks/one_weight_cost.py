"""What one weight per expert layer costs the fused `MMoE` layer in time.

Run: `python -m benchmarks.one_weight_cost` (~3 min; `--quick` for a tiny
run). Writes `benchmarks/results/one_weight_cost.json` and prints a table.

The library keeps all experts of a layer in one weight. `layer_speed` finds
the fused layer slower than a per-expert loop in small-batch training with 8
experts of 64. This benchmark asks whether the one weight is the cause: it
times, in interleaved blocks with the `layer_speed` harness (same steps, same
Adam), three layers that compute the same numbers:

- fused: `keras_mmoe.MMoE` as shipped. The first expert layer's kernel is one
  weight `(blocks, in, experts_per_block, units)`, used block by block.
- split: `SplitKernelMMoE` below, the same ops on the same blocks, but every
  column block is a variable of its own (the layout the one-weight rule
  forbids; its number of weights grows with the blocks).
- loop: `layer_speed.LoopMMoE`, one Dense stack per expert.

If split keeps up with the loop where fused does not, the difference is the
one weight: TensorFlow runs the optimizer (and the gradient assembly) per
variable, so one large variable's update waits for every block's gradient
and then runs op by op over the whole kernel, while per-block variables
update as their own gradients arrive.
"""

import argparse
import os
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks import layer_speed, timing  # noqa: E402
from keras_mmoe import Experts, MMoE  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "one_weight_cost.json"
IMPLEMENTATIONS = ("fused", "split", "loop")


class SplitKernelExperts(Experts):
    """`Experts` (one layer, one group) with a variable per column block.

    Same blocks, same ops (a matmul with fused bias add and activation per
    block, then one concat) as `Experts`; only the storage differs.
    """

    def build(self, input_shape):
        if len(self.units) != 1 or self.num_groups != 1:
            raise ValueError(
                "SplitKernelExperts has one layer and one group. Received: "
                f"units={self.units}, num_groups={self.num_groups}"
            )
        in_dim = input_shape[-1]
        # The column blocks `Experts` chooses for these shapes.
        fused = Experts.from_config(self.get_config())
        fused.build(input_shape)
        blocks = fused.kernels[0].shape[0]
        columns = self.num_experts // blocks * self.units[0]
        self.block_kernels = [
            self.add_weight(name=f"kernel_0_{i}", shape=(in_dim, columns))
            for i in range(blocks)
        ]
        self.block_biases = [
            self.add_weight(
                name=f"bias_0_{i}", shape=(columns,), initializer="zeros"
            )
            for i in range(blocks)
        ]

    def call(self, inputs):
        # `ops.add` of the 1-D bias straight after the matmul, as in
        # `Experts`: TensorFlow fuses the two (and the ReLU) into one kernel.
        hs = [
            self.activation(ops.add(ops.matmul(inputs, k), b))
            for k, b in zip(self.block_kernels, self.block_biases, strict=True)
        ]
        h = hs[0] if len(hs) == 1 else ops.concatenate(hs, axis=-1)
        return ops.reshape(h, (-1, self.num_experts, self.units[0]))

    def copy_weights_from(self, experts: Experts):
        """Block `i` of `experts`' one kernel and bias become variable `i`."""
        kernel = ops.convert_to_numpy(experts.kernels[0])
        bias = ops.convert_to_numpy(experts.biases[0])
        blocks, in_dim = kernel.shape[:2]
        for i in range(blocks):
            self.block_kernels[i].assign(kernel[i].reshape(in_dim, -1))
            self.block_biases[i].assign(bias.reshape(blocks, -1)[i])


class SplitKernelMMoE(MMoE):
    """`MMoE` whose experts are `SplitKernelExperts`; gates unchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.experts = SplitKernelExperts.from_config(self.experts.get_config())

    def copy_weights_from(self, mmoe: MMoE):
        self.experts.copy_weights_from(mmoe.experts)
        for gate, source in zip(self.gates, mmoe.gates, strict=True):
            gate.set_weights(source.get_weights())


def make_layers(num_experts, units, num_tasks, input_dim):
    """fused, split and loop layers holding equal weights."""
    fused, loop = layer_speed.make_layers(
        num_experts, units, num_tasks, input_dim
    )
    split = SplitKernelMMoE(
        num_tasks, num_experts=num_experts, expert_units=units, name="split"
    )
    split.build((None, input_dim))
    split.copy_weights_from(fused)
    return {"fused": fused, "split": split, "loop": loop}


@dataclass
class Config:
    batches: tuple = (1, 32, 1024)
    experts: tuple = ((8, 64), (32, 16))
    num_tasks: int = 3
    input_dim: int = 256
    modes: tuple = ("train", "infer")
    repeats: int = 21
    block_seconds: float = 0.08


QUICK = Config(
    batches=(1, 8),
    experts=((4, 8),),
    num_tasks=2,
    input_dim=16,
    repeats=3,
    block_seconds=0.005,
)


def run(config: Config) -> list[dict]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    for num_experts, units in config.experts:
        for batch in config.batches:
            layers = make_layers(
                num_experts, units, config.num_tasks, config.input_dim
            )
            x, targets = layer_speed.batch_data(
                rng, batch, config.input_dim, units, config.num_tasks
            )
            for mode in config.modes:
                _, (seconds, _) = layer_speed.time_in_turns(
                    [layers[name] for name in IMPLEMENTATIONS],
                    mode,
                    x,
                    targets,
                    config.block_seconds,
                    config.repeats,
                )
                ms = dict(zip(IMPLEMENTATIONS, seconds, strict=True))
                row = {
                    "mode": mode,
                    "batch": batch,
                    "num_experts": num_experts,
                    "units": units,
                    "variables": {
                        name: len(layers[name].trainable_variables)
                        for name in IMPLEMENTATIONS
                    },
                    **{f"{name}_ms": ms[name] * 1e3 for name in ms},
                    "fused_speedup": ms["loop"] / ms["fused"],
                    "split_speedup": ms["loop"] / ms["split"],
                }
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = (
    f"{'mode':<7}{'batch':>6}{'experts':>8}{'units':>6}{'fused ms':>10}"
    f"{'split ms':>10}{'loop ms':>10}{'fused':>8}{'split':>8}  (x vs loop)"
)


def format_row(row) -> str:
    return (
        f"{row['mode']:<7}{row['batch']:>6}{row['num_experts']:>8}"
        f"{row['units']:>6}{row['fused_ms']:>10.4f}{row['split_ms']:>10.4f}"
        f"{row['loop_ms']:>10.4f}{row['fused_speedup']:>7.2f}x"
        f"{row['split_speedup']:>7.2f}x"
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    timing.add_output_arguments(parser, RESULTS)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    print(HEADER, flush=True)
    rows = run(config)
    result = {
        "config": asdict(config),
        "machine": timing.machine(("tensorflow", "keras")),
        "implementations": {
            "fused": "keras_mmoe.MMoE: first expert layer one weight",
            "split": "SplitKernelMMoE: the same ops, a variable per block",
            "loop": "layer_speed.LoopMMoE: one Dense stack per expert",
        },
        "rows": rows,
        "fused_slower_than_loop": [
            {k: row[k] for k in ("mode", "batch", "num_experts", "units")}
            for row in rows
            if row["fused_speedup"] < 1.0
        ],
    }
    timing.write_results(args, RESULTS, result)
    return result


if __name__ == "__main__":
    main()
