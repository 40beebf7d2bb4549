"""Every reported number is what its name says.

``margin_lb`` is a sound lower bound of m* = min over the threat set of min_{j != y}
(logit_y - logit_j), for every method and every status (or None); ``margin_ub`` is the margin at a
point of the set, so m* <= margin_ub; solver dual bounds are widened by the solver tolerance;
``stats["optimal"]`` is True only when the solver proved its optimum (else ``stats["gap"]``), and
asking for the optimum never un-proves a verified instance.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import stverify as sv
from stverify.complete import milp_verify
from stverify.complete.attack import attack
from stverify.complete.milp_verify import decide
from stverify.encodings.milp import encode
from stverify.network import Flatten, Linear, Network
from stverify.result import VerifyResult
from stverify.stbp_hybrid.certify import certify
from stverify.threats import Linf, parse_threat

from conftest import threat_of, tiny_network

METHODS = [("stbp", {}), ("box-ibp", {}), ("box-crown", {}), ("milp", {}), ("milp", {"solver": "highs"}),
           ("milp", {"optimal": True}), ("smt", {}), ("bab", {})]
TIMEOUT = {"smt": 3.0}  # z3 rarely decides these in time: its timeout result is checked too


def margin(net, p, y) -> float:
    logits = net.forward(p)
    return float(logits[y] - np.max(np.delete(logits, y)))


def reference_points(net, x, y, threat, results) -> list[np.ndarray]:
    """Points of the set: x0, samples, an attack's point and every counterexample reported."""
    pts = [x] + list(threat.sample(x, 300, np.random.default_rng(0)))
    found = attack(net, x, y, threat, time_limit=2.0)
    pts += [found] if found is not None else []
    pts += [r.counterexample for r in results if r.counterexample is not None]
    assert all(threat.contains(x, p, tol=1e-9) for p in pts)
    return pts


# chosen so that the methods between them give every status: STBP verified (1, anyframes, 0.03), only the
# MILP verified (1, linf, 0.03; 2, anypatch, 0.1), falsified (the others); SMT mostly times out
SOUNDNESS = [(1, "anyframes", 0.03), (1, "linf", 0.03), (2, "anypatch", 0.1), (1, "anyframes", 0.1), (4, "linf", 0.03),
             (4, "anypatch", 0.1)]


@pytest.mark.parametrize("seed,kind,eps", SOUNDNESS)
def test_margin_lb_is_below_and_margin_ub_above_the_minimum_for_every_method_and_status(seed, kind, eps, torch_one_thread):
    net = tiny_network(seed)
    x = np.random.default_rng(seed).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    threat = threat_of(kind, eps)
    results = [sv.verify(net, x, y, threat, method=m, timeout=TIMEOUT.get(m, 20.0), attack=False, **o) for m, o in METHODS]
    lowest = min(margin(net, p, y) for p in reference_points(net, x, y, threat, results))  # >= the true minimum
    for (m, o), r in zip(METHODS, results):
        assert r.status != "error", r.message
        if r.margin_lb is not None:
            assert r.margin_lb <= lowest, (m, o, r.status, r.margin_lb, lowest)
        if r.margin_ub is not None:  # the margin at a point of the set: above every sound lower bound
            assert all(q.margin_lb is None or q.margin_lb <= r.margin_ub for q in results), (m, o)
        if r.status == "falsified":
            assert r.margin_ub is not None and r.margin_ub < 0 and r.margin_ub == pytest.approx(margin(net, r.counterexample, y))
        if r.status == "verified":
            assert r.margin_lb is not None and r.margin_lb > 0


def test_scip_and_highs_optima_bracket_each_other(torch_one_thread):
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    threat = threat_of("anyframes", 0.1)
    res = {s: sv.verify(net, x, y, threat, method="milp", solver=s, optimal=True, attack=False) for s in ("scip", "highs")}
    for a in res.values():
        assert a.stats["optimal"] is True and a.stats["gap"] == pytest.approx(a.margin_ub - a.margin_lb)
        for b in res.values():
            assert a.margin_lb <= b.margin_ub
        assert a.margin_ub - a.margin_lb <= 2 * max(c["tol"] for c in a.stats["competitors"].values()) + 1e-9


