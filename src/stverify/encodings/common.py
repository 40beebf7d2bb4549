"""What every exact encoding needs to know before it creates a single variable.

``depends[t]`` marks the entries of tensor t (``depends[len(layers)]``: the outputs) that can
change at all over the threat set: an entry depends on the perturbable voxels iff some path of
non-zero weights connects them.  Entries that do not depend are constants, equal to the clean
activations at x0, and need no variable.  It is computed by running the network with |W| and zero
biases (|scale| and zero shifts for a per-channel affine) on the 0/1 indicator of the perturbable
voxels (every node is then monotone and maps non-negative inputs to non-negative outputs, so an
output is > 0 iff it depends).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..network.graph import Network
from ..network.layers import BatchNorm, Conv3d, Linear


def _magnitude(layer):
    if isinstance(layer, (Conv3d, Linear)):
        return replace(layer, weight=np.abs(layer.weight), bias=np.zeros_like(layer.bias))
    if isinstance(layer, BatchNorm):
        return BatchNorm(np.abs(layer.scale), np.zeros_like(layer.shift))
    return layer


def dependency_masks(net: Network, perturbable: np.ndarray) -> list[np.ndarray]:
    """Boolean masks, one per tensor (see the module docstring)."""
    h = np.broadcast_to(perturbable[None], net.input_shape).astype(np.float64)[None]
    return [v[0] > 0 for v in net.with_layers([_magnitude(layer) for layer in net.layers]).values(h)]


@dataclass
class Prepared:
    """The clean activations and dependency masks for one instance."""

    clean: list[np.ndarray]  # net.activations(x0)
    depends: list[np.ndarray]


def prepare(net: Network, x0: np.ndarray, threat) -> Prepared:
    return Prepared(net.activations(x0), dependency_masks(net, threat.perturbable(np.shape(x0))))
