"""SMT path (z3, exact rationals): known answers, agreement with MILP, replay, the hard time limit.

Every call passes ``attack=False`` so that z3 itself, not the attack run before complete methods,
has to find the counterexamples."""
from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stverify as sv
from stverify.replay import replay
from stverify.encodings import smt
from stverify.network import AvgPool3d, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU
from stverify.threats import AnyFrames, AnyPatch, Frames, Linf, Patch


def run_smt(net, x, y, threat, timeout=30.0, **options):
    return sv.verify(net, x, y, threat, "smt", timeout=timeout, attack=False, **options)


def f32(a):
    """Float32-representable float64 values, as trained weights are (short rationals for z3)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def relu_net(seed: int, pool: str | None = None, pad: bool = False, hidden: bool = True) -> Network:
    """Conv3d(1->2, k=2) [padding, stride 2] -> ReLU [-> pool] -> Flatten [-> Linear(4) -> ReLU] -> Linear(3)
    on 1 x 3 x 4 x 4 inputs."""
    rng = np.random.default_rng(seed)
    s = 2 if pad else 1
    conv = Conv3d(f32(rng.normal(size=(2, 1, 2, 2, 2)) / 2), f32(rng.normal(size=2) * 0.1), (1, s, s), (0, int(pad), int(pad)))
    layers = [conv, ReLU()]
    layers += {None: [], "max": [MaxPool3d((1, 2, 2))], "avg": [AvgPool3d((1, 2, 2))]}[pool] + [Flatten()]
    n = _width(layers)
    if hidden:
        layers += [Linear(f32(rng.normal(size=(4, n)) / np.sqrt(n)), f32(rng.normal(size=4) * 0.1)), ReLU()]
        n = 4
    return Network(layers + [Linear(f32(rng.normal(size=(3, n))), f32(rng.normal(size=3) * 0.1))], (1, 3, 4, 4))


def _width(layers) -> int:
    shape = (1, 3, 4, 4)
    for layer in layers:
        shape = layer.output_shape(shape)
    return shape[0]


@pytest.mark.parametrize("lemmas", [True, False])
@pytest.mark.parametrize("delta,expected", [(2.0 ** -40, "verified"), (0.0, "unknown"), (-(2.0 ** -40), "unknown"),
                                            (-0.01, "falsified")])
def test_exact_at_the_decision_boundary(delta, expected, lemmas):
    """logit_0 - logit_1 = x_a + x_b - 1/2 + delta over [1/4, 3/4]^2 has minimum exactly delta.
    delta = 2^-40 is proven (no float tolerance could); a tie (0) is not robust, and at -2^-40 the
    float32 model rounds the counterexample away, so neither replays: unknown."""
    net = Network([Flatten(), Linear([[1.0, 1.0], [0.0, 0.0]], [-0.5 + delta, 0.0])], (1, 1, 1, 2))
    res = run_smt(net, np.full((1, 1, 1, 2), 0.5), 0, Linf(0.25), lemmas=lemmas)
    assert res.status == expected, res.message
    if expected == "falsified":
        assert replay(net, np.full((1, 1, 1, 2), 0.5), 0, Linf(0.25), res.counterexample).ok


def exact_linear_minimum(net: Network, x0, y, threat) -> Fraction:
    """min over S(x0) and j != y of logit_y - logit_j for Flatten + Linear, exactly: per member box
    sum_v min(c_v lo_v, c_v hi_v) + b_y - b_j with c = W_y - W_j."""
    W = [[Fraction(w) for w in row] for row in net.layers[1].weight]
    b = [Fraction(v) for v in net.layers[1].bias]
    best = None
    for lo, hi in threat.member_boxes(x0):
        lo, hi = [Fraction(v) for v in lo.ravel()], [Fraction(v) for v in hi.ravel()]
        for j in range(len(b)):
            if j != y:
                c = [wy - wj for wy, wj in zip(W[y], W[j])]
                m = b[y] - b[j] + sum(min(ci * l, ci * h) for ci, l, h in zip(c, lo, hi))
                best = m if best is None else min(best, m)
    return best


THREATS = [Linf(0.125), Frames(0.25, (1,)), AnyFrames(0.125, 1), Patch(0.25, (0, 1), 1, 0, 2, 2), AnyPatch(0.125, 1, 2, 2)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), threat=st.sampled_from(THREATS), lemmas=st.booleans())
def test_linear_networks_match_the_exact_minimum(seed, threat, lemmas):
    """Weights k/8 and inputs k/16: every float computation is exact, ties happen, so the verdict is
    determined: verified iff the exact minimum margin is > 0, unknown at 0, falsified below."""
    rng = np.random.default_rng(seed)
    shape = (1, 2, 3, 3)
    net = Network([Flatten(), Linear(rng.integers(-8, 9, size=(3, 18)) / 8, rng.integers(-8, 9, size=3) / 8)], shape)
    x0 = rng.integers(0, 17, size=shape) / 16
    y = int(rng.integers(3))
    m = exact_linear_minimum(net, x0, y, threat)
    res = run_smt(net, x0, y, threat, lemmas=lemmas)
    assert res.status == ("verified" if m > 0 else "unknown" if m == 0 else "falsified"), (float(m), res.message)
    if res.status == "falsified":
        assert replay(net, x0, y, threat, res.counterexample).ok


CASES = [(seed, pool, pad, hidden, threat) for seed, (pool, pad, hidden) in enumerate(
    [(None, False, True), ("max", False, True), ("avg", True, True), ("max", True, False), (None, True, False)])
    for threat in ("linf:eps=0.05", "anyframes:k=1,eps=0.1", "anypatch:eps=0.15,len=2,h=2,w=2",
                   "patch:eps=0.2,t=0-1,y=1,x=1,h=2,w=2")]


@pytest.mark.parametrize("seed,pool,pad,hidden,threat", CASES)
def test_relu_networks_agree_with_the_milp_optimum(seed, pool, pad, hidden, threat):
    """SMT (with and without STBP lemmas) against the exact minimum margin m* of the MILP (to
    optimality): verified when m* > 0, a replayed counterexample when m* < 0, whose margin is
    at least m* and equals z3's exact margin at that point (the encoding computes the network)."""
    net = relu_net(seed, pool, pad, hidden)
    x = f32(np.random.default_rng(100 + seed).uniform(0, 1, size=(1, 3, 4, 4)))
    y = int(net.predict(x))
    opt = sv.verify(net, x, y, threat, "milp", timeout=60, attack=False, optimal=True)
    assert opt.status in ("verified", "falsified")
    for lemmas in (True, False):
        res = run_smt(net, x, y, threat, lemmas=lemmas, timeout=10 if lemmas else 5)
        if res.status == "timeout":
            continue
        if opt.margin_lb > 1e-5:
            assert res.status == "verified", (lemmas, res.message)
        elif opt.margin_lb < -1e-4:
            assert res.status == "falsified", (lemmas, res.message)
        if res.status == "falsified":
            rep = replay(net, x, y, sv.parse_threat(threat), res.counterexample)
            assert rep.ok and rep.margin64 >= opt.margin_lb - 1e-6
            assert res.stats["exact_margin"] == pytest.approx(rep.margin64, abs=1e-9)


