"""Complete verification by MILP (method ``milp``): exact, with big-M from sound bounds.

For every competitor j != y not already proven by the bound certificate, minimise
m_j(x) = logit_y(x) - logit_j(x) over the MILP of ``encodings.milp`` (exact over the threat set),
stopping as soon as the sign is known (``optimal=True``: to optimality, every j):
  * dual bound > tolerances.solver_margin(scale)   -> j is proven;
  * a solution with m_j < 0                         -> a candidate: replayed on the float64
    reference and the float32 model (``replay.replay``); if it does not replay, search again
    with m_j <= -delta (delta doubling), and answer ``unknown`` if that fails too;
  * otherwise the minimum lies within the tolerance of 0 (``unknown``) or time ran out.
A competitor the certificate proves stays proven whatever the solver says (``optimal=True`` only
adds information).  Big-M sources: ``naive`` (IBP over the bounding box), ``stbp`` (CROWN with
exact concretisation over the threat set), ``stbp-alpha`` (its margins by alpha-CROWN), ``lp``
(``stbp`` then per-neuron LP tightening, see ``lp_tighten``).

Reported numbers: ``margin_lb`` = min over j of the best sound lower bound of min m_j (the
certificate's, or the solver's dual bound less its tolerance ``solver_margin``: solvers are
exact only up to it); ``margin_ub`` = the float64 margin at the best point of the set found: for
``falsified``, the reported counterexample's (the replayed one with the lowest margin), else the
lowest over the solvers' points.  ``stats["gap"]`` = margin_ub - margin_lb (inf without a point):
the minimum lies in [margin_lb, margin_ub], which are never closer than the solver tolerance;
``stats["optimal"]`` is True only when ``optimal=True`` and every solve ended proven optimal (to
the solvers' tolerances: the gap says how close margin_ub is to the minimum).  The solver's model
is built once and minimised for one competitor after another.
``timeout`` covers the certificate, LP tightening, the encoding, building the solver's model and
solving (``deadline``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import tolerances
from ..deadline import DeadlineExceeded, left, of as deadline_of, passed
from ..encodings.backends import SOLVERS, SolverError, load, solve
from ..encodings.milp import encode
from ..errors import InputError
from ..replay import margin_at, replay
from ..result import VerifyResult
from ..stbp_hybrid.certify import certify
from ..threats import DEFAULT_DOMAIN
from .big_m import BOUND_SOURCES
from .lp_tighten import tighten



@dataclass
class Outcome:
    """What the MILP says about one competitor j."""

    status: str  # verified | falsified | unknown | timeout
    bound: float  # a sound lower bound of min m_j: the solver's dual bound less its tolerance (-inf if none)
    point: np.ndarray | None = None  # for falsified: the replayed counterexample
    message: str = ""
    stats: dict = field(default_factory=dict)
    upper: float = math.inf  # the float64 margin at the best point of the set found (falsified: at ``point``)
    optimal: bool = False  # the solver proved its minimum (status optimal)


def _log(r, log: list) -> None:
    log.append({"status": r.status, "objective": r.objective, "bound": r.bound,
                **{k: r.stats[k] for k in ("nodes", "build_s", "solve_s")}})


def decide(net, x, y, threat, enc, j, solver="scip", deadline=math.inf, threads=1, optimal=False,
           domain=DEFAULT_DOMAIN, loaded=None) -> Outcome:
    """The sign of min m_j over the threat set (see the module docstring).  ``loaded``: the
    encoding's model already built in ``solver`` (``backends.load``), else it is built here."""
    obj = enc.objective(y, j)
    tol = tolerances.solver_margin(obj.scale(enc.model.lb, enc.model.ub))
    log: list[dict] = []
    stats = {"tol": tol, "solves": log}
    early = None if optimal else (-tol, tol)
    if loaded is None:
        r = solve(enc.model, obj, solver, time_limit=left(deadline), threads=threads, early_stop=early)
    else:
        r = loaded.minimise(obj, time_limit=left(deadline), early_stop=early)
    _log(r, log)
    if r.status in ("infeasible", "error"):  # x0 is feasible: an infeasible model means numerical trouble
        return Outcome("unknown", -math.inf, None, f"class {j}: {solver} stopped with status {r.stats['raw_status']}",
                       stats)
    bound = r.bound - tol  # the solver's dual bound holds only up to its tolerance
    upper = math.inf if r.x is None else margin_at(net, x, y, threat, enc.point(r.x), domain)
    done = dict(upper=math.inf if upper is None else upper, optimal=r.status == "optimal")
    if bound > 0:
        return Outcome("verified", bound, stats=stats, **done)
    if r.x is None or not r.objective < 0:
        if r.status == "timeout":
            return Outcome("timeout", bound, stats=stats, **done)
        return Outcome("unknown", bound, None, f"class {j}: the minimum margin lies in [{r.bound:.3g}, {tol:.3g}], "
                       "within the solver tolerance of 0", stats, **done)
    nz = np.flatnonzero(obj.coef)
    for k in range(tolerances.MILP_RETRIES + 1):
        rep = replay(net, x, y, threat, enc.point(r.x), domain)
        if rep.ok:
            return Outcome("falsified", bound, rep.point, f"class {j} beats class {y} at the counterexample "
                           f"(replayed margin {rep.margin64:.3g})", {**stats, "replay_margin": rep.margin64},
                           rep.margin64, done["optimal"])
        if k == tolerances.MILP_RETRIES:
            break
        delta = tolerances.MILP_RETRY_DELTA * 2 ** k
        model = enc.model.copy()
        model.add_row(nz, obj.coef[nz], hi=-delta - obj.const)  # m_j <= -delta
        r = solve(model, obj, solver, time_limit=left(deadline), threads=threads, early_stop=(0.0, math.inf))
        _log(r, log)
        if r.x is None:
            if r.status == "timeout":
                return Outcome("timeout", bound, stats=stats, **done)
            return Outcome("unknown", bound, None, f"class {j}: the solver's points with margin < 0 do not "
                           f"replay ({rep.reason}) and none has margin <= -{delta:g}", stats, **done)
    return Outcome("unknown", bound, None, f"class {j}: no solver point replays ({rep.reason})", stats, **done)


