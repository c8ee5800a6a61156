import json
import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import synthetic

TINY = synthetic.Config(
    correlations=(0.5,),
    runs=1,
    train_size=256,
    validation_size=64,
    test_size=64,
    batch_size=32,
    stopping="fixed",
    steps=12,
    max_steps=12,
    eval_every=4,
)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 1.0, -0.5])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_task_weights_have_cosine_p_and_norm_c(p, scale):
    rng = np.random.default_rng(3)
    w1, w2 = synthetic.task_weights(p, 100, scale, rng)
    np.testing.assert_allclose(np.linalg.norm(w1), scale, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(w2), scale, atol=1e-9)
    cosine = w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2))
    assert abs(cosine - p) < 1e-6


def test_task_weights_reject_a_correlation_outside_minus_one_one():
    with pytest.raises(ValueError, match="1.5"):
        synthetic.task_weights(1.5, 10, 1.0, np.random.default_rng(0))


def test_labels_follow_the_formula_and_correlate_more_as_p_rises():
    config = synthetic.Config(
        train_size=20_000, validation_size=10, test_size=10
    )
    corr = []
    for p in (0.0, 0.5, 0.9, 1.0):
        # Same seed for every p: only p changes.
        data = synthetic.make_data(p, config, np.random.default_rng(7))
        corr.append(synthetic.label_correlation(data["y_train"]))
    assert abs(corr[0]) < 0.05  # Orthogonal tasks: uncorrelated labels.
    assert corr[0] < corr[1] < corr[2] < corr[3]
    assert corr[3] > 0.99  # Equal tasks up to the N(0, 0.01) noise.

    # Rebuild the labels by hand from the same random draws, in the order
    # make_data draws them: weights, test, validation, training rows.
    rng = np.random.default_rng(7)
    w = synthetic.task_weights(0.9, config.input_dim, config.scale, rng)
    alpha, beta = synthetic.sine_parameters(config)
    for n in (config.test_size, config.validation_size):
        rng.normal(size=(n, config.input_dim + 2))
    # A row: its features, then its two noise values.
    x = rng.normal(size=(config.train_size, config.input_dim + 2))[:, :-2]
    data = synthetic.make_data(0.9, config, np.random.default_rng(7))
    np.testing.assert_allclose(data["x_train"], x, rtol=1e-6)
    z = x @ w.T
    clean = z + sum(np.sin(a * z + b) for a, b in zip(alpha, beta, strict=True))
    residual = data["y_train"] - clean
    assert abs(residual.std() - 0.1) < 0.005  # eps ~ N(0, 0.01).
    assert abs(residual.mean()) < 0.005


def test_fixed_sines_are_shared_by_runs_and_per_run_sines_are_not():
    config = synthetic.Config()
    draws = [
        synthetic.make_data(p, config, synthetic.run_seeds(config, p, r)[0])
        for p, r in ((0.5, 0), (0.5, 1), (0.0, 0))
    ]
    for data in draws[1:]:
        np.testing.assert_array_equal(data["alpha"], draws[0]["alpha"])
        np.testing.assert_array_equal(data["beta"], draws[0]["beta"])
    # Another sine_seed, another draw.
    other = synthetic.sine_parameters(replace(config, sine_seed=1))
    assert not np.allclose(other[0], draws[0]["alpha"])

    per_run = replace(config, sines="per_run", train_size=10)
    a = synthetic.make_data(
        0.5, per_run, synthetic.run_seeds(config, 0.5, 0)[0]
    )
    b = synthetic.make_data(
        0.5, per_run, synthetic.run_seeds(config, 0.5, 1)[0]
    )
    assert not np.allclose(a["alpha"], b["alpha"])
    with pytest.raises(ValueError, match="sines"):
        synthetic.sine_parameters(replace(config, sines="other"))


def test_per_task_sines_are_shared_by_runs_and_differ_between_tasks():
    config = replace(synthetic.Config(), sines="per_task", train_size=2000)
    draws = [
        synthetic.make_data(p, config, synthetic.run_seeds(config, p, r)[0])
        for p, r in ((0.0, 0), (0.0, 1))
    ]
    alpha, beta = draws[0]["alpha"], draws[0]["beta"]
    assert alpha.shape == beta.shape == (synthetic.NUM_TASKS, config.num_sines)
    np.testing.assert_array_equal(draws[1]["alpha"], alpha)
    assert not np.allclose(alpha[0], alpha[1])
    # Each task's label is its own projection through its own sines.
    data = draws[0]
    z = data["x_train"].astype("float64") @ data["w"].T
    for k in range(synthetic.NUM_TASKS):
        clean = z[:, k] + np.sin(alpha[k] * z[:, k, None] + beta[k]).sum(-1)
        residual = data["y_train"][:, k] - clean
        assert abs(residual.std() - 0.1) < 0.01
    # Another configuration, so another checkpoint key.
    assert synthetic.fingerprint(config) != synthetic.fingerprint(
        replace(config, sines="fixed")
    )


