"""run_fn on a tiny Transform output: trains, summarizes, exports."""

import contextlib
import glob
import io
import json
import os
import types
import warnings
from unittest import mock

import keras
import numpy as np
import pytest

from pipeline import configs, linear, testing
from pipeline import model as trainer
from serving import backend, contract, export
from serving import testing as serving_testing

TASKS = {"recommended_ind": 2, "department_name": 3}


def _config(tiny, **overrides):
    return {
        "preprocessing": tiny.preprocessing_config,
        # The tiny Transform also has a single-class column; train the rest.
        "label_columns": [
            serving_testing.RECOMMENDED,
            serving_testing.DEPARTMENT,
        ],
        "tasks": TASKS,
        "body": "mmoe",
        "body_config": {"num_experts": 3, "expert_units": 8},
        "encoder": "mean",
        "embedding_dim": 8,
        "tower_units": [8],
        "dropout": 0.0,
        "epochs": 4,
        "batch_size": 16,
        "learning_rate": 0.02,
        "early_stopping_patience": 2,
        "distribution": "default",
        "seed": 1,
        **overrides,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tiny = serving_testing.tiny_transform()
    out = str(tmp_path_factory.mktemp("trainer"))
    # One task reads the other (by column, and by task name): the exported
    # model's tests below then cover the transfer layer.
    config = _config(
        tiny, reads_from={serving_testing.RECOMMENDED: ["department_name"]}
    )
    fn_args = testing.trainer_fn_args(tiny, out, config)
    stdout = io.StringIO()
    with (
        mock.patch.dict(os.environ),
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(stdout),
    ):
        os.environ.pop(configs.VERBOSE_ENV, None)
        warnings.simplefilter("always")
        trainer.run_fn(fn_args)
    console = types.SimpleNamespace(stdout=stdout.getvalue(), warnings=caught)
    return tiny, fn_args, console


def test_run_fn_trains_and_writes_summary(trained):
    _, fn_args, _ = trained
    with open(os.path.join(fn_args.model_run_dir, trainer.SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert 1 <= summary["epochs_run"] <= 4
    history = summary["history"]
    assert history["loss"][-1] < history["loss"][0]
    assert summary["best_val_loss"] == min(history["val_loss"])
    # Fixed task weights of 1 and full training batches: the loss is the
    # sum of the task losses (each pass ends at its last batch).
    np.testing.assert_allclose(
        history["loss"],
        np.add(
            history["recommended_ind_loss"], history["department_name_loss"]
        ),
        rtol=1e-5,
    )
    # The restored weights are the best epoch's (before the blends).
    np.testing.assert_allclose(
        summary["network_validation_metrics"]["loss"],
        summary["best_val_loss"],
        rtol=1e-4,
    )
    # Each task's linear model and blend were chosen on validation: the
    # blend scores at least as well as either part alone.
    for fit in summary["linear"].values():
        assert fit["c"] in linear.C_GRID
        assert fit["linear_weight"] in linear.BLEND_GRID
        assert fit["blend_validation_metric"] >= max(
            fit["validation_metric"], fit["network_validation_metric"]
        )
        # Every row of the tiny splits (48 and 18) is under the cap.
        assert (fit["train_rows"], fit["train_rows_used"]) == (48, 48)
        assert (fit["validation_rows"], fit["validation_rows_used"]) == (18, 18)
    assert {t: s["num_classes"] for t, s in summary["tasks"].items()} == TASKS
    # Rows with a missing label (every 5th / 7th) are not counted.
    assert sum(summary["tasks"]["recommended_ind"]["train_label_counts"]) == (
        48 - 48 // 5
    )
    assert summary["tasks"]["department_name"]["class_names"] == [
        "Bottoms",
        "Dresses",
        "Tops",
    ]
    model = keras.saving.load_model(
        os.path.join(fn_args.model_run_dir, trainer.KERAS_MODEL_FILE)
    )
    assert [t.reads_from for t in model.tasks] == [("department_name",), ()]
    assert np.abs(model.get_layer("recommended_ind_reads").kernel).max() > 0
    gates = summary["gates"]["tasks"]
    assert set(gates) == set(TASKS)
    for stats in gates.values():
        assert stats["num_experts"] == 3
        np.testing.assert_allclose(sum(stats["mean_weights"]), 1.0, rtol=1e-5)


def test_run_fn_prints_one_line_per_epoch_and_no_keras_warning(trained):
    _, fn_args, console = trained
    with open(os.path.join(fn_args.model_run_dir, trainer.SUMMARY_FILE)) as f:
        epochs_run = json.load(f)["epochs_run"]
    lines = console.stdout.splitlines()
    assert len(lines) == epochs_run
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"  epoch {epoch}/4 "), line
        assert "  recommended_ind auc " in line, line
        assert "  department_name acc " in line, line
    warned = [str(w.message) for w in console.warnings]
    assert not [m for m in warned if "ran out of data" in m], warned


def test_run_fn_writes_tensorboard_logs_with_gates(trained):
    _, fn_args, _ = trained
    run_dir = fn_args.model_run_dir
    assert glob.glob(os.path.join(run_dir, "train", "events.out.*"))
    assert glob.glob(os.path.join(run_dir, "validation", "events.out.*"))
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    gate_files = glob.glob(os.path.join(run_dir, "events.out.*.gates"))
    assert gate_files
    events = EventAccumulator(gate_files[0])
    events.Reload()
    assert "gate/recommended_ind/entropy" in events.Tags()["scalars"]


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """The exported model run in a process importing only TF + TF-Text."""
    tiny, fn_args, _ = trained
    return contract.run_probe(
        fn_args.serving_model_dir,
        tiny.texts("validation") + tiny.texts("train"),
        serving_testing.serialize_raw(tiny.raw_rows["validation"]),
        str(tmp_path_factory.mktemp("served")),
    )


def test_exported_model_matches_the_keras_model(trained, served):
    import tensorflow as tf
    import tensorflow_transform as tft

    tiny, fn_args, _ = trained
    texts = tiny.texts("validation") + tiny.texts("train")
    # The in-memory model (as run_fn saved it) on the same texts, through
    # the Transform layer with the text in the first text column.
    model = keras.saving.load_model(
        os.path.join(fn_args.model_run_dir, trainer.KERAS_MODEL_FILE)
    )
    tft_output = tft.TFTransformOutput(tiny.transform_graph)
    n = len(texts)
    transformed = tft_output.transform_features_layer()(
        {
            "Title": tf.sparse.from_dense(tf.constant([[t] for t in texts])),
            "Review Text": tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [n, 1]
            ),
        }
    )
    inputs = export.model_inputs(transformed, terms=True)
    expected = model.predict(inputs, verbose=0)
    # The blends use the linear part for some task, so it is exported too.
    assert any(
        model.blend_layer(t.name).blend.numpy()[1] > 0 for t in model.tasks
    )
    p_one = np.asarray(expected["recommended_ind"])[:, 0]
    out = served["predict_text"]
    np.testing.assert_allclose(
        out["recommended_ind_probabilities"],
        np.stack([1 - p_one, p_one], axis=1),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        out["department_name_probabilities"],
        expected["department_name"],
        atol=1e-5,
    )


def test_serving_default_equals_predict_text(trained, served):
    tiny, _, _ = trained
    n = len(tiny.raw_rows["validation"])
    for key, value in served["serving_default"].items():
        if key in TASKS or key.endswith("_probabilities"):
            np.testing.assert_allclose(
                value, served["predict_text"][key][:n], atol=1e-6
            )
        else:
            assert value == served["predict_text"][key][:n], key


def test_trained_model_learns_the_tiny_tasks(trained, served):
    tiny, _, _ = trained
    predicted = served["predict_text"]["department_name_label"]
    truth = [
        row[serving_testing.DEPARTMENT][0].decode()
        if row[serving_testing.DEPARTMENT]
        else ""
        for row in tiny.raw_rows["validation"] + tiny.raw_rows["train"]
    ]
    assert set(predicted) <= {"Bottoms", "Dresses", "Tops"}
    accuracy = np.mean(
        [p == t for p, t in zip(predicted, truth, strict=True) if t]
    )
    assert accuracy > 0.6, accuracy


def test_reads_from_by_column_or_task_name():
    columns = ["Recommended IND", "Rating", "Department Name"]
    assert trainer.resolve_reads_from(None, columns) == {}
    assert trainer.resolve_reads_from(
        {"Recommended IND": ["rating"], "department_name": ["Rating"]}, columns
    ) == {"recommended_ind": ["rating"], "department_name": ["rating"]}


@pytest.mark.parametrize(
    "reads_from, message",
    [
        ({"Recommended IND": ["Stars"]}, r"unknown task\(s\) \['Stars'\]"),
        ({"Recommended IND": "Rating"}, "expected {reader: "),
        ({"Rating": ["Rating"]}, "'rating': `reads_from`"),
        (
            {"Rating": ["Recommended IND"], "Recommended IND": ["rating"]},
            "cycle",
        ),
    ],
)
def test_bad_reads_from_names_the_problem(reads_from, message):
    columns = ["Recommended IND", "Rating"]
    with pytest.raises(ValueError, match=message):
        trainer.resolve_reads_from(reads_from, columns)


def test_single_class_column_is_a_clear_error(tmp_path):
    tiny = serving_testing.tiny_transform()
    config = _config(
        tiny,
        label_columns=[serving_testing.RECOMMENDED, serving_testing.SINGLE],
        epochs=1,
    )
    fn_args = testing.trainer_fn_args(tiny, str(tmp_path), config)
    with pytest.raises(ValueError, match="'Single Class'.*two"):
        trainer.run_fn(fn_args)


def test_no_labelled_rows_is_a_clear_error(tmp_path):
    tiny = serving_testing.tiny_transform()
    config = _config(tiny, epochs=1)
    fn_args = testing.trainer_fn_args(
        tiny, str(tmp_path), config, train_split="unlabelled"
    )
    with pytest.raises(ValueError, match="'Recommended IND'.*no labelled"):
        trainer.run_fn(fn_args)


def test_unknown_distribution_is_rejected(tmp_path):
    tiny = serving_testing.tiny_transform()
    config = _config(tiny, distribution="tpu")
    fn_args = testing.trainer_fn_args(tiny, str(tmp_path), config)
    with pytest.raises(ValueError, match="distribution='tpu'"):
        trainer.run_fn(fn_args)


def test_config_without_columns_is_rejected(tmp_path):
    tiny = serving_testing.tiny_transform()
    fn_args = testing.trainer_fn_args(tiny, str(tmp_path), {"epochs": 1})
    with pytest.raises(ValueError, match="needs `preprocessing`"):
        trainer.run_fn(fn_args)


@contextlib.contextmanager
def _linear_parts(tmp_path, **overrides):
    """What `run_fn` hands `_fit_linear`, on the tiny Transform output (48
    training and 18 validation rows) with `_config` overrides."""
    import tensorflow as tf

    tiny = serving_testing.tiny_transform()
    config = _config(tiny, **overrides)
    fn_args = testing.trainer_fn_args(tiny, str(tmp_path), config)
    config = trainer._config(fn_args.custom_config)
    data = trainer._read_transform_output(fn_args, config)
    labels = trainer._count_labels(fn_args, data)
    with trainer._validation_cache() as cache_file:
        _, validation = trainer._datasets(
            fn_args, data, labels, config, cache_file
        )
        model = trainer._build_model(config, data, tf.distribute.get_strategy())
        yield types.SimpleNamespace(
            fn_args=fn_args,
            config=config,
            data=data,
            labels=labels,
            validation=validation,
            model=model,
            cache_file=cache_file,
        )


def _fit_linear(parts):
    """`_fit_linear` on `parts`: its result, the layer's kernel and bias,
    and the `(x_train, y_train, x_val, y_val)` of each `fit_task` call."""
    calls = []
    fit_task = linear.fit_task

    def recording(*args, **kwargs):
        calls.append(args[:4])
        return fit_task(*args, **kwargs)

    with mock.patch.object(linear, "fit_task", recording):
        fit = trainer._fit_linear(
            parts.fn_args,
            parts.model,
            parts.data,
            parts.validation,
            parts.labels,
            parts.config,
        )
    layer = parts.model.linear_layer()
    return fit, layer.kernel.numpy(), layer.bias.numpy(), calls


def _every_row(parts):
    """The TF-IDF rows and labels of every training and validation row, from
    a list of all training batches (the fit without a cap)."""
    tasks = parts.data.tasks
    layer = parts.model.linear_layer()
    batches = list(
        trainer._term_batches(
            trainer._in_order(
                parts.fn_args, parts.data, parts.fn_args.train_files, True
            ),
            tasks,
        )
    )
    df = np.zeros(layer.vocabulary_size, np.int64)
    for ids, counts, _ in batches:
        df += np.bincount(ids[counts > 0], minlength=layer.vocabulary_size)
    layer.set_document_frequency(df, sum(len(b[0]) for b in batches))
    train = trainer._tfidf_rows(layer, batches, tasks)
    val = trainer._tfidf_rows(
        layer, trainer._term_batches(parts.validation, tasks), tasks
    )
    return train, val


def _same_rows(a, b) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0


def _capped_fit(tmp_path, seed, max_rows=10):
    """`_fit_linear` with `linear_max_rows`: its result, kernel and
    `fit_task` calls, every row's matrices, and the labels of the validation
    rows the blends are chosen on (`_rows`)."""
    with _linear_parts(tmp_path, seed=seed, linear_max_rows=max_rows) as parts:
        fit, kernel, _, calls = _fit_linear(parts)
        blend_rows = trainer._rows(
            parts.validation, fit["validation_sample"], 16
        )
        blend_labels = {
            t: np.concatenate([y[t].numpy() for _, y in blend_rows])
            for t in TASKS
        }
        every_row = _every_row(parts)
    return fit, kernel, calls, every_row, blend_labels


def test_linear_fit_uses_a_seeded_sample_of_linear_max_rows(tmp_path):
    fit, kernel, calls, every_row, blend_labels = _capped_fit(tmp_path, 1)
    (x_all, y_all), (x_val_all, y_val_all) = every_row
    assert x_all.shape[0] == 48 and x_val_all.shape[0] == 18
    rng = np.random.default_rng(1)  # The Trainer's seed.
    train_sample = trainer._sample(48, 10, rng)
    val_sample = trainer._sample(18, 10, rng)
    np.testing.assert_array_equal(fit["validation_sample"], val_sample)
    assert len(calls) == len(TASKS)
    for task, (x_train, y_train, x_val, y_val) in zip(
        fit["fits"], calls, strict=True
    ):
        # Exactly the sampled rows, with their labels.
        assert _same_rows(x_train, x_all[train_sample])
        np.testing.assert_array_equal(y_train, y_all[task][train_sample])
        assert _same_rows(x_val, x_val_all[val_sample])
        np.testing.assert_array_equal(y_val, y_val_all[task][val_sample])
        assert {k: v for k, v in fit["fits"][task].items() if "_rows" in k} == {
            "train_rows": 48,
            "train_rows_used": 10,
            "validation_rows": 18,
            "validation_rows_used": 10,
        }
        assert fit["validation_logits"][task].shape[0] == 10
        # The blends are chosen on the same validation rows, in order.
        np.testing.assert_array_equal(
            blend_labels[task], fit["validation_labels"][task]
        )
    # The same seed draws the same rows and fits the same model.
    again, kernel_again, calls_again, _, _ = _capped_fit(tmp_path / "b", 1)
    np.testing.assert_array_equal(again["validation_sample"], val_sample)
    np.testing.assert_array_equal(kernel_again, kernel)
    for call, call_again in zip(calls, calls_again, strict=True):
        assert _same_rows(call[0], call_again[0])
        assert _same_rows(call[2], call_again[2])
    # Another seed draws other rows.
    other, _, calls_other, _, _ = _capped_fit(tmp_path / "c", 2)
    assert not np.array_equal(other["validation_sample"], val_sample)
    assert not _same_rows(calls_other[0][0], calls[0][0])


@pytest.mark.parametrize("max_rows", [48, 100_000])
def test_linear_fit_under_the_cap_equals_the_fit_on_every_row(
    tmp_path, max_rows
):
    with _linear_parts(tmp_path, linear_max_rows=max_rows) as parts:
        fit, kernel, bias, _ = _fit_linear(parts)
        (x, y), (x_val, y_val) = _every_row(parts)
    assert fit["validation_sample"] is None
    start = 0
    for task in parts.model.tasks:
        name = task.name
        expected = linear.fit_task(
            x, y[name], x_val, y_val[name], TASKS[name], seed=1
        )
        end = start + task.output_units
        np.testing.assert_array_equal(kernel[:, start:end], expected.kernel)
        np.testing.assert_array_equal(bias[start:end], expected.bias)
        np.testing.assert_array_equal(
            fit["validation_logits"][name], expected.validation_logits
        )
        np.testing.assert_array_equal(
            fit["validation_labels"][name], y_val[name]
        )
        assert fit["fits"][name]["c"] == expected.c
        assert fit["fits"][name]["train_rows_used"] == 48
        start = end
    assert start == kernel.shape[1]


def test_sample_draws_distinct_rows_uniformly():
    rng = np.random.default_rng(0)
    assert trainer._sample(10, 10, rng) is None
    assert trainer._sample(3, 10, rng) is None
    sample = trainer._sample(1000, 100, np.random.default_rng(5))
    assert len(np.unique(sample)) == 100
    assert (np.diff(sample) > 0).all() and 0 <= sample[0] and sample[-1] < 1000
    np.testing.assert_array_equal(
        sample, trainer._sample(1000, 100, np.random.default_rng(5))
    )
    # Every row is drawn about equally often: 3 of 10 rows, 2000 times
    # (600 each expected, standard deviation 20).
    counts = np.bincount(
        np.concatenate([trainer._sample(10, 3, rng) for _ in range(2000)]),
        minlength=10,
    )
    assert counts.sum() == 6000
    assert np.abs(counts - 600).max() < 100, counts


def test_sampled_keeps_the_numbered_rows_across_batches():
    batches = [
        (np.arange(4)[:, None], np.ones((4, 1)), {"t": np.arange(4)}),
        (np.arange(4, 7)[:, None], np.ones((3, 1)), {"t": np.arange(4, 7)}),
    ]
    kept = list(trainer._sampled(iter(batches), np.array([1, 3, 4, 6])))
    assert [b[2]["t"].tolist() for b in kept] == [[1, 3], [4, 6]]
    assert [b[0][:, 0].tolist() for b in kept] == [[1, 3], [4, 6]]
    only_second = list(trainer._sampled(iter(batches), np.array([5])))
    assert [b[2]["t"].tolist() for b in only_second] == [[5]]
    assert len(list(trainer._sampled(iter(batches), None))) == 2


@pytest.mark.parametrize("value", [0, -3, 2.5, "100", True, None])
def test_linear_max_rows_must_be_a_positive_integer(value):
    with pytest.raises(
        ValueError,
        match=r"^--trainer-arg linear_max_rows expected an integer >= 1\. "
        rf"Received: linear_max_rows={value!r}$",
    ):
        configs.check_trainer_config({"linear_max_rows": value})
    with pytest.raises(
        ValueError,
        match=r"^`linear_max_rows` expected a positive integer\. "
        rf"Received: linear_max_rows={value!r}$",
    ):
        trainer._config(
            {
                "text_columns": ["text"],
                "label_columns": ["y"],
                "linear_max_rows": value,
            }
        )


def test_linear_max_rows_accepts_positive_integers():
    for value in (1, 100_000):
        configs.check_trainer_config({"linear_max_rows": value})
        config = trainer._config(
            {
                "text_columns": ["t"],
                "label_columns": ["y"],
                "linear_max_rows": value,
            }
        )
        assert config["linear_max_rows"] == value
    assert configs.TRAINER_DEFAULTS["linear_max_rows"] == 100_000


def test_validation_is_cached_in_a_file_removed_afterwards(tmp_path):
    with _linear_parts(tmp_path, linear=False) as parts:
        folder = os.path.dirname(parts.cache_file)
        # Filled when built: the cache is complete (no writer's lockfile).
        names = os.listdir(folder)
        assert any(n.endswith(".index") for n in names), names
        assert not any(n.endswith(".lockfile") for n in names), names
        rows = sum(len(y["department_name"]) for _, y in parts.validation)
        assert rows == 18
        with trainer._validation_cache() as another:
            assert os.path.dirname(another) != folder
    assert not os.path.exists(folder)
    with pytest.raises(RuntimeError, match="stop"):
        with trainer._validation_cache() as cache_file:
            folder = os.path.dirname(cache_file)
            assert os.path.isdir(folder)
            raise RuntimeError("stop")
    assert not os.path.exists(folder)


_MIRRORED_RUN = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
sys.path.insert(0, sys.argv[1])
from pipeline import linear
from pipeline import model as trainer
from pipeline import testing
from serving import export
from serving import testing as serving_testing
from pipeline.model_test import _config

tiny = serving_testing.tiny_transform()
fn_args = testing.trainer_fn_args(
    tiny, sys.argv[2], _config(tiny, distribution="mirrored", epochs=3)
)
trainer.run_fn(fn_args)
print(fn_args.model_run_dir)
"""


def test_run_fn_trains_under_mirrored_strategy_on_two_cpus(tmp_path):
    """The Trainer's `distribution: mirrored` over two logical CPU devices
    (set up before TensorFlow starts, hence a fresh process)."""
    import pathlib
    import subprocess
    import sys

    root = str(pathlib.Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", _MIRRORED_RUN, root, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = out.stdout.strip().splitlines()[-1]
    with open(os.path.join(run_dir, trainer.SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert summary["replicas"] == 2
    losses = summary["history"]["loss"]
    assert losses[-1] < losses[0], losses
    assert np.isfinite(summary["best_val_loss"])
    # The model exported from the mirrored scope serves.
    assert os.path.exists(
        os.path.join(tmp_path, "serving_model", "saved_model.pb")
    )


# One Trainer process: `run_fn` on the pickled tiny Transform, with
# `_config` overrides; `cpus` > 1 splits the CPU into that many logical
# devices (before TensorFlow starts) for MirroredStrategy.
_TRAINER_PROCESS = """
import json, pickle, sys
import tensorflow as tf

root, tiny_file, output, overrides, cpus = sys.argv[1:6]
if int(cpus) > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(cpus)
    )
