import shutil

from pipeline import code_version


def _copy(tmp_path):
    for package in code_version.PACKAGES:
        shutil.copytree(
            code_version.ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return tmp_path


def test_same_code_gives_the_same_fingerprint(tmp_path):
    copy = _copy(tmp_path)
    assert code_version.fingerprint(copy) == code_version.fingerprint()
    assert len(code_version.fingerprint()) == 16


def test_an_edit_to_the_library_changes_it(tmp_path):
    copy = _copy(tmp_path)
    before = code_version.fingerprint(copy)
    with open(copy / "keras_mmoe" / "mmoe.py", "a") as f:
        f.write("\n# edited\n")
    assert code_version.fingerprint(copy) != before


def test_tests_do_not_change_it(tmp_path):
    copy = _copy(tmp_path)
    before = code_version.fingerprint(copy)
    (copy / "pipeline" / "new_test.py").write_text("def test(): pass\n")
    assert code_version.fingerprint(copy) == before


def test_a_library_upgrade_changes_it():
    versions = code_version.library_versions()
    assert versions["tensorflow"] != "missing"
    upgraded = {**versions, "tensorflow": "2.99.0"}
    assert code_version.fingerprint(versions=upgraded) != (
        code_version.fingerprint(versions=versions)
    )
    assert code_version.fingerprint(versions=versions) == (
        code_version.fingerprint()
    )
