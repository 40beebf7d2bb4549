"""alpha-CROWN: CROWN with optimised lower ReLU slopes.

For an unstable ReLU (l < 0 < u) every lower line y >= alpha x with alpha in [0, 1] is valid, so
CROWN's bound is valid for any choice of the slopes; alpha-CROWN picks them by projected
signed-gradient ascent on the bound itself.  Every iterate is a valid bound, so the best one seen
is kept per row (per neuron for intermediate layers), and the result is never looser than CROWN.

Margins: one slope tensor per open margin row (its own slopes at every ReLU layer).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .propagate import Bounds, _per_row, crown_lower, relu_relaxation


def alpha_margins(layers, bounds: Bounds, sup, S: torch.Tensor, lb: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """``lb`` (N x M lower bounds of S @ logits) improved on the rows it leaves open (<= 0)."""
    open_rows = (lb <= 0).nonzero()  # (set, spec row)
    if len(open_rows) == 0 or steps <= 0:
        return lb
    sets, spec = open_rows[:, 0], open_rows[:, 1]
    last, A = len(layers) - 1, S[spec]
    alphas = {}
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            l, u = bounds[i]
            if ((l < 0) & (u > 0)).any():
                alphas[i] = _per_row(relu_relaxation(l, u)[0], sets).clone().requires_grad_(True)
    if not alphas:
        return lb
    best = torch.full((len(sets),), -math.inf, dtype=S.dtype, device=S.device)
    params = list(alphas.values())
    with torch.enable_grad():
        for step in range(steps):
            cur = crown_lower(layers, bounds, sup, last, A, alphas, sets)
            best = torch.maximum(best, cur.detach())
            grads = torch.autograd.grad(cur.sum(), params)
            with torch.no_grad():  # projected signed-gradient ascent with a decaying step
                for a, g in zip(params, grads):
                    a.add_(lr * (0.9 ** step) * g.sign()).clamp_(0.0, 1.0)
    with torch.no_grad():
        best = torch.maximum(best, crown_lower(layers, bounds, sup, last, A, alphas, sets))
    out = lb.clone()
    out[sets, spec] = torch.maximum(out[sets, spec], best)
    return out
