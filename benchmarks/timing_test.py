import argparse
import itertools
import json
import platform

import pytest

from benchmarks import timing


def _block(name, per_step, calls):
    """A block that records its calls and takes `per_step` a step."""

    def fn(steps):
        calls.append((name, steps))
        return per_step

    return fn


def test_clocked_gives_seconds_per_step():
    ran = []
    ticks = itertools.count(0.0, 0.5)  # Each reading 0.5 s later.
    fn = timing.clocked(ran.append, clock=lambda: next(ticks))
    assert fn(5) == pytest.approx(0.5 / 5)
    assert ran == [5]


def test_calibrate_warms_up_then_sizes_the_slowest_block():
    calls = []
    fns = [_block("a", 0.001, calls), _block("b", 0.002, calls)]
    # b is slower: 1 and 4 steps are under block/4 = 0.01 s, 16 steps
    # last 0.032 s, so 16 * 0.04 / 0.032 = 20 steps.
    assert timing.calibrate(fns, block_seconds=0.04) == 20
    assert calls[:2] == [("a", 2), ("b", 2)]
    # A block longer than wanted still runs one step.
    assert timing.calibrate([_block("c", 10.0, [])], 0.04) == 1


def test_in_turns_alternates_and_takes_medians():
    calls = []
    fns = [_block("a", 0.01, calls), _block("b", 0.001, calls)]
    medians, samples = timing.in_turns(fns, 3, repeats=2)
    assert calls == [("a", 3), ("b", 3)] * 2
    assert medians == [0.01, 0.001]
    assert samples == [[0.01] * 2, [0.001] * 2]
    calls.clear()
    timing.in_turns(fns, [4, 40], repeats=1)
    assert calls == [("a", 4), ("b", 40)]


def test_time_blocks_gives_each_block_its_own_steps():
    calls = []
    medians, samples, steps = timing.time_blocks(
        [_block("a", 0.01, calls), _block("b", 0.001, calls)],
        block_seconds=0.04,
        repeats=3,
    )
    # a: one step already lasts block/4, so 0.04 / 0.01 = 4 steps. b: 1 and
    # 4 steps are too short, 16 steps last 0.016 s: 16 * 0.04 / 0.016 = 40.
    assert steps == [4, 40]
    assert medians == [0.01, 0.001]
    assert samples == [[0.01] * 3, [0.001] * 3]
    assert calls[-6:] == [("a", 4), ("b", 40)] * 3


def test_quartiles_in_ms():
    assert timing.quartiles_ms([0.001, 0.002, 0.003, 0.004, 0.005]) == (
        pytest.approx([1.5, 4.5])
    )
    assert timing.quartiles_ms([0.002]) == [2.0, 2.0]


def test_in_ms_names_medians_and_quartiles():
    row = timing.in_ms(
        ("a", "b"), [0.002, 0.01], [[0.001, 0.002, 0.003], [0.01]]
    )
    assert row == {
        "a_ms": 2.0,
        "b_ms": 10.0,
        "a_ms_iqr": pytest.approx([1.0, 3.0]),
        "b_ms_iqr": [10.0, 10.0],
    }


def test_time_calls_cycles_through_the_inputs():
    seen = []
    times = timing.time_calls(seen.append, ["a", "b", "c"], seconds=0.0)
    assert len(times) == 20 and all(t >= 0 for t in times)
    assert seen[:4] == ["a", "b", "c", "a"] and len(seen) == 20
    assert len(timing.time_calls(seen.append, [1], 0.0, min_calls=3)) == 3


def test_machine_names_python_and_the_packages():
    described = timing.machine(("keras", "no_such_package_xyz"))
    assert described["cpu_count"] >= 1
    assert described["python"] == platform.python_version()
    assert described["keras"].startswith("3.")
    assert described["no_such_package_xyz"] is None
    assert "onednn" in described


def test_write_json_makes_folders_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "results" / "speed.json"
    timing.write_json(path, {"rows": [1, 2]})
    timing.write_json(path, {"rows": [3]})
    assert json.loads(path.read_text()) == {"rows": [3]}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["speed.json"]


def test_output_arguments_and_where_results_go(tmp_path):
    parser = argparse.ArgumentParser()
    default = tmp_path / "speed.json"
    timing.add_output_arguments(parser, default)
    quick = parser.parse_args(["--quick"])
    assert timing.write_results(quick, default, {"a": 1}) is None
    assert not default.exists()
    assert timing.write_results(parser.parse_args([]), default, {"a": 1}) == (
        default
    )
    assert json.loads(default.read_text()) == {"a": 1}
    other = tmp_path / "other.json"
    args = parser.parse_args(["--quick", "--output", str(other)])
    assert timing.write_results(args, default, {"b": 2}) == other
    assert json.loads(other.read_text()) == {"b": 2}
