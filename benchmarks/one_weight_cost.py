"""What one weight per expert layer costs the fused `MMoE` layer in time.

Run: `python -m benchmarks.one_weight_cost` (~3 min; `--quick` for a tiny
run). Writes `benchmarks/results/one_weight_cost.json` and prints a table.

`Experts` keeps its first layer's column blocks in a weight each (at most 8).
This benchmark times, in interleaved blocks with the `layer_speed` harness
(same steps, same Adam), three layers that compute the same numbers:

- blocks: `keras_mmoe.MMoE` as shipped, a kernel `(in, columns)` and a bias
  per column block of the first expert layer.
- one_kernel: `OneKernelMMoE` below, the same ops on the same blocks, but
  the first expert layer's kernel is one weight `(blocks, in,
  experts_per_block, units)` and its bias one `(experts, units)`, sliced
  block by block in every call.
- loop: `layer_speed.LoopMMoE`, one Dense stack per expert.

Where blocks keeps up with the loop and one_kernel does not, the difference
is the one weight: TensorFlow runs the optimizer (and the gradient assembly)
per variable, so one large variable's update waits for every block's
gradient and then runs op by op over the whole kernel, while per-block
variables update as their own gradients arrive.
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
IMPLEMENTATIONS = ("blocks", "one_kernel", "loop")


class OneKernelExperts(Experts):
    """`Experts` (one layer, one group) whose first layer is one weight.

    Same blocks, same ops (a matmul with fused bias add and activation per
    block, then one concat) as `Experts`; only the storage differs.
    """

    def build(self, input_shape):
        if len(self.units) != 1 or self.num_groups != 1:
            raise ValueError(
                "OneKernelExperts has one layer and one group. Received: "
                f"units={self.units}, num_groups={self.num_groups}"
            )
        # The column blocks `Experts` chooses for these shapes.
        shipped = Experts.from_config(self.get_config())
        shipped.build(input_shape)
        kernel, _ = layer_speed.first_layer(shipped)
        # (blocks, in, experts_per_block, units)
        self.kernel = self.add_weight(
            name="kernel_0", shape=kernel.shape, initializer="zeros"
        )
        self.bias = self.add_weight(
            name="bias_0",
            shape=(self.num_experts, self.units[0]),
            initializer="zeros",
        )
        self.copy_weights_from(shipped)

    def call(self, inputs):
        # A tensor, not the variable: see `Experts`.
        kernel = ops.convert_to_tensor(self.kernel)
        blocks, in_dim = kernel.shape[:2]
        biases = ops.unstack(ops.reshape(self.bias, (blocks, -1)))
        hs = [
            self.activation(
                ops.add(ops.matmul(inputs, ops.reshape(k, (in_dim, -1))), b)
            )
            for k, b in zip(ops.unstack(kernel), biases, strict=True)
        ]
        h = hs[0] if len(hs) == 1 else ops.concatenate(hs, axis=-1)
        return ops.reshape(h, (-1, self.num_experts, self.units[0]))

    def copy_weights_from(self, experts: Experts):
        """`experts`' block kernels and biases, stacked into one of each."""
        kernel, bias = layer_speed.first_layer(experts)
        self.kernel.assign(kernel)
        self.bias.assign(bias)


class OneKernelMMoE(MMoE):
    """`MMoE` whose experts are `OneKernelExperts`; gates unchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.experts = OneKernelExperts.from_config(self.experts.get_config())

    def copy_weights_from(self, mmoe: MMoE):
        self.experts.copy_weights_from(mmoe.experts)
        for gate, source in zip(self.gates, mmoe.gates, strict=True):
            gate.set_weights(source.get_weights())


def make_layers(num_experts, units, num_tasks, input_dim):
    """blocks, one_kernel and loop layers holding equal weights."""
    blocks, loop = layer_speed.make_layers(
        num_experts, units, num_tasks, input_dim
    )
    one_kernel = OneKernelMMoE(
        num_tasks,
        num_experts=num_experts,
        expert_units=units,
        name="one_kernel",
    )
    one_kernel.build((None, input_dim))
    one_kernel.copy_weights_from(blocks)
    return {"blocks": blocks, "one_kernel": one_kernel, "loop": loop}


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
                    "blocks_speedup": ms["loop"] / ms["blocks"],
                    "one_kernel_speedup": ms["loop"] / ms["one_kernel"],
                }
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


HEADER = (
    f"{'mode':<7}{'batch':>6}{'experts':>8}{'units':>6}{'blocks ms':>10}"
    f"{'one ms':>10}{'loop ms':>10}{'blocks':>8}{'one':>8}  (x vs loop)"
)


def format_row(row) -> str:
    return (
        f"{row['mode']:<7}{row['batch']:>6}{row['num_experts']:>8}"
        f"{row['units']:>6}{row['blocks_ms']:>10.4f}"
        f"{row['one_kernel_ms']:>10.4f}{row['loop_ms']:>10.4f}"
        f"{row['blocks_speedup']:>7.2f}x{row['one_kernel_speedup']:>7.2f}x"
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
            "blocks": "keras_mmoe.MMoE: a weight per first-layer block",
            "one_kernel": "OneKernelMMoE: the same ops, the first layer "
            "one weight",
            "loop": "layer_speed.LoopMMoE: one Dense stack per expert",
        },
        "rows": rows,
        "blocks_slower_than_loop": [
            {k: row[k] for k in ("mode", "batch", "num_experts", "units")}
            for row in rows
            if row["blocks_speedup"] < 1.0
        ],
    }
    timing.write_results(args, RESULTS, result)
    return result


if __name__ == "__main__":
    main()
