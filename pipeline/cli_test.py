import pytest

from pipeline import cli


def test_trainer_args_are_json_or_strings():
    assert cli._parse_trainer_args(
        [
            "encoder=mean",
            "learning_rate=0.002",
            "wide=null",
            "tower_units=[64, 16]",
            'wide={"ngram_buckets": 10}',
        ]
    ) == {
        "encoder": "mean",
        "learning_rate": 0.002,
        "wide": {"ngram_buckets": 10},
        "tower_units": [64, 16],
    }


@pytest.mark.parametrize("value", ["colour=blue", "encoder", "=3"])
def test_unknown_or_malformed_trainer_arg_exits_2_naming_it(
    value, tmp_path, capsys
):
    code = cli.main(
        [
            "run",
            "--data",
            str(tmp_path / "never_read.csv"),
            "--text-column",
            "t",
            "--label-columns",
            "y",
            "--output",
            str(tmp_path / "out"),
            "--trainer-arg",
            value,
        ]
    )
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert value in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_reads_from_task_exits_2_before_any_work(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "--data",
            str(tmp_path / "never_read.csv"),
            "--text-column",
            "t",
            "--label-columns",
            "y",
            "z",
            "--output",
            str(tmp_path / "out"),
            "--trainer-arg",
            'reads_from={"y": ["stars"]}',
        ]
    )
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "['stars']" in err and "['y', 'z']" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_min_metric_bounds():
    assert cli._parse_bounds(["rating=0.5", "x=1"]) == {"rating": 0.5, "x": 1.0}
    with pytest.raises(SystemExit, match="TASK=NUMBER"):
        cli._parse_bounds(["rating"])
