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


def _refused_run(tmp_path, capsys, trainer_arg, label_columns=("y",)):
    """`mmoe run` with a bad --trainer-arg: exit code 2, one line on stderr
    and no output folder. Returns the line."""
    code = cli.main(
        [
            "run",
            "--data",
            str(tmp_path / "never_read.csv"),
            "--text-column",
            "t",
            "--label-columns",
            *label_columns,
            "--output",
            str(tmp_path / "out"),
            "--trainer-arg",
            trainer_arg,
        ]
    )
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    return err


@pytest.mark.parametrize("value", ["colour=blue", "encoder", "=3"])
def test_unknown_or_malformed_trainer_arg_exits_2_naming_it(
    value, tmp_path, capsys
):
    assert value in _refused_run(tmp_path, capsys, value)


def test_unknown_reads_from_task_exits_2_before_any_work(tmp_path, capsys):
    err = _refused_run(
        tmp_path,
        capsys,
        'reads_from={"y": ["stars"]}',
        label_columns=("y", "z"),
    )
    assert "['stars']" in err and "['y', 'z']" in err


def test_min_metric_bounds():
    assert cli._parse_bounds(["rating=0.5", "x=1"]) == {"rating": 0.5, "x": 1.0}
    with pytest.raises(SystemExit, match="TASK=NUMBER"):
        cli._parse_bounds(["rating"])


def test_baseline_is_off_unless_asked():
    run = ["run", "--data", "d.csv", "--text-column", "t"]
    run += ["--label-columns", "y", "--output", "o"]
    parser = cli.build_parser()
    assert parser.parse_args(run).baseline is False
    assert parser.parse_args([*run, "--baseline"]).baseline is True
