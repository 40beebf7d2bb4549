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

For an explicit union of boxes (``threats.Boxes``) interval arithmetic on each member box is
exact per neuron, so the bounds are the min / max over the members.
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
from .support import BoxesSupport, BoxSupport, ThreatSupport


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
    if isinstance(sup, BoxesSupport):
        return _union_bounds(layer, sup)
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
    indicators, allowed = [], []
    for axis, (n, st, pad, k, s) in enumerate(zip(g.shape[1:4], layer.stride, layer.padding, layer.kernel_size, size)):
        # offsets r of a placement's start from a field's start that intersect the field, and the
        # intersection [max(0, r), min(k, r + s)) in field coordinates; offsets with the same
        # intersection give the same sum, so they are grouped (allowed if any member is allowed)
        rel = torch.arange(-(s - 1), k, device=dev)
        span = torch.stack([rel.clamp(min=0), (rel + s).clamp(max=k)], 1)
        uniq, group = torch.unique(span, dim=0, return_inverse=True)
        d = torch.arange(k, device=dev)
        indicators.append(((d[None] >= uniq[:, :1]) & (d[None] < uniq[:, 1:])).to(g.dtype))  # groups x k
        start = (torch.arange(n, device=dev) * st - pad)[:, None] + rel[None, :]
        ok = (start >= int(first_last[axis, 0])) & (start <= int(first_last[axis, 1])) & (start % steps[axis] == 0)
        allowed.append(torch.zeros((n, len(uniq)), dtype=g.dtype, device=dev).index_add_(1, group, ok.to(g.dtype)) > 0)
    # the sum of g over every intersection box, one axis at a time: o x T' x H' x W' x Gt x Gh x Gw
    sums = torch.einsum("opqrabc,Aa,Bb,Cc->opqrABC", g, *indicators)
    ok = allowed[0][:, None, None, :, None, None] & allowed[1][None, :, None, None, :, None] & allowed[2][None, None, :, None, None, :]
    return torch.where(ok, sums, torch.zeros_like(sums)).flatten(-3).min(-1).values.clamp(max=0)


def _union_bounds(layer: nn.Conv3d, sup: BoxesSupport, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Over an explicit union of boxes: interval arithmetic is exact per neuron on each member box,
    so the bounds over the union are the min of the members' lower and the max of their upper bounds."""
    lo = hi = None
    for a in range(0, len(sup.lo), chunk):  # members in chunks: memory chunk x the layer's output
        l, u = interval(layer, sup.lo[a:a + chunk], sup.hi[a:a + chunk])
        l, u = l.min(0).values, u.max(0).values
        lo, hi = (l, u) if lo is None else (torch.minimum(lo, l), torch.maximum(hi, u))
    return lo, hi


def attaining_point(layer: nn.Module, sup, index: tuple[int, ...], upper: bool = False) -> torch.Tensor:
    """A point x of the set with z_index(x) equal to its lower (or upper) bound."""
    x = torch.zeros(sup.shape, dtype=layer.weight.dtype, requires_grad=True)
    z = layer(x[None] if isinstance(layer, nn.Conv3d) else x.reshape(1, -1))[0]
    (w,) = torch.autograd.grad(z[index], x)
    return sup.argmin(-w if upper else w).detach()
