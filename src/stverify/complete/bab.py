"""Branch-and-bound (method ``bab``): split the threat set and ReLU phases, bound every part by STBP.

A node is a sub-problem (S', s): a sub-threat S' of S (a member box, or an anypatch restricted to
an area) and ReLU phase constraints s (per ReLU layer: +1 input >= 0, -1 input <= 0, 0 free).  Its
bound is STBP (exact first layer, CROWN, exact concretisation over S') under s; per competitor j
a node keeps the larger of its bound and its parent's (its set is a subset).  Bounds are computed
in batched passes (``certify_batch``): up to NODES_PER_PASS open nodes, lowest bound first, are
branched together and all their children bounded in one pass; the root's threat children are
bounded in the root's pass.  Nodes are expanded best-first, lowest bound first:
  * every margin bound > 0, or the sub-problem empty                       -> proven (pruned);
  * at most ``leaf_binaries`` binaries (unstable ReLUs + threat choices)   -> MILP on (S', s);
  * else split the threat (anyframes with C(T, k) <= 64: one ``Frames`` child per k-subset;
    anypatch: halve the area along the axis with most window starts; an explicit union of boxes:
    halve the list of members), or, for a single box, the
    unstable ReLU with the highest BaBSR-style score (Bunel et al., 2020): with A the CROWN
    coefficient of the open margins on the ReLU's output and [l, u] its input bounds, the upper
    relaxation costs the bound |min(A, 0)| u(-l)/(u - l), which the split removes (when every
    such cost is 0, |A| min(u, -l) decides); with no unstable ReLU left that A reaches, the MILP.
Falsification: a node with a new sub-threat and a negative bound is attacked briefly (within
``attack_share`` of the time spent); before a ReLU split, the minimisers over S' of the margins'
linear lower bounds (a by-product of the scores) are evaluated.  The MILP of a node is
``encodings.milp.encode`` over S' with the node's bounds, where a phase constraint clips the
neuron's input bounds to [0, u] or [l, 0], so the encoding fixes its phase exactly (see
``_BaB.milp_bounds`` for sub-problems that exclude x0).  Verified only when every leaf is proven
(bound > 0, empty, or MILP verified); falsified only with a counterexample replayed on the
original threat; otherwise timeout / unknown, with margin_lb the lowest bound left open.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..deadline import DeadlineExceeded, of as deadline_of
from ..encodings.backends import SOLVERS, SolverError
from ..encodings.milp import encode
from ..result import VerifyResult
from ..stbp_hybrid.certify import certify_batch, make_support, torch_layers
from ..stbp_hybrid.propagate import backward, relu_relaxation, spec_matrix
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Boxes, Threat
from .attack import attack
from .milp_verify import decide
from .partition import threat_children  # noqa: F401 - also this module's public name
from .preattack import falsify
from ..errors import InputError
from ..replay import margin_at, replay

NODES_PER_PASS = 8  # open nodes branched together; their children are bounded in one batched pass
INACTIVE_SLACK = 1e-9  # see _BaB.milp_bounds


@dataclass(order=True)
class Node:
    key: float  # the lowest margin bound: the queue's order
    seq: int
    threat: Threat = field(compare=False)
    splits: dict = field(compare=False)  # a tensor ReLUs read -> float tensor of +1 / -1 / 0, shaped like it
    depth: int = field(compare=False)
    lb: np.ndarray = field(compare=False)  # per class j: lower bound of logit_y - logit_j (+inf at y)
    bounds: list = field(compare=False)  # per tensor: (lo, hi) numpy boxes, phase constraints applied
    new_threat: bool = field(compare=False)


def n_choice_binaries(threat: Threat, shape) -> int:
    """Binaries the MILP spends on the threat's choice."""
    if isinstance(threat, AnyFrames):
        return shape[1] if threat.n_members(shape) > 1 else 0
    if isinstance(threat, AnyPatch):
        n = len(threat.placements(shape))
        return n if n > 1 else 0
    if isinstance(threat, Boxes):
        return len(threat.lo) if len(threat.lo) > 1 else 0
    return 0


