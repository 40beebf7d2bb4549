"""The axis order of a dataset's inputs, and how the one meant is told.

A 5-D array holds N inputs as N x C x T x H x W (``nCthw``, stverify's own order) or as
N x T x H x W x C (``nthwC``, channel-last, as image frames and the Udacity driving clips are
stored); a 4-D array holds single-channel inputs N x T x H x W (``nthw``, MedMNIST).  The layout of
a 5-D array is, in this order: the one given (``--layout``), the one the file states (a string
array ``layout``; both given and stated must agree), the only one that yields the model's input
shape (C, T, H, W), the only one whose channel axis is at most ``MAX_GUESSED_CHANNELS`` long.
Whatever leaves both is refused, naming the shapes each reading gives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

AXES = {"nCthw": (0, 1, 2, 3, 4), "nthwC": (0, 4, 1, 2, 3), "nthw": None}  # to N x C x T x H x W
LAYOUTS = tuple(AXES)
WORDS = {"nCthw": "N x C x T x H x W", "nthwC": "N x T x H x W x C", "nthw": "N x T x H x W, one channel"}
MAX_GUESSED_CHANNELS = 4  # without a model, a 5-D array's channel axis is the one at most this long


@dataclass(frozen=True)
class Layout:
    """A layout and why it was chosen (``reason``, shown to the user)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({WORDS[self.name]}; {self.reason})"

    def input_shape(self, shape) -> tuple[int, ...]:
        """(C, T, H, W) of each input of an array of this layout and ``shape`` (N first)."""
        return _input_shape(self.name, shape)

    def to_ncthw(self, a: np.ndarray) -> np.ndarray:
        """A view of ``a`` (N first) as N x C x T x H x W."""
        return a[:, None] if AXES[self.name] is None else a.transpose(AXES[self.name])


def _input_shape(name: str, shape) -> tuple[int, ...]:
    if AXES[name] is None:
        return (1, *shape[1:])
    return tuple(int(shape[i]) for i in AXES[name][1:])


def fitting(shape) -> list[str]:
    """The layouts an array of ``shape`` may have."""
    return {4: ["nthw"], 5: ["nCthw", "nthwC"]}.get(len(shape), [])


def _readings(shape, names) -> str:
    return " or ".join(f"{WORDS[n]} ({n}: C x T x H x W = {_input_shape(n, shape)})" for n in names)


def choose(shape, what: str, given: str | None = None, stated: str | None = None, input_shape=None) -> Layout:
    """The layout of the array ``what`` of ``shape`` (module docstring); InputError when none or two fit."""
    shape = tuple(int(s) for s in shape)
    fits = fitting(shape)
    if not fits:
        raise InputError(f"{what} has shape {shape}; expected N x T x H x W (one channel), N x C x T x H x W "
                         "or N x T x H x W x C")
    for source, name in (("--layout", given), ("the file's 'layout' array", stated)):
        if name is not None and name not in fits:
            known = f"it is none of {', '.join(LAYOUTS)}" if name not in AXES else f"{what} has shape {shape}"
            raise InputError(f"{source} says {name!r}, which does not fit: {known} (fitting: {', '.join(fits)})")
    if given is not None and stated is not None and given != stated:
        raise InputError(f"--layout {given} contradicts the file, whose 'layout' array says {stated}")
    if given is not None or stated is not None:
        return Layout(given or stated, "given by --layout" if given else "stated by the file")
    if len(fits) == 1:
        return Layout(fits[0], "the 4-D layout")
    if input_shape is not None:
        match = [n for n in fits if _input_shape(n, shape) == tuple(input_shape)]
        if not match:
            raise InputError(f"{what} has shape {shape}: {_readings(shape, fits)}; the model expects "
                             f"C x T x H x W = {tuple(input_shape)}")
        if len(match) == 1:
            return Layout(match[0], f"the model's input shape {tuple(input_shape)}")
    else:
        small = [n for n in fits if _input_shape(n, shape)[0] <= MAX_GUESSED_CHANNELS]
        if len(small) == 1:
            return Layout(small[0], f"the only axis that can be channels (<= {MAX_GUESSED_CHANNELS})")
    raise InputError(f"{what} has shape {shape}, which reads as {_readings(shape, fits)}: ambiguous; "
                     "say which with --layout nCthw or --layout nthwC (API: layout=)")
