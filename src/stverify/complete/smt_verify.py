"""Complete verification by SMT (method ``smt``): z3 in exact rational arithmetic, hard time limit.

With ``lemmas`` (the default) STBP (CROWN, exact concretisation over the threat set) runs first:
competitors j whose margin lower bound is > 0 are dropped, and its bounds fix stable ReLUs and
become lemmas of the encoding (``encodings.smt``); no competitor left means ``verified`` without
z3.  ``lemmas=False`` is the plain encoding, which uses nothing from STBP: an independent referee.

The z3 query runs in a child process killed at the deadline (z3 does not always honour its own
timeout, which is set a little earlier so that the child normally answers by itself):
  * unsat  -> ``verified``, exactly: no tolerance is involved;
  * sat    -> the model's input, rounded to float64, is replayed (``replay.replay``):
              ``falsified`` if it replays, else ``unknown`` (a tie or near-tie that z3 could not
              improve on: see ``smt.solve``; ``timeout`` if time ran out improving it);
  * unknown, killed -> ``timeout`` (``unknown`` when z3 gives up for another reason);
  * cancelled by the caller (``cancel``: the cross-check knows the verdict) -> ``unknown``, the
    child killed, ``stats["cancelled"]`` True.
``margin_lb`` is the STBP bound (raised to 0 when verified), None for the plain encoding unless verified;
``margin_ub`` is the replayed margin of a counterexample.  ``timeout`` covers STBP and z3.
"""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import z3

from .. import cancel
from ..deadline import of as deadline_of, passed
from ..encodings import smt
from ..result import VerifyResult
from ..stbp_hybrid.certify import certify
from ..threats import DEFAULT_DOMAIN
from ..replay import replay
from .preattack import falsify

# z3's own timeout ends this much before the hard deadline: max(Z3_EARLY_S, Z3_EARLY_FRAC * time left)
Z3_EARLY_S, Z3_EARLY_FRAC = 0.2, 0.05
CANCEL_POLL_S = 0.05  # how often the wait for z3 checks for cancellation


def _secs(timeout) -> str:
    return "none" if timeout is None else f"{timeout:.3g} s"


def _child(query, timeout, conn):
    try:
        conn.send(smt.solve(query, timeout, report=lambda stats: conn.send({"status": "encoded", "stats": stats})))
    except Exception as e:  # noqa: BLE001 - reported to the parent as an error
        conn.send({"status": "error", "reason": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def run_query(query: smt.Query, timeout: float | None) -> dict:
    """``smt.solve`` in a child process killed after ``timeout`` seconds (status ``killed``, with
    the encoding's statistics if it got that far), or once ``cancel.requested()`` (``cancelled``).

    A daemonic process cannot have children; there the query runs in-process with z3's own
    timeout only (``hard_limit`` False)."""
    z3_timeout = None if timeout is None else max(0.05, timeout - max(Z3_EARLY_S, Z3_EARLY_FRAC * timeout))
    if mp.current_process().daemon:
        return {**smt.solve(query, z3_timeout), "hard_limit": False}
    deadline = None if timeout is None else time.perf_counter() + timeout
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(query, z3_timeout, send), daemon=True)
    proc.start()
    send.close()
    msg = {"status": "killed", "reason": f"no answer after {_secs(timeout)}"}
    try:
        while True:
            wait = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
            if recv.poll(CANCEL_POLL_S if wait is None else min(wait, CANCEL_POLL_S)):
                got = recv.recv()
                if got["status"] != "encoded":
                    return {**got, "hard_limit": True}
                msg["stats"] = got["stats"]
            elif cancel.requested():
                return {**msg, "status": "cancelled", "reason": "stopped by the caller", "hard_limit": True}
            elif wait is not None and wait <= 0:
                return {**msg, "hard_limit": True}
    except EOFError:
        return {"status": "error", "reason": f"the z3 process died (exit code {proc.exitcode})", "hard_limit": True}
    finally:
        proc.kill()
        proc.join()
        recv.close()


def verify_smt(net, x, y, threat, timeout: float | None = 60.0, lemmas: bool = True, domain=DEFAULT_DOMAIN,
               device=None, root_attack: float = 0.0, **_) -> VerifyResult:
    """Exact verification with z3 (module docstring); ``root_attack``: seconds of the attack run
    when the STBP bounds (or, without lemmas, nothing) leave the instance open (``preattack``)."""
    start = time.perf_counter()
    deadline = deadline_of(timeout, start)
    x = np.asarray(x, dtype=np.float64)
    others = [j for j in range(net.n_classes) if j != y]
    stats = {"solver": "z3", "z3_version": z3.get_version_string(), "lemmas": lemmas}
    margin_lb = None
    if lemmas:
        cert = certify(net, x, y, threat, "crown", "threat", domain, deadline=deadline, device=device)
        margin_lb = cert.min_margin
        todo = [j for j in others if not cert.margin_lb[j] > 0]
        stats.update(stbp_s=cert.time_s, proven_by_stbp=[j for j in others if j not in todo])
        query = smt.Query(net, x, int(y), threat, todo, cert.bounds, cert.margin_lb, domain)
    else:
        todo = others
        query = smt.Query(net, x, int(y), threat, todo, domain=domain)

    def result(status, point=None, message="", lb=margin_lb, ub=None):
        return VerifyResult(status, "smt", time.perf_counter() - start, lb, point, stats, message, margin_ub=ub)

    if not todo:
        return result("verified", lb=max(margin_lb, 0.0), message="STBP proves every competitor; z3 was not needed")
    if hit := falsify(net, x, y, threat, min(root_attack, deadline - time.perf_counter()), domain, "smt", start):
        return hit
    if passed(deadline):
        return result("timeout", message=f"time limit ({_secs(timeout)}) reached during the STBP bounds")
    left = None if timeout is None else max(timeout - (time.perf_counter() - start), 0.0)
    r = run_query(query, left)
    stats.update(r.get("stats", {}), hard_limit=r["hard_limit"], competitors=todo)
    status, reason = r["status"], r.get("reason", "")
    if status == "unsat":
        return result("verified", lb=max(margin_lb if margin_lb is not None else 0.0, 0.0))
    if status == "sat":
        rep = replay(net, x, y, threat, r["x"], domain)
        stats.update(exact_margin=r["margin"], replay_margin=rep.margin64)
        if rep.ok:
            return result("falsified", rep.point, ub=rep.margin64)
        if r["cut"]:
            return result("timeout", message=f"time limit ({_secs(timeout)}) reached improving z3's point of exact margin "
                          f"{r['margin']:.3g}, which does not replay")
        return result("unknown", message=f"z3's best point, exact margin {r['margin']:.3g} <= 0, does not replay ({rep.reason})")
    if status == "cancelled":
        stats["cancelled"] = True
        return result("unknown", message="stopped before z3 answered: the caller already knew the verdict")
    if status == "killed" or (status == "unknown" and reason in ("timeout", "canceled")):
        killed = " (z3 process killed)" if status == "killed" else ""
        return result("timeout", message=f"time limit ({_secs(timeout)}) reached{killed}")
    if status == "unknown":
        return result("unknown", message=f"z3 gave up: {reason}")
    return result("error", message=reason)
