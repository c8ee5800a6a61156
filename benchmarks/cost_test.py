import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# === Helpers ===


def test_examples_per_second_counts_each_example_once():
    # One 3-task model: 1000 examples in 2 s.
    assert cost.examples_per_second(1000, [2.0]) == 500
    # Three models, one after another, each on the same 1000 examples.
    assert cost.examples_per_second(1000, [1.0, 2.0, 2.0]) == 200


def test_linear_fit_by_hand():
    fit = cost.linear_fit([1, 2, 4], [3, 5, 9])  # y = 2x + 1
    assert fit["slope"] == pytest.approx(2)
    assert fit["intercept"] == pytest.approx(1)


def test_quartiles_in_ms():
    assert cost.quartiles_ms([0.001, 0.002, 0.003, 0.004, 0.005]) == (
        pytest.approx([1.5, 4.5])
    )
    assert cost.quartiles_ms([0.002]) == [2.0, 2.0]


def test_time_blocks_calibrates_alternates_and_takes_medians():
    calls = []

    def block(name, per_step):
        def fn(steps):
            calls.append((name, steps))
            return per_step

        return fn

    medians, samples, steps = cost.time_blocks(
        [block("a", 0.01), block("b", 0.001)], block_seconds=0.04, repeats=3
    )
    # a: one step already lasts block/4, so 0.04 / 0.01 = 4 steps. b: 1 and
    # 4 steps are too short, 16 steps last 0.016 s: 16 * 0.04 / 0.016 = 40.
    assert steps == [4, 40]
    assert medians == [0.01, 0.001]
    assert samples == [[0.01] * 3, [0.001] * 3]
    timed = calls[-6:]
    assert timed == [("a", 4), ("b", 40)] * 3


def test_summed_cross_entropy_by_hand():
    half = tf.fill((4, 1), 0.5)
    labels = [tf.ones((4, 1)), tf.zeros((4, 1))]
    loss = cost.summed_cross_entropy([half, half], labels)
    assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-5)


def _tiny_model():
    inputs = keras.Input((3,))
    outputs = [
        keras.layers.Dense(1, activation="sigmoid")(inputs) for _ in range(2)
    ]
    return keras.Model(inputs, outputs)


def _tiny_batch():
    x = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    return x, [tf.ones((4, 1)), tf.zeros((4, 1))]


def test_graph_steps_is_one_sgd_step_of_the_summed_loss():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    x, labels = _tiny_batch()
    with tf.GradientTape() as tape:
        loss = cost.summed_cross_entropy(model(x), labels)
    grads = tape.gradient(loss, model.trainable_variables)
    expected = [
        v.numpy() - 0.1 * g.numpy()
        for v, g in zip(model.trainable_variables, grads, strict=True)
    ]
    seconds = cost.graph_steps(model, x, labels, learning_rate=0.1)(1)
    assert seconds > 0
    for v, e in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_fit_steps_times_the_steps_after_the_first():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    fn = cost.fit_steps(model, keras.callbacks.Callback, x, labels)
    assert fn(3) > 0
    # One more batch than timed: the first one's end starts the clock.
    assert int(model.optimizer.iterations) == 4


def test_train_on_batch_steps_runs_one_call_per_step():
    model = _tiny_model()
    model.compile("adam", "binary_crossentropy")
    x, labels = _tiny_batch()
    assert cost.train_on_batch_steps(model, x, labels)(3) > 0
    assert int(model.optimizer.iterations) == 3


def test_keras_mmoe_model_parameters_by_hand():
    model = cost.keras_mmoe_model(cost.Config())
    experts = 8 * (256 * 64 + 64)
    gates = 3 * (256 * 8 + 8)  # DeepCTR's gates have no bias: 3 * 8 fewer.
    towers = 3 * (64 * 64 + 64 + 64 + 1)
    assert model.count_params() == experts + gates + towers


def test_synthetic_text_is_padded_in_range_and_repeatable():
    config = cost.QUICK
    ids, labels = cost.synthetic_text(config)
    length = config.sequence_length
    assert ids.shape == (config.text_examples, length)
    assert ids.min() >= 0 and ids.max() < config.vocabulary_size
    lengths = (ids > 0).sum(axis=1)
    assert lengths.min() >= length // 8 and lengths.max() <= length
    # Padding only at the end.
    for row, n in zip(ids, lengths, strict=True):
        assert (row[:n] > 0).all() and (row[n:] == 0).all()
    for name, classes in config.text_tasks:
        assert labels[name].min() >= 0 and labels[name].max() < classes
    again, _ = cost.synthetic_text(config)
    np.testing.assert_array_equal(again, ids)


