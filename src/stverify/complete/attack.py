"""Attacks projected exactly onto spatio-temporal threat sets: falsification only, never proofs.

PGD minimises the margin m(x) = logit_y(x) - max_{j != y} logit_j(x) (untargeted) and, in other
rows of the same batch, m_j(x) = logit_y(x) - logit_j(x) for every competitor j (targeted), by
signed-gradient steps x <- clip_B(x - a_s sign(grad m)) with a linearly decaying step
a_s = 5 (hi - lo) (1 - s / steps) / steps, from x0 and from random points of B.  A threat set is
a union of boxes; the attack runs on a few member boxes B, clipping every voxel to its interval
I_v (voxels outside the chosen regions stay at x0):
  * linf, frames, patch: the one box;
  * anyframes: all k-subsets of frames when C(T, k) <= 16, else all k-subsets of the m frames with
    the highest saliency (m the largest with C(m, k) <= 16);
  * anypatch: all placements when there are <= 64, else the 8 with the highest saliency.
The saliency of a region is the first-order decrease of the margin it allows, summed over its
voxels and channels: g_v (x0_v - lo_v) where g_v = dm/dx_v > 0, else -g_v (hi_v - x0_v), averaged
over x0 and random points of the bounding box (box sums over all placements by prefix sums).
An explicit union of boxes (``Boxes``) is attacked box by box, ordered by the first-order margin
decrease each box allows from x0 (``members_by_gain``).  Member boxes are attacked in order of saliency.  A point is returned only after
``replay.replay`` accepts it (inside the set, misclassified in float64 and float32).
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import torch

from ..stbp_hybrid.certify import torch_layers
from ..stbp_hybrid.support import box_sum, prefix_sums
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Boxes, Threat
from ..replay import replay

EXHAUSTIVE_FRAME_SETS = 16
EXHAUSTIVE_PLACEMENTS = 64
TOP_PLACEMENTS = 8
BATCH_ELEMENTS = 1 << 22  # PGD rows x input size per batch


def _margins(logits: torch.Tensor, y: int, targets: torch.Tensor) -> torch.Tensor:
    """Per row: logit_y - logit_target, or logit_y - max_{j != y} logit_j where target < 0."""
    others = logits.clone()
    others[:, y] = -math.inf
    rival = torch.where(targets < 0, others.max(1).values, logits.gather(1, targets.clamp(min=0)[:, None])[:, 0])
    return logits[:, y] - rival


def saliency(model, x0: np.ndarray, y: int, lo: np.ndarray, hi: np.ndarray, rng, n_random: int = 2) -> np.ndarray:
    """First-order margin decrease per (t, h, w) voxel (see the module docstring)."""
    pts = np.stack([x0] + [rng.uniform(lo, hi) for _ in range(n_random)])
    X = torch.tensor(pts, requires_grad=True)
    m = _margins(model(X), y, torch.full((len(pts),), -1))
    (g,) = torch.autograd.grad(m.sum(), X)
    g = g.numpy()
    return np.where(g > 0, g * (x0 - lo), -g * (hi - x0)).mean(0).sum(0)


def member_masks(threat: Threat, shape, gain: np.ndarray) -> list[np.ndarray]:
    """Masks over (T, H, W) of the member boxes to attack, highest saliency first."""
    grid = tuple(shape[1:])
    if isinstance(threat, AnyFrames):
        score, k, m = gain.sum((1, 2)), threat.k, threat.k
        while m < len(score) and math.comb(m + 1, k) <= EXHAUSTIVE_FRAME_SETS:
            m += 1
        picks = sorted(itertools.combinations(np.argsort(-score, kind="stable")[:m], k), key=lambda c: -score[list(c)].sum())
        return [np.broadcast_to(np.isin(np.arange(grid[0]), c)[:, None, None], grid) for c in picks]
    if isinstance(threat, AnyPatch):
        p = threat.placements(shape)
        t, yy, xx = (torch.as_tensor(c) for c in p.T)
        score = box_sum(prefix_sums(torch.as_tensor(gain)), t, t + threat.len, yy, yy + threat.h, xx, xx + threat.w).numpy()
        order = np.argsort(-score, kind="stable")[: len(p) if len(p) <= EXHAUSTIVE_PLACEMENTS else TOP_PLACEMENTS]
        regions = threat.regions(shape)
        return [regions[i].mask(grid) for i in order]
    return [threat.perturbable(shape)]


def members_by_gain(model, x0: np.ndarray, y: int, threat: Boxes) -> list[tuple[np.ndarray, np.ndarray]]:
    """The member boxes of an explicit union to attack, by the first-order margin decrease each allows
    from x0 (min over the box of <g, x - x0>, g the margin's gradient at x0), lowest first; all of
    them when there are at most EXHAUSTIVE_PLACEMENTS, else the TOP_PLACEMENTS best."""
    X = torch.tensor(x0[None], requires_grad=True)
    (g,) = torch.autograd.grad(_margins(model(X), y, torch.full((1,), -1)).sum(), X)
    g = g[0].numpy().ravel()
    lo, hi = (b.reshape(len(b), -1) for b in (threat.lo, threat.hi))
    gain = (lo + hi) / 2 @ g - x0.ravel() @ g - (hi - lo) / 2 @ np.abs(g)
    order = np.argsort(gain, kind="stable")[: len(gain) if len(gain) <= EXHAUSTIVE_PLACEMENTS else TOP_PLACEMENTS]
    return [(threat.lo[k], threat.hi[k]) for k in order]


def attack(net, x0: np.ndarray, y: int, threat: Threat, steps: int = 20, restarts: int = 4,
           rng: np.random.Generator | None = None, time_limit: float | None = 1.0,
           domain=DEFAULT_DOMAIN) -> np.ndarray | None:
    """A counterexample in S(x0) that ``replay`` accepts, or None (see the module docstring).

    ``restarts`` starts per member box and objective: x0 and restarts - 1 random points."""
    start = time.perf_counter()
    deadline = math.inf if time_limit is None else start + time_limit
    rng = rng or np.random.default_rng(0)
    x0 = np.ascontiguousarray(x0, dtype=np.float64)  # the batches below are views of x0's layout
    model = torch_layers(net)
    if isinstance(threat, Boxes):
        boxes = members_by_gain(model, x0, y, threat)
    else:
        lo, hi = threat.interval(x0, domain)
        masks = member_masks(threat, x0.shape, saliency(model, x0, y, *threat.bounding_box(x0, domain), rng))
        boxes = [(np.where(m[None], lo, x0), np.where(m[None], hi, x0)) for m in masks]
    targets = torch.tensor([-1] + [j for j in range(net.n_classes) if j != y])
    per_mask = restarts * len(targets)
    chunk = max(1, BATCH_ELEMENTS // (per_mask * x0.size))
    for a in range(0, len(boxes), chunk):
        part = boxes[a:a + chunk]
        L, U = (torch.as_tensor(np.stack([box[i] for box in part]))[:, None, None].expand(-1, restarts, len(targets), *x0.shape)
                .reshape(-1, *x0.shape) for i in (0, 1))  # rows: (member box, restart, objective)
        X = L + (U - L) * torch.as_tensor(rng.uniform(size=L.shape))
        X.view(len(part), restarts, len(targets), -1)[:, 0] = torch.as_tensor(x0.ravel())  # restart 0: from x0
        tgt = targets.repeat(len(part) * restarts)
        step = 5 * (U - L) / steps
        for s in range(steps + 1):
            X.requires_grad_(True)
            m = _margins(model(X), y, tgt)
            best = int(torch.argmin(m))
            if m[best] < 0:
                rep = replay(net, x0, y, threat, X[best].detach().numpy(), domain)
                if rep.ok:
                    return rep.point
            if s == steps or time.perf_counter() > deadline:
                break
            (g,) = torch.autograd.grad(m.sum(), X)
            with torch.no_grad():
                X = torch.minimum(torch.maximum(X - step * (1 - s / steps) * g.sign(), L), U)
        if time.perf_counter() > deadline:
            break
    return None
