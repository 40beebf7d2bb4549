"""Cross-checking: the attack, STBP, MILP with every backend and SMT on one instance, side by side.

Verdicts can contradict one another in only one way: a method says ``verified`` (or claims a
margin lower bound m) while a point of the threat set is misclassified (or has a margin below m).
crosscheck replays every reported counterexample itself (``replay.replay``) and reports as a
soundness failure
  * ``verified`` against a replayed counterexample from any method (complete methods that
    disagree, or STBP proving what is false);
  * ``falsified`` with a counterexample that does not replay;
  * a margin lower bound above the float64 margin of a replayed counterexample by more than
    MARGIN_CHECK_TOL (1 + |m|) (generous: MILP bounds hold up to solver tolerances);
each with everything needed to reproduce it (``CrossCheck.reproduce``, ``CrossCheck.save``).
Complete methods run without verify()'s attack, so that each decides on its own; the attack runs
once, as a row of its own.  ``plain=True`` adds SMT without STBP lemmas ("smt-plain"), the one
referee that uses no STBP bound at all.  The SMT rows (z3 in a child process) run in threads
beside the others, from the start, for the whole time; once the others have run and decided
(a verdict of verified or falsified), z3 is stopped (``cancel``; its row ``unknown``, with
``stats["cancelled"]``) rather than waited for (``stop_when_decided``).
"""
from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import cancel, validation
from ..dispatch import attack_budget, run
from ..encodings.backends import SOLVERS
from ..replay import replay
from ..result import VerifyResult
from ..threats import DEFAULT_DOMAIN, Threat
from .attack import attack

MARGIN_CHECK_TOL = 1e-4
OPTIONAL_SOLVERS = ("gurobi",)  # an error from these (licence, installation) means skipped, not failed
BESIDE = ("smt",)  # methods run in threads beside the others and stopped once the verdict is known


