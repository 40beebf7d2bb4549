"""Backward-pass rows in receptive-field form ("patches").

A CROWN row that starts at one neuron of a convolutional layer is nonzero, on every earlier
spatial layer, only inside that neuron's receptive field: a box of P = (Pt, Ph, Pw) voxels with
corner ``pos * stride + offset``, where ``pos`` is the neuron's position in the start layer and
``stride`` / ``offset`` compose the strides and paddings walked through so far.  Keeping each row
as its box (times channels) makes a backward pass cost what the neuron sees, not the whole input.

Walking back through a windowed linear layer (Conv3d, AvgPool3d: kernel k, stride s, padding p)
is a transposed convolution of the box: P <- (P - 1) s + k, stride <- stride * s,
offset <- offset * s - p; box entries that fall outside the layer's grid sit on zero padding and
are dropped.  A per-neuron tensor of a layer (slopes, bounds, the input centre, ...) is read at a
row's box through an ``unfold`` view of the zero-padded tensor (``gather``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

Triple = tuple[int, int, int]


def per_row(t: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """The per-set tensor t (N x ...) read for every dense row m: t[sets[m]] (a view when N = 1)."""
    return t[:1].expand((sets.shape[0],) + tuple(t.shape[1:])) if t.shape[0] == 1 else t[sets]


@dataclass(frozen=True)
class Patches:
    values: torch.Tensor  # R x C x Pt x Ph x Pw: row r's coefficients on its box
    pos: torch.Tensor  # R x 3 (long): the row's neuron position (t, h, w) in the start layer
    sets: torch.Tensor  # R (long): the sub-problem (threat set, phase constraints) of the row
    starts: Triple  # the start layer's grid, over which pos ranges
    stride: Triple  # box corner = pos * stride + offset, in the coordinates of ``grid``
    offset: Triple
    grid: Triple  # (T, H, W) of the layer the values live on
    groups: tuple | None = field(default=None, compare=False)  # (distinct (set, pos), each row's group), when known

    @property
    def size(self) -> Triple:
        return tuple(self.values.shape[2:])

    @property
    def rows(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, idx) -> "Patches":
        return replace(self, values=self.values[idx], pos=self.pos[idx], sets=self.sets[idx], groups=None)

    def with_values(self, values: torch.Tensor) -> "Patches":
        return replace(self, values=values)

    def _pads(self) -> list[int]:
        """F.pad amounts (negative: crop) that make the windows of every start position fit."""
        pads = []
        for a in (2, 1, 0):
            lo = -self.offset[a]
            hi = (self.starts[a] - 1) * self.stride[a] + self.offset[a] + self.size[a] - self.grid[a]
            pads += [lo, hi]
        return pads

    def _axis_coords(self, a: int) -> torch.Tensor:
        """R x P_a: the grid coordinate of every box entry along axis a."""
        steps = torch.arange(self.size[a], device=self.pos.device)
        return (self.pos[:, a] * self.stride[a] + self.offset[a])[:, None] + steps[None, :]

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """t (N x C' x grid: one slice per set, or one for all) read at every row's box: R x C' x P,
        zero off the grid.  Rows sharing a set and a position (the channels of one position, lower
        and upper rows) are read once and then copied."""
        uniq, inverse = self.grouped()
        w = F.pad(t, self._pads())
        for a in range(3):
            w = w.unfold(2 + a, self.size[a], self.stride[a])
        which = uniq[:, 0] if t.shape[0] > 1 else 0  # a single slice serves every set
        windows = w.permute(0, 2, 3, 4, 1, 5, 6, 7)[which, uniq[:, 1], uniq[:, 2], uniq[:, 3]]  # U x C' x P
        return windows.index_select(0, inverse)

    def grouped(self):
        """(distinct (set, t, h, w) of the rows, each row's group), computed once per set of rows."""
        if self.groups is None:
            key = torch.stack([self.sets, self.pos[:, 0], self.pos[:, 1], self.pos[:, 2]], 1)
            object.__setattr__(self, "groups", torch.unique(key, dim=0, return_inverse=True))
        return self.groups

    def in_grid(self) -> torch.Tensor:
        """R x 1 x P: 1 where a box entry lies on the grid, 0 on padding."""
        ok = [(x >= 0) & (x < n) for x, n in ((self._axis_coords(a), self.grid[a]) for a in range(3))]
        mask = ok[0][:, :, None, None] & ok[1][:, None, :, None] & ok[2][:, None, None, :]
        return mask[:, None].to(self.values.dtype)

    def through_window(self, weight: torch.Tensor, stride: Triple, padding: Triple, in_grid: Triple,
                       groups: int = 1) -> "Patches":
        """The rows on the input of a windowed linear layer (weight O x C/groups x k) from rows on its output."""
        v = F.conv_transpose3d(self.values, weight, stride=stride, groups=groups)
        moved = replace(self, values=v, stride=tuple(a * b for a, b in zip(self.stride, stride)),
                        offset=tuple(o * s - p for o, s, p in zip(self.offset, stride, padding)), grid=tuple(in_grid))
        return moved.with_values(v * moved.in_grid())

    def same_rows(self, other: "Patches") -> bool:
        """Whether ``other`` holds the same rows (start positions, sets) on the same grid with the
        same stride, so that the two can be added box to box."""
        return (self.starts == other.starts and self.stride == other.stride and self.grid == other.grid
                and self.values.shape[:2] == other.values.shape[:2] and (self.pos is other.pos or torch.equal(self.pos, other.pos))
                and (self.sets is other.sets or torch.equal(self.sets, other.sets)))

    def union_plus(self, other: "Patches") -> "Patches":
        """The sum of two sets of the same rows (``same_rows``), on the union of their boxes."""
        lo = tuple(min(a, b) for a, b in zip(self.offset, other.offset))
        hi = tuple(max(a + s, b + t) for a, s, b, t in zip(self.offset, self.size, other.offset, other.size))
        values = self.values.new_zeros(self.values.shape[:2] + tuple(h - l for l, h in zip(lo, hi)))
        for p in (self, other):
            at = tuple(slice(o - l, o - l + s) for o, l, s in zip(p.offset, lo, p.size))
            values[(slice(None), slice(None)) + at] += p.values
        return replace(self, values=values, offset=lo)

    def to_dense(self) -> torch.Tensor:
        """R x C x grid: every row scattered into the full tensor (entries off the grid dropped)."""
        r, c = self.values.shape[:2]
        coords = [self._axis_coords(a) for a in range(3)]
        ok = [(x >= 0) & (x < n) for x, n in zip(coords, self.grid)]
        keep = (ok[0][:, :, None, None] & ok[1][:, None, :, None] & ok[2][:, None, None, :]).reshape(r, -1)
        t, h, w = (x.clamp(0, n - 1) for x, n in zip(coords, self.grid))
        flat = ((t[:, :, None, None] * self.grid[1] + h[:, None, :, None]) * self.grid[2] + w[:, None, None, :]).reshape(r, -1)
        vals = self.values.reshape(r, c, -1) * keep[:, None]
        out = torch.zeros((r, c, math.prod(self.grid)), dtype=self.values.dtype, device=self.values.device)
        out.scatter_add_(2, flat[:, None].expand(r, c, -1), vals)
        return out.reshape((r, c) + self.grid)


def accumulate(a, b):
    """a + b for two sets of the same rows on one tensor (dense or ``Patches``; None: nothing yet),
    kept in box form when both are boxes of the same geometry up to their offsets and sizes (the
    sum then lives on the union of the boxes), dense otherwise."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, Patches) and isinstance(b, Patches) and a.same_rows(b):
        return a.union_plus(b)
    dense = lambda p: p.to_dense() if isinstance(p, Patches) else p  # noqa: E731
    return dense(a) + dense(b)
