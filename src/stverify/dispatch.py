"""The methods of ``verify()`` and one method's run on an instance already validated.

``METHODS``: the bound methods of ``stbp_hybrid.methods`` (``stbp``, ``box-ibp``, ``box-crown``) and
the complete methods ``milp``, ``smt`` and ``bab`` (``complete/``); ``verify`` adds ``all`` (their
cross-check, ``complete.crosscheck``, which runs the others through ``run``), plugins add theirs
with ``register``.  ``run`` first checks the clean input: if the network already misclassifies x0,
that point (which lies in every threat set) is the counterexample.  Complete methods then run a
short attack (``complete.attack``, at most ATTACK_BUDGET_S or a tenth of the timeout) and report
its replayed counterexample, if any, as ``falsified`` with ``stats["found_by"] = "attack"``; the
attack is skipped when STBP (CROWN) already proves every competitor within that budget (no
counterexample exists: on robust instances the attack was most of a small model's time).  A
method that takes ``root_attack`` (``bab``) runs the attack itself, once its own first bound leaves
the instance open, so that the same bound is not computed twice.
Either way ``margin_ub`` is the replayed margin of that point (an upper bound of the minimum
margin) and ``margin_lb`` is None.
"""
from __future__ import annotations

import inspect
import math
import time
from typing import Callable

from .complete.attack import attack as run_attack
from .complete.bab import verify_bab
from .complete.milp_verify import verify_milp
from .complete.smt_verify import verify_smt
from .replay import replay
from .result import VerifyResult
from .stbp_hybrid.certify import certify
from .stbp_hybrid.methods import verify_box_crown, verify_box_ibp, verify_stbp

ATTACK_BUDGET_S = 1.0
ROOT_ATTACK = "root_attack"  # the option of a method that runs the attack after its own first bound
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


def _proven(net, x, y, threat, domain, deadline: float, device) -> bool:
    """Whether STBP's bounds (CROWN, computed before ``deadline``) prove every competitor."""
    return certify(net, x, y, threat, "crown", "threat", domain, device=device, deadline=deadline).verified


def run(net, x, y, threat, method: str, timeout: float | None, domain, attack: bool = True, **options) -> VerifyResult:
    """``method`` on a validated instance (see the module docstring); ``time_s`` covers it all."""
    start = time.perf_counter()
    clean = replay(net, x, y, threat, x, domain)
    if clean.ok:
        return VerifyResult("falsified", method, time.perf_counter() - start, None, clean.point,
                            {"found_by": "clean input"}, "the clean input is already misclassified",
                            margin_ub=clean.margin64)
    if method in COMPLETE and attack and ROOT_ATTACK in inspect.signature(METHODS[method]).parameters:
        options = {ROOT_ATTACK: attack_budget(timeout), **options}
    elif method in COMPLETE and attack and not _proven(net, x, y, threat, domain, start + attack_budget(timeout),
                                                        options.get("device")):
        point = run_attack(net, x, y, threat, time_limit=attack_budget(timeout), domain=domain)
        if point is not None:
            margin = replay(net, x, y, threat, point, domain).margin64
            return VerifyResult("falsified", method, time.perf_counter() - start, None, point,
                                {"found_by": "attack", "threat": threat.spec()}, "found by the attack before the complete search",
                                margin_ub=margin)
        timeout = None if timeout is None else max(timeout - (time.perf_counter() - start), 0.0)
    res = METHODS[method](net, x, y, threat, timeout=timeout, domain=domain, **options)
    res.time_s = time.perf_counter() - start
    res.stats.setdefault("threat", threat.spec())
    return res
