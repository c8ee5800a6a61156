"""`mmoe run` on Beam's direct runner with two worker processes gives the
Transform output of one worker."""

import glob
import os
import pathlib
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = ["Title", "Review Text"]
LABELS = ["Recommended IND", "Rating", "Department Name"]
# What a Beam worker process logs, relayed by the runner (`--verbose`).
WORKER_LOG = "apache_beam.runners.portability.local_job_service:Worker"
TWO_WORKERS = [
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]


@pytest.fixture(scope="module")
def small_csv(reviews_slice):
    return reviews_slice(train=200, validation=50, test=50)


def _mmoe_run(csv: str, output: str, beam_args: list[str], timeout=1800):
    """`mmoe run` in its own process group; the group (Beam's worker
    processes too) is killed if it outlives `timeout` or the test fails."""
    command = (
        [sys.executable, "-m", "pipeline.cli", "run", "--data", csv]
        + ["--text-column", *TEXT, "--label-columns", *LABELS]
        + ["--output", output, "--epochs", "1", "--verbose"]
        + ["--trainer-arg", "embedding_dim=8", "--trainer-arg", "linear=false"]
        + ["--trainer-arg", "encoder=mean"]
        + ["--min-metric", "Recommended IND=0"]  # Any model is pushed.
        + [f"--beam-arg={arg}" for arg in beam_args]
    )
    log_path = output + ".log"
    with open(log_path, "w+") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.seek(0)
        text = log.read()
    assert process.returncode == 0, text[-3000:]
    return text


def _transform_output(output: str) -> tuple[dict, dict]:
    """The Transform's tf.Examples per split, each serialized with its
    features in name order (a process may write a proto's map in any
    order), sorted (shards may split and order the rows differently); and
    its transform graph's asset files."""
    import tensorflow as tf

    root = os.path.join(output, "tfx", "Transform")
    records = {}
    for split in ("train", "validation", "test"):
        (folder,) = glob.glob(
            os.path.join(root, "transformed_examples", "*", f"Split-{split}")
        )
        files = sorted(glob.glob(os.path.join(folder, "*")))
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
        records[split] = sorted(
            tf.train.Example.FromString(r.numpy()).SerializeToString(
                deterministic=True
            )
            for r in dataset
        )
    (assets,) = glob.glob(
        os.path.join(root, "transform_graph", "*", "transform_fn", "assets")
    )
    vocabularies = {}
    for name in sorted(os.listdir(assets)):
        with open(os.path.join(assets, name), "rb") as f:
            vocabularies[name] = f.read()
    return records, vocabularies


@pytest.mark.slow
def test_transform_on_two_beam_workers_equals_one_worker(small_csv, tmp_path):
    """The whole pipeline through `mmoe run --beam-arg`, once on the
    direct runner's default here (one worker, in memory) and once with two
    worker processes: the transformed examples of every split (as sets of
    tf.Examples) and every vocabulary file are equal."""
    one = str(tmp_path / "one_worker")
    two = str(tmp_path / "two_workers")
    log_one = _mmoe_run(small_csv, one, [])
    log_two = _mmoe_run(small_csv, two, TWO_WORKERS)
    # Only worker processes log through Beam's local job service.
    assert WORKER_LOG not in log_one
    assert WORKER_LOG in log_two, log_two[-3000:]
    records_one, vocabularies_one = _transform_output(one)
    records_two, vocabularies_two = _transform_output(two)
    assert {s: len(r) for s, r in records_two.items()} == {
        "train": 200,
        "validation": 50,
        "test": 50,
    }
    for split, records in records_one.items():
        assert records_two[split] == records, split
    assert any(name.endswith("_vocab") for name in vocabularies_one)
    assert vocabularies_two == vocabularies_one