def relu_scores(layers, bounds, S: torch.Tensor, relus: dict[int, int]) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Per tensor a ReLU reads (``relus``: ReLU node -> that tensor), the split score of every
    neuron (0 for stable ones; module docstring), and the input coefficients A_in of the CROWN lower
    bounds <A_in, x> + c of the rows of S (``bounds``: the boxes of one set, 1 x shape); the
    coefficients on each ReLU's output are read on the way back (``backward``'s taps)."""
    taps = {i + 1: None for i in relus}
    A_in, _ = backward(layers, bounds, len(layers), S, taps=taps)
    scores = {}
    for i, t in relus.items():
        A = taps[i + 1]
        if A is None:  # the margins do not depend on this ReLU
            continue
        l, u = (b[0] for b in bounds[t])
        unstable = (l < 0) & (u > 0)
        cost = (A.clamp(max=0).abs() * relu_relaxation(l, u)[2]).sum(0)
        scores[t] = torch.where(unstable, cost, 0.0), torch.where(unstable, A.abs().sum(0) * torch.minimum(u, -l), 0.0)
    primary = any(bool(s[0].max() > 0) for s in scores.values())
    return {t: s[0] if primary else s[1] for t, s in scores.items()}, A_in


class _BaB:
    def __init__(self, net, x, y, threat, deadline, domain, solver, leaf_binaries, attack_share, device=None,
                 root_attack=0.0):
        self.net, self.x, self.y, self.threat, self.deadline, self.domain = net, x, y, threat, deadline, domain
        self.solver, self.leaf_binaries, self.attack_share, self.device = solver, leaf_binaries, attack_share, device
        self.root_attack = root_attack
        self.layers = torch_layers(net)
        self.relus = sorted(set(net.relu_inputs.values()))  # the tensors ReLUs read: where phases are split
        self.others = [j for j in range(net.n_classes) if j != y]
        self.clean = net.activations(x)
        self.start = time.perf_counter()
        self.seq = itertools.count()
        self.stats = dict(nodes=0, pruned=0, empty=0, max_depth=0, threat_splits=0, relu_splits=0, milp_leaves=0,
                          milp_verified=0, attacks=0, bound_passes=0, bound_s=0.0, milp_s=0.0, attack_s=0.0, branch_s=0.0)
        self.ahead: dict[Threat, object] = {}  # certificates of sub-threats bounded ahead of their turn
        self.proven_lb = math.inf  # min over proven leaves of their margin bound
        self.open_lb = math.inf  # min over undecided leaves and open nodes of their margin bound

    # --- bounding ------------------------------------------------------------------------
    def bound(self, children: list[tuple], ahead: list[Threat] = ()) -> list[Node]:
        """The open nodes among the sub-problems (threat, splits, depth, parent bound, new threat?),
        all bounded in one batched STBP pass (``certify_batch``); proven ones are counted.  The
        sub-threats ``ahead`` (without phase constraints) are bounded in the same pass and kept
        for when they are reached (the root's threat children: an instance that needs BaB is
        rarely proven by the root bound alone)."""
        fresh = [bool(c[1]) or c[0] not in self.ahead for c in children]
        todo = [c for c, f in zip(children, fresh) if f]
        if not todo and not ahead:
            certs = []
        else:
            t = time.perf_counter()
            certs = certify_batch(self.net, self.x, self.y, [(c[0], c[1] or None) for c in todo] + [(a, None) for a in ahead],
                                  "crown", "threat", self.domain, device=self.device,
                                  deadline=self.deadline)
            self.stats["bound_s"] += time.perf_counter() - t
            self.stats["bound_passes"] += 1
        self.ahead.update(zip(ahead, certs[len(todo):]))
        done = iter(certs[:len(todo)])
        certs = [next(done) if f else self.ahead.pop(c[0]) for c, f in zip(children, fresh)]
        out = []
        for (threat, splits, depth, parent_lb, new_threat), cert in zip(children, certs):
            self.stats["nodes"] += 1
            self.stats["max_depth"] = max(self.stats["max_depth"], depth)
            lb = np.maximum(cert.margin_lb, parent_lb)
            if cert.stats["empty"] or lb.min() > 0:
                self.stats["empty" if cert.stats["empty"] else "pruned"] += 1
                self.proven_lb = min(self.proven_lb, float(lb.min()))
                continue
            bounds = list(cert.bounds)
            for i, s in splits.items():  # fix the phases exactly (``certify`` widens the clipped bounds by its slack)
                s = s.numpy()
                lo, hi = bounds[i]
                bounds[i] = (np.where(s > 0, np.maximum(lo, 0.0), lo), np.where(s < 0, np.minimum(hi, 0.0), hi))
            out.append(Node(float(lb.min()), next(self.seq), threat, splits, depth, lb, bounds, new_threat))
        return out

    def binaries(self, node: Node) -> int:
        """Binaries of the node's MILP: unstable ReLUs and the threat's choice (max-pool ones aside)."""
        unstable = sum(int(np.sum((node.bounds[i][0] < 0) & (node.bounds[i][1] > 0))) for i in self.relus)
        return unstable + n_choice_binaries(node.threat, self.x.shape)

    # --- falsification -------------------------------------------------------------------
    def try_attack(self, node: Node) -> np.ndarray | None:
        elapsed = time.perf_counter() - self.start
        if not (node.new_threat and node.key < 0 and self.stats["attack_s"] <= self.attack_share * elapsed):
            return None
        t = time.perf_counter()
        p = attack(self.net, self.x, self.y, node.threat, steps=10, restarts=1, time_limit=self.deadline - t, domain=self.domain)
        self.stats["attacks"] += 1
        self.stats["attack_s"] += time.perf_counter() - t
        return p

    def primal(self, node: Node, A_in: torch.Tensor) -> np.ndarray | None:
        """The minimisers over the sub-threat of the margins' linear lower bounds, if one replays."""
        sup = make_support(self.x, node.threat, "threat", self.domain)
        pts = torch.stack([sup.argmin(a) for a in A_in]).numpy()
        logits = self.net.forward(pts)
        m = logits[:, self.y] - np.max(np.delete(logits, self.y, axis=1), axis=1)
        rep = replay(self.net, self.x, self.y, self.threat, pts[int(np.argmin(m))], self.domain) if m.min() < 0 else None
        return rep.point if rep is not None and rep.ok else None

    # --- leaves --------------------------------------------------------------------------
    def milp_bounds(self, node: Node) -> list:
        """The node's bounds for ``encode``, which takes a ReLU with input bounds u <= 0 to be the
        constant clean activation: exact when x0 is in the set, but not on a ReLU-split sub-problem
        that excludes x0.  Where the clean input is > 0 such a ReLU gets u = INACTIVE_SLACK instead
        (a binary; exact over the sub-problem enlarged by that slack)."""
        bounds = list(node.bounds)
        for i in self.relus:
            lo, hi = bounds[i]
            wrong = (hi <= 0) & (self.clean[i] > 0)
            bounds[i] = (np.where(wrong, np.minimum(lo, -INACTIVE_SLACK), lo), np.where(wrong, INACTIVE_SLACK, hi))
        return bounds

    def milp(self, node: Node):
        """('verified', bound) | ('falsified', point) | (status, message) for unknown / timeout."""
        t = time.perf_counter()
        self.stats["milp_leaves"] += 1
        try:
            enc = encode(self.net, self.x, node.threat, self.milp_bounds(node), self.domain, deadline=self.deadline)
            best = float(np.min(node.lb[node.lb > 0], initial=math.inf))
            for j in (int(j) for j in np.argsort(node.lb) if j != self.y and not node.lb[j] > 0):
                o = decide(self.net, self.x, self.y, node.threat, enc, j, self.solver, self.deadline, domain=self.domain)
                if node.splits and o.stats.get("solves", [{}])[0].get("status") == "infeasible":
                    break  # ``decide`` assumes x0 feasible; a ReLU-split sub-problem may exclude it and be empty
                if o.status == "falsified":
                    rep = replay(self.net, self.x, self.y, self.threat, o.point, self.domain)
                    return ("falsified", rep.point) if rep.ok else ("unknown", f"a MILP leaf's point fails replay: {rep.reason}")
                if o.status != "verified":
                    return o.status, o.message or "a MILP leaf ran out of time"
                best = min(best, max(o.bound, node.lb[j]))
            self.stats["milp_verified"] += 1
            return "verified", best
        except DeadlineExceeded:
            return "timeout", "time limit reached encoding a MILP leaf"
        finally:
            self.stats["milp_s"] += time.perf_counter() - t

    # --- branching -----------------------------------------------------------------------
    def relu_split(self, node: Node):
        """('falsified', point) from the primal check, ('split', children), or None when no
        unstable ReLU affects the open margins."""
        bounds = [tuple(torch.as_tensor(b)[None] for b in pair) for pair in node.bounds]  # one set
        rows = spec_matrix(self.net.n_classes, self.y)[[k for k, j in enumerate(self.others) if not node.lb[j] > 0]]
        with torch.no_grad():
            scores, A_in = relu_scores(self.layers, bounds, rows, self.net.relu_inputs)
        point = self.primal(node, A_in)
        if point is not None:
            return "falsified", point
        if not scores:
            return None
        layer = max(scores, key=lambda i: float(scores[i].max()))
        if not scores[layer].max() > 0:
            return None
        flat = int(torch.argmax(scores[layer]))
        self.stats["relu_splits"] += 1
        kids = []
        for phase in (1.0, -1.0):
            s = dict(node.splits)
            s[layer] = s[layer].clone() if layer in s else torch.zeros(self.net.shapes[layer], dtype=torch.float64)
            s[layer].view(-1)[flat] = phase
            kids.append((node.threat, s, False))
        return "split", kids

    def branch(self, node: Node):
        """('split', [(threat, splits, new threat?)]), ('falsified', point) or ('leaf', None)."""
        if self.binaries(node) <= self.leaf_binaries:
            return "leaf", None
        subs = threat_children(node.threat, self.x.shape)
        if subs:
            self.stats["threat_splits"] += 1
            return "split", [(t, node.splits, True) for t in subs]
        return self.relu_split(node) or ("leaf", None)

    # --- search --------------------------------------------------------------------------
    def run(self) -> tuple[str, object, str]:
        """(status, counterexample or None, message); sets ``open_lb`` to the lowest bound of the
        parts left undecided."""
        queue = self.bound([(self.threat, {}, 0, np.full(self.net.n_classes, -math.inf), False)],
                           ahead=threat_children(self.threat, self.x.shape))
        if queue and self.root_attack > 0:  # the root's bound leaves it open: the attack on the whole set
            t = time.perf_counter()
            hit = falsify(self.net, self.x, self.y, self.threat, min(self.root_attack, self.deadline - t), self.domain,
                          "bab", t)
            self.stats["attacks"] += 1
            self.stats["attack_s"] += time.perf_counter() - t
            if hit is not None:
                self.stats["found_by"] = "attack"
                return "falsified", hit.counterexample, hit.message
        undecided: list[str] = []
        while queue:
            popped = [heapq.heappop(queue) for _ in range(min(NODES_PER_PASS, len(queue)))]  # lowest bounds first
            children = []
            for k, node in enumerate(popped):
                if time.perf_counter() >= self.deadline:
                    self.open_lb = min([self.open_lb, node.key] + [c[3].min() for c in children])
                    return "timeout", None, f"time limit reached with {len(queue) + len(popped) - k} open node(s)"
                p = self.try_attack(node)
                if p is not None:
                    return "falsified", p, "found by an attack on a branch-and-bound node"
                t = time.perf_counter()
                kind, what = self.branch(node)
                self.stats["branch_s"] += time.perf_counter() - t
                if kind == "falsified":
                    return "falsified", what, "found at the minimiser of a node's linear bound"
                if kind == "split":
                    children += [(threat, splits, node.depth + 1, node.lb, new) for threat, splits, new in what]
                    continue
                status, what = self.milp(node)
                if status == "verified":
                    self.proven_lb = min(self.proven_lb, what)
                elif status == "falsified":
                    return "falsified", what, "found by the MILP on a branch-and-bound leaf"
                else:
                    left = [n.key for n in popped[k + 1:] + queue[:1]] + [c[3].min() for c in children]  # parts still open
                    self.open_lb = min([self.open_lb, node.key] + (left if status == "timeout" else []))
                    if status == "timeout":
                        others = len(queue) + len(popped) - k - 1
                        return "timeout", None, f"time limit reached in a MILP leaf ({others} other open node(s))"
                    undecided.append(what)
            for child in self.bound(children):
                heapq.heappush(queue, child)
        if undecided:
            return "unknown", None, "; ".join(undecided[:3])
        return "verified", None, ""


