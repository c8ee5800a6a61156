import gzip
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv
from tfx.components.example_gen.import_example_gen import (
    executor as tfx_import,
)
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from pipeline import example_gen

SPLITS = ("train", "test")
CSV = {
    "train": (
        "Review Text,Rating,Score\n"
        'plain,5,0.5\n"two\nlines, and a comma",1,2\n'
        ',3,\n"a ""quote""",4,1.25\n'
    ),
    "test": "Review Text,Rating,Score\nonly,2,7\n",
}


def _run(executor, base, out, hash_split=False):
    splits = ["all"] if hash_split else list(SPLITS)
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=s, pattern=f"{s}/*")
            for s in splits
        ]
    )
    output_config = example_gen_pb2.Output()
    if hash_split:
        output_config.split_config.splits.extend(
            [
                example_gen_pb2.SplitConfig.Split(name="a", hash_buckets=1),
                example_gen_pb2.SplitConfig.Split(name="b", hash_buckets=1),
            ]
        )
    to_json = proto_utils.proto_to_json
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    executor().Do(
        {},
        {standard_component_specs.EXAMPLES_KEY: [examples]},
        {
            standard_component_specs.INPUT_BASE_KEY: str(base),
            standard_component_specs.INPUT_CONFIG_KEY: to_json(input_config),
            standard_component_specs.OUTPUT_CONFIG_KEY: to_json(output_config),
            standard_component_specs.OUTPUT_DATA_FORMAT_KEY: (
                example_gen_pb2.FORMAT_TF_EXAMPLE
            ),
        },
    )
    return examples


def _read(folder) -> list[tf.train.Example]:
    records = []
    for name in sorted(os.listdir(folder)):
        records += [
            tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(
                os.path.join(folder, name), compression_type="GZIP"
            )
        ]
    return records


def _bytes(example) -> bytes:
    return example.SerializeToString(deterministic=True)


def _staged_csv(root):
    for split, text in CSV.items():
        os.makedirs(root / split)
        (root / split / "data.csv").write_text(text)


def test_csv_gives_tfx_examples_in_input_order(tmp_path):
    _staged_csv(tmp_path / "in")
    ours = _run(example_gen.CsvExecutor, tmp_path / "in", tmp_path / "ours")
    theirs = _run(tfx_csv.Executor, tmp_path / "in", tmp_path / "tfx")
    assert ours.split_names == theirs.split_names
    assert ours.get_string_custom_property(
        "payload_format"
    ) == theirs.get_string_custom_property("payload_format")
    for split in SPLITS:
        got = _read(tmp_path / "ours" / f"Split-{split}")
        want = _read(tmp_path / "tfx" / f"Split-{split}")
        # TFX's shuffle reorders; the examples and their types are equal.
        assert sorted(map(_bytes, got)) == sorted(map(_bytes, want))
    train = _read(tmp_path / "ours" / "Split-train")
    texts = [e.features.feature["Review Text"].bytes_list.value for e in train]
    assert texts == [
        [b"plain"],
        [b"two\nlines, and a comma"],
        [],
        [b'a "quote"'],
    ]
    ratings = [e.features.feature["Rating"].int64_list.value for e in train]
    assert ratings == [[5], [1], [3], [4]]
    scores = [e.features.feature["Score"].float_list.value for e in train]
    assert scores == [[0.5], [2.0], [], [1.25]]


def test_csv_hash_split_matches_tfx(tmp_path):
    os.makedirs(tmp_path / "in" / "all")
    (tmp_path / "in" / "all" / "data.csv").write_text(
        "t,y\n" + "".join(f"row {i},{i % 3}\n" for i in range(40))
    )
    _run(example_gen.CsvExecutor, tmp_path / "in", tmp_path / "ours", True)
    _run(tfx_csv.Executor, tmp_path / "in", tmp_path / "tfx", True)
    for split in ("a", "b"):
        got = _read(tmp_path / "ours" / f"Split-{split}")
        want = _read(tmp_path / "tfx" / f"Split-{split}")
        assert got and sorted(map(_bytes, got)) == sorted(map(_bytes, want))


def test_unbalanced_quotes_fail(tmp_path):
    os.makedirs(tmp_path / "in" / "train")
    os.makedirs(tmp_path / "in" / "test")
    (tmp_path / "in" / "train" / "data.csv").write_text('t,y\n"open,1\n')
    (tmp_path / "in" / "test" / "data.csv").write_text("t,y\nok,1\n")
    with pytest.raises(Exception, match="unbalanced quotes"):
        _run(example_gen.CsvExecutor, tmp_path / "in", tmp_path / "ours")


def test_tfrecord_keeps_the_records_and_their_order(tmp_path):
    written = {}
    for split in SPLITS:
        os.makedirs(tmp_path / "in" / split)
        records = [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "t": tf.train.Feature(
                            bytes_list=tf.train.BytesList(
                                value=[f"{split} {i}".encode()]
                            )
                        )
                    }
                )
            )
            for i in range(30)
        ]
        with tf.io.TFRecordWriter(
            str(tmp_path / "in" / split / "data.tfrecord")
        ) as f:
            for r in records:
                f.write(r.SerializeToString())
        written[split] = records
    _run(example_gen.TfRecordExecutor, tmp_path / "in", tmp_path / "ours")
    _run(tfx_import.Executor, tmp_path / "in", tmp_path / "tfx")
    for split in SPLITS:
        got = _read(tmp_path / "ours" / f"Split-{split}")
        assert got == written[split]
        want = _read(tmp_path / "tfx" / f"Split-{split}")
        assert sorted(map(_bytes, got)) == sorted(map(_bytes, want))
    assert gzip.open(next((tmp_path / "ours" / "Split-train").iterdir())).read(
        1
    )


@pytest.mark.parametrize("input_format", ["csv", "tfrecord"])
def test_pipeline_streams_only_input_that_ingest_shuffled(
    tmp_path, input_format
):
    from pipeline import configs
    from pipeline.pipeline import create_pipeline

    def executor(shuffled):
        pipeline = create_pipeline(
            pipeline_name="p",
            pipeline_root=str(tmp_path / "root"),
            data_root=str(tmp_path / "data"),
            preprocessing_config={},
            tasks={"y": 2},
            trainer_config=dict(configs.TRAINER_DEFAULTS),
            serving_model_dir=str(tmp_path / "serving"),
            input_format=input_format,
            shuffled_input=shuffled,
        )
        (node,) = [c for c in pipeline.components if "ExampleGen" in c.id]
        return node.executor_spec.executor_class

    ours = executor(True)
    assert ours in (example_gen.CsvExecutor, example_gen.TfRecordExecutor)
    stock = executor(False)
    assert stock is not ours and stock.__module__.startswith("tfx.")
