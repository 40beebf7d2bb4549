"""Output properties through every method, against an independent exact computation.

The models are one-hidden-layer networks (Conv3d -> ReLU -> Linear).  On one member box of the
threat set, fixing the phase of every ReLU that the box leaves unstable makes the network affine,
so the minimum of a property's margin  min_k max_i -(c_ki . f(x) + d_ki)  over the box and the
phase region is, per disjunct k, the linear programme  min s  s.t.  s >= -(c_ki . f(x) + d_ki),
x in the box, each pre-activation on its phase's side (scipy's HiGHS LP).  The minimum over member
boxes, phase patterns and disjuncts is the exact minimum m* of the margin over the set; no code of
stverify's bounds or encodings is involved (only the model's weights and the property's atoms).
Then: verified exactly when m* > 0, falsified (with a counterexample that violates the property in
float32 and float64) when m* < 0, and STBP never verifies a violated property.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

import stverify as sv
from stverify.cli import main
from stverify.properties import parse_property
from stverify.replay import logits32

SHAPE = (2, 3, 6, 6)  # C x T x H x W: two channels, as the steering clips


def one_hidden(n_out: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv3d(2, 3, (2, 3, 3), stride=(1, 2, 2)), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2 * 2, n_out))
    return model.double().eval()


def affine_pieces(model: nn.Sequential):
    """(W1, b1, W2, b2): hidden pre-activations W1 x + b1 (x flat), outputs W2 relu(h) + b2."""
    conv, lin = model[0], model[3]
    n = int(np.prod(SHAPE))
    with torch.no_grad():
        eye = torch.eye(n, dtype=torch.float64).reshape((n,) + SHAPE)
        W1 = (conv(eye) - conv(torch.zeros((1,) + SHAPE, dtype=torch.float64))).reshape(n, -1).numpy().T
        b1 = conv(torch.zeros((1,) + SHAPE, dtype=torch.float64)).reshape(-1).numpy()
    return W1, b1, lin.weight.detach().numpy(), lin.bias.detach().numpy()


def exact_min_margin(model, spec, boxes) -> float:
    """m* = min over the union of ``boxes`` of the property margin (module docstring)."""
    W1, b1, W2, b2 = affine_pieces(model)
    best = np.inf
    for lo, hi in boxes:
        lo, hi = lo.ravel(), hi.ravel()
        c, r = (hi + lo) / 2, (hi - lo) / 2
        hl, hh = W1 @ c + b1 - np.abs(W1) @ r, W1 @ c + b1 + np.abs(W1) @ r  # exact range of each pre-activation
        unstable = np.flatnonzero((hl < 0) & (hh > 0))
        assert len(unstable) <= 10, "the test instance has too many unstable ReLUs to enumerate"
        for phases in itertools.product((0, 1), repeat=len(unstable)):
            active = (hl >= 0).astype(float)
            active[unstable] = phases
            F, g = W2 @ (active[:, None] * W1), W2 @ (active * b1) + b2  # f(x) = F x + g on this region
            # region: active unstable pre-activations >= 0, inactive <= 0:  sign * (W1 x + b1) >= 0
            sign = np.where(np.array(phases) == 1, 1.0, -1.0)
            A_reg, b_reg = -(sign[:, None] * W1[unstable]), sign * b1[unstable]
            for disjunct in spec.disjuncts:
                C = np.stack([a.coef for a in disjunct])
                d = np.array([a.const for a in disjunct])
                # variables (x, s): min s  s.t.  -(C (F x + g) + d) - s <= 0
                A = np.vstack([np.hstack([-(C @ F), -np.ones((len(d), 1))]), np.hstack([A_reg, np.zeros((len(b_reg), 1))])])
                b = np.concatenate([C @ g + d, b_reg])
                cost = np.zeros(len(lo) + 1)
                cost[-1] = 1.0
                res = linprog(cost, A_ub=A, b_ub=b, bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
                if res.status == 0:
                    best = min(best, res.fun)
                else:
                    assert res.status == 2, res.message  # infeasible: an empty phase region
    return best


def member_boxes(threat, x):
    return list(sv.parse_threat(threat).member_boxes(x))


def check_answer(model, net, x, spec, threat, res, m_star):
    assert abs(m_star) > 1e-4, "the instance sits too close to the boundary to decide by this test"
    if m_star > 0:
        assert res.status == "verified", res.message
        assert res.margin_lb <= m_star + 1e-6
    else:
        assert res.status == "falsified", res.message
        p = res.counterexample
        assert sv.parse_threat(threat).contains(x, p)
        assert spec.margin(net.forward(p)) < 0 and spec.margin(logits32(net, p)) < 0
        with torch.no_grad():  # the torch model itself, float32
            assert spec.margin(model.float()(torch.tensor(p[None], dtype=torch.float32))[0].double().numpy()) < 0
        model.double()
        assert res.margin_ub >= m_star - 1e-6


@pytest.fixture(scope="module")
def steering(tmp_path_factory):
    """A 1-output steering model as ONNX, and a 2-channel float clip file with float targets, channel-last."""
    folder = tmp_path_factory.mktemp("steer")
    model = one_hidden(1, seed=3)
    torch.onnx.export(model.float(), (torch.zeros((1,) + SHAPE),), str(folder / "steer.onnx"), dynamo=False,
                      opset_version=13)
    model.double()
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(4,) + SHAPE).astype(np.float32)
    np.savez(folder / "clips.npz", x_test=X.transpose(0, 2, 3, 4, 1), y_test=rng.uniform(-1, 1, 4).astype(np.float32))
    return model, folder


@pytest.mark.parametrize("threat", ["anyframes:k=1,eps=0.05", "anypatch:eps=0.1,len=2,h=3,w=3"])
@pytest.mark.parametrize("side", ["inside", "outside"])
def test_steering_band_verified_exactly_when_the_exact_deviation_fits(steering, threat, side, capsys, torch_one_thread):
    model, folder = steering
    net = sv.load_network(str(folder / "steer.onnx"))
    x = np.load(folder / "clips.npz")["x_test"][0].transpose(3, 0, 1, 2).astype(np.float64)
    f0 = float(net.forward(x)[0])
    boxes = member_boxes(threat, x)
    lo = exact_min_margin(model, parse_property("range:lo=0").bind(net, x), boxes)  # min f
    hi = -exact_min_margin(model, parse_property("range:hi=0").bind(net, x), boxes)  # max f
    deviation = max(hi - f0, f0 - lo)
    delta = deviation * (1.1 if side == "inside" else 0.9)
    prop = f"deviation:delta={delta!r}"
    spec = parse_property(prop).bind(net, x)
    for method in ("milp", "bab"):
        assert main(["verify", "--model", str(folder / "steer.onnx"), "--data", str(folder / "clips.npz"), "--index", "0",
                     "--property", prop, "--threat", threat, "--method", method, "--json", "--counterexample"]) == 0
        doc = json.loads(capsys.readouterr().out)
        res = sv.VerifyResult(doc["status"], method, doc["time_s"], doc["margin_lb"],
                              None if doc["counterexample"] is None else np.asarray(doc["counterexample"]), doc["stats"],
                              doc["message"], margin_ub=doc["margin_ub"])
        check_answer(model, net, x, spec, threat, res, delta - deviation)
        assert doc["instance"]["property"] == parse_property(prop).spec() and doc["instance"]["label"] is None
    stbp = sv.verify(net, x, prop, threat, method="stbp")
    assert side == "inside" or stbp.status != "verified"
    assert stbp.margin_lb is None or stbp.margin_lb <= delta - deviation + 1e-6


CLASSIFIER_PROPS = ["target:class={t}", "topk:k=2,class={t}", "label:class={y}", "range:lo={lo},output={y}"]


@pytest.mark.parametrize("template", CLASSIFIER_PROPS)
@pytest.mark.parametrize("eps", [0.02, 0.15])
def test_classifier_properties_against_the_exact_margin(template, eps):
    model = one_hidden(4, seed=5)
    net = sv.load_network(model, input_shape=SHAPE)
    x = np.random.default_rng(4).uniform(size=SHAPE)
    out = net.forward(x)
    y, t = int(np.argmax(out)), int(np.argsort(out)[-2])  # the label and the runner-up
    threat = f"anyframes:k=1,eps={eps}"
    prop = template.format(y=y, t=t, lo=float(out[y]) - 0.1)
    spec = parse_property(prop).bind(net, x)
    m_star = exact_min_margin(model, spec, member_boxes(threat, x))
    for method in ("milp", "bab", "smt"):
        check_answer(model, net, x, spec, threat, sv.verify(net, x, prop, threat, method=method, timeout=60), m_star)
    stbp = sv.verify(net, x, prop, threat, method="stbp")
    assert stbp.status != "verified" or m_star > 0


def test_output_range_is_the_exact_worst_case(steering, capsys):
    """``stverify output-range``: the steering output's exact min and max over the set (one CLI line)."""
    model, folder = steering
    net = sv.load_network(str(folder / "steer.onnx"))
    x = np.load(folder / "clips.npz")["x_test"][0].transpose(3, 0, 1, 2).astype(np.float64)
    threat = "anyframes:k=1,eps=0.05"
    lo = exact_min_margin(model, parse_property("range:lo=0").bind(net, x), member_boxes(threat, x))
    hi = -exact_min_margin(model, parse_property("range:hi=0").bind(net, x), member_boxes(threat, x))
    assert main(["output-range", "--model", str(folder / "steer.onnx"), "--data", str(folder / "clips.npz"),
                 "--threat", threat, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["exact"] and doc["history"]
    assert doc["lo"] <= lo + 1e-6 <= doc["lo_attained"] + 2e-6 and doc["lo_attained"] - doc["lo"] <= doc["tol"]
    assert doc["hi_attained"] - 2e-6 <= hi - 1e-6 <= doc["hi"] and doc["hi"] - doc["hi_attained"] <= doc["tol"]


def test_regression_radius_brackets_the_largest_safe_eps(steering):
    """The largest eps with the steering output within delta of its clean value: the exact deviation
    just below the bracket is within delta, and a replayed violation sits at its top."""
    model, folder = steering
    net = sv.load_network(str(folder / "steer.onnx"))
    x = np.load(folder / "clips.npz")["x_test"][0].transpose(3, 0, 1, 2).astype(np.float64)
    prop = "deviation:delta=0.05"
    res = sv.max_safe_radius(net, x, prop, "anyframes:k=1,eps=0", tol=1e-4, eps_max=0.5, timeout=60)
    assert res.exact and 0 < res.lower <= res.upper < 0.5
    spec = parse_property(prop).bind(net, x)
    below = sv.parse_threat(f"anyframes:k=1,eps={res.lower * 0.999}")
    assert exact_min_margin(model, spec, list(below.member_boxes(x))) > 0
    assert sv.parse_threat(f"anyframes:k=1,eps={res.upper}").contains(x, res.counterexample)
    assert spec.margin(net.forward(res.counterexample)) < 0 and spec.margin(logits32(net, res.counterexample)) < 0
