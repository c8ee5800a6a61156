"""A fingerprint of the code the Transform and Trainer run.

Both components name their functions by module path
(`serving.preprocessing.preprocessing_fn`, `pipeline.model.run_fn`), so
TFX's cache key holds the name, not the code: after an edit to keras_mmoe,
pipeline or serving, or an upgrade of the libraries that train and export
the model, a rerun would reuse the old model. The runners put this
fingerprint in both components' `custom_config`, which is in the key.
"""

import hashlib
import importlib.metadata
import pathlib

PACKAGES = ("keras_mmoe", "pipeline", "serving")
ROOT = pathlib.Path(__file__).resolve().parent.parent
# The libraries whose versions change what Transform and Trainer produce.
LIBRARIES = (
    "tensorflow",
    "keras",
    "tensorflow-transform",
    "tensorflow-text",
    "tfx",
    "tfx-bsl",
    "scikit-learn",
    "numpy",
)


def library_versions(libraries=LIBRARIES) -> dict[str, str]:
    """{distribution: installed version}, "missing" when not installed."""
    versions = {}
    for name in libraries:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def fingerprint(
    root: pathlib.Path = ROOT, packages=PACKAGES, versions=None
) -> str:
    """sha256 over the packages' non-test `.py` files (paths and bytes) and
    the library versions (`library_versions()` unless given)."""
    digest = hashlib.sha256()
    versions = library_versions() if versions is None else versions
    for name, version in sorted(versions.items()):
        digest.update(f"{name}=={version}".encode() + b"\0")
    for package in packages:
        files = sorted((pathlib.Path(root) / package).rglob("*.py"))
        for path in files:
            if path.name.endswith("_test.py"):
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
