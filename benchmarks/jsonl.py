"""Records of finished work, kept as JSON lines, for benchmarks that resume.

A long benchmark appends one line as each unit of work (a run, a cell)
finishes, and reads the file back when it starts, so that a killed process
restarted with the same command trains only what is missing. A kill can
cut the last line short: `read` skips any line that is not a whole JSON
object, and `append` first ends such a line, so that the new record starts
on a line of its own. Which records still count (the same settings, the
same code version) is the caller's to decide.
"""

import json
import os
import pathlib


def read(path) -> list[dict]:
    """The records in `path`, in file order (none if it does not exist);
    a line that is not a whole JSON object is skipped."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    found = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def append(path, record: dict) -> None:
    """Appends `record` as one line and syncs it to disk."""
    line = (json.dumps(record) + "\n").encode()
    with open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
