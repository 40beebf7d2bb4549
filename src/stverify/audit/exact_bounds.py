"""Exact neuron bounds: min and max over the threat set of every entry of a tensor of the network.

For an entry z_n of tensor i (the output of node i - 1; in a chain, the input of ``net.layers[i]``;
``net.tensor(name)`` names a node's output) and the threat set S(x0), ``exact_bounds``
returns lo_n <= min over x in S of z_n(x) and hi_n >= max, with the values lo_attained_n and
hi_attained_n of z_n at points of S (so min lies in [lo, lo_attained], max in [hi_attained, hi]).
A side is ``exact`` when that interval is at most 2 ``tolerances.solver_margin`` wide.  Each
side is obtained the cheapest way that proves it (``how``):

* ``constant``: z_n does not depend on the voxels the threat moves; its clean value.
* ``closed-form``: tensor i is an affine function of the input (``Network.affine_in_input``: the
  first affine layer, a skip carrying the input, ...), whose STBP bounds are exact (closed form, or
  CROWN with nothing to relax) and attained by the candidate point below.
* ``stable`` / ``attained``: the initial (STBP) bound is attained by a candidate point: the
  minimiser over S of the linearisation of z_n at x0 (``ThreatSupport.argmin`` of its gradient).
  ``stable`` when every ReLU in z_n's cone of influence is stable over S (z_n is affine on S, so
  the candidate is optimal), ``attained`` otherwise.
* ``milp``: minimise (or maximise) z_n over the MILP of layers 0..i-1 restricted to z_n's cone
  (``encodings.milp.encode(upto=i, keep=...)``), solved by SCIP (``neuron_milp``).  Its big-M
  comes from the current bounds: STBP's (or LP-tightened, ``bounds="lp"``), replaced by exact
  bounds as they are found.  With ``progressive=True`` the unstable inputs of every ReLU before
  tensor i are bounded exactly first, in order (progressive tightening, as MIPVerify does).
* ``stbp`` / ``lp``: time ran out: the initial bound (status ``bound``).

Soundness: a lower bound is the initial sound bound or the solver's dual bound moved down by
``tolerances.solver_margin`` of the size of the rows holding z_n (``neuron_milp.row_scales``),
whichever is higher; an attained value is z_n computed by the
float64 reference at a point checked to lie in S (``Threat.contains``).  If a value attained at a
point lies below the solver's bound, the solver erred: the side keeps the initial bound and is
marked ``inconsistent`` (below the initial bound too: no bound, -inf).

HiGHS is not offered: on a ``medmnist`` neuron its presolve returned an "optimal" minimum 1e-4
above a point SCIP found and the float64 reference confirmed.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing import forkserver

import numpy as np
import torch

from .. import tolerances, validation
from ..complete.lp_tighten import tighten
from ..complete.milp_verify import BOUND_SOURCES
from ..encodings.common import dependency_masks
from ..encodings.milp import cone
from ..errors import InputError
from ..network.graph import Network
from ..stbp_hybrid.certify import certify, make_support, torch_layers
from ..threats import DEFAULT_DOMAIN, Threat
from .neuron_milp import SIDES, Job, JobResult, layer_values, skipped, solve_chunk

SOURCES = ("stbp", "lp")
CANDIDATE_BATCH = 64  # candidate points evaluated at once


@dataclass
class ExactBounds:
    """Exact bounds of the entries of tensor ``layer`` (module docstring).

    Arrays are shaped like that input; entries not asked for hold NaN and status ''."""

    layer: int
    lo: np.ndarray  # sound: lo <= min z_n
    hi: np.ndarray  # sound: hi >= max z_n
    lo_attained: np.ndarray  # z_n at a point of the set: min z_n <= lo_attained
    hi_attained: np.ndarray  # max z_n >= hi_attained
    status: np.ndarray  # "exact" (both sides), "bound", "" (not asked for)
    how_lo: np.ndarray
    how_hi: np.ndarray
    neuron_s: np.ndarray  # seconds spent on each neuron (both sides, MILP build shared out)
    time_s: float = 0.0  # from the start of the run (bounds, candidates, MILPs) to the end of this layer
    points: dict = field(default_factory=dict)  # (flat index, "lo" | "hi") -> a point attaining the value
    stats: dict = field(default_factory=dict)

    @property
    def selected(self) -> np.ndarray:
        return self.status != ""

    @property
    def gap_lo(self) -> np.ndarray:
        return self.lo_attained - self.lo

    @property
    def gap_hi(self) -> np.ndarray:
        return self.hi - self.hi_attained

    def counts(self) -> dict:
        """How many sides were obtained each way, and how many neurons are exact."""
        sel = self.selected
        hows = np.concatenate([self.how_lo[sel], self.how_hi[sel]])
        return {"neurons": int(sel.sum()), "exact": int((self.status == "exact").sum()),
                **{h: int((hows == h).sum()) for h in dict.fromkeys(hows.tolist())}}


def exact_bounds(net: Network, x: np.ndarray, threat: Threat | str, layer: int, neurons=None,
                 timeout: float | None = None, workers: int = 1, bounds: str = "stbp", progressive: bool = True,
                 keep_points: bool = False, domain=DEFAULT_DOMAIN) -> ExactBounds:
    """Exact min and max over the threat set of the entries ``neurons`` (flat indices or a mask
    shaped like the tensor; None: all) of tensor ``layer``: an index 1..len(net.layers) (in a chain,
    the input of ``net.layers[layer]``; ``len(net.layers)``: the outputs) or a node's name (its
    output, ``Network.tensor``).  ``timeout`` (s) covers everything, end to end;
    ``workers`` processes solve the MILPs; ``keep_points`` keeps the attaining points."""
    return exact_layer_bounds(net, x, threat, {layer: neurons}, timeout, workers, bounds, progressive, keep_points,
                              domain)[net.tensor(layer)]


def exact_layer_bounds(net: Network, x: np.ndarray, threat: Threat | str, layers: dict, timeout: float | None = None,
                       workers: int = 1, bounds: str = "stbp", progressive: bool = True, keep_points: bool = False,
                       domain=DEFAULT_DOMAIN) -> dict[int, ExactBounds]:
    """``exact_bounds`` of several tensors in one run ({tensor index or node name: neurons}), in
    order, each tensor's exact bounds tightening the big-M of the next; keyed by tensor index."""
    start = time.monotonic()
    x, _, threat, timeout, domain = validation.instance(net, x, None, threat, timeout, domain, labelled=False)
    deadline = start + (math.inf if timeout is None else timeout)
    if bounds not in SOURCES:
        raise InputError(f"bounds must be one of {', '.join(SOURCES)}, got {bounds!r}")
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    layers = {net.tensor(i): n for i, n in layers.items()}
    for i in layers:
        if not 1 <= i <= len(net.layers):
            raise InputError(f"layer {i}: exact bounds exist for tensors 1..{len(net.layers)} (the outputs of the nodes; "
                             f"{len(net.layers)} = the network's outputs)")
    asked = {i: _selection(net, i, n) for i, n in layers.items()}
    relu_inputs = sorted(set(net.relu_inputs.values()) - net.affine_in_input)
    todo = sorted(set(asked) | ({j for j in relu_inputs if j < max(asked)} if progressive else set()))
    out = {}
    with _Run(net, x, threat, domain, bounds, deadline, workers, keep_points) as run:
        for k, i in enumerate(todo):
            sel = asked.get(i, np.zeros(0, dtype=np.int64))
            if progressive and i in relu_inputs:  # its unstable inputs too: they set the big-M of later layers
                sel = np.union1d(sel, run.unstable(i))
            eb = run.layer(i, sel, later=sum(len(asked.get(j, ())) for j in todo[k + 1:]))
            run.feed_forward(eb)
            if i in asked:
                eb = _restrict(eb, asked[i])
                eb.time_s = time.monotonic() - start
                out[i] = eb
    return out


