"""Bound propagation at scale: receptive-field rows, batched sets, memory chunks, alpha-CROWN on
intermediate layers, devices.  The new code paths must give the dense computation's bounds (to
rounding) and stay sound against sampled and PGD points."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import KINDS, epsilons, kinds, seeds, threat_of
from stverify import cli, tolerances, zoo
from stverify.complete.bab import threat_children
from stverify.data import ensure_dataset, load_sample
from stverify.errors import InputError
from stverify.network import AvgPool3d, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU
from stverify.stbp_hybrid import propagate
from stverify.stbp_hybrid.budget import LIVE_COPIES, rows_per_chunk
from stverify.stbp_hybrid.certify import certify, certify_batch, make_support, torch_layers
from stverify.stbp_hybrid.patches import Patches
from stverify.stbp_hybrid.propagate import backward, layer_bounds, margin_bounds, spec_matrix
from stverify.stbp_hybrid.support import BoxSupport, ThreatSupport
from stverify.threats import AnyFrames, AnyPatch, Frames, Linf, Patch
from test_stbp import margins, pgd_points

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SHAPE = (2, 5, 8, 8)
GEOMETRIES = {  # two or three convolutions with strides and paddings, optional pooling in between
    "strided": [("conv", 3, (2, 3, 3), (1, 2, 2), (1, 1, 1)), ("conv", 4, 3, (1, 2, 1), (0, 1, 1))],
    "avgpool": [("conv", 3, 3, 1, 1), ("avg", (1, 2, 2), (1, 2, 2)), ("conv", 4, (2, 3, 3), 1, (0, 1, 0))],
    "maxpool": [("conv", 3, 3, 1, 1), ("max", (1, 2, 2), (1, 1, 1)), ("conv", 3, 3, 2, 1)],
    "three": [("conv", 2, 3, 1, 1), ("conv", 3, 3, 2, 1), ("conv", 3, (2, 3, 3), 1, 0)],
}


def conv_network(seed: int, geometry: str = "strided", shape=SHAPE, n_classes: int = 3) -> Network:
    """Convolutions (He-scaled random weights) with ReLUs, then Flatten -> Linear -> ReLU -> Linear."""
    rng = np.random.default_rng(seed)
    layers, s = [], shape
    for kind, *spec in GEOMETRIES[geometry]:
        if kind == "conv":
            ch, k, stride, pad = spec
            k = (k,) * 3 if isinstance(k, int) else k
            w = rng.normal(size=(ch, s[0]) + k) * np.sqrt(2 / (s[0] * np.prod(k)))
            layers += [Conv3d(w, rng.normal(size=ch) * 0.2, stride, pad), ReLU()]
        else:
            layers.append((AvgPool3d if kind == "avg" else MaxPool3d)(*spec))
        s = layers[-1].output_shape(s) if kind != "conv" else layers[-2].output_shape(s)
    flat = int(np.prod(s))
    layers += [Flatten(), Linear(rng.normal(size=(6, flat)) * np.sqrt(2 / flat), rng.normal(size=6) * 0.2), ReLU(),
               Linear(rng.normal(size=(n_classes, 6)), rng.normal(size=n_classes) * 0.2)]
    return Network(layers, shape, name=f"conv-{geometry}-{seed}")


def instance(seed: int, geometry: str = "strided"):
    net = conv_network(seed, geometry)
    x0 = np.random.default_rng(seed + 1).uniform(size=net.input_shape)
    return net, x0, int(net.predict(x0))


def threat_for(kind: str, eps: float):
    return threat_of(kind, eps, SHAPE) if kind != "anypatch" else AnyPatch(eps, 2, 3, 3)


def dense_only(monkeypatch):
    """Make every backward row dense from the start: the previous implementation's computation."""
    monkeypatch.setattr(propagate, "_stays_patch", lambda layer, size, grid: False)


