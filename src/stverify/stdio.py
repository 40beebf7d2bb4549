"""Keep stdout for results: what C libraries print goes to stderr instead.

Solvers write to file descriptor 1 from C (HiGHS prints its banner there when the first ``Highs``
object is created, whatever ``output_flag`` says), where Python's ``sys.stdout`` redirection cannot
reach; ``stdout_to_stderr`` points descriptor 1 at descriptor 2 for a block, so that a ``--json``
stdout holds exactly the JSON documents.
"""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager, redirect_stdout

_libc = ctypes.CDLL(None)


@contextmanager
def stdout_to_stderr():
    """Within the block, Python's and C's writes to stdout go to stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _libc.fflush(None)  # C's buffered stdout still holds text meant for the redirected descriptor
        os.dup2(saved, 1)
        os.close(saved)
