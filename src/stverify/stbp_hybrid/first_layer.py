"""Exact bounds of the first affine layer over a threat set, in closed form.

A neuron z = <w, x> + b of the first affine layer is one linear function of the input, so its
exact minimum over the set is b + min over the set of <w, x>, the support function of
``support.py`` (and its maximum b - min of <-w, x>):
  * a box (linf, frames, patch, or a threat's bounding box): interval arithmetic, which is exact;
  * anyframes / anypatch and a first Conv3d: with the per-voxel gains of ``support.py``
    restricted to a neuron's receptive field (kernel-sized boxes at position * stride - padding,
    ``Patches``), the top-k over frames or the minimum over placements intersected with the box
    (``ThreatSupport.best_in_boxes``); voxels outside the field contribute 0;
  * an explicit union of boxes (``threats.Boxes``): interval arithmetic on each member box, which is
    exact per neuron, then the min / max over the members;
  * a first Linear (after Flatten): the dense support function directly.
``attaining_point`` returns, for one neuron, a member of the threat set at which the bound is
attained.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .budget import default_budget, rows_per_chunk
from .intervals import interval
from .patches import Patches
from .support import BoxesSupport, BoxSupport, SupportBatch, ThreatSupport


def first_layer_bounds(layer: nn.Module, sup, budget: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (lower, upper) bounds of every output of ``layer`` (Conv3d on the input, or Linear
    on the flattened input) over each of the sets of ``sup``: tensors N x output shape."""
    if isinstance(sup, SupportBatch):
        lo = hi = None
        for part, ids in sup.parts:
            plo, phi = first_layer_bounds(layer, part, budget)
            if lo is None:
                lo, hi = plo.new_empty((sup.n,) + tuple(plo.shape[1:])), phi.new_empty((sup.n,) + tuple(phi.shape[1:]))
            lo[ids], hi[ids] = plo, phi
        return lo, hi
    if isinstance(layer, nn.Linear):
        A = layer.weight.reshape((layer.weight.shape[0],) + sup.shape)
        sets = torch.zeros(A.shape[0], dtype=torch.long, device=A.device)
        lo = torch.stack([layer.bias + sup.min(A, sets + k) for k in range(sup.n)])
        hi = torch.stack([layer.bias - sup.min(-A, sets + k) for k in range(sup.n)])
        return lo, hi
    if not isinstance(layer, nn.Conv3d):
        raise TypeError(f"the first affine layer must be Conv3d or Linear, got {type(layer).__name__}")
    if isinstance(sup, BoxSupport):
        return interval(layer, sup.lo, sup.hi)
    if isinstance(sup, BoxesSupport):
        return _boxes_bounds(layer, sup)
    if not sup.is_union:  # a single box: interval arithmetic is exact
        return interval(layer, (sup.x0 + sup.dlo)[None], (sup.x0 + sup.dhi)[None])
    return _union_bounds(layer, sup, budget or default_budget(sup.device))


def neuron_rows(layer: nn.Conv3d, out_grid, neurons: torch.Tensor, in_grid) -> Patches:
    """Rows w_o at the receptive fields of the given neurons (R x 4: channel, t, h, w)."""
    return Patches(layer.weight[neurons[:, 0]], neurons[:, 1:], torch.zeros_like(neurons[:, 0]), tuple(out_grid),
                   tuple(layer.stride), tuple(-p for p in layer.padding), tuple(in_grid))


def _union_bounds(layer: nn.Conv3d, sup: ThreatSupport, budget: int):
    """lo = z(x0) + min over choices of the summed gains of w, hi = z(x0) - the same for -w, per
    set and neuron; the gains are computed per receptive-field window (shared by the output
    channels and the sets), in chunks of output channels under the budget."""
    out_grid = _out_grid(layer, sup.shape[1:])
    v0 = layer(sup.x0[None])[0]
    per_channel = math.prod(out_grid) * layer.weight[0].numel()
    chunk = rows_per_chunk(budget, per_channel, sup.x0.element_size())
    lo, hi = [], []
    for a in range(0, layer.out_channels, chunk):
        o = torch.arange(a, min(layer.out_channels, a + chunk), device=sup.x0.device)
        g_min, g_max = _window_gains(layer.weight[o], layer, sup)  # o x T' x H' x W' x kt x kh x kw
        # (a grid of indices: torch.unravel_index imports torch's symbolic-shape machinery, ~1 s, on first use)
        neurons = torch.stack(torch.meshgrid(*(torch.arange(n, device=o.device) for n in g_min.shape[:4]),
                                             indexing="ij"), -1).reshape(-1, 4)
        rows = neuron_rows(layer, out_grid, neurons, sup.shape[1:])  # the boxes (the values are not used)
        per_set = [replace(rows, sets=torch.full_like(rows.sets, k)) for k in range(sup.n)]
        best = lambda g, r: sup.best_in_boxes(g.reshape((-1,) + tuple(g.shape[4:])), r).reshape(g.shape[:4])  # noqa: E731
        lo.append(torch.stack([v0[o] + best(g_min, r) for r in per_set]))
        hi.append(torch.stack([v0[o] - best(-g_max, r) for r in per_set]))
    return torch.cat(lo, 1), torch.cat(hi, 1)


def _window_gains(weight: torch.Tensor, layer: nn.Conv3d, sup: ThreatSupport) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron (output channels of ``weight``) and receptive-field offset: the most the voxel can
    lower (<= 0) and raise (>= 0) z.  Shapes O x T' x H' x W' x kt x kh x kw; padded voxels gain 0."""
    kt, kh, kw = layer.kernel_size
    pt, ph, pw = layer.padding
    st, sh, sw = layer.stride

    def windows(d):
        d = F.pad(d, (pw, pw, ph, ph, pt, pt))
        return d.unfold(1, kt, st).unfold(2, kh, sh).unfold(3, kw, sw)

    lo_w, hi_w = windows(sup.dlo), windows(sup.dhi)
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)
    mix = lambda d, w: torch.einsum("cpqrabd,ocabd->opqrabd", d, w)  # noqa: E731
    return mix(lo_w, wp) + mix(hi_w, wn), mix(hi_w, wp) + mix(lo_w, wn)


def _out_grid(layer: nn.Conv3d, grid) -> tuple[int, int, int]:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(grid, layer.kernel_size, layer.stride, layer.padding))


def _boxes_bounds(layer: nn.Conv3d, sup: BoxesSupport, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Over an explicit union of boxes: the min of the members' interval lower bounds and the max of
    their upper bounds (1 x output shape), members in chunks (memory: chunk x the layer's output)."""
    lo = hi = None
    for a in range(0, len(sup.lo), chunk):
        l, u = interval(layer, sup.lo[a:a + chunk], sup.hi[a:a + chunk])
        l, u = l.min(0).values, u.max(0).values
        lo, hi = (l, u) if lo is None else (torch.minimum(lo, l), torch.maximum(hi, u))
    return lo[None], hi[None]


def attaining_point(layer: nn.Module, sup, index: tuple[int, ...], upper: bool = False) -> torch.Tensor:
    """A point x of the set with z_index(x) equal to its lower (or upper) bound."""
    x = torch.zeros(sup.shape, dtype=layer.weight.dtype, device=layer.weight.device, requires_grad=True)
    z = layer(x[None] if isinstance(layer, nn.Conv3d) else x.reshape(1, -1))[0]
    (w,) = torch.autograd.grad(z[index], x)
    return sup.argmin(-w if upper else w).detach()
