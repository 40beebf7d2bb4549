"""Spatio-temporal threat sets over inputs x of shape C x T x H x W.

A threat set is a union of boxes.  Each kind names *regions* of the (T, H, W) grid, and the
attacker picks ``choose`` of them; every voxel of the chosen regions (all channels) may move to
any value in ``[max(lo, x0 - eps), min(hi, x0 + eps)]`` where ``[lo, hi]`` is the data domain;
every other voxel keeps its value.  So the set is

    S(x0) = union over choices R of  { x : x_v = x0_v for v outside R,  x_v in I_v for v in R }

with ``I_v`` the clipped interval above.  Choosing fewer regions gives a subset (x0 lies in
every ``I_v``), so "at most ``choose``" and "exactly ``choose``" define the same set.

| kind      | regions                                   | choose |
| linf      | one: the whole grid                       | 1      |
| frames    | one: the listed frames                    | 1      |
| patch     | one: a fixed h x w patch in frames a..b   | 1      |
| anyframes | T: one per frame                          | k      |
| anypatch  | one per placement (window start t, y, x)  | 1      |

For ``anypatch`` the window start ``t`` takes every frame where the window fits; the patch
corner ``(y, x)`` takes every multiple of ``stride`` where the patch fits.

``Boxes`` is the one set not described by regions around x0: an explicit union of boxes (as a
VNN-LIB file states it), built from arrays with ``Boxes.of``, not from the grammar.
"""
from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .errors import InputError

GRAMMAR = "KIND:key=value,... with KIND one of linf, frames, anyframes, patch, anypatch"
DEFAULT_DOMAIN = (0.0, 1.0)
MAX_INDEX = 1 << 20  # no frame index or size in a threat string may exceed this (no input is that large)


class ThreatError(InputError):
    """A threat string or a threat that does not fit the input."""


@dataclass(frozen=True)
class Region:
    """Frames ``frames`` (a tuple of frame indices) x rows ``ys`` x columns ``xs`` (slices)."""

    frames: tuple[int, ...]
    ys: slice
    xs: slice

    def mask(self, grid: tuple[int, int, int]) -> np.ndarray:
        m = np.zeros(grid, dtype=bool)
        m[list(self.frames), self.ys, self.xs] = True
        return m


def format_eps(eps: float) -> str:
    if math.isinf(eps):
        return "full"
    n = eps * 255
    if n <= 255 * 255 and abs(n - round(n)) < 1e-9 and round(n) != 0:  # (a huge eps: no fraction, no overflow)
        return f"{round(n)}/255"
    return f"{eps:g}"


