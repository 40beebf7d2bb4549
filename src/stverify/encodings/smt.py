"""z3 encoding of a network and a threat set in exact rational arithmetic (QF_LRA + Booleans).

Semantics: every float64 weight, bias and input value is read as the rational it denotes
exactly (``Fraction(float)``; AvgPool divides by its window size exactly), so the network is a
piecewise-linear map over the rationals and z3 decides

    exists x in S(x0), j in J :  logit_j(x) - logit_y(x) >= delta                          (1)

exactly: ``unsat`` at delta = 0 proves robustness with no tolerance at all.

Entries of every layer are exact constants (``Fraction``) or exact affine forms (``Lin``) over a
few Real variables.  Entries that cannot change over S(x0) are constants: those outside the
dependency masks of ``common``, and also those behind stable inactive ReLUs or exactly cancelling
weights (constancy is tracked per entry, so the masks are not needed); constants are computed in
exact rational arithmetic, never in float64.  Linear nodes (Conv3d, Linear, AvgPool3d, BatchNorm,
Add, Flatten, Concat) compose forms exactly and create no variable, so z3's exact simplex, whose
pivots are the cost, gets one row per unstable neuron rather than one per neuron:
  * input: a Real x_v in [lo_v, hi_v] for a perturbable voxel with lo_v < hi_v, else x0_v;
  * ReLU on a form t with bounds [l, u]: u <= 0 -> 0, l >= 0 -> t, else Reals a = t and r and a
    Bool phase p:  r >= 0,  r >= a,  p -> (a >= 0 and r <= a),  not p -> (a <= 0 and r <= 0);
  * MaxPool3d: inputs with u_i < max_k l_k (and padding) are dropped, m = If-chain maximum of the rest, m >= each;
  * choice of regions (anyframes, anypatch): one Bool b_r per region, PbEq(b, choose), and a
    voxel covered by no chosen region keeps its value: (OR of b_r, r covering v) or x_v = x0_v.
    (Exactly = at most: x0 lies in every member box, see threats.py; PbEq propagates better.);
    an explicit union of boxes (``Boxes``) one Bool m_k per member, PbEq(m, 1), m_k -> x in box k;
  * the negated property: a Real d_j = logit_j - logit_y per competitor j, and OR_j d_j >= delta.
With ``bounds`` (the widened STBP bounds of every tensor) stable ReLUs are fixed, max-pool
inputs pruned, and lemmas asserted: l <= a <= u and the triangle (u - l) r <= u (a - l) per
unstable ReLU, bounds on every max-pool variable, d_j <= -m_j with m_j STBP's margin bound; all
rounded outward to LEMMA_BITS bits (still valid, shorter numbers for z3).  Without them (the
plain encoding) nothing from STBP is used, every non-constant ReLU gets a phase.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import z3

from ..network.graph import Network
from ..network.layers import AvgPool3d, Concat, Flatten, MaxPool3d, ReLU
from .milp import TERMS, linear_terms, pool_windows
from ..threats import DEFAULT_DOMAIN, Boxes, Threat

# A counterexample with margin > -SEARCH_MARGIN may not replay in float32: z3 is asked for a
# better one, at most MAX_IMPROVE times (see solve()).
SEARCH_MARGIN = Fraction(1, 10_000)
MAX_IMPROVE = 8
LEMMA_BITS = 20  # significant bits of the bounds in lemmas (rounded outward, see _outward)


@dataclass
class Query:
    """One instance of (1), picklable (sent to the child process that runs z3)."""

    net: Network
    x0: np.ndarray
    y: int
    threat: Threat
    competitors: list[int]  # J
    bounds: list[tuple[np.ndarray, np.ndarray]] | None = None  # STBP bounds of every tensor, or None
    margin_lb: np.ndarray | None = None  # STBP lower bounds of logit_y - logit_j, or None
    domain: tuple[float, float] = DEFAULT_DOMAIN


def _q(v) -> z3.RatNumRef:
    return z3.RealVal(Fraction(v))


def _outward(v, up: bool) -> Fraction:
    """v rounded up (or down) to LEMMA_BITS significant bits: a bound stays a bound, and z3's
    simplex works with short numbers (pivoting multiplies their sizes)."""
    f = Fraction(v)
    if f == 0:
        return f
    scale = Fraction(2) ** (LEMMA_BITS - (abs(f.numerator).bit_length() - f.denominator.bit_length()))
    return (math.ceil(f * scale) if up else math.floor(f * scale)) / scale


def _is_const(v) -> bool:
    return isinstance(v, Fraction)


def _exact_terms(layer, shapes, n: int):
    """Per input of a linear node, (output, input entry, weight) with exact rational weights, and
    the exact biases: output k = bias[k] + sum of weight * input[entry] over its terms."""
    frac = np.vectorize(Fraction, otypes=[object])
    terms, bias = linear_terms(layer, shapes, np.arange(n))
    if isinstance(layer, AvgPool3d):  # 1 / (window size) exactly, not its float64 rounding
        terms = [(r, c, np.full(len(r), Fraction(1, int(np.prod(layer.kernel))), dtype=object)) for r, c, _ in terms]
    else:
        terms = [(r, c, frac(w)) for r, c, w in terms]
    return terms, frac(bias)


class Lin:
    """An exact affine form  const + sum_v coef[v] * var_v  over the encoding's Real variables."""

    __slots__ = ("coef", "const")

    def __init__(self, coef: dict[int, Fraction], const: Fraction = Fraction(0)):
        self.coef, self.const = coef, const


