"""Exact neuron bounds against brute force: every ReLU phase pattern of the neurons that box IBP
leaves unstable, one LP each (scipy / HiGHS) over every member box of the threat set."""
import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from stverify.audit import exact_bounds
from stverify.errors import InputError
from stverify.network import Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU
from stverify.threats import AnyFrames, AnyPatch, Linf, Patch

SHAPE = (1, 2, 3, 3)


def small_net(seed: int, pool: bool = False) -> Network:
    """Conv3d(1->2, k 2x2x2) -> ReLU -> Flatten -> Linear(8->3) -> ReLU -> Linear(3->2): 11 ReLUs."""
    rng = np.random.default_rng(seed)
    layers = [Conv3d(rng.normal(size=(2, 1, 2, 2, 2)), rng.normal(size=2) * 0.3), ReLU()]
    if pool:
        layers.append(MaxPool3d((1, 2, 1), (1, 1, 1)))
    width = 4 if pool else 8
    layers += [Flatten(), Linear(rng.normal(size=(3, width)), rng.normal(size=3) * 0.3), ReLU(),
               Linear(rng.normal(size=(2, 3)), rng.normal(size=2) * 0.3)]
    return Network(layers, SHAPE, name=f"small-{seed}")


def affine(layer, shape):
    """(A, b) with layer(x) = A x + b on flat inputs (dense, from the layer's own forward)."""
    n = int(np.prod(shape))
    b = layer.forward(np.zeros((1,) + tuple(shape))).reshape(-1)
    A = layer.forward(np.eye(n).reshape((n,) + tuple(shape))).reshape(n, -1).T - b[:, None]
    return A, b


def brute_force(net: Network, x0, threat, layer: int):
    """(min, max) of every entry of the input of ``layer`` over the threat set, by enumeration."""
    A1, b1 = affine(net.layers[0], net.shapes[0])
    A2, b2 = affine(net.layers[3], net.shapes[3])
    A3, b3 = affine(net.layers[5], net.shapes[5])
    size = int(np.prod(net.shapes[layer]))
    lo, hi = np.full(size, np.inf), np.full(size, -np.inf)
    for blo, bhi in threat.member_boxes(x0):
        blo, bhi = blo.reshape(-1), bhi.reshape(-1)
        box = list(zip(blo, bhi))
        c, r = (bhi + blo) / 2, (bhi - blo) / 2
        l1, u1 = A1 @ c + b1 - np.abs(A1) @ r, A1 @ c + b1 + np.abs(A1) @ r  # interval arithmetic (exact here)
        h_lo, h_hi = np.maximum(l1, 0), np.maximum(u1, 0)
        hc, hr = (h_hi + h_lo) / 2, (h_hi - h_lo) / 2
        l2, u2 = A2 @ hc + b2 - np.abs(A2) @ hr, A2 @ hc + b2 + np.abs(A2) @ hr
        free1 = np.flatnonzero((l1 < 0) & (u1 > 0)) if layer > 1 else np.zeros(0, dtype=int)
        free2 = np.flatnonzero((l2 < 0) & (u2 > 0)) if layer > 4 else np.zeros(0, dtype=int)
        for p1 in itertools.product((0.0, 1.0), repeat=len(free1)):
            d1 = (l1 >= 0).astype(float)
            d1[free1] = p1
            rows, rhs = [], []  # phase constraints, as A_ub x <= b_ub
            for j, on in zip(free1, p1):
                rows.append(-A1[j] if on else A1[j])
                rhs.append(b1[j] if on else -b1[j])
            M2, c2 = A2 @ (d1[:, None] * A1), A2 @ (d1 * b1) + b2  # input of layer 4 = M2 x + c2
            for p2 in itertools.product((0.0, 1.0), repeat=len(free2)):
                d2 = (l2 >= 0).astype(float)
                d2[free2] = p2
                rows2, rhs2 = list(rows), list(rhs)
                for j, on in zip(free2, p2):
                    rows2.append(-M2[j] if on else M2[j])
                    rhs2.append(c2[j] if on else -c2[j])
                if layer == 1:
                    M, c = A1, b1
                elif layer == 4:
                    M, c = M2, c2
                else:
                    M, c = A3 @ (d2[:, None] * M2), A3 @ (d2 * c2) + b3
                A_ub, b_ub = (np.array(rows2), np.array(rhs2)) if rows2 else (None, None)
                if rows2 and linprog(np.zeros(len(box)), A_ub=A_ub, b_ub=b_ub, bounds=box, method="highs").status:
                    continue  # an empty phase pattern
                for n in range(size):
                    for sign in (1.0, -1.0):
                        res = linprog(sign * M[n], A_ub=A_ub, b_ub=b_ub, bounds=box, method="highs")
                        assert res.status == 0
                        v = M[n] @ res.x + c[n]
                        lo[n], hi[n] = (min(lo[n], v), hi[n]) if sign > 0 else (lo[n], max(hi[n], v))
    return lo, hi


CASES = [(9, Linf(0.1)), (1, AnyFrames(0.25, 1)), (2, AnyPatch(0.15, 1, 2, 3)), (3, Patch(0.2, (0, 1), 1, 0, 2, 2))]