def _checked_eps(eps, kind: str) -> float:
    """eps as a float: a real number >= 0 (inf: the whole data domain), not a bool, not NaN."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real) or math.isnan(eps) or eps < 0:
        raise ThreatError(f"{kind}: eps must be a number >= 0 (inf for the whole data domain), got {eps!r}")
    return float(eps)


def _checked_int(v, key: str, kind: str, lo: int = 0) -> int:
    """v as an int >= lo: an integer (numpy's too), not a bool or a float."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < lo:
        raise ThreatError(f"{kind}: {key} must be >= {lo} (an integer), got {v!r}")
    return int(v)


def _set(threat, **values) -> None:
    """Store checked (normalised) field values on a frozen threat."""
    for name, v in values.items():
        object.__setattr__(threat, name, v)


def _grid(shape) -> tuple[int, int, int]:
    if len(shape) != 4:
        raise ThreatError(f"threat sets apply to inputs C x T x H x W, got shape {tuple(shape)}")
    return tuple(int(s) for s in shape[1:])


@dataclass(frozen=True)
class Threat:
    """Base class: the set S(x0) described in the module docstring."""

    eps: float
    kind = "threat"

    def __post_init__(self):
        """Check the constructor's arguments (types and ranges; whether they fit an input is ``validate``'s job)."""
        _set(self, eps=_checked_eps(self.eps, self.kind))

    # --- structure ---------------------------------------------------------------------
    @property
    def choose(self) -> int:
        return 1

    def regions(self, shape) -> list[Region]:
        raise NotImplementedError

    def validate(self, shape) -> None:
        """Raise ThreatError if the threat does not fit an input of shape C x T x H x W."""
        _grid(shape)
        if not self.eps >= 0:
            raise ThreatError(f"eps must be >= 0, got {self.eps}")

    def with_eps(self, eps: float) -> "Threat":
        return replace(self, eps=float(eps))

    def n_members(self, shape) -> int:
        return math.comb(len(self.regions(shape)), self.choose)

    # --- boxes -------------------------------------------------------------------------
    def interval(self, x0: np.ndarray, domain=DEFAULT_DOMAIN) -> tuple[np.ndarray, np.ndarray]:
        """Per-voxel range ``I_v`` of a perturbed voxel: x0 -/+ eps clipped to the domain."""
        x0 = np.asarray(x0, dtype=np.float64)
        self.validate(x0.shape)
        lo_d, hi_d = domain
        if x0.min() < lo_d - 1e-12 or x0.max() > hi_d + 1e-12:
            raise ThreatError(f"x0 lies outside the data domain [{lo_d}, {hi_d}] (min {x0.min():g}, max {x0.max():g})")
        return np.maximum(x0 - self.eps, lo_d), np.minimum(x0 + self.eps, hi_d)

    def perturbable(self, shape) -> np.ndarray:
        """Mask over (T, H, W) of voxels some member may change: the union of all regions."""
        grid = _grid(shape)
        m = np.zeros(grid, dtype=bool)
        for r in self.regions(shape):
            m |= r.mask(grid)
        return m

    def _box_for(self, x0, mask, domain):
        lo, hi = self.interval(x0, domain)
        keep = ~mask[None]
        return np.where(keep, x0, lo), np.where(keep, x0, hi)

    def bounding_box(self, x0: np.ndarray, domain=DEFAULT_DOMAIN) -> tuple[np.ndarray, np.ndarray]:
        """The smallest box containing S(x0) (what a plain L-infinity verifier sees)."""
        return self._box_for(np.asarray(x0, dtype=np.float64), self.perturbable(np.shape(x0)), domain)

    def member_boxes(self, x0: np.ndarray, domain=DEFAULT_DOMAIN):
        """Yield (lo, hi) for every member box of S(x0) (C(R, choose) of them)."""
        x0 = np.asarray(x0, dtype=np.float64)
        grid = _grid(x0.shape)
        masks = [r.mask(grid) for r in self.regions(x0.shape)]
        for pick in itertools.combinations(range(len(masks)), self.choose):
            yield self._box_for(x0, np.logical_or.reduce([masks[i] for i in pick]), domain)

    # --- points ------------------------------------------------------------------------
    def contains(self, x0: np.ndarray, x1: np.ndarray, tol: float = 1e-9, domain=DEFAULT_DOMAIN) -> bool:
        """True iff x1 is in S(x0) up to ``tol`` per voxel (a voxel moved by <= tol counts as unchanged)."""
        x0 = np.asarray(x0, dtype=np.float64)
        x1 = np.asarray(x1, dtype=np.float64)
        if x1.shape != x0.shape:
            return False
        lo, hi = self.interval(x0, domain)
        if np.any(x1 < lo - tol) or np.any(x1 > hi + tol):
            return False
        changed = np.any(np.abs(x1 - x0) > tol, axis=0)
        return self._covers(changed, x0.shape)

    def _covers(self, changed: np.ndarray, shape) -> bool:
        """Whether ``choose`` regions cover the changed-voxel mask (default: the one region)."""
        (region,) = self.regions(shape)
        return not np.any(changed & ~region.mask(changed.shape))

    def sample(self, x0: np.ndarray, n: int, rng: np.random.Generator | None = None, domain=DEFAULT_DOMAIN) -> np.ndarray:
        """n points of S(x0): a member box chosen uniformly, then a uniform point of that box."""
        rng = rng or np.random.default_rng()
        x0 = np.asarray(x0, dtype=np.float64)
        grid = _grid(x0.shape)
        lo, hi = self.interval(x0, domain)
        regions = self.regions(x0.shape)
        out = np.empty((n,) + x0.shape)
        for i in range(n):
            pick = rng.choice(len(regions), size=self.choose, replace=False)
            mask = np.logical_or.reduce([regions[j].mask(grid) for j in pick])[None]
            out[i] = np.where(mask, rng.uniform(lo, hi), x0)
        return out

    # --- text --------------------------------------------------------------------------
    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.spec()

    def spec(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Linf(Threat):
    kind = "linf"

    def regions(self, shape):
        t, h, w = _grid(shape)
        return [Region(tuple(range(t)), slice(0, h), slice(0, w))]

    def describe(self):
        return f"every voxel, eps={format_eps(self.eps)}"

    def spec(self):
        return f"linf:eps={format_eps(self.eps)}"


@dataclass(frozen=True)
class Frames(Threat):
    frames: tuple[int, ...] = ()
    kind = "frames"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.frames, (str, bytes)) or not isinstance(self.frames, (tuple, list, range, np.ndarray)):
            raise ThreatError(f"frames: frames must be a sequence of frame indices, got {self.frames!r}")
        _set(self, frames=tuple(_checked_int(f, "frames", self.kind) for f in self.frames))

    def validate(self, shape):
        super().validate(shape)
        t = _grid(shape)[0]
        bad = [f for f in self.frames if not 0 <= f < t]
        if bad:
            raise ThreatError(f"frames {bad} out of range: the input has T={t} frames (0..{t - 1})")
        if not self.frames:
            raise ThreatError("frames: at least one frame expected")

    def regions(self, shape):
        self.validate(shape)
        _, h, w = _grid(shape)
        return [Region(tuple(sorted(set(self.frames))), slice(0, h), slice(0, w))]

    def describe(self):
        return f"frames {_frames_text(self.frames)}, eps={format_eps(self.eps)}"

    def spec(self):
        return f"frames:eps={format_eps(self.eps)},frames={_frames_text(self.frames)}"


@dataclass(frozen=True)
class AnyFrames(Threat):
    k: int = 1
    kind = "anyframes"

    def __post_init__(self):
        super().__post_init__()
        _set(self, k=_checked_int(self.k, "k", self.kind, lo=1))

    @property
    def choose(self):
        return self.k

    def validate(self, shape):
        super().validate(shape)
        t = _grid(shape)[0]
        if not 1 <= self.k <= t:
            raise ThreatError(f"anyframes: k must be in 1..T={t}, got k={self.k}")

    def regions(self, shape):
        self.validate(shape)
        t, h, w = _grid(shape)
        return [Region((f,), slice(0, h), slice(0, w)) for f in range(t)]

    def _covers(self, changed, shape):
        return int(np.any(changed, axis=(1, 2)).sum()) <= self.k

    def describe(self):
        return f"any {self.k} frame(s), eps={format_eps(self.eps)}"

    def spec(self):
        return f"anyframes:eps={format_eps(self.eps)},k={self.k}"


@dataclass(frozen=True)
class Patch(Threat):
    t: tuple[int, int] = (0, 0)  # inclusive frame range
    y: int = 0
    x: int = 0
    h: int = 1
    w: int = 1
    kind = "patch"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.t, (tuple, list)) or len(self.t) != 2:
            raise ThreatError(f"patch: t must be a pair (first frame, last frame), got {self.t!r}")
        a, b = (_checked_int(v, "t", self.kind) for v in self.t)
        if b < a:
            raise ThreatError(f"patch: t=({a}, {b}) is empty (expected first frame <= last frame)")
        _set(self, t=(a, b), y=_checked_int(self.y, "y", self.kind), x=_checked_int(self.x, "x", self.kind),
             h=_checked_int(self.h, "h", self.kind, lo=1), w=_checked_int(self.w, "w", self.kind, lo=1))

    def validate(self, shape):
        super().validate(shape)
        t, h, w = _grid(shape)
        a, b = self.t
        if not 0 <= a <= b < t:
            raise ThreatError(f"patch: frames {a}-{b} out of range: the input has T={t} frames (0..{t - 1})")
        if self.y + self.h > h or self.x + self.w > w:
            raise ThreatError(f"patch: {self.h}x{self.w} at (y={self.y}, x={self.x}) lies outside the {h}x{w} frame")

    def regions(self, shape):
        self.validate(shape)
        return [Region(tuple(range(self.t[0], self.t[1] + 1)), slice(self.y, self.y + self.h), slice(self.x, self.x + self.w))]

    def describe(self):
        return f"{self.h}x{self.w} patch at (y={self.y}, x={self.x}) in frames {self.t[0]}-{self.t[1]}, eps={format_eps(self.eps)}"

    def spec(self):
        return f"patch:eps={format_eps(self.eps)},t={self.t[0]}-{self.t[1]},y={self.y},x={self.x},h={self.h},w={self.w}"


