"""MILP path: encoding exactness, backend agreement, known answers, soundness, Gurobi licence.

Every call passes ``attack=False`` so that the MILP itself, not the attack run before complete
methods, has to find the counterexamples."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import stverify as sv
from stverify.complete.lp_tighten import tighten
from stverify.replay import replay
from stverify.encodings.backends import SolverError, solve
from stverify.encodings.milp import LinExpr, MILPModel, encode
from stverify.network import AvgPool3d, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU
from stverify.stbp_hybrid.certify import certify
from stverify.threats import parse_threat

SHAPE = (1, 3, 4, 4)
THREATS = ["linf:eps={e}", "frames:eps={e},frames=1", "anyframes:k=1,eps={e}",
           "patch:eps={e},t=0-1,y=1,x=1,h=2,w=2", "anypatch:eps={e},len=2,h=2,w=2"]
ARCHS = ("relu", "maxpool", "avgpool")


def _features(rng, arch):
    layers = [Conv3d(rng.normal(size=(2, 1, 2, 3, 3)) * 0.6, rng.normal(size=2) * 0.1, padding=(0, 1, 1)), ReLU()]
    layers += {"relu": [], "maxpool": [MaxPool3d((1, 2, 2))], "avgpool": [AvgPool3d((1, 2, 2))]}[arch]
    layers.append(Flatten())
    d = Network(layers, SHAPE).shapes[-1][0]
    return layers + [Linear(rng.normal(size=(6, d)) * 0.5, rng.normal(size=6) * 0.2), ReLU()]


@functools.lru_cache(maxsize=None)
def instance(seed: int, arch: str):
    """A random net with a conv + ReLU (+ pool) + linear + ReLU + linear, and a correctly classified input."""
    rng = np.random.default_rng(seed)
    net = Network(_features(rng, arch) + [Linear(rng.normal(size=(3, 6)), rng.normal(size=3) * 0.1)], SHAPE)
    x = rng.uniform(0.1, 0.9, size=SHAPE)
    return net, x, int(net.predict(x))


@functools.lru_cache(maxsize=None)
def milp(seed, arch, threat, solver="scip", bounds="stbp", optimal=False):
    net, x, y = instance(seed, arch)
    return sv.verify(net, x, y, threat, method="milp", solver=solver, bounds=bounds, optimal=optimal, timeout=60,
                     attack=False)


def gurobi_or_skip():
    """Skip (with Gurobi's own error text) when gurobipy cannot run here."""
    m = MILPModel()
    m.add_vars([0.0], [1.0], binary=True)
    try:
        solve(m, LinExpr(np.ones(1)), "gurobi")
    except SolverError as e:
        pytest.skip(f"gurobipy cannot run: {e}")


# seeds and radii picked so that STBP alone decides few cases and the MILP finds both verdicts
CASES = [(seed, arch, t.format(e=eps)) for seed, arch, eps in ((3, "relu", 0.1), (5, "maxpool", 0.2),
                                                               (6, "avgpool", 0.2)) for t in THREATS]


@pytest.mark.parametrize("seed,arch,threat", CASES)
def test_backends_agree_and_solutions_are_exact(seed, arch, threat):
    """SCIP, HiGHS (and Gurobi) agree on the verdict and, to optimality, on the minimum margin; the
    solver's optimal point lies in the set and its true margin equals the MILP optimum."""
    net, x, y = instance(seed, arch)
    solvers = ["scip", "highs"]
    res = {s: milp(seed, arch, threat, s, optimal=True) for s in solvers}
    if res["scip"].stats["n_vars"] < 2000 and res["scip"].stats["n_constraints"] < 2000:
        gurobi_or_skip()
        solvers.append("gurobi")
        res["gurobi"] = milp(seed, arch, threat, "gurobi", optimal=True)
    ref = res["scip"]
    for s in solvers:
        assert res[s].status == ref.status, (s, res[s].message)
        assert res[s].margin_lb == pytest.approx(ref.margin_lb, abs=1e-4), s
        assert milp(seed, arch, threat, s).status == ref.status  # early-stopping mode: same verdict
    th = parse_threat(threat)
    enc = encode(net, x, th, certify(net, x, y, th).bounds)
    for j in (j for j in range(net.n_classes) if j != y):
        r = solve(enc.model, enc.objective(y, j), solvers[-1])  # Gurobi if it runs: the fastest here
        p = enc.point(r.x)
        assert th.contains(x, p, tol=1e-6)
        logits = net.forward(np.clip(p, *th.interval(x)))
        assert logits[y] - logits[j] == pytest.approx(r.objective, abs=1e-5)


@pytest.mark.parametrize("seed,arch,threat", CASES)
def test_sound_and_consistent(seed, arch, threat):
    """STBP `verified` is never contradicted, every `falsified` replays inside the set, and the
    naive, stbp and lp big-M give the same verdict."""
    net, x, y = instance(seed, arch)
    verdicts = {b: milp(seed, arch, threat, bounds=b) for b in ("naive", "stbp", "lp")}
    assert len({r.status for r in verdicts.values()}) == 1, {b: (r.status, r.message) for b, r in verdicts.items()}
    res = verdicts["stbp"]
    assert res.status in ("verified", "falsified")
    if sv.verify(net, x, y, threat, method="stbp").status == "verified":
        assert res.status == "verified"
    th = parse_threat(threat)
    for r in verdicts.values():
        if r.status == "falsified":
            assert th.contains(x, r.counterexample, tol=1e-12)
            assert replay(net, x, y, th, r.counterexample).ok
            assert r.margin_lb < 0
        else:
            assert r.margin_lb > 0


def _member_box_minimum(net, x, y, th):
    """Brute force for a network without ReLU: min over member boxes of the analytic box minimum."""
    eye = np.eye(int(np.prod(SHAPE))).reshape((-1,) + SHAPE)
    zero = net.forward(np.zeros(SHAPE))
    J = net.forward(eye) - zero  # rows: the logit change per unit of each input entry
    best = np.inf
    for lo, hi in th.member_boxes(x):
        for j in range(net.n_classes):
            if j != y:
                w = J[:, y] - J[:, j]
                best = min(best, zero[y] - zero[j] + np.sum(np.minimum(w * lo.ravel(), w * hi.ravel())))
    return best


@pytest.mark.parametrize("threat", [t.format(e=0.1) for t in THREATS])
@pytest.mark.parametrize("solver", ["scip", "highs"])
def test_linear_network_minimum_is_analytic(threat, solver):
    rng = np.random.default_rng(7)
    layers = [Conv3d(rng.normal(size=(2, 1, 2, 2, 2)), rng.normal(size=2), padding=(0, 1, 1)), AvgPool3d((1, 2, 2)),
              Flatten()]
    d = Network(layers, SHAPE).shapes[-1][0]
    net = Network(layers + [Linear(rng.normal(size=(3, d)), rng.normal(size=3))], SHAPE)
    x = rng.uniform(size=SHAPE)
    y = int(net.predict(x))
    res = sv.verify(net, x, y, threat, method="milp", solver=solver, optimal=True, attack=False)
    assert res.status in ("verified", "falsified")
    assert res.margin_lb == pytest.approx(_member_box_minimum(net, x, y, parse_threat(threat)), abs=1e-6)


@pytest.mark.parametrize("threat", [t.format(e=0.2) for t in THREATS])
def test_planted_counterexample_is_found(threat):
    """Class 1 is planted to win at a point x1 of the set (by 0.5) while class 0 wins at x0."""
    rng = np.random.default_rng(11)
    th = parse_threat(threat)
    feats = Network(_features(rng, "relu"), SHAPE)
    x0 = rng.uniform(0.2, 0.8, size=SHAPE)
    x1 = th.sample(x0, 1, rng)[0]
    h0, h1 = feats.forward(x0), feats.forward(x1)
    d = (h1 - h0) / np.sum((h1 - h0) ** 2)
    W = np.zeros((3, len(h0)))
    W[1] = d
    net = Network(feats.layers + (Linear(W, [0.0, -d @ h0 - 0.5, -100.0]),), SHAPE)
    res = sv.verify(net, x0, 0, th, method="milp", attack=False)
    assert res.status == "falsified"
    assert th.contains(x0, res.counterexample, tol=1e-12)
    assert replay(net, x0, 0, th, res.counterexample).ok


def test_lp_tightening_is_sound_and_tighter():
    net, x, y = instance(1, "relu")
    th = parse_threat("anyframes:k=1,eps=0.1")
    base = certify(net, x, y, th).bounds
    tight, stats = tighten(net, x, th, base)
    assert stats["lps"] > 0 and stats["tightened"] > 0
    acts = [np.stack(a) for a in zip(*(net.activations(p) for p in th.sample(x, 500, np.random.default_rng(0))))]
    for (lo, hi), (blo, bhi), a in zip(tight, base, acts):
        assert np.all(lo >= blo) and np.all(hi <= bhi)
        assert np.all(a >= lo) and np.all(a <= hi)


def test_encoding_variables_only_where_the_input_matters():
    net, x, y = instance(1, "relu")
    th = parse_threat("frames:eps=0.05,frames=0")
    enc = encode(net, x, th, certify(net, x, y, th).bounds)
    assert np.array_equal(enc.vars[0] >= 0, np.broadcast_to(th.perturbable(SHAPE)[None], SHAPE))
    assert np.all(enc.vars[2][:, 1:] == -1)  # conv kernel spans frames t, t+1: outputs from frame 1 on are constant


def test_gurobi_licence_limit_is_explained():
    gurobi_or_skip()
    m = MILPModel()
    m.add_vars(np.zeros(2500), np.ones(2500))
    try:
        solve(m, LinExpr(np.ones(2500)), "gurobi")
    except SolverError as e:
        assert "size-limited" in str(e) and "--solver scip" in str(e)
    else:
        pytest.skip("this Gurobi licence is not size-limited")


def test_unknown_solver_and_bounds_are_rejected():
    net, x, y = instance(1, "relu")
    with pytest.raises(ValueError, match="unknown solver"):
        sv.verify(net, x, y, "linf:eps=0.01", method="milp", solver="cplex")
    with pytest.raises(ValueError, match="unknown bound source"):
        sv.verify(net, x, y, "linf:eps=0.01", method="milp", bounds="magic")


def test_relaxing_negligible_terms_keeps_every_point_and_bounds_below():
    """``relax_negligible``: every point of the original model satisfies the relaxed rows, and the
    relaxed objective is a lower bound of the original objective at that point."""
    from stverify.encodings.milp import relax_negligible

    rng = np.random.default_rng(0)
    m = MILPModel()
    lb = rng.uniform(-1, 0, 12)
    ub = lb + np.where(np.arange(12) < 4, rng.uniform(0, 5e-7, 12), rng.uniform(0.5, 2, 12))  # 4 quasi-constants
    v = m.add_vars(lb, ub)
    A = rng.normal(size=(6, 12)) * np.where(rng.uniform(size=(6, 12)) < 0.2, 1e-8, 1.0)  # some negligible terms
    pts = rng.uniform(lb, ub, size=(200, 12))
    act = pts @ A.T
    r, c = np.nonzero(A)
    m.add_rows(r, v[c], A[r, c], act.min(0), act.max(0))
    obj = LinExpr(rng.normal(size=12), 0.3)
    rel = relax_negligible(m)
    assert rel.fixed[:4].all() and not rel.fixed[4:].any()
    B = rel.model.to_csr()
    assert B.nnz < np.count_nonzero(A)
    for p in pts:
        q = np.where(rel.fixed, rel.mid, p)  # the relaxed model's point: fixed variables at their centre
        assert np.all(B @ q >= rel.model.row_lo - 1e-12) and np.all(B @ q <= rel.model.row_hi + 1e-12)
        o = rel.objective(obj)
        assert o.coef @ q + o.const <= obj.coef @ p + obj.const + 1e-12


# (model, test index, threat, layer whose input is minimised (None: the logits), unit, a value of
# a point of the set below the wrong claims)
_PRESOLVE_CASES = [("small", 0, "patch:eps=16/255,t=3-4,y=6,x=6,h=4,w=4", None, 1, 44.2769),
                   ("medmnist", 0, "linf:eps=2/255", 4, 13, -0.85185)]


@pytest.mark.parametrize("model,index,threat,layer,unit,below", _PRESOLVE_CASES)
def test_solvers_never_claim_a_minimum_above_a_point_of_the_set(model, index, threat, layer, unit, below):
    """Regressions for solver tolerances leaking into bounds.  Zoo `small`, logit 1: SCIP's and
    HiGHS's presolve returned "optimal" minima above a point of the set (44.296 and 44.277 against
    44.2768) until negligible terms were taken out of the model (``encodings.milp.relax_negligible``).
    Zoo `medmnist`, input of layer 4, neuron 13: HiGHS at its default MIP feasibility tolerance (1e-6)
    returned -0.8518481 against a point at -0.8518582 (``backends.highs.MIP_FEASIBILITY_TOLERANCE``)."""
    from stverify import zoo
    from stverify.data import ensure_dataset
    from stverify.encodings.backends import scip

    net = zoo.pretrained_network(model)
    x, y = sv.load_sample(ensure_dataset(zoo.ARCHITECTURES[model].dataset), split="test", index=index)
    threat = parse_threat(threat)
    bounds = certify(net, x, y, threat, "crown", "threat").bounds
    if layer is None:
        enc = encode(net, x, threat, bounds)
        L, c = enc.logits
        obj = LinExpr(np.asarray(L[unit].todense()).ravel(), float(c[unit]))
        value = lambda p: net.forward(p)[unit]  # noqa: E731
    else:
        enc = encode(net, x, threat, bounds, upto=layer)
        coef = np.zeros(enc.model.n_vars)
        coef[int(enc.vars[layer].reshape(-1)[unit])] = 1.0
        obj = LinExpr(coef)
        value = lambda p: net.activations(p)[layer].reshape(-1)[unit]  # noqa: E731
    m, xs = scip.build(enc.model)
    m.setParam("presolving/maxrounds", 0)
    reference = scip.optimize(m, xs, obj)  # SCIP without presolve, on the unrelaxed model
    results = {s: solve(enc.model, obj, s) for s in ("scip", "highs")}
    points = [enc.point(r.x) for r in (reference, *results.values())]
    values = [value(p) for p in points if threat.contains(x, p, tol=1e-6)]
    assert len(values) == 3 and min(values) < below
    for s, r in results.items():
        assert r.status == "optimal"
        assert r.bound <= min(values) + 1e-6 * (1 + abs(r.bound)), s


@pytest.mark.parametrize("threat", ["anyframes:k=1,eps=32/255", "anypatch:eps=32/255,len=2,h=4,w=4"])
def test_milp_decides_a_union_that_bab_decides_in_a_second(threat, torch_one_thread):
    """zoo small #1: one MILP over the union (big-M from bounds over all of it) timed out at 60 s
    where bab, splitting the union, took 0.3 s; the MILP per part (``threat_parts``) decides it."""
    from stverify import zoo
    from stverify.data import ensure_dataset, load_sample

    net = zoo.pretrained_network("small")
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES["small"].dataset), "test", 1)
    r = sv.verify(net, x, int(y), threat, method="milp", timeout=20, attack=False)
    assert r.status == sv.verify(net, x, int(y), threat, method="bab", timeout=20).status == "verified", r.message
    assert r.stats["parts"] > 1 and r.margin_lb > 0
