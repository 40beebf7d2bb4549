"""Node types of the network IR, with float64 numpy weights.

Every node maps a batch ``N x shape_in`` (one tensor, or several for ``Add`` and ``Concat``) to
``N x shape_out``; shapes exclude the batch axis.  Spatial tensors are ``C x T x H x W`` (channels,
frames / depth, height, width).  Weights are read-only float64 arrays, so a network cannot be
changed after it is built: a verification result always refers to exactly the weights it saw.

Each node owns its shape rule, its numpy forward (the reference: numpy only, never torch, so it
checks anything computed with torch) and its torch twin (``torch_module``, for replay in float32
and for bounding).  The node types:

* ``Conv3d``: cross-correlation with zero padding; grouped and dilated convolutions are built
  with ``Conv3d.of``, which writes them as the equal dense kernel (zeros between dilated taps,
  zero blocks between groups: exactly the same map);
* ``Linear``: y = W x + b on a flat input;
* ``ReLU``; ``MaxPool3d`` (floor mode, padding with -inf); ``AvgPool3d`` (floor mode, no padding;
  global average pooling is the AvgPool3d whose kernel is the whole grid);
* ``BatchNorm``: y_c = scale_c x_c + shift_c per channel (an eval-mode batch norm that is not folded
  into a preceding Conv3d / Linear, e.g. before a ReLU in a pre-activation block);
* ``Flatten`` (row-major, as torch); ``Add`` of two tensors of one shape; ``Concat`` on channels.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def _spatial(shape: Shape, what: str) -> None:
    if len(shape) != 4:
        raise InputError(f"{what} expects input C x T x H x W, got {shape}")


class Layer:
    """Base class.  Subclasses are frozen dataclasses; ``arity`` tensors in, one out."""

    affine: bool = False  # True for layers y = W x + b (Conv3d, Linear)
    arity: int = 1  # the number of input tensors (0: any number >= 2, Concat)

    def output_shape(self, *shapes: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def torch_module(self, dtype):
        """The torch module computing the same map (parameters in ``dtype``)."""
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return 0

    def describe(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return self.describe()


def _dense_kernel(weight: np.ndarray, groups: int, dilation) -> np.ndarray:
    """The kernel O x C x k' of a grouped (O x C/groups x k) and dilated convolution as a plain one."""
    o, cg = weight.shape[:2]
    d = _triple(dilation)
    k = weight.shape[2:]
    full = np.zeros((o, cg * groups) + tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d)))
    per = o // groups
    for g in range(groups):
        full[g * per:(g + 1) * per, g * cg:(g + 1) * cg, :: d[0], :: d[1], :: d[2]] = weight[g * per:(g + 1) * per]
    return full


@dataclass(frozen=True, eq=False, repr=False)
class Conv3d(Layer):
    """y[o] = b[o] + sum_c W[o, c] * x[c] (cross-correlation), zero padding."""

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
        if min(self.stride) < 1 or min(self.padding) < 0:
            raise InputError(f"Conv3d stride must be >= 1 and padding >= 0, got {self.stride}, {self.padding}")

    @classmethod
    def of(cls, weight, bias, stride=1, padding=0, groups: int = 1, dilation=1) -> "Conv3d":
        """A Conv3d with ``groups`` and ``dilation`` as torch and ONNX define them, written as the
        equal dense kernel (module docstring)."""
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 5:
            raise InputError(f"Conv3d weight must be O x C/groups x kt x kh x kw, got shape {w.shape}")
        if groups < 1 or w.shape[0] % groups:
            raise InputError(f"Conv3d groups={groups} must divide the {w.shape[0]} output channels")
        if min(_triple(dilation)) < 1:
            raise InputError(f"Conv3d dilation must be >= 1, got {dilation}")
        if groups != 1 or _triple(dilation) != (1, 1, 1):
            w = _dense_kernel(w, groups, dilation)
        return cls(w, bias, stride, padding)

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

    def torch_module(self, dtype):
        from torch import nn

        o, c = self.weight.shape[:2]
        return _with_parameters(nn.Conv3d(c, o, self.kernel, stride=self.stride, padding=self.padding, dtype=dtype), self,
                                dtype)

    @property
    def n_params(self) -> int:
        return self.weight.size + self.bias.size

    def describe(self) -> str:
        o, c = self.weight.shape[:2]
        return f"Conv3d({c}->{o}, kernel={self.kernel}, stride={self.stride}, padding={self.padding})"


@dataclass(frozen=True, eq=False, repr=False)
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

    def torch_module(self, dtype):
        from torch import nn

        return _with_parameters(nn.Linear(self.weight.shape[1], self.weight.shape[0], dtype=dtype), self, dtype)

    @property
    def n_params(self) -> int:
        return self.weight.size + self.bias.size

    def describe(self) -> str:
        return f"Linear({self.weight.shape[1]}->{self.weight.shape[0]})"


def _with_parameters(m, layer: Layer, dtype):
    import torch

    with torch.no_grad():
        m.weight.copy_(torch.tensor(layer.weight, dtype=dtype))
        m.bias.copy_(torch.tensor(layer.bias, dtype=dtype))
    return m


