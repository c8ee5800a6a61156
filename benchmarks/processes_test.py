import os

import numpy as np
import pytest

from benchmarks import processes


def _allocate_mb(mb):
    before = processes.peak_rss_mb()
    block = np.ones(mb * 2**20 // 8)  # Touched, so resident.
    return before, processes.peak_rss_mb(), float(block.sum())


def _fail():
    raise ValueError("no such thing")


def test_forked_process_has_its_own_peak_memory():
    before, after, _ = processes.run_forked(_allocate_mb, 100)
    assert after - before >= 90


def test_forked_process_is_another_process():
    assert processes.run_forked(os.getpid) != os.getpid()


def test_forked_error_is_raised_in_the_parent():
    with pytest.raises(RuntimeError, match="no such thing"):
        processes.run_forked(_fail)
