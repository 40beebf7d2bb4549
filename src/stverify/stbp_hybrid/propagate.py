"""Certified bounds of every layer after the first: IBP, CROWN and alpha-CROWN, in torch.

``bounds[i]`` is a box (lo, hi) containing the input of ``layers[i]`` for every x in the set;
``bounds[len(layers)]`` contains the logits.

CROWN (backward linear bounds): to bound <A, h_j> for the output h_j of layer j, walk back
through the layers keeping a linear lower bound <A, h_i> + c valid for every x in the set:
  * affine layers (Conv3d, Linear, AvgPool3d, Flatten) are exact: A <- A W, c += <A, b>;
  * ReLU with input in [l, u]: for unstable neurons (l < 0 < u), y >= alpha x (alpha in [0, 1])
    and y <= u (x - l) / (u - l); a positive coefficient takes the lower line, a negative one the
    upper line; stable neurons are exact;
  * MaxPool3d with inputs in [l_i, u_i] per window: y >= x_{i*} with i* = argmax l_i, and y <= max u_i;
    when l_{i*} >= u_j for every other j the window is exactly y = x_{i*}.
At the input the final <A, x> + c is concretised by the support function of the set itself
(``support.py``: exact over the union of boxes), not over its bounding box.
alpha-CROWN optimises the lower ReLU slopes alpha per output row by projected gradient ascent
on the concretised bound; every iterate is a valid bound, so the best one is kept per row.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn.grad import conv3d_input

from .first_layer import first_layer_bounds
from .intervals import interval

NONLINEAR = (nn.ReLU, nn.MaxPool3d)
AFFINE = (nn.Conv3d, nn.Linear)
CHUNK_ELEMENTS = 1 << 24  # rows x input size per backward chunk (memory cap, ~128 MB in float64)
DEADLINE_CHUNK_ROWS = 64  # rows per chunk when a deadline is set (it is checked between chunks)

Bounds = list[tuple[torch.Tensor, torch.Tensor]]


def first_affine_index(layers) -> int:
    """Index of the first affine layer; only Flatten may come before it."""
    for i, layer in enumerate(layers):
        if isinstance(layer, AFFINE):
            return i
        if not isinstance(layer, nn.Flatten):
            raise ValueError(f"STBP needs the network to begin with Conv3d or Flatten + Linear; layer {i} is {type(layer).__name__}")
    raise ValueError("the network has no affine layer")


def relu_relaxation(l: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor | None = None):
    """Slopes (lower, upper) and upper intercept of the ReLU relaxation on [l, u].

    Lower line y >= ls x; upper line y <= us x + ui.  Default lower slope (CROWN): 1 if u > -l else 0.
    """
    active, unstable = l >= 0, (l < 0) & (u > 0)
    one = active.to(l.dtype)
    us = torch.where(unstable, u / (u - l).clamp(min=1e-300), one)
    ui = torch.where(unstable, -us * l, torch.zeros_like(l))
    default = torch.where(unstable, (u > -l).to(l.dtype), one)
    ls = default if alpha is None else torch.where(unstable, alpha, one)
    return ls, us, ui


def _maxpool_relaxation(pool: nn.MaxPool3d, l: torch.Tensor, u: torch.Tensor):
    """Per output: flat input index i* (argmax of lower bounds), exactness flag, max upper bound."""
    k, s = pool.kernel_size, pool.stride
    k = (k,) * 3 if isinstance(k, int) else tuple(k)
    s = (s,) * 3 if isinstance(s, int) else tuple(s)

    def win(t):
        return t.unfold(1, k[0], s[0]).unfold(2, k[1], s[1]).unfold(3, k[2], s[2]).flatten(-3)

    lw, uw = win(l), win(u)
    idx = win(torch.arange(l.numel(), device=l.device).reshape(l.shape))
    lmax, best = lw.max(-1)
    others = uw.scatter(-1, best[..., None], -math.inf).max(-1).values
    return idx.gather(-1, best[..., None])[..., 0], lmax >= others, uw.max(-1).values


def backward(layers, bounds: Bounds, start: int, A: torch.Tensor, alphas: dict | None = None):
    """Walk <A, output of layers[start]> back to the input: returns (A_in, c) with
    <A, h_start> >= <A_in, x> + c for every x whose layer inputs lie in ``bounds``."""
    m = A.shape[0]
    c = torch.zeros(m, dtype=A.dtype, device=A.device)
    for i in range(start, -1, -1):
        layer, (l, u) = layers[i], bounds[i]
        in_shape = (m,) + tuple(l.shape)
        if isinstance(layer, nn.Linear):
            c = c + A @ layer.bias
            A = A @ layer.weight
        elif isinstance(layer, nn.Conv3d):
            c = c + A.sum((2, 3, 4)) @ layer.bias
            A = conv3d_input(in_shape, layer.weight, A, layer.stride, layer.padding)
        elif isinstance(layer, nn.AvgPool3d):
            k = tuple(layer.kernel_size) if not isinstance(layer.kernel_size, int) else (layer.kernel_size,) * 3
            ch = l.shape[0]
            w = torch.full((ch, 1) + k, 1.0 / math.prod(k), dtype=A.dtype, device=A.device)
            A = conv3d_input(in_shape, w, A, layer.stride, 0, groups=ch)
        elif isinstance(layer, nn.Flatten):
            A = A.reshape(in_shape)
        elif isinstance(layer, nn.ReLU):
            ls, us, ui = relu_relaxation(l, u, None if alphas is None else alphas.get(i))
            pos, neg = A.clamp(min=0), A.clamp(max=0)
            c = c + (neg * ui).flatten(1).sum(1)
            A = pos * ls + neg * us
        elif isinstance(layer, nn.MaxPool3d):
            idx, exact, umax = _maxpool_relaxation(layer, l, u)
            pos, neg = A.clamp(min=0), A.clamp(max=0)
            c = c + (neg * (~exact) * umax).flatten(1).sum(1)
            coef = (pos + neg * exact).flatten(1)
            A = torch.zeros(m, l.numel(), dtype=A.dtype, device=A.device)
            A = A.scatter_add(1, idx.flatten()[None].expand(m, -1), coef).reshape(in_shape)
        else:
            raise TypeError(f"no bound rule for layer {i} ({type(layer).__name__})")
    return A, c


def crown_lower(layers, bounds: Bounds, sup, start: int, A: torch.Tensor, alphas=None) -> torch.Tensor:
    """Lower bounds of <A_m, output of layers[start]> over the set, concretised by ``sup``."""
    A_in, c = backward(layers, bounds, start, A, alphas)
    return sup.min(A_in) + c


def crown_refine(layers, bounds: Bounds, sup, j: int, lo: torch.Tensor, hi: torch.Tensor, which: torch.Tensor,
                 deadline: float = math.inf):
    """Tighten (lo, hi) of the outputs of layers[j] selected by the mask ``which`` with their CROWN
    bounds (rows +e_n for lower, -e_n for upper bounds), in row chunks; the rest is kept (so are
    the rows of the chunks left when ``deadline`` passes)."""
    shape, n = tuple(lo.shape), lo.numel()
    picked = which.reshape(-1).nonzero()[:, 0]
    width = max(math.prod(b[0].shape) for b in bounds[: j + 1])
    chunk = max(1, CHUNK_ELEMENTS // width // 2)
    if not math.isinf(deadline):
        chunk = min(chunk, DEADLINE_CHUNK_ROWS)  # check the deadline often enough
    lo, hi = lo.reshape(-1).clone(), hi.reshape(-1).clone()
    for a in range(0, len(picked), chunk):
        if time.perf_counter() >= deadline:
            break
        idx = picked[a:a + chunk]
        eye = torch.zeros((len(idx), n), dtype=sup.dtype, device=sup.device)
        eye[torch.arange(len(idx)), idx] = 1.0
        res = crown_lower(layers, bounds, sup, j, torch.cat([eye, -eye]).reshape((2 * len(idx),) + shape))
        lo[idx] = torch.maximum(lo[idx], res[: len(idx)])
        hi[idx] = torch.minimum(hi[idx], -res[len(idx):])
    return lo.reshape(shape), hi.reshape(shape)


def layer_bounds(layers, sup, relaxation: str = "crown", splits: dict | None = None, deadline: float = math.inf) -> Bounds:
    """Bounds of every layer input over the set: the first affine layer exactly, the rest by
    IBP, and for inputs of nonlinear layers by CROWN too (intersected with IBP; for a ReLU only
    where IBP leaves it unstable, since CROWN cannot change a stable phase) unless
    ``relaxation == "ibp"``.

    ``splits`` (branch-and-bound) maps a ReLU's layer index to a tensor shaped like its input with
    +1 (the sub-problem requires input >= 0), -1 (input <= 0) or 0 (free); the bounds of that input
    are clipped accordingly, which is sound on the sub-problem.  A lower bound above an upper bound
    then means the sub-problem is empty.  Once ``deadline`` passes the CROWN refinement stops (IBP
    bounds for the rest: sound, looser)."""
    f = first_affine_index(layers)
    bounds: Bounds = [(sup.box_lo, sup.box_hi)]
    for i, layer in enumerate(layers):
        if i == f:
            lo, hi = first_layer_bounds(layer, sup)
        else:
            lo, hi = (t[0] for t in interval(layer, bounds[i][0][None], bounds[i][1][None]))
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if relaxation != "ibp" and i > f and isinstance(nxt, NONLINEAR):
                # a ReLU only needs better bounds where IBP leaves it unstable; a max-pool uses them all
                which = (lo < 0) & (hi > 0) if isinstance(nxt, nn.ReLU) else torch.ones_like(lo, dtype=torch.bool)
                lo, hi = crown_refine(layers, bounds, sup, i, lo, hi, which, deadline)
        if splits is not None and i + 1 in splits:
            lo = torch.where(splits[i + 1] > 0, lo.clamp(min=0), lo)
            hi = torch.where(splits[i + 1] < 0, hi.clamp(max=0), hi)
        bounds.append((lo, hi))
    return bounds


def spec_matrix(n_classes: int, y: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Rows e_y - e_j for every j != y: the margins logit_y - logit_j."""
    others = [j for j in range(n_classes) if j != y]
    S = torch.zeros((len(others), n_classes), dtype=dtype, device=device)
    S[:, y] = 1.0
    S[torch.arange(len(others)), others] = -1.0
    return S


