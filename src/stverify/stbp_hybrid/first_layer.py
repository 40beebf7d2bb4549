"""Exact bounds of the first affine layer over a threat set, in closed form.

For a neuron z = <w, x> + b of the first Conv3d, only the voxels of its receptive field
matter.  With the per-voxel gains of ``support.py`` restricted to that field
(``g[o, position, dt, dh, dw]``), the exact minimum over the threat set is

  * one region:  <w, x0> + b + sum of g over the region  (plain interval arithmetic on the masked box);
  * anyframes:   <w, x0> + b + the k smallest per-frame sums of g (frames are disjoint, so the
                 choices do not interact; frames outside the field contribute 0);
  * anypatch:    <w, x0> + b + min over placements of the box sum of g over the placement
                 intersected with the field.  The intersection, in field coordinates, depends only
                 on the placement's offset relative to the field, so we loop over those offsets
                 (a few hundred) and evaluate every neuron at once with prefix sums; offsets whose
                 absolute placement is not allowed (outside the input, off the stride) are masked.

The maximum is the same computation with the gains of -w.  A first Linear (after Flatten)
is handled by the dense support function directly.  ``attaining_point`` returns, for one
neuron, a member of the threat set at which the bound is attained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..threats import AnyFrames, AnyPatch
from .intervals import interval
from .support import BoxSupport, ThreatSupport, box_sum, prefix_sums


def first_layer_bounds(layer: nn.Module, sup) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (lower, upper) bounds of every output of ``layer`` (Conv3d on the input, or Linear
    on the flattened input) over the set described by ``sup``; shapes exclude the batch axis."""
    if isinstance(layer, nn.Linear):
        A = layer.weight.reshape((layer.weight.shape[0],) + sup.shape)
        return layer.bias + sup.min(A), layer.bias - sup.min(-A)
    if not isinstance(layer, nn.Conv3d):
        raise TypeError(f"the first affine layer must be Conv3d or Linear, got {type(layer).__name__}")
    if isinstance(sup, BoxSupport):
        lo, hi = interval(layer, sup.lo[None], sup.hi[None])
        return lo[0], hi[0]
    if not isinstance(sup.threat, (AnyFrames, AnyPatch)):  # a single box: interval arithmetic is exact
        lo, hi = interval(layer, (sup.x0 + sup.dlo)[None], (sup.x0 + sup.dhi)[None])
        return lo[0], hi[0]
    v0 = layer(sup.x0[None])[0]
    g_min, g_max = _window_gains(layer, sup)
    return v0 + _best(g_min, layer, sup), v0 - _best(-g_max, layer, sup)


def _window_gains(layer: nn.Conv3d, sup: ThreatSupport) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron and receptive-field offset: the most the voxel can lower (<= 0) and raise (>= 0) z.

    Shapes O x T' x H' x W' x kt x kh x kw; padded voxels are constants and gain 0.
    """
    kt, kh, kw = layer.kernel_size
    pt, ph, pw = layer.padding
    st, sh, sw = layer.stride

    def windows(d):
        d = F.pad(d, (pw, pw, ph, ph, pt, pt))
        return d.unfold(1, kt, st).unfold(2, kh, sh).unfold(3, kw, sw)

    lo_w, hi_w = windows(sup.dlo), windows(sup.dhi)
    wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
    mix = lambda d, w: torch.einsum("cpqrabd,ocabd->opqrabd", d, w)  # noqa: E731
    return mix(lo_w, wp) + mix(hi_w, wn), mix(hi_w, wp) + mix(lo_w, wn)


def _best(g: torch.Tensor, layer: nn.Conv3d, sup: ThreatSupport) -> torch.Tensor:
    """min over the attacker's choices of the summed gain g (<= 0), per neuron."""
    if isinstance(sup.threat, AnyFrames):
        per_frame = g.sum((-2, -1))
        k = min(sup.threat.k, per_frame.shape[-1])
        return torch.topk(per_frame, k, dim=-1, largest=False).values.sum(-1)
    return _best_patch(g, layer, sup)


def _best_patch(g: torch.Tensor, layer: nn.Conv3d, sup: ThreatSupport) -> torch.Tensor:
    th = sup.threat
    size = (th.len, th.h, th.w)
    first_last = th.bounds(tuple(sup.x0.shape))  # allowed starts per axis: every frame; rows/columns on the stride
    steps = (1, th.stride, th.stride)
    dev = g.device
    # relative offsets r of a placement's start from a field's start, per axis, that intersect the field
    rel = [torch.arange(-(s - 1), k, device=dev) for s, k in zip(size, layer.kernel_size)]
    # allowed[axis][position, r]: the absolute start is inside the input and on the stride
    allowed = []
    for axis, (n, st, pad) in enumerate(zip(g.shape[1:4], layer.stride, layer.padding)):
        start = (torch.arange(n, device=dev) * st - pad)[:, None] + rel[axis][None, :]
        allowed.append((start >= int(first_last[axis, 0])) & (start <= int(first_last[axis, 1])) & (start % steps[axis] == 0))
    it, iy, ix = (a.reshape(-1) for a in torch.meshgrid(*(torch.arange(len(r), device=dev) for r in rel), indexing="ij"))
    lo_hi = [((r[i]).clamp(min=0), (r[i] + s).clamp(max=k)) for r, i, s, k in zip(rel, (it, iy, ix), size, layer.kernel_size)]
    sums = box_sum(prefix_sums(g), lo_hi[0][0], lo_hi[0][1], lo_hi[1][0], lo_hi[1][1], lo_hi[2][0], lo_hi[2][1])
    ok = allowed[0][:, None, None, it] & allowed[1][None, :, None, iy] & allowed[2][None, None, :, ix]
    return torch.where(ok, sums, torch.zeros_like(sums)).min(-1).values.clamp(max=0)


def attaining_point(layer: nn.Module, sup, index: tuple[int, ...], upper: bool = False) -> torch.Tensor:
    """A point x of the set with z_index(x) equal to its lower (or upper) bound."""
    x = torch.zeros(sup.shape, dtype=layer.weight.dtype, requires_grad=True)
    z = layer(x[None] if isinstance(layer, nn.Conv3d) else x.reshape(1, -1))[0]
    (w,) = torch.autograd.grad(z[index], x)
    return sup.argmin(-w if upper else w).detach()
