"""A tiny Transform output and exported model for the serving and trainer
tests.

`tiny_transform()` runs the real `preprocessing_fn` with tf.Transform's Beam
implementation, in process, on a few hand-written review rows, and lays the
result out as the Transform component does: a transform graph folder
(`tft.TFTransformOutput` reads it) and gzipped tf.Example TFRecords of the
transformed rows under `Split-<name>/`. The raw feature spec is what
CsvExampleGen and SchemaGen(infer_feature_shape=False) give: every column a
`VarLenFeature`, numbers int64.

Splits: `train` (analyzed and transformed), `validation` (transformed) and
`unlabelled` (transformed rows without any label, for error tests). The
label column `Single Class` has one class only, also for error tests.

`export_tiny_model()` exports a small untrained MMoE text model with that
Transform graph, as the Trainer exports its model.

`gcs_emulator()` serves a Cloud Storage bucket on 127.0.0.1 for the tests
that read `gs://` input.
"""

import contextlib
import dataclasses
import functools
import os
import shutil
import socket
import tempfile

import keras

TEXT_COLUMNS = ["Title", "Review Text"]
RECOMMENDED = "Recommended IND"  # int64 0/1: binary task
DEPARTMENT = "Department Name"  # string, 3 classes
SINGLE = "Single Class"  # one class only
LABEL_COLUMNS = [RECOMMENDED, DEPARTMENT, SINGLE]
MAX_LENGTH = 12
NUM_OOV_BUCKETS = 2

_DEPARTMENTS = {"dress": "Dresses", "top": "Tops", "pants": "Bottoms"}
_OPINIONS = {1: ["great", "lovely", "perfect"], 0: ["awful", "poor", "bad"]}


@dataclasses.dataclass
class TinyTransform:
    """Where `tiny_transform()` wrote its output, and the raw rows."""

    root: str
    transform_graph: str  # TFTransformOutput folder
    examples: str  # Split-<name>/ folders of transformed gzipped TFRecords
    preprocessing_config: dict  # PreprocessingConfig.to_dict()
    raw_rows: dict  # split -> list of raw row dicts (VarLen lists)

    def split_pattern(self, split: str) -> str:
        return os.path.join(self.examples, f"Split-{split}", "*")

    def texts(self, split: str) -> list[str]:
        """The rows' text columns joined as `preprocessing_fn` joins them."""
        return [
            " ".join(
                row[c][0].decode() if row[c] else "" for c in TEXT_COLUMNS
            ).strip()
            for row in self.raw_rows[split]
        ]


def raw_feature_spec() -> dict:
    import tensorflow as tf

    return {
        "Title": tf.io.VarLenFeature(tf.string),
        "Review Text": tf.io.VarLenFeature(tf.string),
        RECOMMENDED: tf.io.VarLenFeature(tf.int64),
        DEPARTMENT: tf.io.VarLenFeature(tf.string),
        SINGLE: tf.io.VarLenFeature(tf.string),
        "Age": tf.io.VarLenFeature(tf.int64),  # unused by the model
    }


def _row(i: int, labelled: bool = True) -> dict:
    word, department = list(_DEPARTMENTS.items())[i % 3]
    recommended = (i // 3) % 2
    opinion = _OPINIONS[recommended][i % 3]
    # Every fifth row misses its Recommended label, every seventh its
    # Department: missing labels are -1 and weigh nothing.
    return {
        "Title": [f"{opinion} {word}".encode()],
        "Review Text": (
            []
            if i % 4 == 3
            else [f"This {word} is {opinion}, size {i}.".encode()]
        ),
        RECOMMENDED: [recommended] if labelled and i % 5 != 4 else [],
        DEPARTMENT: ([department.encode()] if labelled and i % 7 != 6 else []),
        SINGLE: [b"only"] if labelled else [],
        "Age": [20 + i],
    }


def raw_rows() -> dict:
    return {
        "train": [_row(i) for i in range(48)],
        "validation": [_row(i) for i in range(100, 118)],
        "unlabelled": [_row(i, labelled=False) for i in range(200, 208)],
    }


def serialize_raw(rows: list[dict]) -> list[bytes]:
    """Raw rows as serialized tf.Examples, as ExampleGen writes them."""
    import tensorflow as tf

    def feature(values):
        if values and isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={k: feature(v) for k, v in row.items() if v}
            )
        ).SerializeToString()
        for row in rows
    ]


def _write_gzip_tfrecords(path: str, records: list[bytes]) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