def test_scaling_points_cover_both_sweeps_once():
    points = cost.scaling_points(cost.Config())
    assert len(points) == 6 + 4
    assert (32, 3) in points and (8, 8) in points
    # (8 experts, 3 tasks) in both sweeps: timed once.
    shared = cost.scaling_points(cost.Config(scaling_tasks=(1, 3)))
    assert len(shared) == 6 + 2 - 1
    assert len(set(shared)) == len(shared)


# === The quick run ===
# One test (not a module fixture): under pytest-xdist every worker would
# run the fixture again.


def _positive(value):
    return math.isfinite(value) and value > 0


def test_quick_run(tmp_path):
    cost.main(["--quick", "--output", str(tmp_path)])
    result = json.loads((tmp_path / "cost.json").read_text())
    _check_files_and_machine(tmp_path, result)
    _check_deepctr(result["deepctr"])
    _check_multitask_vs_single(result["multitask_vs_single"])
    _check_scaling(result["scaling"])


def _check_files_and_machine(out, result):
    assert sorted(p.name for p in out.iterdir()) == [
        "cost.json",
        "cost_scaling.png",
    ]  # No temporary files left.
    assert (out / "cost_scaling.png").read_bytes()[:8] == PNG_MAGIC
    assert result["command"].startswith("python -m benchmarks.cost --quick")
    assert result["machine"]["cpu_count"] >= 1
    assert result["machine"]["keras"].startswith("3.")
    for part in cost.PARTS:
        assert _positive(result[part]["wall_seconds"])


def _check_deepctr(deepctr):
    if cost.missing_bench_packages():
        assert "not installed" in deepctr["skipped"]
        return
    quick = cost.QUICK
    assert len(deepctr["rows"]) == (
        len(quick.deepctr_batches) * len(quick.deepctr_modes)
    )
    for row in deepctr["rows"]:
        assert _positive(row["deepctr_ms"]) and _positive(row["keras_mmoe_ms"])
        assert row["deepctr_over_keras_mmoe"] == pytest.approx(
            row["deepctr_ms"] / row["keras_mmoe_ms"]
        )
    # The same network but for the gate biases.
    params = deepctr["parameters"]
    assert params["keras_mmoe"] - params["deepctr"] == (
        quick.num_tasks * quick.num_experts
    )
    assert deepctr["versions"]["tf_keras"].startswith("2.")
    assert deepctr["versions"]["keras"].startswith("3.")


def _check_multitask_vs_single(part):
    names = [name for name, _ in cost.QUICK.text_tasks]
    models = part["models"]
    assert set(models) == {"multitask"} | {f"single_{n}" for n in names}
    for model in models.values():
        assert _positive(model["seconds_per_epoch"])
        assert model["peak_rss_mb"] >= model["baseline_rss_mb"] > 0
    summary = part["summary"]
    n = cost.QUICK.text_examples
    assert summary["multitask_examples_per_second"] == pytest.approx(
        n / models["multitask"]["seconds_per_epoch"]
    )
    assert summary["three_single_examples_per_second"] == pytest.approx(
        n / sum(models[f"single_{t}"]["seconds_per_epoch"] for t in names)
    )
    assert _positive(summary["multitask_speedup"])
    assert len(part["rounds"]) == cost.QUICK.text_rounds


def _check_scaling(scaling):
    quick = cost.QUICK
    assert len(scaling["rows"]) == (
        len(cost.scaling_points(quick)) * len(quick.scaling_modes)
    )
    for row in scaling["rows"]:
        assert _positive(row["ms"]) and _positive(row["gflops"])
    for fits in scaling["linear_fits"].values():
        for fit in fits.values():
            assert math.isfinite(fit["slope"])


# === Processes ===


def _allocate_mb(mb):
    before = cost.peak_rss_mb()
    block = np.ones(mb * 2**20 // 8)  # Touched, so resident.
    return before, cost.peak_rss_mb(), float(block.sum())


def _fail():
    raise ValueError("no such thing")


def test_forked_process_has_its_own_peak_memory():
    before, after, _ = cost.run_forked(_allocate_mb, 100)
    assert after - before >= 90


def test_forked_error_is_raised_in_the_parent():
    with pytest.raises(RuntimeError, match="no such thing"):
        cost.run_forked(_fail)


def test_deepctr_part_skips_when_not_installed(monkeypatch, capsys):
    monkeypatch.setattr(
        cost, "BENCH_PACKAGES", ("deepctr", "no_such_package_xyz")
    )
    result = cost.run_deepctr(cost.QUICK)
    assert "no_such_package_xyz" in result["skipped"]
    assert "skipped" in capsys.readouterr().out


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit):
        cost.main(["--quick", "no_such_part"])