def verify_bab(net, x, y, threat, timeout: float | None = 60.0, domain=DEFAULT_DOMAIN, solver: str = "scip",
               leaf_binaries: int = 30, attack_share: float = 0.1, device=None, root_attack: float = 0.0,
               **_) -> VerifyResult:
    """Complete verification by branch-and-bound (module docstring).  ``leaf_binaries``: nodes
    with at most this many binaries go to the MILP; ``attack_share``: the share of the time that
    node attacks may use; ``device``: the torch device of the node bounds; ``root_attack``: seconds
    of the attack on the whole set run when the root's bound leaves it open (``preattack``)."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
    start = time.perf_counter()
    deadline = deadline_of(timeout, start)
    bab = _BaB(net, np.asarray(x, dtype=np.float64), int(y), threat, deadline, domain, solver, leaf_binaries, attack_share,
               device, root_attack)
    try:
        status, point, msg = bab.run()
    except SolverError as e:
        return VerifyResult("error", "bab", time.perf_counter() - start, None, None, bab.stats, str(e))
    margin = None if status == "falsified" else bab.proven_lb if status == "verified" else min(bab.proven_lb, bab.open_lb)
    bab.stats.update(solver=solver, leaf_binaries=leaf_binaries)
    ub = None if point is None else margin_at(net, x, y, threat, point, domain)
    return VerifyResult(status, "bab", time.perf_counter() - start, margin, point, bab.stats, msg, margin_ub=ub)
