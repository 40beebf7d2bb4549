"""IR -> torch.nn.Sequential, used to replay counterexamples in float32 and to bound in torch."""
from __future__ import annotations

import torch
from torch import nn

from . import layers as L


def layer_to_torch(layer: L.Layer, dtype) -> nn.Module:
    if isinstance(layer, L.Conv3d):
        o, c = layer.weight.shape[:2]
        m = nn.Conv3d(c, o, layer.kernel, stride=layer.stride, padding=layer.padding, dtype=dtype)
    elif isinstance(layer, L.Linear):
        m = nn.Linear(layer.weight.shape[1], layer.weight.shape[0], dtype=dtype)
    elif isinstance(layer, L.ReLU):
        return nn.ReLU()
    elif isinstance(layer, L.AvgPool3d):
        return nn.AvgPool3d(layer.kernel, layer.stride)
    elif isinstance(layer, L.MaxPool3d):
        return nn.MaxPool3d(layer.kernel, layer.stride)
    elif isinstance(layer, L.Flatten):
        return nn.Flatten()
    else:
        raise TypeError(f"no torch equivalent for {layer.describe()}")
    with torch.no_grad():
        m.weight.copy_(torch.tensor(layer.weight, dtype=dtype))
        m.bias.copy_(torch.tensor(layer.bias, dtype=dtype))
    return m


def network_to_torch(net: L.Network, dtype=None) -> nn.Sequential:
    dtype = dtype or torch.float32
    return nn.Sequential(*(layer_to_torch(layer, dtype) for layer in net.layers)).eval()
