"""Network + threat set -> a solver-neutral MILP (MIPVerify-style per-node encodings).

Only entries that depend on perturbable voxels (``common.dependency_masks``) get a variable;
every other entry is a constant, its clean activation at x0, folded into row right-hand sides.
``vars[t]`` holds, per entry of tensor t (in a chain: the input of layer t), its variable index or
-1 (constant); a node reads the variables of the tensors it reads (``Network.sources``).

* linear nodes, z = sum over inputs of W_s h_s + b (Conv3d, Linear, AvgPool3d; BatchNorm: a
  diagonal W; Add: two identities) as equalities ``z - sum W_var h_var = b + sum W_const h_const``,
  z bounded by the given boxes; Flatten reshapes the index array, Concat joins the inputs' arrays
  (neither creates a variable).
* ReLU on z in [l, u]: u <= 0 -> 0; l >= 0 -> y = z; else one binary a and
  y >= z, y >= 0, y <= z - l (1 - a), y <= u a  (asymmetric big-M).
* MaxPool3d: inputs with u_i < max_j l_j (and padding) are never the maximum and are dropped; one survivor ->
  y = x_i; else binaries a_i (sum a = 1), y >= x_i, y <= x_i + (u_max - l_i)(1 - a_i).
* Threat set, x = x0 + d with d_v in [dlo_v, dhi_v] (the clipped interval minus x0): perturbed
  voxels are variables bounded by that interval; ``anyframes`` adds a binary z_t per frame with
  sum z <= k and dlo_v z_t <= x_v - x0_v <= dhi_v z_t; ``anypatch`` a binary b_p per placement with
  sum b = 1 and dlo_v B_v <= x_v - x0_v <= dhi_v B_v, B_v = sum of b_p over placements covering v;
  an explicit union of boxes (``Boxes``, e.g. from VNN-LIB) a binary b_k per member with sum b = 1
  and sum_k lo_kv b_k <= x_v <= sum_k hi_kv b_k (``_member_rows``).
The big-M constants come from ``bounds`` (``bounds[t]`` a box containing tensor t),
which must be sound: the encoding is exact exactly when they are.  Building stops with
``DeadlineExceeded`` once ``deadline`` passes (checked per layer and per block of CHUNK_TERMS terms).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import sliding_window_view

from .. import tolerances
from ..deadline import check
from ..network.graph import Network
from ..network.layers import Add, AvgPool3d, BatchNorm, Concat, Conv3d, Flatten, Linear, MaxPool3d, ReLU
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Boxes, Threat
from .common import prepare


CHUNK_TERMS = 1 << 20


class MILPModel:
    """Variables lb <= x <= ub (some binary) and rows row_lo <= A x <= row_hi, built block-wise."""

    def __init__(self):
        self._lb, self._ub, self._coo, self._rlo, self._rhi = [], [], [], [], []
        self.blocks: list[tuple[str, int, int, bool]] = []  # (name, first variable, stop, binary)
        self.n_vars = self.n_rows = 0

    def add_vars(self, lb, ub, binary: bool = False, name: str = "") -> np.ndarray:
        """Add len(lb) variables; returns their indices."""
        lb, ub = np.asarray(lb, dtype=np.float64).ravel(), np.asarray(ub, dtype=np.float64).ravel()
        self._lb.append(lb)
        self._ub.append(ub)
        self.blocks.append((name, self.n_vars, self.n_vars + lb.size, binary))
        self.n_vars += lb.size
        return np.arange(self.n_vars - lb.size, self.n_vars)

    def add_rows(self, rows, cols, vals, lo, hi) -> None:
        """Add rows lo <= sum vals x[cols] <= hi from COO triples; ``rows`` numbers the new rows
        0..n-1 and ``vals``, ``lo``, ``hi`` broadcast (scalars apply to every row)."""
        rows, cols = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(cols, dtype=np.int64).ravel()
        n = int(rows.max()) + 1 if rows.size else 0
        lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), (n,)).copy() for b in (lo, hi))
        vals = np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape).ravel()
        self._coo.append((rows + self.n_rows, cols, vals))
        self._rlo.append(lo)
        self._rhi.append(hi)
        self.n_rows += n

    def add_row(self, cols, vals, lo=-np.inf, hi=np.inf) -> None:
        self.add_rows(np.zeros(len(cols)), cols, vals, lo, hi)

    def copy(self) -> "MILPModel":
        m = MILPModel()
        for k, v in vars(self).items():
            setattr(m, k, list(v) if isinstance(v, list) else v)
        return m

    @staticmethod
    def _cat(parts, dtype=np.float64) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    @property
    def lb(self) -> np.ndarray:
        return self._cat(self._lb)

    @property
    def ub(self) -> np.ndarray:
        return self._cat(self._ub)

    @property
    def is_binary(self) -> np.ndarray:
        return self._cat([np.full(b - a, binary) for _, a, b, binary in self.blocks], bool)

    @property
    def row_lo(self) -> np.ndarray:
        return self._cat(self._rlo)

    @property
    def row_hi(self) -> np.ndarray:
        return self._cat(self._rhi)

    def to_csr(self) -> sp.csr_matrix:
        """A (n_rows x n_vars); repeated entries are summed."""
        r, c = (self._cat([t[k] for t in self._coo], np.int64) for k in (0, 1))
        v = self._cat([t[2] for t in self._coo])
        return sp.csr_matrix((v, (r, c)), shape=(self.n_rows, self.n_vars))

    def n_binaries(self, kind: str = "") -> int:
        """Number of binaries in blocks whose name contains ``kind``."""
        return sum(b - a for name, a, b, binary in self.blocks if binary and kind in name)


@dataclass
class LinExpr:
    """<coef, x> + const over the model's variables (coef dense, one entry per variable)."""

    coef: np.ndarray
    const: float = 0.0

    def scale(self, lb: np.ndarray, ub: np.ndarray) -> float:
        """|const| + sum |coef_i| max(|lb_i|, |ub_i|): the size of the terms the solver adds up."""
        return float(abs(self.const) + np.abs(self.coef) @ np.maximum(np.abs(lb), np.abs(ub)))


