"""Deadlines: absolute ``time.perf_counter()`` instants that long computations check between steps.

A method's ``timeout`` becomes one deadline that every stage (bounds, LP tightening, encoding,
building the solver's model, solving) checks, so the whole call ends within the timeout plus one
step; a stage that finds it passed raises ``DeadlineExceeded``, which its method turns into a
``timeout`` result with whatever sound bound it already has.
"""
from __future__ import annotations

import math
import time

from .errors import InputError


class DeadlineExceeded(Exception):
    """The deadline passed before the work was done (not a user error: a ``timeout`` result)."""


def of(timeout: float | None, start: float | None = None) -> float:
    """The deadline ``timeout`` seconds after ``start`` (default now); +inf for no timeout."""
    if timeout is not None and math.isnan(timeout):
        raise InputError("timeout must be a number of seconds, got nan")
    return math.inf if timeout is None else (time.perf_counter() if start is None else start) + timeout


def left(deadline: float) -> float | None:
    """Seconds until the deadline (>= 0), or None when there is none."""
    return None if math.isinf(deadline) else max(deadline - time.perf_counter(), 0.0)


def passed(deadline: float) -> bool:
    return time.perf_counter() >= deadline


def check(deadline: float, what: str = "") -> None:
    """Raise DeadlineExceeded if the deadline has passed (``what``: the stage, for the message)."""
    if time.perf_counter() >= deadline:
        raise DeadlineExceeded(f"time limit reached{' during ' + what if what else ''}")
