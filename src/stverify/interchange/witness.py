"""Another tool's witness checked against an instance, with an explicit tolerance
(``tolerances.WITNESS_TOL_REL``) that separates a wrong verdict from a witness on the decision boundary.

A witness w of a claimed counterexample (a VNN-COMP ``sat``) for instance (net, x0, y, S) is

* ``counterexample``: w lies in S (to ``MEMBERSHIP_TOL`` per voxel) and replays (``replay.replay``:
  misclassified in the float64 reference and in the float32 model); the claim is proven;
* ``boundary``: w lies in S, does not replay, but both margins m64, m32 (logit_y - max_{j != y} logit_j)
  are <= tol = WITNESS_TOL_REL * max(1, max |logit|): a point on the decision boundary, where tools that
  compute in float32 or with LP tolerances legitimately answer ``sat``.  Reported, not a wrong verdict,
  unless an exact answer contradicts it (``contradicts``);
* ``wrong``: anything else: a witness of the wrong size, outside S, or with a margin beyond the
  tolerance; the claim is contradicted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import tolerances
from ..replay import replay

KINDS = ("counterexample", "boundary", "wrong")


@dataclass(frozen=True)
class WitnessCheck:
    kind: str  # one of KINDS
    why: str = ""  # for boundary and wrong: what was found, with the numbers
    margin64: float = float("nan")
    margin32: float = float("nan")
    tol: float = float("nan")  # the boundary tolerance at this witness

    def contradicts(self, margin_lb: float | None) -> bool:
        """Whether a proven lower bound ``margin_lb`` of the minimum margin over S rules this witness out:
        the witness is a point of S, so the minimum is at most its float64 margin (within the tolerance)."""
        return margin_lb is not None and self.kind != "wrong" and margin_lb > self.margin64 + self.tol


def check_witness(net, x0: np.ndarray, y: int, threat, w: np.ndarray) -> WitnessCheck:
    """Classify the witness ``w`` (any shape holding x0.size values, e.g. flat in ONNX order) of a claimed
    counterexample of (net, x0, y, threat) (module docstring)."""
    x0 = np.asarray(x0, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if w.size != x0.size:
        return WitnessCheck("wrong", f"the counterexample has {w.size} values, the input {x0.size}")
    w = w.reshape(x0.shape)
    if not threat.contains(x0, w, tol=tolerances.MEMBERSHIP_TOL):
        return WitnessCheck("wrong", "the counterexample lies outside the threat set")
    rep = replay(net, x0, y, threat, w)
    tol = tolerances.WITNESS_TOL_REL * max(1.0, float(np.max(np.abs(net.forward(rep.point)))))
    margins = f"float64 margin {rep.margin64:.3g}, float32 margin {rep.margin32:.3g}"
    if rep.ok:
        return WitnessCheck("counterexample", "", rep.margin64, rep.margin32, tol)
    if max(rep.margin64, rep.margin32) <= tol:
        return WitnessCheck("boundary", f"a boundary witness ({margins}: within {tol:.2g} of the decision boundary)",
                            rep.margin64, rep.margin32, tol)
    return WitnessCheck("wrong", f"not misclassified on replay ({margins}; beyond the boundary tolerance {tol:.2g})",
                        rep.margin64, rep.margin32, tol)