@dataclass
class Relaxed:
    """A model with its negligible terms taken out (``relax_negligible``) and what it takes to use it."""

    model: MILPModel
    fixed: np.ndarray  # per variable: True where its domain was negligible and it is now fixed at ``mid``
    mid: np.ndarray
    rad: np.ndarray  # half the width of each variable's original domain

    def objective(self, obj: LinExpr) -> LinExpr:
        """``obj`` with the fixed variables' terms replaced by their lowest value c mid - |c| rad,
        so that its minimum over this model is a lower bound of its minimum over the original."""
        c = obj.coef[self.fixed]
        coef = obj.coef.copy()
        coef[self.fixed] = 0.0
        return LinExpr(coef, obj.const + float(c @ self.mid[self.fixed] - np.abs(c) @ self.rad[self.fixed]))


def relax_negligible(model: MILPModel, tol: float = tolerances.NEGLIGIBLE) -> Relaxed:
    """Take out of the rows every term a x_j that can vary by less than ``tol`` over x_j's domain
    [l, u] (|a| (u - l) < tol), and every continuous variable with u - l < tol from all rows (it is
    then fixed at its centre m): a row lo <= a x_j + rest <= hi becomes
    lo - a m - |a| r <= rest <= hi - a m + |a| r (r = (u - l) / 2), which every point of the original
    model satisfies.  The relaxed model contains the original's points, so its minima are lower
    bounds of the original's, and the solvers never see a variation below their tolerances.

    Why: SCIP's and HiGHS's presolve treat such terms as zero and such domains as fixed within their
    feasibility tolerance (1e-6), and on the zoo's models returned "optimal" minima *above* a
    feasible point: on ``small``, test #0, ``patch:eps=16/255,t=3-4,y=6,x=6,h=4,w=4``, the minimum of
    logit 1 is 44.276803 (attained); SCIP 10 said 44.296471 (its variables of width 2e-9 were the
    trigger) and HiGHS 1.16 44.277007 (eleven terms below 1e-6 were); relaxed, both say 44.276803,
    as SCIP without presolve does (``tests/test_milp.py``)."""
    lb, ub = model.lb, model.ub
    rad = (ub - lb) / 2
    mid = (lb + ub) / 2
    fixed = ~model.is_binary & (ub - lb < tol)
    A = model.to_csr().tocoo()
    drop = fixed[A.col] | (np.abs(A.data) * (ub - lb)[A.col] < tol)
    cols, vals = A.col[drop], A.data[drop]
    shift = np.bincount(A.row[drop], vals * mid[cols], minlength=model.n_rows)
    slack = np.bincount(A.row[drop], np.abs(vals) * rad[cols], minlength=model.n_rows)
    out = MILPModel()
    out.blocks, out.n_vars, out.n_rows = list(model.blocks), model.n_vars, model.n_rows
    out._lb, out._ub = [np.where(fixed, mid, lb)], [np.where(fixed, mid, ub)]
    out._coo = [(A.row[~drop], A.col[~drop], A.data[~drop])]
    out._rlo, out._rhi = [model.row_lo - shift - slack], [model.row_hi - shift + slack]
    return Relaxed(out, fixed, np.where(fixed, mid, 0.0), np.where(fixed, rad, 0.0))


