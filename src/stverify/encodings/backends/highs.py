"""HiGHS adapter (highspy): the whole model passed at once in column-wise CSC arrays.  Sign stops:
option ``objective_target`` (stop once a solution is below it) and a MIP-interrupt callback that
stops once the dual bound reaches the upper threshold.  One built model is minimised over several
objectives (``Loaded``: only the costs change)."""
from __future__ import annotations

import math
import time

import highspy
import numpy as np

from ...stdio import stdout_to_stderr
from . import SolveResult, finite_or_inf

_STATUS = {highspy.HighsModelStatus.kOptimal: "optimal", highspy.HighsModelStatus.kInfeasible: "infeasible",
           highspy.HighsModelStatus.kTimeLimit: "timeout", highspy.HighsModelStatus.kObjectiveTarget: "feasible",
           highspy.HighsModelStatus.kInterrupt: "bound_reached"}
MIP_FEASIBILITY_TOLERANCE = 1e-9


def build(model, objective=None, relax: bool = False, threads: int = 1) -> highspy.Highs:
    """A silent ``Highs`` holding ``model`` (integrality dropped when ``relax``) and ``objective``."""
    with stdout_to_stderr():  # the first Highs() prints a banner on stdout
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    A = model.to_csr().tocsc()
    cost = np.zeros(model.n_vars) if objective is None else objective.coef
    integrality = np.zeros(model.n_vars, np.int32) if relax else model.is_binary.astype(np.int32)
    h.passModel(model.n_vars, model.n_rows, A.nnz, int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize),
                0.0 if objective is None else objective.const, cost, model.lb, model.ub, model.row_lo, model.row_hi,
                A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data, integrality)
    return h


class Loaded:
    """A built HiGHS model, minimised over one objective after another."""

    def __init__(self, h: highspy.Highs, mip: bool):
        self.h, self.mip = h, mip
        self.cols = np.arange(h.getNumCol(), dtype=np.int32)

    def minimise(self, objective, *, time_limit=None, early_stop=None) -> SolveResult:
        h = self.h
        h.changeColsCost(len(self.cols), self.cols, np.asarray(objective.coef, dtype=np.float64))
        h.changeObjectiveOffset(float(objective.const))
        h.setOptionValue("time_limit", math.inf if time_limit is None else max(float(time_limit), 0.0))
        lo, hi = early_stop if early_stop is not None and self.mip else (-math.inf, math.inf)  # (a pure LP is simply solved)
        h.setOptionValue("objective_target", float(lo) if np.isfinite(lo) else -math.inf)
        h.cbMipInterrupt.clear()
        if np.isfinite(hi):  # (the interrupt flag outlives a solve: set it either way)
            h.cbMipInterrupt.subscribe(lambda e: setattr(e.data_in, "user_interrupt", e.data_out.mip_dual_bound >= hi))
        start = time.perf_counter()
        h.run()
        ms, info = h.getModelStatus(), h.getInfo()
        status = _STATUS.get(ms, "error")
        has_sol = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
        x = np.array(h.getSolution().col_value) if has_sol else None
        value = float(info.objective_function_value) if has_sol else np.inf
        if status == "infeasible":
            bound = np.inf
        elif self.mip:
            bound = finite_or_inf(info.mip_dual_bound)
        else:
            bound = value if status == "optimal" else -np.inf
        stats = {"solver": "highs", "raw_status": h.modelStatusToString(ms), "nodes": int(max(info.mip_node_count, 0)),
                 "gap": finite_or_inf(info.mip_gap) if self.mip else 0.0, "build_s": 0.0, "solve_s": time.perf_counter() - start}
        return SolveResult(status, value, bound, x, stats)


def load(model, deadline: float = math.inf, threads: int = 1) -> Loaded:
    h = build(model, threads=threads)
    h.setOptionValue("mip_rel_gap", 0.0)
    # HiGHS's default MIP feasibility tolerance (1e-6) let presolve return an "optimal" minimum 1e-5
    # above a point of the set (zoo medmnist, see tests/test_milp.py); at 1e-9 it did not, for ~1.1-1.8x time.
    h.setOptionValue("mip_feasibility_tolerance", MIP_FEASIBILITY_TOLERANCE)
    return Loaded(h, bool(model.is_binary.any()))
