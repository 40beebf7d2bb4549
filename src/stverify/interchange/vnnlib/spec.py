"""A parsed VNN-LIB property: the input boxes and the unsafe output set OR_k AND_i (c_ki . Y + d_ki >= 0)
(``properties.OutputSpec``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...properties import OutputSpec
from ...threats import Boxes


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
