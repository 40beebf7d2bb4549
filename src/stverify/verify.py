"""verify(): one entry point for every method, returning a VerifyResult.

Methods (``METHODS``): those of ``dispatch`` (``stbp``, ``box-ibp``, ``box-crown``, ``milp``,
``smt``, ``bab`` and plugins' ``register``-ed ones), and ``all``, their cross-check
(``complete.crosscheck``).  verify() validates its arguments first (``validation``: the property
(a label in 0..n_classes-1, or an output property), a finite input of the model's shape inside the
domain, a threat that fits it, a positive timeout, options the method takes) and raises
``InputError`` for anything else; then ``dispatch.run`` checks the clean input, runs the attack
before a complete method, and the method.

An output property other than a label (``properties``) is decided as the label margin of the
extended network of ``properties.reduce_to_label``, whose margin is the property's: every method's
``margin_lb`` / ``margin_ub`` bound min over the set of the property's margin.  A ``falsified``
answer's counterexample is checked once more on the original network (``replay`` with the
property: a violation in the float64 reference and the float32 model), and its ``margin_ub`` is
the property's margin there.
"""
from __future__ import annotations

import inspect

import numpy as np

from . import validation
from .complete.crosscheck import verify_all
from .dispatch import METHODS, register, run
from .errors import InputError
from .properties import OutputSpec, reduce_to_label
from .replay import replay
from .result import VerifyResult
from .stbp_hybrid.certify import RELAXATIONS
from .threats import DEFAULT_DOMAIN, Threat

COMMON_ARGS = {"net", "x", "y", "threat", "timeout", "domain"}  # passed by verify() itself
register("all")(verify_all)
BUILTIN = frozenset(METHODS)


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


def verify(net, x: np.ndarray, y, threat: Threat | str, method: str = "stbp", timeout: float | None = None,
           domain=DEFAULT_DOMAIN, attack: bool = True, **options) -> VerifyResult:
    """Decide (or bound) that the property y holds at every x' in S(x): for a class label y (an
    int), min over x' of logit_y(x') - logit_j(x') > 0 for all j != y; for an output property (a
    string such as ``"deviation:delta=0.05"``, a ``properties.Property`` or ``OutputSpec``), its
    margin > 0 (module docstring).

    ``options`` go to the method (e.g. ``relaxation="alpha-crown"`` for stbp, ``solver="highs"``
    and ``bounds="lp"`` for milp); an option the method does not take is refused.  ``timeout``
    (seconds, None for none) covers everything: the attack, bounds, encodings and solvers.
    ``attack=False`` skips the attack before a complete method.
    """
    x, y, threat, timeout, domain = check_call(net, x, y, threat, method, timeout, domain, options)
    if not isinstance(y, OutputSpec):
        return run(net, x, y, threat, method, timeout, domain, attack, **options)
    target, label = reduce_to_label(net, y)
    return _on_original(net, x, y, threat, domain, run(target, x, label, threat, method, timeout, domain, attack, **options))


def _on_original(net, x, spec: OutputSpec, threat, domain, res: VerifyResult) -> VerifyResult:
    """A property's result, its counterexample checked on the original network (module docstring)."""
    res.stats["property_disjuncts"] = len(spec.disjuncts)
    if res.status != "falsified":
        return res
    rep = replay(net, x, spec, threat, res.counterexample, domain)
    if not rep.ok:  # cannot happen when the reduction is exact; never report an unchecked violation
        return VerifyResult("unknown", res.method, res.time_s, res.margin_lb, None, res.stats,
                            f"the extended network's counterexample fails the check on the original network: {rep.reason}")
    res.counterexample, res.margin_ub = rep.point, rep.margin64
    return res