def test_test_and_validation_rows_do_not_depend_on_the_training_size():
    small = replace(TINY, train_size=100)
    large = replace(TINY, train_size=300)
    a = synthetic.make_data(0.5, small, np.random.default_rng(1))
    b = synthetic.make_data(0.5, large, np.random.default_rng(1))
    for key in ("x_test", "y_test", "x_val", "y_val"):
        np.testing.assert_array_equal(a[key], b[key])
    # The smaller training set is the start of the larger one.
    np.testing.assert_array_equal(a["x_train"], b["x_train"][:100])
    np.testing.assert_array_equal(a["y_train"], b["y_train"][:100])
    assert not np.array_equal(a["x_test"], a["x_val"])


def test_linear_test_loss_is_the_noise_of_a_linear_target():
    rng = np.random.default_rng(0)
    n, d = 4000, 5
    coef = rng.normal(size=(d, 2))

    def rows(n, noise):
        x = rng.normal(size=(n, d)).astype("float32")
        y = x @ coef + [1.0, -2.0] + noise * rng.normal(size=(n, 2))
        return x, y.astype("float32")

    def loss(noise):
        x_train, y_train = rows(n, noise)
        x_test, y_test = rows(n, noise)
        return synthetic.linear_test_loss(
            {
                "x_train": x_train,
                "y_train": y_train,
                "x_test": x_test,
                "y_test": y_test,
            }
        )

    exact = loss(0.0)
    assert exact["loss"] < 1e-9  # Intercepts (1, -2) included.
    noisy = loss(0.5)
    # Each task's test MSE is the noise variance 0.25 (+ d/n of it).
    np.testing.assert_allclose(noisy["task_losses"], [0.25, 0.25], rtol=0.08)
    assert noisy["loss"] == pytest.approx(sum(noisy["task_losses"]))


def test_run_seeds_accept_negative_correlations_and_differ_by_p_and_run():
    config = synthetic.Config()
    states = {
        (p, r): synthetic.run_seeds(config, p, r)[0].integers(2**31)
        for p in (-0.5, 0.0, 0.5)
        for r in (0, 1)
    }
    assert len(set(states.values())) == len(states)


def test_shared_bottom_is_sized_to_mmoe_and_counts_match_the_models():
    config = synthetic.Config()
    units = synthetic.shared_bottom_units(config)
    counts = {}
    for kind in synthetic.MODELS:
        model, _ = synthetic.build_model(kind, config, seed=0)
        counts[kind] = model.count_params()
        assert counts[kind] == synthetic.parameter_count(kind, config, units)
    # 8 experts of 100 * 16 + 16, 2 gates of 100 * 8 + 8, 2 towers 16-8-1.
    assert counts["mmoe"] == 8 * 1616 + 2 * 808 + 2 * (136 + 9)
    assert counts["omoe"] == counts["mmoe"] - 808
    assert abs(counts["shared_bottom"] / counts["mmoe"] - 1) < 0.01
    # Per task: 100 -> units ReLU, then the task's tower units -> 8 -> 1.
    assert counts["single_task"] == 2 * (
        100 * units + units + units * 8 + 8 + 8 + 1
    )
    # No other width is closer.
    for other in (units - 1, units + 1):
        gap = abs(
            synthetic.parameter_count("shared_bottom", config, other)
            - counts["mmoe"]
        )
        assert gap >= abs(counts["shared_bottom"] - counts["mmoe"])


def test_single_task_networks_share_no_weight():
    config = replace(TINY, input_dim=6)
    model, gates = synthetic.build_model("single_task", config, seed=0)
    assert gates is None
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    before = [np.asarray(o) for o in model(x)]
    # Changing task 2's network leaves task 1's prediction as it was.
    for layer in ("hidden_1", "tower_1", "output_1"):
        kernel = model.get_layer(layer).kernel
        kernel.assign(kernel.numpy() + 1.0)
    after = [np.asarray(o) for o in model(x)]
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.allclose(after[1], before[1])


def test_per_task_stopping_waits_for_every_task():
    val = [[5.0, 5.0], [4.0, 6.0], [4.5, 6.0], [4.5, 6.0]]
    best, seen = [0, 0], []
    for latest in range(2, len(val) + 1):  # one call per evaluation
        best, stop = synthetic.per_task_stopping(val[:latest], best, 2)
        seen.append((best, stop))
    # Task 2 has passed patience 2 after the third evaluation, task 1 (best
    # at index 1) only after the fourth: only then does training stop.
    assert seen == [([1, 0], False), ([1, 0], False), ([1, 0], True)]


def test_single_task_reports_each_task_at_its_own_best_step():
    config = replace(
        TINY,
        stopping="early",
        max_steps=40,
        patience=2,
        models=("single_task",),
    )
    data = synthetic.make_data(0.0, config, np.random.default_rng(0))
    batches = synthetic.batch_order(config, np.random.default_rng(1))
    trainer = synthetic.Trainer("single_task", config)
    trainer.reset(0)
    out = trainer.fit(data, batches)
    assert out["model_version"] == 2
    assert len(out["task_best_steps"]) == synthetic.NUM_TASKS
    assert out["best_step"] == max(out["task_best_steps"])
    for step in out["task_best_steps"]:
        assert step % config.eval_every == 0
        assert step <= out["steps_trained"]
    assert out["final_loss"] == pytest.approx(sum(out["final_task_losses"]))
    # The multi-task models keep one stopping step.
    shared = synthetic.Trainer("shared_bottom", config)
    shared.reset(0)
    assert "task_best_steps" not in shared.fit(data, batches)


