"""SCIP adapter (pyscipopt): the model built through SCIP's C API (``scip_capi``), sign stops via
limits/primal and limits/dual ("solving stops if the primal / dual bound is at least as good as
the value"); one built model is minimised over several objectives (``Loaded``)."""
from __future__ import annotations

import math
import time

import numpy as np
from pyscipopt import Model

from .scip_capi import add_model, set_objective, solution
from . import SolveResult, finite_or_inf

_STATUS = {"optimal": "optimal", "infeasible": "infeasible", "timelimit": "timeout",
           "primallimit": "feasible", "duallimit": "bound_reached",
           "gaplimit": "optimal"}  # within the absolute gap asked of ``optimize`` (0 unless given)


def build(model, deadline: float = math.inf) -> tuple[Model, np.ndarray] | None:
    """A silent SCIP model holding ``model`` (no objective yet) and its variables, in order (their
    SCIP pointers, ``scip_capi``); None when ``deadline`` passes while it is built."""
    m = Model()
    m.hideOutput()
    xs = add_model(m, model, deadline)
    if xs is None:
        return None
    # The aggregation (c-MIR) separator took most of the root time on big-M ReLU models without
    # paying off: off, the test instances solve about 5x and the zoo's hard instances 1.5x faster.
    m.setParam("separating/aggregation/freq", -1)
    return m, xs


def optimize(m: Model, xs: np.ndarray, objective, *, time_limit=None, threads=1, early_stop=None,
             abs_gap: float = 0.0) -> SolveResult:
    """Minimise ``objective`` over a model from ``build``; the model can be optimised again with
    another objective (its previous solve is freed first).  ``abs_gap``: stop (status optimal) once
    the best solution is within this of the dual bound."""
    start = time.perf_counter()
    m.freeTransform()
    set_objective(m, xs, objective.coef, objective.const)
    m.setParam("lp/threads", int(threads))
    for name, v in zip(("limits/time", "limits/primal", "limits/dual", "limits/absgap"),
                       (time_limit, *(early_stop or (None, None)), abs_gap or None)):
        if v is not None and np.isfinite(v):
            m.setParam(name, float(v))
        else:
            m.resetParam(name)
    m.optimize()
    status = _STATUS.get(m.getStatus(), "error")
    x = solution(m, xs) if m.getNSols() else None
    stats = {"solver": "scip", "raw_status": m.getStatus(), "nodes": int(m.getNNodes()),
             "gap": finite_or_inf(m.getGap()), "build_s": 0.0, "solve_s": time.perf_counter() - start}
    bound = np.inf if status == "infeasible" else finite_or_inf(m.getDualbound())
    return SolveResult(status, finite_or_inf(m.getPrimalbound()) if x is not None else np.inf, bound, x, stats)


class Loaded:
    """A built SCIP model, minimised over one objective after another."""

    def __init__(self, m: Model, xs: np.ndarray, threads: int):
        self.m, self.xs, self.threads = m, xs, threads

    def minimise(self, objective, *, time_limit=None, early_stop=None) -> SolveResult:
        return optimize(self.m, self.xs, objective, time_limit=time_limit, threads=self.threads, early_stop=early_stop)


def load(model, deadline: float = math.inf, threads: int = 1) -> Loaded | None:
    built = build(model, deadline)
    return None if built is None else Loaded(*built, threads)
