"""Memory budget of the bound computations: how many backward-pass rows one chunk may hold.

A chunk of R rows with E elements per row (the largest coefficient tensor of its backward pass:
a receptive-field box times channels, or a whole layer for dense rows) keeps about
``LIVE_COPIES`` tensors of R x E elements alive at once (coefficients, their positive and
negative parts, the gathered slopes or set data, products), so R is chosen with
R * E * itemsize * LIVE_COPIES <= budget.  The default budget is half the memory available now
(host memory, or free memory of the CUDA device).
"""
from __future__ import annotations

import time

import psutil
import torch

LIVE_COPIES = 10
DEFAULT_SHARE = 0.5
REFRESH_S = 10.0
_read: dict[str, tuple[float, int]] = {}
# Speed caps a chunk well below the budget: tensors of about this many elements stay in cache and
# reuse freed allocations, where large fresh ones are page-faulted in (on the 2-core test machine
# an elementwise pass over 1M float64 elements per tensor ran 3-10x faster than over 35M).
CHUNK_ELEMENTS = 1 << 19


def default_budget(device=None) -> int:
    """Bytes: DEFAULT_SHARE of the memory available on ``device`` (read at most every
    REFRESH_S seconds: reading it costs about as much as bounding a tiny network)."""
    key = str(device)
    now = time.monotonic()
    if key not in _read or now - _read[key][0] > REFRESH_S:
        if device is not None and torch.device(device).type == "cuda":
            free = torch.cuda.mem_get_info(torch.device(device))[0]
        else:
            free = psutil.virtual_memory().available
        _read[key] = (now, int(DEFAULT_SHARE * free))
    return _read[key][1]


def rows_per_chunk(budget: int, elements_per_row: int, itemsize: int) -> int:
    """Rows of ``elements_per_row`` elements per chunk: at most what ``budget`` allows and about
    CHUNK_ELEMENTS elements per tensor (at least 1 row)."""
    e = max(1, elements_per_row)
    return max(1, min(int(budget) // (LIVE_COPIES * e * itemsize), CHUNK_ELEMENTS // e))
