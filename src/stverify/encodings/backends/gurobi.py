"""Gurobi adapter (gurobipy matrix API): addMVar + addMConstr from scipy sparse rows.  Sign stops:
parameters BestObjStop and BestBdStop.  A size-limited licence (2000 variables / 2000
constraints) refuses bigger models with error 10010; that becomes a SolverError saying so."""
from __future__ import annotations

import time

import numpy as np

from ...deadline import of as deadline_of
from ...stdio import stdout_to_stderr
from . import SolveResult, SolverError, out_of_time, time_left

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


def solve(model, objective, *, time_limit=None, threads=1, early_stop=None) -> SolveResult:
    gp = _gurobi()
    GRB = gp.GRB
    start = time.perf_counter()
    deadline = deadline_of(time_limit, start)
    with _env(gp) as env, gp.Model(env=env) as m:
        binary = model.is_binary
        x = m.addMVar(model.n_vars, lb=model.lb, ub=model.ub, vtype=np.where(binary, GRB.BINARY, GRB.CONTINUOUS))
        A, lo, hi = model.to_csr(), model.row_lo, model.row_hi
        eq = lo == hi
        for mask, sense, rhs in ((eq, GRB.EQUAL, hi), (~eq & np.isfinite(hi), GRB.LESS_EQUAL, hi),
                                 (~eq & np.isfinite(lo), GRB.GREATER_EQUAL, lo)):
            if mask.any():
                m.addMConstr(A[mask], x, sense, rhs[mask])
        m.setMObjective(None, objective.coef, objective.const, sense=GRB.MINIMIZE)
        m.Params.Threads = int(threads)
        m.Params.Seed = 0
        m.Params.MIPGap = 0.0
        if early_stop is not None:
            m.Params.BestObjStop, m.Params.BestBdStop = (float(v) for v in early_stop)
        build_s = time.perf_counter() - start
        left = time_left(deadline)
        if left is not None:
            if left <= 0:
                return out_of_time("gurobi", start, build_s)
            m.Params.TimeLimit = left
        try:
            m.optimize()
        except gp.GurobiError as e:
            if e.errno == LICENCE_TOO_SMALL:
                raise SolverError(f"Gurobi refused the model ({model.n_vars} variables, {m.NumConstrs} constraints): "
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
                status = "feasible" if has_sol and obj <= early_stop[0] else "bound_reached"
        stats = {"solver": "gurobi", "raw_status": int(m.Status), "nodes": int(m.NodeCount) if m.IsMIP else 0,
                 "gap": float(m.MIPGap) if m.IsMIP and has_sol else np.inf, "build_s": build_s,
                 "solve_s": time.perf_counter() - start - build_s}
        return SolveResult(status, obj, bound, np.array(x.X) if has_sol else None, stats)
