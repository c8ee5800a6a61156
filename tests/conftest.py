"""Fixtures of the end-to-end tests."""

import pathlib

import pytest

REVIEWS = (
    pathlib.Path(__file__).resolve().parent.parent
    / "data"
    / "womens_clothing_reviews.csv.gz"
)


@pytest.fixture(scope="session")
def reviews_slice(tmp_path_factory):
    """`write(train, validation, test)`: the first rows of each split of the
    bundled reviews, as many as asked, in a new CSV; returns its path."""

    def write(train: int, validation: int, test: int) -> str:
        # Here, not at the top: the backend venvs, which load this file for
        # their tests in tests/, have no pandas.
        import pandas as pd

        frame = pd.read_csv(REVIEWS)
        sizes = {"train": train, "validation": validation, "test": test}
        parts = [frame[frame.split == s].head(n) for s, n in sizes.items()]
        path = tmp_path_factory.mktemp("data") / "small.csv"
        pd.concat(parts).to_csv(path, index=False)
        return str(path)

    return write
