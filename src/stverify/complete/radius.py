"""Maximum safe radius: the largest eps for which an instance stays robust, to a stated tolerance.

S_eps(x0) grows with eps, so robustness is monotone and the radius (capped at eps_max) is
    r = min(eps_max, inf { eps : some x in S_eps(x0) has logit_j(x) >= logit_y(x), j != y }):
robust for every eps < r.  Anytime bounds lower <= r <= upper, in this order:
  * lower by bisection with STBP (CROWN): verified at e  =>  r >= e;
  * upper by bisection with attacks: a replayed counterexample x1 at e  =>  r <= max_v |x1_v - x0_v|;
  * exact, ``complete="eps-milp"``: eps as a MILP variable.  The MILP of
    ``encodings.milp`` for the set at eps_hi = upper (big-M from STBP bounds there, valid for
    every eps <= eps_hi) gets a variable eps in [lower, eps_hi] and rows |x_v - x0_v| <= eps for
    every input variable.  The input variables keep their bounds (the clipped interval at eps_hi)
    and the threat's choice binaries, so for eps <= eps_hi the input rows describe exactly
    x_v in [max(lo, x0_v - eps), min(hi, x0_v + eps)] on the chosen regions: the set is linear in
    eps.  Per competitor j,  r_j = min eps  s.t.  logit_y - logit_j <= 0,  and r = min_j r_j;
    lower = min_j (dual bound of r_j) - solver slack.  The upper bound re-solves the best j with
    logit_y - logit_j <= -delta (delta = MILP_RETRY_DELTA, doubling) until its point replays;
  * or ``complete="milp"`` / ``"bab"``: bisection on eps with that complete method.  The eps-MILP
    gets EPS_MILP_SHARE of the time left; if it leaves a gap above ``tol``, bisection with BaB
    goes on.  ``"auto"`` (default): the eps-MILP for threats of at most EPS_MILP_MAX_MEMBERS
    member boxes, else BaB (whose threat splits beat the MILP's choice binaries there).
Finished when upper - lower <= tol (``exact``) or at the timeout.  The MILP answers hold up to the
solvers' tolerances (``tolerances.solver_margin``); the upper bound is always a replayed
counterexample (or eps_max).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import tolerances, validation
from ..encodings.backends import solve
from ..errors import InputError
from ..properties import OutputSpec, reduce_to_label
from ..encodings.milp import LinExpr, encode
from ..stbp_hybrid.certify import certify
from ..threats import DEFAULT_DOMAIN, Threat
from ..verify import verify
from .attack import attack
from ..replay import replay

COMPLETE = ("auto", "eps-milp", "milp", "bab")
EPS_MILP_SHARE = 0.5  # of the time left after STBP and the attacks; then bisection with BaB
EPS_MILP_MAX_MEMBERS = 64


@dataclass
class RadiusResult:
    lower: float  # robust for every eps <= lower (up to the solver's tolerances where the MILP set it)
    upper: float  # a replayed counterexample exists at eps = upper, unless upper = eps_max
    exact: bool  # upper - lower <= tol
    tol: float
    history: list[dict] = field(default_factory=list)  # {t, lower, upper, by}: the anytime trace
    counterexample: np.ndarray | None = None  # in S_upper(x0), replayed
    time_s: float = 0.0


def _cex_eps(x0: np.ndarray, p: np.ndarray) -> float:
    """The smallest eps whose set contains the counterexample p (the structure aside)."""
    return float(np.max(np.abs(p - x0)))


class _Search:
    def __init__(self, net, x, y, threat, tol, eps_max, deadline, domain):
        self.net, self.x, self.y, self.threat, self.tol, self.domain = net, x, y, threat, tol, domain
        self.deadline, self.start = deadline, time.perf_counter()
        self.lower, self.upper, self.cex = 0.0, eps_max, None
        self.history: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def done(self) -> bool:
        return self.upper - self.lower <= self.tol or self.left() <= 0

    def improve(self, by: str, lower: float | None = None, cex: np.ndarray | None = None) -> None:
        if lower is not None and lower > self.lower:
            self.lower = min(lower, self.upper)
        if cex is not None and _cex_eps(self.x, cex) < self.upper:
            self.upper, self.cex = _cex_eps(self.x, cex), cex
        self.history.append({"t": time.perf_counter() - self.start, "lower": self.lower, "upper": self.upper, "by": by})

    def robust_by_stbp(self, eps: float) -> bool:
        return certify(self.net, self.x, self.y, self.threat.with_eps(eps), "crown", "threat", self.domain).verified

    def stbp(self) -> None:
        """Bisection on [lower, upper] with STBP; the bracket's top is not a bound on r."""
        lo, hi = self.lower, self.upper
        if self.robust_by_stbp(hi):
            return self.improve("stbp", lower=hi)
        while hi - lo > self.tol and self.left() > 0:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.robust_by_stbp(mid) else (lo, mid)
        self.improve("stbp", lower=lo)

    def attacks(self, max_calls: int = 12) -> None:
        """Bisection on [lower, upper] with attacks, starting at upper."""
        lo, eps = self.lower, self.upper
        for _ in range(max_calls):
            if self.done() or eps - lo <= self.tol:
                break
            p = attack(self.net, self.x, self.y, self.threat.with_eps(eps), time_limit=min(0.5, max(self.left(), 0)),
                       domain=self.domain)
            if p is not None:
                self.improve("attack", cex=p)
            else:
                lo = eps
            eps = (lo + self.upper) / 2

    def bisect(self, method: str) -> None:
        """Bisection on [lower, upper] with a complete method (stops at its first undecided answer)."""
        while not self.done():
            mid = (self.lower + self.upper) / 2
            res = verify(self.net, self.x, self.y, self.threat.with_eps(mid), method=method, timeout=self.left(),
                         domain=self.domain)
            if res.status == "verified":
                self.improve(method, lower=mid)
            elif res.status == "falsified":
                self.improve(method, cex=res.counterexample)
            else:
                return

    def eps_milp(self, solver: str, share: float) -> None:
        """eps as a MILP variable (module docstring), within ``share`` of the time left."""
        deadline = time.perf_counter() + share * self.left()
        left = lambda: deadline - time.perf_counter()  # noqa: E731
        hi = self.upper
        threat = self.threat.with_eps(hi)
        cert = certify(self.net, self.x, self.y, threat, "crown", "threat", self.domain)
        enc = encode(self.net, self.x, threat, cert.bounds, self.domain)
        model = enc.model.copy()
        e = int(model.add_vars([self.lower], [hi], name="eps")[0])
        v = enc.vars[0][enc.vars[0] >= 0]
        x0 = self.x[enc.vars[0] >= 0]
        k = np.repeat(np.arange(len(v)), 2)
        cols = np.stack([v, np.full(len(v), e)], 1).ravel()
        model.add_rows(k, cols, np.tile([1.0, -1.0], len(v)), -np.inf, x0)  # x_v - eps <= x0_v
        model.add_rows(k, cols, np.tile([1.0, 1.0], len(v)), x0, np.inf)  # x_v + eps >= x0_v
        objective = LinExpr(np.eye(1, model.n_vars, e).ravel())
        slack = tolerances.solver_margin(hi)

        def minimum(j: int, delta: float):
            m = model.copy()
            margin = enc.objective(self.y, j)
            nz = np.flatnonzero(margin.coef)
            m.add_row(nz, margin.coef[nz], hi=-delta - margin.const)  # logit_y - logit_j <= -delta
            return solve(m, objective, solver, time_limit=None if math.isinf(left()) else max(left(), 1e-3))

        results = {j: minimum(j, 0.0) for j in range(self.net.n_classes) if j != self.y and left() > 0}
        if len(results) == self.net.n_classes - 1:  # dual bounds hold even when a solve timed out
            self.improve("eps-milp", lower=min(min(r.bound, hi) for r in results.values()) - slack)
        for j in sorted(results, key=lambda j: results[j].objective):
            if results[j].x is None or self.done() or left() <= 0:
                break
            for n in range(tolerances.MILP_RETRIES):
                r = minimum(j, tolerances.MILP_RETRY_DELTA * 2 ** n)
                if r.x is None:
                    break
                p = enc.point(r.x)
                rep = replay(self.net, self.x, self.y, self.threat.with_eps(_cex_eps(self.x, p)), p, self.domain)
                if rep.ok:
                    self.improve("eps-milp", cex=rep.point)
                    break


