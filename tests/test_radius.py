"""Maximum safe radius: the analytic value on linear networks, bisection with the MILP on ReLU ones."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import threat_of, tiny_network
from stverify import max_safe_radius
from stverify.replay import replay
from stverify.network import Flatten, Linear, Network
from stverify.threats import AnyFrames, AnyPatch, Frames, Linf, Patch

SHAPE = (1, 3, 5, 5)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def linear_instance(seed: int, lo: float, hi: float):
    rng = np.random.default_rng(seed)
    net = Network([Flatten(), Linear(rng.normal(size=(3, 75)), rng.normal(size=3))], SHAPE)
    x = rng.uniform(lo, hi, size=SHAPE)
    return net, x, int(net.predict(x))


def analytic_radius(net, x, y, threat) -> float:
    """min over j != y and members M of the eps where logit_y - logit_j reaches 0, with
    m_j(eps) = m_j(x0) - sum_{v in M} |d_v| min(eps, room_v): d = w_y - w_j, room_v the distance
    from x0_v to the domain edge the voxel moves towards (bisection on this monotone function)."""
    W, logits = net.layers[1].weight, net.forward(x)
    best = np.inf
    for j in (j for j in range(3) if j != y):
        d = (W[y] - W[j]).reshape(SHAPE)
        room = np.where(d > 0, x, 1 - x)
        for regions in itertools.combinations(threat.regions(SHAPE), threat.choose):
            mask = np.logical_or.reduce([r.mask(SHAPE[1:]) for r in regions])[None]
            f = lambda e: logits[y] - logits[j] - np.sum(np.abs(d) * np.minimum(e, room) * mask)  # noqa: E731
            if f(1.0) > 0:
                continue
            a, b = 0.0, 1.0
            for _ in range(60):
                a, b = ((a + b) / 2, b) if f((a + b) / 2) > 0 else (a, (a + b) / 2)
            best = min(best, b)
    return min(best, 1.0)


THREATS = [Linf(0), Frames(0, (0, 2)), AnyFrames(0, 1), AnyFrames(0, 2), Patch(0, (1, 2), 1, 1, 2, 2), AnyPatch(0, 2, 2, 2)]


@pytest.mark.parametrize("threat", THREATS, ids=lambda t: t.kind + str(getattr(t, "k", "")))
@pytest.mark.parametrize("clipped", [False, True])
def test_linear_network_analytic(threat, clipped):
    """Unclipped: x0 in [0.3, 0.7] and r < 0.3, so r = min m_j / sum_M |d| in closed form."""
    net, x, y = linear_instance(3, *((0.0, 1.0) if clipped else (0.3, 0.7)))
    r = analytic_radius(net, x, y, threat)
    if not clipped:
        assert r < 0.3
    res = max_safe_radius(net, x, y, threat, tol=1e-4)
    assert res.exact and res.upper - res.lower <= 1e-4
    assert res.lower - 1e-7 <= r <= res.upper + 1e-7
    assert res.history[-1]["by"] == "eps-milp"


@pytest.mark.parametrize("kind", ["linf", "anyframes", "anypatch"])
def test_eps_milp_equals_bisection_with_milp(kind):
    for seed, pool in ((0, None), (2, "max"), (5, "avg")):
        net = tiny_network(seed, pool=pool)
        x = np.random.default_rng(seed).uniform(0, 1, size=net.input_shape)
        y, threat = int(net.predict(x)), threat_of(kind, 0.0)
        a = max_safe_radius(net, x, y, threat, tol=1e-3, eps_max=0.3)
        b = max_safe_radius(net, x, y, threat, tol=1e-3, eps_max=0.3, complete="milp")
        assert a.exact and b.exact
        assert max(a.lower, b.lower) <= min(a.upper, b.upper) + 1e-7  # both brackets hold the radius
        for res in (a, b):
            lows, ups = [h["lower"] for h in res.history], [h["upper"] for h in res.history]
            assert lows == sorted(lows) and ups == sorted(ups, reverse=True)
            if res.upper < 0.3:
                assert replay(net, x, y, threat.with_eps(res.upper), res.counterexample).ok


def test_misclassified_input_has_radius_zero():
    net, x, y = linear_instance(3, 0.3, 0.7)
    res = max_safe_radius(net, x, (y + 1) % 3, Linf(0))
    assert res.lower == res.upper == 0.0 and res.exact
