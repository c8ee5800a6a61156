import numpy as np
import pytest

from benchmarks import task_stopping as ts


class _Model:
    """Weights that name the epoch they were taken at."""

    def __init__(self):
        self.epoch = 0
        self.stop_training = False

    def get_weights(self):
        return [np.array(self.epoch)]


def _run(callback, logs):
    model = _Model()
    callback.set_model(model)
    for epoch, values in enumerate(logs):
        model.epoch = epoch
        callback.on_epoch_end(epoch, values)
        if model.stop_training:
            return epoch
    return None


def test_best_epochs_keeps_each_monitors_weights_and_waits_for_all():
    callback = ts.BestEpochs(["val_loss", "val_a_loss"], patience=2)
    logs = [
        {"val_loss": 3.0, "val_a_loss": 2.0},
        {"val_loss": 2.0, "val_a_loss": 2.0},  # a: equal is no improvement
        {"val_loss": 2.5, "val_a_loss": 1.0},
        {"val_loss": 2.1, "val_a_loss": 1.5},  # sum stalled for 2 epochs
        {"val_loss": 2.2, "val_a_loss": 1.2},  # a too: stop
        {"val_loss": 0.1, "val_a_loss": 0.1},
    ]
    assert _run(callback, logs) == 4
    assert callback.best_epoch == {"val_loss": 1, "val_a_loss": 2}
    assert int(callback.weights["val_loss"][0]) == 1
    assert int(callback.weights["val_a_loss"][0]) == 2


def test_summary_pairs_each_selection_with_single_task_and_each_other():
    def record(body, seed, **accuracy):
        return {
            "tasks": {
                t: {s: {"accuracy": a[i]} for i, s in enumerate(ts.SELECTIONS)}
                for t, a in accuracy.items()
            }
        }

    records = {
        ("mmoe", 0): record(
            "mmoe", 0, rating=(0.6, 0.6), department=(0.80, 0.84)
        ),
        ("mmoe", 1): record(
            "mmoe", 1, rating=(0.7, 0.6), department=(0.82, 0.84)
        ),
        (ts.SINGLE, 0): record(
            ts.SINGLE, 0, rating=(0.5, 0.5), department=(0.83, 0.83)
        ),
        (ts.SINGLE, 1): record(
            ts.SINGLE, 1, rating=(0.6, 0.6), department=(0.85, 0.85)
        ),
    }
    summary = ts.summarize(records, ["mmoe", ts.SINGLE], [0, 1, 2])
    department = summary["mmoe"]["department"]
    assert department["summed"]["mean"] == pytest.approx(0.81)
    assert department["summed"]["minus_single_task"]["mean"] == (
        pytest.approx(-0.03)
    )
    assert department["per_task"]["minus_single_task"]["mean"] == (
        pytest.approx(0.0)
    )
    assert department["per_task_minus_summed"]["mean"] == pytest.approx(0.03)
    assert department["per_task_minus_summed"]["n"] == 2
    rating = summary["mmoe"]["rating"]
    assert rating["per_task_minus_summed"]["mean"] == pytest.approx(-0.05)
    table = ts.format_table(summary).splitlines()
    assert table[2].startswith("| rating | MMoE | 0.6500 ± 0.0500 (2) |")
    assert len(table) == 2 + 2 * 2


def test_quick_run_scores_both_selections_and_resumes(tmp_path):
    small = ["--max-tokens", "300", "--sequence-length", "16"]
    small += ["--embedding-dim", "8", "--wide-buckets", "1000"]
    argv = ["--quick", "--bodies", "mmoe", "--seeds", "0"]
    argv += ["--output", str(tmp_path), *small]
    result = ts.main(argv)
    assert result["bodies"] == ["mmoe", ts.SINGLE]
    records = {r["body"]: r for r in result["records"]}
    assert records[ts.SINGLE]["epochs"] == [2, 2]  # One model per task.
    for body, record in records.items():
        assert set(record["tasks"]) == set(ts.TASKS)
        for found in record["tasks"].values():
            assert set(found) == set(ts.SELECTIONS)
            for selection in found.values():
                assert 0 <= selection["accuracy"] <= 1
                assert selection["best_epoch"] in (0, 1)
            if body == ts.SINGLE:  # One task: both selections are one.
                assert found["summed"] == found["per_task"]
    # Read back: a rerun trains nothing and reports the same.
    again = ts.main(argv)
    assert again["records"] == result["records"]
    assert (tmp_path / "task_stopping_quick_runs.jsonl").exists()


@pytest.mark.parametrize(
    "thin",
    [["rating", "1.0"], ["rating", "0"], ["color", "0.1"], ["rating", "x"]],
)
def test_thin_rejects_a_bad_task_or_fraction_before_loading(thin, capsys):
    with pytest.raises(SystemExit) as stop:
        ts.main(["--thin", *thin, "--output", "/nonexistent/never"])
    assert stop.value.code == 2
    assert "--thin expects a task of rating, department" in (
        capsys.readouterr().err
    )


def test_thin_trains_on_the_label_scarcity_draw(tmp_path, monkeypatch):
    seen = []
    train = ts.reviews_keras.train

    def spy(args, texts, labels, classes, **kwargs):
        seen.append({s: (labels[s]["department"] >= 0).sum() for s in labels})
        return train(args, texts, labels, classes, **kwargs)

    monkeypatch.setattr(ts.reviews_keras, "train", spy)
    small = ["--max-tokens", "300", "--sequence-length", "16"]
    small += ["--embedding-dim", "8", "--wide-buckets", "1000"]
    argv = ["--quick", "--bodies", "mmoe", "--seeds", "0"]
    argv += ["--thin", "department", "0.5", "--output", str(tmp_path), *small]
    result = ts.main(argv)
    full = ts.reviews_multitask.head(*ts.reviews_data.load()[:2], 300)[1]
    drawn = ts.label_scarcity.draw(full, "department", 0.5, 0)
    expected = {s: (drawn[s]["department"] >= 0).sum() for s in drawn}
    assert expected["train"] < (full["train"]["department"] >= 0).sum()
    assert expected["test"] == (full["test"]["department"] >= 0).sum()
    assert seen and all(counts == expected for counts in seen)
    assert result["training"]["thin"] == ["department", 0.5]
    assert (tmp_path / "task_stopping_department_50pct_quick.json").exists()
    calls = len(seen)
    assert ts.main(argv)["records"] == result["records"]  # Read back.
    assert len(seen) == calls
