"""The attack a complete method runs before its search (``verify(..., attack=True)``): once its
first bound leaves the instance open (a counterexample cannot exist where the bound proves every
competitor), at most ``root_attack`` seconds (``dispatch.attack_budget``).  A hit is reported as
``falsified`` with ``stats["found_by"] = "attack"``, ``margin_ub`` the replayed margin of the point
and ``margin_lb`` None."""
from __future__ import annotations

import time

from ..replay import replay
from ..result import VerifyResult
from .attack import attack


def falsify(net, x, y, threat, seconds: float, domain, method: str, start: float) -> VerifyResult | None:
    """The attack's ``falsified`` result (``start``: when the method began), or None."""
    if seconds <= 0:
        return None
    point = attack(net, x, y, threat, time_limit=seconds, domain=domain)
    if point is None:
        return None
    return VerifyResult("falsified", method, time.perf_counter() - start, None, point,
                        {"found_by": "attack", "threat": threat.spec()}, "found by the attack before the complete search",
                        margin_ub=replay(net, x, y, threat, point, domain).margin64)
