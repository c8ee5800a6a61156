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


def match(pattern: str) -> list[str]:
    """The files `pattern` names, sorted; a plain name is itself.

    Raises:
        FilesError: nothing matched (`Data file not found: ...`), or the
            scheme has no installed client.
    """
    if not is_remote(pattern):
        if is_pattern(pattern):
            found = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        else:
            found = [pattern] if os.path.isfile(pattern) else []
    else:
        found = _match_remote(pattern)
    if not found:
        if is_pattern(pattern):
            raise FilesError(f"No file matches {pattern}")
        raise FilesError(f"Data file not found: {pattern}")
    return found


def open_binary(path: str):
    """`path` opened for reading bytes (compressed files as they are)."""
    if not is_remote(path):
        return open(path, "rb")
    filesystems = _beam_filesystems(path)
    if filesystems is None:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return filesystems.open(
        path, compression_type=CompressionTypes.UNCOMPRESSED
    )


def _beam_filesystems(path: str):
    """Beam's FileSystems when it has a filesystem for `path`'s scheme, else
    None."""
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        return None
    return FileSystems


def _match_remote(pattern: str) -> list[str]:
    filesystems = _beam_filesystems(pattern)
    if filesystems is not None:
        try:
            (result,) = filesystems.match([pattern])
        except Exception as e:  # Beam wraps every failure in its own type.
            raise FilesError(
                f"Could not list {pattern}: {_first_line(e)}"
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
