"""certify(): margin lower bounds and per-layer neuron bounds over a threat set (STBP).

For an input x0, label y and threat set S(x0), STBP returns for every class j a number
m_j <= min over x in S(x0) of (logit_y(x) - logit_j(x)); the instance is robust when every
m_j (j != y) is > 0.  ``concretize="threat"`` is STBP (exact first layer, exact final
concretisation over S); ``concretize="box"`` is the baseline that sees only the bounding box.
A threat set that is one box (linf, frames, patch) is its own bounding box, so both are the
same computation there.  ``certify_batch`` bounds several sub-problems (sub-threats of S and ReLU
phase constraints, for branch-and-bound) in one pass.
"""
from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import tolerances, validation
from ..errors import InputError
from ..network.to_torch import TorchNet, torch_model
from ..threats import DEFAULT_DOMAIN, Boxes, Threat, member_threats
from .budget import default_budget
from .propagate import layer_bounds, margin_bounds, spec_matrix
from .support import BoxesSupport, BoxSupport, ThreatSupport, stack_supports

RELAXATIONS = ("ibp", "crown-ibp", "crown", "alpha-crown")
# crown-ibp (CROWN-IBP, Zhang et al. 2020): IBP boxes for every intermediate tensor (after the exact
# first layer), CROWN only on the margins: one backward pass per margin instead of one per unstable
# neuron, for networks too large to refine every neuron (R3D-18-sized: 1.27M ReLUs)
CONCRETIZATIONS = ("threat", "box")
EMPTY_TOL = 1e-9  # a sub-problem is empty only if some lower bound exceeds its upper bound by more than this
_torch_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass
class Certificate:
    margin_lb: np.ndarray  # per class j: lower bound of logit_y - logit_j over the set (+inf at j = y)
    bounds: list[tuple[np.ndarray, np.ndarray]]  # bounds[t]: box containing tensor t (in a chain: the input of layer t)
    unstable: dict[int, int]  # ReLU node index -> number of its input neurons with l < 0 < u
    time_s: float
    relaxation: str
    concretize: str
    stats: dict = field(default_factory=dict)

    @property
    def min_margin(self) -> float:
        return float(np.min(self.margin_lb))

    @property
    def verified(self) -> bool:
        return self.min_margin > 0


def torch_layers(net, dtype=torch.float64, device=None) -> TorchNet:
    """The network's torch twin (its nodes' modules and what each reads), cached per network,
    dtype and device."""
    per_net = _torch_cache.setdefault(net, {})
    key = (dtype, str(device))
    if key not in per_net:
        per_net[key] = torch_model(net, dtype).to(device)
    return per_net[key]


def is_one_box(threat: Threat, shape) -> bool:
    """Whether the threat set is a single box (then it equals its bounding box)."""
    return threat.n_members(shape) == 1


def make_support(x0: np.ndarray, threat: Threat, concretize: str, domain=DEFAULT_DOMAIN, device=None):
    if concretize not in CONCRETIZATIONS:
        raise ValueError(f"concretize must be one of {CONCRETIZATIONS}, got {concretize!r}")
    if concretize == "box" or is_one_box(threat, np.shape(x0)):
        lo, hi = (torch.as_tensor(b, device=device) for b in threat.bounding_box(x0, domain))
        return BoxSupport(lo, hi)
    if isinstance(threat, Boxes):
        threat.interval(x0)  # checks that x0 agrees with the set's constants
        return BoxesSupport(threat, device=device)
    return ThreatSupport(x0, threat, domain, device=device)


def torch_device(device) -> torch.device:
    """``device`` as a torch device on which tensors can be created (InputError otherwise)."""
    try:
        d = torch.device("cpu" if device is None else device)
        torch.zeros(1, device=d)
    except (RuntimeError, TypeError, AssertionError) as e:
        reason = "CUDA is not available here" if "cuda" in str(device).lower() and not torch.cuda.is_available() else str(e)
        raise InputError(f"device {device!r}: cannot create tensors there ({reason.splitlines()[0]})") from None
    return d


def _check(net, x, y, method):
    if method not in RELAXATIONS:
        raise ValueError(f"method must be one of {', '.join(RELAXATIONS)}, got {method!r}")
    validation.label(y, net.n_classes)
    return validation.input_array(x, net.input_shape, None)


def certify(net, x: np.ndarray, y: int, threat: Threat, method: str = "crown", concretize: str = "threat",
            domain=DEFAULT_DOMAIN, device=None, alpha_steps: int = 30, splits: dict | None = None,
            memory_budget: int | None = None, deadline: float = math.inf, members: int = 0,
            alpha_every_margin: bool = False) -> Certificate:
    """Sound bounds over S(x): per-layer boxes and margin lower bounds (see the module docstring).

    ``splits`` restricts to a branch-and-bound sub-problem (ReLU phases, see ``layer_bounds``); if
    the sub-problem is empty the margins are +inf and ``stats["empty"]`` is True.  ``device``: the
    torch device every tensor is created on; ``memory_budget``: bytes a chunk of backward rows may
    use (default: half the memory available, ``budget.py``).  After ``deadline`` (a
    ``time.perf_counter()`` instant) the relaxation falls back to IBP, still sound;
    ``stats["deadline_passed"]`` says whether that happened.

    ``members``: when the bounds over a union threat leave a margin open and the union has at most
    this many member boxes, every member is bounded too (one batched pass, ``member_bounds``).
    ``alpha_every_margin``: alpha-CROWN optimises every margin, not only those CROWN leaves open."""
    cert = certify_batch(net, x, y, [(threat, splits)], method, concretize, domain, device, alpha_steps,
                         memory_budget, deadline, alpha_every_margin)[0]
    if cert.verified or not members or time.perf_counter() >= deadline:
        return cert
    n_members = threat.n_members(np.shape(x)) if concretize == "threat" and not isinstance(threat, Boxes) else 1
    if not 1 < n_members <= members:
        return cert
    parts = certify_batch(net, x, y, [(t, splits) for t in member_threats(threat, np.shape(x))], method, "threat",
                          domain, device, alpha_steps, memory_budget, deadline, alpha_every_margin)
    return member_bounds(net, cert, parts)