def _node_values(layer, shapes, vals_in, n: int) -> np.ndarray:
    """The entries of a linear node's output, exactly, from its inputs' entries ``vals_in``."""
    terms, bias = _exact_terms(layer, shapes, n)
    per_out = [([], []) for _ in range(n)]
    for (r, c, w), vals in zip(terms, vals_in):
        for k, e, a in zip(r.tolist(), vals[c].tolist(), w.tolist()):
            per_out[k][0].append(a)
            per_out[k][1].append(e)
    return np.array([_combine(ws, es, b) for (ws, es), b in zip(per_out, bias.tolist())], dtype=object)


def _combine(weights, entries, bias: Fraction):
    """bias + sum_i weights[i] * entries[i], exactly: a Fraction when no variable survives, else a Lin."""
    const, coef = bias, {}
    for w, e in zip(weights, entries):
        if _is_const(e):
            const += w * e
            continue
        const += w * e.const
        for v, a in e.coef.items():
            coef[v] = coef.get(v, 0) + w * a
    coef = {v: a for v, a in coef.items() if a}
    return Lin(coef, const) if coef else const


@dataclass
class Encoding:
    assertions: list
    variables: list  # z3 Reals; a Lin refers to them by position
    inputs: list[tuple[int, int]]  # (flat voxel index, variable position)
    diffs: list  # per competitor j in J: the Real (or exact constant) logit_j - logit_y
    query: Query
    stats: dict = field(default_factory=dict)

    def negation(self, delta: Fraction = Fraction(0), strict: bool = False) -> z3.BoolRef:
        """OR over j in J of logit_j - logit_y >= delta (> delta if strict): the negated property of (1)."""
        d = Fraction(delta)

        def holds(e):
            if _is_const(e):
                return z3.BoolVal(e > d if strict else e >= d)
            return e > _q(d) if strict else e >= _q(d)

        return z3.Or([holds(e) for e in self.diffs] or [z3.BoolVal(False)])

    def point(self, model: z3.ModelRef) -> tuple[np.ndarray, Fraction]:
        """The model's input as float64 (nearest to the exact rational) and its exact margin
        min over J of logit_y - logit_j."""
        def value(e):
            return e if _is_const(e) else model.eval(e, model_completion=True).as_fraction()

        x = np.array(self.query.x0, dtype=np.float64).ravel()
        for i, v in self.inputs:
            x[i] = float(value(self.variables[v]))
        return x.reshape(self.query.x0.shape), min(-value(e) for e in self.diffs)