def test_single_task_records_of_the_summed_stopping_are_trained_again(tmp_path):
    config = synthetic.Config()
    path = tmp_path / synthetic.CHECKPOINT
    store = synthetic.Checkpoint(path, config)
    base = {"fingerprint": store.fingerprint, "p": 0.0, "run": 0}
    store.append({**base, "model": "single_task"})  # no model_version: 1
    store.append({**base, "model": "mmoe"})
    store.append({**base, "run": 1, "model": "single_task", "model_version": 2})
    again = synthetic.Checkpoint(path, config)
    assert again.get(0.0, 0, "single_task") is None
    assert again.get(0.0, 0, "mmoe") is not None
    assert again.get(0.0, 1, "single_task") is not None


# === Statistics against hand-computed values ===


def test_summary_of_hand_values():
    s = synthetic.summary([1.0, 2.0, 3.0, 10.0])
    # Mean 4; deviations -3, -2, -1, 6: sum of squares 50, std sqrt(50/3).
    assert s == pytest.approx(
        {
            "n": 4,
            "mean": 4.0,
            "std": math.sqrt(50 / 3),
            "standard_error": math.sqrt(50 / 3) / 2,
            "median": 2.5,
            "min": 1.0,
            "max": 10.0,
        }
    )
    assert synthetic.summary([3.0])["standard_error"] == 0.0


def test_paired_difference_of_hand_values():
    mmoe = [1.0, 2.0, 3.0, 4.0]
    other = [2.0, 2.0, 5.0, 3.0]  # Differences 1, 0, 2, -1.
    d = synthetic.paired_difference(other, mmoe)
    # Mean 0.5; deviations .5, -.5, 1.5, -1.5: sum of squares 5, std
    # sqrt(5/3), standard error sqrt(5/3) / 2. MMoE lower in 2 runs (a tie
    # is not lower).
    assert d == pytest.approx(
        {
            "mean": 0.5,
            "standard_error": math.sqrt(5 / 3) / 2,
            "median": 0.5,
            "mmoe_lower": 2,
            "n": 4,
        }
    )


def test_paired_rows_against_mmoe_and_the_single_task_model():
    losses = {
        "mmoe": [1.0, 2.0],
        "shared_bottom": [3.0, 1.0],
        "single_task": [2.0, 2.0],
    }
    rows = synthetic.paired_rows(losses)
    assert rows["mmoe"] == {
        "paired_vs_single_task": synthetic.paired_difference(
            [1.0, 2.0], [2.0, 2.0], lower="single_task_lower"
        )
    }
    # Shared-Bottom - single-task: (1, -1); the single-task model lower once.
    assert rows["shared_bottom"]["paired_vs_single_task"] == pytest.approx(
        {
            "mean": 0.0,
            "standard_error": 1.0,
            "median": 0.0,
            "single_task_lower": 1,
            "n": 2,
        }
    )
    assert rows["shared_bottom"]["paired_vs_mmoe"]["mean"] == 0.5
    assert set(rows["single_task"]) == {"paired_vs_mmoe"}
    # The typical loss pools the multi-task models only.
    assert synthetic.typical_models(synthetic.MODELS) == list(
        synthetic.MULTI_TASK
    )
    assert synthetic.typical_models(("single_task",)) == ["single_task"]


def test_failure_criteria_against_the_linear_fit_and_the_typical_loss():
    linear = [2.0, 2.0, 2.0, 2.0, 4.0]
    losses = [2.0, 2.5, 1.0, 0.5, 1.0]
    f = synthetic.failures(losses, linear, typical=0.5)
    # Not below the linear fit: 2.0 (a tie fails) and 2.5.
    assert f["fails_to_train"]["count"] == 2
    assert f["fails_to_train"]["share"] == pytest.approx(0.4)
    assert f["fails_to_train"]["standard_error"] == pytest.approx(
        math.sqrt(0.4 * 0.6 / 5)
    )
    # Above 2 x 0.5 = 1.0: 2.0 and 2.5 (1.0 itself does not count).
    assert f["far_above_typical"] == pytest.approx(
        {"count": 2, "n": 5, "share": 0.4, "standard_error": 0.2191}, abs=1e-4
    )
    none = synthetic.failures([0.1, 0.2], [1.0, 1.0], typical=0.15)
    assert none["fails_to_train"]["count"] == 0
    assert none["fails_to_train"]["standard_error"] == 0.0
    assert set(f) == set(synthetic.FAILURE_CRITERIA)


def test_early_stopping_update_keeps_the_first_lowest_and_counts_patience():
    val = [5.0, 4.0, 4.0, 4.5, 3.9, 4.0, 4.0]
    best, stops = 0, []
    for i in range(1, len(val)):
        best, stop = synthetic.early_stopping_update(val[: i + 1], best, 2)
        stops.append((best, stop))
    assert stops == [
        (1, False),
        (1, False),  # A tie is no improvement.
        (1, True),  # Two evaluations without a lower loss.
        (4, False),
        (4, False),
        (4, True),
    ]