def verify_milp(net, x, y, threat, timeout: float | None = 60.0, domain=DEFAULT_DOMAIN, solver: str = "scip",
                bounds: str = "stbp", threads: int = 1, optimal: bool = False, lp_share: float = 0.5,
                device=None, **_) -> VerifyResult:
    """Complete verification (module docstring).  ``lp_share``: the share of the time left after
    the certificate that LP tightening (``bounds="lp"``) may use."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    if bounds not in BOUND_SOURCES:
        raise InputError(f"unknown bound source {bounds!r}; available: {', '.join(BOUND_SOURCES)}")
    start = time.perf_counter()
    deadline = deadline_of(timeout, start)
    x = np.asarray(x, dtype=np.float64)
    cert = certify(net, x, y, threat, *BOUND_SOURCES[bounds], domain, deadline=deadline, device=device)
    lbs = cert.margin_lb.copy()
    others = [int(j) for j in np.argsort(lbs, kind="stable") if j != y]
    proven = {j for j in others if lbs[j] > 0}
    todo = others if optimal else [j for j in others if j not in proven]
    stats = {"bounds": bounds, "bounds_s": cert.time_s, "proven_by_bounds": sorted(proven), "solver": solver,
             "threads": threads, "optimal": False, "gap": math.inf}

    def result(status, point=None, message="", ub=None):
        return VerifyResult(status, "milp", time.perf_counter() - start, float(min(lbs[j] for j in others)), point,
                            stats, message, margin_ub=ub)

    try:  # (encoded even when the certificate proves every j: the MILP's size is reported)
        if passed(deadline):
            raise DeadlineExceeded("time limit reached during the bounds")
        bnds = cert.bounds
        if bounds == "lp" and todo:
            now = time.perf_counter()
            bnds, stats["lp"] = tighten(net, x, threat, bnds, domain, now + lp_share * (deadline - now), threads)
        enc = encode(net, x, threat, bnds, domain, deadline=deadline)
    except DeadlineExceeded as e:
        if all(j in proven for j in todo):  # the certificate proves every j
            return result("verified")
        return result("timeout", message=f"{e}, before any MILP solve")
    stats.update(**enc.stats, binaries=sum(enc.stats["n_binaries"].values()),
                 unstable_relus=sum(enc.stats["unstable_per_layer"].values()))
    outcomes: dict[int, Outcome] = {}
    try:
        loaded = load(enc.model, solver, deadline=deadline, threads=threads) if todo else None
        for j in todo:
            if loaded is None or passed(deadline):
                o = Outcome("timeout", -math.inf, message="no time left")
            else:
                o = decide(net, x, y, threat, enc, j, solver, deadline, threads, optimal, domain, loaded)
            if j in proven and o.status in ("unknown", "timeout"):
                o.status = "verified"  # the certificate's proof stands; the solver only had to find the optimum
            outcomes[j] = o
            lbs[j] = max(lbs[j], o.bound)
            if o.status == "falsified" and not optimal:
                break
    except SolverError as e:
        return VerifyResult("error", "milp", time.perf_counter() - start, None, None, stats, str(e))
    solves = [s for o in outcomes.values() for s in o.stats.get("solves", [])]
    falsified = [o for o in outcomes.values() if o.status == "falsified"]
    if falsified:  # the best counterexample, and its margin
        best = min(falsified, key=lambda o: o.upper)
        point, ub = best.point, best.upper
    else:
        point, ub = None, min((o.upper for o in outcomes.values()), default=math.inf)
    lb = float(min(lbs[j] for j in others))
    stats.update(nodes=sum(s["nodes"] for s in solves), build_s=sum(s["build_s"] for s in solves),
                 solve_s=sum(s["solve_s"] for s in solves), margin_lb_per_class=lbs, gap=ub - lb,
                 competitors={j: {"status": o.status, "bound": o.bound, "upper": o.upper, "optimal": o.optimal,
                                  "message": o.message, **o.stats} for j, o in outcomes.items()})
    if optimal:
        stats["optimal"] = len(outcomes) == len(others) and all(o.optimal for o in outcomes.values())
    ub = None if math.isinf(ub) else ub
    if falsified:
        return result("falsified", point, "; ".join(o.message for o in falsified), ub)
    for status in ("unknown", "timeout"):
        hit = sorted(j for j, o in outcomes.items() if o.status == status)
        if hit:
            msg = "; ".join(outcomes[j].message for j in hit if outcomes[j].message)
            if status == "timeout":
                msg = f"time limit ({timeout:.3g} s) reached deciding class(es) {hit}"
            return result(status, None, msg, ub)
    return result("verified", ub=ub)