def test_a_misclassified_clean_input_has_only_an_upper_bound(torch_one_thread):
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    wrong = (int(net.predict(x)) + 1) % net.n_classes
    clean = margin(net, x, wrong)
    for method, options in METHODS + [("all", {})]:
        r = sv.verify(net, x, wrong, Linf(0.05), method=method, timeout=10, **options)
        assert r.status == "falsified" and np.array_equal(r.counterexample, x), method
        if method != "all":
            assert r.margin_lb is None and r.margin_ub == pytest.approx(clean) and clean < 0, method


def test_an_attack_hit_has_only_an_upper_bound(torch_one_thread):
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    r = sv.verify(net, x, y, Linf(0.3), method="milp")
    assert r.status == "falsified" and r.stats["found_by"] == "attack"
    assert r.margin_lb is None and r.margin_ub == pytest.approx(margin(net, r.counterexample, y)) and r.margin_ub < 0


def test_a_milp_counterexample_comes_with_both_bounds(torch_one_thread):
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    r = sv.verify(net, x, y, Linf(0.3), method="milp", attack=False)
    assert r.status == "falsified" and r.margin_lb is not None and r.margin_ub is not None
    assert r.margin_lb <= r.margin_ub < 0


@pytest.mark.parametrize("solver", ["scip", "highs"])
def test_solver_dual_bounds_are_widened_by_the_solver_tolerance(solver, torch_one_thread):
    net = tiny_network(4)
    x = np.random.default_rng(4).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    threat = threat_of("anyframes", 0.3)
    enc = encode(net, x, threat, certify(net, x, y, threat).bounds)
    for j in (j for j in range(net.n_classes) if j != y):
        o = decide(net, x, y, threat, enc, j, solver, optimal=True)
        raw = o.stats["solves"][0]["bound"]
        assert o.bound == raw - o.stats["tol"] and o.stats["tol"] > 0
        assert o.optimal and o.bound <= o.stats["solves"][0]["objective"]
        if o.point is not None:  # a counterexample: m_j there is above the bound
            logits = net.forward(o.point)
            assert o.bound <= logits[y] - logits[j]


def _nearly_tied(gap: float):
    """logit_0 - logit_1 = x_a + x_b - c over [1/4, 3/4]^2 (c = 1/2 - gap): its minimum is exactly gap."""
    net = Network([Flatten(), Linear([[1.0, 1.0], [0.0, 0.0]], [-(0.5 - gap), 0.0])], (1, 1, 1, 2))
    return net, np.full((1, 1, 1, 2), 0.5), 0, Linf(0.25)


@pytest.mark.parametrize("solver", ["scip", "highs"])
def test_optimal_never_unproves_a_verified_instance(solver):
    """The minimum (1e-8) is below the solver tolerance but STBP proves it exactly: still verified."""
    net, x, y, threat = _nearly_tied(1e-8)
    stbp = sv.verify(net, x, y, threat, method="stbp")
    assert stbp.status == "verified" and 0 < stbp.margin_lb <= 1e-8
    for optimal in (False, True):
        r = sv.verify(net, x, y, threat, method="milp", solver=solver, optimal=optimal, attack=False)
        assert r.status == "verified", (optimal, r.message)
        assert 0 < r.margin_lb <= 1e-8
        if optimal:
            assert r.margin_ub is not None and r.margin_ub >= 1e-8 - 1e-12


