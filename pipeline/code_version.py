"""A fingerprint of the code the Transform and Trainer run.

Both components name their functions by module path
(`serving.preprocessing.preprocessing_fn`, `pipeline.model.run_fn`), so
TFX's cache key holds the name, not the code: after an edit to keras_mmoe,
pipeline or serving, a rerun would reuse the old model. The runners put this
fingerprint in both components' `custom_config`, which is in the key.
"""

import hashlib
import pathlib

PACKAGES = ("keras_mmoe", "pipeline", "serving")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def fingerprint(root: pathlib.Path = ROOT, packages=PACKAGES) -> str:
    """sha256 over the packages' non-test `.py` files, paths and bytes."""
    digest = hashlib.sha256()
    for package in packages:
        files = sorted((pathlib.Path(root) / package).rglob("*.py"))
        for path in files:
            if path.name.endswith("_test.py"):
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
