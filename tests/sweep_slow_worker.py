"""Dask worker preload for tests/test_sweep.py: every partition waits THPREPLAY_TEST_RENAME_DELAY seconds
(default 0.3) between being built and being renamed into place, so that a worker killed mid-sweep is
killed mid-task, with a half-made partition on disk. Only the timing changes, not what is written.

    dask worker SCHEDULER --preload tests/sweep_slow_worker.py
"""

import os
import time

import thpreplay.sweep as sweep

_replace_dir = sweep.replace_dir
DELAY = float(os.environ.get("THPREPLAY_TEST_RENAME_DELAY", "0.3"))


def _slow_replace_dir(tmp, final):
    time.sleep(DELAY)
    _replace_dir(tmp, final)


sweep.replace_dir = _slow_replace_dir
