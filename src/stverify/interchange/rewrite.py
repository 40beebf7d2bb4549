"""Equivalent ONNX models without 3D operators, for verifiers that lack Conv3d.

Both rewrites take the same input values in the same flat (row-major) order as the Conv3d model,
so the same VNN-LIB files (``X_i`` = the i-th input value) state the same properties.

* ``conv2d``: the input is ``1 x (C*T) x H x W``, channel ``c*T + t`` holding frame t of channel c
  (a reshape that moves no value).  A Conv3d (O x C x kt x kh x kw, stride s, padding p) becomes a
  Conv2d with O*T' output and C*T input planes: output plane ``o*T' + t'`` applies kernel slice
  ``a`` to input plane ``c*T + t'*s_t - p_t + a`` (slices that fall in the temporal padding read
  zeros and are left out), with the same spatial stride and padding.  Every weight is copied, none
  is computed, so the map is exactly the Conv3d.  AvgPool3d is the Conv3d with weight
  ``1/(kt kh kw)`` on its own channel and becomes a Conv2d the same way.  MaxPool3d with kernel depth 1
  is a 2D max-pool of every plane (then, for a frame stride s_t > 1, a 1x1 Conv2d keeping planes
  t' * s_t); a max over several frames has no such form and is refused.
* ``gemm``: the input is ``1 x (C*T*H*W)``; every Conv3d and AvgPool3d becomes the dense matrix of
  its linear map (columns: the layer applied to unit vectors), refused above ``GEMM_MAX_ENTRIES``
  entries; MaxPool3d is not linear and is refused; Add, Concat (flat, channel-major) and BatchNorm
  (per-entry constants) keep their form.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ..errors import InputError
from ..network import Network, layers as L
from .onnx_writer import OnnxGraph, add_node, channel_affine

REWRITES = ("conv2d", "gemm")
GEMM_MAX_ENTRIES = 2**24  # 64 MiB of float32 weights per layer


def temporal_unroll(weight: np.ndarray, t_in: int, stride: int, pad: int, t_out: int) -> np.ndarray:
    """The Conv2d weight ``(O*T') x (C*T) x kh x kw`` of a Conv3d weight ``O x C x kt x kh x kw`` over frames."""
    o, c, kt, kh, kw = weight.shape
    w2 = np.zeros((o, t_out, c, t_in, kh, kw))
    for tp in range(t_out):
        for a in range(kt):
            t = tp * stride - pad + a
            if 0 <= t < t_in:
                w2[:, tp, :, t] = weight[:, :, a]
    return w2.reshape(o * t_out, c * t_in, kh, kw)


def _avgpool_as_conv(layer: L.AvgPool3d, channels: int) -> L.Conv3d:
    kernel = np.zeros((channels, channels, *layer.kernel))
    kernel[np.arange(channels), np.arange(channels)] = 1.0 / np.prod(layer.kernel)
    return L.Conv3d(kernel, np.zeros(channels), layer.stride)


def _refuse(rewrite: str, i: int, layer: L.Layer, why: str):
    raise InputError(f"--rewrite {rewrite}: layer {i} {layer.describe()} {why}")


def _per_channel(v: np.ndarray, shape, kind: str) -> np.ndarray:
    """A per-channel vector of a tensor of ``shape`` (C x T x H x W, or flat) as a constant that
    broadcasts against that tensor in the rewrite's layout: planes c*T + t, or flat entries."""
    if len(shape) == 1:
        return v
    per_entry = np.repeat(v, int(np.prod(shape[1:])))
    return per_entry if kind == "gemm" else np.repeat(v, shape[1])[:, None, None]


def _conv2d_node(g: OnnxGraph, i: int, layer: L.Layer, inputs: list[str], shape, out) -> str:
    """The Conv2d-layout node(s) of IR node i (input ``shape``, output ``out``)."""
    if isinstance(layer, L.AvgPool3d):
        layer = _avgpool_as_conv(layer, shape[0])
    if isinstance(layer, L.Conv3d):
        w2 = temporal_unroll(layer.weight, shape[1], layer.stride[0], layer.padding[0], out[1])
        return g.add("Conv", f"layer{i}_Conv", inputs, [w2, np.repeat(layer.bias, out[1])],
                     kernel_shape=list(layer.kernel[1:]), strides=list(layer.stride[1:]), pads=list(layer.padding[1:]) * 2)
    if isinstance(layer, L.MaxPool3d):
        if layer.kernel[0] != 1:
            _refuse("conv2d", i, layer, "takes a max over several frames, which has no Conv2d / 2D max-pool form; "
                    "supported: MaxPool3d with kernel depth 1")
        name = g.add("MaxPool", f"layer{i}_MaxPool", inputs, kernel_shape=list(layer.kernel[1:]),
                     strides=list(layer.stride[1:]), pads=list(layer.padding[1:]) * 2)
        if layer.stride[0] == 1:
            return name
        keep = np.zeros((out[0], out[1], shape[0], shape[1], 1, 1))  # keep planes t' * s_t
        for tp in range(out[1]):
            keep[np.arange(out[0]), tp, np.arange(out[0]), tp * layer.stride[0]] = 1.0
        return g.add("Conv", f"layer{i}_Conv", [name], [keep.reshape(out[0] * out[1], shape[0] * shape[1], 1, 1)],
                     kernel_shape=[1, 1])
    return add_node(g, i, layer, inputs)


def _gemm_node(g: OnnxGraph, i: int, layer: L.Layer, inputs: list[str], shape, out) -> str:
    """The flat-layout node(s) of IR node i."""
    if isinstance(layer, (L.Conv3d, L.AvgPool3d)):
        return g.add("Gemm", f"layer{i}_Gemm", inputs, dense_matrix(layer, shape), transB=1)
    if isinstance(layer, L.Flatten):  # the tensor is flat already
        return inputs[0]
    return add_node(g, i, layer, inputs)


def _rewrite(net: Network, kind: str, in_shape, node, dtype) -> onnx.ModelProto:
    g = OnnxGraph(f"{net.name}-{kind}", in_shape, dtype)
    names = ["input"]
    for i, (layer, src) in enumerate(zip(net.layers, net.sources)):
        shape, inputs = net.shapes[src[0]], [names[t] for t in src]
        if isinstance(layer, L.BatchNorm):
            names.append(channel_affine(g, i, inputs, _per_channel(layer.scale, shape, kind),
                                        _per_channel(layer.shift, shape, kind)))
        else:
            names.append(node(g, i, layer, inputs, shape, net.shapes[i + 1]))
    return g.model(names[-1], net.n_classes)


def rewrite_conv2d(net: Network, dtype=np.float32) -> onnx.ModelProto:
    """The Conv2d form of ``net`` (module docstring)."""
    c, t, h, w = net.input_shape
    return _rewrite(net, "conv2d", (c * t, h, w), _conv2d_node, dtype)


def dense_matrix(layer: L.Layer, shape, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with ``layer(x).ravel() = M @ x.ravel() + b`` for an affine layer or an average pool."""
    n = int(np.prod(shape))
    bias = np.zeros(0)
    if isinstance(layer, L.Conv3d):
        bias, layer = layer.bias, dataclasses.replace(layer, bias=np.zeros_like(layer.bias))
    cols = []
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        unit = np.zeros((k, n))
        unit[np.arange(k), start + np.arange(k)] = 1.0
        cols.append(layer.forward(unit.reshape(k, *shape)).reshape(k, -1))
    m = np.concatenate(cols).T
    return m, (np.repeat(bias, m.shape[0] // len(bias)) if len(bias) else np.zeros(m.shape[0]))


def rewrite_gemm(net: Network, max_entries: int = GEMM_MAX_ENTRIES, dtype=np.float32) -> onnx.ModelProto:
    """The dense (Gemm) form of ``net`` (module docstring)."""
    for i, (layer, src, out) in enumerate(zip(net.layers, net.sources, net.shapes[1:])):
        shape = net.shapes[src[0]]
        if isinstance(layer, L.MaxPool3d):
            _refuse("gemm", i, layer, "is not linear, so it has no Gemm form; use --rewrite conv2d")
        entries = int(np.prod(shape)) * int(np.prod(out))
        if isinstance(layer, (L.Conv3d, L.AvgPool3d)) and entries > max_entries:
            _refuse("gemm", i, layer, f"as a dense matrix has {int(np.prod(out))} x {int(np.prod(shape))} = {entries:,} "
                    f"entries, above the limit of {max_entries:,}; use --rewrite conv2d")
    return _rewrite(net, "gemm", (int(np.prod(net.input_shape)),), _gemm_node, dtype)


def rewrite(net: Network, kind: str, dtype=np.float32) -> onnx.ModelProto:
    """The ``kind`` rewrite of ``net`` (one of REWRITES)."""
    if kind not in REWRITES:
        raise InputError(f"--rewrite expects one of {', '.join(REWRITES)}, found {kind!r}")
    return rewrite_conv2d(net, dtype) if kind == "conv2d" else rewrite_gemm(net, dtype=dtype)
