"""Attacks: every point they return replays and lies in the threat set; sparse choices are found."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import KINDS, threat_of, tiny_network
from stverify.complete.attack import attack
from stverify.replay import replay
from stverify.network import Flatten, Linear, Network
from stverify.threats import AnyFrames, AnyPatch


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def linear_net(shape, w: np.ndarray, bias: float) -> Network:
    """Two classes: logit_0 - logit_1 = <w, x> + bias (the margin of class 0)."""
    W = np.stack([w.ravel(), np.zeros(w.size)])
    return Network([Flatten(), Linear(W, np.array([bias, 0.0]))], shape)


@pytest.mark.parametrize("kind", KINDS)
def test_counterexamples_replay_and_lie_in_the_set(kind):
    rng = np.random.default_rng(7)
    found = 0
    for seed in range(6):
        net = tiny_network(seed, pool=[None, "max", "avg"][seed % 3])
        x = rng.uniform(0, 1, size=net.input_shape)
        y = int(net.predict(x))
        threat = threat_of(kind, 0.3)
        p = attack(net, x, y, threat, rng=np.random.default_rng(seed))
        if p is not None:
            found += 1
            assert threat.contains(x, p, tol=1e-12)
            assert replay(net, x, y, threat, p).ok
            assert int(net.predict(p)) != y
    assert found >= 2  # eps = 0.3 breaks most of these random networks


def test_key_frames_by_saliency():
    """Only frames 3 and 6 matter and both are needed; C(8, 2) = 28 > 16 choices, so saliency picks."""
    shape = (1, 8, 4, 4)
    w = np.zeros(shape)
    w[:, [3, 6]] = 1.0
    net = linear_net(shape, w, 2.5 - 16.0)  # margin 2.5 at x0 = 0.5; eps 0.1 on both frames takes 3.2
    x = np.full(shape, 0.5)
    p = attack(net, x, 0, AnyFrames(0.1, 2))
    assert p is not None
    assert np.flatnonzero(np.any(p != x, axis=(0, 2, 3))).tolist() == [3, 6]
    assert attack(net, x, 0, AnyFrames(0.07, 2)) is None  # 32 * 0.07 = 2.24 < 2.5: robust


def test_patch_placement_by_saliency():
    """One of 363 placements (> 64, so saliency picks the top 8) covers the sensitive 2x2 block."""
    shape = (1, 3, 12, 12)
    w = np.zeros(shape)
    w[0, 1, 7:9, 4:6] = -1.0
    net = linear_net(shape, w, 0.5 + 4 * 0.5)  # margin 0.5 at x0 = 0.5; eps 0.2 on the block takes 0.8
    x = np.full(shape, 0.5)
    threat = AnyPatch(0.2, 1, 2, 2)
    assert len(threat.placements(shape)) == 363
    p = attack(net, x, 0, threat)
    assert p is not None and threat.contains(x, p)
    assert np.argwhere(p[0] != x[0]).min(0).tolist() == [1, 7, 4]


@pytest.mark.parametrize("method", ["milp", "smt", "bab"])
def test_no_attack_before_a_complete_method_when_stbp_proves_the_instance(monkeypatch, method):
    """A counterexample cannot exist where STBP proves every competitor: the attack (most of a small
    model's time on robust instances) is skipped there, and runs where STBP does not prove it (each
    method attacks after its own first bound, so that bound is not computed twice)."""
    import stverify as sv
    from stverify.complete import preattack

    calls = []
    monkeypatch.setattr(preattack, "attack", lambda *a, **k: calls.append(1))
    w = np.ones((1, 1, 1, 2))
    for bias, attacked in ((-0.4, False), (-0.9, True)):  # min margin over [0.25, 0.75]^2: 0.1 (proven), -0.4
        calls.clear()
        r = sv.verify(linear_net((1, 1, 1, 2), w, bias), np.full((1, 1, 1, 2), 0.5), 0, "linf:eps=0.25", method=method,
                      timeout=10)
        assert bool(calls) == attacked and r.status == ("falsified" if attacked else "verified"), (bias, r.message)


def test_a_strided_input_is_attacked_as_its_copy():
    """A channel-last file's inputs are strided views (``read_split(...).inputs()``): the attack and every
    complete method take them as their contiguous copy (the batches of the attack once failed on them)."""
    import stverify as sv

    shape = (2, 3, 6, 6)  # two channels, as the driving clips
    net = tiny_network(3, shape=shape)
    x = np.random.default_rng(1).uniform(0, 1, size=net.input_shape[1:] + net.input_shape[:1])
    x = np.moveaxis(x, -1, 0)  # C x T x H x W, not contiguous
    assert not x.flags["C_CONTIGUOUS"]
    y, threat = int(net.predict(x)), threat_of("linf", 0.3, shape)
    p = attack(net, x, y, threat, rng=np.random.default_rng(0))
    q = attack(net, np.ascontiguousarray(x), y, threat, rng=np.random.default_rng(0))
    assert (p is None) == (q is None) and (p is None or np.array_equal(p, q))
    for method in ("bab", "milp"):
        strided, copy = (sv.verify(net, z, y, threat, method=method, timeout=20) for z in (x, np.ascontiguousarray(x)))
        assert strided.status == copy.status != "error"
