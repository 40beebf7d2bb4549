"""Cross-checking: on hypothesis-generated tiny instances the attack, STBP, every MILP backend and
SMT (with and without STBP lemmas) never contradict one another; injected contradictions are
reported as soundness failures with what is needed to reproduce them."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_smt import f32, relu_net

import stverify as sv
from stverify.replay import replay
from stverify.network import Flatten, Linear, Network
from stverify.threats import AnyFrames, AnyPatch, Frames, Linf, Patch

EPS = st.sampled_from([0.01, 0.03, 0.1, 0.2])


@st.composite
def threats(draw):
    """Every threat kind on 1 x 3 x 4 x 4 inputs, with random parameters that fit."""
    eps, kind = draw(EPS), draw(st.sampled_from(["linf", "frames", "anyframes", "patch", "anypatch"]))
    if kind == "linf":
        return Linf(eps)
    if kind == "frames":
        return Frames(eps, tuple(sorted(draw(st.sets(st.integers(0, 2), min_size=1, max_size=2)))))
    if kind == "anyframes":
        return AnyFrames(eps, draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if kind == "patch":
        t0 = draw(st.integers(0, 2))
        return Patch(eps, (t0, draw(st.integers(t0, 2))), draw(st.integers(0, 4 - h)), draw(st.integers(0, 4 - w)), h, w)
    return AnyPatch(eps, draw(st.integers(1, 2)), h, w, draw(st.integers(1, 2)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), pool=st.sampled_from([None, "max", "avg"]), pad=st.booleans(), hidden=st.booleans(),
       threat=threats())
def test_methods_never_contradict_one_another(seed, pool, pad, hidden, threat):
    net = relu_net(seed, pool, pad, hidden)
    x = f32(np.random.default_rng(seed + 1).uniform(0, 1, size=(1, 3, 4, 4)))
    cc = sv.crosscheck(net, x, int(net.predict(x)), threat, timeout=5, plain=True)
    assert not cc.soundness_failure, cc.table()
    event(f"verdict {cc.verdict}; smt {cc.results['smt'].status}; smt-plain {cc.results['smt-plain'].status}")
    assert set(cc.results) | set(cc.skipped) == {"attack", "stbp", "milp-scip", "milp-highs", "milp-gurobi", "smt", "smt-plain"}
    for name in ("smt", "smt-plain"):
        r = cc.results[name]
        if r.status == "falsified":
            assert replay(net, x, int(net.predict(x)), threat, r.counterexample).ok


def falsifiable():
    """logit_0 - logit_1 = x_a + x_b - 0.51 over [1/4, 3/4]^2: minimum -0.01, clean margin 0.49."""
    net = Network([Flatten(), Linear([[1.0, 1.0], [0.0, 0.0]], [-0.51, 0.0])], (1, 1, 1, 2))
    return net, np.full((1, 1, 1, 2), 0.5), 0, Linf(0.25)


def fake(status, margin_lb=None, point=None):
    return lambda net, x, y, threat, **_: sv.VerifyResult(status, "fake", 0.0, margin_lb, point, {}, "injected")


def test_a_wrong_verified_is_a_soundness_failure(monkeypatch, tmp_path):
    monkeypatch.setitem(sv.METHODS, "smt", fake("verified", 0.0))
    net, x, y, threat = falsifiable()
    cc = sv.crosscheck(net, x, y, threat, timeout=10, solvers=["scip"])
    assert cc.soundness_failure and cc.verdict == "error" and "SOUNDNESS FAILURE" in cc.table()
    assert any(p["kind"] == "verified vs counterexample" and p["methods"][0] == "smt" for p in cc.problems)
    assert cc.reproduce["threat"] == threat.spec() and cc.reproduce["y"] == y and np.array_equal(cc.reproduce["x0"], x)
    saved = pickle.loads(cc.save(tmp_path / "failure.pkl").read_bytes())
    again = sv.crosscheck(saved["net"], saved["x"], saved["y"], saved["threat"], timeout=10, solvers=["scip"],
                          domain=saved["domain"])
    assert again.soundness_failure
    res = sv.verify(net, x, y, threat, method="all", timeout=10, solvers=["scip"])
    assert res.status == "error" and res.stats["soundness_failure"] and "smt says verified" in res.message


def test_a_falsified_without_a_replaying_point_is_a_soundness_failure(monkeypatch):
    net, x, y, threat = falsifiable()
    monkeypatch.setitem(sv.METHODS, "smt", fake("falsified", point=x))  # x0 itself is classified correctly
    cc = sv.crosscheck(net, x, y, threat, timeout=10, solvers=["scip"])
    assert [p["kind"] for p in cc.problems] == ["counterexample does not replay"]


def test_a_margin_bound_above_a_counterexample_is_a_soundness_failure(monkeypatch):
    net, x, y, threat = falsifiable()
    monkeypatch.setitem(sv.METHODS, "stbp", fake("unknown", 0.5))
    cc = sv.crosscheck(net, x, y, threat, timeout=10, solvers=["scip"])
    assert cc.soundness_failure and {p["kind"] for p in cc.problems} == {"margin bound violated"}


def test_agreement_and_a_failing_optional_solver_is_skipped(monkeypatch):
    milp = sv.METHODS["milp"]
    monkeypatch.setitem(sv.METHODS, "milp", lambda *a, solver="scip", bounds="stbp", **k: fake("error")(*a) if solver == "gurobi"
                        else milp(*a, solver=solver, bounds=bounds, **k))
    net, x, y, threat = falsifiable()
    cc = sv.crosscheck(net, x, y, threat, timeout=10, stop_when_decided=False)  # every solver answers
    assert not cc.soundness_failure and cc.verdict == "falsified"
    assert "milp-gurobi" in cc.skipped and "milp-gurobi" not in cc.results
    assert {cc.results[k].status for k in ("milp-scip", "milp-highs", "smt")} == {"falsified"}
    res = sv.verify(net, x, y, threat, method="all", timeout=10)
    assert res.status == "falsified" and replay(net, x, y, threat, res.counterexample).ok


@pytest.mark.parametrize("eps,expected", [(0.1, "verified"), (0.25, "falsified")])
def test_verify_all_reports_the_agreed_verdict(eps, expected):
    net, x, y, _ = falsifiable()
    res = sv.verify(net, x, y, Linf(eps), method="all", timeout=10, plain=True)
    assert res.status == expected and "smt-plain" in res.stats["methods"]


def test_z3_is_stopped_once_the_others_have_decided(monkeypatch):
    """--method all: z3 runs beside the other methods and is stopped once they have decided, instead
    of being waited for until its time limit (a z3 that would take 60 s, simulated)."""
    import time

    from stverify.encodings import smt

    def stuck(query, timeout, report=None):
        time.sleep(60)

    monkeypatch.setattr(smt, "solve", stuck)  # inherited by z3's (forked) child process
    net, x, y, threat = falsifiable()
    start = time.perf_counter()
    res = sv.verify(net, x, y, threat, method="all", timeout=40)
    assert res.status == "falsified" and time.perf_counter() - start < 10
    row = res.stats["methods"]["smt"]
    assert row["status"] == "unknown" and row["stats"]["cancelled"] is True and "stopped" in row["message"]
    cc = sv.crosscheck(net, x, y, threat, timeout=3, stop_when_decided=False)  # on request, z3 has its full time
    assert cc.results["smt"].status == "timeout"
