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

A union with few members (anyframes, anypatch) that the certificate over the whole set does not
prove is split into at most MAX_PARTS parts (``threat_parts``), each with its own certificate
(in one batched pass) and MILP: exact, since the minimum over the set
is the smallest over the parts, and with the parts' tighter big-M.  The instance is verified
when every part is (parts their certificate proves are not encoded), falsified when one is.

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
from ..stbp_hybrid.certify import certify, certify_batch
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch
from .big_m import BOUND_SOURCES
from .lp_tighten import tighten
from .partition import threat_children
from .preattack import falsify

MAX_PARTS = 64  # (as many as bab's frame children: medmnist's 28 frames)



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


@dataclass
class Part:
    """The MILP over one part of the threat set: per class j its margin lower bound and outcome."""

    threat: object
    cert: object  # its certificate (``certify``)
    lbs: np.ndarray  # per class: the certificate's bound, raised by the solver's
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)  # the encoding's sizes, lp tightening
    cut: str = ""  # why no MILP ran (the deadline passed first), if so
    solved: bool = False  # False: not tried, another part being falsified first

    def status(self, others) -> str:
        """verified | falsified | unknown | timeout over every class, or "not solved"."""
        if not self.solved:
            return "not solved"
        said = {o.status for o in self.outcomes.values()}
        for status in ("falsified", "unknown", "timeout"):
            if status in said:
                return status
        return "timeout" if self.cut and not all(self.lbs[j] > 0 for j in others) else "verified"


def threat_parts(threat, shape) -> list:
    """The threat set as at most MAX_PARTS smaller sets: an anyframes or anypatch union split as
    branch-and-bound splits it (``partition.threat_children``), again while the parts stay that few; else
    [threat].  One MILP per part, each with the part's own (tighter) big-M bounds: on zoo ``small``
    an anyframes MILP over the union timed out at 60 s where the 8 per-frame MILPs take 0.3 s."""
    parts = [threat]
    while isinstance(threat, (AnyFrames, AnyPatch)):
        split = [c for p in parts for c in (threat_children(p, shape) or [p])]
        if len(split) == len(parts) or len(split) > MAX_PARTS:
            break
        parts = split
    return parts


def _solve_part(net, x, y, part: Part, others, bounds, solver, deadline, threads, optimal, domain,
                lp_deadline, encode_proven: bool) -> Part:
    """Encode ``part`` with the certificate's bounds and decide every class it leaves open (all of
    them with ``optimal``), lowest bound first.  ``encode_proven``: encode it even when the
    certificate proves every class (the MILP's size is reported)."""
    part.solved = True
    proven = {j for j in others if part.lbs[j] > 0}
    todo = [j for j in others if optimal or j not in proven]
    if not (todo or encode_proven):
        return part
    try:
        if passed(deadline):
            raise DeadlineExceeded("time limit reached during the bounds")
        bnds = part.cert.bounds
        if bounds == "lp" and todo:
            bnds, part.stats["lp"] = tighten(net, x, part.threat, bnds, domain, lp_deadline, threads)
        enc = encode(net, x, part.threat, bnds, domain, deadline=deadline)
    except DeadlineExceeded as e:
        part.cut = f"{e}, before any MILP solve"
        return part
    part.stats.update(enc.stats)
    loaded = load(enc.model, solver, deadline=deadline, threads=threads) if todo else None
    for j in sorted(todo, key=lambda j: part.lbs[j]):
        if loaded is None or passed(deadline):
            o = Outcome("timeout", -math.inf, message="no time left")
        else:
            o = decide(net, x, y, part.threat, enc, j, solver, deadline, threads, optimal, domain, loaded)
        if j in proven and o.status in ("unknown", "timeout"):
            o.status = "verified"  # the certificate's proof stands; the solver only had to find the optimum
        part.outcomes[j] = o
        part.lbs[j] = max(part.lbs[j], o.bound)
        if o.status == "falsified" and not optimal:
            break
    return part


