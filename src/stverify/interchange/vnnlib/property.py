"""A VNN-LIB property bound to a network (see the package docstring): the reduction to the label
margin, verification, and the check of witnesses on the original network."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError
from ...network.graph import Network
from ...properties import reduce_to_label
from ...replay import logits32
from ...threats import Boxes
from ..vnncomp import STATUS_TO_RESULT, Witness
from .read import parse_vnnlib
from .spec import VnnlibSpec


@dataclass
class WitnessCheck:
    """A candidate counterexample checked against the original network and the parsed property."""

    ok: bool
    x: np.ndarray  # flat input
    y64: np.ndarray  # outputs of the float64 reference
    y32: np.ndarray  # outputs of the float32 model
    in_set: bool
    unsafe64: bool
    unsafe32: bool

    @property
    def reason(self) -> str:
        if self.ok:
            return ""
        if not self.in_set:
            return "the point is not in the input set"
        return f"the outputs are not in the unsafe set (float64: {self.unsafe64}, float32: {self.unsafe32})"


@dataclass
class VnnlibProperty:
    """A VNN-LIB property bound to a network, ready for ``verify`` (module docstring)."""

    spec: VnnlibSpec
    network: Network  # the original network
    threat: Boxes  # the input set
    x0: np.ndarray  # a point of it (the threat's reference point)
    target: Network  # the network whose label margin decides the property
    label: int
    stats: dict = field(default_factory=dict)

    def verify(self, method: str = "bab", timeout: float | None = None, **options):
        """``stverify.verify`` on (target, x0, label, threat); a ``falsified`` answer's counterexample
        is a point of the input set with margin < 0, i.e. an unsafe one (see ``check_witness``)."""
        from ...verify import verify

        return verify(self.target, self.x0, self.label, self.threat, method=method, timeout=timeout, **options)

    def check_witness(self, x: np.ndarray) -> WitnessCheck:
        """Is x in the input set (exactly) and are the original network's outputs at x unsafe, in the
        float64 reference and in the float32 model?"""
        x = np.asarray(x, dtype=np.float64).reshape(self.network.input_shape)
        y64 = self.network.forward(x)
        y32 = logits32(self.network, x)
        in_set = self.threat.contains(x, x, tol=0.0)
        u64, u32 = self.spec.output.unsafe(y64), self.spec.output.unsafe(y32)
        return WitnessCheck(in_set and u64 and u32, x.ravel(), y64, y32, in_set, u64, u32)

    def witness(self, x: np.ndarray) -> WitnessCheck:
        """The check of x, or of x rounded to float32 when that point passes too (an ONNX runtime
        reads the witness in float32, so a float32-exact witness is read exactly)."""
        x = np.asarray(x, dtype=np.float64)
        exact = self.check_witness(x.astype(np.float32).astype(np.float64))
        return exact if exact.ok else self.check_witness(x)

    def answer(self, res) -> tuple[str, Witness | None, str]:
        """(VNN-COMP result, witness for ``sat``, a note) for a VerifyResult of ``verify``."""
        result = STATUS_TO_RESULT[res.status]
        if result != "sat":
            return result, None, res.message
        w = self.witness(res.counterexample)
        if not w.ok:  # cannot happen when the reduction is right; never report an unchecked sat
            return "unknown", None, f"the counterexample fails the check on the original network: {w.reason}"
        return "sat", Witness(w.x, w.y64), f"witness checked on the original network (property margin " \
                                           f"{self.spec.output.margin(w.y64):.6g} in float64)"


def load_vnnlib(path, net) -> VnnlibProperty:
    """Read a VNN-LIB file for ``net`` (a Network or anything ``load_network`` accepts)."""
    from ...network.load import load_network

    net = load_network(net)
    spec = parse_vnnlib(path) if not isinstance(path, VnnlibSpec) else path
    size = int(np.prod(net.input_shape))
    if spec.n_inputs != size:
        raise InputError(f"{spec.path}: declares {spec.n_inputs} inputs X_0..X_{spec.n_inputs - 1}, but the network's input "
                         f"{'x'.join(map(str, net.input_shape))} has {size} entries")
    if spec.n_outputs != net.n_classes:
        raise InputError(f"{spec.path}: declares {spec.n_outputs} outputs Y_j, but the network has {net.n_classes}")
    threat = spec.threat(net.input_shape)
    target, label = reduce_to_label(net, spec.output)
    stats = {"members": len(spec.lo), "output_disjuncts": len(spec.output.disjuncts),
             "reduction": "label" if target is net else f"{len(target.layers) - len(net.layers)} appended layer(s)"}
    return VnnlibProperty(spec, net, threat, threat.reference, target, label, stats)
