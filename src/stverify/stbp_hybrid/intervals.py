"""Interval arithmetic (IBP) through torch modules, differentiable (also used for certified training).

For an affine map y = W x + b over the box [lo, hi]:  y in [W c - |W| r + b, W c + |W| r + b]
with c = (lo + hi) / 2 and r = (hi - lo) / 2, which is the exact range of each output over the box;
a per-channel scale s (batch norm) maps the endpoints and swaps them where s < 0.  Monotone nodes
(ReLU, pooling, flatten) map the endpoints; a sum adds them; a concatenation joins them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..network.to_torch import ChannelConcat, ScaleShift, Sum

MONOTONE = (nn.ReLU, nn.AvgPool3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Identity, nn.Dropout)


def batchnorm_affine(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a ScaleShift, or of a torch batch norm with its running statistics."""
    if isinstance(m, ScaleShift):
        return m.scale, m.shift
    scale = m.running_var.add(m.eps).rsqrt()
    if m.affine:
        scale = scale * m.weight
    shift = -m.running_mean * scale + (m.bias if m.affine else 0.0)
    return scale, shift


def node_interval(module: nn.Module, boxes: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of module(*xs) for every xs in the boxes ``(lo, hi)`` of its inputs (batched)."""
    if isinstance(module, Sum):
        return boxes[0][0] + boxes[1][0], boxes[0][1] + boxes[1][1]
    if isinstance(module, ChannelConcat):
        return torch.cat([b[0] for b in boxes], 1), torch.cat([b[1] for b in boxes], 1)
    ((lo, hi),) = boxes
    return interval(module, lo, hi)


def interval(module: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of module(x) for every x in the box [lo, hi] (batched; one input)."""
    if isinstance(module, (nn.Conv3d, nn.Linear)):
        c, r = (hi + lo) / 2, (hi - lo) / 2
        yc = module(c)
        if isinstance(module, nn.Conv3d):
            yr = F.conv3d(r, module.weight.abs(), None, module.stride, module.padding)
        else:
            yr = F.linear(r, module.weight.abs())
        return yc - yr, yc + yr
    if isinstance(module, (ScaleShift, nn.modules.batchnorm._BatchNorm)):
        s, b = (v.reshape((1, -1) + (1,) * (lo.dim() - 2)) for v in batchnorm_affine(module))
        a, z = lo * s + b, hi * s + b
        return torch.minimum(a, z), torch.maximum(a, z)
    if isinstance(module, MONOTONE):
        return module(lo), module(hi)
    raise TypeError(f"no interval rule for {type(module).__name__}")


def interval_all(model, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Bounds of every tensor of ``model`` (a TorchNet, or an nn.Sequential: a chain) over the box
    [lo, hi] of its input: ``[(lo, hi), bounds of the output of node 0, ...]``."""
    sources = getattr(model, "sources", None) or [(i,) for i in range(len(model))]
    out = [(lo, hi)]
    for m, src in zip(model, sources):
        out.append(node_interval(m, [out[t] for t in src]))
    return out
