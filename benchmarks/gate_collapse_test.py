import numpy as np
import pytest

from benchmarks import gate_collapse


def _stats(weights_by_task):
    return {
        "tasks": {
            task: {
                "mean_weights": w,
                "effective_experts": float(
                    np.exp(-sum(p * np.log(p) for p in w if p > 0))
                ),
                "mean_max_weight": max(w),
            }
            for task, w in weights_by_task.items()
        }
    }


def test_gate_summary_marks_collapsed_gates_and_a_whole_collapse():
    one = [0.97, 0.01, 0.01, 0.01]
    spread = [0.25, 0.25, 0.25, 0.25]
    summary = gate_collapse.gate_summary(_stats({"a": one, "b": spread}))
    assert summary["tasks"]["a"]["collapsed"]
    assert not summary["tasks"]["b"]["collapsed"]
    assert summary["tasks"]["b"]["effective_experts"] == pytest.approx(4.0)
    assert not summary["collapsed_entirely"]
    both = gate_collapse.gate_summary(_stats({"a": one, "b": one}))
    assert both["collapsed_entirely"]
    # Both collapsed, but onto different experts: not one expert for all.
    other = [0.01, 0.97, 0.01, 0.01]
    apart = gate_collapse.gate_summary(_stats({"a": one, "b": other}))
    assert not apart["collapsed_entirely"]


def test_accuracy_counts_labelled_rows_only():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert gate_collapse.accuracy(np.array([0, 0, -1]), probabilities) == 0.5


def test_main_trains_each_setting_and_reads_records_back(toy_suite, tmp_path):
    argv = [
        "--dataset=toy",
        f"--suite={toy_suite}",
        "--seeds",
        "0",
        "--settings",
        "default",
        "both",
        "--epochs=1",
        "--embedding-dim=8",
        "--max-tokens=50",
        "--sequence-length=8",
        "--wide-buckets=0",
        "--verbose=0",
        f"--output={tmp_path / 'out'}",
    ]
    result = gate_collapse.main(argv)
    assert set(result["settings"]) == {"default", "both"}
    for row in result["settings"].values():
        assert row["task_gates"] == 2 and row["runs"] == 1
        for task in ("coarse", "fine"):
            experts = row["tasks"][task]["effective_experts"]["mean"]
            assert 1.0 <= experts <= 8.0
            accuracy = row["tasks"][task]["test_accuracy"]["mean"]
            assert 0.0 <= accuracy <= 1.0
    lines = (tmp_path / "out" / gate_collapse.CHECKPOINT).read_text()
    assert len(lines.splitlines()) == 2
    # A rerun trains nothing: every record is read back.
    again = gate_collapse.main(argv)
    assert again["records"] == result["records"]
    assert (
        len(
            (tmp_path / "out" / gate_collapse.CHECKPOINT)
            .read_text()
            .splitlines()
        )
        == 2
    )


def test_an_unknown_data_set_exits_2(toy_suite, capsys):
    with pytest.raises(SystemExit) as exit:
        gate_collapse.main(["--dataset=nope", f"--suite={toy_suite}"])
    assert exit.value.code == 2
    assert "not a prepared suite data set" in capsys.readouterr().err