# --- receptive-field rows ------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=seeds, geometry=st.sampled_from(sorted(GEOMETRIES)))
def test_patch_rows_walk_back_like_dense_rows(seed, geometry):
    """Random rows on the last convolution's output, walked back as boxes and as dense tensors."""
    net, x0, _ = instance(seed % 50, geometry)
    layers = torch_layers(net)
    sup = make_support(x0, AnyFrames(0.1, 1), "threat")
    bounds = layer_bounds(layers, sup, "ibp")
    j = max(i for i, layer in enumerate(layers) if isinstance(layer, torch.nn.Conv3d))
    out = tuple(bounds[j + 1][0].shape[1:])
    rng = np.random.default_rng(seed)
    pos = torch.as_tensor(np.stack([rng.integers(0, n, 7) for n in out[1:]], 1))
    values = torch.as_tensor(rng.normal(size=(7, out[0], 1, 1, 1)))
    rows = Patches(values, pos, torch.zeros(7, dtype=torch.long), out[1:], (1, 1, 1), (0, 0, 0), out[1:])
    A_p, c_p = backward(layers, bounds, j + 1, rows)
    A_d, c_d = backward(layers, bounds, j + 1, rows.to_dense())
    A_p = A_p.to_dense() if isinstance(A_p, Patches) else A_p
    torch.testing.assert_close(A_p, A_d, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_p, c_d, rtol=0, atol=1e-12)
    torch.testing.assert_close(sup.min(backward(layers, bounds, j + 1, rows)[0]), sup.min(A_d), rtol=0, atol=1e-12)


