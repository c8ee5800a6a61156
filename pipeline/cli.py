"""The `mmoe` command: run the pipeline, predict with a pushed model."""

import argparse
import json
import logging
import os
import sys
import time
import warnings

from pipeline import configs
from serving import backend
from serving.features import EXIT_BAD_INPUT

# `mmoe run` trained and evaluated a model that failed its quality gate.
EXIT_NOT_PUSHED = 3


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and exit code 2) instead of the usage
    block followed by the error."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


class _BodyNames:
    """`keras_mmoe.BODY_NAMES`, imported only when argparse checks a
    `--body` value or prints the help: other commands never load Keras."""

    def __iter__(self):
        import keras_mmoe

        return iter(keras_mmoe.BODY_NAMES)

    def __contains__(self, name):
        return name in tuple(self)


class _ComponentProgress(logging.Handler):
    """Prints LocalDagRunner's component start/finish lines as progress."""

    def __init__(self, out=None):
        super().__init__(level=logging.INFO)
        self.out = out  # None: sys.stdout at each print.
        self.started = {}

    def emit(self, record):
        message = record.getMessage()
        if not message.startswith("Component "):
            return
        name = message.split(" ")[1]
        if message.endswith(" is running."):
            self.started[name] = time.perf_counter()
            print(f"  {name} ...", file=self.out or sys.stdout, flush=True)
        elif message.endswith(" is finished."):
            took = time.perf_counter() - self.started.get(name, 0)
            print(
                f"  {name} done ({took:.0f} s)",
                file=self.out or sys.stdout,
                flush=True,
            )


def _wants_verbose(argv) -> bool:
    """Whether `argv` asks for `--verbose`, read before the full parse
    (which may load TensorFlow to check a `--body` value)."""
    pre = argparse.ArgumentParser(prog="mmoe", add_help=False)
    pre.add_argument("--verbose", action="store_true")
    return pre.parse_known_args(argv)[0].verbose


def _set_up_console(verbose: bool) -> None:
    """Quiet unless `verbose`; runs before TensorFlow is imported.

    Quiet: TensorFlow's C++ log is off (it prints CUDA plugin and oneDNN
    notices while loading; a failing op still raises its error in Python),
    and deprecation and future warnings are ignored. `verbose` leaves both
    as the environment has them, and the Trainer prints Keras's own output
    per epoch (`configs.VERBOSE_ENV`).
    """
    if verbose:
        os.environ[configs.VERBOSE_ENV] = "1"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _log_to_console(verbose: bool) -> None:
    """Per-component progress to stdout; log records of level ERROR and up
    (WARNING with `verbose`) to stderr."""
    import absl.logging

    # TFX logs each component's start and end at INFO, through absl.
    absl.logging.set_verbosity(absl.logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    level = logging.WARNING if verbose else logging.ERROR
    for handler in root.handlers:
        handler.setLevel(level)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root.addHandler(console)
    root.addHandler(_ComponentProgress())
    # TensorFlow gives its logger a handler of its own when it loads before
    # the root logger has one; its records go through the root's instead.
    tf_logger = logging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):
        tf_logger.removeHandler(handler)


def _parse_bounds(values, label_columns) -> dict[str, float]:
    """`--min-metric` TASK=NUMBER pairs -> {task name: bound}; TASK is a
    label column or its task name. Raises a ValueError naming a task that
    is not trained or a bound that is not a number in [0, 1]."""
    from serving import features

    tasks = {features.task_name(c): c for c in label_columns}
    known = {**{c: t for t, c in tasks.items()}, **{t: t for t in tasks}}
    bounds = {}
    for value in values or []:
        name, sep, number = value.partition("=")
        if not sep:
            raise ValueError(
                f"--min-metric expects TASK=NUMBER. Received: {value!r}"
            )
        if name not in known:
            raise ValueError(
                f"--min-metric names {name!r}, which is not trained: expected "
                f"one of the label columns {list(label_columns)} or their "
                f"task names {list(tasks)}."
            )
        try:
            bound = float(number)
        except ValueError:
            bound = float("nan")
        if not 0.0 <= bound <= 1.0:
            raise ValueError(
                f"--min-metric {name} expects a number in [0, 1] (a test AUC "
                f"or accuracy). Received: {number!r}"
            )
        bounds[known[name]] = bound
    return bounds


# Trainer settings `--trainer-arg` may set besides configs.TRAINER_DEFAULTS.
_EXTRA_TRAINER_KEYS = ("text_encoder_config",)


def _parse_trainer_args(values) -> dict:
    """KEY=VALUE pairs; VALUE is read as JSON (a bare word is a string for
    the settings that are strings), checked by kind."""
    known = sorted({*configs.TRAINER_DEFAULTS, *_EXTRA_TRAINER_KEYS})
    config = {}
    for value in values or []:
        key, sep, raw = value.partition("=")
        if not sep or key not in known:
            raise ValueError(
                f"--trainer-arg expects KEY=VALUE with KEY one of {known}. "
                f"Received: {value!r}"
            )
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            if not isinstance(configs.TRAINER_DEFAULTS.get(key), str):
                raise ValueError(
                    f"--trainer-arg {key} expects a JSON value. Received: "
                    f"{raw!r}"
                ) from None
            config[key] = raw
    configs.check_trainer_config(config)
    return config


