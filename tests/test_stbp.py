"""STBP: soundness against sampled and PGD points, exactness of the first layer, ordering."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from conftest import KINDS, TINY_SHAPE, epsilons, kinds, pools, seeds, threat_of, tiny_network
from stverify.stbp_hybrid.certify import certify, make_support, torch_layers
from stverify.stbp_hybrid.first_layer import attaining_point, first_layer_bounds
from stverify.stbp_hybrid.propagate import backward, layer_bounds, spec_matrix
from stverify.stbp_hybrid.support import BoxSupport
from stverify.threats import AnyFrames, AnyPatch, Linf, Patch
import stverify as sv
from stverify import zoo
from stverify.data import ensure_dataset

TOL = 1e-9


def margins(net, xs: np.ndarray, y: int) -> np.ndarray:
    """logit_y - logit_j for each point (rows) and class j (columns)."""
    logits = net.forward(xs)
    return logits[:, [y]] - logits


def pgd_points(net, x0, y, threat, steps=40, restarts=2, seed=0) -> np.ndarray:
    """Points of S(x0) found by projected gradient descent on the margin, in every member box
    (or 6 random ones when there are many), each against every competitor."""
    rng = np.random.default_rng(seed)
    model = net.to_torch(torch.float64)
    boxes = list(threat.member_boxes(x0))
    if len(boxes) > 6:
        boxes = [boxes[i] for i in rng.choice(len(boxes), 6, replace=False)]
    out = []
    for (lo, hi), j in itertools.product(boxes, [j for j in range(net.n_classes) if j != y]):
        lo_t, hi_t = torch.tensor(lo), torch.tensor(hi)
        for _ in range(restarts):
            x = (lo_t + (hi_t - lo_t) * torch.tensor(rng.uniform(size=lo.shape))).requires_grad_(True)
            step = (hi_t - lo_t).max().item() / 8 + 1e-12
            for _ in range(steps):
                z = model(x[None])[0]
                (g,) = torch.autograd.grad(z[y] - z[j], x)
                with torch.no_grad():
                    x = torch.minimum(torch.maximum(x - step * g.sign(), lo_t), hi_t).requires_grad_(True)
                step *= 0.9
            out.append(x.detach().numpy())
    return np.array(out)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, kind=kinds, eps=epsilons, pool=pools, method=st.sampled_from(["ibp", "crown-ibp", "crown", "alpha-crown"]))
def test_bounds_contain_sampled_and_pgd_points(seed, kind, eps, pool, method):
    net = tiny_network(seed, pool=pool)
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(size=TINY_SHAPE)
    y = int(net.predict(x0))
    threat = threat_of(kind, eps)
    cert = certify(net, x0, y, threat, method, alpha_steps=10)
    points = np.concatenate([threat.sample(x0, 200, rng), pgd_points(net, x0, y, threat, steps=15, restarts=1, seed=seed)])
    assert all(threat.contains(x0, p) for p in points)
    acts = [net.activations(p) for p in points]
    for i, (lo, hi) in enumerate(cert.bounds):
        values = np.array([a[i] for a in acts])
        assert np.all(values >= lo - TOL), f"layer {i} lower bound violated"
        assert np.all(values <= hi + TOL), f"layer {i} upper bound violated"
    others = [j for j in range(net.n_classes) if j != y]
    assert np.all(margins(net, points, y)[:, others] >= cert.margin_lb[None, others] - TOL)


def brute_force_first_layer(layer, x0, threat):
    """min / max of each neuron over every member box, one LP (HiGHS via scipy) per neuron and box."""
    dense = []  # each neuron's weight vector over the input, by differentiating the layer
    x = torch.zeros(x0.shape, dtype=torch.float64, requires_grad=True)
    z = layer(x[None])[0]
    for idx in itertools.product(*(range(n) for n in z.shape)):
        (g,) = torch.autograd.grad(z[idx], x, retain_graph=True)
        dense.append((idx, g.numpy().ravel(), float(layer.bias.detach()[idx[0]])))
    lo_b = np.full(z.shape, np.inf)
    hi_b = np.full(z.shape, -np.inf)
    for lo, hi in threat.member_boxes(x0):
        box = list(zip(lo.ravel(), hi.ravel()))
        for idx, w, b in dense:
            rmin = linprog(w, bounds=box, method="highs")
            rmax = linprog(-w, bounds=box, method="highs")
            lo_b[idx] = min(lo_b[idx], rmin.fun + b)
            hi_b[idx] = max(hi_b[idx], -rmax.fun + b)
    return lo_b, hi_b


@pytest.mark.parametrize("kind", KINDS + ["anypatch-stride", "anyframes-2"])
def test_first_layer_exact_against_lp_enumeration(kind):
    rng = np.random.default_rng(7)
    shape = (2, 3, 4, 4)
    x0 = rng.uniform(size=shape)
    threat = {"anypatch-stride": AnyPatch(0.2, 2, 2, 3, stride=2), "anyframes-2": AnyFrames(0.3, 2)}.get(kind) or threat_of(kind, 0.15, shape)
    layer = torch.nn.Conv3d(2, 2, (2, 3, 2), stride=(1, 2, 1), padding=(1, 0, 1)).double()
    sup = make_support(x0, threat, "threat")
    lo, hi = (t[0].detach().numpy() for t in first_layer_bounds(layer, sup))
    lo_b, hi_b = brute_force_first_layer(layer, x0, threat)
    np.testing.assert_allclose(lo, lo_b, atol=1e-9, rtol=0)
    np.testing.assert_allclose(hi, hi_b, atol=1e-9, rtol=0)
    for idx in [(0, 0, 0, 0), (1, 2, 0, 3), (1, 3, 0, 4)]:
        for upper, target in ((False, lo), (True, hi)):
            p = attaining_point(layer, sup, idx, upper=upper)
            assert threat.contains(x0, p.numpy())
            assert abs(layer(p[None])[0][idx].item() - target[idx]) <= 1e-9


def test_first_linear_layer_exact():
    """A network that starts with Flatten + Linear: the dense support function is exact."""
    rng = np.random.default_rng(3)
    shape = (1, 3, 3, 3)
    x0 = rng.uniform(size=shape)
    layer = torch.nn.Linear(27, 4).double()
    conv = torch.nn.Conv3d(1, 4, (3, 3, 3)).double()  # the same map written as a convolution
    with torch.no_grad():
        conv.weight.copy_(layer.weight.reshape(4, 1, 3, 3, 3))
        conv.bias.copy_(layer.bias)
    for threat in (AnyFrames(0.2, 1), AnyPatch(0.3, 2, 2, 2), Patch(0.1, (0, 1), 0, 0, 2, 3)):
        sup = make_support(x0, threat, "threat")
        lin = first_layer_bounds(layer, sup)
        cv = first_layer_bounds(conv, sup)
        for a, b in zip(lin, cv):
            np.testing.assert_allclose(a[0].detach().numpy(), b[0].detach().numpy().reshape(-1), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_threat_concretisation_never_looser_than_box(kind):
    """The same linear bounds concretised over S are >= their concretisation over its bounding box."""
    net = tiny_network(11, pool="max")
    rng = np.random.default_rng(0)
    x0 = rng.uniform(size=TINY_SHAPE)
    threat = threat_of(kind, 0.2)
    layers = torch_layers(net)
    sup = make_support(x0, threat, "threat")
    box = make_support(x0, threat, "box")
    bounds = layer_bounds(layers, sup, "crown")
    A, c = backward(layers, bounds, len(layers), spec_matrix(net.n_classes, 0))
    assert torch.all(sup.min(A) >= box.min(A) - 1e-12)
    random_rows = torch.randn((20,) + TINY_SHAPE, dtype=torch.float64)
    assert torch.all(sup.min(random_rows) >= box.min(random_rows) - 1e-12)
    if isinstance(threat, (Linf,)):
        torch.testing.assert_close(sup.min(random_rows), box.min(random_rows))


def test_box_support_is_exact_on_boxes():
    rng = np.random.default_rng(0)
    lo = torch.tensor(rng.uniform(size=(1, 2, 2, 2)))
    hi = lo + 0.3
    a = torch.randn(1, 1, 2, 2, 2, dtype=torch.float64)
    sup = BoxSupport(lo, hi)
    corner = sup.argmin(a[0])
    assert torch.isclose((a[0] * corner).sum(), sup.min(a)[0])


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("kind", KINDS)
def test_stbp_never_looser_than_box_ibp_on_zoo(name, kind):
    from stverify import zoo
    from stverify.data import ensure_dataset, load_sample

    net = zoo.pretrained_network(name)
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES[name].dataset), "test", 0)
    _, t, h, w = net.input_shape
    threat = {"linf": Linf(4 / 255), "frames": threat_of("frames", 4 / 255, net.input_shape),
              "anyframes": AnyFrames(8 / 255, 1), "patch": Patch(8 / 255, (0, 1), h // 2 - 2, w // 2 - 2, 4, 4),
              "anypatch": AnyPatch(8 / 255, 2, 3, 3)}[kind]
    box_ibp = certify(net, x, y, threat, "ibp", "box")
    for method in ("ibp", "crown"):
        stbp = certify(net, x, y, threat, method, "threat")
        for (lo, hi), (blo, bhi) in zip(stbp.bounds, box_ibp.bounds):
            assert np.all(lo >= blo - 1e-9) and np.all(hi <= bhi + 1e-9)
        assert np.all(stbp.margin_lb >= box_ibp.margin_lb - 1e-9)


def test_member_bounds_tighten_unions_soundly():
    """Bounding every member box of a union with few members (anyframes over 8 frames) verifies
    instances the union's own bounds leave open (zoo small, test #1 and #3 at 32/255), never looser
    than the union's, and below the exact minimum margin (the MILP solved to optimality)."""
    from stverify.complete.milp_verify import verify_milp

    net = zoo.pretrained_network("small")
    gained = 0
    for index in (1, 3):
        x, y = sv.load_sample(ensure_dataset("video8"), split="test", index=index)
        threat = sv.parse_threat("anyframes:k=1,eps=32/255")
        union = sv.verify(net, x, y, threat, method="stbp", members=0)
        both = sv.verify(net, x, y, threat, method="stbp")
        assert both.margin_lb >= union.margin_lb and both.stats["members"] == 8
        exact = verify_milp(net, x, y, threat, optimal=True, timeout=120, attack=False)
        assert exact.stats["optimal"] and both.margin_lb <= exact.margin_lb + 1e-6
        gained += union.status != "verified" and both.status == "verified"
    assert gained == 2