def test_patience_replay_of_hand_curves():
    curves = [
        [5.0, 4.0, 4.5, 4.5, 3.0],  # Patience 2 stops at 3, keeps 4.0.
        [5.0, 4.0, 3.0, 2.0, 1.0],  # Never stops: keeps the lowest.
    ]
    out = synthetic.patience_replay(curves, (2, 5), eval_every=10)
    assert out["2"] == pytest.approx(
        {
            "median_stop_step": (30 + 40) / 2,
            "median_relative_gap": (4.0 / 3.0 - 1) / 2,
            "max_relative_gap": 4.0 / 3.0 - 1,
            "share_at_lowest": 0.5,
        }
    )
    assert out["5"]["share_at_lowest"] == 1.0
    assert out["5"]["median_stop_step"] == 40


def test_reported_curve_follows_the_best_validation_weights():
    out = {
        "validation_curve": [5.0, 3.0, 4.0, 2.0, 2.5],
        "test_curve": [9.0, 7.0, 6.0, 8.0, 5.0],
        "final_loss": 8.0,
    }
    early = synthetic.Config(stopping="early")
    np.testing.assert_array_equal(
        synthetic.reported_curve(out, early, 7),
        [9.0, 7.0, 7.0, 8.0, 8.0, 8.0, 8.0],
    )
    fixed = synthetic.Config(stopping="fixed")
    out["final_loss"] = 5.0
    np.testing.assert_array_equal(
        synthetic.reported_curve(out, fixed, 5), out["test_curve"]
    )


def test_by_training_length_reads_each_run_at_the_step():
    curves = {
        # Two runs, evaluations every 10 steps from step 0.
        "mmoe": [[9.0, 3.0, 1.0], [9.0, 5.0, 2.0]],
        "omoe": [[9.0, 4.0, 2.0], [9.0, 4.0, 3.0]],
        "shared_bottom": [[9.0, 2.0, 4.0], [9.0, 3.0, 5.0]],
    }
    out = synthetic.by_training_length(curves, [10, 20], eval_every=10)
    assert out["10"]["mmoe"]["final_loss"]["mean"] == 4.0
    # OMoE - MMoE at step 10: (1, -1); at step 20: (1, 1).
    assert out["10"]["omoe"]["paired_vs_mmoe"]["mean"] == 0.0
    assert out["10"]["omoe"]["paired_vs_mmoe"]["mmoe_lower"] == 1
    assert out["20"]["omoe"]["paired_vs_mmoe"] == pytest.approx(
        {
            "mean": 1.0,
            "standard_error": 0.0,
            "median": 1.0,
            "mmoe_lower": 2,
            "n": 2,
        }
    )
    # Means at 10: MMoE 4, OMoE 4, Shared-Bottom 2.5; at 20: 1.5, 2.5, 4.5.
    assert out["10"]["order_mmoe_le_omoe_le_shared_bottom"]["mean"] is False
    assert out["20"]["order_mmoe_le_omoe_le_shared_bottom"] == {
        "mean": True,
        "median": True,
    }


def test_findings_read_the_paper_claims_off_hand_made_numbers():
    def row(losses, mmoe=None):
        out = {
            "final_losses": losses,
            "final_loss": synthetic.summary(losses),
            "failures": synthetic.failures(losses, [1.9] * len(losses), 10.0),
        }
        if mmoe is not None:
            out["paired_vs_mmoe"] = synthetic.paired_difference(losses, mmoe)
        return out

    result = {
        "results": {
            "0.5": {
                "mmoe": row([1.0, 2.0]),
                "omoe": row([1.5, 2.5], [1.0, 2.0]),
                "shared_bottom": row([0.0, 5.0], [1.0, 2.0]),
            },
            "1": {
                "mmoe": row([1.0, 1.0]),
                "omoe": row([0.5, 1.5], [1.0, 1.0]),
                "shared_bottom": row([0.9, 1.0], [1.0, 1.0]),
            },
        },
        "gate_js_divergence": {"0.5": {"mean": 0.2}, "1": {"mean": 0.3}},
    }
    out = synthetic.findings(result)
    assert out["order_mmoe_le_omoe_le_shared_bottom"] == {
        # Means 1.5 <= 2.0 <= 2.5; at p = 1 Shared-Bottom 0.95 < OMoE 1.0.
        "mean": {"0.5": True, "1": False},
        "median": {"0.5": True, "1": False},
    }
    assert out["mmoe_lower_in_fraction_of_runs"]["0.5"] == {
        "omoe": 1.0,
        "shared_bottom": 0.5,
    }
    # Shared-Bottom - MMoE at p = 0.5: (-1, 3): mean 1, std 2 * sqrt(2),
    # standard error 2 * sqrt(2) / sqrt(2) = 2.
    paired = out["paired_difference_over_mmoe"]["0.5"]["shared_bottom"]
    assert paired == pytest.approx({"mean": 1.0, "standard_error": 2.0})
    # Losses >= 1.9 fail: 2.0 (MMoE), 2.5 (OMoE), 5.0 (Shared-Bottom).
    assert out["fails_to_train_share"]["0.5"] == {
        "mmoe": 0.5,
        "omoe": 0.5,
        "shared_bottom": 0.5,
    }
    # Nothing is above 2 x 10.
    assert set(out["far_above_typical_share"]["1"].values()) == {0.0}
    assert out["widest_spread"]["0.5"] == {
        "std": "shared_bottom",
        "range": "shared_bottom",
    }
    assert out["widest_spread"]["1"]["range"] == "omoe"
    assert out["gate_js_divergence_falls_as_p_rises"] is False