def member_bounds(net, whole: Certificate, parts: list[Certificate]) -> Certificate:
    """The union's certificate tightened by its members': a member's bounds hold on the member, so
    the smallest member lower bound (largest upper bound) holds on the union; intersected with the
    union's own, which hold too.  The margins are the better of the union's and the members' minimum."""
    margin = np.maximum(whole.margin_lb, np.min([p.margin_lb for p in parts], axis=0))
    bounds = [(np.maximum(lo, np.min([p.bounds[t][0] for p in parts], axis=0)),
               np.minimum(hi, np.max([p.bounds[t][1] for p in parts], axis=0))) for t, (lo, hi) in enumerate(whole.bounds)]
    unstable = {i: int(np.sum((bounds[t][0] < 0) & (bounds[t][1] > 0))) for i, t in net.relu_inputs.items()}
    stats = dict(whole.stats, members=len(parts), members_s=parts[0].time_s,
                 deadline_passed=whole.stats["deadline_passed"] or parts[0].stats["deadline_passed"])
    return Certificate(margin, bounds, unstable, whole.time_s + parts[0].time_s, whole.relaxation, whole.concretize, stats)


def certify_batch(net, x: np.ndarray, y: int, problems: list[tuple[Threat, dict | None]], method: str = "crown",
                  concretize: str = "threat", domain=DEFAULT_DOMAIN, device=None, alpha_steps: int = 30,
                  memory_budget: int | None = None, deadline: float = math.inf,
                  alpha_every_margin: bool = False) -> list[Certificate]:
    """``certify`` for several sub-problems (threat, splits) of the same x and y in one batched
    pass; one Certificate each, with ``time_s`` the time of the whole batch."""
    x = _check(net, x, y, method)
    device = torch_device(device)
    start = time.perf_counter()
    layers = torch_layers(net, device=device)
    budget = memory_budget or default_budget(device)
    sup = stack_supports([make_support(x, t, concretize, domain, device) for t, _ in problems])
    n = len(problems)
    with torch.no_grad():
        splits = _stack_splits([s for _, s in problems], net, device)
        S = spec_matrix(net.n_classes, int(y), device=device)
        bounds = layer_bounds(layers, sup, "ibp" if method in ("ibp", "crown-ibp") else "crown", splits, budget,
                              deadline=deadline)
        lb = margin_bounds(layers, bounds, sup, S, "crown" if method == "crown-ibp" else method, alpha_steps=alpha_steps,
                           budget=budget, deadline=deadline, alpha_every_margin=alpha_every_margin)
        if method == "alpha-crown" and alpha_steps > 0 and (alpha_every_margin or bool((lb <= 0).any())) \
                and time.perf_counter() < deadline:
            # optimised intermediate bounds too; CROWN is not monotone in them, so the margins are
            # the best of both and the boxes the intersection (every one of them is valid)
            bounds = layer_bounds(layers, sup, method, splits, budget, alpha_steps, prior=bounds, deadline=deadline)
            lb = torch.maximum(lb, margin_bounds(layers, bounds, sup, S, method, alpha_steps=alpha_steps, budget=budget,
                                                 deadline=deadline, alpha_every_margin=alpha_every_margin))
        lb = lb.detach().cpu().numpy()
        empty = torch.zeros(n, dtype=torch.bool, device=bounds[0][0].device)
        for lo, hi in bounds:
            empty |= (lo > hi + EMPTY_TOL).flatten(1).any(1)
    others = [j for j in range(net.n_classes) if j != y]
    np_bounds = [(lo.cpu().numpy(), hi.cpu().numpy()) for lo, hi in bounds]
    empty = empty.cpu().numpy()
    elapsed = time.perf_counter() - start
    late = time.perf_counter() >= deadline
    certs = []
    for k in range(n):
        margin = np.full(net.n_classes, np.inf)
        if not empty[k]:
            margin[others] = tolerances.lower(lb[k])
        out_bounds = [tolerances.widen(lo[k], hi[k]) for lo, hi in np_bounds]
        unstable = {i: int(np.sum((out_bounds[t][0] < 0) & (out_bounds[t][1] > 0))) for i, t in net.relu_inputs.items()}
        certs.append(Certificate(margin, out_bounds, unstable, elapsed, method, concretize,
                                 {"empty": bool(empty[k]), "batch": n, "deadline_passed": late}))
    return certs


def _stack_splits(splits: list[dict | None], net, device) -> dict | None:
    """Per tensor a ReLU reads, the phase constraints of every sub-problem stacked (N x shape; 0 = free)."""
    layers = sorted({i for s in splits if s for i in s})
    if not layers:
        return None
    out = {}
    for i in layers:
        t = torch.zeros((len(splits),) + tuple(net.shapes[i]), dtype=torch.float64, device=device)
        for k, s in enumerate(splits):
            if s and i in s:
                t[k] = torch.as_tensor(s[i], device=device)
        out[i] = t
    return out
