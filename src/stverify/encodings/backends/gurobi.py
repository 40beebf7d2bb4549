"""Gurobi adapter (gurobipy matrix API): addMVar + addMConstr from scipy sparse rows.  Sign stops:
parameters BestObjStop and BestBdStop.  A size-limited licence (2000 variables / 2000
constraints) refuses bigger models with error 10010; that becomes a SolverError saying so.  One
built model is minimised over several objectives (``Loaded``)."""
from __future__ import annotations

import math
import time

import numpy as np

from ...stdio import stdout_to_stderr
from . import SolveResult, SolverError

LICENCE_TOO_SMALL = 10010  # GRB_ERROR_SIZE_LIMIT_EXCEEDED


def _gurobi():
    try:
        import gurobipy
    except ImportError as e:
        raise SolverError(f"gurobipy cannot be imported ({e}); use --solver scip or --solver highs") from None
    return gurobipy


def _env(gp):
    try:
        with stdout_to_stderr():  # licence notices
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
        return env
    except gp.GurobiError as e:
        raise SolverError(f"Gurobi cannot start: {e}; use --solver scip or --solver highs") from None


class Loaded:
    """A built Gurobi model, minimised over one objective after another (disposed with this object)."""

    def __init__(self, gp, env, m, x, n_vars: int):
        self.gp, self.env, self.m, self.x, self.n_vars = gp, env, m, x, n_vars

    def __del__(self):
        self.m.dispose()
        self.env.dispose()

    def minimise(self, objective, *, time_limit=None, early_stop=None) -> SolveResult:
        gp, m, GRB = self.gp, self.m, self.gp.GRB
        start = time.perf_counter()
        m.setMObjective(None, objective.coef, objective.const, sense=GRB.MINIMIZE)
        big = lambda v: float(np.clip(v, -GRB.INFINITY, GRB.INFINITY))  # noqa: E731 - Gurobi's infinity
        m.Params.TimeLimit = GRB.INFINITY if time_limit is None else max(float(time_limit), 0.0)
        lo, hi = early_stop if early_stop is not None else (-math.inf, math.inf)
        m.Params.BestObjStop, m.Params.BestBdStop = big(lo), big(hi)
        try:
            m.optimize()
        except gp.GurobiError as e:
            if e.errno == LICENCE_TOO_SMALL:
                raise SolverError(f"Gurobi refused the model ({self.n_vars} variables, {m.NumConstrs} constraints): "
                                  f"the installed Gurobi licence is size-limited (at most 2000 variables and 2000 "
                                  f"constraints) [{e}]; use --solver scip (or --solver highs)") from None
            raise SolverError(f"Gurobi failed: {e}") from None
        has_sol = m.SolCount > 0
        obj = float(m.ObjVal) if has_sol else np.inf
        if m.Status in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):  # every variable is bounded: never unbounded
            status, bound = "infeasible", np.inf
        else:
            bound = float(m.ObjBound) if m.IsMIP else (obj if m.Status == GRB.OPTIMAL else -np.inf)
            status = {GRB.OPTIMAL: "optimal", GRB.TIME_LIMIT: "timeout"}.get(m.Status, "error")
            if m.Status == GRB.USER_OBJ_LIMIT:
                status = "feasible" if has_sol and obj <= lo else "bound_reached"
        stats = {"solver": "gurobi", "raw_status": int(m.Status), "nodes": int(m.NodeCount) if m.IsMIP else 0,
                 "gap": float(m.MIPGap) if m.IsMIP and has_sol else np.inf, "build_s": 0.0,
                 "solve_s": time.perf_counter() - start}
        return SolveResult(status, obj, bound, np.array(self.x.X) if has_sol else None, stats)


def load(model, deadline: float = math.inf, threads: int = 1) -> Loaded:
    gp = _gurobi()
    GRB = gp.GRB
    env = _env(gp)
    m = gp.Model(env=env)
    x = m.addMVar(model.n_vars, lb=model.lb, ub=model.ub,
                  vtype=np.where(model.is_binary, GRB.BINARY, GRB.CONTINUOUS))
    A, lo, hi = model.to_csr(), model.row_lo, model.row_hi
    eq = lo == hi
    for mask, sense, rhs in ((eq, GRB.EQUAL, hi), (~eq & np.isfinite(hi), GRB.LESS_EQUAL, hi),
                             (~eq & np.isfinite(lo), GRB.GREATER_EQUAL, lo)):
        if mask.any():
            m.addMConstr(A[mask], x, sense, rhs[mask])
    m.Params.Threads = int(threads)
    m.Params.Seed = 0
    m.Params.MIPGap = 0.0
    return Loaded(gp, env, m, x, model.n_vars)
