import gzip

import pytest

from serving import files, testing


def test_a_plain_name_is_itself_or_not_found(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a\n")
    assert files.match(str(path)) == [str(path)]
    with pytest.raises(files.FilesError, match="Data file not found: "):
        files.match(str(tmp_path / "none.csv"))
    with pytest.raises(files.FilesError, match="not found"):
        files.match(str(tmp_path))  # a folder is no data file


def test_a_local_pattern_matches_files_in_sorted_order(tmp_path):
    for name in ["part-10.csv", "part-2.csv.gz", "other.csv"]:
        (tmp_path / name).write_text("a\n")
    (tmp_path / "part-dir").mkdir()
    assert files.match(str(tmp_path / "part-*")) == [
        str(tmp_path / "part-10.csv"),
        str(tmp_path / "part-2.csv.gz"),
    ]
    with pytest.raises(files.FilesError, match="No file matches .*x-"):
        files.match(str(tmp_path / "x-*.csv"))
    odd = tmp_path / "reviews[2024].csv"
    odd.write_text("a\n")
    assert files.match(str(odd)) == [str(odd)]


def test_urls_are_told_from_local_paths():
    assert files.is_remote("gs://bucket/a.csv")
    assert files.is_remote("hdfs://namenode:8020/a.csv")
    assert not files.is_remote("data/a.csv")
    assert not files.is_remote("C:/data/a.csv")


def test_gs_files_are_matched_and_read_through_beams_client():
    pytest.importorskip(
        "gcp_storage_emulator",
        reason="gcp-storage-emulator (the dev extra) serves gs:// here",
    )
    with testing.gcs_emulator("files-test") as bucket:
        bucket.blob("in/part-1.csv.gz").upload_from_string(
            gzip.compress(b"a\n1\n")
        )
        bucket.blob("in/part-0.csv").upload_from_string(b"a\n0\n")
        bucket.blob("other/part-9.csv").upload_from_string(b"a\n9\n")
        found = files.match("gs://files-test/in/part-*")
        assert found == [
            "gs://files-test/in/part-0.csv",
            "gs://files-test/in/part-1.csv.gz",
        ]
        with files.open_binary(found[1]) as f:
            assert gzip.decompress(f.read(1000)) == b"a\n1\n"
        with pytest.raises(files.FilesError, match="not found"):
            files.match("gs://files-test/in/none.csv")
        with pytest.raises(files.FilesError, match="No file matches"):
            files.match("gs://files-test/none-*")
