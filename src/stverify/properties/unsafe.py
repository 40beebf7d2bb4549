"""Output properties as unsafe sets: OR_k AND_i (c_ki . Y + d_ki >= 0) over the network outputs Y.

A property holds at an input when its outputs lie outside the unsafe set; its *margin* there is
    m(Y) = min_k max_i -(c_ki . Y + d_ki),
> 0 inside the property (every disjunct k has an atom that fails), < 0 at a violation (all atoms of
some disjunct hold strictly).  Verification decides min over the threat set of m > 0; every method
reports bounds of that minimum (``margin_lb``, ``margin_ub``).  The constructors below give the
properties stverify names (``grammar``): the label robustness of every classifier (margin
min_{j != y} Y_y - Y_j), a regression band, a range, a targeted class, top-k; VNN-LIB states any
other (``interchange.vnnlib``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MAX_DISJUNCTS = 10_000  # top-k writes C(n - 1, k) disjuncts


@dataclass(frozen=True, eq=False)
class Atom:
    """c . Y + d >= 0 (> 0 when ``strict``)."""

    coef: np.ndarray
    const: float
    strict: bool = False

    def value(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) @ self.coef + self.const

    def holds(self, y: np.ndarray) -> np.ndarray:
        v = self.value(y)
        return v > 0 if self.strict else v >= 0


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """The unsafe output set: OR over ``disjuncts`` of AND over their atoms."""

    disjuncts: tuple[tuple[Atom, ...], ...]
    n_outputs: int

    def closure(self) -> "OutputSpec":
        """The same unsafe set with every strict atom closed (``>`` as ``>=``), as VNN-COMP's readers
        take it (they parse ``<=`` and ``>=`` only).  A violation lies in the closure too, so a property
        verified on the closure holds; only points exactly on a strict atom's boundary tell them apart."""
        return OutputSpec(tuple(tuple(Atom(a.coef, a.const) for a in d) for d in self.disjuncts), self.n_outputs)

    @classmethod
    def robustness(cls, label: int, n_outputs: int) -> "OutputSpec":
        """Some class j != label scores at least as high as ``label``: OR_j (Y_j >= Y_label)."""
        _index(label, n_outputs, "label")
        rows = np.eye(n_outputs) - np.eye(n_outputs)[label]
        return cls(tuple((Atom(rows[j], 0.0),) for j in range(n_outputs) if j != label), n_outputs)

    @classmethod
    def band(cls, output: int, lo: float | None, hi: float | None, n_outputs: int) -> "OutputSpec":
        """Y_output leaves [lo, hi] (None: no bound on that side): (Y_i > hi) OR (Y_i < lo);
        margin min(hi - Y_i, Y_i - lo)."""
        _index(output, n_outputs, "output")
        e = np.eye(n_outputs)[output]
        sides = [(Atom(e, -float(hi), True),) if hi is not None else None,
                 (Atom(-e, float(lo), True),) if lo is not None else None]
        return cls(tuple(s for s in sides if s is not None), n_outputs)

    @classmethod
    def target(cls, target: int, n_outputs: int) -> "OutputSpec":
        """Class ``target`` wins (scores at least as high as every other): AND_j (Y_t - Y_j >= 0);
        margin max_{j != t} Y_j - Y_t."""
        _index(target, n_outputs, "class")
        if n_outputs < 2:
            raise InputError("a targeted property needs a classifier with at least 2 outputs")
        rows = np.eye(n_outputs)[target] - np.eye(n_outputs)
        return cls((tuple(Atom(rows[j], 0.0) for j in range(n_outputs) if j != target),), n_outputs)

    @classmethod
    def top_k(cls, label: int, k: int, n_outputs: int) -> "OutputSpec":
        """``label`` is not among the k highest scores: some k other classes all score at least as
        high, OR_J AND_{j in J} (Y_j - Y_y >= 0) over the k-subsets J of the others; margin
        Y_y - (the k-th highest other score)."""
        _index(label, n_outputs, "label")
        if not 1 <= k < n_outputs:
            raise InputError(f"topk: k must be in 1..{n_outputs - 1} (k >= {n_outputs} always holds), got {k}")
        if math.comb(n_outputs - 1, k) > MAX_DISJUNCTS:
            raise InputError(f"topk: k={k} of {n_outputs} classes states C({n_outputs - 1}, {k}) = "
                             f"{math.comb(n_outputs - 1, k):,} disjuncts, over the limit of {MAX_DISJUNCTS:,}")
        rows = np.eye(n_outputs) - np.eye(n_outputs)[label]
        others = [j for j in range(n_outputs) if j != label]
        return cls(tuple(tuple(Atom(rows[j], 0.0) for j in J) for J in itertools.combinations(others, k)), n_outputs)

    def robustness_label(self) -> int | None:
        """y if the property is exactly OR over every j != y of (Y_j >= Y_y) (or >), else None."""
        if not all(len(d) == 1 for d in self.disjuncts) or len(self.disjuncts) != self.n_outputs - 1:
            return None
        pairs = set()
        for (a,) in self.disjuncts:
            nz = np.flatnonzero(a.coef)
            if a.const != 0 or len(nz) != 2 or sorted(a.coef[nz]) != [-1.0, 1.0]:
                return None
            pairs.add((int(nz[a.coef[nz] > 0][0]), int(nz[a.coef[nz] < 0][0])))
        labels = {y for _, y in pairs}
        if len(labels) != 1:
            return None
        y = labels.pop()
        return y if {j for j, _ in pairs} == set(range(self.n_outputs)) - {y} else None

    def unsafe(self, y: np.ndarray) -> bool:
        """Whether the outputs y lie in the unsafe set."""
        return any(all(bool(a.holds(y)) for a in d) for d in self.disjuncts)

    def margin(self, y: np.ndarray) -> float:
        """min_k max_i (-(c_ki . y + d_ki)): > 0 means y is safe, < 0 unsafe (module docstring)."""
        return min(max(-float(a.value(y)) for a in d) for d in self.disjuncts)

    def margins(self, ys: np.ndarray) -> np.ndarray:
        """``margin`` for every row of ys (N x n_outputs)."""
        ys = np.atleast_2d(np.asarray(ys, dtype=np.float64))
        return np.min([np.max([-a.value(ys) for a in d], axis=0) for d in self.disjuncts], axis=0)


def _index(i, n: int, what: str) -> int:
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise InputError(f"{what} {i!r} is not an output of the model: expected 0..{n - 1} ({n} outputs)")
    return int(i)