@pytest.mark.parametrize("seed, threat", CASES, ids=[t.kind for _, t in CASES])
@pytest.mark.parametrize("layer", [1, 4, 6])
def test_exact_bounds_equal_brute_force_and_are_attained(seed, threat, layer, torch_one_thread):
    net = small_net(seed)
    x0 = np.random.default_rng(seed + 100).uniform(0.1, 0.9, SHAPE)
    eb = exact_bounds(net, x0, threat, layer, keep_points=True)
    lo, hi = brute_force(net, x0, threat, layer)
    assert (eb.status.reshape(-1) == "exact").all(), eb.status
    np.testing.assert_allclose(eb.lo_attained.reshape(-1), lo, atol=1e-6, rtol=0)
    np.testing.assert_allclose(eb.hi_attained.reshape(-1), hi, atol=1e-6, rtol=0)
    assert np.all(eb.lo.reshape(-1) <= lo + 1e-12) and np.all(eb.hi.reshape(-1) >= hi - 1e-12)  # sound
    assert np.all(eb.gap_lo >= 0) and np.all(eb.gap_hi >= 0)
    for n in range(lo.size):  # each value is attained by a point of the set
        for side, value in (("lo", eb.lo_attained), ("hi", eb.hi_attained)):
            p = eb.points[(n, side)]
            assert threat.contains(x0, p, tol=0.0)
            h = p[None]
            for lay in net.layers[:layer]:
                h = lay.forward(h)
            assert h.reshape(-1)[n] == pytest.approx(value.reshape(-1)[n], rel=1e-12, abs=1e-12)


def test_how_each_bound_was_obtained(torch_one_thread):
    net = small_net(1)
    x0 = np.random.default_rng(101).uniform(0.1, 0.9, SHAPE)
    first = exact_bounds(net, x0, AnyFrames(0.25, 1), 1)
    assert set(first.how_lo.reshape(-1)) == {"closed-form"} == set(first.how_hi.reshape(-1))
    deep = exact_bounds(net, x0, AnyFrames(0.25, 1), 6)
    assert set(deep.how_lo.reshape(-1)) | set(deep.how_hi.reshape(-1)) <= {"stable", "attained", "milp"}
    c = deep.counts()
    assert c["neurons"] == 2 and c["exact"] == 2
    # a threat that moves nothing: every entry is exact at its clean value (up to the float64 slack)
    still = exact_bounds(net, x0, Patch(0.0, (0, 1), 0, 0, 1, 1), 4)
    clean = net.activations(x0)[4]
    assert (still.status == "exact").all()
    np.testing.assert_allclose(still.lo_attained, clean, rtol=1e-12)
    np.testing.assert_allclose(still.hi_attained, clean, rtol=1e-12)
    assert np.all(still.hi - still.lo <= 1e-8)


def test_maxpool_bounds_contain_samples_and_are_attained(torch_one_thread):
    net = small_net(4, pool=True)
    x0 = np.random.default_rng(7).uniform(0.1, 0.9, SHAPE)
    threat = AnyFrames(0.3, 1)
    eb = exact_bounds(net, x0, threat, 7, keep_points=True)
    vals = net.forward(threat.sample(x0, 3000, np.random.default_rng(0)))
    assert (eb.status == "exact").all()
    assert np.all(vals.min(0) >= eb.lo - 1e-12) and np.all(vals.max(0) <= eb.hi + 1e-12)
    for (n, side), p in eb.points.items():
        v = net.forward(p)[n]
        assert v == pytest.approx((eb.lo_attained if side == "lo" else eb.hi_attained)[n], rel=1e-12, abs=1e-12)


def test_neuron_selection_workers_and_timeout(torch_one_thread):
    net = small_net(2)
    x0 = np.random.default_rng(102).uniform(0.1, 0.9, SHAPE)
    threat = AnyFrames(0.3, 1)
    full = exact_bounds(net, x0, threat, 4)
    part = exact_bounds(net, x0, threat, 4, neurons=[2, 0], workers=2)
    assert list(np.flatnonzero(part.selected)) == [0, 2]
    np.testing.assert_allclose(part.lo_attained[[0, 2]], full.lo_attained[[0, 2]], atol=1e-9)
    assert np.isnan(part.lo[1]) and part.status[1] == ""
    rushed = exact_bounds(net, x0, threat, 4, timeout=1e-9)  # no time: the initial (STBP) bounds, still sound
    lo, hi = brute_force(net, x0, threat, 4)
    assert set(rushed.how_lo) | set(rushed.how_hi) <= {"stbp", "closed-form", "stable", "attained"}
    assert np.all(rushed.lo <= lo + 1e-12) and np.all(rushed.hi >= hi - 1e-12)
    assert np.all(rushed.lo_attained >= lo - 1e-12) and np.all(rushed.hi_attained <= hi + 1e-12)


@pytest.mark.parametrize("kwargs, match", [({"layer": 0}, "exact bounds exist for tensors 1..6"),
                                           ({"layer": 7}, "tensor 7 does not exist: 0 .the input. .. 6"),
                                           ({"layer": 4, "neurons": [5]}, "flat indices must lie in 0..2"),
                                           ({"layer": 4, "bounds": "naive"}, "bounds must be one of")])
def test_bad_arguments_name_the_problem(kwargs, match):
    net = small_net(0)
    with pytest.raises(InputError, match=match):
        exact_bounds(net, np.full(SHAPE, 0.5), Linf(0.1), **kwargs)
