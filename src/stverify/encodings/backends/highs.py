"""HiGHS adapter (highspy): the whole model passed at once in column-wise CSC arrays.  Sign stops:
option ``objective_target`` (stop once a solution is below it) and a MIP-interrupt callback that
stops once the dual bound reaches the upper threshold."""
from __future__ import annotations

import time

import highspy
import numpy as np

from ...deadline import of as deadline_of
from ...stdio import stdout_to_stderr
from . import SolveResult, finite_or_inf, out_of_time, time_left

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


def solve(model, objective, *, time_limit=None, threads=1, early_stop=None) -> SolveResult:
    start = time.perf_counter()
    deadline = deadline_of(time_limit, start)
    h = build(model, objective, threads=threads)
    mip = bool(model.is_binary.any())
    h.setOptionValue("mip_rel_gap", 0.0)
    # HiGHS's default MIP feasibility tolerance (1e-6) let presolve return an "optimal" minimum 1e-5
    # above a point of the set (zoo medmnist, see tests/test_milp.py); at 1e-9 it did not, for ~1.1-1.8x time.
    h.setOptionValue("mip_feasibility_tolerance", MIP_FEASIBILITY_TOLERANCE)
    left = time_left(deadline)
    if left is not None:
        if left <= 0:
            return out_of_time("highs", start, time.perf_counter() - start)
        h.setOptionValue("time_limit", left)
    if early_stop is not None and mip:  # (a pure LP is simply solved)
        lo, hi = early_stop
        if np.isfinite(lo):
            h.setOptionValue("objective_target", float(lo))
        if np.isfinite(hi):
            h.cbMipInterrupt.subscribe(lambda e: e.interrupt() if e.data_out.mip_dual_bound >= hi else None)
    build_s = time.perf_counter() - start
    h.run()
    ms, info = h.getModelStatus(), h.getInfo()
    status = _STATUS.get(ms, "error")
    has_sol = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
    x = np.array(h.getSolution().col_value) if has_sol else None
    objective_value = float(info.objective_function_value) if has_sol else np.inf
    if status == "infeasible":
        bound = np.inf
    elif mip:
        bound = finite_or_inf(info.mip_dual_bound)
    else:
        bound = objective_value if status == "optimal" else -np.inf
    stats = {"solver": "highs", "raw_status": h.modelStatusToString(ms), "nodes": int(max(info.mip_node_count, 0)),
             "gap": finite_or_inf(info.mip_gap) if mip else 0.0, "build_s": build_s,
             "solve_s": time.perf_counter() - start - build_s}
    return SolveResult(status, objective_value, bound, x, stats)
