"""Partitions of a threat set into smaller threats: how branch-and-bound splits a union of boxes
(``bab``), and how ``milp`` splits one into a few MILPs (``milp_verify.threat_parts``)."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from ..threats import AnyFrames, AnyPatch, Boxes, Frames, Threat

MAX_FRAME_CHILDREN = 64


def threat_children(threat: Threat, shape) -> list[Threat]:
    """A partition of the threat set into smaller threats ([] when it is one box, or too many)."""
    if isinstance(threat, AnyFrames) and 1 < threat.n_members(shape) <= MAX_FRAME_CHILDREN:
        return [Frames(threat.eps, c) for c in itertools.combinations(range(shape[1]), threat.k)]
    if isinstance(threat, AnyPatch):
        p = threat.placements(shape)
        starts = [np.unique(p[:, a]) for a in range(3)]
        axis = int(np.argmax([len(s) for s in starts]))
        if len(starts[axis]) == 1:
            return []
        size = (threat.len, threat.h, threat.w)
        halves = np.array_split(starts[axis], 2)
        area = [(int(s[0]), int(s[-1]) + size[a]) for a, s in enumerate(starts)]
        out = []
        for half in halves:
            area[axis] = (int(half[0]), int(half[-1]) + size[axis])
            out.append(replace(threat, area=tuple(v for pair in area for v in pair)))
        return out
    if isinstance(threat, Boxes) and len(threat.lo) > 1:
        return [threat.subset(half) for half in np.array_split(np.arange(len(threat.lo)), 2)]
    return []