def test_parse_sweep_types_and_rejects_unknown_names():
    assert synthetic.parse_sweep("train_size=5000,1e4") == (
        "train_size",
        [5000, 10000],
    )
    assert synthetic.parse_sweep("learning_rate=3e-4,1e-3") == (
        "learning_rate",
        [3e-4, 1e-3],
    )
    assert synthetic.parse_sweep("sines=fixed,per_run")[1] == [
        "fixed",
        "per_run",
    ]
    for bad in ("input_dim=5", "train_size", "train_size="):
        with pytest.raises(ValueError, match="NAME"):
            synthetic.parse_sweep(bad)


# === Training ===


def test_batch_order_sees_every_row_equally_often():
    config = synthetic.Config(
        train_size=10, batch_size=4, stopping="fixed", steps=5
    )
    batches = synthetic.batch_order(config, np.random.default_rng(0))
    assert batches.shape == (5, 4)
    np.testing.assert_array_equal(np.bincount(batches.ravel()), [2] * 10)
    early = replace(config, stopping="early", max_steps=10)
    assert synthetic.batch_order(early, np.random.default_rng(0)).shape == (
        10,
        4,
    )


def test_a_reset_trainer_repeats_a_run_exactly_and_seeds_differ():
    trainer = synthetic.Trainer("mmoe", TINY)
    rng, seed = synthetic.run_seeds(TINY, 0.5, 0)
    data = synthetic.make_data(0.5, TINY, rng)
    batches = synthetic.batch_order(TINY, rng)
    trainer.reset(seed)
    first = trainer.fit(data, batches)
    assert first["steps_trained"] == first["best_step"] == 12
    assert first["final_loss"] == pytest.approx(first["test_curve"][-1])
    # Reset restores the weights and Adam (step count and slots) too.
    trainer.reset(seed)
    np.testing.assert_allclose(
        trainer.task_losses(data["x_test"], data["y_test"]).numpy().sum(),
        first["test_curve"][0],
        rtol=1e-6,
    )
    again = trainer.fit(data, batches)
    np.testing.assert_allclose(again["test_curve"], first["test_curve"], 1e-5)
    assert first["test_curve"][-1] < first["test_curve"][0]  # It learns.
    trainer.reset(seed + 1)
    other = trainer.task_losses(data["x_test"], data["y_test"]).numpy().sum()
    assert abs(other - first["test_curve"][0]) > 1e-4


def test_early_stopping_stops_on_validation_and_restores_the_best_weights():
    # 32 training rows and a large step size: the validation loss turns up.
    config = replace(
        TINY,
        train_size=32,
        stopping="early",
        learning_rate=1e-2,
        max_steps=400,
        eval_every=5,
        patience=3,
    )
    trainer = synthetic.Trainer("shared_bottom", config)
    rng, seed = synthetic.run_seeds(config, 0.5, 0)
    data = synthetic.make_data(0.5, config, rng)
    trainer.reset(seed)
    out = trainer.fit(data, synthetic.batch_order(config, rng))
    val = np.asarray(out["validation_curve"])
    best = out["best_step"] // config.eval_every
    assert best == int(np.argmin(val))  # The first lowest.
    assert out["steps_trained"] < config.max_steps  # Stopped by patience,
    assert out["steps_trained"] == out["best_step"] + 3 * 5  # 3 evals on.
    assert val[-1] > val[best]
    # The weights are those of the best step: their losses are the curves'
    # values there, not the last step's.
    restored_val = trainer.task_losses(data["x_val"], data["y_val"]).numpy()
    np.testing.assert_allclose(restored_val.sum(), val[best], rtol=1e-6)
    assert out["final_validation_loss"] == val[best]
    np.testing.assert_allclose(
        out["final_loss"], out["test_curve"][best], rtol=1e-6
    )
    assert out["final_loss"] != pytest.approx(out["test_curve"][-1])