def _restrict(eb: ExactBounds, keep: np.ndarray) -> ExactBounds:
    """``eb`` with only the entries ``keep`` (flat indices) reported."""
    drop = np.ones(eb.lo.size, dtype=bool)
    drop[keep] = False
    drop = drop.reshape(eb.lo.shape)
    for name in ("lo", "hi", "lo_attained", "hi_attained", "neuron_s"):
        getattr(eb, name)[drop] = np.nan
    for name in ("status", "how_lo", "how_hi"):
        getattr(eb, name)[drop] = ""
    eb.points = {k: p for k, p in eb.points.items() if not drop.reshape(-1)[k[0]]}
    return eb


def _selection(net: Network, layer: int, neurons) -> np.ndarray:
    size = int(np.prod(net.shapes[layer]))
    if neurons is None:
        return np.arange(size)
    arr = np.asarray(neurons)
    if arr.dtype == bool:
        if arr.size != size:
            raise InputError(f"neurons: a mask must have {size} entries (tensor {layer}), got {arr.size}")
        return np.flatnonzero(arr.reshape(-1))
    flat = np.unique(arr.reshape(-1).astype(np.int64))
    if flat.size and (flat.min() < 0 or flat.max() >= size):
        raise InputError(f"neurons: flat indices must lie in 0..{size - 1} (tensor {layer}, shape "
                         f"{net.shapes[layer]}), got {flat.min()}..{flat.max()}")
    return flat


