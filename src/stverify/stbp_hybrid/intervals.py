"""Interval arithmetic (IBP) through torch layers, differentiable (also used for certified training).

For an affine map y = W x + b over the box [lo, hi]:  y in [W c - |W| r + b, W c + |W| r + b]
with c = (lo + hi) / 2 and r = (hi - lo) / 2, which is the exact range of each output over the box.
Monotone layers (ReLU, pooling, flatten) map the endpoints.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def interval(module: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of module(x) for every x in the box [lo, hi] (batched)."""
    if isinstance(module, (nn.Conv3d, nn.Linear)):
        c, r = (hi + lo) / 2, (hi - lo) / 2
        yc = module(c)
        if isinstance(module, nn.Conv3d):
            yr = F.conv3d(r, module.weight.abs(), None, module.stride, module.padding)
        else:
            yr = F.linear(r, module.weight.abs())
        return yc - yr, yc + yr
    if isinstance(module, (nn.ReLU, nn.AvgPool3d, nn.MaxPool3d, nn.Flatten)):
        return module(lo), module(hi)
    raise TypeError(f"no interval rule for {type(module).__name__}")


def interval_all(modules, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Bounds of the input and of every layer's output: ``[(lo, hi), (lo1, hi1), ...]``."""
    out = [(lo, hi)]
    for m in modules:
        out.append(interval(m, *out[-1]))
    return out
