"""Fixtures shared by the benchmarks' tests."""

import pytest


@pytest.fixture
def write_suite():
    """`write_suite(folder, frame, labels, name="toy") -> folder`: `frame`
    (text, label and split columns) written into `folder` as
    `benchmarks.suite_data` writes a data set of the suite: its CSV and its
    entry in suite.json."""
    from benchmarks import suite_data

    def write(folder, frame, labels, name="toy"):
        folder.mkdir(parents=True, exist_ok=True)
        suite_data.write_csv_gz(frame, folder / f"{name}.csv.gz")
        suite_data.write_summary(
            folder,
            {
                name: {
                    "file": f"{name}.csv.gz",
                    **suite_data.summarize(frame, labels),
                }
            },
        )
        return folder

    return write
