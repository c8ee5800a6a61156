import json

from benchmarks import jsonl


def test_a_missing_file_has_no_records(tmp_path):
    assert jsonl.read(tmp_path / "none.jsonl") == []


def test_records_read_back_in_order(tmp_path):
    path = tmp_path / "runs.jsonl"
    for i in range(3):
        jsonl.append(path, {"run": i, "loss": i / 10})
    assert jsonl.read(path) == [{"run": i, "loss": i / 10} for i in range(3)]
    assert len(path.read_text().splitlines()) == 3


def test_a_line_cut_by_a_kill_is_skipped_and_ended(tmp_path):
    path = tmp_path / "runs.jsonl"
    jsonl.append(path, {"run": 0})
    whole = json.dumps({"run": 1, "curve": [1.0, 2.0]})
    with open(path, "a") as f:
        f.write(whole[:12])  # Killed mid-write.
    assert jsonl.read(path) == [{"run": 0}]
    jsonl.append(path, {"run": 1})
    assert jsonl.read(path) == [{"run": 0}, {"run": 1}]
    lines = path.read_text().splitlines()
    assert lines[1] == whole[:12] and json.loads(lines[2]) == {"run": 1}


def test_lines_that_are_not_objects_are_skipped(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('[1, 2]\n\n"text"\n{"run": 3}\nnot json\n')
    assert jsonl.read(path) == [{"run": 3}]
