"""The torch twin of a network (used to replay counterexamples in float32 and to bound in torch).

``torch_model(net, dtype)`` is a ``TorchNet``: the nodes' torch modules (each node builds its own,
``Layer.torch_module``) run over the network's tensors in order; indexing it and ``len`` give the
modules, as for an ``nn.Sequential``.  The modules for the graph's own node types live here.
"""
from __future__ import annotations

import torch
from torch import nn


class Sum(nn.Module):
    """a + b (the Add node)."""

    def forward(self, a, b):
        return a + b


class ChannelConcat(nn.Module):
    """Concatenation on the channel axis (the Concat node)."""

    def forward(self, *xs):
        return torch.cat(xs, 1)


class ScaleShift(nn.Module):
    """x_c * scale_c + shift_c per channel (the BatchNorm node)."""

    def __init__(self, scale, shift, dtype):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=dtype))
        self.register_buffer("shift", torch.tensor(shift, dtype=dtype))

    def per_channel(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x):
        return x * self.per_channel(self.scale, x.dim()) + self.per_channel(self.shift, x.dim())


class TorchNet(nn.Module):
    """Modules ``nodes`` over tensors: node i reads the tensors ``sources[i]`` (0: the input,
    k + 1: the output of node k) and the last tensor is the output."""

    def __init__(self, nodes, sources):
        super().__init__()
        self.nodes = nn.ModuleList(nodes)
        self.sources = tuple(tuple(s) for s in sources)
        reads = [(t, i) for i, src in enumerate(self.sources) for t in src]
        self.last_read = {t: max(i for u, i in reads if u == t) for t, _ in reads}

    def __getitem__(self, i: int) -> nn.Module:
        return self.nodes[i]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def tensor(self, x, t: int):
        """Tensor t for the input batch x (the nodes after it are not run)."""
        ts = [x]
        for i, (m, src) in enumerate(zip(self.nodes[:t], self.sources[:t])):
            ts.append(m(*(ts[s] for s in src)))
            for s in src:
                if self.last_read[s] == i and s != t:
                    ts[s] = None  # free what no later node reads
        return ts[t]

    def forward(self, x):
        return self.tensor(x, len(self.nodes))


def torch_model(net, dtype=None) -> TorchNet:
    """The torch twin of ``net`` (float32 by default), in eval mode."""
    dtype = dtype or torch.float32
    return TorchNet([layer.torch_module(dtype) for layer in net.layers], net.sources).eval()
