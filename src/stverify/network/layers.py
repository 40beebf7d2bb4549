"""Layer IR: the network as a chain of simple layers with float64 numpy weights.

Every layer maps a batch ``N x shape_in`` to ``N x shape_out``; shapes exclude the
batch axis.  Spatial tensors are ``C x T x H x W`` (channels, frames / depth, height,
width).  Weights are read-only float64 arrays, so a network cannot be changed after it
is built: a verification result always refers to exactly the weights it saw.

The reference forward pass (``Network.forward``) uses numpy only, never torch, so it
is an independent check of anything computed with torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InputError

Shape = tuple[int, ...]


def _frozen(a) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


def _triple(v) -> tuple[int, int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * 3
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise InputError(f"expected an int or 3 ints, got {v!r}")
    return t


def _windows(x: np.ndarray, kernel: Shape, stride: Shape) -> np.ndarray:
    """Sliding windows over the last three axes: ``N x C x T' x H' x W' x kt x kh x kw``."""
    v = sliding_window_view(x, kernel, axis=(2, 3, 4))
    return v[:, :, :: stride[0], :: stride[1], :: stride[2]]


def _pooled_size(n: int, k: int, s: int, p: int = 0) -> int:
    return (n + 2 * p - k) // s + 1


class Layer:
    """Base class.  Subclasses are frozen dataclasses."""

    affine: bool = False  # True for layers y = W x + b (Conv3d, Linear)

    def output_shape(self, shape: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return 0

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class Conv3d(Layer):
    """y[o] = b[o] + sum_c W[o, c] * x[c] (cross-correlation), zero padding, groups=1."""

    weight: np.ndarray  # O x C x kt x kh x kw
    bias: np.ndarray  # O
    stride: tuple[int, int, int] = (1, 1, 1)
    padding: tuple[int, int, int] = (0, 0, 0)
    affine = True

    def __post_init__(self):
        w = _frozen(self.weight)
        if w.ndim != 5:
            raise InputError(f"Conv3d weight must be O x C x kt x kh x kw, got shape {w.shape}")
        b = _frozen(np.zeros(w.shape[0]) if self.bias is None else self.bias)
        if b.shape != (w.shape[0],):
            raise InputError(f"Conv3d bias must have shape ({w.shape[0]},), got {b.shape}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "stride", _triple(self.stride))
        object.__setattr__(self, "padding", _triple(self.padding))

    @property
    def kernel(self) -> Shape:
        return tuple(self.weight.shape[2:])

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 4 or shape[0] != self.weight.shape[1]:
            raise InputError(f"Conv3d expects input C x T x H x W with C={self.weight.shape[1]}, got {shape}")
        out = tuple(_pooled_size(n, k, s, p) for n, k, s, p in zip(shape[1:], self.kernel, self.stride, self.padding))
        if min(out) < 1:
            raise InputError(f"Conv3d kernel {self.kernel} does not fit input {shape} with padding {self.padding}")
        return (self.weight.shape[0],) + out

    def forward(self, x: np.ndarray) -> np.ndarray:
        pt, ph, pw = self.padding
        if any(self.padding):
            x = np.pad(x, ((0, 0), (0, 0), (pt, pt), (ph, ph), (pw, pw)))
        win = _windows(x, self.kernel, self.stride)
        y = np.einsum("nzTHWabc,ozabc->noTHW", win, self.weight, optimize=True)
        return y + self.bias[None, :, None, None, None]

    @property
    def n_params(self) -> int:
        return self.weight.size + self.bias.size

    def describe(self) -> str:
        o, c = self.weight.shape[:2]
        return f"Conv3d({c}->{o}, kernel={self.kernel}, stride={self.stride}, padding={self.padding})"


@dataclass(frozen=True, eq=False)
class Linear(Layer):
    """y = W x + b on a flat input."""

    weight: np.ndarray  # O x I
    bias: np.ndarray  # O
    affine = True

    def __post_init__(self):
        w = _frozen(self.weight)
        if w.ndim != 2:
            raise InputError(f"Linear weight must be O x I, got shape {w.shape}")
        b = _frozen(np.zeros(w.shape[0]) if self.bias is None else self.bias)
        if b.shape != (w.shape[0],):
            raise InputError(f"Linear bias must have shape ({w.shape[0]},), got {b.shape}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    def output_shape(self, shape: Shape) -> Shape:
        if shape != (self.weight.shape[1],):
            raise InputError(f"Linear expects a flat input of size {self.weight.shape[1]}, got shape {shape}")
        return (self.weight.shape[0],)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    @property
    def n_params(self) -> int:
        return self.weight.size + self.bias.size

    def describe(self) -> str:
        return f"Linear({self.weight.shape[1]}->{self.weight.shape[0]})"


@dataclass(frozen=True, eq=False)
class ReLU(Layer):
    def output_shape(self, shape: Shape) -> Shape:
        return tuple(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(frozen=True, eq=False)
class _Pool3d(Layer):
    kernel: tuple[int, int, int] = (2, 2, 2)
    stride: tuple[int, int, int] | None = None  # defaults to the kernel

    def __post_init__(self):
        object.__setattr__(self, "kernel", _triple(self.kernel))
        object.__setattr__(self, "stride", _triple(self.kernel if self.stride is None else self.stride))

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 4:
            raise InputError(f"{type(self).__name__} expects input C x T x H x W, got {shape}")
        out = tuple(_pooled_size(n, k, s) for n, k, s in zip(shape[1:], self.kernel, self.stride))
        if min(out) < 1:
            raise InputError(f"{type(self).__name__} kernel {self.kernel} does not fit input {shape}")
        return (shape[0],) + out

    def describe(self) -> str:
        return f"{type(self).__name__}(kernel={self.kernel}, stride={self.stride})"


class AvgPool3d(_Pool3d):
    """Mean over each window (no padding, floor mode)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _windows(x, self.kernel, self.stride).mean(axis=(-3, -2, -1))


class MaxPool3d(_Pool3d):
    """Maximum over each window (no padding, floor mode)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _windows(x, self.kernel, self.stride).max(axis=(-3, -2, -1))


@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """Row-major flattening of C x T x H x W (the order torch uses)."""

    def output_shape(self, shape: Shape) -> Shape:
        return (int(np.prod(shape)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


@dataclass(frozen=True, eq=False)
class Network:
    """A chain of layers applied to inputs of shape ``input_shape`` (C x T x H x W); building one
    checks the shapes and that every weight is finite (``InputError`` otherwise)."""

    layers: tuple[Layer, ...]
    input_shape: Shape
    name: str = "network"
    shapes: tuple[Shape, ...] = field(init=False)  # shapes[i] is the input of layers[i]; shapes[-1] the output

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except ValueError as e:
                raise InputError(f"layer {i} ({layer.describe()}): {e}") from None
            if layer.affine:
                for part in ("weight", "bias"):
                    bad = int(np.sum(~np.isfinite(getattr(layer, part))))
                    if bad:
                        raise InputError(f"layer {i} ({layer.describe()}): {bad} non-finite {part} value(s) (NaN or Inf)")
        if len(shapes[-1]) != 1:
            raise InputError(f"the network must end in a flat logit vector, got output shape {shapes[-1]}")
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def n_classes(self) -> int:
        return self.shapes[-1][0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float64 reference logits for one input (C x T x H x W) or a batch (N x C x T x H x W)."""
        x = np.asarray(x, dtype=np.float64)
        single = x.shape == self.input_shape
        if not single and x.shape[1:] != self.input_shape:
            raise InputError(f"input must have shape {self.input_shape} or N x {self.input_shape}, got {x.shape}")
        h = x[None] if single else x
        for layer in self.layers:
            h = layer.forward(h)
        return h[0] if single else h

    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs of every layer for one input: ``[x, layer0(x), layer1(layer0(x)), ...]``."""
        h = np.asarray(x, dtype=np.float64)[None]
        out = [h[0]]
        for layer in self.layers:
            h = layer.forward(h)
            out.append(h[0])
        return out

    def predict(self, x: np.ndarray) -> int | np.ndarray:
        return np.argmax(self.forward(x), axis=-1)

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    @property
    def n_relus(self) -> int:
        return sum(int(np.prod(s)) for layer, s in zip(self.layers, self.shapes[1:]) if isinstance(layer, ReLU))

    def summary(self) -> str:
        """A readable table: layer, output shape, neurons, parameters."""
        rows = [("#", "layer", "output shape", "neurons", "params"), ("", "input", "x".join(map(str, self.input_shape)), str(int(np.prod(self.input_shape))), "")]
        for i, (layer, s) in enumerate(zip(self.layers, self.shapes[1:])):
            rows.append((str(i), layer.describe(), "x".join(map(str, s)), str(int(np.prod(s))), str(layer.n_params) if layer.n_params else ""))
        widths = [max(len(r[j]) for r in rows) for j in range(5)]
        lines = [f"{self.name}: {len(self.layers)} layers, {self.n_params} parameters, {self.n_relus} ReLUs"]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return "\n".join(lines)

    def to_torch(self, dtype=None):
        """An equivalent ``torch.nn.Sequential`` (float32 by default), for replay and bounding."""
        from .to_torch import network_to_torch

        return network_to_torch(self, dtype)


def fold_batchnorm(weight: np.ndarray, bias: np.ndarray | None, gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Fold y = gamma * (W x + b - mean) / sqrt(var + eps) + beta into one affine map (per output channel)."""
    weight = np.asarray(weight, dtype=np.float64)
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    denom = np.asarray(var, dtype=np.float64) + eps
    if not np.all(denom > 0):  # also catches NaN
        raise InputError(f"batch norm: running variance + eps must be > 0, got {float(np.min(denom)):g}")
    scale = np.asarray(gamma, dtype=np.float64) / np.sqrt(denom)
    w = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return w, (b - np.asarray(mean, dtype=np.float64)) * scale + np.asarray(beta, dtype=np.float64)