@dataclass(frozen=True)
class AnyPatch(Threat):
    len: int = 1
    h: int = 1
    w: int = 1
    stride: int = 1
    # optional sub-volume (t0, t1, y0, y1, x0, x1), ends exclusive, that every placement must lie in
    # (used by branch-and-bound to split the placements; None: the whole input)
    area: tuple[int, int, int, int, int, int] | None = None
    kind = "anypatch"

    def __post_init__(self):
        super().__post_init__()
        _set(self, **{key: _checked_int(getattr(self, key), key, self.kind, lo=1) for key in ("len", "h", "w", "stride")})
        if self.area is not None:
            if not isinstance(self.area, (tuple, list)) or len(self.area) != 6:
                raise ThreatError(f"anypatch: area must be (t0, t1, y0, y1, x0, x1), got {self.area!r}")
            _set(self, area=tuple(_checked_int(v, "area", self.kind) for v in self.area))

    def validate(self, shape):
        super().validate(shape)
        t, h, w = _grid(shape)
        if not 1 <= self.len <= t:
            raise ThreatError(f"anypatch: len must be in 1..T={t}, got len={self.len}")
        if not (1 <= self.h <= h and 1 <= self.w <= w):
            raise ThreatError(f"anypatch: a {self.h}x{self.w} patch does not fit the {h}x{w} frame")
        if self.area is not None:
            t0, t1, y0, y1, x0, x1 = self.area
            if not (0 <= t0 and t0 + self.len <= t1 <= t and 0 <= y0 and y0 + self.h <= y1 <= h and 0 <= x0 and x0 + self.w <= x1 <= w):
                raise ThreatError(f"anypatch: area {self.area} must lie in the input and hold at least one placement")

    def bounds(self, shape) -> np.ndarray:
        """Rows (lowest, highest) allowed start along t, y and x (a 3 x 2 array)."""
        t, h, w = _grid(shape)
        t0, t1, y0, y1, x0, x1 = self.area or (0, t, 0, h, 0, w)
        return np.array([[t0, t1 - self.len], [y0, y1 - self.h], [x0, x1 - self.w]])

    def placements(self, shape) -> np.ndarray:
        """Window starts and patch corners, an array of rows (t0, y0, x0)."""
        self.validate(shape)
        (ta, tb), (ya, yb), (xa, xb) = self.bounds(shape)
        on_stride = lambda a, b: np.arange(-(-a // self.stride) * self.stride, b + 1, self.stride)  # noqa: E731
        ts, ys, xs = np.arange(ta, tb + 1), on_stride(ya, yb), on_stride(xa, xb)
        p = np.stack(np.meshgrid(ts, ys, xs, indexing="ij"), axis=-1).reshape(-1, 3)
        if len(p) == 0:
            raise ThreatError(f"anypatch: no placement on stride {self.stride} lies in area {self.area}")
        return p

    def regions(self, shape):
        return [Region(tuple(range(t0, t0 + self.len)), slice(y0, y0 + self.h), slice(x0, x0 + self.w)) for t0, y0, x0 in self.placements(shape)]

    def n_members(self, shape) -> int:
        """One member per placement (counted without building every placement's region)."""
        return len(self.placements(shape))

    def perturbable(self, shape) -> np.ndarray:
        """The placements are a product of per-axis starts, so their union is the product of the
        per-axis unions of [start, start + size)."""
        p = self.placements(shape)
        axes = []
        for axis, (n, size) in enumerate(zip(_grid(shape), (self.len, self.h, self.w))):
            covered = np.zeros(n, dtype=bool)
            for start in np.unique(p[:, axis]):
                covered[start:start + size] = True
            axes.append(covered)
        return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]

    def _covers(self, changed, shape):
        if not changed.any():
            return True
        idx = np.argwhere(changed)
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        p = self.placements(shape)
        size = np.array([self.len, self.h, self.w])
        return bool(np.any(np.all((p <= lo) & (p + size - 1 >= hi), axis=1)))

    def describe(self):
        s = f", stride {self.stride}" if self.stride != 1 else ""
        a = f", inside {self.area}" if self.area is not None else ""
        return f"a {self.h}x{self.w} patch anywhere over any {self.len} consecutive frame(s){s}{a}, eps={format_eps(self.eps)}"

    def spec(self):
        s = f",stride={self.stride}" if self.stride != 1 else ""
        a = ",area=" + "-".join(map(str, self.area)) if self.area is not None else ""
        return f"anypatch:eps={format_eps(self.eps)},len={self.len},h={self.h},w={self.w}{s}{a}"


@dataclass(frozen=True, eq=False)
class Boxes(Threat):
    """An explicit union of K boxes ``lo[k] <= x <= hi[k]`` (e.g. read from a VNN-LIB file), not tied
    to an eps or to the data domain (``domain`` arguments are ignored: the boxes are the set).

    The set has no centre of its own, so it fixes its own reference point ``reference`` (the centre
    of the first box, a point of the set) and ``free``: the (T, H, W) voxels that some member leaves
    free or pins to a value other than another member's.  Every other entry has one value in every
    member; an x0 used with this set must equal it there (``interval`` checks), so the assumption of
    every method that voxels outside ``perturbable`` are constants at x0 holds.  ``eps`` is the
    L-infinity radius of the set around ``reference``.  Branch-and-bound children (``subset``) keep
    their parent's ``free`` mask, so they share its constants even when they exclude ``reference``.
    Build with ``Boxes.of(lo, hi)``.
    """

    lo: np.ndarray = None  # K x C x T x H x W
    hi: np.ndarray = None
    free: np.ndarray = None  # T x H x W bool
    kind = "boxes"
    __eq__ = object.__eq__  # identity: the inherited field-wise comparison would see only eps
    __hash__ = object.__hash__

    @classmethod
    def of(cls, lo, hi) -> "Boxes":
        lo, hi = (np.array(b, dtype=np.float64) for b in (lo, hi))
        if lo.ndim != 5 or lo.shape != hi.shape or len(lo) == 0:
            raise ThreatError(f"boxes: expected lower and upper bounds of shape K x C x T x H x W (K >= 1), got {lo.shape} and {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ThreatError("boxes: every bound must be finite")
        if np.any(lo > hi):
            k = int(np.argmax(np.any(lo > hi, axis=(1, 2, 3, 4))))
            raise ThreatError(f"boxes: member {k} is empty (some lower bound exceeds its upper bound)")
        pinned = np.all((lo == hi) & (lo == lo[:1]), axis=(0, 1))
        ref = (lo[0] + hi[0]) / 2
        eps = float(max(np.max(ref - lo), np.max(hi - ref)))
        for a in (lo, hi, pinned):
            a.setflags(write=False)
        return cls(eps, lo, hi, ~pinned)

    @property
    def reference(self) -> np.ndarray:
        """A point of the set: the centre of the first box."""
        return (self.lo[0] + self.hi[0]) / 2

    def subset(self, members) -> "Boxes":
        """The union of the members with indices ``members`` (same ``free`` mask)."""
        return Boxes(self.eps, self.lo[members], self.hi[members], self.free)

    def validate(self, shape) -> None:
        if tuple(shape) != self.lo.shape[1:]:
            raise ThreatError(f"boxes: the boxes have shape {self.lo.shape[1:]}, the input {tuple(shape)}")

    def with_eps(self, eps: float) -> "Threat":
        raise ThreatError("boxes: an explicit union of boxes has no eps to change")

    def n_members(self, shape) -> int:
        return len(self.lo)

    def regions(self, shape):
        raise ThreatError("boxes: the members are explicit boxes, not regions of the grid")

    def interval(self, x0, domain=DEFAULT_DOMAIN):
        """The hull of the members (x0 must equal the set on the entries every member pins)."""
        x0 = np.asarray(x0, dtype=np.float64)
        self.validate(x0.shape)
        lo, hi = self.lo.min(0), self.hi.max(0)
        fixed = ~np.broadcast_to(self.free[None], x0.shape)
        if np.any(x0[fixed] != lo[fixed]):
            raise ThreatError("boxes: x0 differs from the value every member gives some input entry")
        return lo, hi

    def perturbable(self, shape) -> np.ndarray:
        self.validate(shape)
        return self.free

    def member_boxes(self, x0, domain=DEFAULT_DOMAIN):
        yield from zip(self.lo, self.hi)

    def contains(self, x0, x1, tol: float = 1e-9, domain=DEFAULT_DOMAIN) -> bool:
        x1 = np.asarray(x1, dtype=np.float64)
        if x1.shape != self.lo.shape[1:]:
            return False
        inside = (x1 >= self.lo - tol) & (x1 <= self.hi + tol)
        return bool(np.any(np.all(inside.reshape(len(inside), -1), axis=1)))

    def project(self, x1: np.ndarray) -> np.ndarray:
        """x1 clipped into the member box it is nearest to (in L-infinity): a point of the set."""
        clipped = np.clip(np.asarray(x1, dtype=np.float64)[None], self.lo, self.hi)
        dist = np.abs(clipped - x1).reshape(len(clipped), -1).max(1)
        return clipped[int(np.argmin(dist))]

    def sample(self, x0, n, rng=None, domain=DEFAULT_DOMAIN) -> np.ndarray:
        rng = rng or np.random.default_rng()
        k = rng.integers(len(self.lo), size=n)
        return rng.uniform(self.lo[k], self.hi[k])

    def describe(self):
        return f"{len(self.lo)} explicit box(es) over {int(self.free.sum())} free voxel(s)"

    def spec(self):
        return f"boxes:members={len(self.lo)}"


def _frames_text(frames) -> str:
    return "+".join(str(f) for f in frames)


def member_threats(threat: Threat, shape) -> list[Threat]:
    """The member boxes of a union threat, each as a single-box threat (frames, patch); [threat] otherwise."""
    if isinstance(threat, AnyFrames):
        return [Frames(threat.eps, c) for c in itertools.combinations(range(shape[1]), threat.k)]
    if isinstance(threat, AnyPatch):
        return [Patch(threat.eps, (int(t), int(t) + threat.len - 1), int(y), int(x), threat.h, threat.w)
                for t, y, x in threat.placements(shape)]
    return [threat]


KINDS: dict[str, type[Threat]] = {c.kind: c for c in (Linf, Frames, AnyFrames, Patch, AnyPatch)}
_KEYS = {
    "linf": ({"eps"}, set()),
    "frames": ({"eps", "frames"}, set()),
    "anyframes": ({"eps", "k"}, set()),
    "patch": ({"eps", "t", "y", "x", "h", "w"}, set()),
    "anypatch": ({"eps", "len", "h", "w"}, {"stride", "area"}),
}
EXAMPLES = {
    "linf": "linf:eps=2/255",
    "frames": "frames:eps=4/255,frames=0+2",
    "anyframes": "anyframes:k=1,eps=2/255",
    "patch": "patch:eps=8/255,t=0-1,y=2,x=2,h=4,w=4",
    "anypatch": "anypatch:eps=8/255,len=2,h=3,w=3",
}


def parse_eps(text: str) -> float:
    """A decimal, a fraction such as ``2/255``, or ``full`` (any value of the data domain)."""
    t = text.strip()
    if t == "full":
        return math.inf
    try:
        v = float(Fraction(t))
    except (ValueError, ZeroDivisionError):
        raise ThreatError(f"eps expects a decimal, a fraction like 2/255, or 'full'; found {text!r}") from None
    except OverflowError:
        raise ThreatError(f"eps {text!r} is too large for a float; use 'full' for any value of the data domain") from None
    if v < 0:
        raise ThreatError(f"eps must be >= 0, found {text!r}")
    return v


def _parse_int(key: str, text: str, kind: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ThreatError(f"{kind}: {key} expects an integer, found {text!r}") from None
    if abs(v) > MAX_INDEX:
        raise ThreatError(f"{kind}: {key}={v} is beyond any input (at most {MAX_INDEX})")
    return v


def _parse_frames(text: str, kind: str) -> tuple[int, ...]:
    """``2+5`` or ``2-4`` or combinations such as ``0+3-5``."""
    out: list[int] = []
    for part in text.split("+"):
        a, sep, b = part.partition("-")
        lo = _parse_int("frames", a, kind)
        hi = _parse_int("frames", b, kind) if sep else lo
        if hi < lo:
            raise ThreatError(f"{kind}: frame range {part!r} is empty (expected a-b with a <= b)")
        out.extend(range(lo, hi + 1))
    return tuple(sorted(set(out)))


def parse_threat(text: str) -> Threat:
    """Parse the threat grammar ``KIND:key=value,key=value`` (see ARCHITECTURE.md)."""
    if not isinstance(text, str) or ":" not in text:
        raise ThreatError(f"expected {GRAMMAR}, e.g. {EXAMPLES['anyframes']!r}; found {text!r}")
    kind, _, body = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ThreatError(f"unknown threat kind {kind!r}; expected one of {', '.join(KINDS)} (e.g. {EXAMPLES['anyframes']!r})")
    kv: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value.strip():
            raise ThreatError(f"{kind}: expected key=value, found {item!r} (example: {EXAMPLES[kind]!r})")
        if key in kv:
            raise ThreatError(f"{kind}: key {key!r} given twice")
        kv[key] = value.strip()
    required, optional = _KEYS[kind]
    missing, unknown = required - kv.keys(), kv.keys() - required - optional
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing {', '.join(sorted(missing))}")
        if unknown:
            what.append(f"unknown {', '.join(sorted(unknown))}")
        raise ThreatError(f"{kind}: {'; '.join(what)}; expected keys {', '.join(sorted(required | optional))} (example: {EXAMPLES[kind]!r})")
    eps = parse_eps(kv["eps"])
    ints = {k: _parse_int(k, v, kind) for k, v in kv.items() if k in {"k", "y", "x", "h", "w", "len", "stride"}}
    if kind == "linf":
        return Linf(eps)
    if kind == "frames":
        return Frames(eps, _parse_frames(kv["frames"], kind))
    if kind == "anyframes":
        return AnyFrames(eps, ints["k"])
    if kind == "patch":
        fr = _parse_frames(kv["t"], kind)
        if fr != tuple(range(fr[0], fr[-1] + 1)):
            raise ThreatError(f"patch: t expects a range a-b of consecutive frames, found {kv['t']!r}")
        return Patch(eps, (fr[0], fr[-1]), ints["y"], ints["x"], ints["h"], ints["w"])
    area = None
    if "area" in kv:
        parts = kv["area"].split("-")
        if len(parts) != 6:
            raise ThreatError(f"anypatch: area expects t0-t1-y0-y1-x0-x1 (ends exclusive), found {kv['area']!r}")
        area = tuple(_parse_int("area", v, kind) for v in parts)
    return AnyPatch(eps, ints["len"], ints["h"], ints["w"], ints.get("stride", 1), area)
