"""Branch-and-bound: the same verdicts as the MILP, replayed counterexamples, exact threat splits."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import KINDS, threat_of, tiny_network
from stverify import verify
from stverify.complete.bab import threat_children
from stverify.replay import replay
from stverify.threats import AnyFrames, AnyPatch, Frames, Patch


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def instances(kind, seeds, eps_list, **net_args):
    rng = np.random.default_rng(11)
    for seed, pool in itertools.product(seeds, [None, "max", "avg"]):
        net = tiny_network(seed, pool=pool, **net_args)
        x = rng.uniform(0, 1, size=net.input_shape)
        for eps in eps_list:
            yield net, x, int(net.predict(x)), threat_of(kind, eps, net.input_shape)


def check_same_verdicts(kind, seeds, eps_list, **options):
    seen, relu_splits = set(), 0
    for net, x, y, threat in instances(kind, seeds, eps_list, **({"shape": (1, 3, 4, 4), "channels": 1, "hidden": 3}
                                                                  if options.get("leaf_binaries") == 0 else {})):
        milp = verify(net, x, y, threat, method="milp", timeout=60, attack=False)
        bab = verify(net, x, y, threat, method="bab", timeout=60, attack=False, **options)
        assert bab.status == milp.status, (threat.spec(), bab.message, bab.stats)
        if bab.status == "falsified":
            assert replay(net, x, y, threat, bab.counterexample).ok
        else:
            assert bab.margin_lb > 0
        seen.add(bab.status)
        relu_splits += bab.stats.get("relu_splits", 0)
    return seen, relu_splits


@pytest.mark.parametrize("kind", KINDS)
def test_bab_agrees_with_milp(kind):
    assert check_same_verdicts(kind, [0, 1], [0.05, 0.1])[0] == {"verified", "falsified"}


@pytest.mark.parametrize("kind", KINDS)
def test_relu_splitting_alone_agrees_with_milp(kind):
    """leaf_binaries=0: the MILP only sees leaves without unstable ReLUs (or with none that matters)."""
    seen, relu_splits = check_same_verdicts(kind, [0, 1, 2], [0.1, 0.3], leaf_binaries=0)
    assert seen == {"verified", "falsified"} and relu_splits > 0


def test_milp_leaf_on_a_split_that_excludes_x0():
    """A ReLU forced inactive while active at x0: its constant in the MILP must not be the clean value."""
    rng = np.random.default_rng(0)
    x = [rng.uniform(0, 1, size=(1, 3, 5, 5)) for _ in range(5)][4]
    net = tiny_network(1, pool="max")
    y, threat = int(net.predict(x)), Patch(0.05, (1, 2), 1, 1, 2, 2)
    res = verify(net, x, y, threat, method="bab", attack=False, leaf_binaries=0)
    assert res.status == verify(net, x, y, threat, method="milp", attack=False).status == "verified"
    assert res.stats["relu_splits"] >= 1 and res.stats["milp_leaves"] >= 1


@pytest.mark.parametrize("threat", [AnyPatch(0.1, 2, 2, 3), AnyPatch(0.1, 1, 2, 2, stride=2),
                                    AnyPatch(0.1, 1, 2, 2, area=(1, 4, 0, 5, 2, 7)), AnyFrames(0.1, 2)])
def test_threat_children_partition_the_members(threat):
    shape = (1, 4, 7, 7)
    members = lambda t: {tuple(np.flatnonzero(np.logical_or.reduce([r.mask(shape[1:]) for r in rs])))  # noqa: E731
                         for rs in itertools.combinations(t.regions(shape), t.choose)}
    kids = threat_children(threat, shape)
    assert len(kids) == (6 if isinstance(threat, AnyFrames) else 2)
    parts = [members(k) for k in kids]
    assert set().union(*parts) == members(threat) and sum(map(len, parts)) == len(members(threat))
    if isinstance(threat, AnyFrames):
        assert all(isinstance(k, Frames) for k in kids)


@pytest.mark.parametrize("seed, by", [(4, "attack"), (7, "MILP")])
def test_falsified_by_the_search_and_statistics(seed, by):
    net, threat = tiny_network(seed), threat_of("anypatch", 0.3)
    x = np.random.default_rng(5).uniform(0, 1, size=net.input_shape)
    y = int(net.predict(x))
    res = verify(net, x, y, threat, method="bab", attack=False)
    assert res.status == "falsified" and by in res.message
    assert replay(net, x, y, threat, res.counterexample).ok
    assert res.stats["threat_splits"] >= 1
    for key in ("nodes", "pruned", "max_depth", "milp_leaves", "bound_s", "milp_s", "attack_s"):
        assert key in res.stats