def max_safe_radius(net, x, y, threat: Threat | str, tol: float = 1e-4, eps_max: float = 1.0,
                    timeout: float | None = 60.0, complete: str = "auto", solver: str = "scip",
                    domain=DEFAULT_DOMAIN) -> RadiusResult:
    """The maximum safe radius of ``threat``'s kind (its eps is ignored) to ``tol`` (module docstring)
    for the class y, or for an output property y (as ``verify`` takes it: e.g. the largest eps for
    which a steering output stays within ``deviation:delta=D`` of its clean value)."""
    if complete not in COMPLETE:
        raise InputError(f"complete must be one of {', '.join(COMPLETE)}, got {complete!r}")
    tol = validation.number(tol, "tol", positive=True)  # tol = 0 would bisect until the timeout
    eps_max = validation.number(eps_max, "eps_max", positive=True)
    x, y, threat, timeout, domain = validation.instance(net, x, y, threat, timeout, domain)
    if complete == "auto":
        complete = "eps-milp" if threat.n_members(x.shape) <= EPS_MILP_MAX_MEMBERS else "bab"
    deadline = time.perf_counter() + (math.inf if timeout is None else timeout)
    if isinstance(y, OutputSpec):  # an output property: the label margin of the extended network (``verify``)
        target, label = reduce_to_label(net, y)
        res = _search(target, x, label, threat, tol, eps_max, deadline, domain, complete, solver)
        if res.counterexample is not None and not replay(net, x, y, threat.with_eps(res.upper), res.counterexample, domain).ok:
            # the extended network's point does not violate the property on the original network (a tie
            # within float32 rounding): the upper bound it set is not backed by a counterexample
            res.upper, res.counterexample, res.exact = eps_max, None, False
            res.history.append({"t": res.time_s, "lower": res.lower, "upper": eps_max, "by": "counterexample check"})
        return res
    return _search(net, x, y, threat, tol, eps_max, deadline, domain, complete, solver)


def _search(net, x, y: int, threat, tol, eps_max, deadline, domain, complete, solver) -> RadiusResult:
    s = _Search(net, x, int(y), threat, tol, eps_max, deadline, domain)
    clean = replay(net, x, y, threat.with_eps(0.0), x, domain)
    if clean.ok:
        s.upper, s.cex = 0.0, x
        s.improve("clean input")
    else:
        s.stbp()
        s.attacks()
        if not s.done() and complete == "eps-milp":
            s.eps_milp(solver, EPS_MILP_SHARE)
        if not s.done():
            s.bisect("bab" if complete == "eps-milp" else complete)
    return RadiusResult(s.lower, s.upper, s.upper - s.lower <= tol, tol, s.history, s.cex, time.perf_counter() - s.start)
