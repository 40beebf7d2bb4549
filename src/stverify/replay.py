"""Replay of counterexamples: nothing is reported `falsified` unless this check passes.

A candidate x1 for instance (x0, y, S) is accepted when
  1. after snapping (clip to the per-voxel intervals, voxels moved by <= MEMBERSHIP_TOL reset to x0;
     for an explicit union of boxes, clip into the nearest member box)
     it lies in S(x0) (checked with ``Threat.contains`` at tolerance 1e-12), and
  2. it violates the property by more than REPLAY_MARGIN both in the float64 reference
     (``Network.forward``, numpy) and in the float32 torch model: for a label y (an int), some
     class j != y beats y; for any other property (``properties.OutputSpec``), its margin
     (computed in float64 from each model's outputs) is below -REPLAY_MARGIN.
The snapped point is what gets reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import tolerances
from .network.to_torch import torch_model
from .threats import DEFAULT_DOMAIN, Boxes, Threat


@dataclass
class Replay:
    ok: bool
    point: np.ndarray
    reason: str = ""
    margin64: float = float("nan")  # min_j (logit_y - logit_j) in float64 (< 0: misclassified)
    margin32: float = float("nan")


def logits32(net, x: np.ndarray) -> np.ndarray:
    """The logits of the float32 torch model at x (C x T x H x W), as float64."""
    with torch.no_grad():
        return torch_model(net, torch.float32)(torch.as_tensor(x[None], dtype=torch.float32))[0].numpy().astype(np.float64)


def property_margin(outputs: np.ndarray, y) -> float:
    """The margin of property ``y`` (a label, or an ``OutputSpec``) at the outputs: < 0 violates it."""
    if isinstance(y, (int, np.integer)):
        return float(outputs[y] - np.max(np.delete(outputs, y)))
    return y.margin(outputs)


def snap(x0: np.ndarray, x1: np.ndarray, threat: Threat, domain=DEFAULT_DOMAIN) -> np.ndarray:
    if isinstance(threat, Boxes):  # an explicit union of boxes: into the nearest member
        return threat.project(x1)
    lo, hi = threat.interval(x0, domain)
    x = np.clip(np.asarray(x1, dtype=np.float64), lo, hi)
    return np.where(np.abs(x - x0) <= tolerances.MEMBERSHIP_TOL, x0, x)


def margin_at(net, x0: np.ndarray, y, threat: Threat, x1: np.ndarray, domain=DEFAULT_DOMAIN) -> float | None:
    """The float64 margin of property y (for a label: min_j logit_y - logit_j) at the snapped x1, an
    upper bound of the minimum margin over S(x0); None if the snapped point is not in S(x0)."""
    x0 = np.asarray(x0, dtype=np.float64)
    if np.shape(x1) != x0.shape:
        return None
    p = snap(x0, x1, threat, domain)
    return property_margin(net.forward(p), y) if threat.contains(x0, p, tol=1e-12, domain=domain) else None


def replay(net, x0: np.ndarray, y, threat: Threat, x1: np.ndarray, domain=DEFAULT_DOMAIN) -> Replay:
    """Check a candidate counterexample (see the module docstring)."""
    x0 = np.asarray(x0, dtype=np.float64)
    if np.shape(x1) != x0.shape:
        return Replay(False, np.asarray(x1), f"shape {np.shape(x1)} differs from the input's {x0.shape}")
    p = snap(x0, x1, threat, domain)
    if not threat.contains(x0, p, tol=1e-12, domain=domain):
        return Replay(False, p, "the point is not in the threat set")
    m64 = property_margin(net.forward(p), y)
    m32 = property_margin(logits32(net, p), y)
    ok = m64 < -tolerances.REPLAY_MARGIN and m32 < -tolerances.REPLAY_MARGIN
    what = "misclassified" if isinstance(y, (int, np.integer)) else "a violation of the property"
    reason = "" if ok else f"not {what} on replay (float64 margin {m64:.3g}, float32 margin {m32:.3g})"
    return Replay(ok, p, reason, m64, m32)
