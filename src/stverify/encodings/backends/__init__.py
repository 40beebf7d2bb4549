"""One thin adapter per MILP solver; each turns a ``MILPModel`` into the solver's model and back.

``solve(model, objective, solver, ...)`` minimises ``objective`` (a ``LinExpr``; negate it to
maximise).  With ``early_stop=(lo, hi)`` the solver stops as soon as the sign question is
settled: a solution with objective <= lo is found, or the dual bound reaches >= hi; without it
the model is solved to optimality (relative and absolute gap 0, up to the solver's own
tolerances).  Every adapter is run single-model, deterministic (fixed seeds), silent.
Before any backend sees a model, its negligible terms and quasi-constant variables are taken out of the rows, soundly
(``encodings.milp.relax_negligible``: the solvers' presolve mishandles them).
``time_limit`` covers building the solver's model too: a solve that runs out of time while
building returns status ``timeout`` without solving.  ``load`` builds a model once, to be minimised
over several objectives (``Loaded.minimise``; each adapter's ``load`` returns its own ``Loaded``).
"""
from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...deadline import left, of as deadline_of
from ...errors import InputError

SOLVERS = ("scip", "highs", "gurobi")
ISOLATE_VARS = 10_000  # models this big are solved in a child process killed at the deadline (``load``)
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


class Loaded:
    """A model built in a solver once (relaxed first, see the module docstring) and minimised over
    one objective after another (``minimise``, as ``solve``); the first result's ``build_s`` is the
    time the build took, the later ones' 0."""

    def __init__(self, solver: str, relaxed, built, build_s: float):
        self.solver, self.relaxed, self.built, self._build_s = solver, relaxed, built, build_s

    def minimise(self, objective, *, time_limit: float | None = None,
                 early_stop: tuple[float, float] | None = None) -> SolveResult:
        if time_limit is not None and time_limit <= 0:
            r = out_of_time(self.solver, "no time left to solve")
        else:
            r = self.built.minimise(self.relaxed.objective(objective), time_limit=time_limit, early_stop=early_stop)
        r.stats["build_s"], self._build_s = self._build_s, 0.0
        return r


def _adapter(solver: str):
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    return importlib.import_module(f".{solver}", __name__)


def load(model, solver: str = "scip", *, deadline: float = math.inf, threads: int = 1,
         isolate: bool | None = None) -> Loaded | None:
    """``model`` built in ``solver``; None when ``deadline`` (a ``time.perf_counter()`` instant)
    passes while it is built.  ``isolate``: build and solve it in a child process killed at the
    deadline (``isolated``); by default, for a model of ISOLATE_VARS variables or more under a
    deadline, where a child can be started (small models stay in-process: a fork costs ~15 ms)."""
    from ..milp import relax_negligible  # (scipy.sparse: not needed to list the solvers)
    from .isolated import Isolated, available

    adapter = _adapter(solver)
    if isolate is None:
        isolate = not math.isinf(deadline) and model.n_vars >= ISOLATE_VARS and available()
    if isolate:
        served = Isolated(model, solver, deadline, threads)
        return served if served.built else None
    start = time.perf_counter()
    relaxed = relax_negligible(model)
    built = adapter.load(relaxed.model, deadline, threads) if time.perf_counter() < deadline else None
    return None if built is None else Loaded(solver, relaxed, built, time.perf_counter() - start)


def solve(model, objective, solver: str = "scip", *, time_limit: float | None = None, threads: int = 1,
          early_stop: tuple[float, float] | None = None) -> SolveResult:
    """Minimise ``objective`` over ``model`` with ``solver`` (see the module docstring)."""
    start = time.perf_counter()
    deadline = deadline_of(time_limit, start)
    loaded = load(model, solver, deadline=deadline, threads=threads)
    if loaded is None:
        r = out_of_time(solver, "time limit reached while building the model")
        r.stats["build_s"] = time.perf_counter() - start
        return r
    return loaded.minimise(objective, time_limit=left(deadline), early_stop=early_stop)


def finite_or_inf(v: float, big: float = 1e20) -> float:
    """Solvers report infinity as a large number (SCIP 1e20, HiGHS kHighsInf); map it to inf."""
    v = float(v)
    return np.inf if v >= big else -np.inf if v <= -big else v


def out_of_time(solver: str, why: str) -> SolveResult:
    """The result of a solve that could not start: its time ran out (``why``)."""
    return SolveResult("timeout", np.inf, -np.inf, None, {"solver": solver, "raw_status": why, "nodes": 0,
                                                          "gap": np.inf, "build_s": 0.0, "solve_s": 0.0})
