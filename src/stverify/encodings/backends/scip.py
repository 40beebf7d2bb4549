"""SCIP adapter (pyscipopt): one linear constraint per CSR row, sign stops via limits/primal and
limits/dual ("solving stops if the primal / dual bound is at least as good as the value")."""
from __future__ import annotations

import math
import time

import numpy as np
from pyscipopt import Model
from pyscipopt.scip import Expr, ExprCons, Term

from ...deadline import of as deadline_of, passed
from . import SolveResult, finite_or_inf, out_of_time, time_left

CHECK_EVERY = 256  # variables or rows added between two deadline checks

_STATUS = {"optimal": "optimal", "infeasible": "infeasible", "timelimit": "timeout",
           "primallimit": "feasible", "duallimit": "bound_reached",
           "gaplimit": "optimal"}  # within the absolute gap asked of ``optimize`` (0 unless given)


def _num(v: float):
    return None if np.isinf(v) else float(v)  # pyscipopt: None = infinite


def _expr(xs, cols, vals) -> Expr:
    return Expr({Term(xs[c]): v for c, v in zip(cols.tolist(), vals.tolist())})


def build(model, deadline: float = math.inf) -> tuple[Model, list] | None:
    """A silent SCIP model holding ``model`` (no objective yet) and its variables, in order; None
    when ``deadline`` passes while it is built (term by term, which is slow for big models)."""
    m = Model()
    m.hideOutput()
    xs = []
    for k, (lo, hi, b) in enumerate(zip(model.lb.tolist(), model.ub.tolist(), model.is_binary.tolist())):
        if k % CHECK_EVERY == 0 and passed(deadline):
            return None
        xs.append(m.addVar(lb=_num(lo), ub=_num(hi), vtype="B" if b else "C"))
    A, rlo, rhi = model.to_csr(), model.row_lo, model.row_hi
    for r in range(A.shape[0]):
        if r % CHECK_EVERY == 0 and passed(deadline):
            return None
        s, e = A.indptr[r], A.indptr[r + 1]
        m.addCons(ExprCons(_expr(xs, A.indices[s:e], A.data[s:e]), lhs=_num(rlo[r]), rhs=_num(rhi[r])))
    # The aggregation (c-MIR) separator took most of the root time on big-M ReLU models without
    # paying off: off, the test instances solve about 5x and the zoo's hard instances 1.5x faster.
    m.setParam("separating/aggregation/freq", -1)
    return m, xs


def optimize(m: Model, xs: list, objective, *, time_limit=None, threads=1, early_stop=None,
             abs_gap: float = 0.0) -> SolveResult:
    """Minimise ``objective`` over a model from ``build``; the model can be optimised again with
    another objective (its previous solve is freed first).  ``abs_gap``: stop (status optimal) once
    the best solution is within this of the dual bound."""
    start = time.perf_counter()
    m.freeTransform()
    nz = np.flatnonzero(objective.coef)
    m.setObjective(_expr(xs, nz, objective.coef[nz]) + objective.const, "minimize")
    m.setParam("lp/threads", int(threads))
    for name, v in zip(("limits/time", "limits/primal", "limits/dual", "limits/absgap"),
                       (time_limit, *(early_stop or (None, None)), abs_gap or None)):
        if v is not None and np.isfinite(v):
            m.setParam(name, float(v))
        else:
            m.resetParam(name)
    m.optimize()
    status = _STATUS.get(m.getStatus(), "error")
    sol = m.getBestSol() if m.getNSols() else None
    x = None if sol is None else np.array([m.getSolVal(sol, v) for v in xs])
    stats = {"solver": "scip", "raw_status": m.getStatus(), "nodes": int(m.getNNodes()),
             "gap": finite_or_inf(m.getGap()), "build_s": 0.0, "solve_s": time.perf_counter() - start}
    bound = np.inf if status == "infeasible" else finite_or_inf(m.getDualbound())
    return SolveResult(status, finite_or_inf(m.getPrimalbound()) if x is not None else np.inf, bound, x, stats)


def solve(model, objective, *, time_limit=None, threads=1, early_stop=None) -> SolveResult:
    start = time.perf_counter()
    deadline = deadline_of(time_limit, start)
    built = build(model, deadline)
    build_s = time.perf_counter() - start
    left = time_left(deadline)
    if built is None or (left is not None and left <= 0):
        return out_of_time("scip", start, build_s)
    r = optimize(*built, objective, time_limit=left, threads=threads, early_stop=early_stop)
    r.stats["build_s"] = build_s
    return r
