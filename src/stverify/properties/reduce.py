"""A property as the label margin of an extended network, so that every method decides it.

For an unsafe set U = OR_k AND_i (r_ki >= 0), r = C Y + d (``unsafe.OutputSpec``):
  * the robustness form OR_{j != y} (Y_j >= Y_y) is label y on the network itself:
    margin = min_j (Y_y - Y_j);
  * anything else appends exact layers: a Linear layer r = C Y + d (all atoms), then per disjunct k
    the minimum z_k = min_i r_ki by a tree of min(a, b) = a - ReLU(a - b) with the pass-through
    a = ReLU(a) - ReLU(-a) (weights 0 and +-1, exact in real arithmetic), and outputs
    (0, z_1, ..., z_K) with label 0:  label margin = min_k (0 - z_k) = min_k max_i (-r_ki), the
    property's margin.  A disjunct of one atom needs no minimum: one Linear layer (0, r) suffices.
Every method (STBP's CROWN over the threat set, MILP, SMT, branch-and-bound) then bounds or
decides the property margin as it does a label margin.
"""
from __future__ import annotations

import numpy as np

from ..network.graph import Network
from ..network.layers import Linear, ReLU
from .unsafe import OutputSpec


def reduce_to_label(net: Network, output: OutputSpec) -> tuple[Network, int]:
    """(network, label) whose label margin is ``output.margin`` of ``net``'s outputs (module docstring)."""
    y = output.robustness_label()
    if y is not None:
        return net, y
    atoms = [a for d in output.disjuncts for a in d]
    C = np.stack([a.coef for a in atoms])
    d = np.array([a.const for a in atoms])
    groups, start = [], 0
    for dis in output.disjuncts:
        groups.append([{start + i: 1.0} for i in range(len(dis))])  # each value: {index of h: weight}
        start += len(dis)
    if all(len(g) == 1 for g in groups):  # no minimum to take: select the rows (exact) after a zero row
        return net.then([Linear(np.vstack([np.zeros(C.shape[1]), C]), np.r_[0.0, d])], "spec"), 0
    layers = [Linear(C, d)]
    width = len(atoms)  # h: the current layer output; every value is a combination of h
    while any(len(g) > 1 for g in groups):
        rows: list[dict] = []

        def relu_of(combo: dict) -> int:
            rows.append(combo)
            return len(rows) - 1

        new_groups = []
        for g in groups:
            ng = []
            for pair in (g[i:i + 2] for i in range(0, len(g), 2)):
                a = pair[0]
                pos, neg = relu_of(a), relu_of({k: -w for k, w in a.items()})
                if len(pair) == 1:  # a = ReLU(a) - ReLU(-a)
                    ng.append({pos: 1.0, neg: -1.0})
                else:  # min(a, b) = a - ReLU(a - b)
                    diff = dict(a)
                    for k, w in pair[1].items():
                        diff[k] = diff.get(k, 0.0) - w
                    ng.append({pos: 1.0, neg: -1.0, relu_of(diff): -1.0})
            new_groups.append(ng)
        layers += [Linear(_matrix(rows, width), np.zeros(len(rows))), ReLU()]
        groups, width = new_groups, len(rows)
    out = [{}] + [g[0] for g in groups]
    layers.append(Linear(_matrix(out, width), np.zeros(len(out))))
    return net.then(layers, "spec"), 0


def _matrix(rows: list[dict], width: int) -> np.ndarray:
    W = np.zeros((len(rows), width))
    for r, combo in enumerate(rows):
        for k, w in combo.items():
            W[r, k] += w
    return W
