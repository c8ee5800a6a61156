import logging
import os
import pathlib
import subprocess
import sys

import pytest

from pipeline import cli, configs

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _console_env(monkeypatch):
    """`cli.main` sets these for TensorFlow; each test gets them back."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(configs.VERBOSE_ENV, raising=False)


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


def test_min_metric_bounds_by_column_or_task():
    columns = ["Rating", "Recommended IND"]
    assert cli._parse_bounds(["Rating=0.5", "recommended_ind=1"], columns) == {
        "rating": 0.5,
        "recommended_ind": 1.0,
    }
    for value, message in [
        ("rating", "TASK=NUMBER"),
        ("Ratingg=0.5", "'Ratingg', which is not trained"),
        ("rating=high", "number in \\[0, 1\\]"),
        ("rating=1.5", "Received: '1.5'"),
        ("rating=nan", "Received: 'nan'"),
    ]:
        with pytest.raises(ValueError, match=message):
            cli._parse_bounds([value], columns)


@pytest.mark.parametrize(
    "value, message",
    [
        ("epochs=0", "an integer >= 1"),
        ("tower_units=[64", "expects a JSON value"),
        ("tower_units=64", "JSON list"),
        ("learning_rate=-1", "a number > 0"),
        ("dropout=1", "[0, 1)"),
        ("linear=yes", "expects a JSON value"),
        ("encoder=lstm", "one of ['mean'"),
        ("body_config=[1]", "JSON object"),
    ],
)
def test_trainer_arg_values_of_the_wrong_kind_exit_2(
    value, message, tmp_path, capsys
):
    assert message in _refused_run(tmp_path, capsys, value)


def _run_args(tmp_path, *extra):
    return [
        "run",
        "--data",
        str(tmp_path / "never_read.csv"),
        "--text-column",
        "t",
        "--label-columns",
        "Rating",
        "--output",
        str(tmp_path / "out"),
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--min-metric", "Ratingg=0.5"], "'Ratingg', which is not trained"),
        (["--min-metric", "rating=high"], "number in [0, 1]"),
        (["--epochs", "0"], "argument --epochs: expected an integer >= 1"),
        (["--epochs", "-3"], "argument --epochs: expected an integer >= 1"),
    ],
)
def test_bad_flags_exit_2_in_one_line_before_any_work(
    extra, message, tmp_path, capsys
):
    with pytest.raises(SystemExit) as e:
        code = cli.main(_run_args(tmp_path, *extra))
        raise SystemExit(code)
    assert e.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_or_under_one_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    args = _run_args(tmp_path)
    for output in ("file", "file/run"):
        args[args.index("--output") + 1] = str(tmp_path / output)
        assert cli.main(args) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "is a file" in err, err


def test_baseline_is_off_unless_asked():
    run = ["run", "--data", "d.csv", "--text-column", "t"]
    run += ["--label-columns", "y", "--output", "o"]
    parser = cli.build_parser()
    assert parser.parse_args(run).baseline is False
    assert parser.parse_args([*run, "--baseline"]).baseline is True


def test_verbose_is_off_unless_asked():
    run = ["run", "--data", "d.csv", "--text-column", "t"]
    run += ["--label-columns", "y", "--output", "o"]
    parser = cli.build_parser()
    assert parser.parse_args(run).verbose is False
    assert parser.parse_args([*run, "--verbose"]).verbose is True
    assert not cli._wants_verbose(run)
    assert cli._wants_verbose([*run, "--verbose"])


def test_the_console_is_quiet_unless_verbose():
    cli._set_up_console(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert configs.VERBOSE_ENV not in os.environ
    del os.environ["TF_CPP_MIN_LOG_LEVEL"]
    cli._set_up_console(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert os.environ[configs.VERBOSE_ENV] == "1"


def test_bad_input_prints_one_line_though_tensorflow_loaded():
    """`python -m pipeline.cli run` refusing a `reads_from` after loading
    the Trainer module (TensorFlow, tf.Transform, tfx_bsl), in an
    environment that does not quiet TensorFlow itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--data",
            "never_read.csv",
            "--text-column",
            "t",
            "--label-columns",
            "y",
            "--output",
            "never_written",
            "--trainer-arg",
            'reads_from={"y": ["stars"]}',
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "KERAS_BACKEND": "tensorflow"},
        timeout=300,
    )
    assert result.returncode == cli.EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [
        "mmoe: `reads_from` names unknown task(s) ['stars']: expected label "
        "columns ['y'] or task names ['y']."
    ]
    assert not (ROOT / "never_written").exists()


@pytest.fixture
def restored_logging():
    """The root and TensorFlow loggers and absl's verbosity, as they were."""
    import absl.logging

    loggers = [logging.getLogger(), logging.getLogger("tensorflow")]
    saved = [(lg, lg.level, list(lg.handlers)) for lg in loggers]
    verbosity = absl.logging.get_verbosity()
    yield
    for lg, level, handlers in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
    absl.logging.set_verbosity(verbosity)


@pytest.mark.parametrize("verbose", [False, True])
def test_console_shows_progress_and_errors(verbose, restored_logging, capsys):
    import absl.logging

    tf_logger = logging.getLogger("tensorflow")
    # What TensorFlow does when it loads before the root logger has a handler.
    tf_logger.addHandler(logging.StreamHandler(sys.stderr))
    cli._log_to_console(verbose)
    absl.logging.info("Component Trainer is running.")
    absl.logging.info("Some detail.")
    tf_logger.info("Assets written.")
    tf_logger.warning("A deprecation.")
    absl.logging.error("Execution 7 failed.")
    absl.logging.info("Component Trainer is finished.")
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "  Trainer ..."
    assert out.splitlines()[1].startswith("  Trainer done (")
    assert len(out.splitlines()) == 2
    warnings = ["WARNING:tensorflow:A deprecation."] if verbose else []
    assert err.splitlines() == [*warnings, "ERROR:absl:Execution 7 failed."]


def test_run_on_another_keras_backend_exits_2_in_one_line(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert cli.main(_run_args(tmp_path)) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "mmoe run needs Keras's TensorFlow backend" in err
    assert "KERAS_BACKEND=tensorflow" in err
    assert not (tmp_path / "out").exists()


def test_data_that_matches_nothing_or_lacks_a_column_exits_2_unwritten(
    tmp_path, capsys
):
    part = tmp_path / "part-0.csv"
    part.write_text("text,y,split\na,1,train\nb,0,train\n")
    out = tmp_path / "out"
    for data, label, message in [
        (tmp_path / "none-*.csv", "y", f"No file matches {tmp_path}"),
        (tmp_path / "none.csv", "y", "Data file not found"),
        (tmp_path / "part-*.csv", "stars", "Column(s) not in"),
    ]:
        code = cli.main(
            [
                "run",
                "--data",
                str(data),
                "--text-column",
                "text",
                "--label-columns",
                label,
                "--output",
                str(out),
            ]
        )
        assert code == cli.EXIT_BAD_INPUT
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("mmoe: " + message), line
    assert not out.exists()
