"""verify(): one entry point for every method, returning a VerifyResult.

Methods: ``stbp`` (exact first layer + IBP / CROWN / alpha-CROWN, exact concretisation over the
threat set), ``box-ibp`` and ``box-crown`` (the same bounds over the threat's bounding box: what
a generic L-infinity verifier does), and the complete methods as they are registered.
Every method first checks the clean input: if the network already misclassifies x0, that point
(which lies in every threat set) is the counterexample.  Complete methods then run a short attack
(``complete.attack``, at most ATTACK_BUDGET_S or a tenth of the timeout) and report its replayed
counterexample, if any, as ``falsified`` with ``stats["found_by"] = "attack"``.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from .complete.attack import attack as run_attack
from .complete.validate import replay
from .result import VerifyResult
from .stbp_hybrid.certify import RELAXATIONS, certify
from .threats import DEFAULT_DOMAIN, Threat, parse_threat

METHODS: dict[str, Callable[..., VerifyResult]] = {}
COMPLETE = {"milp", "smt", "bab"}
ATTACK_BUDGET_S = 1.0


def register(name: str):
    def deco(fn):
        METHODS[name] = fn
        return fn

    return deco


def _bound_result(method: str, cert) -> VerifyResult:
    status = "verified" if cert.verified else "unknown"
    msg = "" if cert.verified else "the margin lower bound is not positive: the bounds are too loose to decide"
    stats = {"relaxation": cert.relaxation, "concretize": cert.concretize, "unstable_relus": sum(cert.unstable.values()),
             "unstable_per_layer": cert.unstable, "margin_lb_per_class": cert.margin_lb}
    return VerifyResult(status, method, cert.time_s, cert.min_margin, None, stats, msg)


@register("stbp")
def _stbp(net, x, y, threat, relaxation: str = "crown", domain=DEFAULT_DOMAIN, **_):
    return _bound_result("stbp", certify(net, x, y, threat, relaxation, "threat", domain))


@register("box-ibp")
def _box_ibp(net, x, y, threat, domain=DEFAULT_DOMAIN, **_):
    return _bound_result("box-ibp", certify(net, x, y, threat, "ibp", "box", domain))


@register("box-crown")
def _box_crown(net, x, y, threat, domain=DEFAULT_DOMAIN, **_):
    return _bound_result("box-crown", certify(net, x, y, threat, "crown", "box", domain))


def verify(net, x: np.ndarray, y: int, threat: Threat | str, method: str = "stbp", timeout: float | None = None,
           domain=DEFAULT_DOMAIN, attack: bool = True, **options) -> VerifyResult:
    """Decide (or bound) min over x' in S(x) of logit_y(x') - logit_j(x') > 0 for all j != y.

    ``options`` go to the method (e.g. ``relaxation="alpha-crown"`` for stbp, ``solver="highs"``
    and ``bounds="lp"`` for milp).  ``attack=False`` skips the attack before a complete method.
    """
    if isinstance(threat, str):
        threat = parse_threat(threat)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if method == "stbp" and options.get("relaxation", "crown") not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {', '.join(RELAXATIONS)}, got {options['relaxation']!r}")
    x = np.asarray(x, dtype=np.float64)
    threat.validate(x.shape)
    start = time.perf_counter()
    clean = replay(net, x, y, threat, x, domain)
    if clean.ok:
        return VerifyResult("falsified", method, time.perf_counter() - start, clean.margin64, clean.point,
                            {"found_by": "clean input"}, "the clean input is already misclassified")
    if method in COMPLETE and attack:
        point = run_attack(net, x, int(y), threat, time_limit=min(ATTACK_BUDGET_S, (timeout or math.inf) / 10), domain=domain)
        if point is not None:
            margin = replay(net, x, y, threat, point, domain).margin64
            return VerifyResult("falsified", method, time.perf_counter() - start, margin, point,
                                {"found_by": "attack", "threat": threat.spec()}, "found by the attack before the complete search")
        timeout = None if timeout is None else max(timeout - (time.perf_counter() - start), 0.0)
    res = METHODS[method](net, x, int(y), threat, timeout=timeout, domain=domain, **options)
    res.time_s = time.perf_counter() - start
    res.stats.setdefault("threat", threat.spec())
    return res
from .complete import milp_verify  # noqa: F401  (registers "milp")
from .complete import bab  # noqa: F401,E402  (registers "bab")
from .complete import smt_verify  # noqa: F401,E402  (registers "smt")