def test_alpha_on_every_margin_is_never_looser():
    """alpha-CROWN on every margin, not only the open ones: tighter on margins CROWN already proves
    (zoo small, test #1: up to 1.06 at linf 8/255), never looser."""
    net = zoo.pretrained_network("small")
    x, y = sv.load_sample(ensure_dataset("video8"), split="test", index=1)
    open_only = sv.certify(net, x, y, sv.parse_threat("linf:eps=8/255"), "alpha-crown")
    every = sv.certify(net, x, y, sv.parse_threat("linf:eps=8/255"), "alpha-crown", alpha_every_margin=True)
    others = [j for j in range(net.n_classes) if j != y]
    assert np.all(every.margin_lb[others] >= open_only.margin_lb[others] - 1e-9)
    assert np.any(every.margin_lb[others] > open_only.margin_lb[others] + 1e-6)


@pytest.mark.parametrize("members", [0, 16])
def test_anypatch_bounds_never_list_the_placements_regions(monkeypatch, members):
    """Counting an anypatch set's members (one per placement) and bounding it do not build a Region
    per placement (0.65 s of the 1 s STBP took on medmnist at 3x3 over 2 of 28 slices), and the count
    is the number of regions."""
    net, x, shape = tiny_network(3), np.random.default_rng(3).uniform(0, 1, TINY_SHAPE), TINY_SHAPE
    threat = AnyPatch(0.3, 2, 2, 2)
    count = len(threat.regions(shape))
    monkeypatch.setattr(AnyPatch, "regions", lambda self, shape: pytest.fail("the regions of every placement were built"))
    assert threat.n_members(shape) == count == 2 * 4 * 4
    wrong = (int(net.predict(x)) + 1) % net.n_classes  # a margin left open: certify counts the members
    cert = certify(net, x, wrong, threat, "crown", members=members)
    assert -np.inf < cert.min_margin <= 0 and "members" not in cert.stats  # 32 members: more than 16


