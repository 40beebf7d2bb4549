"""Shared builders of tiny random networks, inputs and threats for the tests."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from stverify.network import AvgPool3d, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU
from stverify.threats import AnyFrames, AnyPatch, Frames, Linf, Patch

TINY_SHAPE = (1, 3, 5, 5)


def tiny_network(seed: int, shape=TINY_SHAPE, channels: int = 2, pool: str | None = None, hidden: int = 4,
                 n_classes: int = 3, scale: float = 1.0) -> Network:
    """Conv3d(k=2x3x3) -> ReLU [-> pool] -> Flatten -> Linear -> ReLU -> Linear, random weights."""
    rng = np.random.default_rng(seed)
    c, t, h, w = shape
    layers = [Conv3d(rng.normal(size=(channels, c, 2, 3, 3)) * scale, rng.normal(size=channels) * 0.3, stride=(1, 1, 1)), ReLU()]
    if pool == "max":
        layers.append(MaxPool3d((1, 2, 2), (1, 1, 1)))
    elif pool == "avg":
        layers.append(AvgPool3d((2, 2, 2), (1, 1, 1)))
    flat = _flat(layers, shape)
    layers += [Flatten(), Linear(rng.normal(size=(hidden, flat)) * scale, rng.normal(size=hidden) * 0.3), ReLU(),
               Linear(rng.normal(size=(n_classes, hidden)), rng.normal(size=n_classes) * 0.3)]
    return Network(layers, shape, name=f"tiny-{seed}")


def _flat(layers, shape) -> int:
    s = shape
    for layer in layers:
        s = layer.output_shape(s)
    return int(np.prod(s))


def threat_of(kind: str, eps: float, shape=TINY_SHAPE):
    _, t, h, w = shape
    return {
        "linf": Linf(eps),
        "frames": Frames(eps, (0, t - 1)),
        "anyframes": AnyFrames(eps, 1),
        "patch": Patch(eps, (1, 2), 1, 1, 2, 2),
        "anypatch": AnyPatch(eps, 2, 2, 2),
    }[kind]


KINDS = ["linf", "frames", "anyframes", "patch", "anypatch"]
kinds = st.sampled_from(KINDS)
seeds = st.integers(0, 10_000)
pools = st.sampled_from([None, "max", "avg"])
epsilons = st.sampled_from([0.02, 0.1, 0.3])


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny problems: torch's thread start-up would dominate (and the test machine is shared)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def boundary_point(net, x0, y: int, threat, cex, target: float = 0.0) -> np.ndarray:
    """A point of the segment x0 -> cex (inside the threat set: x0 lies in every member box) whose float64
    margin is just above ``target`` (within 1e-12 of it, from above), found by bisection; for target 0 a
    witness on the decision boundary, as a tool computing in float32 or with LP tolerances reports one."""
    from stverify.replay import margin_at, snap

    x0, cex = np.asarray(x0, dtype=np.float64), np.asarray(cex, dtype=np.float64)
    lo, hi = 0.0, 1.0  # margin(lo) > target >= margin(hi)
    assert margin_at(net, x0, y, threat, x0) > target >= margin_at(net, x0, y, threat, cex)
    for _ in range(80):
        mid = (lo + hi) / 2
        if margin_at(net, x0, y, threat, x0 + mid * (cex - x0)) > target:
            lo = mid
        else:
            hi = mid
    return snap(x0, x0 + lo * (cex - x0), threat)
