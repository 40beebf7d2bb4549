"""Output properties: the grammar, the unsafe sets' margins against their definitions, and the
reduction to a label margin that every method decides (exact: the extended network's label margin
equals the property's margin at every point)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stverify.network import Flatten, Linear, Network
from stverify.properties import OutputSpec, PropertyError, parse_property, reduce_to_label

N_OUT = 5
outputs = st.lists(st.floats(-50, 50, allow_nan=False), min_size=N_OUT, max_size=N_OUT).map(np.array)


def identity_net(n: int = N_OUT) -> Network:
    """Outputs = the input (1 x 1 x 1 x n): the property's margin is a function of the input."""
    return Network([Flatten(), Linear(np.eye(n), np.zeros(n))], (1, 1, 1, n), "id")


def definition(kind: str, y: np.ndarray, p: dict, label: int, centre: np.ndarray) -> float:
    """Each property's margin written out from its definition (the grammar's table)."""
    i = p.get("output", 0)
    others = np.delete(y, label)
    if kind == "label":
        return float(y[label] - others.max())
    if kind == "deviation":
        return p["delta"] - abs(y[i] - centre[i])
    if kind == "range":
        return min(p.get("hi", np.inf) - y[i], y[i] - p.get("lo", -np.inf))
    if kind == "target":
        return float(np.delete(y, p["class"]).max() - y[p["class"]])
    return float(y[label] - np.sort(others)[::-1][p["k"] - 1])  # topk


PROPS = ["label", "deviation:delta=0.5", "deviation:delta=2,output=3", "range:lo=-1,hi=2.5,output=1",
         "range:hi=0", "range:lo=1/3,output=4", "target:class=2", "topk:k=1", "topk:k=2", "topk:k=4"]


@settings(max_examples=60, deadline=None)
@given(y=outputs, centre=outputs, label=st.integers(0, N_OUT - 1), text=st.sampled_from(PROPS))
def test_margins_equal_their_definitions_and_the_reduction_is_exact(y, centre, label, text):
    net = identity_net()
    prop = parse_property(text)
    spec = prop.bind(net, centre.reshape(net.input_shape), label)
    expected = definition(prop.kind, y, dict(prop.params), label, centre)
    assert spec.margin(y) == pytest.approx(expected, abs=1e-9)
    assert spec.margins(y[None])[0] == pytest.approx(expected, abs=1e-9)
    assert spec.unsafe(y) == (expected < 0) or abs(expected) < 1e-9  # on the boundary: strictness decides
    target, lab = reduce_to_label(net, spec)
    out = target.forward(y.reshape(net.input_shape))
    assert out[lab] - np.delete(out, lab).max() == pytest.approx(expected, abs=1e-9)


def test_label_is_the_label_on_the_network_itself():
    net = identity_net()
    spec = parse_property("label").bind(net, np.zeros(net.input_shape), 3)
    assert spec.robustness_label() == 3
    assert reduce_to_label(net, spec) == (net, 3)
    assert parse_property("label:class=1").bind(net, np.zeros(net.input_shape)).robustness_label() == 1


def test_spec_text_round_trips_and_describes():
    for text in PROPS + ["deviation:delta=0.1,output=0", "range:lo=-0.30000000000000004,hi=0.3"]:
        p = parse_property(text)
        assert parse_property(p.spec()) == p
        assert p.describe()
    assert parse_property("deviation:delta=1/20").get("delta") == 0.05


@pytest.mark.parametrize("text, words", [
    ("nope", "unknown property kind"), ("deviation", "missing delta"), ("deviation:delta=0", "delta must be > 0"),
    ("deviation:delta=x", "not a number"), ("range", "give lo, hi or both"), ("range:lo=2,hi=1", "lo must be < hi"),
    ("target", "missing class"), ("target:class=-1", "non-negative integer"), ("topk:k=1.5", "non-negative integer"),
    ("topk:k=0", "k must be >= 1"), ("label:k=2", "unexpected"), ("deviation:delta=1,delta=2", "given twice"),
    ("range:hi=inf", "finite"), (3, "must be a string")])
def test_bad_property_strings_say_what_was_expected(text, words):
    with pytest.raises(PropertyError, match=words):
        parse_property(text)


@pytest.mark.parametrize("text, words", [("deviation:delta=1,output=5", "output 5 is not an output"),
                                         ("target:class=7", "class 7 is not an output"),
                                         ("topk:k=5", "k must be in 1..4"), ("topk:k=2", "needs the instance's label")])
def test_properties_that_do_not_fit_the_model_are_refused(text, words):
    net = identity_net()
    with pytest.raises(PropertyError, match=words):
        parse_property(text).bind(net, np.zeros(net.input_shape), None if "topk:k=2" == text else 0)


def test_top_k_disjuncts_are_the_k_subsets_of_the_other_classes():
    spec = OutputSpec.top_k(1, 2, 5)
    subsets = {tuple(int(np.flatnonzero(a.coef > 0)[0]) for a in d) for d in spec.disjuncts}
    assert subsets == set(itertools.combinations([0, 2, 3, 4], 2))


@pytest.mark.parametrize("text", PROPS)
def test_every_property_round_trips_through_vnnlib(text, tmp_path):
    """Written with the threat set to VNN-LIB and read back: the same unsafe set (its margin at any
    outputs), and the same answer and margin bound for the read property as for the original."""
    import stverify as sv
    from stverify.interchange.vnnlib import load_vnnlib, write_vnnlib

    rng = np.random.default_rng(0)
    net = Network([Flatten(), Linear(rng.normal(size=(N_OUT, 8)), rng.normal(size=N_OUT))], (2, 2, 2, 1), "lin")
    x = rng.uniform(size=net.input_shape)
    spec = parse_property(text).bind(net, x, int(net.predict(x)))
    path = write_vnnlib(tmp_path / "p.vnnlib", sv.parse_threat("anyframes:k=1,eps=0.1"), x, spec)
    prop = load_vnnlib(path, net)
    ys = rng.normal(scale=3, size=(50, N_OUT))
    np.testing.assert_allclose(prop.spec.output.margins(ys), spec.margins(ys), rtol=0, atol=1e-12)
    direct = sv.verify(net, x, spec, "anyframes:k=1,eps=0.1", method="milp", timeout=30, attack=False)
    read = prop.verify("milp", timeout=30, attack=False)
    assert read.status == direct.status
    assert (read.margin_lb is None) == (direct.margin_lb is None)
    assert read.margin_lb is None or read.margin_lb == pytest.approx(direct.margin_lb, abs=1e-6)
