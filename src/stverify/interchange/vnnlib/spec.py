"""A parsed VNN-LIB property: the input boxes and the unsafe output set OR_k AND_i (c_ki . Y + d_ki >= 0)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...threats import Boxes


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

    @classmethod
    def robustness(cls, label: int, n_outputs: int) -> "OutputSpec":
        """Some class j != label scores at least as high as ``label``: OR_j (Y_j >= Y_label)."""
        if not 0 <= label < n_outputs:
            raise InputError(f"label {label} out of range for {n_outputs} outputs")
        rows = np.eye(n_outputs) - np.eye(n_outputs)[label]
        return cls(tuple((Atom(rows[j], 0.0),) for j in range(n_outputs) if j != label), n_outputs)

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


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """A parsed file: the input set (a union of K boxes over the n flattened inputs) and the output property."""

    path: str
    lo: np.ndarray  # K x n
    hi: np.ndarray
    output: OutputSpec

    @property
    def n_inputs(self) -> int:
        return self.lo.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.output.n_outputs

    def threat(self, shape) -> Boxes:
        """The input set as a stverify threat over inputs of ``shape`` (C x T x H x W)."""
        k = len(self.lo)
        return Boxes.of(self.lo.reshape((k,) + tuple(shape)), self.hi.reshape((k,) + tuple(shape)))