def cmd_run(args) -> int:
    from pipeline import ingest, local_runner

    try:
        trainer_config = _parse_trainer_args(args.trainer_arg)
        if trainer_config.get("reads_from"):
            from pipeline.model import resolve_reads_from

            resolve_reads_from(trainer_config["reads_from"], args.label_columns)
        bounds = _parse_bounds(args.min_metric, args.label_columns)
        _check_output(args.output)
    except ValueError as e:
        print(f"mmoe: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"Running the pipeline on {args.data} -> {args.output}")
    paths = local_runner.RunPaths(os.path.abspath(args.output))
    try:
        summary = ingest.ingest(
            args.data,
            args.text_column,
            args.label_columns,
            paths.data_root,
            need_csv_splits="--baseline" if args.baseline else None,
            beam_args=args.beam_arg,
        )
    except ingest.InputError as e:
        print(f"mmoe: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"  data: {summary.rows} rows {summary.rows_by_split}, "
        f"{summary.bad_rows_skipped} malformed rows skipped, "
        f"{summary.bytes_replaced} invalid bytes replaced, "
        f"{summary.empty_texts} empty texts, missing labels "
        f"{summary.missing_labels}"
    )
    if summary.skipped_rows:
        more = summary.bad_rows_skipped - len(summary.skipped_rows[:3])
        print(
            "  skipped: "
            + "; ".join(summary.skipped_rows[:3])
            + (f"; and {more} more (metrics.json names 20)" if more else "")
        )
    for warning in summary.warnings:
        print(f"  warning: {warning}")
    ingest_warnings = list(summary.warnings)
    trainer_config["body"] = args.body
    if args.epochs is not None:
        trainer_config["epochs"] = args.epochs
    _log_to_console(args.verbose)
    from pipeline import report

    paths, summary = local_runner.run(
        data=args.data,
        text_columns=args.text_column,
        label_columns=args.label_columns,
        output=args.output,
        trainer_config=trainer_config,
        beam_args=args.beam_arg,
        lower_bounds=bounds,
        enable_cache=not args.no_cache,
        summary=summary,
    )
    for warning in summary.warnings[len(ingest_warnings) :]:
        print(f"  warning: {warning}")
    if not report.write_report(paths, summary, args, sys.stdout):
        return 1
    failures = report.gate_failures(paths.metadata_path)
    if failures:
        print(
            "mmoe: the model failed its quality gate, not pushed: "
            + "; ".join(failures),
            file=sys.stderr,
        )
        return EXIT_NOT_PUSHED
    return 0


def _check_output(output: str) -> None:
    """A folder that exists or can be made, and can be written to."""
    path = os.path.abspath(output)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output {output} is a file, not a folder.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"--output {output}: {existing} is a file.")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--output {output}: {existing} is not writable.")


def cmd_predict(args) -> int:
    from serving import predict

    def warn(message):
        print(f"mmoe: warning: {message}", file=sys.stderr)

    try:
        results = predict.predict_texts(args.model, args.texts, warn=warn)
    except (FileNotFoundError, predict.ModelError) as e:
        print(" ".join(f"mmoe: {e}".split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(results, indent=2))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1. Received: {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mmoe", description="Multi-task text classification with MMoE."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the TFX pipeline on a CSV")
    run.add_argument(
        "--data",
        required=True,
        help="a CSV (.csv, .csv.gz), or a TFRecord of tf.Examples "
        "(a name containing .tfrecord; gzipped if it ends in .gz); a file "
        "or a pattern of files (quoted: 'data/part-*.csv.gz'), local or on "
        "any filesystem Beam reads (gs://, s3://, hdfs://)",
    )
    run.add_argument(
        "--text-column",
        nargs="+",
        required=True,
        metavar="COL",
        help="text column(s), joined with a space",
    )
    run.add_argument(
        "--label-columns",
        nargs="+",
        required=True,
        metavar="COL",
        help="one task per label column; an empty cell is a missing label",
    )
    run.add_argument("--output", required=True, help="output directory")
    run.add_argument(
        "--body",
        default="mmoe",
        choices=_BodyNames(),
        metavar="BODY",
        help="the shared body: %(choices)s (default: %(default)s)",
    )
    run.add_argument("--epochs", type=_positive_int)
    run.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a Beam pipeline option, e.g. --beam-arg=--runner=FlinkRunner",
    )
    run.add_argument(
        "--min-metric",
        action="append",
        metavar="TASK=VALUE",
        help="least test AUC (binary) / accuracy (multi-class) to push",
    )
    run.add_argument(
        "--trainer-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Trainer setting (JSON value), e.g. encoder=mean, "
        "learning_rate=0.002, wide=null, tower_units=[64]",
    )
    run.add_argument(
        "--baseline",
        action="store_true",
        help="also fit a TF-IDF + logistic regression baseline on the same "
        "splits and print it beside the model (CSV input only)",
    )
    run.add_argument("--no-cache", action="store_true")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="show the warnings of TensorFlow, TFX and Beam, TensorFlow's "
        "C++ log (as TF_CPP_MIN_LOG_LEVEL sets it) and Keras's own output "
        "per epoch instead of one line per epoch",
    )
    run.set_defaults(func=cmd_run)

    predict = commands.add_parser("predict", help="predict with a model")
    predict.add_argument(
        "--model",
        required=True,
        help="a SavedModel, or a TF Serving model dir (newest version used)",
    )
    predict.add_argument("texts", nargs="+")
    predict.set_defaults(func=cmd_predict)

    from serving import client, score

    client.add_query_command(commands)
    score.add_score_command(commands)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _set_up_console(_wants_verbose(argv))
    if argv[:1] == ["run"]:  # Before a `--body` check loads Keras.
        try:
            backend.require_tensorflow("mmoe run")
        except backend.BackendError as e:
            print(f"mmoe: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