@dataclass
class Encoding:
    model: MILPModel
    vars: list[np.ndarray]  # vars[i]: variable index per entry of the input of layer i, -1 = constant
    clean: list[np.ndarray]  # clean activations: the values of the constant entries
    logits: tuple[sp.csr_matrix, np.ndarray] | None  # (L, c): logits = L x + c; None for a prefix
    stats: dict = field(default_factory=dict)

    def objective(self, y: int, j: int) -> LinExpr:
        """logit_y - logit_j."""
        L, c = self.logits
        return LinExpr(np.asarray((L[y] - L[j]).todense()).ravel(), float(c[y] - c[j]))

    def point(self, x: np.ndarray) -> np.ndarray:
        """The network input of a solution vector x."""
        v, p = self.vars[0], self.clean[0].copy()
        p[v >= 0] = x[v[v >= 0]]
        return p


def _windows(thw, kernel, stride, padding=(0, 0, 0)) -> np.ndarray:
    """Flat index into T*H*W of every voxel of every window, -1 in the zero padding: P x K."""
    idx = np.pad(np.arange(int(np.prod(thw))).reshape(thw), [(p, p) for p in padding], constant_values=-1)
    win = sliding_window_view(idx, kernel)[:: stride[0], :: stride[1], :: stride[2]]
    return win.reshape(-1, int(np.prod(kernel)))


def _linear_map(layer, shape, sel: np.ndarray):
    """The affine map of ``layer`` (input shape ``shape``) restricted to the flat outputs ``sel``:
    entries (r, c, w) with r indexing ``sel`` and c the flat input, and the bias of each output."""
    n = len(sel)
    if isinstance(layer, Linear):
        W = layer.weight[sel]
        r, c = np.nonzero(W)
        return r, c, W[r, c], layer.bias[sel]
    thw = int(np.prod(shape[1:]))
    if isinstance(layer, Conv3d):
        win = _windows(shape[1:], layer.kernel, layer.stride, layer.padding)
        o, p = np.divmod(sel, len(win))
        w = layer.weight.reshape(layer.weight.shape[0], shape[0], -1)[o]  # n x C x K
        cols = np.arange(shape[0])[None, :, None] * thw + win[p][:, None, :]
        ok = (win[p][:, None, :] >= 0) & (w != 0)
        r = np.broadcast_to(np.arange(n)[:, None, None], w.shape)
        return r[ok], cols[ok], w[ok], layer.bias[o]
    if isinstance(layer, AvgPool3d):
        win = _windows(shape[1:], layer.kernel, layer.stride)
        ch, p = np.divmod(sel, len(win))
        k = win.shape[1]
        return np.repeat(np.arange(n), k), (ch[:, None] * thw + win[p]).ravel(), np.full(n * k, 1.0 / k), np.zeros(n)
    raise TypeError(f"{type(layer).__name__} is not affine")


TERMS = (Conv3d, Linear, AvgPool3d, BatchNorm, Add)  # linear nodes encoded by their terms (``linear_terms``)


def linear_terms(layer, shapes, sel: np.ndarray):
    """The affine map of a linear node (its inputs' shapes ``shapes``) restricted to the flat
    outputs ``sel``: per input, entries (r, c, w) with r indexing ``sel`` and c the flat input entry;
    and the bias of each output."""
    n = len(sel)
    if isinstance(layer, Add):
        r = np.arange(n)
        return [(r, sel, np.ones(n)), (r, sel, np.ones(n))], np.zeros(n)
    if isinstance(layer, BatchNorm):
        ch = sel // int(np.prod(shapes[0][1:]))
        return [(np.arange(n), sel, layer.scale[ch])], layer.shift[ch]
    r, c, w, b = _linear_map(layer, shapes[0], sel)
    return [(r, c, w)], b


