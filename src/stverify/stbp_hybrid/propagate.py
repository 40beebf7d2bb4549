"""Certified bounds of every tensor of the network graph: IBP, CROWN and alpha-CROWN, in torch.

``bounds[t]`` is a box (lo, hi) containing tensor t (0: the input, i + 1: the output of node i;
in a chain, the input of ``layers[t]``) for every x in the set; ``bounds[len(layers)]`` contains
the outputs.  Every box has a leading axis over the N sets of the support (branch-and-bound bounds
several sub-problems in one pass; N = 1 otherwise).

CROWN (backward linear bounds): to bound <A, h_t> for a tensor h_t, walk back through the nodes in
reverse order keeping a linear lower bound sum_s <A_s, h_s> + c valid for every x in the set, one
term per tensor s reached so far; a tensor read by several nodes (a skip connection) sums the rows
its readers send back before its own node is walked through (as auto_LiRPA does):
  * linear nodes are exact: Conv3d, Linear, AvgPool3d, Flatten: A <- A W, c += <A, b>; a per-channel
    affine (BatchNorm) y = s x + b: A <- A s, c += <A, b>; Add y = a + b: A goes to both inputs;
    Concat: A is split by channels among its inputs;
  * ReLU with input in [l, u]: for unstable neurons (l < 0 < u), y >= alpha x (alpha in [0, 1])
    and y <= u (x - l) / (u - l); a positive coefficient takes the lower line, a negative one the
    upper line; stable neurons are exact;
  * MaxPool3d with inputs in [l_i, u_i] per window: y >= x_{i*} with i* = argmax l_i, and y <= max u_i;
    when l_{i*} >= u_j for every other j the window is exactly y = x_{i*}.
At the input the final <A, x> + c is concretised by the support function of the set itself
(``support.py``: exact over the union of boxes), not over its bounding box.

A row that starts at a neuron of a spatial tensor is kept in receptive-field form (``patches.py``)
while it passes Conv3d, AvgPool3d, ReLU, BatchNorm, Add and Concat nodes (rows meeting at a tensor
are added on the union of their boxes), and becomes a dense tensor at any other node or once its
box is as large as the tensor.  Rows are processed in chunks sized by a memory budget
(``budget.py``).  Once a deadline (a ``time.perf_counter()`` instant) passes, the chunks left keep
their IBP bounds and alpha-CROWN its best iterate so far: sound, looser.

alpha-CROWN optimises the lower ReLU slopes alpha per row (``alpha.py``), for the margins and for
every intermediate bound CROWN computes; every iterate is a valid bound.

``layers`` is a ``network.to_torch.TorchNet``: indexing gives node i's module, ``sources[i]`` the
tensors it reads.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv3d_input

from .alpha import optimise
from .budget import default_budget, rows_per_chunk
from .first_layer import first_layer_bounds, neuron_rows
from ..network.to_torch import ChannelConcat, ScaleShift, Sum
from .intervals import node_interval
from .patches import Patches, accumulate, per_row

NONLINEAR = (nn.ReLU, nn.MaxPool3d)
AFFINE = (nn.Conv3d, nn.Linear)
WINDOWED = (nn.Conv3d, nn.AvgPool3d)  # linear nodes a receptive-field row passes through, its box growing
CHANNELWISE = (nn.ReLU, Sum, ChannelConcat, ScaleShift)  # nodes a row passes through, its box unchanged

Bounds = list[tuple[torch.Tensor, torch.Tensor]]


def closed_form_nodes(layers) -> set[int]:
    """The nodes whose outputs are bounded exactly in closed form (``first_layer``): a Conv3d reading
    the input, and a Linear reading the flattened input."""
    flat_input = {i + 1 for i, m in enumerate(layers) if isinstance(m, nn.Flatten) and layers.sources[i] == (0,)}
    return {i for i, m in enumerate(layers)
            if (isinstance(m, nn.Conv3d) and layers.sources[i] == (0,))
            or (isinstance(m, nn.Linear) and layers.sources[i][0] in flat_input)}


def relu_relaxation(l: torch.Tensor, u: torch.Tensor):
    """Slopes (lower, upper) and upper intercept of the ReLU relaxation on [l, u].

    Lower line y >= ls x; upper line y <= us x + ui.  CROWN's lower slope: 1 if u > -l else 0
    (alpha-CROWN replaces it where l < 0 < u, ``backward``).
    """
    active, unstable = l >= 0, (l < 0) & (u > 0)
    one = active.to(l.dtype)
    us = torch.where(unstable, u / (u - l).clamp(min=1e-300), one)
    ui = torch.where(unstable, -us * l, torch.zeros_like(l))
    ls = torch.where(unstable, (u > -l).to(l.dtype), one)
    return ls, us, ui


def relu_table(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """N x 4C x grid (channels stacked): CROWN lower slope, upper slope, upper intercept and the
    unstable flag (1.0 / 0.0) of every neuron, the data a backward pass reads at a ReLU."""
    return torch.cat(list(relu_relaxation(l, u)) + [((l < 0) & (u > 0)).to(l.dtype)], 1)


def _triple(v) -> tuple[int, int, int]:
    return (v,) * 3 if isinstance(v, int) else tuple(v)


def _maxpool_relaxation(pool: nn.MaxPool3d, l: torch.Tensor, u: torch.Tensor):
    """Per set and output: flat input index i* (argmax of lower bounds), exactness flag, max upper
    bound (padded entries are -inf: never the argmax, never the maximum)."""
    k, s, p = _triple(pool.kernel_size), _triple(pool.stride), _triple(pool.padding)
    pads = (p[2], p[2], p[1], p[1], p[0], p[0])

    def win(t, fill):
        t = F.pad(t, pads, value=fill) if any(p) else t
        return t.unfold(2, k[0], s[0]).unfold(3, k[1], s[1]).unfold(4, k[2], s[2]).flatten(-3)

    lw, uw = win(l, -math.inf), win(u, -math.inf)
    idx = win(torch.arange(l[0].numel(), device=l.device, dtype=l.dtype).reshape((1,) + tuple(l.shape[1:])), -1).long()
    lmax, best = lw.max(-1)
    others = uw.scatter(-1, best[..., None], -math.inf).max(-1).values
    return idx.expand_as(lw).gather(-1, best[..., None])[..., 0], lmax >= others, uw.max(-1).values


def _stays_patch(layer: nn.Module, size, grid) -> bool:
    """Whether a row with a box of ``size`` on the output of ``layer`` passes it in box form."""
    return isinstance(layer, WINDOWED + CHANNELWISE) and math.prod(size) < math.prod(grid)


def _split_channels(A, sizes):
    """Rows on a channel concatenation, split into the rows on each of its inputs."""
    if isinstance(A, Patches):
        return [A.with_values(v) for v in A.values.split(sizes, 1)]
    return list(A.split(sizes, 1))


def backward(layers, bounds: Bounds, tensor: int, A, alphas: dict | None = None, sets: torch.Tensor | None = None,
             memo: dict | None = None, taps: dict | None = None):
    """Walk <A, tensor ``tensor``> back to the input: returns (A_in, c) with
    <A, h_tensor> >= <A_in, x> + c for every x whose tensors lie in ``bounds``.

    The nodes are visited in reverse order; the rows reaching a tensor from each of its readers
    are summed there (``patches.accumulate``) before its own node is walked through.
    ``A``: dense rows (M x tensor shape) or ``Patches``; row m belongs to set ``sets[m]`` (default
    0; a Patches carries its own).  ``alphas`` (alpha-CROWN): per ReLU node i, the lower slopes of
    every row, shaped like the rows' coefficients there (M x box or M x tensor shape); a missing
    entry is created with CROWN's slopes, so a first pass with ``alphas={}`` sets them up.
    ``memo``: a dict the caller keeps across passes over the same bounds (chunks), holding each
    ReLU's ``relu_table``.  ``taps``: tensors whose (dense) rows to record in the dict as they are
    reached (branch-and-bound's scores)."""
    m = A.rows if isinstance(A, Patches) else A.shape[0]
    ref = A.values if isinstance(A, Patches) else A
    if sets is None:
        sets = A.sets if isinstance(A, Patches) else torch.zeros(m, dtype=torch.long, device=ref.device)
    memo = {} if memo is None else memo
    c = torch.zeros(m, dtype=ref.dtype, device=ref.device)
    pending = {tensor: A}
    for i in range(tensor - 1, -1, -1):
        A = pending.pop(i + 1, None)
        if A is None:
            continue
        if taps is not None and i + 1 in taps:
            taps[i + 1] = A.to_dense() if isinstance(A, Patches) else A
        layer, src = layers[i], layers.sources[i]
        l, u = bounds[src[0]]
        if isinstance(A, Patches) and not _stays_patch(layer, A.size, A.grid):
            A = A.to_dense()
        if isinstance(layer, Sum):
            parts = [A, A]
        elif isinstance(layer, ChannelConcat):
            parts = _split_channels(A, [bounds[t][0].shape[1] for t in src])
        elif isinstance(layer, nn.ReLU):
            if i not in memo:
                memo[i] = relu_table(l, u)
            A, c = _relu_step(memo[i], i, A, c, sets, alphas)
            parts = [A]
        elif isinstance(A, Patches):
            A, c = _patch_step(layer, l, A, c)
            parts = [A]
        else:
            A, c = _dense_step(layer, l, u, A, c, sets)
            parts = [A]
        for t, part in zip(src, parts):
            pending[t] = accumulate(pending.get(t), part)
    A = pending.get(0)
    if A is None:  # the tensor does not depend on the input
        A = torch.zeros((m,) + tuple(bounds[0][0].shape[1:]), dtype=ref.dtype, device=ref.device)
    if taps is not None and 0 in taps:
        taps[0] = A.to_dense() if isinstance(A, Patches) else A
    return A, c


def _relu_step(table, i, A, c, sets, alphas):
    """Through a ReLU: positive coefficients take the lower line, negative ones the upper line."""
    ch = table.shape[1] // 4
    if isinstance(A, Patches):  # the relaxation of every row's set, read at its box
        ls, us, ui, unstable = A.gather(table).split(ch, 1)
    else:
        ls, us, ui, unstable = (per_row(t, sets) for t in table.split(ch, 1))
    if alphas is not None:
        if i not in alphas:
            alphas[i] = ls.detach().clone().requires_grad_(True)
        ls = torch.where(unstable > 0, alphas[i], ls)
    v = A.values if isinstance(A, Patches) else A
    pos, neg = v.clamp(min=0), v.clamp(max=0)
    out = pos * ls + neg * us
    return (A.with_values(out) if isinstance(A, Patches) else out), c + (neg * ui).flatten(1).sum(1)


def _scale_shift(layer: ScaleShift, A: torch.Tensor, c):
    """Through x * s + b per channel: A <- A s, c += sum of A b (``A``: M x C x ...)."""
    c = c + A.flatten(2).sum(2) @ layer.shift if A.dim() > 2 else c + A @ layer.shift
    return A * layer.per_channel(layer.scale, A.dim()), c


def _dense_step(layer, l, u, A, c, sets):
    m = A.shape[0]
    in_shape = (m,) + tuple(l.shape[1:])
    if isinstance(layer, nn.Linear):
        return A @ layer.weight, c + A @ layer.bias
    if isinstance(layer, nn.Conv3d):
        return conv3d_input(in_shape, layer.weight, A, layer.stride, layer.padding), c + A.sum((2, 3, 4)) @ layer.bias
    if isinstance(layer, nn.AvgPool3d):
        k = _triple(layer.kernel_size)
        w = torch.full((in_shape[1], 1) + k, 1.0 / math.prod(k), dtype=A.dtype, device=A.device)
        return conv3d_input(in_shape, w, A, _triple(layer.stride), 0, groups=in_shape[1]), c
    if isinstance(layer, ScaleShift):
        return _scale_shift(layer, A, c)
    if isinstance(layer, nn.Flatten):
        return A.reshape(in_shape), c
    if isinstance(layer, nn.MaxPool3d):
        idx, exact, umax = (per_row(t, sets) for t in _maxpool_relaxation(layer, l, u))
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        c = c + (neg * (~exact) * umax).flatten(1).sum(1)
        coef = (pos + neg * exact).flatten(1)
        out = torch.zeros(m, l[0].numel(), dtype=A.dtype, device=A.device)
        return out.scatter_add(1, idx.flatten(1), coef).reshape(in_shape), c
    raise TypeError(f"no bound rule for node {type(layer).__name__}")


def _patch_step(layer, l, A: Patches, c):
    """Through a windowed linear node or a per-channel affine one, in box form."""
    in_grid = tuple(l.shape[2:])
    if isinstance(layer, nn.Conv3d):
        c = c + A.values.sum((2, 3, 4)) @ layer.bias
        return A.through_window(layer.weight, layer.stride, layer.padding, in_grid), c
    if isinstance(layer, ScaleShift):
        values, c = _scale_shift(layer, A.values, c)
        return A.with_values(values), c
    ch, k = l.shape[1], _triple(layer.kernel_size)
    w = torch.full((ch, 1) + k, 1.0 / math.prod(k), dtype=A.values.dtype, device=A.values.device)
    return A.through_window(w, _triple(layer.stride), (0, 0, 0), in_grid, groups=ch), c


def crown_lower(layers, bounds: Bounds, sup, tensor: int, A, alphas=None, sets=None, memo: dict | None = None) -> torch.Tensor:
    """Lower bounds of <A_m, tensor ``tensor``> over the set of each row, concretised by ``sup``."""
    A_in, c = backward(layers, bounds, tensor, A, alphas, sets, memo)
    if sets is None and not isinstance(A_in, Patches):
        sets = torch.zeros(A_in.shape[0], dtype=torch.long, device=A_in.device)
    return sup.min(A_in, sets) + c


_ABSENT = object()


def row_elements(layers, shapes, tensor: int) -> int:
    """The most elements one backward row from tensor ``tensor`` holds at any tensor (its box
    times channels, or the whole tensor once dense); ``shapes[t]`` is the shape of tensor t.
    Where rows from several readers meet, the larger box is counted (an estimate for the budget)."""
    out = shapes[tensor]
    sizes = {tensor: (1, 1, 1) if len(out) == 4 else None}
    most = out[0] if len(out) == 4 else math.prod(out)
    for i in range(tensor - 1, -1, -1):
        if i + 1 not in sizes:
            continue
        size, layer = sizes.pop(i + 1), layers[i]
        if size is not None and not _stays_patch(layer, size, shapes[i + 1][1:]):
            size = None
        if size is not None and isinstance(layer, WINDOWED):
            k, s = _triple(layer.kernel_size), _triple(layer.stride)
            size = tuple((p - 1) * st + kk for p, st, kk in zip(size, s, k))
        for t in layers.sources[i]:
            prev = sizes.get(t, _ABSENT)
            if prev is not _ABSENT:
                size = None if prev is None or size is None else tuple(map(max, prev, size))
            sizes[t] = size
            most = max(most, shapes[t][0] * math.prod(size) if size else math.prod(shapes[t]))
    return most


def start_rows(layers, shapes, j: int, neurons: torch.Tensor, sets: torch.Tensor, dtype, device):
    """Rows +e_n and -e_n (first and second half) on the output of ``layers[j]`` for the given
    neurons (K x output ndim), walked through node j when it is affine: (rows, c, the tensor they
    are on)."""
    layer, out = layers[j], shapes[j + 1]
    sets2 = torch.cat([sets, sets])
    if isinstance(layer, nn.Conv3d):
        src = layers.sources[j][0]
        rows = neuron_rows(layer, out[1:], torch.cat([neurons, neurons]), shapes[src][1:])
        sign = torch.cat([torch.ones(len(neurons)), -torch.ones(len(neurons))]).to(dtype=dtype, device=device)
        rows = replace(rows, values=rows.values * sign[:, None, None, None, None], sets=sets2)
        return rows, sign * layer.bias[neurons[:, 0]].repeat(2), src
    if isinstance(layer, nn.Linear):
        w, b = layer.weight[neurons[:, 0]], layer.bias[neurons[:, 0]]
        return torch.cat([w, -w]), torch.cat([b, -b]), layers.sources[j][0]
    k = len(neurons)
    if len(out) == 4:
        values = torch.zeros((2 * k, out[0], 1, 1, 1), dtype=dtype, device=device)
        values[torch.arange(2 * k, device=device), torch.cat([neurons, neurons])[:, 0]] = torch.cat(
            [torch.ones(k), -torch.ones(k)]).to(dtype=dtype, device=device)[:, None, None, None]
        rows = Patches(values, torch.cat([neurons, neurons])[:, 1:], sets2, tuple(out[1:]), (1, 1, 1), (0, 0, 0),
                       tuple(out[1:]))
        return rows, torch.zeros(2 * k, dtype=dtype, device=device), j + 1
    eye = torch.zeros((2 * k, math.prod(out)), dtype=dtype, device=device)
    flat = neurons[:, 0]
    eye[torch.arange(k, device=device), flat] = 1.0
    eye[torch.arange(k, 2 * k, device=device), flat] = -1.0
    return eye.reshape((2 * k,) + tuple(out)), torch.zeros(2 * k, dtype=dtype, device=device), j + 1


ALPHA_CHUNK_SHARE = 4  # alpha-CROWN keeps each pass's tensors for the gradient: chunks this many times smaller


def _chunked_lower(layers, bounds: Bounds, sup, n: int, chunk: int, rows_of, alpha_steps: int, alpha_lr: float,
                   early_stop: bool = True, deadline: float = math.inf):
    """Per chunk [a, b) of n items: the lower bounds of the rows ``rows_of(a, b)`` = (A, c, sets,
    the tensor they are on), by CROWN, or by alpha-CROWN when ``alpha_steps`` > 0 (``alpha.optimise``); no
    chunk starts after ``deadline``."""
    memo = {}
    for a in range(0, n, chunk):
        if time.perf_counter() >= deadline:
            return
        A, c, sets, tensor = rows_of(a, min(n, a + chunk))
        bound_of = lambda alphas: c + crown_lower(layers, bounds, sup, tensor, A, alphas, sets, memo)  # noqa: E731
        yield a, (optimise(bound_of, alpha_steps, alpha_lr, early_stop, deadline) if alpha_steps > 0 else bound_of(None))


def crown_refine(layers, bounds: Bounds, sup, j: int, lo: torch.Tensor, hi: torch.Tensor, which: torch.Tensor,
                 budget: int | None = None, alpha_steps: int = 0, alpha_lr: float = 0.25, deadline: float = math.inf):
    """Tighten (lo, hi) (N x output shape of layers[j]) where the mask ``which`` is set, with their
    CROWN (or alpha-CROWN) bounds: rows +e_n for lower, -e_n for upper bounds, in chunks under the
    memory budget."""
    shapes = [tuple(b[0].shape[1:]) for b in bounds] + [tuple(lo.shape[1:])]
    picked = which.nonzero()  # K x (1 + ndim): set, neuron
    if which.dim() == 5:  # by set and position, so a chunk reads few distinct boxes of per-neuron data
        picked = picked[torch.argsort(((picked[:, 0] * which.shape[2] + picked[:, 2]) * which.shape[3] + picked[:, 3])
                                      * which.shape[4] + picked[:, 4], stable=True)]
    budget = budget or default_budget(lo.device)
    chunk = max(1, rows_per_chunk(budget, row_elements(layers, shapes, j + 1), lo.element_size()) // 2
                // (ALPHA_CHUNK_SHARE if alpha_steps else 1))

    def rows_of(a, b):
        sets, neurons = picked[a:b, 0], picked[a:b, 1:]
        A, c, tensor = start_rows(layers, shapes, j, neurons, sets, lo.dtype, lo.device)
        return A, c, torch.cat([sets, sets]), tensor

    lo, hi = lo.clone(), hi.clone()
    for a, res in _chunked_lower(layers, bounds, sup, len(picked), chunk, rows_of, alpha_steps, alpha_lr,
                                 deadline=deadline):
        k = len(res) // 2
        where = tuple(picked[a:a + k].t())
        lo[where] = torch.maximum(lo[where], res[:k])
        hi[where] = torch.minimum(hi[where], -res[k:])
    return lo, hi


def _readers(layers) -> dict[int, tuple]:
    """Per tensor, the types of the nonlinear nodes that read it."""
    out: dict[int, tuple] = {}
    for i, m in enumerate(layers):
        if isinstance(m, NONLINEAR):
            out[layers.sources[i][0]] = out.get(layers.sources[i][0], ()) + (type(m),)
    return out


def layer_bounds(layers, sup, relaxation: str = "crown", splits: dict | None = None, budget: int | None = None,
                 alpha_steps: int = 30, alpha_lr: float = 0.25, prior: Bounds | None = None,
                 deadline: float = math.inf) -> Bounds:
    """Bounds of every tensor over each set of ``sup`` (N x shape): the input's box; the outputs of
    the closed-form nodes exactly (``closed_form_nodes``); the rest by IBP, and the tensors that a
    nonlinear node reads by CROWN too (intersected with IBP; for a ReLU's input only where IBP leaves
    it unstable, since CROWN cannot change a stable phase) unless ``relaxation == "ibp"``;
    alpha-CROWN optimises the slopes of every unstable neuron's bounds.  ``prior``: boxes already
    known to hold over the same sets (e.g. CROWN's), intersected with every tensor's new bounds.

    ``splits`` (branch-and-bound) maps a tensor that a ReLU reads to a tensor shaped like it (or
    N x that) with +1 (the sub-problem requires input >= 0), -1 (input <= 0) or 0 (free); the
    bounds of that tensor are clipped accordingly, which is sound on the sub-problem.  A lower bound
    above an upper bound then means the sub-problem is empty."""
    closed, readers = closed_form_nodes(layers), _readers(layers)
    bounds: Bounds = [(sup.box_lo, sup.box_hi)]
    for i, layer in enumerate(layers):
        if i in closed:
            lo, hi = first_layer_bounds(layer, sup, budget)
        else:
            lo, hi = node_interval(layer, [bounds[t] for t in layers.sources[i]])
            kinds = readers.get(i + 1, ())
            if relaxation != "ibp" and kinds:
                # a ReLU only needs better bounds where IBP leaves it unstable; a max-pool uses them all
                which = (lo < 0) & (hi > 0) if kinds == (nn.ReLU,) * len(kinds) else torch.ones_like(lo, dtype=torch.bool)
                steps = alpha_steps if relaxation == "alpha-crown" else 0
                lo, hi = crown_refine(layers, bounds, sup, i, lo, hi, which, budget, steps, alpha_lr, deadline)
        if prior is not None:
            lo, hi = torch.maximum(lo, prior[i + 1][0]), torch.minimum(hi, prior[i + 1][1])
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
    S[torch.arange(len(others), device=device), others] = -1.0
    return S


def ibp_margins(layers, bounds: Bounds, S: torch.Tensor) -> torch.Tensor:
    """Lower bounds of S @ logits per set (N x M) by interval arithmetic, with S folded into the
    last Linear (the exact range of S W h + S b over the box of its input h)."""
    last = len(layers) - 1
    l, u = bounds[layers.sources[last][0]]
    if isinstance(layers[last], nn.Linear):
        w, b = S @ layers[last].weight, S @ layers[last].bias
        return ((u + l) / 2) @ w.t() + b - ((u - l) / 2) @ w.abs().t()
    lo, hi = bounds[last + 1]
    return lo @ S.clamp(min=0).t() + hi @ S.clamp(max=0).t()


def spec_lower(layers, bounds: Bounds, sup, S: torch.Tensor, pairs: torch.Tensor, budget: int | None = None,
               alpha_steps: int = 0, alpha_lr: float = 0.25, deadline: float = math.inf) -> torch.Tensor:
    """CROWN (alpha-CROWN when ``alpha_steps`` > 0) lower bounds of the margins ``pairs`` (K x 2:
    set, row of S), in chunks under the budget; -inf for the rows of chunks after ``deadline``."""
    per_row = max(math.prod(b[0].shape[1:]) for b in bounds)
    chunk = max(1, rows_per_chunk(budget or default_budget(S.device), per_row, S.element_size())
                // (ALPHA_CHUNK_SHARE if alpha_steps else 1))

    def rows_of(a, b):
        return S[pairs[a:b, 1]], 0.0, pairs[a:b, 0], len(layers)

    out = torch.full((len(pairs),), -math.inf, dtype=S.dtype, device=S.device)
    for a, res in _chunked_lower(layers, bounds, sup, len(pairs), chunk, rows_of, alpha_steps, alpha_lr, False, deadline):
        out[a:a + len(res)] = res
    return out


def margin_bounds(layers, bounds: Bounds, sup, S: torch.Tensor, relaxation: str = "crown",
                  alpha_steps: int = 30, alpha_lr: float = 0.25, budget: int | None = None,
                  deadline: float = math.inf, alpha_every_margin: bool = False) -> torch.Tensor:
    """Lower bounds of S @ logits over each set (N x M): the best of the valid bounds (IBP, CROWN
    and, for alpha-CROWN, the optimised slopes on the margins CROWN leaves open, or on every margin
    with ``alpha_every_margin``: the tightest bounds, for audits of their tightness)."""
    lb = ibp_margins(layers, bounds, S)
    if relaxation == "ibp":
        return lb
    every = torch.ones_like(lb, dtype=torch.bool).nonzero()
    lb = torch.maximum(lb, spec_lower(layers, bounds, sup, S, every, budget, deadline=deadline).reshape(lb.shape))
    open_pairs = (lb <= 0 if not alpha_every_margin else torch.ones_like(lb, dtype=torch.bool)).nonzero()
    if relaxation == "alpha-crown" and len(open_pairs):
        where = tuple(open_pairs.t())
        lb[where] = torch.maximum(lb[where], spec_lower(layers, bounds, sup, S, open_pairs, budget, alpha_steps, alpha_lr,
                                                        deadline))
    return lb