def test_gather_reads_every_box():
    """Entry d of row r's box is t[set_r, :, pos_r * stride + offset + d], 0 off the grid."""
    rng = np.random.default_rng(0)
    t = torch.as_tensor(rng.normal(size=(2, 3, 4, 6, 5)))
    pos, sets = torch.tensor([[0, 0, 0], [1, 2, 1], [2, 1, 2], [1, 0, 2]]), torch.tensor([0, 1, 1, 0])
    stride, offset, size = (1, 2, 2), (-1, -1, -2), (3, 3, 4)
    rows = Patches(torch.zeros((4, 1) + size), pos, sets, (3, 3, 3), stride, offset, (4, 6, 5))
    got = rows.gather(t)
    for r in range(4):
        for d in np.ndindex(*size):
            at = [int(pos[r, a]) * stride[a] + offset[a] + d[a] for a in range(3)]
            inside = all(0 <= c < n for c, n in zip(at, t.shape[2:]))
            want = t[int(sets[r]), :, at[0], at[1], at[2]] if inside else torch.zeros(3, dtype=t.dtype)
            torch.testing.assert_close(got[(r, slice(None)) + d], want, rtol=0, atol=0)
    dense = rows.with_values(got).to_dense()
    assert dense.shape == (4, 3, 4, 6, 5)
    for r in range(4):  # scattering back puts every on-grid entry where it was read
        corner = [int(pos[r, a]) * stride[a] + offset[a] for a in range(3)]
        lo = [max(c, 0) for c in corner]
        hi = [min(c + k, n) for c, k, n in zip(corner, size, t.shape[2:])]
        window = t[int(sets[r]), :, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        torch.testing.assert_close(dense[r, :, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], window, rtol=0, atol=0)
        assert float(dense[r].abs().sum()) == pytest.approx(float(window.abs().sum()))


# --- the same bounds as the dense computation ----------------------------------------------
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("kind", KINDS)
def test_crown_equals_the_dense_computation(geometry, kind, monkeypatch):
    net, x0, y = instance(3, geometry)
    threat = threat_for(kind, 0.15)
    new = certify(net, x0, y, threat, "crown")
    dense_only(monkeypatch)
    old = certify(net, x0, y, threat, "crown")
    np.testing.assert_allclose(new.margin_lb, old.margin_lb, rtol=0, atol=1e-9)
    for (lo, hi), (dlo, dhi) in zip(new.bounds, old.bounds):
        np.testing.assert_allclose(lo, dlo, rtol=0, atol=1e-9)
        np.testing.assert_allclose(hi, dhi, rtol=0, atol=1e-9)
    assert sum(new.unstable.values()) > 0


def test_memory_budget_chunks_give_the_same_bounds():
    net, x0, y = instance(5, "three")
    threat = AnyPatch(0.15, 2, 3, 3)
    whole = certify(net, x0, y, threat, "crown")
    one_row = certify(net, x0, y, threat, "crown", memory_budget=1)  # one row (or output channel) per chunk
    np.testing.assert_allclose(whole.margin_lb, one_row.margin_lb, rtol=0, atol=1e-12)
    for (lo, hi), (clo, chi) in zip(whole.bounds, one_row.bounds):
        np.testing.assert_allclose(lo, clo, rtol=0, atol=1e-12)
        np.testing.assert_allclose(hi, chi, rtol=0, atol=1e-12)
    assert rows_per_chunk(10 ** 6, 100, 8) * 100 * 8 * LIVE_COPIES <= 10 ** 6 and rows_per_chunk(1, 100, 8) == 1


def test_single_box_threats_are_concretised_as_boxes():
    net, x0, y = instance(2)
    for threat in (Linf(0.1), Frames(0.1, (1, 3)), Patch(0.1, (0, 2), 1, 1, 3, 3), AnyFrames(0.1, SHAPE[1])):
        assert isinstance(make_support(x0, threat, "threat"), BoxSupport)
    for threat in (AnyFrames(0.1, 1), AnyPatch(0.1, 2, 3, 3)):
        assert isinstance(make_support(x0, threat, "threat"), ThreatSupport)
    stbp, box = certify(net, x0, y, Linf(0.1), "crown", "threat"), certify(net, x0, y, Linf(0.1), "crown", "box")
    np.testing.assert_array_equal(stbp.margin_lb, box.margin_lb)


# --- batched sub-problems ---------------------------------------------------------------------
def test_batched_sub_problems_equal_one_by_one():
    net, x0, y = instance(7, "avgpool")
    relu = 1
    split = torch.zeros(net.shapes[relu], dtype=torch.float64)
    split.view(-1)[[3, 10, 17]] = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    problems = [(AnyPatch(0.2, 2, 3, 3), None), (Frames(0.2, (2,)), None), (AnyFrames(0.2, 1), {relu: split}),
                (Linf(0.05), {relu: -split}), *[(t, None) for t in threat_children(AnyPatch(0.2, 2, 3, 3), SHAPE)]]
    batch = certify_batch(net, x0, y, problems, "crown")
    for (threat, splits), cert in zip(problems, batch):
        one = certify(net, x0, y, threat, "crown", splits=splits)
        np.testing.assert_allclose(cert.margin_lb, one.margin_lb, rtol=0, atol=1e-12)
        assert cert.stats["empty"] == one.stats["empty"] and cert.stats["batch"] == len(problems)
        for (lo, hi), (olo, ohi) in zip(cert.bounds, one.bounds):
            np.testing.assert_allclose(lo, olo, rtol=0, atol=1e-12)
            np.testing.assert_allclose(hi, ohi, rtol=0, atol=1e-12)


def check_contains(net, cert, points, y, tol=1e-9):
    acts = [net.activations(p) for p in points]
    for i, (lo, hi) in enumerate(cert.bounds):
        values = np.array([a[i] for a in acts])
        assert np.all(values >= lo - tol) and np.all(values <= hi + tol), f"layer {i} bounds violated"
    others = [j for j in range(net.n_classes) if j != y]
    assert np.all(margins(net, points, y)[:, others] >= cert.margin_lb[None, others] - tol)


@settings(max_examples=12, deadline=None)
@given(seed=seeds, kind=kinds, eps=epsilons, geometry=st.sampled_from(sorted(GEOMETRIES)),
       method=st.sampled_from(["crown", "alpha-crown"]))
def test_deep_bounds_contain_sampled_and_pgd_points(seed, kind, eps, geometry, method):
    net, x0, y = instance(seed % 1000, geometry)
    threat = threat_for(kind, eps)
    cert = certify(net, x0, y, threat, method, alpha_steps=8)
    rng = np.random.default_rng(seed)
    points = np.concatenate([threat.sample(x0, 60, rng), pgd_points(net, x0, y, threat, steps=10, restarts=1, seed=seed)])
    check_contains(net, cert, points, y)


@settings(max_examples=8, deadline=None)
@given(seed=seeds, eps=epsilons, geometry=st.sampled_from(sorted(GEOMETRIES)))
def test_batched_nodes_contain_their_points(seed, eps, geometry):
    """Sub-threats and ReLU phase splits bounded in one batch: every point of a node's set (that
    satisfies its phase constraints) lies within that node's bounds."""
    net, x0, y = instance(seed % 1000, geometry)
    relu = 1
    phases = torch.as_tensor(np.random.default_rng(seed).choice([-1.0, 0.0, 0.0, 1.0], size=net.shapes[relu]))
    kids = threat_children(AnyPatch(eps, 2, 3, 3), SHAPE) + threat_children(AnyFrames(eps, 1), SHAPE)[:2]
    problems = [(t, None) for t in kids] + [(kids[0], {relu: phases})]
    certs = certify_batch(net, x0, y, problems, "crown")
    rng = np.random.default_rng(seed + 1)
    for (threat, splits), cert in zip(problems, certs):
        points = np.concatenate([threat.sample(x0, 40, rng), pgd_points(net, x0, y, threat, steps=8, restarts=1, seed=seed)])
        if splits:
            pre = np.array([net.activations(p)[relu] for p in points])
            s = phases.numpy()
            points = points[np.all((pre * s >= 0) | (s == 0), axis=tuple(range(1, pre.ndim)))]
        if not cert.stats["empty"]:
            check_contains(net, cert, points, y)
        else:
            assert len(points) == 0


# --- alpha-CROWN on intermediate layers ---------------------------------------------------------
def test_alpha_crown_is_never_looser_and_tighter_where_intermediate_layers_matter():
    net = zoo.pretrained_network("medmnist")
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES["medmnist"].dataset), "test", 1)
    threat = Linf(4 / 255)
    layers, sup, S = torch_layers(net), make_support(x, threat, "threat"), spec_matrix(net.n_classes, y)
    with torch.no_grad():
        crown_boxes = layer_bounds(layers, sup, "crown")
        last_layer_only = margin_bounds(layers, crown_boxes, sup, S, "alpha-crown")[0].numpy()  # the previous alpha-CROWN
    crown = certify(net, x, y, threat, "crown")
    alpha = certify(net, x, y, threat, "alpha-crown")
    others = [j for j in range(net.n_classes) if j != y]
    assert np.all(alpha.margin_lb >= crown.margin_lb - 1e-12)
    assert np.all(alpha.margin_lb[others] >= tolerances.lower(last_layer_only) - 1e-12)  # the certificate's slack
    assert alpha.min_margin > last_layer_only.min() + 1e-4
    for (lo, hi), (clo, chi) in zip(alpha.bounds, crown.bounds):
        assert np.all(lo >= clo - 1e-12) and np.all(hi <= chi + 1e-12)
    assert any(np.any(lo > clo + 1e-6) for (lo, _), (clo, _) in zip(alpha.bounds, crown.bounds))