def _fan_in(layer, shape) -> int:
    if isinstance(layer, Linear):
        return layer.weight.shape[1]
    if isinstance(layer, (Add, BatchNorm)):
        return 2
    return (shape[0] if isinstance(layer, Conv3d) else 1) * math.prod(layer.kernel)


def _affine_terms(layer, shapes, vs, consts, sel: np.ndarray, deadline: float = math.inf):
    """Variable terms (r, var, w) and constant part b + sum W_const h_const of the outputs ``sel``
    of a linear node reading tensors of ``shapes`` (their variables ``vs``, clean values ``consts``),
    built in blocks of at most CHUNK_TERMS terms with a deadline check before each."""
    step = max(1, CHUNK_TERMS // _fan_in(layer, shapes[0]))
    parts = []
    for a in range(0, max(len(sel), 1), step):
        check(deadline, "the MILP encoding")
        part = sel[a:a + step]
        terms, rhs = linear_terms(layer, shapes, part)
        rr, vv, ww = [], [], []
        for (r, c, w), v, const in zip(terms, vs, consts):
            vin, cin = v.ravel()[c], const.ravel()[c]
            is_var = vin >= 0
            rhs = rhs + np.bincount(r[~is_var], w[~is_var] * cin[~is_var], minlength=len(part))
            rr.append(r[is_var] + a)
            vv.append(vin[is_var])
            ww.append(w[is_var])
        parts.append((np.concatenate(rr), np.concatenate(vv), np.concatenate(ww), rhs))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


def pool_windows(layer, shape, sel: np.ndarray) -> np.ndarray:
    """Flat input entries (n x K, -1 on padding) of the windows of the pooled outputs ``sel``."""
    win = _windows(shape[1:], layer.kernel, layer.stride, layer.padding)
    ch, p = np.divmod(sel, len(win))
    return np.where(win[p] >= 0, ch[:, None] * int(np.prod(shape[1:])) + win[p], -1)


def node_sources(net: Network, j: int, sel: np.ndarray) -> list[np.ndarray]:
    """Per tensor node j reads, the flat entries on which its outputs ``sel`` depend through
    non-zero weights."""
    layer, shapes = net.layers[j], [net.shapes[t] for t in net.sources[j]]
    if isinstance(layer, TERMS):
        return [c for _, c, _ in linear_terms(layer, shapes, sel)[0]]
    if isinstance(layer, MaxPool3d):
        w = pool_windows(layer, shapes[0], sel)
        return [w[w >= 0]]
    if isinstance(layer, Concat):
        ends = np.cumsum([int(np.prod(s)) for s in shapes])
        return [sel[(sel >= e - int(np.prod(s))) & (sel < e)] - (e - int(np.prod(s))) for s, e in zip(shapes, ends)]
    return [sel]  # ReLU, Flatten: entry to entry


def cone(net: Network, upto: int, keep) -> list[np.ndarray]:
    """Masks, one per tensor 0..upto: the entries on which the entries ``keep`` (flat indices) of
    tensor ``upto`` depend through non-zero weights (their cone of influence)."""
    masks = [np.zeros(int(np.prod(s)), dtype=bool) for s in net.shapes[:upto + 1]]
    masks[upto][np.asarray(keep, dtype=np.int64)] = True
    for j in range(upto - 1, -1, -1):
        sel = np.flatnonzero(masks[j + 1])
        if len(sel):
            for t, src in zip(net.sources[j], node_sources(net, j, sel)):
                masks[t][np.ravel(src)] = True
    return [m.reshape(s) for m, s in zip(masks, net.shapes)]


class _Encoder:
    def __init__(self, net: Network, x0: np.ndarray, threat: Threat, bounds, domain, upto=None, keep=None,
                 deadline: float = math.inf):
        self.net, self.x0, self.threat, self.domain = net, np.asarray(x0, dtype=np.float64), threat, domain
        self.bounds, self.deadline = bounds, deadline
        prep = prepare(net, self.x0, threat)
        self.clean, self.depends = prep.clean, prep.depends
        if keep is not None:  # only the cone of the kept entries gets variables; the rest stays constant
            self.depends = [d & c for d, c in zip(self.depends, cone(net, upto, keep))] + self.depends[upto + 1:]
        self.m = MILPModel()
        self.stats: dict = {"unstable_per_layer": {}, "big_m": []}

    # --- threat set ----------------------------------------------------------------------
    def threat_vars(self) -> np.ndarray:
        lo, hi = self.threat.interval(self.x0, self.domain)
        dep = self.depends[0]
        v = np.full(self.x0.shape, -1, dtype=np.int64)
        v[dep] = self.m.add_vars(lo[dep], hi[dep], name="input")
        T, H, W = self.x0.shape[1:]
        if isinstance(self.threat, AnyFrames):
            z = self.m.add_vars(np.zeros(T), np.ones(T), True, "threat.frames")
            self.m.add_row(z, 1.0, hi=self.threat.k)
            voxel = np.arange(T * H * W)
            self._choice_rows(v, lo, hi, z[voxel // (H * W)], voxel)
        elif isinstance(self.threat, AnyPatch):
            starts = self.threat.placements(self.x0.shape)
            b = self.m.add_vars(np.zeros(len(starts)), np.ones(len(starts)), True, "threat.placements")
            self.m.add_row(b, 1.0, 1.0, 1.0)
            size = (self.threat.len, self.threat.h, self.threat.w)
            off = np.stack(np.meshgrid(*map(np.arange, size), indexing="ij"), -1).reshape(-1, 3)
            t, yy, xx = (starts[:, None, :] + off[None]).reshape(-1, 3).T
            self._choice_rows(v, lo, hi, np.repeat(b, len(off)), (t * H + yy) * W + xx)
        elif isinstance(self.threat, Boxes) and len(self.threat.lo) > 1:
            self._member_rows(v)
        return v

    def _member_rows(self, v) -> None:
        """An explicit union of boxes: binaries b_k (sum b = 1) and, for every input variable whose
        interval differs between members, sum_k lo_kv b_k <= x_v <= sum_k hi_kv b_k, written as
        x_v >= r_v + sum_k (lo_kv - r_v) b_k (and the same for hi) with r_v the median member bound,
        which is equal because sum b = 1 and keeps only the members whose bound differs from r_v."""
        K = len(self.threat.lo)
        b = self.m.add_vars(np.zeros(K), np.ones(K), True, "threat.members")
        self.m.add_row(b, 1.0, 1.0, 1.0)
        var = np.flatnonzero(v.ravel() >= 0)
        for bound, is_lower in ((self.threat.lo, True), (self.threat.hi, False)):
            per = bound.reshape(K, -1)[:, var]  # K x variables
            ref = np.sort(per, axis=0)[K // 2]
            k, j = np.nonzero(per != ref)
            rows = np.unique(j)  # variables with a member-dependent bound
            row = np.full(len(var), -1)
            row[rows] = np.arange(len(rows))
            r = np.concatenate([row[rows], row[j]])
            c = np.concatenate([v.ravel()[var[rows]], b[k]])
            w = np.concatenate([np.ones(len(rows)), -(per[k, j] - ref[j])])
            self.m.add_rows(r, c, w, ref[rows] if is_lower else -np.inf, np.inf if is_lower else ref[rows])

    def _choice_rows(self, v, lo, hi, binv: np.ndarray, voxel: np.ndarray) -> None:
        """dlo_v B_v <= x_v - x0_v <= dhi_v B_v, where B_v sums the binaries ``binv[p]`` of the
        pairs p with ``voxel[p]`` = v's flat (t, y, x) position, for every channel."""
        C = v.shape[0]
        vf, x0f = v.reshape(C, -1), self.x0.reshape(C, -1)
        for d, is_lower in ((lo - self.x0, True), (hi - self.x0, False)):
            check(self.deadline, "the MILP encoding")
            df = d.reshape(C, -1)
            need = (vf >= 0) & (df != 0)  # d = 0: the variable bound already pins x_v to x0_v
            row = np.full(vf.shape, -1)
            row[need] = np.arange(need.sum())
            ch, p = np.nonzero(row[:, voxel] >= 0)
            r = np.concatenate([row[need], row[ch, voxel[p]]])
            c = np.concatenate([vf[need], binv[p]])
            w = np.concatenate([np.ones(need.sum()), -df[ch, voxel[p]]])
            self.m.add_rows(r, c, w, x0f[need] if is_lower else -np.inf, np.inf if is_lower else x0f[need])

    # --- nodes ---------------------------------------------------------------------------
    def _terms(self, i: int, vs, sel):
        src = self.net.sources[i]
        return _affine_terms(self.net.layers[i], [self.net.shapes[t] for t in src], vs, [self.clean[t] for t in src], sel,
                             self.deadline)

    def affine(self, i: int, vs) -> np.ndarray:
        sel = np.flatnonzero(self.depends[i + 1])
        r, c, w, rhs = self._terms(i, vs, sel)
        has_var = np.zeros(len(sel), dtype=bool)
        has_var[r] = True
        out = np.full(self.net.shapes[i + 1], -1, dtype=np.int64)
        lo, hi = (b.ravel()[sel[has_var]] for b in self.bounds[i + 1])
        z = self.m.add_vars(lo, hi, name=f"layer{i}.affine")
        out.ravel()[sel[has_var]] = z
        row = np.cumsum(has_var) - 1  # row number of each selected output (those with variable terms)
        k = np.arange(len(z))
        self.m.add_rows(np.r_[k, row[r]], np.r_[z, c], np.r_[np.ones(len(z)), -w], rhs[has_var], rhs[has_var])
        return out

    def relu(self, i: int, v: np.ndarray) -> np.ndarray:
        l, u = self.bounds[self.net.source(i)]
        out = np.where((v >= 0) & (l >= 0), v, -1)
        # a dependent neuron with u <= 0 is the constant 0 on the (sub-)problem, even where the
        # clean input x0 lies outside it (a branch-and-bound split forcing the phase inactive)
        self.clean[i + 1] = np.where((v >= 0) & (u <= 0), 0.0, self.clean[i + 1])
        unstable = (v >= 0) & (l < 0) & (u > 0)
        x, lu, uu = v[unstable], l[unstable], u[unstable]
        n = len(x)
        y = self.m.add_vars(np.zeros(n), uu, name=f"layer{i}.relu")
        a = self.m.add_vars(np.zeros(n), np.ones(n), True, f"layer{i}.relu.binary")
        out[unstable] = y
        k, one = np.arange(n), np.ones(n)
        self.m.add_rows(np.r_[k, k], np.r_[y, x], np.r_[one, -one], 0.0, np.inf)  # y >= x
        self.m.add_rows(np.r_[k, k, k], np.r_[y, x, a], np.r_[one, -one, -lu], -np.inf, -lu)  # y <= x - l(1-a)
        self.m.add_rows(np.r_[k, k], np.r_[y, a], np.r_[one, -uu], -np.inf, 0.0)  # y <= u a
        self.stats["unstable_per_layer"][i] = n
        self.stats["big_m"].append((-lu, uu))
        return out

    def maxpool(self, i: int, v: np.ndarray) -> np.ndarray:
        t = self.net.source(i)
        sel = np.flatnonzero(self.depends[i + 1])
        idx = pool_windows(self.net.layers[i], self.net.shapes[t], sel)  # n x K flat inputs per window, -1: padding
        pad, idx = idx < 0, np.maximum(idx, 0)
        l, u, vin, cin = (a.ravel()[idx] for a in (*self.bounds[t], v, self.clean[t]))
        l, u = np.where(pad, -np.inf, l), np.where(pad, -np.inf, u)
        alive = u >= l.max(1, keepdims=True)
        out = np.full(self.net.shapes[i + 1], -1, dtype=np.int64)
        single = alive.sum(1) == 1
        out.ravel()[sel[single]] = vin[single][alive[single]]
        multi = ~single & np.any(alive & (vin >= 0), axis=1)  # several survivors, some variable
        l, u, vin, cin, alive = l[multi], u[multi], vin[multi], cin[multi], alive[multi]
        umax = np.where(alive, u, -np.inf).max(1)
        y = self.m.add_vars(np.where(alive, l, -np.inf).max(1), umax, name=f"layer{i}.maxpool")
        out.ravel()[sel[multi]] = y
        w, j = np.nonzero(alive)  # one (window, input) pair per survivor
        a = self.m.add_vars(np.zeros(len(w)), np.ones(len(w)), True, f"layer{i}.maxpool.binary")
        self.m.add_rows(w, a, 1.0, 1.0, 1.0)  # sum_i a_i = 1
        x, c, big = vin[w, j], cin[w, j], umax[w] - l[w, j]
        isv, k, one = x >= 0, np.arange(len(w)), np.ones(len(w))
        shift = np.where(isv, 0.0, c)  # a constant x_i moves to the right-hand side
        kv, xv = k[isv], x[isv]
        self.m.add_rows(np.r_[k, kv], np.r_[y[w], xv], np.r_[one, -one[isv]], shift, np.inf)  # y >= x_i
        self.m.add_rows(np.r_[k, kv, k], np.r_[y[w], xv, a], np.r_[one, -one[isv], big],  # y <= x_i + M(1-a_i)
                        -np.inf, big + shift)
        return out

    # --- whole network -------------------------------------------------------------------
    def run(self, upto: int | None) -> Encoding:
        layers = self.net.layers
        n = len(layers) if upto is None else upto
        vs = [self.threat_vars()]
        logits = None
        for i in range(n):
            check(self.deadline, "the MILP encoding")
            layer, ins = layers[i], [vs[t] for t in self.net.sources[i]]
            if upto is None and i == len(layers) - 1 and isinstance(layer, TERMS):
                sel = np.arange(self.net.n_classes)
                r, c, w, rhs = self._terms(i, ins, sel)
                logits = (sp.csr_matrix((w, (r, c)), shape=(len(sel), self.m.n_vars)), rhs)
                break
            if isinstance(layer, TERMS):
                vs.append(self.affine(i, ins))
            elif isinstance(layer, ReLU):
                vs.append(self.relu(i, ins[0]))
            elif isinstance(layer, MaxPool3d):
                vs.append(self.maxpool(i, ins[0]))
            elif isinstance(layer, Flatten):
                vs.append(ins[0].reshape(-1))
            elif isinstance(layer, Concat):
                vs.append(np.concatenate(ins, axis=0))
            else:
                raise TypeError(f"no MILP encoding for node {i} ({type(layer).__name__})")
        if upto is None and logits is None:  # the network ends in a non-affine layer
            v = vs[-1]
            r = np.flatnonzero(v >= 0)
            logits = (sp.csr_matrix((np.ones(len(r)), (r, v[r])), shape=(len(v), self.m.n_vars)),
                      np.where(v >= 0, 0.0, self.clean[len(layers)]))
        return Encoding(self.m, vs, self.clean, logits, self._summary())

    def _summary(self) -> dict:
        m = self.m
        neg, pos = (np.concatenate([np.zeros(0)] + [b[k] for b in self.stats["big_m"]]) for k in (0, 1))
        stat = lambda a, f: float(f(a)) if a.size else 0.0  # noqa: E731
        return {"n_vars": m.n_vars, "n_constraints": m.n_rows,
                "n_binaries": {k: m.n_binaries(k) for k in ("relu", "maxpool", "threat")},
                "unstable_per_layer": self.stats["unstable_per_layer"],
                "big_m": {"mean_neg_l": stat(neg, np.mean), "max_neg_l": stat(neg, np.max),
                          "mean_u": stat(pos, np.mean), "max_u": stat(pos, np.max)}}


def encode(net: Network, x0: np.ndarray, threat: Threat, bounds, domain=DEFAULT_DOMAIN,
           upto: int | None = None, keep=None, deadline: float = math.inf) -> Encoding:
    """The MILP of the module docstring.  ``bounds[i]`` = (lo, hi) arrays containing the input of
    layer i over the threat set.  ``upto=i`` encodes only layers 0..i-1 (no logits); with it,
    ``keep`` (flat indices into the input of layer i) encodes only their cone of influence
    (``cone``): every other entry is the constant clean activation.  Raises ``DeadlineExceeded``
    once ``deadline`` (a ``time.perf_counter()`` instant) has passed."""
    if keep is not None and upto is None:
        raise ValueError("keep= needs upto=")
    return _Encoder(net, x0, threat, bounds, domain, upto, keep, deadline).run(upto)
