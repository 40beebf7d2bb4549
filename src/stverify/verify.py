"""verify(): one entry point for every method, returning a VerifyResult.

Methods (``METHODS``): the bound methods of ``stbp_hybrid.methods`` (``stbp``, ``box-ibp``,
``box-crown``), the complete methods ``milp``, ``smt`` and ``bab`` (``complete/``), and ``all``
(their cross-check).  No method module imports this one; plugins add methods with ``register``.
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
from .complete.bab import verify_bab
from .complete.milp_verify import verify_milp
from .complete.smt_verify import verify_smt
from .replay import replay
from .result import VerifyResult
from .stbp_hybrid.certify import RELAXATIONS
from .stbp_hybrid.methods import verify_box_crown, verify_box_ibp, verify_stbp
from .threats import DEFAULT_DOMAIN, Threat, parse_threat

ATTACK_BUDGET_S = 1.0
COMPLETE = {"milp", "smt", "bab"}


def _verify_all(net, x, y, threat, **options) -> VerifyResult:
    """``method="all"``: the cross-check of every method (``complete.crosscheck``, which calls verify)."""
    from .complete.crosscheck import verify_all

    return verify_all(net, x, y, threat, **options)


METHODS: dict[str, Callable[..., VerifyResult]] = {
    "stbp": verify_stbp, "box-ibp": verify_box_ibp, "box-crown": verify_box_crown,
    "milp": verify_milp, "smt": verify_smt, "bab": verify_bab, "all": _verify_all,
}


def register(name: str):
    """Add a method (for plugins, e.g. a bench config's ``plugins``): ``@register("name")``."""
    def deco(fn):
        METHODS[name] = fn
        return fn

    return deco


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
