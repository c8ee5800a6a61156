import os

import pytest

from pipeline import atomic_pusher


def _model(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return str(model)


def test_push_creates_a_complete_numbered_version(tmp_path):
    base = str(tmp_path / "serving" / "mmoe")
    path = atomic_pusher.push_atomically(_model(tmp_path), base)
    assert os.path.basename(path).isdigit()
    assert sorted(os.listdir(base)) == [os.path.basename(path)]
    assert open(os.path.join(path, "saved_model.pb"), "rb").read() == b"pb"
    assert os.path.exists(os.path.join(path, "variables", "variables.index"))


def test_versions_increase_even_within_one_second(tmp_path):
    base = str(tmp_path / "serving")
    first = atomic_pusher.push_atomically(_model(tmp_path), base)
    second = atomic_pusher.push_atomically(_model(tmp_path), base)
    assert int(os.path.basename(second)) > int(os.path.basename(first))


def test_a_failed_copy_leaves_no_version_behind(tmp_path, monkeypatch):
    base = str(tmp_path / "serving")

    def broken_copy(src, dst):
        os.makedirs(dst)
        open(os.path.join(dst, "half"), "w").write("x")
        raise OSError("disk full")

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_dir", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        atomic_pusher.push_atomically(_model(tmp_path), base)
    assert os.listdir(base) == []


def test_an_identical_model_is_recognized(tmp_path):
    base = str(tmp_path / "serving")
    model = _model(tmp_path)
    assert atomic_pusher.newest_if_same(model, base) is None
    first = atomic_pusher.push_atomically(model, base)
    assert atomic_pusher.newest_if_same(model, base) == first
    with open(os.path.join(model, "variables", "variables.index"), "ab") as f:
        f.write(b"retrained")
    assert atomic_pusher.newest_if_same(model, base) is None
    second = atomic_pusher.push_atomically(model, base)
    assert atomic_pusher.newest_if_same(model, base) == second
    os.remove(os.path.join(model, "saved_model.pb"))
    assert atomic_pusher.newest_if_same(model, base) is None