class _Builder:
    """The variables and assertions of one encoding."""

    def __init__(self):
        self.vars, self.asserts, self.n_phases = [], [], 0

    def new(self, name: str, lo=None, hi=None) -> tuple[z3.ArithRef, Lin]:
        """A new Real with optional bounds, and its form."""
        v = z3.Real(name)
        self.asserts += ([] if lo is None else [v >= _q(lo)]) + ([] if hi is None else [v <= _q(hi)])
        self.vars.append(v)
        return v, Lin({len(self.vars) - 1: Fraction(1)})

    def z(self, e: Lin) -> z3.ArithRef:
        """The Real of a form: the variable itself, or a new Real a with a = form."""
        if e.const == 0 and len(e.coef) == 1 and next(iter(e.coef.values())) == 1:
            return self.vars[next(iter(e.coef))]
        a, _ = self.new(f"a{len(self.vars)}")
        self.asserts.append(a == z3.Sum([_q(c) * self.vars[v] for v, c in e.coef.items()] + [_q(e.const)]))
        return a

    def relu(self, e, lo, hi):
        """max(e, 0) for an entry e with bounds [lo, hi] (None: unknown); see the module docstring."""
        if _is_const(e):
            return max(e, Fraction(0))
        if hi is not None and hi <= 0:
            return Fraction(0)
        if lo is not None and lo >= 0:
            return e
        a, p = self.z(e), z3.Bool(f"p{self.n_phases}")
        r, out = self.new(f"r{self.n_phases}")
        self.n_phases += 1
        self.asserts += [r >= 0, r >= a, z3.Or(z3.Not(p), a >= 0), z3.Or(z3.Not(p), r <= a), z3.Or(p, a <= 0), z3.Or(p, r <= 0)]
        if lo is not None:
            l, u = _outward(lo, False), _outward(hi, True)
            self.asserts += [a >= _q(l), a <= _q(u), _q(u - l) * r <= _q(u) * (a - _q(l))]
        return out

    def max(self, entries, lows, highs):
        """The maximum of entries with bounds [lows, highs] (None: unknown); see the module docstring."""
        floor = max((l for l in lows if l is not None), default=None)
        keep = [e for e, h in zip(entries, highs) if h is None or floor is None or h >= floor]
        consts = [e for e in keep if _is_const(e)]
        keep = [e for e in keep if not _is_const(e)] + ([max(consts)] if consts else [])
        if len(keep) == 1:
            return keep[0]
        ts = [_q(e) if _is_const(e) else self.z(e) for e in keep]
        m, out = self.new(f"m{len(self.vars)}", None if floor is None else _outward(floor, False),
                          None if None in highs else _outward(max(highs), True))
        chain = ts[0]
        for t in ts[1:]:
            chain = z3.If(t > chain, t, chain)
        self.asserts += [m == chain] + [m >= t for t in ts]
        return out


def _member_choice(b: _Builder, threat: Boxes, inputs) -> list:
    """An explicit union of boxes: one Bool m_k per member, exactly one true, and m_k -> x_v in
    [lo_kv, hi_kv] for every input variable whose interval in member k is narrower than the hull."""
    if len(threat.lo) == 1:
        return []
    choice = [z3.Bool(f"member{k}") for k in range(len(threat.lo))]
    b.asserts.append(z3.PbEq([(c, 1) for c in choice], 1))
    lo, hi = (a.reshape(len(a), -1) for a in (threat.lo, threat.hi))
    hull_lo, hull_hi = lo.min(0), hi.max(0)
    for i, v in inputs:
        for k in np.flatnonzero((lo[:, i] > hull_lo[i]) | (hi[:, i] < hull_hi[i])):
            b.asserts.append(z3.Implies(choice[k], z3.And(b.vars[v] >= _q(lo[k, i]), b.vars[v] <= _q(hi[k, i]))))
    return choice


