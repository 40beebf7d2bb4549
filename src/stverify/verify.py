"""verify(): one entry point for every method, returning a VerifyResult.

Methods (``METHODS``): the bound methods of ``stbp_hybrid.methods`` (``stbp``, ``box-ibp``,
``box-crown``), the complete methods ``milp``, ``smt`` and ``bab`` (``complete/``), and ``all``
(their cross-check).  No method module imports this one; plugins add methods with ``register``.
verify() validates its arguments first (``validation``: the label in 0..n_classes-1, a finite
input of the model's shape inside the domain, a threat that fits it, a positive timeout, options
the method takes) and raises ``InputError`` for anything else.  Every method then checks the clean
input: if the network already misclassifies x0, that point (which lies in every threat set) is the
counterexample.  Complete methods then run a short attack (``complete.attack``, at most
ATTACK_BUDGET_S or a tenth of the timeout) and report its replayed counterexample, if any, as
``falsified`` with ``stats["found_by"] = "attack"``.  Either way ``margin_ub`` is the replayed
margin of that point (an upper bound of the minimum margin) and ``margin_lb`` is None.
"""
from __future__ import annotations

import inspect
import math
import time
from typing import Callable

import numpy as np

from .complete.attack import attack as run_attack
from .complete.bab import verify_bab
from .complete.milp_verify import verify_milp
from .complete.smt_verify import verify_smt
from . import validation
from .errors import InputError
from .replay import replay
from .result import VerifyResult
from .stbp_hybrid.certify import RELAXATIONS
from .stbp_hybrid.methods import verify_box_crown, verify_box_ibp, verify_stbp
from .threats import DEFAULT_DOMAIN, Threat

ATTACK_BUDGET_S = 1.0
COMPLETE = {"milp", "smt", "bab"}
COMMON_ARGS = {"net", "x", "y", "threat", "timeout", "domain"}  # passed by verify() itself


def _verify_all(net, x, y, threat, timeout=None, domain=DEFAULT_DOMAIN, solver=None, solvers=None, plain=False,
                bounds="stbp") -> VerifyResult:
    """``method="all"``: the cross-check of every method (``complete.crosscheck``, which calls verify)."""
    from .complete.crosscheck import verify_all

    return verify_all(net, x, y, threat, timeout, domain, solver=solver, solvers=solvers, plain=plain, bounds=bounds)


METHODS: dict[str, Callable[..., VerifyResult]] = {
    "stbp": verify_stbp, "box-ibp": verify_box_ibp, "box-crown": verify_box_crown,
    "milp": verify_milp, "smt": verify_smt, "bab": verify_bab, "all": _verify_all,
}
BUILTIN = frozenset(METHODS)


def register(name: str):
    """Add a method (for plugins, e.g. a bench config's ``plugins``): ``@register("name")``."""
    def deco(fn):
        METHODS[name] = fn
        return fn

    return deco


def method_options(method: str) -> set[str] | None:
    """The options ``method`` takes (its keyword parameters beyond verify()'s own), or None when
    it declares none explicitly and accepts anything (a plugin taking ``**options`` only)."""
    params = inspect.signature(METHODS[method]).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - COMMON_ARGS
    if not named and any(p.kind == p.VAR_KEYWORD for p in params) and method not in BUILTIN:
        return None
    return named


def refused_options(method: str, options) -> list[str]:
    """The names in ``options`` that ``method`` does not take (verify()'s own keywords, such as
    ``attack``, are always accepted: a bench config passes them the same way)."""
    allowed = method_options(method)
    return [] if allowed is None else sorted(set(options) - allowed - {"attack", "domain", "timeout"})


def _takes(method: str) -> str:
    allowed = sorted(method_options(method) or ())
    return f"it takes {', '.join(allowed)}" if allowed else "it takes no options"


def check_call(net, x, y, threat: Threat | str, method: str, timeout, domain, options: dict):
    """verify()'s arguments, validated (module docstring): (x, y, threat, timeout, domain)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if extra := refused_options(method, options):
        raise InputError(f"option(s) {', '.join(extra)} do not apply to method {method!r} ({_takes(method)})")
    if method == "stbp" and options.get("relaxation", "crown") not in RELAXATIONS:
        raise InputError(f"relaxation must be one of {', '.join(RELAXATIONS)}, got {options['relaxation']!r}")
    return validation.instance(net, x, y, threat, timeout, domain)


def verify(net, x: np.ndarray, y: int, threat: Threat | str, method: str = "stbp", timeout: float | None = None,
           domain=DEFAULT_DOMAIN, attack: bool = True, **options) -> VerifyResult:
    """Decide (or bound) min over x' in S(x) of logit_y(x') - logit_j(x') > 0 for all j != y.

    ``options`` go to the method (e.g. ``relaxation="alpha-crown"`` for stbp, ``solver="highs"``
    and ``bounds="lp"`` for milp); an option the method does not take is refused.  ``timeout``
    (seconds, None for none) covers everything: the attack, bounds, encodings and solvers.
    ``attack=False`` skips the attack before a complete method.
    """
    x, y, threat, timeout, domain = check_call(net, x, y, threat, method, timeout, domain, options)
    start = time.perf_counter()
    clean = replay(net, x, y, threat, x, domain)
    if clean.ok:
        return VerifyResult("falsified", method, time.perf_counter() - start, None, clean.point,
                            {"found_by": "clean input"}, "the clean input is already misclassified",
                            margin_ub=clean.margin64)
    if method in COMPLETE and attack:
        point = run_attack(net, x, y, threat, time_limit=min(ATTACK_BUDGET_S, (timeout or math.inf) / 10), domain=domain)
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
