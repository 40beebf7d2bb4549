"""What every exact encoding needs to know before it creates a single variable.

``depends[i]`` marks the entries of the input of layer i (``depends[len(layers)]``: the logits)
that can change at all over the threat set: an entry depends on the perturbable voxels iff some
path of non-zero weights connects them.  Entries that do not depend are constants, equal to the
clean activations at x0, and need no variable.  It is computed by running the network with
|W| and zero biases on the 0/1 indicator of the perturbable voxels (every layer is monotone and
maps non-negative inputs to non-negative outputs, so an output is > 0 iff it depends).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network.graph import Network
from ..network.layers import Conv3d, Linear


def dependency_masks(net: Network, perturbable: np.ndarray) -> list[np.ndarray]:
    """Boolean masks, one per layer input and one for the output (see the module docstring)."""
    layers = [type(l)(np.abs(l.weight), np.zeros_like(l.bias), *((l.stride, l.padding) if isinstance(l, Conv3d) else ()))
              if isinstance(l, (Conv3d, Linear)) else l for l in net.layers]
    h = np.broadcast_to(perturbable[None], net.input_shape).astype(np.float64)[None]
    masks = [h[0] > 0]
    for layer in layers:
        h = layer.forward(h)
        masks.append(h[0] > 0)
    return masks


@dataclass
class Prepared:
    """The clean activations and dependency masks for one instance."""

    clean: list[np.ndarray]  # net.activations(x0)
    depends: list[np.ndarray]


def prepare(net: Network, x0: np.ndarray, threat) -> Prepared:
    return Prepared(net.activations(x0), dependency_masks(net, threat.perturbable(np.shape(x0))))