@pytest.mark.parametrize("name,threat", [("tiny_std", "linf:eps=4/255"), ("resnet2b", "anyframes:k=1,eps=8/255"),
                                         ("inception", "anypatch:eps=16/255,len=2,h=3,w=3")])
def test_crown_ibp_is_crown_on_the_margins_over_the_ibp_boxes(name, threat):
    """crown-ibp keeps IBP's boxes of every tensor and bounds the margins by CROWN over them: never
    looser than IBP, tighter on some margin (the sampled/PGD test above checks it is sound)."""
    net = zoo.pretrained_network(name)
    x, y = sv.load_sample(ensure_dataset(zoo.dataset_of(name)), split="test", index=0)
    t = sv.parse_threat(threat)
    ibp, mixed = (certify(net, x, y, t, m) for m in ("ibp", "crown-ibp"))
    for (lo_a, hi_a), (lo_b, hi_b) in zip(ibp.bounds, mixed.bounds):
        np.testing.assert_array_equal(lo_a, lo_b)
        np.testing.assert_array_equal(hi_a, hi_b)
    others = [j for j in range(net.n_classes) if j != y]
    assert np.all(mixed.margin_lb[others] >= ibp.margin_lb[others]) and np.any(mixed.margin_lb[others] > ibp.margin_lb[others])
    assert mixed.relaxation == "crown-ibp"
