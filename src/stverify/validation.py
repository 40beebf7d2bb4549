"""The checks every boundary shares: labels, inputs, numbers from users, time limits.

Each raises ``InputError`` with one line naming the field (``what``), the value found and what was
expected, so that a bad value is refused where it enters, never answered with a verdict.
"""
from __future__ import annotations

import math
import numbers
import operator

from pathlib import Path

import numpy as np

from .errors import InputError
from .network.graph import Network
from .properties import OutputSpec, Property, parse_property
from .threats import DEFAULT_DOMAIN, Boxes, Threat, parse_threat

DOMAIN_TOL = 1e-12  # as ``Threat.interval``: an input may exceed the domain by this much


def label(y, n_classes: int, what: str = "label") -> int:
    """y as an int in 0..n_classes-1 (a negative label would index from the end: refused)."""
    if isinstance(y, (bool, np.bool_)):
        raise InputError(f"{what} must be an integer class index, got {y!r}")
    try:
        i = operator.index(y)
    except TypeError:
        raise InputError(f"{what} must be an integer class index, got {y!r}") from None
    if not 0 <= i < n_classes:
        raise InputError(f"{what} {i} is not a class of the model: expected 0..{n_classes - 1} ({n_classes} classes)")
    return i


def chosen_label(given, stored, n_classes: int, sample: str) -> int:
    """``--label`` when given, else the label stored with the sample (``sample`` names it: file,
    split, index), checked as a class of the model."""
    if given is None:
        if isinstance(stored, float):
            raise InputError(f"{sample} holds the regression target {stored:g}, not a class label; give --label to "
                             "verify a class")
        return label(stored, n_classes, f"the label of {sample}")
    return label(given, n_classes, "--label")


def domain(dom) -> tuple[float, float]:
    """A data domain (lo, hi) of finite floats with lo < hi."""
    try:
        lo, hi = (float(v) for v in dom)
    except (TypeError, ValueError):
        raise InputError(f"domain must be a pair (lo, hi) of numbers, got {dom!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"domain must be finite with lo < hi, got ({lo:g}, {hi:g})")
    return lo, hi


def input_array(x, shape, dom, what: str = "input") -> np.ndarray:
    """x as a C-contiguous float64 array of the model's input shape (a channel-last file's inputs are
    strided views), every voxel finite and inside the data domain (``dom=None``: no domain, as for an
    explicit union of boxes, which is its own domain)."""
    try:
        x = np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an array of numbers") from None
    if x.shape != tuple(shape):
        raise InputError(f"{what} has shape {x.shape}, the model expects C x T x H x W = {tuple(shape)}")
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what} has {int(bad.sum())} non-finite voxel(s) (NaN or Inf), the first at {first}")
    if dom is None:
        return x
    lo, hi = dom
    if x.min() < lo - DOMAIN_TOL or x.max() > hi + DOMAIN_TOL:
        raise InputError(f"{what} lies outside the data domain [{lo:g}, {hi:g}] (min {x.min():g}, max {x.max():g})")
    return x


def instance(net, x, y, threat, timeout_s=None, dom=None, *, labelled: bool = True):
    """One verification instance, validated: a stverify network, x of its input shape and finite
    inside the domain, the property y (``output_property``; ``labelled=False``: none, y ignored, as
    for neuron bounds), a threat (object or string) that fits x, a time limit.  Returns
    (x, y, threat, timeout, domain) with y a class label (int) or an ``OutputSpec``."""
    if not isinstance(net, Network):
        raise InputError(f"net must be a stverify Network, got {type(net).__name__}; convert it with stverify.load_network")
    threat = parse_threat(threat) if isinstance(threat, str) else threat
    if not isinstance(threat, Threat):
        raise InputError(f"threat must be a Threat or a threat string, got {type(threat).__name__}")
    dom = domain(DEFAULT_DOMAIN if dom is None else dom)
    x = input_array(x, net.input_shape, None if isinstance(threat, Boxes) else dom)
    threat.validate(x.shape)
    return x, output_property(net, x, y) if labelled else None, threat, timeout(timeout_s), dom


def output_property(net, x: np.ndarray, y):
    """The property to verify: a class label (an int: that class stays the argmax, for a
    classifier), or a property (a string of ``properties.parse_property``, a ``Property``, or an
    ``OutputSpec``) bound to the instance at x.  Returns an int for label robustness (however it was
    stated), else the ``OutputSpec``."""
    if isinstance(y, (str, Property)):
        y = parse_property(y).bind(net, x)
    if isinstance(y, OutputSpec):
        if y.n_outputs != net.n_classes:
            raise InputError(f"the property is stated over {y.n_outputs} outputs, the network has {net.n_classes}")
        label_of = y.robustness_label()
        return y if label_of is None else label_of
    if net.n_classes < 2:
        raise InputError(f"the network has {net.n_classes} output: a label property needs a classifier; state an output "
                         "property instead (e.g. 'deviation:delta=0.05' or 'range:lo=-0.3,hi=0.3')")
    return label(y, net.n_classes)


def timeout(t, what: str = "timeout") -> float | None:
    """None (no limit) or a number of seconds > 0; +inf means no limit."""
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise InputError(f"{what} must be a number of seconds, got {t!r}")
    t = float(t)
    if math.isnan(t) or t <= 0:
        raise InputError(f"{what} must be > 0 seconds, got {t:g}")
    return None if math.isinf(t) else t


def integer(v, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """An int (not a bool, not a float) in [lo, hi]."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral,)):
        raise InputError(f"{what} must be an integer, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        want = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in {lo}..{hi}"
        raise InputError(f"{what} must be {want}, got {v}")
    return v


def number(v, what: str, lo: float | None = None, positive: bool = False) -> float:
    """A finite real number (not a bool), >= lo, or > 0 with ``positive``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise InputError(f"{what} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise InputError(f"{what} must be finite, got {v:g}")
    if positive and not v > 0:
        raise InputError(f"{what} must be > 0, got {v:g}")
    if lo is not None and v < lo:
        raise InputError(f"{what} must be >= {lo:g}, got {v:g}")
    return v


def output_file(path, what: str) -> Path:
    """A file name to write, checked before the work that produces it: not a folder, its folder exists."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {str(path)!r} is a directory; give a file name")
    if not p.parent.is_dir():
        raise InputError(f"{what} {str(path)!r}: the folder {str(p.parent)!r} does not exist")
    return p
