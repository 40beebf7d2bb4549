"""Cooperative cancellation of long waits, for callers that run methods side by side.

``call_within(event, fn, ...)`` runs ``fn`` with ``event`` as the cancellation event of its context
(a ``contextvars`` variable: per thread); inside, ``requested()`` says whether it is set.  The wait
for z3's child process checks it (``complete.smt_verify.run_query``): the cross-check stops z3
once the other methods have decided (``complete.crosscheck``).
"""
from __future__ import annotations

import contextvars
import threading

_EVENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("stverify_cancel", default=None)


def call_within(event: threading.Event, fn, *args, **kwargs):
    token = _EVENT.set(event)
    try:
        return fn(*args, **kwargs)
    finally:
        _EVENT.reset(token)


def requested() -> bool:
    event = _EVENT.get()
    return event is not None and event.is_set()
