"""Per-neuron LP tightening of unstable ReLU inputs: the ``lp`` big-M source.

Starts from STBP bounds.  A ReLU input that is an affine function of x (``Network.affine_in_input``:
the input of the first nonlinear layer) is already bounded exactly over the threat set, so the LPs
begin at the first ReLU input that is not.  For each such tensor t in order, the LP relaxation
(binaries in [0, 1]) of the MILP of the nodes before it over the threat set bounds every unstable
neuron (l < 0 < u):  l_n >= min z_n and
u_n <= max z_n.  Cheapest first: neurons by smallest min(-l, u), the side nearer zero first, and a
neuron is left as soon as one side proves it stable.  Each LP value, moved outward by
``tolerances.solver_margin``, replaces the bound only where it is tighter, so every bound stays
sound (the LPs are those of the model without its negligible terms, ``milp.relax_negligible``, a
relaxation); deeper layers are then encoded with the tightened big-M.  Whatever the time budget does
not reach keeps its input bound.  HiGHS solves the LPs, warm-started from the previous basis.
"""
from __future__ import annotations

import math
import time

import highspy
import numpy as np

from .. import tolerances
from ..encodings.backends.highs import build
from ..deadline import DeadlineExceeded
from ..encodings.milp import encode, relax_negligible
from ..threats import DEFAULT_DOMAIN


def tighten(net, x0, threat, bounds, domain=DEFAULT_DOMAIN, deadline: float = math.inf, threads: int = 1):
    """Returns (tightened copy of ``bounds``, stats)."""
    bounds = [(lo.copy(), hi.copy()) for lo, hi in bounds]
    stats = {"lps": 0, "unstable_before": 0, "stabilised": 0, "tightened": 0, "finished": True}
    start = time.perf_counter()
    for i in sorted(set(net.relu_inputs.values()) - net.affine_in_input):
        lo, hi = (b.reshape(-1) for b in bounds[i])  # views: writes go to bounds[i]
        try:
            enc = encode(net, x0, threat, bounds, domain, upto=i, deadline=deadline)
        except DeadlineExceeded:
            stats["finished"] = False
            break
        v = enc.vars[i].reshape(-1)
        relaxed = relax_negligible(enc.model)  # as every MILP solve (``backends.solve``); a neuron it fixes is within tolerance
        cand = np.flatnonzero((v >= 0) & (lo < 0) & (hi > 0))
        cand = cand[~relaxed.fixed[v[cand]]]
        stats["unstable_before"] += len(cand)
        if not len(cand):
            continue
        if time.perf_counter() >= deadline:
            stats["finished"] = False
            break
        h = build(relaxed.model, relax=True, threads=threads)
        for n in cand[np.argsort(np.minimum(-lo[cand], hi[cand]), kind="stable")]:
            for sign in ((1.0, -1.0) if -lo[n] <= hi[n] else (-1.0, 1.0)):  # +1: min z_n, -1: max z_n
                left = deadline - time.perf_counter()
                if left <= 0:
                    stats["finished"] = False
                    stats["time_s"] = time.perf_counter() - start
                    return bounds, stats
                h.setOptionValue("time_limit", h.getRunTime() + left)  # HiGHS counts all runs of h
                h.changeColCost(int(v[n]), sign)
                h.run()
                ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
                value = h.getInfo().objective_function_value
                h.changeColCost(int(v[n]), 0.0)  # (resets the model status: read it first)
                stats["lps"] += 1
                if not ok:
                    continue
                value *= sign
                slack = tolerances.solver_margin(max(abs(lo[n]), abs(hi[n])))
                if sign > 0 and value - slack > lo[n]:
                    lo[n], stats["tightened"] = value - slack, stats["tightened"] + 1
                elif sign < 0 and value + slack < hi[n]:
                    hi[n], stats["tightened"] = value + slack, stats["tightened"] + 1
                if lo[n] >= 0 or hi[n] <= 0:
                    stats["stabilised"] += 1
                    break
    stats["time_s"] = time.perf_counter() - start
    return bounds, stats
