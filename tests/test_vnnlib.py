"""VNN-LIB in and out: hand-written VNN-COMP-style properties against brute force, real VNN-COMP files,
round trips of stverify threats, the disjunctive file of a union threat, malformed files, the CLI."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import stverify as sv
from stverify.cli import main as cli_main
from stverify.complete.milp_verify import verify_milp
from stverify.complete.smt_verify import verify_smt
from stverify.errors import InputError
from stverify.interchange import vnncomp
from stverify.interchange.vnnlib import (OutputSpec, format_vnnlib, parse_vnnlib, parse_vnnlib_text, write_member_files,
                                         write_vnnlib)
from stverify.interchange.vnnlib.write import _num
from stverify.network import Flatten, Linear, Network, ReLU
from stverify.stbp_hybrid.certify import certify
from stverify.threats import Boxes, parse_threat

from conftest import TINY_SHAPE, tiny_network

DATA = Path(__file__).parent / "data" / "vnncomp"
GRID = 401  # points per axis of the brute-force grid


@functools.lru_cache(maxsize=None)
def net2() -> Network:
    """2 inputs -> 8 -> 8 -> 3 ReLU network (input shape 1 x 1 x 1 x 2), small enough for a dense grid."""
    rng = np.random.default_rng(0)
    return Network([Flatten(), Linear(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.3), ReLU(),
                    Linear(rng.normal(size=(8, 8)) * 0.5, rng.normal(size=8) * 0.3), ReLU(),
                    Linear(rng.normal(size=(3, 8)), rng.normal(size=3) * 0.3)], (1, 1, 1, 2), name="net2")


def header(n_in: int = 2, n_out: int = 3) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def box(x0: tuple[float, float], x1: tuple[float, float]) -> str:
    return f"(<= X_0 {x0[1]}) (>= X_0 {x0[0]}) (<= X_1 {x1[1]}) (>= X_1 {x1[0]})"


def asserts(x0: tuple[float, float], x1: tuple[float, float]) -> str:
    """The box as four top-level asserts, one bound each (as most VNN-COMP files write it)."""
    return "".join(f"(assert {a})\n" for a in box(x0, x1).replace(") (", ")|(").split("|"))


# hand-written properties in the VNN-COMP style: (name, text, expected answer)
ROBUST = "(assert (or\n  (and (>= Y_0 Y_2))\n  (and (>= Y_1 Y_2))\n))\n"
CONJ = "; a conjunction with constants and a linear combination\n(assert (>= Y_2 1.5))\n(assert (<= (+ Y_0 (* 2 Y_1)) (- 3.0 Y_2)))\n"
DISJ = ("; a disjunction with constants, linear forms on both sides and a strict atom\n(assert (or\n"
        "  (and (>= (- Y_0 Y_1) -0.5) (<= Y_2 (+ Y_0 1.5)))\n  (and (> (* 0.5 Y_1) (- 0.1 Y_2)) (<= Y_2 0.2))\n))\n")
PROPERTIES = [
    ("robust-unsat", header() + asserts((-1, -0.5), (-1, -0.5)) + ROBUST, "unsat"),
    ("robust-sat", header() + f"(assert (and {box((0.4, 0.8), (-1, -0.8))}))\n" + ROBUST, "sat"),
    ("conj-unsat", header() + f"(assert (and {box((-1, -0.5), (-1, -0.5))}))\n" + CONJ.replace("1.5", "8.0"), "unsat"),
    ("conj-sat", header() + f"(assert (and {box((-1, -0.5), (-1, -0.5))}))\n" + CONJ, "sat"),
    ("disj-sat", header() + f"(assert (and {box((0.2, 0.6), (-0.4, 0.0))}))\n" + DISJ, "sat"),
    ("disj-unsat", header() + f"(assert (and {box((-1, -0.5), (-1, -0.5))}))\n" + DISJ, "unsat"),
    ("input-or", header() + f"(assert (or\n  (and {box((-1, -0.5), (-1, -0.5))})\n  (and {box((0.2, 0.6), (-0.4, 0.0))})\n))\n" + CONJ, "sat"),
    ("input-or-unsat", header() + f"(assert (or\n  (and {box((-1, -0.5), (-1, -0.5))})\n  (and {box((-0.3, 0.3), (0.5, 1.0))})\n))\n"
     + CONJ.replace("1.5", "8.0"), "unsat"),
]


def grid_margin(prop) -> tuple[float, float]:
    """(min over a dense grid of each input box of the property margin min_k max_i -r_ki(f(x)),
    a bound on how far the true minimum can lie below it: Lipschitz constant x half the grid step)."""
    spec, net = prop.spec, prop.network
    best, slack = np.inf, 0.0
    lip = np.prod([np.abs(layer.weight).sum(1).max() for layer in net.layers if isinstance(layer, Linear)])
    lip *= max(np.abs(a.coef).sum() for d in spec.output.disjuncts for a in d)
    for lo, hi in zip(spec.lo, spec.hi):
        axes = [np.linspace(a, b, GRID) for a, b in zip(lo, hi)]
        X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape((-1,) + net.input_shape)
        Y = net.forward(X)
        r = [np.stack([-(Y @ a.coef + a.const) for a in d]).max(0) for d in spec.output.disjuncts]
        best = min(best, float(np.min(r)))
        slack = max(slack, lip * float(np.max(hi - lo)) / (GRID - 1) / 2)
    return best, slack


@functools.lru_cache(maxsize=None)
def solved(name: str):
    text = dict((n, t) for n, t, _ in PROPERTIES)[name]
    prop = sv.load_vnnlib(parse_vnnlib_text(text, name), net2())
    # the MILP itself (verify() would stop at a clean point or an attack's point), to optimality
    milp = verify_milp(prop.target, prop.x0, prop.label, prop.threat, timeout=60, optimal=True)
    return prop, milp


@pytest.mark.parametrize("name,expected", [(n, e) for n, _, e in PROPERTIES])
def test_hand_written_properties_match_brute_force(name, expected):
    """The MILP optimum of the reduced question equals the brute-force minimum of the property's
    margin over the input set (so the reduction is exact), and milp, bab and the VNN-COMP answer agree."""
    prop, milp = solved(name)
    grid, slack = grid_margin(prop)
    assert (grid < 0) if expected == "sat" else (grid - slack > 0)  # the brute-force answer
    assert milp.margin_lb is not None and grid - slack - 1e-6 <= milp.margin_lb <= grid + 1e-6
    for method in ("milp", "bab"):
        res = prop.verify(method, timeout=60)
        result, witness, _ = prop.answer(res)
        assert result == expected, (method, res.message)
        if witness is not None:
            w = prop.check_witness(witness.x)
            assert w.ok and prop.spec.output.unsafe(net2().forward(witness.x.reshape(1, 1, 1, 2)))
            np.testing.assert_array_equal(witness.y, net2().forward(witness.x.reshape(1, 1, 1, 2)))


def test_reduction_shape():
    """Robustness properties verify the network itself with the label; others append layers."""
    prop, _ = solved("robust-sat")
    assert prop.target is prop.network and prop.label == 2
    prop, _ = solved("disj-sat")
    assert prop.label == 0 and prop.target.n_classes == 3 and len(prop.target.layers) > len(prop.network.layers)


def test_smt_decides_a_disjunctive_input_set():
    """z3 itself (no attack first) on an explicit union of boxes, one Bool per member, agrees with the MILP."""
    for name in ("input-or", "input-or-unsat"):
        prop, milp = solved(name)
        res = verify_smt(prop.target, prop.x0, prop.label, prop.threat, timeout=120)
        assert res.status == milp.status and res.stats["choice_bools"] == 2, (name, res.message)


def test_stbp_bounds_are_sound_on_properties():
    for name, _, _ in PROPERTIES:
        prop, milp = solved(name)
        lb = certify(prop.target, prop.x0, prop.label, prop.threat).min_margin
        assert lb <= milp.margin_lb + 1e-6


# --- real VNN-COMP files ---------------------------------------------------------------------------


def test_real_acasxu_files_parse():
    p6 = parse_vnnlib(DATA / "acasxu_prop_6.vnnlib")
    assert p6.lo.shape == (2, 5) and p6.n_outputs == 5
    assert p6.lo[0, 0] == -0.129289109 and p6.hi[0, 0] == 0.700434925 and p6.lo[1, 1] == -0.499999896 and p6.hi[1, 1] == -0.11140846
    assert len(p6.output.disjuncts) == 4 and all(len(d) == 1 for d in p6.output.disjuncts)
    assert np.array_equal(p6.output.disjuncts[0][0].coef, [1, -1, 0, 0, 0])  # (<= Y_1 Y_0): Y_0 - Y_1 >= 0
    assert p6.output.robustness_label() is None  # "COC is minimal", not a robustness property
    p9 = parse_vnnlib(DATA / "acasxu_prop_9.vnnlib")
    assert p9.lo.shape == (1, 5) and p9.hi[0, 4] == -0.375 and p9.lo[0, 3] == -0.5


def test_real_acasxu_property_6_verifies_on_a_small_network():
    """Property 6 (two input boxes, 'output 0 is minimal') on a random 5-input network: milp and bab
    agree, and the exact optimum lies below every sampled margin."""
    rng = np.random.default_rng(3)
    net = Network([Flatten(), Linear(rng.normal(size=(10, 5)), rng.normal(size=10)), ReLU(),
                   Linear(rng.normal(size=(5, 10)), rng.normal(size=5))], (1, 1, 1, 5))
    prop = sv.load_vnnlib(DATA / "acasxu_prop_6.vnnlib", net)
    assert len(prop.threat.lo) == 2
    milp = prop.verify("milp", timeout=60, optimal=True, attack=False)
    bab = prop.verify("bab", timeout=60)
    assert prop.answer(milp)[0] == prop.answer(bab)[0] != "unknown"
    pts = prop.threat.sample(prop.x0, 2000, np.random.default_rng(0))
    sampled = min(prop.spec.output.margin(y) for y in net.forward(pts))
    assert milp.margin_lb <= sampled + 1e-6


def test_real_mnist_robustness_file_parses_and_verifies():
    spec = parse_vnnlib(DATA / "mnist_spec_idx_0_eps_0.01200.vnnlib")
    assert spec.lo.shape == (1, 784) and spec.output.robustness_label() == 7
    assert np.all(spec.hi - spec.lo <= 2 * 0.012 + 1e-6) and spec.hi[0, 0] == 0.012 and spec.lo[0, 0] == 0.0
    rng = np.random.default_rng(0)  # a random fully connected network on 1 x 1 x 28 x 28 inputs
    net = Network([Flatten(), Linear(rng.normal(size=(8, 784)) * 0.05, rng.normal(size=8)), ReLU(),
                   Linear(rng.normal(size=(10, 8)), rng.normal(size=10))], (1, 1, 28, 28))
    prop = sv.load_vnnlib(spec, net)
    assert prop.target is net and prop.label == 7
    answers = {m: prop.answer(prop.verify(m, timeout=60))[0] for m in ("milp", "bab")}
    assert answers["milp"] == answers["bab"] != "unknown"


# --- writing: round trips ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_numbers_round_trip_exactly(v):
    assert float(_num(v)) == v and "e" not in _num(v).lower()


@pytest.mark.parametrize("spec", ["linf:eps=0.1", "frames:eps=0.2,frames=1", "anyframes:k=1,eps=0.15",
                                  "patch:eps=0.3,t=0-1,y=1,x=1,h=2,w=2", "anypatch:eps=0.2,len=2,h=2,w=2"])
def test_round_trip_gives_the_same_set_and_verdict(tmp_path, spec):
    net = tiny_network(1)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0.05, 0.95, size=TINY_SHAPE)
    y = int(net.predict(x0))
    threat = parse_threat(spec)
    path = write_vnnlib(tmp_path / "p.vnnlib", threat, x0, y, net.n_classes)
    prop = sv.load_vnnlib(path, net)
    boxes = list(threat.member_boxes(x0))
    assert prop.target is net and prop.label == y and len(prop.threat.lo) == len(boxes)
    for (lo, hi), plo, phi in zip(boxes, prop.threat.lo, prop.threat.hi):  # exactly the same boxes, in order
        np.testing.assert_array_equal(plo, lo)
        np.testing.assert_array_equal(phi, hi)
    inside = threat.sample(x0, 100, rng)
    assert all(prop.threat.contains(None, p, tol=0.0) for p in inside)
    lo, hi = threat.interval(x0)
    for p in inside[:30]:  # nudge one perturbable entry just past its interval: outside both sets
        q = p.copy()
        i = rng.choice(np.flatnonzero(np.broadcast_to(threat.perturbable(x0.shape)[None], x0.shape) & (hi - lo > 0)))
        q.flat[i] = hi.flat[i] + 1e-7 if rng.random() < 0.5 else lo.flat[i] - 1e-7
        assert not threat.contains(x0, q, tol=0.0) and not prop.threat.contains(None, q, tol=0.0)
    if threat.n_members(x0.shape) > 1:  # a point of the hull that no member contains
        q = np.maximum(x0, hi - 1e-9)
        assert not threat.contains(x0, q, tol=0.0) and not prop.threat.contains(None, q, tol=0.0)
    direct = sv.verify(net, x0, y, threat, method="milp", timeout=60, attack=False)
    parsed = prop.verify("milp", timeout=60, attack=False)
    assert direct.status == parsed.status != "unknown"


def test_anyframes_as_one_disjunctive_file_gives_the_same_margins(tmp_path):
    """The disjunctive VNN-LIB of an anyframes threat: the same exact (milp) and STBP margins."""
    net = tiny_network(4)
    x0 = np.random.default_rng(4).uniform(0.05, 0.95, size=TINY_SHAPE)
    y = int(net.predict(x0))
    threat = parse_threat("anyframes:k=2,eps=0.12")
    text = write_vnnlib(tmp_path / "af.vnnlib", threat, x0, y, net.n_classes).read_text()
    assert text.count("(and (<= X_") == 3  # C(3, 2) members in one (or ...)
    prop = sv.load_vnnlib(tmp_path / "af.vnnlib", net)
    direct = sv.verify(net, x0, y, threat, method="milp", optimal=True, attack=False, timeout=60)
    parsed = prop.verify("milp", optimal=True, attack=False, timeout=60)
    tol = sum(max(c["tol"] for c in r.stats["competitors"].values()) for r in (direct, parsed))
    # (the same minimum; margin_lb is a solver's bound less its tolerance, which depends on the encoding: milp
    # encodes the anyframes threat one part per frame pair, the disjunctive file as one union)
    assert parsed.status == direct.status and parsed.margin_lb == pytest.approx(direct.margin_lb, abs=tol)
    assert parsed.stats["n_binaries"]["threat"] == 3  # one query, a binary per member
    for relaxation in ("ibp", "crown", "alpha-crown"):
        a = certify(net, x0, y, threat, relaxation).margin_lb
        b = certify(net, prop.x0, y, prop.threat, relaxation).margin_lb
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert prop.verify("bab", timeout=60).status == direct.status


def test_member_files_and_the_size_limit(tmp_path):
    net = tiny_network(2)
    x0 = np.random.default_rng(2).uniform(0.05, 0.95, size=TINY_SHAPE)
    threat = parse_threat("anypatch:eps=0.2,len=2,h=2,w=2")
    members = threat.n_members(x0.shape)
    with pytest.raises(InputError, match="split-members"):
        write_vnnlib(tmp_path / "big.vnnlib", threat, x0, 0, net.n_classes, max_bounds=100)
    files = write_member_files(tmp_path / "m", "ap", threat, x0, 0, net.n_classes)
    assert len(files) == members
    one = parse_vnnlib(write_vnnlib(tmp_path / "all.vnnlib", threat, x0, 0, net.n_classes))
    for k, f in enumerate(files):
        part = parse_vnnlib(f)
        assert len(part.lo) == 1
        np.testing.assert_array_equal(part.lo[0], one.lo[k])
        np.testing.assert_array_equal(part.hi[0], one.hi[k])


def test_general_output_spec_round_trips():
    spec = parse_vnnlib_text(header() + f"(assert (and {box((0, 1), (0, 1))}))\n" + DISJ, "d")
    text = format_vnnlib(spec.lo, spec.hi, spec.output)
    back = parse_vnnlib_text(text, "back")
    for d1, d2 in zip(spec.output.disjuncts, back.output.disjuncts, strict=True):
        for a1, a2 in zip(d1, d2, strict=True):
            assert np.array_equal(a1.coef, a2.coef) and a1.const == a2.const and a1.strict == a2.strict
    assert OutputSpec.robustness(1, 3).robustness_label() == 1


# --- errors --------------------------------------------------------------------------------------


BAD = [
    (header() + "(assert (<= X_0 1)", "found the end of the file"),
    ("(declare-const X_0 Int)", "expected sort Real"),
    (header() + "(assert (<= X_0 X_1))", "involves 2 inputs"),
    (header() + "(assert (<= X_0 Y_0))", "relates inputs and outputs"),
    (header() + "(assert (<= X_5 1))", "X_5 is used but not declared"),
    (header() + "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (>= X_1 0)) (assert (>= Y_0 Y_1))", "X_1 has no upper bound"),
    (header() + "(assert (or (and (<= X_0 1) (>= Y_0 1)) (and (>= X_0 0))))", "mixes input (X) and output (Y)"),
    (header() + "(assert (<= (* X_0 X_1) 1))", "multiplies two variables"),
    (header() + "(check-sat) (push 1)", "expected declare-const or assert"),
    (header() + f"(assert (and {box((0, 1), (0, 1))}))", "no output constraint"),
    ("(declare-const X_0 Real) (declare-const X_2 Real) (declare-const Y_0 Real)", "missing X_1"),
    (header() + f"(assert (and {box((0, 1), (0, 1))})) (assert (>= Y_0 foo))", "expected a number or a variable"),
    (header() + f"(assert (and {box((0, 1), (2, 3))} (<= X_1 1)))" + ROBUST, "the input set is empty"),
    (header() + "(assert (or))", "without disjuncts"),
    # nested 100,000 deep: refused at the nesting limit, not by Python's recursion limit (an internal error)
    (header() + "(assert " + "(and " * 100_000 + "(<= X_0 1)" + ")" * 100_001, "nested more than 200 deep"),
    (header() + "(assert (or " + "(or " * 100_000 + "(<= X_0 1)" + ")" * 100_002, "nested more than 200 deep"),
    (header() + "(assert (<= X_0 " + "(- " * 100_000 + "1" + ")" * 100_002, "nested more than 200 deep"),
]


@pytest.mark.parametrize("text,words", BAD)
def test_malformed_files_give_one_clear_error(tmp_path, text, words):
    p = tmp_path / "bad.vnnlib"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        parse_vnnlib(p)
    msg = str(e.value)
    assert words in msg and str(p) in msg and "\n" not in msg


def test_file_that_does_not_fit_the_network(tmp_path):
    p = tmp_path / "p.vnnlib"
    p.write_text(header(3) + "".join(f"(assert (<= X_{i} 1)) (assert (>= X_{i} 0))" for i in range(3)) + ROBUST)
    with pytest.raises(InputError, match="declares 3 inputs"):
        sv.load_vnnlib(p, net2())


# --- command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "net2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its retirement
        torch.onnx.export(net2().to_torch(torch.float32), (torch.zeros((1,) + net2().input_shape),), str(path), dynamo=False,
                          opset_version=13, input_names=["x"])
    return path


@pytest.mark.parametrize("name", ["robust-sat", "conj-unsat", "disj-sat"])
def test_cli_writes_the_vnncomp_result(tmp_path, onnx_model, name, capsys):
    text, expected = next((t, e) for n, t, e in PROPERTIES if n == name)
    prop_path, out = tmp_path / "p.vnnlib", tmp_path / "result.txt"
    prop_path.write_text(text)
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(prop_path), "--method", "milp",
                     "--timeout", "60", "--out", str(out)]) == 0
    result, witness = vnncomp.read_result(out)
    assert result == expected and expected in capsys.readouterr().err
    if result == "sat":  # the witness: in the set, and Y the model's outputs there, which are unsafe
        net = sv.load_network(onnx_model)
        prop = sv.load_vnnlib(prop_path, net)
        assert prop.check_witness(witness.x).ok
        np.testing.assert_array_equal(witness.y, net.forward(witness.x.reshape(net.input_shape)))
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(prop_path), "--method", "milp"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == expected  # stdout without --out


def test_cli_json_with_vnnlib_is_one_json_object(tmp_path, onnx_model, capsys):
    import json

    text = next(t for n, t, _ in PROPERTIES if n == "robust-sat")
    (tmp_path / "p.vnnlib").write_text(text)
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(tmp_path / "p.vnnlib"), "--method", "milp",
                     "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()  # no VNN-COMP text beside it
    doc = json.loads(line)
    assert doc["status"] == "falsified" and doc["vnncomp"]["result"] == "sat" and doc["margin_ub"] < 0
    assert doc["counterexample"] == "(omitted; use --counterexample)" and doc["property"]["reduction"] == "label"


@pytest.mark.parametrize("extra,words", [(["--threat", "linf:eps=0.1"], "--threat"), (["--index", "1"], "--index"),
                                         (["--data", "d.npz", "--split", "val"], "--data, --split"),
                                         (["--label", "0"], "--label"), (["--save-counterexample", "c.npz"], "--save")])
def test_cli_refuses_what_a_vnnlib_file_states_itself(tmp_path, onnx_model, capsys, extra, words):
    (tmp_path / "p.vnnlib").write_text(PROPERTIES[0][1])
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(tmp_path / "p.vnnlib")] + extra) == 2
    out, err = capsys.readouterr()
    assert f"{words}" in err and "cannot be used with --vnnlib" in err and len(err.strip().splitlines()) == 1
    assert out == ""


def test_cli_out_without_vnnlib_is_refused(tmp_path, capsys):
    assert cli_main(["verify", "--model", "tiny", "--threat", "linf:eps=1/255", "--out", str(tmp_path / "r.txt")]) == 2
    assert "--out applies to --vnnlib" in capsys.readouterr().err and not (tmp_path / "r.txt").exists()


def test_cli_rejects_a_malformed_file_in_one_line(tmp_path, onnx_model, capsys):
    p = tmp_path / "bad.vnnlib"
    p.write_text(BAD[2][0])
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "involves 2 inputs" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_deeply_nested_file_as_bad_input(tmp_path, onnx_model, capsys):
    p = tmp_path / "deep.vnnlib"
    p.write_text(BAD[-3][0])
    assert cli_main(["verify", "--model", str(onnx_model), "--vnnlib", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nested more than 200 deep" in err and len(err.strip().splitlines()) == 1


def test_nesting_up_to_the_limit_is_read():
    depth = 150  # formulas and terms, each well inside the limit
    text = (header() + "(assert " + "(and " * depth + box((0, 1), (0, 1)) + ")" * depth + ")"
            + "(assert (>= Y_1 " + "(+ " * depth + "Y_0" + ")" * depth + "))")
    spec = parse_vnnlib_text(text)
    np.testing.assert_array_equal(spec.lo, [[0, 0]])
    np.testing.assert_array_equal(spec.hi, [[1, 1]])
    (atom,), = spec.output.disjuncts  # Y_1 - Y_0 >= 0
    np.testing.assert_array_equal(atom.coef, [-1, 1, 0])
    assert atom.const == 0 and not atom.strict


def test_boxes_threat_refuses_what_it_cannot_mean():
    b = Boxes.of(np.zeros((2, 1, 1, 1, 2)), np.ones((2, 1, 1, 1, 2)))
    with pytest.raises(sv.ThreatError, match="no eps"):
        b.with_eps(0.1)
    with pytest.raises(sv.ThreatError, match="empty"):
        Boxes.of(np.ones((1, 1, 1, 1, 2)), np.zeros((1, 1, 1, 1, 2)))
