"""Building a Network node by node, as both importers do.

An importer adds nodes in topological order (``add``, which checks shapes), maps operations that
compute nothing (Identity, eval-mode Dropout, flattening a flat tensor) to the tensor they read, and
finally asks for the network computing one tensor (``network``).  That last step

* folds each ``BatchNorm`` node (an eval-mode batch norm, or a constant per-channel bias or scale:
  y_c = s_c x_c + t_c) into the Conv3d, Linear or BatchNorm node it reads when nothing else reads
  that node's output: W'[c] = s_c W[c], b'_c = s_c b_c + t_c is the same map;
* drops the nodes the output does not depend on, and renumbers the rest (a chain stays a chain);
* makes node names distinct (a module called twice: ``relu``, ``relu_1``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from .graph import Network
from .layers import BatchNorm, Conv3d, Flatten, Layer, Linear, Shape

ABSORBS_BATCHNORM = (Conv3d, Linear, BatchNorm)


def scaled(layer: Layer, scale: np.ndarray, shift: np.ndarray) -> Layer:
    """``layer`` followed by y_c = scale_c x_c + shift_c (per output channel), as one node."""
    if isinstance(layer, BatchNorm):
        return BatchNorm(layer.scale * scale, layer.shift * scale + shift)
    s = scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    return dataclasses.replace(layer, weight=layer.weight * s, bias=layer.bias * scale + shift)


def per_channel(c: np.ndarray, shape: Shape) -> np.ndarray:
    """A constant that broadcasts to a tensor of ``shape`` (batch of one) as one value per channel
    (axis 0 of ``shape``); ValueError if it does not broadcast or varies within a channel."""
    c = np.asarray(c, dtype=np.float64)
    full = (1,) + tuple(shape)
    try:
        fits = np.broadcast_shapes(c.shape, full) == full
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"the constant of shape {c.shape} does not broadcast to the tensor's shape {full}")
    per = np.broadcast_to(c, full)[0].reshape(shape[0], -1)
    if not np.all(per == per[:, :1]):
        raise ValueError("the constant varies within a channel: only a constant per channel (or a scalar) is supported")
    return per[:, 0].copy()


def constant_op(op: str, c: np.ndarray, tensor_first: bool, alpha: float = 1.0) -> BatchNorm:
    """The per-channel affine node of ``x op c`` (``c op x`` unless ``tensor_first``) for op in add,
    sub, mul, div and a per-channel constant c: x + alpha c, x - alpha c, c + alpha x, c - alpha x,
    x c, x / c.  ValueError for c / x (not affine)."""
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    if op in ("add", "sub"):
        sign = 1 if op == "add" else -1
        return BatchNorm(ones, sign * alpha * c) if tensor_first else BatchNorm(sign * alpha * ones, c)
    if op == "mul":
        return BatchNorm(c, zeros)
    if not tensor_first:
        raise ValueError("divides a constant by a computed tensor (not affine)")
    return BatchNorm(1 / c, zeros)


class GraphBuilder:
    """Nodes over tensors (0: the input; k + 1: the output of node k) and the shape of each tensor
    (without the batch axis).  Shape errors are raised as ``error`` (the importer's error type)."""

    def __init__(self, input_shape: Shape, error: type[InputError]):
        self.shapes: list[Shape] = [tuple(input_shape)]
        self.layers: list[Layer] = []
        self.sources: list[tuple[int, ...]] = []
        self.names: list[str] = []
        self.error = error

    def add(self, layer: Layer, sources, name: str, where: str) -> int:
        """Append ``layer`` reading the tensors ``sources``; return its output tensor."""
        sources = tuple(sources)
        try:
            shape = layer.output_shape(*(self.shapes[t] for t in sources))
        except ValueError as e:
            raise self.error(f"{where}: {e}") from None
        self.layers.append(layer)
        self.sources.append(sources)
        self.names.append(name)
        self.shapes.append(tuple(shape))
        return len(self.layers)

    def flatten(self, t: int, name: str, where: str) -> int:
        """Tensor ``t`` flattened (``t`` itself when it is flat already)."""
        return t if len(self.shapes[t]) == 1 else self.add(Flatten(), [t], name, where)

    def network(self, output: int, name: str) -> Network:
        """The network computing tensor ``output`` (module docstring)."""
        live = set(self._ancestors(output, self.sources))  # a node the output does not need must not block a fold
        layers, sources = list(self.layers), [list(s) for s in self.sources]
        moved = {}  # the output tensor of a folded node -> the tensor now holding its value
        for i in sorted(live):
            sources[i] = [moved.get(t, t) for t in sources[i]]
            if isinstance(layers[i], BatchNorm) and self._absorbed(i, sources, moved, live):
                (t,) = sources[i]
                layers[t - 1] = scaled(layers[t - 1], layers[i].scale, layers[i].shift)
                moved[i + 1] = t
                live.remove(i)
        output = moved.get(output, output)
        keep = self._ancestors(output, sources)
        index = {0: 0} | {k + 1: j + 1 for j, k in enumerate(keep)}
        return Network([layers[k] for k in keep], self.shapes[0], name,
                       [tuple(index[t] for t in sources[k]) for k in keep], _distinct([self.names[k] for k in keep]))

    def _absorbed(self, i: int, sources, moved: dict, live: set) -> bool:
        """Node i (a BatchNorm) reads the output of a node that can absorb it, and no other node
        the output needs reads that output (``moved`` resolves the sources of the nodes after i)."""
        (t,) = sources[i]
        if t == 0 or not isinstance(self.layers[t - 1], ABSORBS_BATCHNORM):
            return False
        return all(j == i or t not in [moved.get(u, u) for u in sources[j]] for j in live)

    @staticmethod
    def _ancestors(output: int, sources) -> list[int]:
        """The nodes the tensor ``output`` depends on, in order."""
        need, keep = {output}, []
        for k in range(len(sources) - 1, -1, -1):
            if k + 1 in need:
                keep.append(k)
                need.update(sources[k])
        return keep[::-1]


def _distinct(names: list[str]) -> list[str]:
    """``names`` with repeats (and 'input') suffixed _1, _2, ... to make each distinct."""
    used, out = {"input"}, []
    for name in names:
        candidate, k = name, 0
        while candidate in used:
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate)
        out.append(candidate)
    return out