@functools.cache
def tiny_transform() -> TinyTransform:
    """Runs the real preprocessing_fn on the tiny rows (once per process)."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import metadata_io

    from serving import features, preprocessing

    root = tempfile.mkdtemp(prefix="tiny_transform_")
    config = features.PreprocessingConfig(
        text_columns=TEXT_COLUMNS,
        label_columns=LABEL_COLUMNS,
        max_length=MAX_LENGTH,
        vocabulary_size=40,
        num_oov_buckets=NUM_OOV_BUCKETS,
    )
    rows = raw_rows()
    metadata = tft.DatasetMetadata.from_feature_spec(raw_feature_spec())
    transform_graph = os.path.join(root, "transform_graph")
    preprocessing_fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config=config.to_dict()
    )
    transformed = {}
    with beam.Pipeline() as p:
        with tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
            train = p | "Train" >> beam.Create(rows["train"])
            (train_out, out_metadata), transform_fn = (
                train,
                metadata,
            ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
            _ = transform_fn | tft_beam.WriteTransformFn(transform_graph)
            transformed["train"] = train_out
            for split in ("validation", "unlabelled"):
                data = p | f"Create{split}" >> beam.Create(rows[split])
                transformed[split], _ = (
                    (data, metadata),
                    transform_fn,
                ) | f"Transform{split}" >> tft_beam.TransformDataset()
            for split, pcoll in transformed.items():
                _ = (
                    pcoll
                    | f"Collect{split}" >> beam.combiners.ToList()
                    | (f"Store{split}")
                    >> beam.Map(_store, root=root, split=split)
                )
    # The Transform component writes the raw schema beside the graph.
    metadata_io.write_metadata(
        metadata,
        os.path.join(transform_graph, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    tft_output = tft.TFTransformOutput(transform_graph)
    coder = tft.coders.ExampleProtoCoder(tft_output.transformed_metadata.schema)
    examples = os.path.join(root, "transformed_examples")
    for split in transformed:
        instances = _load(root, split)
        _write_gzip_tfrecords(
            os.path.join(examples, f"Split-{split}", "data.gz"),
            [coder.encode(instance) for instance in instances],
        )
    shutil.rmtree(os.path.join(root, "tmp"), ignore_errors=True)
    return TinyTransform(
        root=root,
        transform_graph=transform_graph,
        examples=examples,
        preprocessing_config=config.to_dict(),
        raw_rows=rows,
    )


def _store(instances, root, split):
    import pickle

    with open(os.path.join(root, f"{split}.pkl"), "wb") as f:
        pickle.dump(instances, f)


def _load(root, split):
    import pickle

    with open(os.path.join(root, f"{split}.pkl"), "rb") as f:
        return pickle.load(f)


TASKS = {"recommended_ind": 2, "department_name": 3}


def tiny_model(tft_output):
    """A small MMoE text model on the tiny Transform's token ids."""
    from keras_mmoe import MultiTaskModel, Task

    keras.utils.set_random_seed(3)
    vocabulary_size = (
        tft_output.vocabulary_size_by_name("tokens_vocab") + 1 + NUM_OOV_BUCKETS
    )
    return MultiTaskModel(
        tasks=[Task(t, n) for t, n in TASKS.items()],
        body="mmoe",
        body_config={"num_experts": 2, "expert_units": 8},
        text_encoder={
            "vocabulary_size": vocabulary_size,
            "embedding_dim": 8,
            # Random embeddings far from 0 so outputs differ between texts.
            "embeddings_initializer": keras.initializers.RandomNormal(
                stddev=1.0, seed=3
            ),
        },
        sequence_length=MAX_LENGTH,
    )


def export_tiny_model(export_dir: str, warmup_texts=None):
    """Exports `tiny_model` (untrained) to `export_dir`.

    Returns (tiny transform, tft output, keras model, export_dir).
    """
    import tensorflow_transform as tft

    from serving import export

    tiny = tiny_transform()
    tft_output = tft.TFTransformOutput(tiny.transform_graph)
    model = tiny_model(tft_output)
    export.export_serving_model(
        model,
        tft_output,
        export_dir,
        text_columns=TEXT_COLUMNS,
        label_columns=LABEL_COLUMNS,
        warmup_texts=warmup_texts,
    )
    return tiny, tft_output, model, export_dir


@contextlib.contextmanager
def gcs_emulator(bucket: str = "mmoe-test"):
    """A Cloud Storage emulator (gcp-storage-emulator, in memory) on
    127.0.0.1 with one bucket; yields that bucket's google-cloud-storage
    handle for uploads.

    While open, STORAGE_EMULATOR_HOST points every google-cloud-storage
    client (Beam's GCS filesystem uses one) at it, and Beam's lookup of
    credentials is answered with none: an emulator takes none, and Beam
    would retry the lookup for about 30 s before connecting anonymously.
    """
    from apache_beam.internal.gcp import auth
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server(
        "127.0.0.1", port, in_memory=True, default_bucket=bucket
    )
    server.start()
    saved_env = os.environ.get("STORAGE_EMULATOR_HOST")
    saved_auth = (
        auth._Credentials._credentials_init,
        auth._Credentials._credentials,
    )
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    auth._Credentials._credentials_init = True
    auth._Credentials._credentials = None
    try:
        yield storage.Client.create_anonymous_client().bucket(bucket)
    finally:
        auth._Credentials._credentials_init, auth._Credentials._credentials = (
            saved_auth
        )
        if saved_env is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved_env
        server.stop()