sys.path.insert(0, root)
from pipeline import model as trainer
from pipeline import testing
from pipeline.model_test import _config

with open(tiny_file, "rb") as f:
    tiny = pickle.load(f)
config = _config(tiny, **json.loads(overrides))
trainer.run_fn(testing.trainer_fn_args(tiny, output, config))
"""


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_trainers(runs, tiny_file, log_dir, timeout) -> None:
    """Runs `(output, overrides, cpus, TF_CONFIG or None)` Trainer processes
    at once and waits for all; on a failure or the timeout every process
    still running is killed, with its children, before the test fails."""
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG",)} | {
        "KERAS_BACKEND": "tensorflow"
    }
    env.pop(configs.VERBOSE_ENV, None)
    processes, logs = [], []
    try:
        for i, (output, overrides, cpus, tf_config) in enumerate(runs):
            name = f"{os.path.basename(output)}_{i}.log"
            log = open(os.path.join(log_dir, name), "w+")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _TRAINER_PROCESS, root]
                    + [tiny_file, output, json.dumps(overrides), str(cpus)],
                    env=env | ({"TF_CONFIG": tf_config} if tf_config else {}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group
                )
            )
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(1)
        for i, p in enumerate(processes):
            if p.poll() != 0:
                logs[i].seek(0)
                pytest.fail(
                    f"Trainer process {i} of {runs[i]} ended with "
                    f"{p.poll()} (None: still running after {timeout} s):\n"
                    + logs[i].read()[-3000:]
                )
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for log in logs:
            log.close()


def _summary_of(output: str) -> dict:
    with open(os.path.join(output, "model_run", trainer.SUMMARY_FILE)) as f:
        return json.load(f)


@pytest.mark.slow
def test_run_fn_on_two_workers_trains_as_one_worker(tmp_path):
    """`distribution: multi_worker_mirrored` with two worker processes on
    127.0.0.1 (TF_CONFIG), against one process on the same data and seed.

    Every run has the global batch of 16: each of the two workers trains on
    its half of every batch (the Trainer shards by data, so both read the
    one file and keep alternate halves) and the gradients are averaged
    across the workers.

    - Against one process with two replicas (MirroredStrategy over two
      logical CPUs), the same computation on one machine: every epoch's
      losses and metrics and the final metrics equal within 1e-5
      (measured: identical to the last bit). Workers that did not exchange
      gradients would each follow their own half of the data and differ
      here at once.
    - Against one process with one replica (the default strategy), as the
      Trainer runs by default: the training loss of every epoch and the
      final validation metrics within 0.05. With two replicas each task's
      loss is the mean over each half's labelled rows, averaged over the
      halves, instead of the mean over the batch's labelled rows (rows miss
      labels), so the curves differ a little from the first step on;
      measured at most 0.016 apart per epoch (1.106 against 1.122 in the
      first), final validation losses at most 0.019 apart (0.150 against
      0.169 for recommended_ind), and every final accuracy and AUC equal
      (1.0: the tiny tasks are separable). The tolerance is about three
      times the largest measured gap.

    Both workers are given the same output folders, as the Trainer gives
    them: only the chief's (worker 0's) files are kept.
    """
    import pickle

    tiny = serving_testing.tiny_transform()
    tiny_file = str(tmp_path / "tiny.pkl")
    with open(tiny_file, "wb") as f:
        pickle.dump(tiny, f)
    # Every epoch runs: early stopping would cut curves at different epochs.
    run = {"epochs": 4, "early_stopping_patience": 4}
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    two_workers = str(tmp_path / "two_workers")
    _run_trainers(
        [
            (
                two_workers,
                {**run, "distribution": "multi_worker_mirrored"},
                1,
                json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            )
            for i in range(2)
        ],
        tiny_file,
        str(tmp_path),
        timeout=1200,
    )
    two_replicas, one_replica = (
        str(tmp_path / "two_replicas"),
        str(tmp_path / "one_replica"),
    )
    _run_trainers(
        [
            (two_replicas, {**run, "distribution": "mirrored"}, 2, None),
            (one_replica, {**run, "distribution": "default"}, 1, None),
        ],
        tiny_file,
        str(tmp_path),
        timeout=1200,
    )
    workers = _summary_of(two_workers)
    mirrored = _summary_of(two_replicas)
    single = _summary_of(one_replica)
    assert workers["replicas"] == mirrored["replicas"] == 2
    assert single["replicas"] == 1
    assert workers["epochs_run"] == single["epochs_run"] == 4
    assert set(workers["history"]) == set(mirrored["history"])
    for key, values in workers["history"].items():
        np.testing.assert_allclose(
            values, mirrored["history"][key], atol=1e-5, err_msg=key
        )
    for key in ("validation_metrics", "network_validation_metrics"):
        assert workers[key].keys() == mirrored[key].keys()
        for name, value in workers[key].items():
            np.testing.assert_allclose(
                value, mirrored[key][name], atol=1e-5, err_msg=name
            )
    np.testing.assert_allclose(
        workers["history"]["loss"], single["history"]["loss"], atol=0.05
    )
    losses = workers["history"]["loss"]
    assert losses[-1] < losses[0] / 10, losses
    for name, value in workers["validation_metrics"].items():
        np.testing.assert_allclose(
            value, single["validation_metrics"][name], atol=0.05, err_msg=name
        )
    # The chief's files only: one TensorBoard writer, one model.
    for split in ("train", "validation"):
        assert (
            len(os.listdir(os.path.join(two_workers, "model_run", split))) == 1
        )
    weights = [
        keras.saving.load_model(
            os.path.join(out, "model_run", trainer.KERAS_MODEL_FILE)
        ).get_weights()
        for out in (two_workers, two_replicas)
    ]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert os.path.exists(
        os.path.join(two_workers, "serving_model", "saved_model.pb")
    )


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief",
    [
        (None, None, None, True),  # one process
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
        ({"chief": ["a:1"], "worker": ["b:1"]}, "chief", 0, True),
        ({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0, False),
    ],
)
def test_only_the_chief_keeps_its_files(
    cluster, task_type, task_id, chief, tmp_path
):
    resolver = (
        types.SimpleNamespace(
            task_type=task_type,
            task_id=task_id,
            cluster_spec=lambda: types.SimpleNamespace(as_dict=lambda: cluster),
        )
        if cluster
        else None
    )
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    assert trainer._is_chief(strategy) is chief
    fn_args = types.SimpleNamespace(
        model_run_dir=str(tmp_path / "model_run"),
        serving_model_dir=str(tmp_path / "serving"),
    )
    with trainer._output_dirs(fn_args, strategy) as (run_dir, serving_dir):
        if chief:
            assert run_dir == fn_args.model_run_dir
            assert serving_dir == fn_args.serving_model_dir
        else:
            temporary = os.path.dirname(run_dir)
            assert os.path.dirname(serving_dir) == temporary
            assert not temporary.startswith(str(tmp_path))
            assert os.path.isdir(temporary)
    if not chief:
        assert not os.path.exists(temporary)  # removed afterwards


@pytest.mark.parametrize(
    "value, keras_output",
    [(None, False), ("", False), ("0", False), ("1", True)],
)
def test_verbose_env_gives_keras_own_output(value, keras_output, monkeypatch):
    monkeypatch.delenv(configs.VERBOSE_ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(configs.VERBOSE_ENV, value)
    assert trainer._keras_output() is keras_output


def test_run_fn_on_another_keras_backend_says_so_first(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(backend.BackendError, match="^The pipeline's Trainer"):
        trainer.run_fn(None)
