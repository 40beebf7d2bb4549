"""The network: a directed acyclic graph of nodes (``layers``) over tensors.

Tensors are numbered: tensor 0 is the network input (C x T x H x W), tensor i + 1 the output of
``layers[i]``, and the last tensor the network output (a flat vector: logits, or regression
outputs).  ``sources[i]`` lists the tensors node i reads, all computed before it (the nodes are in
topological order).  A chain is the special case ``sources[i] == (i,)``: tensor i is then the
input of ``layers[i]``, and everything indexed by tensor (``shapes``, bounds, MILP variables) reads
as it always has.  Every tensor but the output is read by some node.

A node is named (``names``: module paths of a torch model, node names of an ONNX graph; ``"3"``
by default); ``net.tensor("block1.add")`` is the index of that node's output tensor, and
``net.tensor("input")`` is 0.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .layers import LINEAR, Layer, ReLU, Shape


@dataclass(frozen=True, eq=False, repr=False)
class Network:
    """Nodes ``layers`` applied to inputs of shape ``input_shape`` (C x T x H x W), reading the
    tensors ``sources`` (None: a chain); building one checks the graph, the shapes and that every
    weight is finite (``InputError`` otherwise)."""

    layers: tuple[Layer, ...]
    input_shape: Shape
    name: str = "network"
    sources: tuple[tuple[int, ...], ...] | None = None
    names: tuple[str, ...] | None = None
    shapes: tuple[Shape, ...] = field(init=False)  # shapes[t]: the shape of tensor t

    def __post_init__(self):
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        n = len(layers)
        sources = tuple((i,) for i in range(n)) if self.sources is None else tuple(tuple(int(t) for t in s)
                                                                                   for s in self.sources)
        names = tuple(str(i) for i in range(n)) if self.names is None else tuple(str(s) for s in self.names)
        if len(sources) != n or len(names) != n:
            raise InputError(f"a network of {n} nodes needs {n} source lists and names, got {len(sources)} and {len(names)}")
        if len(set(names)) != n or "input" in names:
            raise InputError(f"node names must be distinct and not 'input', got {sorted(names)[:5]}...")
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "names", names)
        shapes = [self.input_shape]
        for i, (layer, src) in enumerate(zip(layers, sources)):
            where = f"layer {i}{'' if names[i] == str(i) else f' {names[i]!r}'} ({layer.describe()})"
            if not src or any(not 0 <= t <= i for t in src):
                raise InputError(f"{where} reads tensors {list(src)}: each must be computed before it (0..{i})")
            if (layer.arity and len(src) != layer.arity) or (not layer.arity and len(src) < 2):
                raise InputError(f"{where} reads {len(src)} tensor(s), it takes {layer.arity or 'two or more'}")
            try:
                shapes.append(tuple(layer.output_shape(*(shapes[t] for t in src))))
            except ValueError as e:
                raise InputError(f"{where}: {e}") from None
            for part in ("weight", "bias", "scale", "shift"):
                bad = int(np.sum(~np.isfinite(getattr(layer, part, np.zeros(0)))))
                if bad:
                    raise InputError(f"{where}: {bad} non-finite {part} value(s) (NaN or Inf)")
        read = {t for src in sources for t in src}
        if unused := [t for t in range(n) if t not in read]:
            t = unused[0]
            what = "the input" if t == 0 else f"the output of node {t - 1} '{names[t - 1]}'"
            raise InputError(f"{what} is never used: a network computes one output, its last node's")
        if len(shapes[-1]) != 1:
            raise InputError(f"the network must end in a flat output vector, got output shape {shapes[-1]}")
        object.__setattr__(self, "shapes", tuple(shapes))

    # --- structure -----------------------------------------------------------------------
    @property
    def is_chain(self) -> bool:
        return all(src == (i,) for i, src in enumerate(self.sources))

    def source(self, i: int) -> int:
        """The one tensor node i reads (for single-input nodes: ReLU, Conv3d, ...)."""
        (t,) = self.sources[i]
        return t

    @functools.cached_property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """Per tensor, the nodes that read it (the output tensor: none)."""
        out = [[] for _ in range(len(self.layers) + 1)]
        for i, src in enumerate(self.sources):
            for t in dict.fromkeys(src):
                out[t].append(i)
        return tuple(tuple(c) for c in out)

    @functools.cached_property
    def affine_in_input(self) -> frozenset[int]:
        """The tensors that are affine functions of the input: no ReLU or max-pool on any path
        from the input (their bounds over a threat set are exact by CROWN / closed form)."""
        out = {0}
        for i, (layer, src) in enumerate(zip(self.layers, self.sources)):
            if isinstance(layer, LINEAR) and all(t in out for t in src):
                out.add(i + 1)
        return frozenset(out)

    @property
    def relu_inputs(self) -> dict[int, int]:
        """ReLU node index -> the tensor it reads."""
        return {i: self.source(i) for i, layer in enumerate(self.layers) if isinstance(layer, ReLU)}

    def tensor(self, ref) -> int:
        """The tensor index of ``ref``: an index 0..len(layers), 'input', or a node's name (its output)."""
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            if not 0 <= int(ref) <= len(self.layers):
                raise InputError(f"tensor {ref} does not exist: 0 (the input) .. {len(self.layers)} (the output)")
            return int(ref)
        if ref == "input":
            return 0
        if isinstance(ref, str) and ref in self.names:
            return self.names.index(ref) + 1
        some = ", ".join(self.names[:6]) + (", ..." if len(self.names) > 6 else "")
        raise InputError(f"no node named {ref!r} in {self.name}; nodes: {some} (or an index 0..{len(self.layers)})")

    def then(self, layers, name: str) -> "Network":
        """This network followed by the chain ``layers`` on its output."""
        n = len(self.layers)
        extra = tuple((t,) for t in range(n, n + len(layers)))
        names = self.names + tuple(f"{name}.{k}" for k in range(len(layers)))
        return Network(self.layers + tuple(layers), self.input_shape, f"{self.name}+{name}", self.sources + extra, names)

    def with_layers(self, layers) -> "Network":
        """The same graph with other nodes (of the same shapes)."""
        return Network(tuple(layers), self.input_shape, self.name, self.sources, self.names)

    # --- execution -----------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """The number of outputs (classes of a classifier, values of a regression model)."""
        return self.shapes[-1][0]

    def values(self, x: np.ndarray, keep: bool = True, upto: int | None = None) -> list[np.ndarray]:
        """Tensors 0..``upto`` (default: all) for a batch x (N x C x T x H x W); with ``keep=False``
        each tensor is freed (None) after its last reader."""
        last = {t: max(c) for t, c in enumerate(self.consumers) if c}
        ts: list = [x]
        for i, (layer, src) in enumerate(zip(self.layers[:upto], self.sources[:upto])):
            ts.append(layer.forward(*(ts[t] for t in src)))
            if not keep:
                for t in src:
                    if last[t] == i:
                        ts[t] = None
        return ts

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float64 reference outputs for one input (C x T x H x W) or a batch (N x C x T x H x W)."""
        x = np.asarray(x, dtype=np.float64)
        single = x.shape == self.input_shape
        if not single and x.shape[1:] != self.input_shape:
            raise InputError(f"input must have shape {self.input_shape} or N x {self.input_shape}, got {x.shape}")
        out = self.values(x[None] if single else x, keep=False)[-1]
        return out[0] if single else out

    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Every tensor for one input: ``[x, output of layers[0], output of layers[1], ...]``."""
        return [v[0] for v in self.values(np.asarray(x, dtype=np.float64)[None])]

    def predict(self, x: np.ndarray) -> int | np.ndarray:
        return np.argmax(self.forward(x), axis=-1)

    def to_torch(self, dtype=None):
        """The torch twin (``to_torch.TorchNet``, float32 by default), for replay and bounding."""
        from .to_torch import torch_model

        return torch_model(self, dtype)

    # --- description ---------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    @property
    def n_relus(self) -> int:
        return sum(int(np.prod(self.shapes[i + 1])) for i in self.relu_inputs)

    def summary(self) -> str:
        """A readable table: node, output shape, neurons, parameters (and, for a graph, what each reads)."""
        graph = not self.is_chain
        head = ("#", "node", "output shape", "neurons", "params") + (("reads", "name") if graph else ())
        rows = [head, ("", "input", "x".join(map(str, self.input_shape)), str(int(np.prod(self.input_shape))), "")
                + (("", "input") if graph else ())]
        for i, (layer, s) in enumerate(zip(self.layers, self.shapes[1:])):
            row = (str(i), layer.describe(), "x".join(map(str, s)), str(int(np.prod(s))), str(layer.n_params or ""))
            if graph:
                row += (",".join("input" if t == 0 else str(t - 1) for t in self.sources[i]), self.names[i])
            rows.append(row)
        widths = [max(len(r[j]) for r in rows) for j in range(len(head))]
        kind = "nodes (a graph)" if graph else "layers"
        lines = [f"{self.name}: {len(self.layers)} {kind}, {self.n_params} parameters, {self.n_relus} ReLUs"]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        kind = "layers" if self.is_chain else "nodes"
        return (f"Network({self.name!r}, input {'x'.join(map(str, self.input_shape))}, {len(self.layers)} {kind}, "
                f"{self.n_params} parameters, {self.n_classes} outputs)")