def test_end_to_end_run_writes_json_and_plots(tmp_path):
    result = synthetic.main(
        [
            "--runs=2",
            "--max-steps=8",
            "--eval-every=4",
            "--patience=1",
            "--train-size=128",
            "--validation-size=32",
            "--test-size=32",
            "--batch-size=32",
            "--correlations",
            "0",
            "1.0",
            f"--output={tmp_path}",
        ]
    )
    saved = json.loads((tmp_path / "synthetic.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert {
        "config",
        "parameter_counts",
        "shared_bottom_units",
        "sine_parameters",
        "steps",
        "results",
        "gate_js_divergence",
        "label_correlation",
        "linear_regression_loss",
        "failure_criteria",
        "typical_loss",
        "findings",
        "timing",
        "wall_seconds",
    } <= saved.keys()
    assert saved["config"]["stopping"] == "early"
    assert len(saved["sine_parameters"]["alpha"]) == 10
    assert saved["steps"] == [0, 4, 8]
    assert set(saved["results"]) == {"0", "1"}
    assert saved["typical_loss_models"] == list(synthetic.MULTI_TASK)
    for p, models in saved["results"].items():
        assert set(models) == set(synthetic.MODELS)
        linear = saved["linear_regression_loss"][p]["runs"]
        pooled = [
            v
            for kind in synthetic.MULTI_TASK
            for v in models[kind]["final_losses"]
        ]
        assert saved["typical_loss"][p] == pytest.approx(np.median(pooled))
        for kind, row in models.items():
            assert row["final_loss"]["n"] == len(row["final_losses"]) == 2
            assert row["final_loss"]["mean"] == pytest.approx(
                np.mean(row["final_losses"])
            )
            np.testing.assert_allclose(
                row["ratio_to_linear"],
                np.divide(row["final_losses"], linear),
            )
            assert set(row["failures"]) == set(synthetic.FAILURE_CRITERIA)
            assert len(row["curve"]["mean"]) == 3
            assert row["curve"]["share_training"][0] == 1.0
            # The curve ends at the reported losses.
            assert row["curve"]["mean"][-1] == pytest.approx(
                row["final_loss"]["mean"]
            )
            assert ("paired_vs_mmoe" in row) == (kind != "mmoe")
            assert ("paired_vs_single_task" in row) == (
                kind in synthetic.MULTI_TASK
            )
    for gates in saved["gate_js_divergence"].values():
        assert len(gates["runs"]) == 2
        assert all(0 <= js <= math.log(2) for js in gates["runs"])
    for name in ("curves", "histograms", "gates"):
        png = tmp_path / f"synthetic_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MMoE" in synthetic.format_table(result)
    # Every model's run is in the checkpoint, one line each.
    lines = (tmp_path / synthetic.CHECKPOINT).read_text().splitlines()
    assert len(lines) == 2 * 2 * len(synthetic.MODELS)
    assert saved["checkpoint"]["records_trained"] == len(lines)


def test_fixed_steps_sweep_writes_its_json_and_plot(tmp_path):
    argv = [
        "--runs=2",
        "--stopping=fixed",
        "--eval-every=4",
        "--train-size=128",
        "--validation-size=32",
        "--test-size=32",
        "--batch-size=32",
        "--correlations",
        "0.5",
        "--models",
        "mmoe",
        "omoe",
        "--sweep",
        "steps=4,8",
        f"--output={tmp_path}",
    ]
    swept = synthetic.main(argv)
    saved = json.loads((tmp_path / "synthetic_sweep_steps.json").read_text())
    assert saved == json.loads(json.dumps(swept))
    assert saved["parameter"] == "steps"
    assert saved["values"] == ["4", "8"]
    for value, result in saved["results"].items():
        assert result["config"]["steps"] == int(value)
        row = result["results"]["0.5"]["omoe"]
        assert row["steps_trained"]["max"] == int(value)
        assert "curve" not in row and "validation_curves" not in row
        assert set(row["patience_replay"]) == {"5", "10", "20", "40"}
        assert "paired_vs_mmoe" in row
        # The test loss at the last step, read per training length too.
        length = result["by_training_length"]["0.5"][value]
        assert length["omoe"]["final_loss"] == row["final_loss"]
    png = tmp_path / "synthetic_sweep_steps.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "OMoE-MMoE" in synthetic.format_sweep_table(swept)
    # Both values' records in one file: a second sweep trains nothing.
    again = synthetic.main(argv)
    for value, result in again["results"].items():
        assert result["checkpoint"]["records_read_back"] == 2 * 2
        assert result["checkpoint"]["records_trained"] == 0
        assert result["results"] == swept["results"][value]["results"]


def test_model_sizes_are_flags(tmp_path):
    result = synthetic.main(
        [
            "--runs=1",
            "--stopping=fixed",
            "--steps=4",
            "--eval-every=4",
            "--train-size=64",
            "--validation-size=16",
            "--test-size=16",
            "--batch-size=16",
            "--correlations",
            "0",
            "--models",
            "mmoe",
            "shared_bottom",
            "--num-experts=3",
            "--expert-units=4",
            "--tower-units=2",
            f"--output={tmp_path}",
        ]
    )
    config = replace(
        synthetic.Config(), num_experts=3, expert_units=4, tower_units=2
    )
    assert result["config"]["num_experts"] == 3
    assert result["parameter_counts"]["mmoe"] == synthetic.parameter_count(
        "mmoe", config
    )
    assert result["shared_bottom_units"] == synthetic.shared_bottom_units(
        config
    )
    with pytest.raises(SystemExit):
        synthetic.main(["--expert-units=0", f"--output={tmp_path}"])


def test_sweeps_that_do_not_fit_the_stopping_mode_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        synthetic.main(["--sweep", "steps=4,8", f"--output={tmp_path}"])
    with pytest.raises(SystemExit):
        synthetic.main(
            [
                "--stopping=fixed",
                "--sweep",
                "patience=1,2",
                f"--output={tmp_path}",
            ]
        )


# === Checkpoints ===


def test_the_fingerprint_ignores_only_which_runs_are_made():
    config = synthetic.Config()
    same = replace(config, runs=3, correlations=(0.5,), models=("omoe",))
    assert synthetic.fingerprint(same) == synthetic.fingerprint(config)
    for change in ({"seed": 1}, {"train_size": 500}, {"patience": 3}):
        other = replace(config, **change)
        assert synthetic.fingerprint(other) != synthetic.fingerprint(config)


def test_runs_recorded_before_task_scales_existed_keep_their_fingerprint():
    # The fingerprint of the default configuration (and so the key of the
    # records already in synthetic_runs.jsonl) did not change when the
    # task_scales field was added; another scale is another key.
    config = synthetic.Config(models=("mmoe", "omoe", "shared_bottom"))
    assert synthetic.fingerprint(config) == "2ed8aa2413d02f12"
    scaled = replace(config, task_scales=(10.0, 1.0))
    assert synthetic.fingerprint(scaled) != synthetic.fingerprint(config)


def test_task_scales_multiply_each_label():
    config = replace(synthetic.Config(), train_size=50)
    scaled = replace(config, task_scales=(10.0, 0.5))
    plain = synthetic.make_data(0.0, config, np.random.default_rng(4))
    big = synthetic.make_data(0.0, scaled, np.random.default_rng(4))
    np.testing.assert_array_equal(big["x_train"], plain["x_train"])
    np.testing.assert_allclose(
        big["y_test"], plain["y_test"] * [10.0, 0.5], rtol=1e-6
    )


def test_task_rows_unscale_and_pair_each_task_with_single_task():
    def outs(losses):
        return [{"final_task_losses": v} for v in losses]

    runs = {
        "mmoe": outs([[100.0, 1.0], [200.0, 3.0]]),
        "single_task": outs([[100.0, 2.0], [100.0, 2.0]]),
    }
    rows = synthetic.task_rows(runs, (10.0, 1.0))
    assert rows["mmoe"]["task_losses"][0]["mean"] == pytest.approx(1.5)
    assert rows["mmoe"]["task_losses"][1]["mean"] == pytest.approx(2.0)
    first, second = rows["mmoe"]["task_paired_vs_single_task"]
    assert first["mean"] == pytest.approx(0.5)  # (0 + 1) / 2, unscaled
    assert first["single_task_lower"] == 1
    assert second["mean"] == pytest.approx(0.0)
    assert "task_paired_vs_single_task" not in rows["single_task"]
    findings = synthetic.findings(
        {
            "results": {
                "0": {
                    kind: {
                        "final_loss": synthetic.summary([1.0, 2.0]),
                        "failures": {
                            n: {"share": 0.0}
                            for n in synthetic.FAILURE_CRITERIA
                        },
                        **row,
                    }
                    for kind, row in rows.items()
                }
            }
        }
    )
    (mark_first, mark_second) = findings["negative_transfer"]["0"]["mmoe"]
    assert mark_first["mean"] == pytest.approx(0.5)
    # One run above and one equal: a mean of 0.5 with an SE of 0.5.
    assert not mark_first["worse_than_single_task"]
    assert not mark_second["worse_than_single_task"]


RESUMABLE = replace(
    TINY,
    correlations=(0.0, 0.5),
    runs=2,
    train_size=128,
    validation_size=32,
    test_size=32,
    stopping="early",
    max_steps=8,
    patience=1,
    models=("mmoe", "single_task"),
)


def comparable(result: dict) -> dict:
    """The result without what depends on the process (times, checkpoint
    counts), as its JSON reads."""
    skip = ("timing", "wall_seconds", "checkpoint")
    return json.loads(
        json.dumps({k: v for k, v in result.items() if k not in skip})
    )


def test_early_stopping_reports_each_step_cap_from_the_reported_curves(
    tmp_path,
):
    config = replace(RESUMABLE, max_steps=12, eval_every=2, patience=2)
    path = tmp_path / synthetic.CHECKPOINT
    result = synthetic.run(config, log=lambda m: None, checkpoint=path)
    for p, caps in result["by_training_length"].items():
        assert list(caps) == ["12"]  # TRAINING_LENGTHS are all above 12.
        for kind in config.models:
            # At the cap itself: what the runs reported.
            assert caps["12"][kind]["final_loss"] == pytest.approx(
                result["results"][p][kind]["final_loss"]
            )
    # A cap below the budget reads the lowest-validation weights up to it.
    store = synthetic.Checkpoint(path, config)
    outs = [store.get(0.5, r, "mmoe") for r in range(config.runs)]
    curves = [synthetic.reported_curve(o, config, 7) for o in outs]
    caps = synthetic.by_training_length(
        {"mmoe": curves}, [4, 12], config.eval_every
    )
    assert caps["4"]["mmoe"]["final_loss"]["mean"] == pytest.approx(
        np.mean([c[2] for c in curves])
    )
    assert caps["12"]["mmoe"]["final_loss"]["mean"] == pytest.approx(
        np.mean([o["final_loss"] for o in outs])
    )


def test_report_only_reports_the_recorded_runs_and_trains_none(tmp_path):
    args = ["--runs=3", "--correlations", "0", "0.5", "--models", "mmoe"]
    args += ["--train-size=64", "--validation-size=16", "--test-size=16"]
    args += ["--stopping=fixed", "--steps=4", "--eval-every=2"]
    args += [f"--output={tmp_path}"]
    with pytest.raises(SystemExit) as exit_:
        synthetic.main([*args, "--report-only"])  # Nothing recorded yet.
    assert exit_.value.code == 2
    whole = synthetic.main(args)
    path = tmp_path / synthetic.CHECKPOINT
    lines = path.read_text().splitlines()
    # Keep p = 0's three runs and p = 0.5's first and third: run 1 of
    # p = 0.5 is missing, so p = 0.5 reports run 0 only.
    path.write_text("\n".join([*lines[:4], lines[5]]) + "\n")
    before = path.read_text()
    partial = synthetic.main([*args, "--report-only"])
    assert path.read_text() == before  # Nothing trained.
    assert partial["checkpoint"]["records_trained"] == 0
    rows = {p: r["mmoe"]["final_loss"] for p, r in partial["results"].items()}
    assert rows["0"] == whole["results"]["0"]["mmoe"]["final_loss"]
    assert rows["0.5"]["n"] == 1
    assert (
        rows["0.5"]["mean"]
        == whole["results"]["0.5"]["mmoe"]["final_losses"][0]
    )
    assert (tmp_path / "synthetic_histograms.png").exists()
    # The failure counts are out of the runs reported.
    failures = partial["results"]["0.5"]["mmoe"]["failures"]
    assert failures["far_above_typical"]["n"] == 1


def test_report_only_reports_each_p_with_the_models_recorded_there(tmp_path):
    args = ["--runs=2", "--train-size=64", "--validation-size=16"]
    args += ["--test-size=16", "--stopping=fixed", "--steps=4"]
    args += ["--eval-every=2", f"--output={tmp_path}"]
    shared = synthetic.main(
        [*args, "--correlations", "0", "0.5", "--models", "mmoe"]
        + ["shared_bottom"]
    )
    single = synthetic.main(
        [*args, "--correlations", "0", "--models", "single_task"]
    )
    both = ["--models", "mmoe", "shared_bottom", "single_task"]
    report = synthetic.main(
        [*args, "--correlations", "0", "0.5", *both, "--report-only"]
    )
    assert report["checkpoint"]["records_trained"] == 0
    assert list(report["results"]["0"]) == [
        "mmoe",
        "shared_bottom",
        "single_task",
    ]
    assert list(report["results"]["0.5"]) == ["mmoe", "shared_bottom"]
    assert (
        report["results"]["0"]["single_task"]["final_loss"]
        == single["results"]["0"]["single_task"]["final_loss"]
    )
    assert (
        report["results"]["0.5"]["mmoe"]["final_loss"]
        == shared["results"]["0.5"]["mmoe"]["final_loss"]
    )
    # MMoE's run-by-run difference to single-task, where both ran.
    difference = np.subtract(
        single["results"]["0"]["single_task"]["final_losses"],
        shared["results"]["0"]["mmoe"]["final_losses"],
    )
    paired = report["results"]["0"]["single_task"]["paired_vs_mmoe"]
    assert paired["mean"] == pytest.approx(difference.mean())
    assert report["timing"]["seconds_per_model"]["single_task"] > 0
    for name in ("synthetic_curves.png", "synthetic_histograms.png"):
        assert (tmp_path / name).stat().st_size > 0


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    config = RESUMABLE
    whole = synthetic.run(config, log=lambda message: None)
    path = tmp_path / synthetic.CHECKPOINT
    finished = []

    def kill_after_two_runs(message):
        # The log line of a finished (p, run): the second one, p = 0 run 2.
        finished.extend(message.split()[:1] if " run " in message else [])
        if len(finished) == 2:
            raise Killed

    with pytest.raises(Killed):
        synthetic.run(config, log=kill_after_two_runs, checkpoint=path)
    killed = path.read_text().splitlines()
    assert len(killed) == 2 * 2  # Two runs of two models.
    # Keep 3 records (run 2 at p = 0 half done), then a line cut short by
    # the kill; a record of another configuration stays and is not used.
    other = json.loads(killed[0])
    other.update(fingerprint="0" * 16, final_loss=123.0)
    kept = [json.dumps(other), *killed[:3]]
    path.write_text("\n".join(kept) + "\n" + killed[3][:40])

    resumed = synthetic.run(config, log=lambda m: None, checkpoint=path)
    assert comparable(resumed) == comparable(whole)
    assert resumed["checkpoint"]["records_read_back"] == 3
    assert resumed["checkpoint"]["records_trained"] == 2 * 2 * 2 - 3
    lines = path.read_text().splitlines()
    # The cut line ended where it was cut; the records follow it.
    assert lines[:5] == [*kept, killed[3][:40]]
    assert len(lines) == 5 + 2 * 2 * 2 - 3

    # Everything recorded: nothing trains, the same result.
    again = synthetic.run(config, log=lambda m: None, checkpoint=path)
    assert again["checkpoint"]["records_trained"] == 0
    assert comparable(again) == comparable(whole)

    # One model and a third run: only run 3 trains, the first two are
    # those of the run of both models.
    more = synthetic.run(
        replace(config, runs=3, models=("single_task",)),
        log=lambda m: None,
        checkpoint=path,
    )
    assert more["checkpoint"]["records_read_back"] == 2 * 2
    assert more["checkpoint"]["records_trained"] == 2
    for p, models in more["results"].items():
        assert (
            models["single_task"]["final_losses"][:2]
            == whole["results"][p]["single_task"]["final_losses"]
        )