# --- devices ----------------------------------------------------------------------------------------
def test_device_option_and_errors(capsys):
    net, x0, y = instance(1)
    threat = AnyFrames(0.1, 1)
    np.testing.assert_array_equal(certify(net, x0, y, threat, device="cpu").margin_lb, certify(net, x0, y, threat).margin_lb)
    for bad in ("nonsense", *(() if torch.cuda.is_available() else ("cuda",))):
        with pytest.raises(InputError, match="device"):
            certify(net, x0, y, threat, device=bad)
    if not torch.cuda.is_available():
        assert cli.main(["verify", "--model", "tiny", "--threat", "linf:eps=1/255", "--device", "cuda"]) == 2
        assert "device 'cuda'" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["linf", "anyframes", "anypatch"])
def test_cuda_bounds_equal_cpu_bounds(kind):
    net, x0, y = instance(4, "avgpool")
    threat = threat_for(kind, 0.1)
    cpu, gpu = certify(net, x0, y, threat, "crown"), certify(net, x0, y, threat, "crown", device="cuda")
    np.testing.assert_allclose(gpu.margin_lb, cpu.margin_lb, rtol=0, atol=1e-9)
    for (lo, hi), (clo, chi) in zip(gpu.bounds, cpu.bounds):
        np.testing.assert_allclose(lo, clo, rtol=0, atol=1e-9)
        np.testing.assert_allclose(hi, chi, rtol=0, atol=1e-9)


# --- branch-and-bound ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed, threat", [(14, AnyPatch(0.1, 2, 3, 3)), (13, AnyFrames(0.25, 1))])
def test_bab_bounds_nodes_in_batched_passes(seed, threat):
    """Children of several open nodes share a bounding pass; the verdict is decided and checked
    (a counterexample replays; verified means a positive margin bound).  Agreement with the MILP
    on every kind is test_bab's job."""
    from stverify import verify
    from stverify.replay import replay

    net, x0, y = instance(seed, "avgpool")
    bab = verify(net, x0, y, threat, method="bab", attack=False, timeout=120)
    assert bab.status in ("verified", "falsified"), bab.message
    assert bab.stats["threat_splits"] >= 1 and bab.stats["bound_passes"] < bab.stats["nodes"]
    if bab.status == "falsified":
        assert replay(net, x0, y, threat, bab.counterexample).ok
    else:
        assert bab.margin_lb > 0
