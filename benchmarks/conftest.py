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


@pytest.fixture
def toy_suite(tmp_path, write_suite):
    """A toy suite data set `toy` in `tmp_path`: a `coarse` label on every
    row and a `fine` one (its refinement) missing on about a fifth."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "poor", "great", "awful"]
    rows = []
    for split, n in (("train", 48), ("validation", 16), ("test", 16)):
        for _ in range(n):
            fine = int(rng.integers(0, 4))
            rows.append(
                {
                    "text": " ".join(rng.choice(words, 5)) + f" w{fine}",
                    "coarse": "x" if fine < 2 else "y",
                    "fine": f"f{fine}" if rng.random() > 0.2 else "",
                    "split": split,
                }
            )
    frame = pd.DataFrame(rows)
    return write_suite(tmp_path, frame, ["coarse", "fine"])
