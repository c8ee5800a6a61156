import json
import math

import numpy as np
import pytest

from benchmarks import synthetic

TINY = synthetic.Config(
    correlations=(0.5,),
    runs=1,
    train_size=256,
    test_size=64,
    batch_size=32,
    steps=12,
    eval_every=4,
)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 1.0])
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
    config = synthetic.Config(train_size=20_000, test_size=10)
    corr = []
    for p in (0.5, 0.9, 1.0):
        # Same seed for every p: only p changes.
        data = synthetic.make_data(p, config, np.random.default_rng(7))
        corr.append(synthetic.label_correlation(data["y_train"]))
    assert corr[0] < corr[1] < corr[2]
    assert corr[2] > 0.99  # Equal tasks up to the N(0, 0.01) noise.

    # Rebuild the labels by hand from the same random draws.
    rng = np.random.default_rng(7)
    w = synthetic.task_weights(0.9, config.input_dim, config.scale, rng)
    alpha, beta = rng.normal(size=10), rng.normal(size=10)
    x = rng.normal(size=(config.train_size, config.input_dim))
    data = synthetic.make_data(0.9, config, np.random.default_rng(7))
    z = x @ w.T
    clean = z + sum(np.sin(a * z + b) for a, b in zip(alpha, beta, strict=True))
    residual = data["y_train"] - clean
    assert abs(residual.std() - 0.1) < 0.005  # eps ~ N(0, 0.01).
    assert abs(residual.mean()) < 0.005


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
    # No other width is closer.
    for other in (units - 1, units + 1):
        gap = abs(
            synthetic.parameter_count("shared_bottom", config, other)
            - counts["mmoe"]
        )
        assert gap >= abs(counts["shared_bottom"] - counts["mmoe"])


def test_findings_read_the_paper_claims_off_hand_made_numbers():
    def row(losses):
        return {
            "final_losses": losses,
            "final_loss": {
                **synthetic.summary(losses),
                "range": max(losses) - min(losses),
            },
        }

    result = {
        "results": {
            "0.5": {
                "mmoe": row([1.0, 2.0]),
                "omoe": row([1.5, 2.5]),
                "shared_bottom": row([0.0, 5.0]),
            },
            "1": {
                "mmoe": row([1.0, 1.0]),
                "omoe": row([0.5, 1.5]),
                "shared_bottom": row([0.9, 1.0]),
            },
        },
        "gate_js_divergence": {"0.5": {"mean": 0.2}, "1": {"mean": 0.3}},
    }
    out = synthetic.findings(result)
    assert out["order_mmoe_le_omoe_le_shared_bottom"] == {
        "0.5": True,  # Means 1.5 <= 2.0 <= 2.5.
        "1": False,  # Shared-Bottom 0.95 < OMoE 1.0.
    }
    assert out["mmoe_lower_in_fraction_of_runs"]["0.5"] == {
        "omoe": 1.0,
        "shared_bottom": 0.5,
    }
    # Shared-Bottom - MMoE at p = 0.5: (-1, 3): mean 1, std 2 * sqrt(2),
    # standard error 2 * sqrt(2) / sqrt(2) = 2.
    paired = out["paired_difference_over_mmoe"]["0.5"]["shared_bottom"]
    assert paired == pytest.approx({"mean": 1.0, "standard_error": 2.0})
    assert out["widest_spread"]["0.5"] == {
        "std": "shared_bottom",
        "range": "shared_bottom",
    }
    assert out["widest_spread"]["1"]["range"] == "omoe"
    assert out["gate_js_divergence_falls_as_p_rises"] is False


def test_batch_order_sees_every_row_equally_often():
    config = synthetic.Config(train_size=10, batch_size=4, steps=5)
    batches = synthetic.batch_order(config, np.random.default_rng(0))
    assert batches.shape == (5, 4)
    np.testing.assert_array_equal(np.bincount(batches.ravel()), [2] * 10)


def test_a_reset_trainer_repeats_a_run_exactly_and_seeds_differ():
    trainer = synthetic.Trainer("mmoe", TINY)
    rng, seed = synthetic.run_seeds(TINY, 0.5, 0)
    data = synthetic.make_data(0.5, TINY, rng)
    batches = synthetic.batch_order(TINY, rng)
    trainer.reset(seed)
    first = trainer.fit(data, batches)["curve"]
    # Reset restores the weights and Adam (step count and slots) too.
    trainer.reset(seed)
    np.testing.assert_allclose(
        trainer.task_losses(data["x_test"], data["y_test"]).numpy().sum(),
        first[0],
        rtol=1e-6,
    )
    again = trainer.fit(data, batches)["curve"]
    np.testing.assert_allclose(again, first, rtol=1e-5)
    assert first[-1] < first[0]  # It learns.
    trainer.reset(seed + 1)
    other = trainer.task_losses(data["x_test"], data["y_test"]).numpy().sum()
    assert abs(other - first[0]) > 1e-4


def test_end_to_end_run_writes_json_and_plots(tmp_path):
    result = synthetic.main(
        [
            "--runs=2",
            "--steps=8",
            "--eval-every=4",
            "--train-size=128",
            "--test-size=32",
            "--batch-size=32",
            "--correlations",
            "0.5",
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
        "steps",
        "results",
        "gate_js_divergence",
        "label_correlation",
        "findings",
        "wall_seconds",
    } <= saved.keys()
    assert saved["steps"] == [0, 4, 8]
    assert set(saved["results"]) == {"0.5", "1"}
    for models in saved["results"].values():
        assert set(models) == set(synthetic.MODELS)
        for row in models.values():
            assert set(row["final_loss"]) >= {
                "mean",
                "std",
                "median",
                "min",
                "max",
            }
            assert len(row["final_losses"]) == 2
            assert len(row["mean_curve"]) == 3
            assert row["final_loss"]["mean"] == pytest.approx(
                np.mean(row["final_losses"])
            )
    for gates in saved["gate_js_divergence"].values():
        assert len(gates["runs"]) == 2
        assert all(0 <= js <= math.log(2) for js in gates["runs"])
    for name in ("curves", "histograms", "gates"):
        png = tmp_path / f"synthetic_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
