"""Exact minimum of linear functions over a threat set (its support function), in torch.

For rows a_m of A (each shaped C x T x H x W) we compute  min over x in S of <a_m, x>.
Writing x = x0 + d, every voxel v of a chosen region may take d_cv in [dlo_cv, dhi_cv]
(dlo = I_lo - x0 <= 0 <= dhi = I_hi - x0), independently per channel, so the best a voxel
can do is its *gain*

    g_v = sum_c min(a_cv dlo_cv, a_cv dhi_cv) = sum_c (a_cv^+ dlo_cv + a_cv^- dhi_cv)  <= 0,

and the minimum over S is  <a, x0> + min over choices of the sum of g over the chosen voxels:
  * one region (linf, frames, patch): the sum of g over the region;
  * anyframes (frames are disjoint): the sum of the k smallest per-frame sums;
  * anypatch: the smallest box sum of g over all placements (3D prefix sums).
Every case is exact, not a relaxation.  ``BoxSupport`` is the same for a plain box, used by the
baselines that see only the threat's bounding box; ``BoxesSupport`` for an explicit union of boxes
(``threats.Boxes``, e.g. from VNN-LIB): the smallest of the member boxes' minima.
"""
from __future__ import annotations

import numpy as np
import torch

from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Boxes, Threat


_CORNERS = [(dt, dy, dx, (-1) ** (3 - dt - dy - dx)) for dt in (0, 1) for dy in (0, 1) for dx in (0, 1)]


def box_sum(prefix: torch.Tensor, t0, t1, y0, y1, x0, x1) -> torch.Tensor:
    """Sum over [t0, t1) x [y0, y1) x [x0, x1) from zero-led 3D prefix sums (... x T+1 x H+1 x W+1).

    The bounds are index tensors of one shape P (the result is ... x P): inclusion-exclusion over
    the eight corners, gathered in one indexing operation on the flattened prefix sums.
    """
    _, hp, wp = prefix.shape[-3:]
    ts, ys, xs = (t0, t1), (y0, y1), (x0, x1)
    flat = torch.stack([(ts[dt] * hp + ys[dy]) * wp + xs[dx] for dt, dy, dx, _ in _CORNERS])  # 8 x P
    signs = torch.tensor([c[3] for c in _CORNERS], dtype=prefix.dtype, device=prefix.device)
    corners = prefix.flatten(-3)[..., flat.reshape(-1)].unflatten(-1, flat.shape)  # ... x 8 x P
    return torch.einsum("...cp,c->...p", corners, signs)


def prefix_sums(g: torch.Tensor) -> torch.Tensor:
    """Zero-led cumulative sums over the last three axes."""
    p = g.cumsum(-1).cumsum(-2).cumsum(-3)
    return torch.nn.functional.pad(p, (1, 0, 1, 0, 1, 0))


