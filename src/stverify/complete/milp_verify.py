"""Complete verification by MILP (method ``milp``): exact, with big-M from sound bounds.

For every competitor j != y not already proven by the bound certificate, minimise
m_j(x) = logit_y(x) - logit_j(x) over the MILP of ``encodings.milp`` (exact over the threat set),
stopping as soon as the sign is known (``optimal=True``: to optimality, every j, so ``margin_lb``
is the exact minimum margin):
  * dual bound > tolerances.solver_margin(scale)   -> j is proven;
  * a solution with m_j < 0                         -> a candidate: replayed on the float64
    reference and the float32 model (``replay.replay``); if it does not replay, search again
    with m_j <= -delta (delta doubling), and answer ``unknown`` if that fails too;
  * otherwise the minimum lies within the tolerance of 0 (``unknown``) or time ran out.
Big-M sources: ``naive`` (IBP over the bounding box), ``stbp`` (CROWN with exact concretisation
over the threat set), ``stbp-alpha`` (its margins by alpha-CROWN), ``lp`` (``stbp`` then
per-neuron LP tightening, see ``lp_tighten``).  The competitors skipped are those whose margin
lower bound from the same certificate is already > 0.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import tolerances
from ..encodings.backends import SOLVERS, SolverError, solve
from ..encodings.milp import encode
from ..result import VerifyResult
from ..stbp_hybrid.certify import certify
from ..threats import DEFAULT_DOMAIN
from .lp_tighten import tighten
from ..replay import replay

BOUND_SOURCES = {"naive": ("ibp", "box"), "stbp": ("crown", "threat"), "stbp-alpha": ("alpha-crown", "threat"),
                 "lp": ("crown", "threat")}


@dataclass
class Outcome:
    """What the MILP says about one competitor j."""

    status: str  # verified | falsified | unknown | timeout
    bound: float  # a lower bound of min m_j from the solver (-inf if none)
    point: np.ndarray | None = None
    message: str = ""
    stats: dict = field(default_factory=dict)


def _solve(model, obj, solver, deadline, threads, early_stop, log):
    left = deadline - time.perf_counter()
    r = solve(model, obj, solver, time_limit=None if math.isinf(left) else max(left, 1e-3), threads=threads,
              early_stop=early_stop)
    log.append({"status": r.status, "objective": r.objective, "bound": r.bound,
                **{k: r.stats[k] for k in ("nodes", "build_s", "solve_s")}})
    return r


def decide(net, x, y, threat, enc, j, solver="scip", deadline=math.inf, threads=1, optimal=False,
           domain=DEFAULT_DOMAIN) -> Outcome:
    """The sign of min m_j over the threat set (see the module docstring)."""
    obj = enc.objective(y, j)
    tol = tolerances.solver_margin(obj.scale(enc.model.lb, enc.model.ub))
    log: list[dict] = []
    r = _solve(enc.model, obj, solver, deadline, threads, None if optimal else (-tol, tol), log)
    stats = {"tol": tol, "solves": log}
    if r.status in ("infeasible", "error"):  # x0 is feasible: an infeasible model means numerical trouble
        return Outcome("unknown", -math.inf, None, f"class {j}: {solver} stopped with status {r.stats['raw_status']}",
                       stats)
    if r.bound > tol:
        return Outcome("verified", r.bound, stats=stats)
    if r.x is None or not r.objective < 0:
        if r.status == "timeout":
            return Outcome("timeout", r.bound, stats=stats)
        return Outcome("unknown", r.bound, None, f"class {j}: the minimum margin lies in [{r.bound:.3g}, {tol:.3g}], "
                       "within the solver tolerance of 0", stats)
    first, nz = r, np.flatnonzero(obj.coef)
    for k in range(tolerances.MILP_RETRIES + 1):
        rep = replay(net, x, y, threat, enc.point(r.x), domain)
        if rep.ok:
            return Outcome("falsified", first.bound, rep.point, f"class {j} beats class {y} at the counterexample "
                           f"(replayed margin {rep.margin64:.3g})", {**stats, "replay_margin": rep.margin64})
        if k == tolerances.MILP_RETRIES:
            break
        delta = tolerances.MILP_RETRY_DELTA * 2 ** k
        model = enc.model.copy()
        model.add_row(nz, obj.coef[nz], hi=-delta - obj.const)  # m_j <= -delta
        r = _solve(model, obj, solver, deadline, threads, (0.0, math.inf), log)
        if r.x is None:
            if r.status == "timeout":
                return Outcome("timeout", first.bound, stats=stats)
            return Outcome("unknown", first.bound, None, f"class {j}: the solver's points with margin < 0 do not "
                           f"replay ({rep.reason}) and none has margin <= -{delta:g}", stats)
    return Outcome("unknown", first.bound, None, f"class {j}: no solver point replays ({rep.reason})", stats)


def verify_milp(net, x, y, threat, timeout: float | None = 60.0, domain=DEFAULT_DOMAIN, solver: str = "scip",
                bounds: str = "stbp", threads: int = 1, optimal: bool = False, lp_share: float = 0.5,
                device=None, **_) -> VerifyResult:
    """Complete verification (module docstring).  ``lp_share``: the share of the time left after
    the certificate that LP tightening (``bounds="lp"``) may use."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    if bounds not in BOUND_SOURCES:
        raise ValueError(f"unknown bound source {bounds!r}; available: {', '.join(BOUND_SOURCES)}")
    start = time.perf_counter()
    deadline = start + (math.inf if timeout is None else timeout)
    x = np.asarray(x, dtype=np.float64)
    cert = certify(net, x, y, threat, *BOUND_SOURCES[bounds], domain, device=device)
    lbs = cert.margin_lb.copy()
    others = [int(j) for j in np.argsort(lbs, kind="stable") if j != y]
    todo = others if optimal else [j for j in others if not lbs[j] > 0]
    stats = {"bounds": bounds, "bounds_s": cert.time_s, "proven_by_bounds": [j for j in others if j not in todo]}
    bnds = cert.bounds
    if bounds == "lp" and todo:
        now = time.perf_counter()
        bnds, stats["lp"] = tighten(net, x, threat, bnds, domain, now + lp_share * (deadline - now), threads)
    enc = encode(net, x, threat, bnds, domain)
    stats.update(solver=solver, threads=threads, optimal=optimal, **enc.stats,
                 binaries=sum(enc.stats["n_binaries"].values()),
                 unstable_relus=sum(enc.stats["unstable_per_layer"].values()))
    outcomes: dict[int, Outcome] = {}
    try:
        for j in todo:
            if time.perf_counter() >= deadline:
                outcomes[j] = Outcome("timeout", -math.inf, message="no time left")
                continue
            outcomes[j] = o = decide(net, x, y, threat, enc, j, solver, deadline, threads, optimal, domain)
            lbs[j] = max(lbs[j], o.bound)
            if o.status == "falsified" and not optimal:
                break
    except SolverError as e:
        return VerifyResult("error", "milp", time.perf_counter() - start, None, None, stats, str(e))
    solves = [s for o in outcomes.values() for s in o.stats.get("solves", [])]
    stats.update(nodes=sum(s["nodes"] for s in solves), build_s=sum(s["build_s"] for s in solves),
                 solve_s=sum(s["solve_s"] for s in solves), margin_lb_per_class=lbs,
                 competitors={j: {"status": o.status, "bound": o.bound, "message": o.message, **o.stats}
                              for j, o in outcomes.items()})
    margin = float(min(lbs[j] for j in others))
    for status in ("falsified", "unknown", "timeout"):
        hit = {j: o for j, o in outcomes.items() if o.status == status}
        if hit:
            msg = "; ".join(o.message for o in hit.values() if o.message)
            if status == "timeout":
                msg = f"time limit ({timeout} s) reached deciding class(es) {sorted(hit)}"
            point = next(iter(hit.values())).point
            return VerifyResult(status, "milp", time.perf_counter() - start, margin, point, stats, msg)
    return VerifyResult("verified", "milp", time.perf_counter() - start, margin, None, stats)
