"""Datasets from ``.npz`` files: any channel count and layout, uint8 or float inputs, class labels
or regression targets.

Keys.  A split is a pair (inputs, labels), the first of these the file has: ``{split}_images`` /
``{split}_labels`` (MedMNIST 3D as published, and the files stverify generates), ``x_{split}`` /
``y_{split}``, or one unsplit pair ``x`` / ``y``, ``images`` / ``labels``, ``inputs`` / ``targets``,
which serves every split.
Inputs.  uint8 is scaled by 1/255, floats are taken as they are; the layout (``layout.py``) turns
them into float64 ``N x C x T x H x W``.  Every input is finite and lies in the data domain
(default ``[0, 1]``), the model's input domain, which the caller states.
Labels.  One per input (``N`` or ``N x 1``): integers are class labels (>= 0), floats regression
targets (finite).
Anything else (a missing file or key, a foreign archive, an object array, another dtype or shape, an
input outside the domain, an index out of range) is an ``InputError`` naming the file and the array.
A dataset name of ``catalog.DATASETS`` stands for its generated file wherever a path does.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..threats import DEFAULT_DOMAIN
from ..validation import DOMAIN_TOL, domain as checked_domain
from .archive import open_npz, read_array
from .catalog import data_path
from .layout import Layout, choose

from .splits import SPLITS
SPLIT_KEYS = (("{}_images", "{}_labels"), ("x_{}", "y_{}"))
PLAIN_KEYS = (("x", "y"), ("images", "labels"), ("inputs", "targets"))


def _expected(split: str) -> str:
    pairs = [f"{x.format(split)}/{y.format(split)}" for x, y in SPLIT_KEYS] + [f"{x}/{y}" for x, y in PLAIN_KEYS]
    return ", ".join(pairs)


def _pair(files, where: str, split: str) -> tuple[str, str]:
    """The (inputs, labels) keys of ``split`` (module docstring)."""
    split_pairs = [(x.format(split), y.format(split)) for x, y in SPLIT_KEYS]
    for candidates in (split_pairs, PLAIN_KEYS):
        present = [(x, y) for x, y in candidates if x in files or y in files]
        if len(present) > 1:
            raise InputError(f"{where} holds several candidate arrays for split {split!r} "
                             f"({', '.join(f'{x}/{y}' for x, y in present)}): keep one pair")
        if present:
            x, y = present[0]
            if x not in files or y not in files:
                have, missing = (x, y) if x in files else (y, x)
                raise InputError(f"{where} has {have!r} but no {missing!r}; found {sorted(files)}")
            return x, y
    others = [s for s in SPLITS if s != split and any(x.format(s) in files for x, _ in SPLIT_KEYS)]
    if others:
        raise InputError(f"{where} has no {split!r} split (it has {', '.join(others)}); found {sorted(files)}")
    raise InputError(f"{where} has no inputs and labels for split {split!r}: found {sorted(files)}, "
                     f"expected one of {_expected(split)}")


def _stated_layout(npz, path, where: str) -> str | None:
    if "layout" not in npz.files:
        return None
    a = read_array(npz, path, "layout")
    if a.size != 1 or a.dtype.kind != "U":
        raise InputError(f"{where}: the array 'layout' must be one string such as 'nthwC', got dtype {a.dtype}, "
                         f"shape {a.shape}")
    return str(a.item())


def _check_inputs(raw: np.ndarray, what: str, domain) -> None:
    """uint8 or float, finite, inside ``domain`` once scaled."""
    if raw.dtype != np.uint8 and raw.dtype.kind != "f":
        raise InputError(f"{what} has dtype {raw.dtype}; expected uint8 (scaled by 1/255) or floats (taken as they are)")
    if raw.size == 0:
        return
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = np.argwhere(~np.isfinite(raw))
        raise InputError(f"{what} has {len(bad)} non-finite value(s) (NaN or Inf), the first at {tuple(map(int, bad[0]))}")
    scale = 1 / 255 if raw.dtype == np.uint8 else 1.0
    vmin, vmax = float(raw.min()) * scale, float(raw.max()) * scale
    lo, hi = domain
    if vmin < lo - DOMAIN_TOL or vmax > hi + DOMAIN_TOL:
        raise InputError(f"{what} ranges over [{vmin:g}, {vmax:g}]"
                         f"{' (uint8 scaled by 1/255)' if scale != 1 else ''}, outside the data domain [{lo:g}, {hi:g}]; "
                         "state the model's input domain with --domain LO,HI (API: domain=(lo, hi))")


def _labels(raw: np.ndarray, what: str, n: int) -> np.ndarray:
    """int64 class labels or float64 regression targets, one per input."""
    if raw.shape not in ((n,), (n, 1)):
        raise InputError(f"{what} has shape {raw.shape}; expected one label per input: shape ({n},) or ({n}, 1)")
    y = raw.reshape(-1)
    if y.dtype.kind in "iu":
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            i = int(np.argmin(y))
            raise InputError(f"{what} holds the negative label {y[i]} (sample {i}); labels are class indices 0, 1, ... "
                             "(floats are regression targets)")
        return y
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise InputError(f"{what} holds a non-finite regression target (sample {int(np.argmin(np.isfinite(y)))})")
        return y
    raise InputError(f"{what} has dtype {y.dtype}; expected integers (class labels) or floats (regression targets)")


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset file, checked: the inputs as stored, their labels, and how they were read."""

    path: str
    split: str
    keys: tuple[str, str]  # (inputs, labels)
    layout: Layout
    raw: np.ndarray  # the inputs as stored (uint8 or float, in ``layout``)
    labels: np.ndarray  # int64 class labels or float64 regression targets, one per input
    domain: tuple[float, float]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def task(self) -> str:
        """``classification`` (integer labels) or ``regression`` (float targets)."""
        return "classification" if self.labels.dtype.kind == "i" else "regression"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, T, H, W) of one input."""
        return self.layout.input_shape(self.raw.shape)

    def _float(self, raw: np.ndarray) -> np.ndarray:
        x = self.layout.to_ncthw(raw).astype(np.float64)
        return x / 255.0 if raw.dtype == np.uint8 else x

    def inputs(self) -> np.ndarray:
        """Every input as float64 ``N x C x T x H x W``, in the domain."""
        return self._float(self.raw)

    def sample(self, index) -> tuple[np.ndarray, int | float]:
        """Input ``index`` as float64 ``C x T x H x W`` and its label (int) or target (float)."""
        try:
            i = operator.index(index)
        except TypeError:
            raise InputError(f"index must be an integer, got {index!r}") from None
        if not 0 <= i < len(self):
            raise InputError(f"index {i} out of range for split {self.split!r} of {self.path!r} "
                             f"with {len(self)} samples (valid: 0..{len(self) - 1})")
        return self._float(self.raw[i:i + 1])[0], self.labels[i].item()

    def describe(self) -> str:
        """One line: what was read, from which arrays, in which layout."""
        scaled = "uint8 scaled by 1/255" if self.raw.dtype == np.uint8 else f"{self.raw.dtype} taken as is"
        target = "class labels" if self.task == "classification" else "regression targets"
        return (f"{os.path.basename(self.path)} [{self.split}]: {len(self)} inputs of C x T x H x W = {self.input_shape} "
                f"from {self.keys[0]!r} as {self.layout} ({scaled}, domain [{self.domain[0]:g}, {self.domain[1]:g}]); "
                f"{target} from {self.keys[1]!r}")


def read_split(data, split: str = "test", *, layout: str | None = None, input_shape=None, domain=None) -> Split:
    """Split ``split`` of the .npz file (or dataset name) ``data``, checked (module docstring).

    ``layout`` (``nCthw``, ``nthwC``, ``nthw``) and the model's ``input_shape`` (C, T, H, W) settle
    a 5-D array's axis order (``layout.choose``); with ``input_shape``, inputs of another shape are
    refused.  ``domain`` (lo, hi), default ``[0, 1]``: the inputs must lie in it."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {list(SPLITS)}, got {split!r}")
    path = data_path(data)
    dom = checked_domain(DEFAULT_DOMAIN if domain is None else domain)
    where = repr(os.fspath(path))
    with open_npz(path) as npz:
        keys = _pair(npz.files, where, split)
        stated = _stated_layout(npz, path, where)
        raw, labels = (read_array(npz, path, k) for k in keys)
    what = f"{keys[0]!r} in {where}"
    lay = choose(raw.shape, what, layout, stated, input_shape)
    if input_shape is not None and lay.input_shape(raw.shape) != tuple(input_shape):
        raise InputError(f"{where} holds inputs of shape {lay.input_shape(raw.shape)} (C x T x H x W, read as {lay.name}); "
                         f"the model expects {tuple(input_shape)}")
    _check_inputs(raw, what, dom)
    return Split(os.fspath(path), split, keys, lay, raw, _labels(labels, f"{keys[1]!r} in {where}", len(raw)), dom)


def load_npz(data, split: str = "test", **how) -> tuple[np.ndarray, np.ndarray]:
    """One split: ``X`` float64 ``N x C x T x H x W`` and ``y`` (int64 labels or float64 targets);
    ``how``: ``layout``, ``input_shape``, ``domain`` as ``read_split``."""
    s = read_split(data, split, **how)
    return s.inputs(), s.labels


def load_sample(data, split: str = "test", index: int = 0, **how) -> tuple[np.ndarray, int | float]:
    """One input: ``x`` float64 ``C x T x H x W`` and its label (int) or regression target (float);
    ``how``: ``layout``, ``input_shape``, ``domain`` as ``read_split``."""
    return read_split(data, split, **how).sample(index)