def verify_milp(net, x, y, threat, timeout: float | None = 60.0, domain=DEFAULT_DOMAIN, solver: str = "scip",
                bounds: str = "stbp", threads: int = 1, optimal: bool = False, lp_share: float = 0.5,
                device=None, root_attack: float = 0.0, **_) -> VerifyResult:
    """Complete verification (module docstring).  ``lp_share``: the share of the time left after
    the certificate that LP tightening (``bounds="lp"``) may use; ``root_attack``: seconds of the
    attack run when the certificate leaves the instance open (``preattack``)."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    if bounds not in BOUND_SOURCES:
        raise InputError(f"unknown bound source {bounds!r}; available: {', '.join(BOUND_SOURCES)}")
    start = time.perf_counter()
    deadline = deadline_of(timeout, start)
    x = np.asarray(x, dtype=np.float64)
    relaxation, concretize = BOUND_SOURCES[bounds]
    whole = certify(net, x, y, threat, relaxation, concretize, domain, device=device, deadline=deadline)
    others = [j for j in range(net.n_classes) if j != y]
    if not all(whole.margin_lb[j] > 0 for j in others) and (
            hit := falsify(net, x, y, threat, min(root_attack, deadline - time.perf_counter()), domain, "milp", start)):
        return hit
    split = threat_parts(threat, x.shape)
    parts = [Part(threat, whole, whole.margin_lb.copy())]
    if len(split) > 1 and (optimal or not all(whole.margin_lb[j] > 0 for j in others)) and not passed(deadline):
        certs = certify_batch(net, x, y, [(t, None) for t in split], relaxation, concretize, domain, device=device,
                              deadline=deadline)
        parts = sorted((Part(t, c, np.maximum(c.margin_lb, whole.margin_lb)) for t, c in zip(split, certs)),
                       key=lambda p: min(p.lbs[others]))  # (a part's minimum is at least the whole set's)
    stats = {"bounds": bounds, "bounds_s": time.perf_counter() - start, "solver": solver, "threads": threads, "optimal": False,
             "gap": math.inf, "parts": len(parts),
             "proven_by_bounds": [j for j in others if all(p.lbs[j] > 0 for p in parts)]}
    lp_deadline = time.perf_counter() + lp_share * (deadline - time.perf_counter())
    try:
        for part in parts:
            _solve_part(net, x, y, part, others, bounds, solver, deadline, threads, optimal, domain, lp_deadline,
                        encode_proven=len(parts) == 1)
            if part.status(others) == "falsified" and not optimal:
                break  # (the parts left keep their certificates' bounds)
    except SolverError as e:
        return VerifyResult("error", "milp", time.perf_counter() - start, None, None, stats, str(e))
    return _result(parts, others, stats, optimal, timeout, start)


def _result(parts: list[Part], others, stats: dict, optimal: bool, timeout, start: float) -> VerifyResult:
    """The parts' outcomes combined (module docstring): the set's minimum is the parts' smallest."""
    outcomes = [(p, j, o) for p in parts for j, o in p.outcomes.items()]
    solves = [s for _, _, o in outcomes for s in o.stats.get("solves", [])]
    lbs = np.min([p.lbs for p in parts], axis=0)
    lb = float(min(lbs[j] for j in others))
    falsified = [o for _, _, o in outcomes if o.status == "falsified"]
    if falsified:  # the best counterexample, and its margin
        best = min(falsified, key=lambda o: o.upper)
        point, ub = best.point, best.upper
    else:
        point, ub = None, min((o.upper for _, _, o in outcomes), default=math.inf)
    encoded = [p.stats for p in parts if "n_vars" in p.stats]
    if encoded:
        for key in ("n_vars", "n_constraints"):
            stats[key] = sum(e[key] for e in encoded)
        stats["n_binaries"] = {k: sum(e["n_binaries"][k] for e in encoded) for k in encoded[0]["n_binaries"]}
        stats["unstable_per_layer"] = {i: sum(e["unstable_per_layer"].get(i, 0) for e in encoded)
                                       for i in sorted({i for e in encoded for i in e["unstable_per_layer"]})}
        stats["big_m"] = max((e["big_m"] for e in encoded), key=lambda m: m["max_u"])
        stats.update(binaries=sum(stats["n_binaries"].values()), unstable_relus=sum(stats["unstable_per_layer"].values()))
    if any("lp" in p.stats for p in parts):
        stats["lp"] = [p.stats["lp"] for p in parts if "lp" in p.stats]
    competitors = {j: o for _, j, o in sorted(outcomes, key=lambda t: t[2].bound, reverse=True)}  # each j's worst part
    stats.update(nodes=sum(s["nodes"] for s in solves), build_s=sum(s["build_s"] for s in solves),
                 solve_s=sum(s["solve_s"] for s in solves), margin_lb_per_class=lbs, gap=ub - lb,
                 competitors={j: {"status": o.status, "bound": o.bound, "upper": o.upper, "optimal": o.optimal,
                                  "message": o.message, **o.stats} for j, o in competitors.items()})
    if len(parts) > 1:
        stats["part_status"] = {p.threat.spec(): p.status(others) for p in parts}
    if optimal:
        stats["optimal"] = all(p.solved and len(p.outcomes) == len(others) and all(o.optimal for o in p.outcomes.values())
                               for p in parts)
    ub = None if math.isinf(ub) else ub

    def result(status, point=None, message=""):
        return VerifyResult(status, "milp", time.perf_counter() - start, lb, point, stats, message, margin_ub=ub)

    if falsified:
        return result("falsified", point, "; ".join(o.message for o in falsified))
    for status in ("unknown", "timeout"):
        hit = sorted({j for _, j, o in outcomes if o.status == status})
        if hit:
            msg = "; ".join(dict.fromkeys(o.message for _, _, o in outcomes if o.status == status and o.message))
            if status == "timeout":
                msg = f"time limit ({timeout:.3g} s) reached deciding class(es) {hit}"
            return result(status, None, msg)
    cut = [p.cut for p in parts if p.status(others) == "timeout"]
    if cut:
        return result("timeout", None, cut[0])
    return result("verified")
