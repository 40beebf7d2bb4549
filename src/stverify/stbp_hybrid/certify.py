"""certify(): margin lower bounds and per-layer neuron bounds over a threat set (STBP).

For an input x0, label y and threat set S(x0), STBP returns for every class j a number
m_j <= min over x in S(x0) of (logit_y(x) - logit_j(x)); the instance is robust when every
m_j (j != y) is > 0.  ``concretize="threat"`` is STBP (exact first layer, exact final
concretisation over S); ``concretize="box"`` is the baseline that sees only the bounding box.
"""
from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import tolerances
from ..threats import DEFAULT_DOMAIN, Boxes, Threat
from .propagate import layer_bounds, margin_bounds, spec_matrix
from .support import BoxesSupport, BoxSupport, ThreatSupport

RELAXATIONS = ("ibp", "crown", "alpha-crown")
CONCRETIZATIONS = ("threat", "box")
EMPTY_TOL = 1e-9  # a sub-problem is empty only if some lower bound exceeds its upper bound by more than this
_torch_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass
class Certificate:
    margin_lb: np.ndarray  # per class j: lower bound of logit_y - logit_j over the set (+inf at j = y)
    bounds: list[tuple[np.ndarray, np.ndarray]]  # bounds[i]: box containing the input of layer i
    unstable: dict[int, int]  # ReLU layer index -> number of neurons with l < 0 < u
    time_s: float
    relaxation: str
    concretize: str
    stats: dict = field(default_factory=dict)

    @property
    def min_margin(self) -> float:
        return float(np.min(self.margin_lb))

    @property
    def verified(self) -> bool:
        return self.min_margin > 0


def torch_layers(net, dtype=torch.float64, device=None) -> list[nn.Module]:
    """The network's layers as torch modules (cached per network, dtype and device)."""
    per_net = _torch_cache.setdefault(net, {})
    key = (dtype, str(device))
    if key not in per_net:
        per_net[key] = list(net.to_torch(dtype).to(device))
    return per_net[key]


def make_support(x0: np.ndarray, threat: Threat, concretize: str, domain=DEFAULT_DOMAIN, device=None):
    if concretize not in CONCRETIZATIONS:
        raise ValueError(f"concretize must be one of {CONCRETIZATIONS}, got {concretize!r}")
    if concretize == "box":
        lo, hi = (torch.as_tensor(b, device=device) for b in threat.bounding_box(x0, domain))
        return BoxSupport(lo, hi)
    if isinstance(threat, Boxes):
        threat.interval(x0)  # checks that x0 agrees with the set's constants
        return BoxesSupport(threat, device=device)
    return ThreatSupport(x0, threat, domain, device=device)


def certify(net, x: np.ndarray, y: int, threat: Threat, method: str = "crown", concretize: str = "threat",
            domain=DEFAULT_DOMAIN, device=None, alpha_steps: int = 30, splits: dict | None = None,
            deadline: float = math.inf) -> Certificate:
    """Sound bounds over S(x): per-layer boxes and margin lower bounds (see the module docstring).

    ``splits`` restricts to a branch-and-bound sub-problem (ReLU phases, see ``layer_bounds``); if
    the sub-problem is empty the margins are +inf and ``stats["empty"]`` is True.  After
    ``deadline`` (a ``time.perf_counter()`` instant) the relaxation falls back to IBP, still sound;
    ``stats["deadline_passed"]`` says whether that happened."""
    if method not in RELAXATIONS:
        raise ValueError(f"method must be one of {', '.join(RELAXATIONS)}, got {method!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.shape != net.input_shape:
        raise ValueError(f"x must have the network's input shape {net.input_shape}, got {x.shape}")
    if not 0 <= int(y) < net.n_classes:
        raise ValueError(f"label {y} out of range for {net.n_classes} classes")
    start = time.perf_counter()
    layers = torch_layers(net, device=device)
    sup = make_support(x, threat, concretize, domain, device)
    with torch.no_grad():
        bounds = layer_bounds(layers, sup, method, splits, deadline)
    empty = any(bool((lo > hi + EMPTY_TOL).any()) for lo, hi in bounds)
    margin = np.full(net.n_classes, np.inf)
    if not empty:
        S = spec_matrix(net.n_classes, int(y), device=device)
        lb = margin_bounds(layers, bounds, sup, S, method, alpha_steps=alpha_steps, deadline=deadline).detach().cpu().numpy()
        margin[[j for j in range(net.n_classes) if j != y]] = tolerances.lower(lb)
    out_bounds = [tolerances.widen(lo.cpu().numpy(), hi.cpu().numpy()) for lo, hi in bounds]
    unstable = {i: int(np.sum((out_bounds[i][0] < 0) & (out_bounds[i][1] > 0)))
                for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)}
    return Certificate(margin, out_bounds, unstable, time.perf_counter() - start, method, concretize,
                       {"empty": empty, "deadline_passed": time.perf_counter() >= deadline})
