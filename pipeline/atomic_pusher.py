"""A Pusher whose new model version appears in the serving directory whole.

TFX's own Pusher copies files straight into `<base>/<version>/`, so TF
Serving, polling the base directory, can see a version folder that is still
being written. This one copies into a hidden temporary folder beside it (TF
Serving ignores names that are not numbers) and renames it into place: on a
local or POSIX file system the version appears at once, complete. A model
identical to the newest version there (a rerun that trained nothing new) is
not pushed again.
"""

import hashlib
import os
import time

from absl import logging
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


def next_version(base_directory: str) -> str:
    """The Unix time, or one more than the newest version if not newer."""
    versions = [
        int(name)
        for name in (
            fileio.listdir(base_directory)
            if fileio.exists(base_directory)
            else []
        )
        if name.strip("/").isdigit()
    ]
    return str(max([int(time.time()), *(v + 1 for v in versions)]))


def push_atomically(model_path: str, base_directory: str) -> str:
    """Copies a SavedModel to `<base>/<version>/` atomically -> that path."""
    fileio.makedirs(base_directory)
    version = next_version(base_directory)
    final = os.path.join(base_directory, version)
    staging = os.path.join(base_directory, f".tmp-{version}-{os.getpid()}")
    try:
        io_utils.copy_dir(model_path, staging)
        fileio.rename(staging, final)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
    return final


def _tree_digest(path: str) -> str:
    """sha256 over a folder's relative file paths and their bytes."""
    digest = hashlib.sha256()
    for root, dirs, files in fileio.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with fileio.open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


def newest_if_same(model_path: str, base_directory: str) -> str | None:
    """The newest version under `base_directory` when it holds exactly the
    files of `model_path` (a rerun that trained nothing new), else None."""
    if not fileio.exists(base_directory):
        return None
    versions = [
        name.strip("/")
        for name in fileio.listdir(base_directory)
        if name.strip("/").isdigit()
    ]
    if not versions:
        return None
    newest = os.path.join(base_directory, max(versions, key=int))
    return newest if _tree_digest(newest) == _tree_digest(model_path) else None


class AtomicPusherExecutor(pusher_executor.Executor):
    """Pushes a blessed model to a file system, atomically."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
            destination,
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError(
                "AtomicPusher pushes to a file system only. Received: "
                f"{destination}"
            )
        base_directory = destination.filesystem.base_directory
        serving_path = newest_if_same(model_path, base_directory)
        if serving_path is not None:
            # TF Serving would load the same model again for nothing.
            logging.info(
                "Model is identical to the serving version %s; nothing "
                "new pushed.",
                serving_path,
            )
        else:
            serving_path = push_atomically(model_path, base_directory)
            logging.info("Model pushed to serving path %s.", serving_path)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(
            model_push,
            pushed_destination=serving_path,
            pushed_version=os.path.basename(serving_path),
        )


class AtomicPusher(tfx.components.Pusher):
    """`tfx.components.Pusher` with an atomic file-system push."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)
