"""Exact minimum of linear functions over a threat set (its support function), in torch.

For rows a_m of A (each shaped C x T x H x W) we compute  min over x in S of <a_m, x>.
Writing x = x0 + d, every voxel v of a chosen region may take d_cv in [dlo_cv, dhi_cv]
(dlo = I_lo - x0 <= 0 <= dhi = I_hi - x0), independently per channel, so the best a voxel
can do is its *gain*

    g_v = sum_c min(a_cv dlo_cv, a_cv dhi_cv) = sum_c (a_cv^+ dlo_cv + a_cv^- dhi_cv)  <= 0,

and the minimum over S is  <a, x0> + min over choices of the sum of g over the chosen voxels:
  * one region (linf, frames, patch): the sum of g over the region;
  * anyframes (frames are disjoint): the sum of the k smallest per-frame sums;
  * anypatch: the smallest window sum of g over all placements (cumulative sums per axis).
Every case is exact, not a relaxation.  A set that is one box (linf, frames, patch) is
concretised at box cost, <a, c> - <|a|, r> with centre c and radius r (``BoxSupport``, also the
baseline that sees only a threat's bounding box).

Rows may be dense (M x C x T x H x W) or receptive-field boxes (``Patches``): a row that is zero
outside a box has its gains outside the box 0, so only the box is summed; for anyframes the
frames outside the box contribute 0 (the k smallest per-frame sums of the box, every sum <= 0,
are exact), and for anypatch a placement contributes its intersection with the box.

A support describes ``n`` sets over the same input (branch-and-bound sub-problems): ``box_lo`` /
``box_hi`` are N x shape, and row m is concretised over set ``sets[m]``.

``BoxesSupport`` is the support function of an explicit union of boxes (``threats.Boxes``, e.g. from
VNN-LIB): the smallest of the member boxes' minima, exact.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import torch

from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Boxes, Threat
from .patches import Patches, per_row

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


def window_sums(g: torch.Tensor, size) -> torch.Tensor:
    """Sums of g (... x T x H x W) over every window of ``size`` = (lt, lh, lw), by start:
    ... x (T - lt + 1) x (H - lh + 1) x (W - lw + 1); differences of cumulative sums, one axis at a time."""
    for axis, k in zip((-3, -2, -1), size):
        n = g.shape[axis]
        c = torch.cat([torch.zeros_like(g.narrow(axis, 0, 1)), g.cumsum(axis)], axis)
        g = c.narrow(axis, k, n - k + 1) - c.narrow(axis, 0, n - k + 1)
    return g


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise <a_m, b_m> over all but the first axis."""
    return torch.einsum("ri,ri->r", a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def _per_row(A, t: torch.Tensor, sets: torch.Tensor | None) -> torch.Tensor:
    """The per-set tensor t (N x shape) read for every row of A (dense, or at its box)."""
    if isinstance(A, Patches):
        return A.gather(t)
    return per_row(t, torch.zeros(A.shape[0], dtype=torch.long, device=A.device) if sets is None else sets)


class BoxSupport:
    """min <a, x> over the box [lo, hi]: <a, c> - <|a|, r>.  ``BoxSupport.stack`` makes N boxes."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor):
        self.lo, self.hi = lo[None], hi[None]  # N x shape
        self.shape, self.dtype, self.device = tuple(lo.shape), lo.dtype, lo.device
        self._finish()

    @classmethod
    def stack(cls, boxes: list["BoxSupport"]) -> "BoxSupport":
        out = cls.__new__(cls)
        out.lo, out.hi = torch.cat([b.lo for b in boxes]), torch.cat([b.hi for b in boxes])
        out.shape, out.dtype, out.device = boxes[0].shape, boxes[0].dtype, boxes[0].device
        out._finish()
        return out

    def _finish(self):
        self.n = self.lo.shape[0]
        self.box_lo, self.box_hi = self.lo, self.hi
        self.center, self.radius = (self.hi + self.lo) / 2, (self.hi - self.lo) / 2

    def min(self, A, sets: torch.Tensor | None = None) -> torch.Tensor:
        v = A.values if isinstance(A, Patches) else A
        return _dot(v, _per_row(A, self.center, sets)) - _dot(v.abs(), _per_row(A, self.radius, sets))

    def argmin(self, a: torch.Tensor, k: int = 0) -> torch.Tensor:
        """A corner of box k attaining min <a, x>."""
        return torch.where(a > 0, self.lo[k], torch.where(a < 0, self.hi[k], self.center[k]))


class ThreatSupport:
    """min <a, x> over the threat set S(x0) itself (see the module docstring).  ``stack`` joins
    anypatch threats that differ only in their area (branch-and-bound's sub-threats) into one
    support of n sets: the same voxel gains, each set with its own placements."""

    n = 1

    def __init__(self, x0: np.ndarray, threat: Threat, domain=DEFAULT_DOMAIN, dtype=torch.float64, device=None):
        lo, hi = threat.interval(x0, domain)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        self.threat, self.threats, self.shape, self.dtype, self.device = threat, [threat], tuple(np.shape(x0)), dtype, device
        self.x0 = as_t(x0)
        self.box_lo, self.box_hi = (as_t(b)[None] for b in threat.bounding_box(x0, domain))
        self.dlo, self.dhi = as_t(lo - x0), as_t(hi - x0)
        if isinstance(threat, AnyPatch):
            self.size = (threat.len, threat.h, threat.w)
            starts = torch.as_tensor(threat.placements(self.shape), device=device)
            grid = tuple(n - k + 1 for n, k in zip(self.shape[1:], self.size))
            self.choice = torch.zeros((1,) + grid, dtype=torch.bool, device=device)  # set x window start
            self.choice[0, starts[:, 0], starts[:, 1], starts[:, 2]] = True
        elif not isinstance(threat, AnyFrames):
            self.mask = as_t(threat.perturbable(self.shape)[None].astype(np.float64))
            self.dlo, self.dhi = self.dlo * self.mask, self.dhi * self.mask

    @staticmethod
    def stack_key(sup):
        """Supports with equal keys (not None) can be stacked: anypatch threats equal up to the area."""
        t = getattr(sup, "threat", None)
        return ("anypatch", replace(t, area=None)) if isinstance(sup, ThreatSupport) and isinstance(t, AnyPatch) else None

    @classmethod
    def stack(cls, members: list["ThreatSupport"]) -> "ThreatSupport":
        """One support over the sets of ``members`` (anypatch, equal ``stack_key``, the same x0)."""
        out = cls.__new__(cls)
        out.__dict__.update(members[0].__dict__)
        out.threats, out.n = [m.threat for m in members], len(members)
        out.box_lo, out.box_hi = torch.cat([m.box_lo for m in members]), torch.cat([m.box_hi for m in members])
        out.choice = torch.cat([m.choice for m in members])
        return out

    @property
    def is_union(self) -> bool:
        """Whether the set is a union of several boxes (else it is one box)."""
        return isinstance(self.threat, (AnyFrames, AnyPatch))

    def gains(self, A, dlo=None, dhi=None) -> torch.Tensor:
        """g (M x T x H x W, or M x box): the most each voxel can lower <a_m, x> when perturbed
        (``dlo`` / ``dhi``: the ranges already read for the rows, else read here)."""
        v = A.values if isinstance(A, Patches) else A
        if dlo is None:
            dlo, dhi = (_per_row(A, d[None], None) for d in (self.dlo, self.dhi))
        return (v.clamp(min=0) * dlo + v.clamp(max=0) * dhi).sum(1)

    def best_choice(self, g: torch.Tensor, sets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(min over choices of the summed gain, the chosen frames / placement index) per dense row
        (row m in set ``sets[m]``)."""
        if isinstance(self.threat, AnyFrames):
            per_frame = g.sum((2, 3))
            vals, idx = torch.topk(per_frame, self.threat.k, dim=1, largest=False)
            return vals.sum(1), idx
        if isinstance(self.threat, AnyPatch):  # every window's sum, the allowed starts of the row's set
            sums = window_sums(g, self.size)
            allowed = self.choice[sets] if self.n > 1 else self.choice
            vals, idx = torch.where(allowed, sums, torch.full_like(sums, torch.inf)).flatten(1).min(1)
            return vals, idx
        return g.sum((1, 2, 3)), torch.zeros(g.shape[0], dtype=torch.long, device=g.device)

    def best_in_boxes(self, g: torch.Tensor, P: Patches) -> torch.Tensor:
        """min over choices of the summed gain, per row of P (g: R x box)."""
        if isinstance(self.threat, AnyFrames):
            per_frame = g.sum((2, 3))
            k = min(self.threat.k, per_frame.shape[1])
            return torch.topk(per_frame, k, dim=1, largest=False).values.sum(1)
        if isinstance(self.threat, AnyPatch):
            return _best_placement_in_boxes(g, P, self.threats, self.shape)
        return g.sum((1, 2, 3))

    def min(self, A, sets: torch.Tensor | None = None) -> torch.Tensor:
        """Exact min over S(x0) of <A_m, x> for every row m (A is M x C x T x H x W, or Patches)."""
        if isinstance(A, Patches):
            x0, dlo, dhi = A.gather(torch.cat([self.x0, self.dlo, self.dhi])[None]).split(self.shape[0], 1)
            return _dot(A.values, x0) + self.best_in_boxes(self.gains(A, dlo, dhi), A)
        return _dot(A, self.x0[None].expand_as(A)) + self.best_choice(self.gains(A), sets)[0]

    def argmin(self, a: torch.Tensor, k: int = 0) -> torch.Tensor:
        """A point of set k attaining min <a, x> (a is C x T x H x W)."""
        _, choice = self.best_choice(self.gains(a[None]), torch.tensor([k], device=a.device))
        region = torch.zeros(self.shape[1:], dtype=torch.bool, device=a.device)
        if isinstance(self.threat, AnyFrames):
            region[choice[0]] = True
        elif isinstance(self.threat, AnyPatch):
            t0, y0, x0 = np.unravel_index(int(choice[0]), self.choice.shape[1:])
            region[t0:t0 + self.size[0], y0:y0 + self.size[1], x0:x0 + self.size[2]] = True
        else:
            region[:] = True
        d = torch.where(a > 0, self.dlo, torch.where(a < 0, self.dhi, torch.zeros_like(a)))
        return self.x0 + d * region


class BoxesSupport:
    """min <a, x> over an explicit union of K boxes (``threats.Boxes``): the smallest of the member
    boxes' minima <a, c_k> - <|a|, r_k> (centres c_k, radii r_k), exact.  One set (n = 1)."""

    n = 1

    def __init__(self, threat: Boxes, dtype=torch.float64, device=None):
        as_t = lambda a: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731  (a copy: the threat's arrays are read-only)
        self.threat, self.shape, self.dtype, self.device = threat, tuple(threat.lo.shape[1:]), dtype, device
        self.lo, self.hi = as_t(threat.lo), as_t(threat.hi)  # K x C x T x H x W
        self.box_lo, self.box_hi = self.lo.min(0).values[None], self.hi.max(0).values[None]
        self.center, self.radius = (self.hi + self.lo) / 2, (self.hi - self.lo) / 2

    def member_min(self, A) -> torch.Tensor:
        """min over member box k of <A_m, x>, an M x K matrix."""
        a = (A.to_dense() if isinstance(A, Patches) else A).flatten(1)
        return a @ self.center.flatten(1).T - a.abs() @ self.radius.flatten(1).T

    def min(self, A, sets: torch.Tensor | None = None) -> torch.Tensor:
        return self.member_min(A).min(1).values

    def argmin(self, a: torch.Tensor, k: int = 0) -> torch.Tensor:
        m = int(torch.argmin(self.member_min(a[None])[0]))
        return torch.where(a > 0, self.lo[m], torch.where(a < 0, self.hi[m], self.center[m]))


def _best_placement_in_boxes(g: torch.Tensor, P: Patches, threats: list[AnyPatch], shape) -> torch.Tensor:
    """min over anypatch placements of the sum of g over (placement intersected with the row's box).

    Along each axis the intersection, in box coordinates, depends only on the placement's start
    relative to the box corner; relative starts with the same intersection give the same sum, so
    they are grouped (a group is allowed for a row if any member is an allowed absolute start:
    inside the set's area, on the stride).  Sums over every group triple are three small contractions."""
    sums, ok = g, None
    geometry = (P.size, P.starts, P.stride, P.offset)
    tables = [_placement_groups(t, tuple(shape), geometry, g.dtype, str(g.device)) for t in threats]
    for axis in range(3):
        indicator = tables[0][axis][0]  # the same for every area
        sums = torch.tensordot(sums, indicator, dims=([1 + axis], [1])).movedim(-1, 1 + axis)
        per_pos = torch.stack([t[axis][1] for t in tables])  # sets x positions x groups
        row_ok = per_pos[P.sets if len(tables) > 1 else 0, P.pos[:, axis]]  # R x groups
        shaped = row_ok.reshape((row_ok.shape[0],) + (1,) * axis + (row_ok.shape[1],) + (1,) * (2 - axis))
        ok = shaped if ok is None else ok & shaped
    return torch.where(ok, sums, torch.zeros_like(sums)).flatten(1).min(1).values.clamp(max=0)


@functools.lru_cache(maxsize=256)
def _placement_groups(threat: AnyPatch, shape, geometry, dtype, device):
    """Per axis: the indicator (groups x box size) of each group's intersection with the box, and
    which groups hold an allowed start for each start position (positions x groups)."""
    size, starts, stride, offset = geometry
    first_last = threat.bounds(shape)
    steps = (1, threat.stride, threat.stride)
    out = []
    for axis, s in enumerate((threat.len, threat.h, threat.w)):
        k, n = size[axis], starts[axis]
        rel = torch.arange(-(s - 1), k, device=device)
        span = torch.stack([rel.clamp(min=0), (rel + s).clamp(max=k)], 1)
        uniq, group = torch.unique(span, dim=0, return_inverse=True)
        d = torch.arange(k, device=device)
        indicator = ((d[None] >= uniq[:, :1]) & (d[None] < uniq[:, 1:])).to(dtype)
        start = (torch.arange(n, device=device) * stride[axis] + offset[axis])[:, None] + rel[None, :]
        allowed = (start >= int(first_last[axis, 0])) & (start <= int(first_last[axis, 1])) & (start % steps[axis] == 0)
        per_pos = torch.zeros((n, len(uniq)), dtype=dtype, device=device).index_add_(1, group, allowed.to(dtype)) > 0
        out.append((indicator, per_pos))
    return out


def _groups(members: list) -> list[tuple[object, list[int]]]:
    """(support, member indices): boxes stacked together, anypatch areas stacked per threat, the rest alone."""
    keys: dict = {}
    for k, m in enumerate(members):
        key = "box" if isinstance(m, BoxSupport) else ThreatSupport.stack_key(m) or ("alone", k)
        keys.setdefault(key, []).append(k)
    out = []
    for key, ids in keys.items():
        parts = [members[k] for k in ids]
        out.append((BoxSupport.stack(parts) if key == "box" else ThreatSupport.stack(parts) if len(ids) > 1 else parts[0], ids))
    return out


class SupportBatch:
    """N sets of different kinds (branch-and-bound sub-threats): the boxes among them are
    concretised together, anypatch areas together (``_groups``), every other set on its own."""

    def __init__(self, parts: list[tuple[object, list[int]]]):
        self.parts, self.n = parts, sum(len(ids) for _, ids in parts)
        first = parts[0][0]
        self.shape, self.dtype, self.device = first.shape, first.dtype, first.device
        order = torch.tensor([k for _, ids in parts for k in ids]).argsort()
        self.box_lo = torch.cat([sup.box_lo for sup, _ in parts])[order.to(first.box_lo.device)]
        self.box_hi = torch.cat([sup.box_hi for sup, _ in parts])[order.to(first.box_lo.device)]

    def min(self, A, sets: torch.Tensor | None = None) -> torch.Tensor:
        sets = A.sets if isinstance(A, Patches) else sets
        out = torch.empty(sets.shape[0], dtype=self.dtype, device=self.device)
        local = torch.empty(self.n, dtype=torch.long, device=sets.device)
        for sup, ids in self.parts:
            ids_t = torch.as_tensor(ids, device=sets.device)
            local[ids_t] = torch.arange(len(ids), device=sets.device)
            rows = torch.isin(sets, ids_t).nonzero()[:, 0]
            if len(rows) == 0:
                continue
            part_sets = local[sets[rows]]
            part = replace(A[rows], sets=part_sets, groups=None) if isinstance(A, Patches) else A[rows]
            out[rows] = sup.min(part, part_sets)
        return out

    def argmin(self, a: torch.Tensor, k: int = 0) -> torch.Tensor:
        for sup, ids in self.parts:
            if k in ids:
                return sup.argmin(a, ids.index(k))
        raise IndexError(f"no set {k}")


def stack_supports(members: list):
    """One support over the sets of ``members`` (each describing one set)."""
    if len(members) == 1:
        return members[0]
    parts = _groups(members)
    return parts[0][0] if len(parts) == 1 else SupportBatch(parts)