def margin_bounds(layers, bounds: Bounds, sup, S: torch.Tensor, relaxation: str = "crown",
                  alpha_steps: int = 30, alpha_lr: float = 0.25, deadline: float = math.inf) -> torch.Tensor:
    """Lower bounds of S @ logits over the set.

    IBP folds S into the last Linear (interval arithmetic on its input box); CROWN and
    alpha-CROWN start their backward pass from S; the result is the best of the valid bounds
    (IBP's alone once ``deadline`` has passed; alpha-CROWN stops its steps there).
    """
    last = len(layers) - 1
    l, u = bounds[last]
    if isinstance(layers[last], nn.Linear):
        folded = nn.Linear(l.numel(), S.shape[0], dtype=S.dtype, device=S.device)
        with torch.no_grad():
            folded.weight.copy_(S @ layers[last].weight)
            folded.bias.copy_(S @ layers[last].bias)
        lb = interval(folded, l[None], u[None])[0][0].detach()
    else:
        lo, hi = bounds[last + 1]
        lb = (S.clamp(min=0) @ lo + S.clamp(max=0) @ hi)
    if relaxation == "ibp" or time.perf_counter() >= deadline:
        return lb
    lb = torch.maximum(lb, crown_lower(layers, bounds, sup, last, S))
    open_rows = lb <= 0  # alpha-CROWN only works on margins CROWN has not already proven
    if relaxation == "alpha-crown" and open_rows.any():
        lb[open_rows] = torch.maximum(lb[open_rows], _alpha_crown(layers, bounds, sup, S[open_rows], alpha_steps, alpha_lr,
                                                                  deadline))
    return lb


def _alpha_crown(layers, bounds: Bounds, sup, S, steps: int, lr: float, deadline: float = math.inf) -> torch.Tensor:
    last, m = len(layers) - 1, S.shape[0]
    alphas = {}
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            l, u = bounds[i]
            if ((l < 0) & (u > 0)).any():
                init = relu_relaxation(l, u)[0].expand((m,) + tuple(l.shape)).clone()
                alphas[i] = init.requires_grad_(True)
    best = torch.full((m,), -math.inf, dtype=S.dtype, device=S.device)
    if not alphas:
        return best
    params = list(alphas.values())
    for step in range(steps):
        if time.perf_counter() >= deadline:
            break
        lb = crown_lower(layers, bounds, sup, last, S, alphas)
        best = torch.maximum(best, lb.detach())
        grads = torch.autograd.grad(lb.sum(), params)
        with torch.no_grad():  # projected signed-gradient ascent with a decaying step
            for a, g in zip(params, grads):
                a.add_(lr * (0.9 ** step) * g.sign()).clamp_(0.0, 1.0)
    with torch.no_grad():
        return torch.maximum(best, crown_lower(layers, bounds, sup, last, S, alphas))