def test_optimal_is_claimed_only_when_the_solver_proved_it(monkeypatch, torch_one_thread):
    """A solve cut by its time limit keeps its bounds but is not called optimal: the gap is reported."""
    net = tiny_network(4)
    x = np.random.default_rng(4).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    real = milp_verify.load

    def load_cut(*args, **kwargs):
        loaded = real(*args, **kwargs)
        minimise = loaded.minimise

        def cut(*a, **k):
            r = minimise(*a, **k)
            r.status = "timeout"
            return r

        loaded.minimise = cut
        return loaded

    monkeypatch.setattr(milp_verify, "load", load_cut)
    r = sv.verify(net, x, y, Linf(0.3), method="milp", optimal=True, attack=False)
    assert r.stats["optimal"] is False and r.stats["gap"] >= 0
    assert r.margin_ub is not None and r.margin_lb <= r.margin_ub
    assert r.stats["gap"] == pytest.approx(r.margin_ub - r.margin_lb)


def test_the_schema_normalises_bounds_that_say_nothing_and_refuses_nan():
    r = VerifyResult("unknown", "m", 0.0, -math.inf, margin_ub=math.inf)
    assert r.margin_lb is None and r.margin_ub is None
    assert r.to_dict()["margin_ub"] is None
    with pytest.raises(ValueError, match="NaN"):
        VerifyResult("unknown", "m", 0.0, math.nan)


def test_method_all_reports_each_method_and_bounds_from_all_of_them(torch_one_thread):
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    r = sv.verify(net, x, y, parse_threat("anyframes:k=1,eps=0.1"), method="all", timeout=10, solver="scip")
    rows = r.stats["methods"]
    assert set(rows) == {"attack", "stbp", "milp-scip", "smt"} and "reproduce" not in r.stats
    assert all("counterexample" not in row for row in rows.values())
    assert r.margin_lb == max(row["margin_lb"] for row in rows.values() if row["margin_lb"] is not None)
    assert r.margin_ub == min(row["margin_ub"] for row in rows.values() if row["margin_ub"] is not None)
    assert r.margin_lb <= r.margin_ub


@pytest.mark.parametrize("solver", ["scip", "highs"])
@pytest.mark.parametrize("seed,kind,eps", [(1, "linf", 0.3), (4, "anyframes", 0.3), (4, "linf", 0.3), (1, "anypatch", 0.3)])
def test_a_milp_counterexample_has_margin_ub_and_is_the_best_found(seed, kind, eps, solver, torch_one_thread):
    """falsified: margin_ub is the float64 margin at the reported counterexample, and no point the
    MILP found (any competitor's) has a lower margin; with optimal=True too, and the gap is reported."""
    net = tiny_network(seed)
    x = np.random.default_rng(seed).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    for optimal in (False, True):
        r = sv.verify(net, x, y, threat_of(kind, eps), method="milp", solver=solver, optimal=optimal, attack=False)
        assert r.status == "falsified"
        assert r.margin_ub == margin(net, r.counterexample, y)
        assert all(r.margin_ub <= c["upper"] for c in r.stats["competitors"].values())
        assert r.stats["gap"] == pytest.approx(r.margin_ub - r.margin_lb)


@pytest.mark.parametrize("solver", ["scip", "highs"])
def test_a_counterexample_found_on_a_retry_reports_its_own_margin(monkeypatch, solver, torch_one_thread):
    """When the solver's first point does not replay (simulated) and a retry finds another,
    margin_ub is the margin at the counterexample reported, not at the rejected point."""
    net = tiny_network(1)
    x = np.random.default_rng(1).uniform(0.1, 0.9, net.input_shape)
    y = int(net.predict(x))
    real, seen = milp_verify.replay, []

    def first_rejected(*args, **kwargs):
        rep = real(*args, **kwargs)
        seen.append(rep.margin64)
        return dataclasses.replace(rep, ok=False, reason="rejected by the test") if len(seen) == 1 else rep

    monkeypatch.setattr(milp_verify, "replay", first_rejected)
    r = sv.verify(net, x, y, Linf(0.3), method="milp", solver=solver, attack=False)
    assert r.status == "falsified" and len(seen) >= 2 and seen[0] != seen[-1]
    assert r.margin_ub == margin(net, r.counterexample, y) == seen[-1]
