import json

import pandas as pd
import pytest

from benchmarks import tfidf_baseline
from pipeline import baseline


def _frame():
    """Liked (binary) and colour (3-class) rows, given away by their words;
    one test row without text, one test row without a colour."""
    colours = ["red", "green", "blue"]
    rows = []
    for split, n in [("train", 24), ("validation", 9), ("test", 9)]:
        for i in range(n):
            rows.append(
                {
                    "title": "nice" if i % 2 else "poor",
                    "body": f"{colours[i % 3]} coat",
                    "liked": str(i % 2),
                    "colour": colours[i % 3],
                    "split": split,
                }
            )
    rows[-1] |= {"title": "", "body": "", "liked": "0"}
    rows[-2] |= {"colour": ""}
    return pd.DataFrame(rows)


def test_writes_the_baselines_metrics_and_wall_time(tmp_path, capsys):
    data, output = tmp_path / "reviews.csv.gz", tmp_path / "results.json"
    frame = _frame()
    frame.to_csv(data, index=False)
    assert (
        tfidf_baseline.main(
            [
                "--data",
                str(data),
                "--text-column",
                "title",
                "body",
                "--label-columns",
                "liked",
                "colour",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    results = json.loads(output.read_text())
    csvs = []
    for split in tfidf_baseline.SPLITS:
        csvs.append(str(tmp_path / f"{split}.csv"))
        frame[frame["split"] == split].to_csv(csvs[-1], index=False)
    assert results["tasks"] == baseline.tfidf_lr(
        *csvs, ["title", "body"], ["liked", "colour"]
    )
    assert results["rows_by_split"] == {"train": 24, "validation": 9, "test": 9}
    assert results["wall_seconds"] > 0
    liked, colour = results["tasks"]["liked"], results["tasks"]["colour"]
    assert (liked["n"], liked["with_text"]["n"], colour["n"]) == (9, 8, 8)
    assert liked["with_text"]["auc"] == colour["with_text"]["accuracy"] == 1.0
    printed = capsys.readouterr().out
    assert "Test rows with text:" in printed
    assert f"liked C={liked['C']:g} (validation auc 1.0000)" in printed


def test_a_missing_column_is_named(tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    _frame().drop(columns="split").to_csv(data, index=False)
    with pytest.raises(SystemExit):
        tfidf_baseline.main(
            [
                "--data",
                str(data),
                "--text-column",
                "title",
                "--label-columns",
                "liked",
                "stars",
            ]
        )
    assert "['split', 'stars']" in capsys.readouterr().err
