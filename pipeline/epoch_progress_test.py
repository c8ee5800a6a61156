import io
import re

from pipeline.epoch_progress import EpochProgress, format_epoch, main_metric

TASKS = {"recommended_ind": 2, "rating": 5, "department_name": 6}
LOGS = {
    "loss": 1.23449,
    "recommended_ind_auc": 0.5,
    "rating_accuracy": 0.5,
    "val_loss": 1.4561,
    "val_recommended_ind_auc": 0.95099,
    "val_recommended_ind_accuracy": 0.1,
    "val_rating_accuracy": 0.6712,
    "val_rating_macro_f1": 0.2,
    "val_department_name_accuracy": 0.872,
    "gate/rating/entropy": 1.0,
}


def test_binary_tasks_show_auc_and_the_others_accuracy():
    assert main_metric(2) == ("auc", "auc")
    assert main_metric(3) == ("accuracy", "acc")


def test_a_line_holds_time_losses_and_each_tasks_main_metric():
    assert format_epoch(2, 20, 12.4, LOGS, TASKS) == (
        "  epoch  3/20   12s  loss 1.234  val_loss 1.456  "
        "recommended_ind auc 0.951  rating acc 0.671  "
        "department_name acc 0.872"
    )


def test_values_missing_from_the_logs_are_left_out():
    line = format_epoch(0, None, 0.2, {"loss": 0.5}, TASKS)
    assert line == "  epoch 1    0s  loss 0.500"


def test_the_callback_prints_one_line_per_epoch():
    out = io.StringIO()
    progress = EpochProgress(TASKS, out=out)
    progress.set_params({"epochs": 20, "steps": 7, "verbose": 0})
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch, LOGS)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"  epoch  2/20 +\d+s  loss 1\.234  .*", lines[1])
    assert lines[1].endswith("department_name acc 0.872")


def test_fit_with_verbose_0_prints_only_the_epoch_lines(capsys):
    import keras
    import numpy as np

    inputs = keras.Input((1,))
    outputs = {
        "y": keras.layers.Dense(1, activation="sigmoid", name="y")(inputs),
        "z": keras.layers.Dense(3, activation="softmax", name="z")(inputs),
    }
    model = keras.Model(inputs, outputs)
    model.compile(
        "sgd",
        loss={
            "y": "binary_crossentropy",
            "z": "sparse_categorical_crossentropy",
        },
        metrics={"y": [keras.metrics.AUC(name="auc")], "z": ["accuracy"]},
    )
    x = np.arange(8, dtype="float32").reshape(8, 1)
    y = {"y": np.arange(8) % 2, "z": np.arange(8) % 3}
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        callbacks=[EpochProgress({"y": 2, "z": 3})],
        verbose=0,
    )
    number = r"\d+\.\d{3}"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(
            rf"  epoch {epoch}/2 +\d+s  loss {number}  val_loss {number}  "
            rf"y auc {number}  z acc {number}",
            line,
        ), line