def encode(q: Query) -> Encoding:
    """The exact encoding described in the module docstring."""
    start = time.perf_counter()
    net, b = q.net, _Builder()

    def layer_bounds(i, n):
        if q.bounds is None:
            return [None] * n, [None] * n
        return list(q.bounds[i][0].ravel()), list(q.bounds[i][1].ravel())

    # input: variables for perturbable voxels, choice Booleans for unions of boxes
    x0 = np.asarray(q.x0, dtype=np.float64)
    lo, hi = q.threat.interval(x0, q.domain)
    movable = np.broadcast_to(q.threat.perturbable(x0.shape)[None], x0.shape) & (lo < hi)
    vals = np.array([Fraction(v) for v in x0.ravel()], dtype=object)
    inputs = []
    for i in np.flatnonzero(movable):
        _, vals[i] = b.new(f"x{i}", lo.flat[i], hi.flat[i])
        inputs.append((int(i), len(b.vars) - 1))
    choice = []
    if isinstance(q.threat, Boxes):
        choice = _member_choice(b, q.threat, inputs)
    elif q.threat.choose < len(regions := q.threat.regions(x0.shape)):
        choice = [z3.Bool(f"region{r}") for r in range(len(regions))]
        b.asserts.append(z3.PbEq([(c, 1) for c in choice], q.threat.choose))
        cover = np.stack([r.mask(x0.shape[1:]) for r in regions], axis=-1)  # T x H x W x regions
        for i, v in inputs:
            _, t, yy, xx = np.unravel_index(i, x0.shape)
            moved = z3.Or([choice[r] for r in np.flatnonzero(cover[t, yy, xx])])
            b.asserts.extend([z3.Or(moved, b.vars[v] <= _q(x0.flat[i])), z3.Or(moved, b.vars[v] >= _q(x0.flat[i]))])

    tensors = [vals]  # the entries of every tensor, flat
    for li, (layer, src) in enumerate(zip(net.layers, net.sources)):
        ins, n = [tensors[t] for t in src], int(np.prod(net.shapes[li + 1]))
        if isinstance(layer, Flatten):
            vals = ins[0]
        elif isinstance(layer, Concat):
            vals = np.concatenate(ins)
        elif isinstance(layer, ReLU):
            lows, highs = layer_bounds(src[0], n)
            vals = np.array([b.relu(e, l, h) for e, l, h in zip(ins[0], lows, highs)], dtype=object)
        elif isinstance(layer, MaxPool3d):
            lows, highs = layer_bounds(src[0], len(ins[0]))
            lows = [e if _is_const(e) else l for e, l in zip(ins[0], lows)]
            highs = [e if _is_const(e) else h for e, h in zip(ins[0], highs)]
            win = pool_windows(layer, net.shapes[src[0]], np.arange(n))
            vals = np.array([b.max(list(ins[0][w[w >= 0]]), [lows[i] for i in w[w >= 0]], [highs[i] for i in w[w >= 0]])
                             for w in win], dtype=object)
        elif isinstance(layer, TERMS):
            vals = _node_values(layer, [net.shapes[t] for t in src], ins, n)
        else:
            raise TypeError(f"the SMT encoding does not support node {li}: {layer.describe()}")
        tensors.append(vals)

    diffs = []
    for j in q.competitors:
        e = _combine([Fraction(1), Fraction(-1)], [vals[j], vals[q.y]], Fraction(0))
        if not _is_const(e):
            e = b.z(e)
            if q.margin_lb is not None:  # lemma: logit_y - logit_j >= the STBP margin bound m_j
                b.asserts.append(e <= _q(_outward(-q.margin_lb[j], True)))
        diffs.append(e)
    stats = {"n_reals": len(b.vars), "n_bools": b.n_phases + len(choice), "unstable_relus": b.n_phases,
             "choice_bools": len(choice), "input_vars": len(inputs), "n_assertions": len(b.asserts),
             "lemmas": q.bounds is not None, "build_s": time.perf_counter() - start}
    return Encoding(b.asserts, b.vars, inputs, diffs, q, stats)


def solve(q: Query, timeout: float | None = None, report=None) -> dict:
    """Decide (1) at delta = 0 in this process; z3 stops ``timeout`` seconds after the call.

    Returns {"status": "sat" | "unsat" | "unknown", "reason", "x", "margin", "cut", "stats"}: for
    sat, ``x`` is the model's input (float64), ``margin`` its exact min_j logit_y - logit_j (as a
    float), ``cut`` whether time ran out while improving it.  Simplex stops on the boundary, so
    the first point is often a tie, which does not replay in float32: while its margin is
    > -SEARCH_MARGIN, z3 is asked (incrementally, at most MAX_IMPROVE times) for a point with a
    strictly smaller margin.  ``report(stats)`` is called once the encoding is built (a parent
    that has to kill this process keeps them).
    """
    deadline = None if timeout is None else time.perf_counter() + timeout
    enc = encode(q)
    if report is not None:
        report(enc.stats)
    s = z3.SimpleSolver()  # no preprocessing: it would substitute the defined Reals back (dense rows)
    s.add(enc.assertions)
    stats = dict(enc.stats, check_s=0.0, improvements=0)

    def check(prop):
        if deadline is not None:
            s.set("timeout", max(1, int(1000 * (deadline - time.perf_counter()))))
        s.add(prop)
        t = time.perf_counter()
        r = s.check()
        stats["check_s"] += time.perf_counter() - t
        return r

    res = check(enc.negation())
    if res == z3.unknown:
        return {"status": "unknown", "reason": s.reason_unknown(), "stats": stats}
    if res == z3.unsat:
        return {"status": "unsat", "stats": stats}
    x, margin = enc.point(s.model())
    while margin > -SEARCH_MARGIN and stats["improvements"] < MAX_IMPROVE:
        res = check(enc.negation(-margin, strict=True))
        if res != z3.sat:
            break
        x, margin = enc.point(s.model())
        stats["improvements"] += 1
    return {"status": "sat", "x": x, "margin": float(margin), "cut": res == z3.unknown, "stats": stats}
