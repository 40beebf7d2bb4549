"""The property grammar: ``KIND:key=value,...`` -> a ``Property``, bound to an instance as an unsafe set.

| kind | keys | holds at x' when | margin |
| --- | --- | --- | --- |
| ``label`` | [class] | the label (``class``, else the sample's) is the strict argmax | min_{j != y} Y_y - Y_j |
| ``deviation`` | delta [, output] | abs(Y_i(x') - Y_i(x0)) <= delta (a regression band around the clean output) | delta - abs(Y_i(x') - Y_i(x0)) |
| ``range`` | lo and / or hi [, output] | lo <= Y_i(x') <= hi | min(hi - Y_i, Y_i - lo) |
| ``target`` | class | class t never wins (some other class scores strictly higher) | max_{j != t} Y_j - Y_t |
| ``topk`` | k [, class] | the label stays among the k highest scores | Y_y - (k-th highest other score) |

``output`` defaults to 0 (the output of a one-output regression model).  Numbers take decimals,
fractions (``1/20``) and exponents.  ``Property.bind(net, x0, label)`` gives the unsafe set
(``unsafe.OutputSpec``) for one instance: a deviation's centre is the float64 reference output at x0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError
from .unsafe import OutputSpec

EXAMPLES = {"label": "label", "deviation": "deviation:delta=0.05", "range": "range:lo=-0.3,hi=0.3,output=0",
            "target": "target:class=3", "topk": "topk:k=2"}
GRAMMAR = "KIND:key=value,... with KIND one of " + ", ".join(EXAMPLES)


class PropertyError(InputError):
    """A property string, or a property that does not fit the model."""


@dataclass(frozen=True)
class Property:
    """A named output property (module docstring); ``bind`` makes it an unsafe set for one instance."""

    kind: str
    params: tuple[tuple[str, float | int], ...] = ()

    def get(self, key: str, default=None):
        return dict(self.params).get(key, default)

    @property
    def needs_label(self) -> bool:
        """Whether it is stated about the instance's label (label and top-k without their own class)."""
        return self.kind in ("label", "topk") and self.get("class") is None

    def bind(self, net, x0: np.ndarray, label: int | None = None) -> OutputSpec:
        """The unsafe set of this property for ``net`` at x0 (``label``: the instance's class, for
        ``needs_label`` properties)."""
        n = net.n_classes
        y = self.get("class", label)
        if self.kind in ("label", "topk") and y is None:
            raise PropertyError(f"{self.spec()}: needs the instance's label (give --label, or class=)")
        try:
            if self.kind == "label":
                return OutputSpec.robustness(y, n)
            if self.kind == "topk":
                return OutputSpec.top_k(y, self.get("k"), n)
            if self.kind == "target":
                return OutputSpec.target(self.get("class"), n)
            i = self.get("output", 0)
            if self.kind == "range":
                return OutputSpec.band(i, self.get("lo"), self.get("hi"), n)
            if not 0 <= i < n:  # checked before the centre is read
                raise PropertyError(f"output {i} is not an output of the model: expected 0..{n - 1} ({n} outputs)")
            centre = float(net.forward(np.asarray(x0, dtype=np.float64))[i])
            delta = self.get("delta")
            return OutputSpec.band(i, centre - delta, centre + delta, n)
        except PropertyError:
            raise
        except InputError as e:
            raise PropertyError(f"{self.spec()}: {e}") from None

    def spec(self) -> str:
        keys = ",".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.kind}:{keys}" if keys else self.kind

    def __str__(self) -> str:
        return self.spec()

    def describe(self) -> str:
        p = dict(self.params)
        i = p.get("output", 0)
        if self.kind == "label":
            return f"class {p['class']} stays the argmax" if "class" in p else "the label stays the argmax"
        if self.kind == "deviation":
            return f"output {i} stays within {p['delta']:g} of its clean value"
        if self.kind == "range":
            return f"output {i} stays in [{p.get('lo', -math.inf):g}, {p.get('hi', math.inf):g}]"
        if self.kind == "target":
            return f"class {p['class']} never wins"
        who = f"class {p['class']}" if "class" in p else "the label"
        return f"{who} stays in the top {p['k']}"


def _fmt(v) -> str:
    return str(v) if isinstance(v, int) else repr(float(v))


KEYS = {  # kind -> (required, optional) keys; ints are indices and counts
    "label": ((), ("class",)),
    "deviation": (("delta",), ("output",)),
    "range": ((), ("lo", "hi", "output")),
    "target": (("class",), ()),
    "topk": (("k",), ("class",)),
}
INTS = {"class", "output", "k"}


def _number(kind: str, key: str, text: str):
    try:
        v = Fraction(text.strip()) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise PropertyError(f"{kind}: {key}={text!r} is not a number (example: {EXAMPLES[kind]!r})") from None
    v = float(v)
    if not math.isfinite(v):
        raise PropertyError(f"{kind}: {key} must be finite, got {text!r}")
    if key in INTS:
        if v != int(v) or v < 0:
            raise PropertyError(f"{kind}: {key} must be a non-negative integer, got {text!r}")
        return int(v)
    return v


def parse_property(text) -> Property:
    """A ``Property`` from ``KIND:key=value,...`` (module docstring); ``PropertyError`` naming what
    was expected otherwise.  A ``Property`` is returned as it is."""
    if isinstance(text, Property):
        return text
    if not isinstance(text, str) or not text.strip():
        raise PropertyError(f"a property must be a string {GRAMMAR}, got {text!r}")
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KEYS:
        raise PropertyError(f"unknown property kind {kind!r}; expected {GRAMMAR} (e.g. {', '.join(EXAMPLES.values())})")
    required, optional = KEYS[kind]
    params: dict = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or key not in required + optional:
            raise PropertyError(f"{kind}: unexpected {part!r}; keys: {', '.join(required + optional) or 'none'} "
                                f"(example: {EXAMPLES[kind]!r})")
        if key in params:
            raise PropertyError(f"{kind}: {key} given twice")
        params[key] = _number(kind, key, value)
    if missing := [k for k in required if k not in params]:
        raise PropertyError(f"{kind}: missing {', '.join(missing)} (example: {EXAMPLES[kind]!r})")
    if kind == "deviation" and not params["delta"] > 0:
        raise PropertyError(f"deviation: delta must be > 0, got {params['delta']:g}")
    if kind == "range":
        if "lo" not in params and "hi" not in params:
            raise PropertyError("range: give lo, hi or both (example: 'range:lo=-0.3,hi=0.3,output=0')")
        if "lo" in params and "hi" in params and not params["lo"] < params["hi"]:
            raise PropertyError(f"range: lo must be < hi, got lo={params['lo']:g}, hi={params['hi']:g}")
    if kind == "topk" and params["k"] < 1:
        raise PropertyError("topk: k must be >= 1")
    order = required + optional
    return Property(kind, tuple(sorted(params.items(), key=lambda kv: order.index(kv[0]))))
