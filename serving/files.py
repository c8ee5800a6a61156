"""Input files named by a path or a pattern, on any filesystem Beam reads.

A local path or glob (`data/part-*.csv.gz`) is matched with Python's glob;
a URL (`gs://`, `s3://`, `hdfs://`, ...) through Apache Beam's FileSystems,
which reads the schemes whose client is installed (`gs://` comes with
apache-beam[gcp]), and through `tf.io.gfile` for a scheme Beam does not
know. Files are read as byte streams: nothing is loaded whole.
"""

import glob
import os
import re

# A name with one of these is a pattern, not a file name.
_GLOB = re.compile(r"[*?\[]")


class FilesError(ValueError):
    """No file matched, or a scheme no installed client reads; one line."""


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (`scheme://...`) rather than a local path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) is not None


def is_pattern(path: str) -> bool:
    return _GLOB.search(path) is not None


def match(pattern: str, beam_args: list[str] | None = None) -> list[str]:
    """The files `pattern` names, sorted; a plain name is itself.

    `beam_args` are Beam pipeline options for a URL's filesystem, e.g.
    `--s3_region_name=eu-west-1` or `--project=...`.

    Raises:
        FilesError: nothing matched (`Data file not found: ...`), or the
            scheme has no installed client.
    """
    if not is_remote(pattern):
        if os.path.isfile(pattern):  # A name may hold [ or * itself.
            found = [pattern]
        else:
            found = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    else:
        found = _match_remote(pattern, beam_args)
    if not found:
        if is_pattern(pattern):
            raise FilesError(f"No file matches {pattern}")
        raise FilesError(f"Data file not found: {pattern}")
    return found


def open_binary(path: str, beam_args: list[str] | None = None):
    """`path` opened for reading bytes (compressed files as they are)."""
    if not is_remote(path):
        return open(path, "rb")
    filesystem = _beam_filesystem(path, beam_args)
    if filesystem is None:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return filesystem.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _beam_filesystem(path: str, beam_args):
    """Beam's filesystem for `path`'s scheme with `beam_args` as its
    options, or None when Beam has none."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    try:
        kind = type(FileSystems.get_filesystem(path))
    except ValueError:
        return None
    return kind(PipelineOptions(beam_args or []))


def _match_remote(pattern: str, beam_args) -> list[str]:
    filesystem = _beam_filesystem(pattern, beam_args)
    if filesystem is not None:
        try:
            (result,) = filesystem.match([pattern])
        except Exception as e:  # Beam wraps every failure in its own type.
            hint = ""
            if "Missing boto3" in str(e):
                hint = " (s3:// needs: pip install 'apache-beam[aws]')"
            raise FilesError(
                f"Could not list {pattern}: {_first_line(e)}{hint}"
            ) from None
        return sorted(m.path for m in result.metadata_list)
    import tensorflow as tf

    try:
        return sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as e:
        raise FilesError(
            f"Could not list {pattern}: {_first_line(e.message)}"
        ) from None


def _first_line(error) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
