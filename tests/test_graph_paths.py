"""Every verification path on graph networks (residual, concat, global pooling, padded max-pool),
against an independent exact answer: the equivalent chain network.

Each graph model below has a chain twin built by hand that computes the same function: a linear
branch is carried through a ReLU as relu(s) and relu(-s) (s = relu(s) - relu(-s) exactly), a skip
becomes extra channels of the convolutions around it, a max-pool with -inf padding over non-negative
inputs becomes a zero-padding identity convolution followed by an unpadded max-pool.  Chains are
what stverify has verified exactly all along (0 wrong verdicts in the outside audits), so the exact
minima of the graph's MILP, and the verdicts of milp, bab, smt and verify --vnnlib on the graph, must
equal the chain's; STBP must stay below the exact minimum.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import stverify as sv
from stverify.complete.milp_verify import verify_milp
from stverify.interchange.onnx_writer import network_to_onnx
from stverify.interchange.vnnlib import write_vnnlib
from stverify.network import Add, AvgPool3d, BatchNorm, Concat, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU

SHAPE = (1, 2, 4, 4)


def _conv(rng, cout, cin, k, stride=1, pad=None):
    k3 = (k,) * 3 if isinstance(k, int) else k
    pad = tuple(kk // 2 for kk in k3) if pad is None else pad
    return Conv3d(rng.normal(scale=0.6, size=(cout, cin) + k3), rng.normal(scale=0.2, size=cout), stride, pad)


def _identity_kernel(c: int, k: int, sign: float = 1.0) -> np.ndarray:
    """c x c x k x k x k: the centre tap of channel i reads channel i (a k-kernel padded by k // 2 is the identity)."""
    w = np.zeros((c, c, k, k, k))
    w[np.arange(c), np.arange(c), k // 2, k // 2, k // 2] = sign
    return w


def _head(rng, c):
    return [AvgPool3d.global_(SHAPE[1:]), Flatten(), Linear(rng.normal(size=(3, c)), rng.normal(scale=0.1, size=3))]


def residual_identity(seed: int):
    """stem conv -> relu -> [conv -> relu -> conv] + skip -> relu -> global average pool -> linear."""
    rng = np.random.default_rng(seed)
    stem, c1, c2 = _conv(rng, 2, 1, 3), _conv(rng, 2, 2, 3), _conv(rng, 2, 2, 3)
    head = _head(rng, 2)
    graph = Network([stem, ReLU(), c1, ReLU(), c2, Add(), ReLU()] + head, SHAPE, "res",
                    [(0,), (1,), (2,), (3,), (4,), (5, 2), (6,), (7,), (8,), (9,)])
    # chain: [c1(h); h; -h] -> relu -> c2 on the first part + relu(h) - relu(-h)
    w1 = np.concatenate([c1.weight, _identity_kernel(2, 3), _identity_kernel(2, 3, -1.0)])
    b1 = np.concatenate([c1.bias, np.zeros(4)])
    w2 = np.concatenate([c2.weight, _identity_kernel(2, 3), _identity_kernel(2, 3, -1.0)], axis=1)
    chain = Network([stem, ReLU(), Conv3d(w1, b1, 1, 1), ReLU(), Conv3d(w2, c2.bias, 1, 1), ReLU()] + head, SHAPE, "res-chain")
    return graph, chain


def residual_downsampling(seed: int):
    """A block with a strided main branch and a strided 1x1x1 conv + BatchNorm shortcut (unfolded)."""
    rng = np.random.default_rng(seed)
    stem = _conv(rng, 2, 1, 3)
    c1, c2, cd = _conv(rng, 3, 2, 3, stride=2), _conv(rng, 3, 3, 3), _conv(rng, 3, 2, 1, stride=2, pad=0)
    bn = BatchNorm(rng.uniform(0.5, 1.5, 3) * rng.choice([-1, 1], 3), rng.normal(scale=0.2, size=3))
    head = [AvgPool3d.global_((1, 2, 2)), Flatten(), Linear(rng.normal(size=(3, 3)), rng.normal(scale=0.1, size=3))]
    graph = Network([stem, ReLU(), c1, ReLU(), c2, cd, bn, Add(), ReLU()] + head, SHAPE, "down",
                    [(0,), (1,), (2,), (3,), (4,), (2,), (6,), (5, 7), (8,), (9,), (10,), (11,)])
    # the shortcut s = bn(cd(h)) as a 3x3x3 stride-2 kernel (centre tap) stacked with c1, carried as relu(s), relu(-s)
    wd = np.zeros((3, 2, 3, 3, 3))
    wd[:, :, 1, 1, 1] = cd.weight[:, :, 0, 0, 0] * bn.scale[:, None]
    bd = cd.bias * bn.scale + bn.shift
    w1 = np.concatenate([c1.weight, wd, -wd])
    b1 = np.concatenate([c1.bias, bd, -bd])
    w2 = np.concatenate([c2.weight, _identity_kernel(3, 3), _identity_kernel(3, 3, -1.0)], axis=1)
    chain = Network([stem, ReLU(), Conv3d(w1, b1, 2, 1), ReLU(), Conv3d(w2, c2.bias, 1, 1), ReLU()] + head, SHAPE,
                    "down-chain")
    return graph, chain


def concat_branches(seed: int):
    """A linear 1x1x1 branch and a conv -> relu branch on the input, concatenated, relu, pooled."""
    rng = np.random.default_rng(seed)
    a, b = _conv(rng, 2, 1, 1), _conv(rng, 2, 1, 3)
    head = _head(rng, 4)
    graph = Network([a, b, ReLU(), Concat(), ReLU()] + head, SHAPE, "cat",
                    [(0,), (0,), (2,), (1, 3), (4,), (5,), (6,), (7,)])
    wa = np.zeros((2, 1, 3, 3, 3))
    wa[:, :, 1, 1, 1] = a.weight[:, :, 0, 0, 0]
    w1 = np.concatenate([wa, -wa, b.weight])
    b1 = np.concatenate([a.bias, -a.bias, b.bias])
    w2 = np.zeros((4, 6, 1, 1, 1))
    w2[[0, 1], [0, 1]], w2[[0, 1], [2, 3]], w2[[2, 3], [4, 5]] = 1.0, -1.0, 1.0  # [relu(a) - relu(-a); relu(b)]
    chain = Network([Conv3d(w1, b1, 1, 1), ReLU(), Conv3d(w2, np.zeros(4)), ReLU()] + head, SHAPE, "cat-chain")
    return graph, chain


def input_skip(seed: int):
    """relu(x + conv(x)): the skip carries the network input itself."""
    rng = np.random.default_rng(seed)
    c = _conv(rng, 1, 1, 3)
    lin = Linear(rng.normal(size=(3, 32)), rng.normal(scale=0.1, size=3))
    graph = Network([c, Add(), ReLU(), Flatten(), lin], SHAPE, "skip", [(0,), (1, 0), (2,), (3,), (4,)])
    chain = Network([Conv3d(c.weight + _identity_kernel(1, 3), c.bias, 1, 1), ReLU(), Flatten(), lin], SHAPE, "skip-chain")
    return graph, chain


def padded_maxpool(seed: int):
    """conv -> relu -> max-pool 3x3x3 stride 1 padding 1 (padding -inf) -> linear."""
    rng = np.random.default_rng(seed)
    c = _conv(rng, 2, 1, 3)
    lin = Linear(rng.normal(size=(3, 64)), rng.normal(scale=0.1, size=3))
    graph = Network([c, ReLU(), MaxPool3d(3, 1, 1), Flatten(), lin], SHAPE, "pool")
    pad = Conv3d(_identity_kernel(2, 1), np.zeros(2), 1, 1)  # zero padding: the max of non-negatives is unchanged
    chain = Network([c, ReLU(), pad, MaxPool3d(3, 1), Flatten(), lin], SHAPE, "pool-chain")
    return graph, chain


MODELS = {f.__name__: f for f in (residual_identity, residual_downsampling, concat_branches, input_skip, padded_maxpool)}
LINF, FRAMES, PATCH = "linf:eps={}", "anyframes:k=1,eps={}", "anypatch:eps={},len=2,h=2,w=2"
ALL = ("milp", "bab", "smt")
# (model, threat, methods): instances that each listed method decides by itself (no attack first) in
# seconds, robust and non-robust ones; z3's exact simplex and the MILP are slow to falsify on the
# max-pool model's larger sets, branch-and-bound is not
CASES = [
    ("residual_identity", LINF.format(0.05), ALL), ("residual_identity", FRAMES.format(0.1), ALL),
    ("residual_identity", PATCH.format(0.1), ALL),
    ("residual_downsampling", LINF.format(0.4), ("milp",)), ("residual_downsampling", FRAMES.format(0.2), ALL),
    ("residual_downsampling", PATCH.format(0.2), ALL),
    ("concat_branches", LINF.format(0.4), ALL), ("concat_branches", FRAMES.format(0.4), ALL),
    ("concat_branches", PATCH.format(0.4), ALL),
    ("input_skip", LINF.format(0.1), ALL), ("input_skip", FRAMES.format(0.1), ALL),
    ("input_skip", FRAMES.format(0.2), ALL), ("input_skip", PATCH.format(0.1), ALL),
    ("input_skip", PATCH.format(0.4), ("milp", "bab")),
    ("padded_maxpool", FRAMES.format(0.05), ("milp", "bab")), ("padded_maxpool", FRAMES.format(0.2), ("bab",)),
    ("padded_maxpool", PATCH.format(0.05), ("milp", "bab")), ("padded_maxpool", PATCH.format(0.2), ("milp", "bab")),
]


def _instance(model: str):
    graph, chain = MODELS[model](sorted(MODELS).index(model))
    x = np.random.default_rng(1).uniform(size=SHAPE)
    return graph, chain, x, int(graph.predict(x))


@pytest.mark.parametrize("model", MODELS)
def test_graph_and_chain_twins_compute_the_same_function(model):
    graph, chain, x, _ = _instance(model)
    assert chain.is_chain and (not graph.is_chain or model == "padded_maxpool")
    pts = np.random.default_rng(2).uniform(size=(16,) + SHAPE)
    np.testing.assert_allclose(graph.forward(pts), chain.forward(pts), rtol=0, atol=1e-12)
    with torch.no_grad():
        twin = graph.to_torch(torch.float64)(torch.tensor(pts)).numpy()
    np.testing.assert_allclose(twin, graph.forward(pts), rtol=0, atol=1e-12)


def _vnnlib_verdict(graph, x, y, spec, method, tmp_path) -> str:
    """The graph exported to ONNX and the instance to VNN-LIB, read back and decided (the
    ``stverify verify --model M.onnx --vnnlib P.vnnlib`` path)."""
    onnx.save(network_to_onnx(graph, np.float64), tmp_path / "g.onnx")
    write_vnnlib(tmp_path / "p.vnnlib", sv.parse_threat(spec), x, y, graph.n_classes)
    prop = sv.load_vnnlib(tmp_path / "p.vnnlib", tmp_path / "g.onnx")
    result, _, _ = prop.answer(prop.verify(method, timeout=60, attack=False))
    return {"unsat": "verified", "sat": "falsified"}.get(result, result)


def _truth(chain, x, y, spec, counterexample) -> str:
    """The chain twin's answer: its MILP's proof, or the counterexample replayed on the chain."""
    if counterexample is not None:
        out = chain.forward(counterexample)
        assert sv.parse_threat(spec).contains(x, counterexample) and out[y] < np.delete(out, y).max()
        return "falsified"
    res = sv.verify(chain, x, y, spec, method="milp", timeout=60, attack=False)
    assert res.status == "verified", res.message
    return res.status


@pytest.mark.parametrize("model,spec,methods", CASES,
                         ids=[f"{m}-{s.split(':')[0]}-{s.split('eps=')[1].split(',')[0]}" for m, s, _ in CASES])
def test_verdicts_on_graphs_equal_the_chain_twin(model, spec, methods, tmp_path):
    graph, chain, x, y = _instance(model)
    results = {m: sv.verify(graph, x, y, spec, method=m, timeout=60, attack=False) for m in methods}
    assert {r.status for r in results.values()} <= {"verified", "falsified"}, {m: r.message for m, r in results.items()}
    cex = next((r.counterexample for r in results.values() if r.status == "falsified"), None)
    truth = _truth(chain, x, y, spec, cex)
    assert {m: r.status for m, r in results.items()} == {m: truth for m in methods}
    assert _vnnlib_verdict(graph, x, y, spec, methods[-1], tmp_path) == truth
    stbp = sv.verify(graph, x, y, spec, method="stbp")
    assert truth == "verified" or stbp.status != "verified"


@pytest.mark.parametrize("model,spec", [(m, s) for m, s, _ in CASES if "0.05" in s or m == "concat_branches"])
def test_exact_minima_on_graphs_equal_the_chain_twin(model, spec):
    """The MILP solved to optimality: per competitor, the graph's exact minimum margin equals the
    chain's, and STBP's bound on the graph lies below it."""
    graph, chain, x, y = _instance(model)
    per = []
    for net in (graph, chain):
        res = verify_milp(net, x, y, sv.parse_threat(spec), optimal=True, timeout=60)
        assert res.stats["optimal"], res.message
        per.append(np.delete(np.array(res.stats["margin_lb_per_class"], dtype=float), y))
    np.testing.assert_allclose(per[0], per[1], rtol=0, atol=2e-6)
    assert sv.verify(graph, x, y, spec, method="stbp").margin_lb <= per[1].min() + 1e-7


def test_the_cases_hold_both_verdicts():
    """The tests above are not vacuous: their instances include robust and non-robust ones."""
    verdicts = {sv.verify(_instance(m)[0], *_instance(m)[2:], s, method=methods[0], timeout=60, attack=False).status
                for m, s, methods in CASES}
    assert verdicts == {"verified", "falsified"}


@pytest.mark.parametrize("model", MODELS)
def test_graphs_export_and_rewrite_exactly(model):
    """The ONNX export of a graph, and its conv2d / gemm rewrites where they exist, compute the
    network (float64 reference evaluator to 1e-9; max-pool over frames has no conv2d form and is
    not linear, so the padded max-pool model is refused both, with the reason)."""
    from test_export import check_rewrites

    from stverify.errors import InputError
    from stverify.interchange.onnx_writer import run_onnx
    from stverify.interchange.rewrite import rewrite
    from stverify.network import from_onnx

    graph, _, _, _ = _instance(model)
    xs = np.random.default_rng(3).uniform(size=(5,) + SHAPE)
    back = from_onnx(network_to_onnx(graph, np.float64))
    np.testing.assert_allclose(back.forward(xs), graph.forward(xs), rtol=0, atol=1e-9)
    if model == "padded_maxpool":  # (onnx's reference evaluator mishandles a padded MaxPool: onnxruntime here)
        np.testing.assert_allclose(run_onnx(network_to_onnx(graph), xs), graph.forward(xs), rtol=0, atol=1e-5)
        for kind, why in (("conv2d", "max over several frames"), ("gemm", "not linear")):
            with pytest.raises(InputError, match=why):
                rewrite(graph, kind)
    else:
        check_rewrites(graph, xs)


def _agree(g, c):
    """Two exact-bounds answers about the same function: every side's interval (sound bound, value
    attained) of one meets the other's, and both are exact."""
    assert (g.status == "exact").all() and (c.status == "exact").all()
    assert np.all(np.maximum(g.lo, c.lo) <= np.minimum(g.lo_attained, c.lo_attained) + 1e-9)
    assert np.all(np.maximum(g.hi_attained, c.hi_attained) <= np.minimum(g.hi, c.hi) + 1e-9)


def test_exact_bounds_name_a_graph_tensor():
    """``exact_bounds`` on a graph tensor named by its node agrees with the chain twin's on the same
    function (the outputs; a skip-carrying Add's output, which the twin has as its second conv's)."""
    graph, chain, x, _ = _instance("residual_identity")
    threat = "anyframes:k=1,eps=0.05"
    _agree(sv.exact_bounds(graph, x, threat, layer=graph.names[-1], timeout=60),
           sv.exact_bounds(chain, x, threat, layer=len(chain.layers), timeout=60))
    assert graph.tensor("5") == 6  # node 5 is the Add; the chain computes its output as tensor 5
    g = sv.exact_bounds(graph, x, threat, layer="5", timeout=60)
    assert g.layer == 6
    _agree(g, sv.exact_bounds(chain, x, threat, layer=5, timeout=60))


@pytest.mark.parametrize("model,kind,complete", [("input_skip", LINF, "eps-milp"), ("input_skip", FRAMES, "bab"),
                                                 ("input_skip", PATCH, "eps-milp"), ("concat_branches", LINF, "eps-milp")])
def test_radius_on_a_graph_brackets_the_chain_twins_radius(model, kind, complete):
    """``radius`` on a graph: the graph and its chain twin compute one function, so they have one
    maximum safe radius r*; each search's bracket [lower, upper] holds r* (lower proven robust, upper
    a replayed counterexample), hence the two brackets meet, and both close to the tolerance."""
    from stverify.complete.radius import max_safe_radius

    graph, chain, x, y = _instance(model)
    g, c = (max_safe_radius(net, x, y, kind.format(0.1), tol=5e-3, eps_max=1.0, timeout=60, complete=complete)
            for net in (graph, chain))
    assert g.exact and c.exact and 0 < g.upper < 1.0
    assert max(g.lower, c.lower) <= min(g.upper, c.upper) + 1e-9
    assert sv.parse_threat(kind.format(g.upper)).contains(x, g.counterexample)
    out = graph.forward(g.counterexample)
    assert out[y] < np.delete(out, y).max()