@pytest.mark.parametrize("pool,pad", [(None, True), ("max", False), ("avg", True)])
def test_constants_are_the_exact_network(pool, pad):
    """With nothing perturbable every entry is an exact constant: the encoding's logit differences
    equal the float64 forward pass (to its rounding) and no variable is created."""
    net = relu_net(7, pool, pad)
    x = np.random.default_rng(3).uniform(0, 1, size=(1, 3, 4, 4))
    logits = net.forward(x)
    enc = smt.encode(smt.Query(net, x, 0, Linf(0.0), [1, 2]))
    assert enc.variables == [] and all(isinstance(d, Fraction) for d in enc.diffs)
    assert [float(d) for d in enc.diffs] == pytest.approx(logits[1:] - logits[0], abs=1e-12)


def test_hard_limit_kills_a_stuck_solver(monkeypatch):
    """z3 that ignores its own timeout (simulated: a solve that sleeps) is killed at the deadline."""
    monkeypatch.setattr(smt, "solve", lambda *a, **k: time.sleep(60))
    net = relu_net(0)
    x = np.full((1, 3, 4, 4), 0.5)
    start = time.perf_counter()
    res = run_smt(net, x, int(net.predict(x)), Linf(0.3), timeout=0.5, lemmas=False)
    assert res.status == "timeout" and "killed" in res.message
    assert time.perf_counter() - start < 3.0


def test_hard_instance_times_out_on_time():
    """A plain encoding with 768 ReLU phases cannot be decided in a second: timeout, on time."""
    rng = np.random.default_rng(0)
    net = Network([Conv3d(rng.normal(size=(4, 1, 2, 3, 3)), rng.normal(size=4) * 0.1, padding=(0, 1, 1)), ReLU(), Flatten(),
                   Linear(rng.normal(size=(8, 768)) / 20, np.zeros(8)), ReLU(), Linear(rng.normal(size=(3, 8)), np.zeros(3))],
                  (1, 4, 8, 8))
    x = rng.uniform(0, 1, size=(1, 4, 8, 8))
    start = time.perf_counter()
    res = run_smt(net, x, int(net.predict(x)), Linf(0.05), timeout=1.0, lemmas=False)
    assert res.status == "timeout", res.message
    assert time.perf_counter() - start < 3.5