@dataclass
class CrossCheck:
    results: dict[str, VerifyResult]  # row name -> result
    skipped: dict[str, str]  # row name -> why it did not run
    verdict: str  # agreed: verified | falsified | unknown | timeout; error on a soundness failure
    problems: list[dict]
    reproduce: dict  # threat, y, x0, domain, network summary
    net: object = field(default=None, repr=False)

    @property
    def soundness_failure(self) -> bool:
        return bool(self.problems)

    def table(self) -> str:
        rows = [("method", "status", "time_s", "margin_lb", "note")]
        for name, r in self.results.items():
            lb = "" if r.margin_lb is None else f"{r.margin_lb:.4g}"
            rows.append((name, r.status, f"{r.time_s:.2f}", lb, r.message[:70]))
        rows += [(name, "skipped", "", "", why[:70]) for name, why in self.skipped.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        failure = f"  SOUNDNESS FAILURE: {len(self.problems)} problem(s)" if self.problems else ""
        lines.append(f"verdict: {self.verdict}{failure}")
        lines += [f"  - {p['kind']}: {p['detail']}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready (the result schema's conversion of arrays and non-finite floats)."""
        return VerifyResult("unknown", "all", 0.0, stats={
            "verdict": self.verdict, "soundness_failure": self.soundness_failure, "problems": self.problems,
            "skipped": self.skipped, "reproduce": self.reproduce,
            "results": {k: r.to_dict() for k, r in self.results.items()}}).to_dict()["stats"]

    def save(self, path) -> Path:
        """Pickle the network, the instance and this report: ``crosscheck(**{k: d[k] for k in
        ("net", "x", "y", "threat", "domain")})`` on the loaded dict ``d`` reruns it."""
        path = Path(path)
        r = self.reproduce
        with path.open("wb") as f:
            pickle.dump({"net": self.net, "x": r["x0"], "y": r["y"], "threat": r["threat"], "domain": r["domain"],
                         "report": self.to_dict()}, f)
        return path


def _attack_row(net, x, y, threat, timeout, domain) -> VerifyResult:
    start = time.perf_counter()
    point = attack(net, x, y, threat, time_limit=attack_budget(timeout), domain=domain)  # as verify()
    if point is None:
        return VerifyResult("unknown", "attack", time.perf_counter() - start, message="no counterexample found")
    margin = replay(net, x, y, threat, point, domain).margin64
    return VerifyResult("falsified", "attack", time.perf_counter() - start, None, point, margin_ub=margin)


def _problems(net, x, y, threat, results, domain) -> list[dict]:
    out, points = [], {}
    for name, r in results.items():
        if r.status == "falsified":
            rep = replay(net, x, y, threat, r.counterexample, domain)
            if rep.ok:
                points[name] = rep
            else:
                out.append({"kind": "counterexample does not replay", "methods": [name], "detail": f"{name}: {rep.reason}"})
    for name, r in results.items():
        for src, rep in points.items():
            if r.status == "verified":
                out.append({"kind": "verified vs counterexample", "methods": [name, src],
                            "detail": f"{name} says verified, the counterexample of {src} replays "
                                      f"(float64 margin {rep.margin64:.4g}, float32 {rep.margin32:.4g})"})
            elif r.margin_lb is not None and \
                    rep.margin64 < r.margin_lb - MARGIN_CHECK_TOL * (1 + abs(r.margin_lb)):
                out.append({"kind": "margin bound violated", "methods": [name, src],
                            "detail": f"{name} claims margin >= {r.margin_lb:.6g}, the counterexample of {src} has "
                                      f"margin {rep.margin64:.6g}"})
    return out


def _verdict(results) -> str:
    statuses = {r.status for r in results.values()}
    for s in ("falsified", "verified"):
        if s in statuses:
            return s
    return "timeout" if statuses and statuses <= {"timeout"} else "unknown"


def _row(net, x, y, threat, method, opts, timeout, domain) -> VerifyResult:
    try:
        return run(net, x, y, threat, method, timeout, domain, attack=False, **opts)
    except Exception as e:  # noqa: BLE001 - a method that cannot run is recorded, not fatal
        return VerifyResult("error", method, 0.0, message=f"{type(e).__name__}: {e}")


def crosscheck(net, x, y, threat: Threat | str, timeout: float = 60.0, solvers=None, plain: bool = False,
               domain=DEFAULT_DOMAIN, milp_bounds: str = "stbp", budget: float | None = None,
               stop_when_decided: bool = True) -> CrossCheck:
    """Run every method on one instance and compare (module docstring).  ``solvers``: the MILP
    backends (default all); ``timeout``: seconds per method; ``budget``: seconds for all of them
    instead (each row run in turn gets an equal share of the time left; the rows beside them,
    all of it)."""
    x, y, threat, _, domain = validation.instance(net, x, y, threat, timeout, domain)  # timeout: per method
    runs = [("stbp", "stbp", {})]
    runs += [(f"milp-{s}", "milp", {"solver": s, "bounds": milp_bounds}) for s in (solvers or SOLVERS)]
    runs += [("smt", "smt", {})] + ([("smt-plain", "smt", {"lemmas": False})] if plain else [])
    in_turn = [r for r in runs if r[1] not in BESIDE]
    deadline = None if budget is None else time.perf_counter() + budget

    def share(rows_left: int) -> float:
        return timeout if deadline is None else max((deadline - time.perf_counter()) / rows_left, 1e-3)

    got: dict[str, VerifyResult] = {"attack": _attack_row(net, x, y, threat, share(len(in_turn) + 1), domain)}
    stop = threading.Event()
    with ThreadPoolExecutor(max(1, len(runs) - len(in_turn))) as pool:
        beside = {name: pool.submit(cancel.call_within, stop, _row, net, x, y, threat, method, opts, share(1), domain)
                  for name, method, opts in runs if method in BESIDE}
        for k, (name, method, opts) in enumerate(in_turn):
            if deadline is not None and time.perf_counter() >= deadline:
                got[name] = VerifyResult("timeout", method, 0.0, message=f"not run: the budget ({budget:.3g} s) is spent")
            else:
                got[name] = _row(net, x, y, threat, method, opts, share(len(in_turn) - k), domain)
        if stop_when_decided and _verdict({k: r for k, r in got.items() if r.status != "error"}) in ("verified", "falsified"):
            stop.set()
        got.update({name: f.result() for name, f in beside.items()})
    results, skipped = {"attack": got["attack"]}, {}
    for name, method, opts in runs:
        r = got[name]
        if r.status == "error" and opts.get("solver") in OPTIONAL_SOLVERS:
            skipped[name] = r.message
        else:
            results[name] = r
    problems = _problems(net, x, y, threat, results, domain)
    reproduce = {"threat": threat.spec(), "y": y, "x0": x, "domain": list(domain), "network": net.summary()}
    verdict = "error" if problems else _verdict({k: r for k, r in results.items() if r.status != "error"})
    return CrossCheck(results, skipped, verdict, problems, reproduce, net)


def verify_all(net, x, y, threat, timeout: float | None = None, domain=DEFAULT_DOMAIN, solver: str | None = None,
               solvers=None, plain=False, bounds="stbp") -> VerifyResult:
    """verify(..., method="all"): the cross-check's agreed verdict, ``error`` on a soundness failure.
    ``timeout`` is for the whole cross-check (default 60 s); ``solver`` (one) or ``solvers`` pick the
    MILP backends; ``bounds`` is the MILP big-M source.  ``stats["methods"]`` holds one entry per
    row (status, time_s, margin_lb, margin_ub, message, stats; counterexamples left out: the
    result's own is the first replayed one), ``stats["skipped"]`` the rows that could not run."""
    if solver is not None:
        solvers = (solver,)
    cc = crosscheck(net, x, y, threat, solvers=solvers, plain=plain, domain=domain, milp_bounds=bounds,
                    budget=60.0 if timeout is None else timeout)
    point = next((r.counterexample for r in cc.results.values() if r.status == "falsified"), None)
    lbs = [r.margin_lb for r in cc.results.values() if r.margin_lb is not None and r.status != "error"]
    ubs = [r.margin_ub for r in cc.results.values() if r.margin_ub is not None and r.status != "error"]
    message = "; ".join(p["detail"] for p in cc.problems) if cc.problems else ""
    rows = {name: {k: v for k, v in r.to_dict().items() if k != "counterexample"} for name, r in cc.results.items()}
    stats = {"verdict": cc.verdict, "soundness_failure": cc.soundness_failure, "problems": cc.problems,
             "skipped": cc.skipped, "methods": rows}
    sound = not cc.problems
    return VerifyResult(cc.verdict, "all", 0.0, max(lbs, default=None) if sound else None,
                        point if cc.verdict == "falsified" else None, stats, message,
                        margin_ub=min(ubs, default=None) if sound else None)
