"""One thin adapter per MILP solver; each turns a ``MILPModel`` into the solver's model and back.

``solve(model, objective, solver, ...)`` minimises ``objective`` (a ``LinExpr``; negate it to
maximise).  With ``early_stop=(lo, hi)`` the solver stops as soon as the sign question is
settled: a solution with objective <= lo is found, or the dual bound reaches >= hi; without it
the model is solved to optimality (relative and absolute gap 0, up to the solver's own
tolerances).  Every adapter is run single-model, deterministic (fixed seeds), silent.
Before any backend sees a model, its negligible terms and quasi-constant variables are taken out of the rows, soundly
(``encodings.milp.relax_negligible``: the solvers' presolve mishandles them).
``time_limit`` covers building the solver's model too: an adapter that runs out of time while
building returns status ``timeout`` without solving.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError

SOLVERS = ("scip", "highs", "gurobi")
STATUSES = ("optimal", "infeasible", "bound_reached", "feasible", "timeout", "error")


@dataclass
class SolveResult:
    """status: optimal | infeasible | bound_reached (stopped: dual bound >= early_stop[1]) |
    feasible (stopped: a solution <= early_stop[0]) | timeout | error."""

    status: str
    objective: float  # best primal objective (+inf without a solution)
    bound: float  # best dual bound (a lower bound of the minimum; +inf when infeasible)
    x: np.ndarray | None  # the best solution, if any
    stats: dict = field(default_factory=dict)  # solver, nodes, gap, build_s, solve_s


class SolverError(RuntimeError):
    """The solver cannot run, or refuses the model; the message says why and what to do instead."""


def solve(model, objective, solver: str = "scip", *, time_limit: float | None = None, threads: int = 1,
          early_stop: tuple[float, float] | None = None) -> SolveResult:
    """Minimise ``objective`` over ``model`` with ``solver`` (see the module docstring)."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    from ..milp import relax_negligible  # (scipy.sparse: not needed to list the solvers)

    relaxed = relax_negligible(model)
    return importlib.import_module(f".{solver}", __name__).solve(
        relaxed.model, relaxed.objective(objective), time_limit=time_limit, threads=threads, early_stop=early_stop)


def finite_or_inf(v: float, big: float = 1e20) -> float:
    """Solvers report infinity as a large number (SCIP 1e20, HiGHS kHighsInf); map it to inf."""
    v = float(v)
    return np.inf if v >= big else -np.inf if v <= -big else v


def out_of_time(solver: str, start: float, build_s: float) -> SolveResult:
    """The result of a solve whose time ran out while its model was being built."""
    return SolveResult("timeout", np.inf, -np.inf, None, {
        "solver": solver, "raw_status": "time limit reached while building the model", "nodes": 0, "gap": np.inf,
        "build_s": build_s, "solve_s": time.perf_counter() - start - build_s})


def time_left(deadline: float) -> float | None:
    """Seconds left for the solver itself (None: no limit; <= 0: none left)."""
    return None if np.isinf(deadline) else deadline - time.perf_counter()