class BoxSupport:
    """min <a, x> over the box [lo, hi]: <a, c> - <|a|, r>."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor):
        self.lo, self.hi = lo, hi
        self.box_lo, self.box_hi = lo, hi
        self.shape, self.dtype, self.device = tuple(lo.shape), lo.dtype, lo.device
        self.center, self.radius = (hi + lo) / 2, (hi - lo) / 2

    def min(self, A: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, A.dim()))
        return (A * self.center).sum(dims) - (A.abs() * self.radius).sum(dims)

    def argmin(self, a: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, self.lo, torch.where(a < 0, self.hi, self.center))


class ThreatSupport:
    """min <a, x> over the threat set S(x0) itself (see the module docstring)."""

    def __init__(self, x0: np.ndarray, threat: Threat, domain=DEFAULT_DOMAIN, dtype=torch.float64, device=None):
        lo, hi = threat.interval(x0, domain)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        self.threat, self.shape, self.dtype, self.device = threat, tuple(np.shape(x0)), dtype, device
        self.x0 = as_t(x0)
        self.box_lo, self.box_hi = (as_t(b) for b in threat.bounding_box(x0, domain))
        self.dlo, self.dhi = as_t(lo - x0), as_t(hi - x0)
        if isinstance(threat, AnyPatch):
            self.starts = torch.as_tensor(threat.placements(self.shape), device=device)
            self.size = (threat.len, threat.h, threat.w)
        elif not isinstance(threat, AnyFrames):
            self.mask = as_t(threat.perturbable(self.shape)[None].astype(np.float64))
            self.dlo, self.dhi = self.dlo * self.mask, self.dhi * self.mask

    def gains(self, A: torch.Tensor) -> torch.Tensor:
        """g (M x T x H x W): the most each voxel can lower <a_m, x> when perturbed."""
        return (A.clamp(min=0) * self.dlo + A.clamp(max=0) * self.dhi).sum(1)

    def best_choice(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(min over choices of the summed gain, the chosen frames / placement index) per row."""
        if isinstance(self.threat, AnyFrames):
            per_frame = g.sum((2, 3))
            vals, idx = torch.topk(per_frame, self.threat.k, dim=1, largest=False)
            return vals.sum(1), idx
        if isinstance(self.threat, AnyPatch):
            t0, y0, x0 = self.starts.unbind(1)
            lt, lh, lw = self.size
            sums = box_sum(prefix_sums(g), t0, t0 + lt, y0, y0 + lh, x0, x0 + lw)
            vals, idx = sums.min(1)
            return vals, idx
        return g.sum((1, 2, 3)), torch.zeros(g.shape[0], dtype=torch.long, device=g.device)

    def min(self, A: torch.Tensor) -> torch.Tensor:
        """Exact min over S(x0) of <A_m, x> for every row m (A is M x C x T x H x W)."""
        base = (A * self.x0).sum((1, 2, 3, 4))
        return base + self.best_choice(self.gains(A))[0]

    def argmin(self, a: torch.Tensor) -> torch.Tensor:
        """A point of S(x0) attaining min <a, x> (a is C x T x H x W)."""
        _, choice = self.best_choice(self.gains(a[None]))
        region = torch.zeros(self.shape[1:], dtype=torch.bool, device=a.device)
        if isinstance(self.threat, AnyFrames):
            region[choice[0]] = True
        elif isinstance(self.threat, AnyPatch):
            t0, y0, x0 = (int(v) for v in self.starts[int(choice[0])])
            region[t0:t0 + self.size[0], y0:y0 + self.size[1], x0:x0 + self.size[2]] = True
        else:
            region[:] = True
        d = torch.where(a > 0, self.dlo, torch.where(a < 0, self.dhi, torch.zeros_like(a)))
        return self.x0 + d * region


class BoxesSupport:
    """min <a, x> over an explicit union of boxes (``threats.Boxes``): the smallest of the member
    boxes' minima <a, c_k> - <|a|, r_k> (centres c_k, radii r_k), exact."""

    def __init__(self, threat: Boxes, dtype=torch.float64, device=None):
        as_t = lambda a: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731  (a copy: the threat's arrays are read-only)
        self.threat, self.shape, self.dtype, self.device = threat, tuple(threat.lo.shape[1:]), dtype, device
        self.lo, self.hi = as_t(threat.lo), as_t(threat.hi)  # K x C x T x H x W
        self.box_lo, self.box_hi = self.lo.min(0).values, self.hi.max(0).values
        self.center, self.radius = (self.hi + self.lo) / 2, (self.hi - self.lo) / 2

    def member_min(self, A: torch.Tensor) -> torch.Tensor:
        """min over member box k of <A_m, x>, an M x K matrix."""
        a = A.flatten(1)
        return a @ self.center.flatten(1).T - a.abs() @ self.radius.flatten(1).T

    def min(self, A: torch.Tensor) -> torch.Tensor:
        return self.member_min(A).min(1).values

    def argmin(self, a: torch.Tensor) -> torch.Tensor:
        k = int(torch.argmin(self.member_min(a[None])[0]))
        return torch.where(a > 0, self.lo[k], torch.where(a < 0, self.hi[k], self.center[k]))
