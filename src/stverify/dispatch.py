"""The methods of ``verify()`` and one method's run on an instance already validated.

``METHODS``: the bound methods of ``stbp_hybrid.methods`` (``stbp``, ``box-ibp``, ``box-crown``) and
the complete methods ``milp``, ``smt`` and ``bab`` (``complete/``); ``verify`` adds ``all`` (their
cross-check, ``complete.crosscheck``, which runs the others through ``run``), plugins add theirs
with ``register``.  ``run`` first checks the clean input: if the network already misclassifies x0,
that point (which lies in every threat set) is the counterexample.  Complete methods then run a
short attack (``complete.preattack``, at most ATTACK_BUDGET_S or a tenth of the timeout) themselves,
once their own first bound leaves the instance open (their ``root_attack`` option): a
counterexample cannot exist where the bound proves every competitor, and the bound is computed
once.  An attack hit is ``falsified`` with ``stats["found_by"] = "attack"``, ``margin_ub`` the
replayed margin of the point and ``margin_lb`` None; so is a misclassified clean input.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from .complete.bab import verify_bab
from .complete.milp_verify import verify_milp
from .complete.smt_verify import verify_smt
from .replay import replay
from .result import VerifyResult
from .stbp_hybrid.methods import verify_box_crown, verify_box_ibp, verify_stbp

ATTACK_BUDGET_S = 1.0
ROOT_ATTACK = "root_attack"  # the option by which a complete method gets the attack's seconds
COMPLETE = {"milp", "smt", "bab"}

METHODS: dict[str, Callable[..., VerifyResult]] = {
    "stbp": verify_stbp, "box-ibp": verify_box_ibp, "box-crown": verify_box_crown,
    "milp": verify_milp, "smt": verify_smt, "bab": verify_bab,
}


def register(name: str):
    """Add a method (for plugins, e.g. a bench config's ``plugins``): ``@register("name")``."""
    def deco(fn):
        METHODS[name] = fn
        return fn

    return deco


def attack_budget(timeout: float | None) -> float:
    """Seconds the attack before a complete method may take."""
    return min(ATTACK_BUDGET_S, (timeout or math.inf) / 10)


def run(net, x, y, threat, method: str, timeout: float | None, domain, attack: bool = True, **options) -> VerifyResult:
    """``method`` on a validated instance (see the module docstring); ``time_s`` covers it all."""
    start = time.perf_counter()
    clean = replay(net, x, y, threat, x, domain)
    if clean.ok:
        return VerifyResult("falsified", method, time.perf_counter() - start, None, clean.point,
                            {"found_by": "clean input"}, "the clean input is already misclassified",
                            margin_ub=clean.margin64)
    if method in COMPLETE and attack:
        options = {ROOT_ATTACK: attack_budget(timeout), **options}
    res = METHODS[method](net, x, y, threat, timeout=timeout, domain=domain, **options)
    res.time_s = time.perf_counter() - start
    res.stats.setdefault("threat", threat.spec())
    return res