@dataclass(frozen=True, eq=False, repr=False)
class ReLU(Layer):
    def output_shape(self, shape: Shape) -> Shape:
        return tuple(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def torch_module(self, dtype):
        from torch import nn

        return nn.ReLU()


@dataclass(frozen=True, eq=False, repr=False)
class _Pool3d(Layer):
    kernel: tuple[int, int, int] = (2, 2, 2)
    stride: tuple[int, int, int] | None = None  # defaults to the kernel
    padding: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _triple(self.kernel))
        object.__setattr__(self, "stride", _triple(self.kernel if self.stride is None else self.stride))
        object.__setattr__(self, "padding", _triple(self.padding))
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise InputError(f"{type(self).__name__} kernel and stride must be >= 1, got {self.kernel}, {self.stride}")
        if min(self.padding) < 0 or any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            raise InputError(f"{type(self).__name__} padding {self.padding} must be in 0..kernel/2 (kernel {self.kernel})")

    def output_shape(self, shape: Shape) -> Shape:
        _spatial(shape, type(self).__name__)
        out = tuple(_pooled_size(n, k, s, p) for n, k, s, p in zip(shape[1:], self.kernel, self.stride, self.padding))
        if min(out) < 1:
            raise InputError(f"{type(self).__name__} kernel {self.kernel} does not fit input {shape}")
        return (shape[0],) + out

    def _padded(self, x: np.ndarray, value: float) -> np.ndarray:
        if not any(self.padding):
            return x
        return np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in self.padding), constant_values=value)

    def describe(self) -> str:
        pad = f", padding={self.padding}" if any(self.padding) else ""
        return f"{type(self).__name__}(kernel={self.kernel}, stride={self.stride}{pad})"


class AvgPool3d(_Pool3d):
    """Mean over each window (floor mode, no padding).  ``AvgPool3d.global_(grid)`` is global
    average pooling: output C x 1 x 1 x 1."""

    def __post_init__(self):
        super().__post_init__()
        if any(self.padding):
            raise InputError("AvgPool3d with padding is not supported (only padding 0)")

    @classmethod
    def global_(cls, grid) -> "AvgPool3d":
        return cls(tuple(grid), tuple(grid))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _windows(x, self.kernel, self.stride).mean(axis=(-3, -2, -1))

    def torch_module(self, dtype):
        from torch import nn

        return nn.AvgPool3d(self.kernel, self.stride)


class MaxPool3d(_Pool3d):
    """Maximum over each window (floor mode; padded entries are -inf, so never the maximum)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _windows(self._padded(x, -np.inf), self.kernel, self.stride).max(axis=(-3, -2, -1))

    def torch_module(self, dtype):
        from torch import nn

        return nn.MaxPool3d(self.kernel, self.stride, self.padding)


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm(Layer):
    """y_c = scale_c x_c + shift_c, per channel c (axis 0 of a C x T x H x W or C-vector input);
    ``BatchNorm.of`` folds gamma, beta and the running statistics as an eval-mode batch norm does."""

    scale: np.ndarray
    shift: np.ndarray

    def __post_init__(self):
        s, b = _frozen(self.scale), _frozen(self.shift)
        if s.ndim != 1 or s.shape != b.shape:
            raise InputError(f"BatchNorm scale and shift must be vectors of one length, got {s.shape} and {b.shape}")
        object.__setattr__(self, "scale", s)
        object.__setattr__(self, "shift", b)

    @classmethod
    def of(cls, gamma, beta, mean, var, eps: float) -> "BatchNorm":
        w, b = fold_batchnorm(np.ones((len(np.atleast_1d(mean)), 1)), None, gamma, beta, mean, var, eps)
        return cls(w[:, 0], b)

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) not in (1, 4) or shape[0] != len(self.scale):
            raise InputError(f"BatchNorm({len(self.scale)}) expects input C x T x H x W or a C-vector with "
                             f"C={len(self.scale)}, got {shape}")
        return tuple(shape)

    def _per_channel(self, v: np.ndarray, ndim: int) -> np.ndarray:
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self._per_channel(self.scale, x.ndim) + self._per_channel(self.shift, x.ndim)

    def torch_module(self, dtype):
        from .to_torch import ScaleShift

        return ScaleShift(self.scale, self.shift, dtype)

    @property
    def n_params(self) -> int:
        return 2 * self.scale.size

    def describe(self) -> str:
        return f"BatchNorm({len(self.scale)})"


@dataclass(frozen=True, eq=False, repr=False)
class Flatten(Layer):
    """Row-major flattening of C x T x H x W (the order torch uses)."""

    def output_shape(self, shape: Shape) -> Shape:
        return (int(np.prod(shape)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)

    def torch_module(self, dtype):
        from torch import nn

        return nn.Flatten()


@dataclass(frozen=True, eq=False, repr=False)
class Add(Layer):
    """y = a + b for two tensors of the same shape (a residual connection)."""

    arity = 2

    def output_shape(self, a: Shape, b: Shape) -> Shape:
        if tuple(a) != tuple(b):
            raise InputError(f"Add needs two tensors of one shape, got {a} and {b}")
        return tuple(a)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def torch_module(self, dtype):
        from .to_torch import Sum

        return Sum()


@dataclass(frozen=True, eq=False, repr=False)
class Concat(Layer):
    """Concatenation of two or more tensors on the channel axis (axis 0 of each input: the
    channels of C x T x H x W tensors with one grid, or the entries of flat vectors)."""

    arity = 0

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) < 2:
            raise InputError(f"Concat needs at least two tensors, got {len(shapes)}")
        if len({len(s) for s in shapes}) != 1 or len({tuple(s[1:]) for s in shapes}) != 1:
            raise InputError(f"Concat joins tensors on channels: the other axes must agree, got {list(shapes)}")
        return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=1)

    def torch_module(self, dtype):
        from .to_torch import ChannelConcat

        return ChannelConcat()


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


NONLINEAR = (ReLU, MaxPool3d)
LINEAR = (Conv3d, Linear, AvgPool3d, BatchNorm, Flatten, Add, Concat)  # affine maps of their inputs