@functools.cache
def _context():
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["stverify.audit.neuron_milp"])
    return ctx


class _Run:
    """The state of one exact-bounds run: current big-M bounds, deadline, worker pool."""

    def __init__(self, net, x, threat, domain, source, deadline, workers, keep_points):
        if workers > 1 and _context().get_start_method() == "forkserver":
            forkserver.ensure_running()  # its imports run while the bounds below are computed
        self.net, self.x, self.threat, self.domain, self.source = net, x, threat, domain, source
        self.deadline, self.workers, self.keep_points = deadline, workers, keep_points
        cert = certify(net, x, int(net.predict(x)), threat, *BOUND_SOURCES[source], domain)
        self.bounds = [(lo.copy(), hi.copy()) for lo, hi in cert.bounds]
        if source == "lp":
            now = time.monotonic()
            self.bounds, _ = tighten(net, x, threat, self.bounds, domain, time.perf_counter() + (deadline - now) / 2)
        self.depends = dependency_masks(net, threat.perturbable(x.shape))
        self.support = make_support(x, threat, "threat", domain)
        self.pool, self.setup_s = None, 0.0  # setup_s: the longest encode + build of a chunk so far

    def __enter__(self):
        if self.workers > 1:
            self.pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=_context())
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def unstable(self, i: int) -> np.ndarray:
        lo, hi = (b.reshape(-1) for b in self.bounds[i])
        return np.flatnonzero((lo < 0) & (hi > 0) & self.depends[i].reshape(-1))

    def margin(self, i: int, n: np.ndarray) -> np.ndarray:
        """The solver margin for entries n of tensor i (objective scale: their bound magnitude)."""
        lo, hi = (b.reshape(-1)[n] for b in self.bounds[i])
        return tolerances.MILP_VERIFY_MARGIN + tolerances.MILP_VERIFY_MARGIN_REL * np.maximum(np.abs(lo), np.abs(hi))

    def feed_forward(self, eb: ExactBounds) -> None:
        """Intersect the big-M bounds of tensor ``eb.layer`` with its sound exact bounds (and the
        outputs of the ReLUs that read it with their images)."""
        i, sel = eb.layer, eb.selected.reshape(-1)
        lo, hi = (b.reshape(-1) for b in self.bounds[i])  # views
        lo[sel] = np.maximum(lo[sel], eb.lo.reshape(-1)[sel])
        hi[sel] = np.minimum(hi[sel], eb.hi.reshape(-1)[sel])
        for r in (r for r, t in self.net.relu_inputs.items() if t == i):
            olo, ohi = (b.reshape(-1) for b in self.bounds[r + 1])
            olo[sel] = np.maximum(olo[sel], np.maximum(lo[sel], 0.0))
            ohi[sel] = np.minimum(ohi[sel], np.maximum(hi[sel], 0.0))

    # --- one layer --------------------------------------------------------------------------
    def layer(self, i: int, sel: np.ndarray, later: int) -> ExactBounds:
        """Exact bounds of the entries ``sel`` of tensor i; ``later``: how many neurons later tensors
        still need (for the share of the time each MILP gets)."""
        t0 = time.monotonic()
        shape = self.net.shapes[i]
        size = int(np.prod(shape))
        r = {k: np.full(size, np.nan) for k in ("lo", "hi", "lo_attained", "hi_attained", "neuron_s")}
        r["margin_lo"], r["margin_hi"] = self.margin(i, np.arange(size)), self.margin(i, np.arange(size))
        r["status"], r["how_lo"], r["how_hi"] = (np.full(size, "", dtype=object) for _ in range(3))
        points: dict = {}
        dep = self.depends[i].reshape(-1)
        const, todo = sel[~dep[sel]], sel[dep[sel]]
        clean = layer_values(self.net, self.x[None], i)[0]
        for k in ("lo", "hi", "lo_attained", "hi_attained"):
            r[k][const] = clean[const]
        r["how_lo"][const] = r["how_hi"][const] = "constant"
        cand = self._candidates(i, todo)
        margin = self.margin(i, todo)
        jobs = []
        for side, sign in SIDES.items():
            init = self.bounds[i][0 if side == "lo" else 1].reshape(-1)[todo]
            value, pts = cand[side]
            wrong = sign * (value - init) < 0  # a point beyond a sound bound: the initial bound was wrong
            r[side][todo] = np.where(wrong, -sign * np.inf, init)
            r[f"{side}_attained"][todo] = value
            hit = sign * (value - init) <= margin
            affine = i in self.net.affine_in_input
            how = np.full(len(todo), "closed-form" if affine else "attained", dtype=object)
            if not affine:
                how[hit] = np.where(self._stable(i, todo[hit]), "stable", "attained")
            r[f"how_{side}"][todo] = np.where(wrong, "inconsistent", np.where(hit, how, self.source))
            points.update({(n, side): p for n, p in pts.items()})
            jobs += [Job(int(n), side) for n in todo[~hit]]
        r["neuron_s"][sel] = (time.monotonic() - t0) / max(len(sel), 1)
        for res in self._solve(i, jobs, later):
            self._merge(i, r, points, res)
        exact = ((r["lo_attained"][sel] - r["lo"][sel] <= 2 * r["margin_lo"][sel]) &
                 (r["hi"][sel] - r["hi_attained"][sel] <= 2 * r["margin_hi"][sel]))
        r["status"][sel] = np.where(exact, "exact", "bound")
        eb = ExactBounds(i, *(r[k].reshape(shape) for k in ("lo", "hi", "lo_attained", "hi_attained", "status",
                                                             "how_lo", "how_hi", "neuron_s")),
                         0.0, points, {"layer_s": time.monotonic() - t0, "milp_jobs": len(jobs),
                                       "initial_bounds": self.source})
        return eb

    def _candidates(self, i: int, todo: np.ndarray) -> dict:
        """Per side: z_n at a candidate point of the set (module docstring) for every n in ``todo``,
        and the points when ``keep_points``.  Past the deadline, the clean input x0 (always in the
        set) stands in for the candidates not yet made."""
        clean = layer_values(self.net, self.x[None], i)[0, todo]
        out = {side: (clean.copy(), {}) for side in SIDES}
        xg = torch.as_tensor(self.x, dtype=torch.float64).clone().requires_grad_(True)
        z = torch_layers(self.net).tensor(xg[None], i)[0].reshape(-1)

        def points(n):  # the minimisers over the set of the linearisation of z_n at x0 (exact for an affine z_n)
            (g,) = torch.autograd.grad(z[n], xg, retain_graph=True)
            with torch.no_grad():
                return [self.support.argmin(g).numpy(), self.support.argmin(-g).numpy()]
        for a in range(0, len(todo), CANDIDATE_BATCH):
            made = []
            for n in todo[a:a + CANDIDATE_BATCH]:
                if self.left() <= 0:
                    break
                made.append(points(int(n)))
            if not made:
                break
            batch = todo[a:a + len(made)]
            for s, side in enumerate(SIDES):
                ps = np.stack([m[s] for m in made])
                inside = np.array([self.threat.contains(self.x, p, tol=1e-12, domain=self.domain) for p in ps])
                vals = layer_values(self.net, ps, i)[np.arange(len(batch)), batch]
                out[side][0][a:a + len(batch)] = np.where(inside, vals, clean[a:a + len(batch)])
                if self.keep_points:
                    out[side][1].update({int(n): p for n, p, ok in zip(batch, ps, inside) if ok})
        return out

    def _stable(self, i: int, todo: np.ndarray) -> np.ndarray:
        """Per neuron: every ReLU in its cone of influence is stable under the current bounds."""
        relus = [j for j in sorted(set(self.net.relu_inputs.values())) if j < i]
        flags = []
        for n in todo:
            if self.left() <= 0:
                flags.append(False)
                continue
            masks = cone(self.net, i, [n])
            flags.append(not any(((masks[j] & (self.bounds[j][0] < 0) & (self.bounds[j][1] > 0)).any()) for j in relus))
        return np.array(flags, dtype=bool)

    def _solve(self, i: int, jobs: list[Job], later: int):
        """Yield the JobResults of ``jobs``, chunked by neuron, on the pool or in this process."""
        by_neuron: dict = {}
        for j in jobs:
            by_neuron.setdefault(j.neuron, []).append(j)
        neurons = list(by_neuron)
        chunks = [[j for n in part for j in by_neuron[n]] for part in self._chunks(i, neurons)]
        pending = len(jobs) + 2 * later  # every job still to run, this layer's and (about) the later layers'
        running: set = set()
        while chunks or running:
            while chunks and len(running) < self.workers:
                chunk = chunks.pop(0)
                budget = max(self.left(), 0.0) * self.workers / max(pending, 1)
                pending -= len(chunk)
                args = (self.net, self.x, self.threat, self.bounds, self.domain, i, chunk, self.deadline, budget,
                        self.keep_points)
                if self.left() <= self.setup_s:  # not even time to set a model up
                    yield from skipped(chunk)
                elif self.pool is None:
                    yield from self._finished(solve_chunk(*args))
                else:
                    running.add(self.pool.submit(solve_chunk, *args))
            if running:
                done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in done:
                    yield from self._finished(fut.result())

    def _finished(self, chunk_result):
        results, setup_s = chunk_result
        self.setup_s = max(self.setup_s, setup_s)
        return results

    def _chunks(self, i: int, neurons: list[int]) -> list[list[int]]:
        """Groups of neurons sharing one model.  When a single neuron's cone already holds most of the
        perturbable input (a deep layer), the model is the same for all: one group per worker, built
        once.  Otherwise one neuron per model: a model holding the union of several cones solves
        several times slower (measured on the zoo's ``small``), and a small cone builds fast."""
        if not neurons:
            return []
        reach = cone(self.net, i, [neurons[0]])[0] & self.depends[0]
        size = math.ceil(len(neurons) / self.workers) if reach.sum() >= 0.5 * self.depends[0].sum() else 1
        return [neurons[a:a + size] for a in range(0, len(neurons), size)]

    def _merge(self, i: int, r: dict, points: dict, res: JobResult) -> None:
        """Fold one MILP result into side ``res.side`` of neuron ``res.neuron`` (soundly)."""
        n, side = res.neuron, res.side
        sign = SIDES[side]
        r["neuron_s"][n] += res.time_s
        if res.status == "skipped":
            return
        att = r[f"{side}_attained"]
        if np.isfinite(res.value) and sign * res.value < sign * att[n]:
            att[n] = res.value
            if res.point is not None:
                points[(n, side)] = res.point
        if res.status in ("optimal", "timeout"):
            r[f"how_{side}"][n] = "milp"
            margin = r[f"margin_{side}"][n] = max(r[f"margin_{side}"][n], tolerances.solver_margin(res.scale))
            if np.isfinite(res.bound):  # a bound of min sign * z_n; in units of z_n:
                r[side][n] = sign * max(sign * r[side][n], res.bound - margin)
        if sign * att[n] < sign * r[side][n]:  # a point beyond the solver's bound: the solver erred
            init = self.bounds[i][0 if side == "lo" else 1].reshape(-1)[n]
            r[side][n] = init if sign * att[n] >= sign * init else -sign * np.inf
            r[f"how_{side}"][n] = "inconsistent"
