import pytest

from keras_mmoe.task import Task


def test_binary_and_multiclass_heads():
    assert Task("click", 2).output_units == 1
    assert Task("rating", 5).output_units == 5
    assert Task("click", 2).is_binary and not Task("rating", 5).is_binary


def test_config_round_trip_and_coercion():
    task = Task("rating", 5, loss_weight=0.5)
    assert Task.from_config(task.get_config()) == task
    assert Task.coerce(("rating", 5, 0.5)) == task
    assert Task.coerce({"name": "rating", "num_classes": 5, "loss_weight": 0.5})


def test_reads_from_is_a_tuple_and_survives_json():
    import json

    task = Task("recommended", 2, reads_from=["rating", "department"])
    assert task.reads_from == ("rating", "department")
    assert Task.from_config(json.loads(json.dumps(task.get_config()))) == task
    assert Task("rating", 5).reads_from == ()


@pytest.mark.parametrize(
    "args, message",
    [
        (("", 2), "name=''"),
        (("has space", 2), "name='has space'"),
        (("a", 1), "num_classes=1"),
        (("a", 2, -1.0), "loss_weight=-1.0"),
        (("a", 2, 1.0, "b"), "reads_from='b'"),
        (("a", 2, 1.0, ["a"]), r"reads_from=\['a'\]"),
        (("a", 2, 1.0, ["b", "b"]), r"reads_from=\['b', 'b'\]"),
        (("a", 2, 1.0, [""]), r"reads_from=\[''\]"),
    ],
)
def test_invalid_tasks_name_the_value(args, message):
    with pytest.raises(ValueError, match=message):
        Task(*args)
