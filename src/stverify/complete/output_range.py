"""The exact worst case of one output over a threat set: min and max of f_i, with anytime bounds.

For a regression model (a steering angle) the question is how far the output can move:
    lo* = min over x in S(x0) of f_i(x),   hi* = max over x in S(x0) of f_i(x).
Each side is the minimum of a property margin: f_i itself is the margin of ``range:lo=0`` and -f_i
that of ``range:hi=0`` (``properties.OutputSpec.band``), so the MILP path that decides properties
(``milp_verify`` with ``optimal=True``, STBP big-M) bounds them: a sound lower bound of the minimum
(the dual bound less the solver's tolerance) and the value at a point of the set (replayed in the
float64 reference).  It runs in rounds of doubling time limits, 1 s, 2 s, 4 s, ..., until both
gaps are within ``tol`` or the time is spent; after every round the best bounds so far go to
``progress`` (anytime: each round's bounds are valid, the reported ones are the tightest seen).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import validation
from ..errors import InputError
from ..properties import OutputSpec, reduce_to_label
from ..threats import DEFAULT_DOMAIN, Threat
from .milp_verify import verify_milp

FIRST_ROUND_S = 1.0


@dataclass
class OutputRange:
    """lo <= min f_i <= lo_attained  and  hi_attained <= max f_i <= hi (module docstring)."""

    output: int
    lo: float
    lo_attained: float
    hi_attained: float
    hi: float
    tol: float
    history: list[dict] = field(default_factory=list)  # {t, lo, lo_attained, hi_attained, hi} after each round
    time_s: float = 0.0

    @property
    def exact(self) -> bool:
        return self.lo_attained - self.lo <= self.tol and self.hi - self.hi_attained <= self.tol

    def describe(self) -> str:
        return (f"output {self.output}: min in [{self.lo:.6g}, {self.lo_attained:.6g}], max in [{self.hi_attained:.6g}, "
                f"{self.hi:.6g}]{' (exact)' if self.exact else ''}")


def _side(net, x, threat, spec: OutputSpec, timeout, domain, solver) -> tuple[float, float]:
    """(a sound lower bound of min of the spec's margin, its value at a point of the set: inf if none)."""
    target, label = reduce_to_label(net, spec)
    res = verify_milp(target, x, label, threat, timeout=timeout, domain=domain, solver=solver, optimal=True)
    lb = -math.inf if res.margin_lb is None else res.margin_lb
    return lb, math.inf if res.margin_ub is None else res.margin_ub


def output_range(net, x: np.ndarray, threat: Threat | str, output: int = 0, timeout: float | None = 60.0,
                 tol: float = 1e-4, domain=DEFAULT_DOMAIN, solver: str = "scip", progress=None) -> OutputRange:
    """Exact min and max of output ``output`` over the threat set (module docstring); ``progress``
    is called with the ``OutputRange`` after every round."""
    x, _, threat, timeout, domain = validation.instance(net, x, None, threat, timeout, domain, labelled=False)
    if not (isinstance(output, (int, np.integer)) and 0 <= output < net.n_classes):
        raise InputError(f"output {output!r} is not an output of the model: expected 0..{net.n_classes - 1}")
    if not tol > 0:
        raise InputError(f"tol must be > 0, got {tol}")
    start = time.perf_counter()
    deadline = math.inf if timeout is None else start + timeout
    value = float(net.forward(x)[output])  # x0 is in the set: its value bounds both extremes from inside
    res = OutputRange(int(output), -math.inf, value, value, math.inf, tol)
    low, high = OutputSpec.band(output, 0.0, None, net.n_classes), OutputSpec.band(output, None, 0.0, net.n_classes)
    budget = FIRST_ROUND_S
    while not res.exact and time.perf_counter() < deadline:
        for spec, is_low in ((low, True), (high, False)):
            if (res.lo_attained - res.lo <= tol) if is_low else (res.hi - res.hi_attained <= tol):
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            lb, at = _side(net, x, threat, spec, min(budget, left), domain, solver)
            if is_low:  # margin = f_i
                res.lo, res.lo_attained = max(res.lo, lb), min(res.lo_attained, at)
            else:  # margin = -f_i
                res.hi, res.hi_attained = min(res.hi, -lb), max(res.hi_attained, -at)
        res.time_s = time.perf_counter() - start
        res.history.append({"t": res.time_s, "lo": res.lo, "lo_attained": res.lo_attained,
                            "hi_attained": res.hi_attained, "hi": res.hi})
        if progress is not None:
            progress(res)
        budget *= 2
    return res
