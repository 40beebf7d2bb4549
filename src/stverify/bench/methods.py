"""Which methods of a run's records are complete: the verify() methods that decide every
instance, given time (``all``, their cross-check, included)."""
from __future__ import annotations

from ..dispatch import COMPLETE as VERIFY_COMPLETE

COMPLETE = VERIFY_COMPLETE | {"all"}


def is_complete(r: dict) -> bool:
    return r["call"]["method"] in COMPLETE
