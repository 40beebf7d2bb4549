"""Minimise and maximise single neurons with SCIP: one job = one (neuron, side) of one layer input.

A chunk of jobs on the input of layer i shares one model: the MILP of layers 0..i-1 restricted to
the cone of influence of the chunk's neurons (``encode(upto=i, keep=...)``), built once in SCIP and
re-optimised per objective (``min z_n`` for side ``lo``, ``min -z_n`` for ``hi``).  Each job reports
the solver's dual bound (of the minimised objective), its status, and the value of z_n computed by
the float64 reference at the solver's point after snapping it into the threat set
(``replay.snap``; NaN if the point is not in the set): a value attained by a point of the set.

Runs in worker processes (``exact_bounds(workers=N)``): everything here is numpy and SCIP.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import tolerances
from ..encodings.backends import scip
from ..encodings.milp import LinExpr, encode
from ..replay import snap

# SCIP adds one constraint per row from Python; a build of this many non-zeros per second is
# assumed (measured ~2e5 on the 2-core VM) before a model is started close to the deadline.
BUILD_NNZ_PER_S = 1e5
SIDES = {"lo": 1.0, "hi": -1.0}  # the objective is sign * z_n


@dataclass
class Job:
    neuron: int  # flat index into the input of the layer
    side: str  # "lo" (minimise z_n) or "hi" (maximise)


@dataclass
class JobResult:
    neuron: int
    side: str
    status: str  # a SolveResult status, or "skipped" (no time to build or solve)
    bound: float  # dual bound of min sign * z_n (-inf if none)
    value: float  # z_n at the solver's point, float64 reference (NaN if none)
    scale: float  # |const| + sum |coef| max(|lb|, |ub|) of the objective: sets the solver margin
    time_s: float
    nodes: int = 0
    point: np.ndarray | None = None


def layer_values(net, points: np.ndarray, layer: int) -> np.ndarray:
    """The input of ``net.layers[layer]`` for a batch of inputs, float64 reference, flattened per point."""
    h = np.asarray(points, dtype=np.float64)
    for lay in net.layers[:layer]:
        h = lay.forward(h)
    return h.reshape(len(h), -1)


def skipped(jobs: list[Job]) -> list[JobResult]:
    return [JobResult(j.neuron, j.side, "skipped", -math.inf, math.nan, math.nan, 0.0) for j in jobs]


def solve_chunk(net, x0, threat, bounds, domain, layer: int, jobs: list[Job], deadline: float, job_budget: float,
                keep_points: bool = False) -> tuple[list[JobResult], float]:
    """Solve ``jobs`` (module docstring) on one shared model; returns their results and the seconds
    spent encoding and building the model.  ``deadline`` is a ``time.monotonic()`` instant; job k
    may use its ``job_budget`` plus whatever earlier jobs of the chunk left unused."""
    start = time.monotonic()
    if deadline <= start:
        return skipped(jobs), 0.0
    enc = encode(net, x0, threat, bounds, domain, upto=layer, keep=sorted({j.neuron for j in jobs}))
    nnz = enc.model.to_csr().nnz
    if deadline - time.monotonic() < nnz / BUILD_NNZ_PER_S:
        return skipped(jobs), time.monotonic() - start
    model, xs = scip.build(enc.model)
    build_s = time.monotonic() - start
    out, var = [], enc.vars[layer].reshape(-1)
    lb, ub = enc.model.lb, enc.model.ub
    for k, job in enumerate(jobs):
        now = time.monotonic()
        limit = min(deadline - now, max(job_budget, start + build_s + job_budget * (k + 1) - now))
        v = int(var[job.neuron])
        if v < 0:  # the encoding made it a constant (e.g. a ReLU output the bounds fix at 0)
            c = float(enc.clean[layer].reshape(-1)[job.neuron])
            out.append(JobResult(job.neuron, job.side, "optimal", SIDES[job.side] * c, c, abs(c), 0.0))
            continue
        if limit <= 0:
            out += skipped([job])
            continue
        coef = np.zeros(enc.model.n_vars)
        coef[v] = SIDES[job.side]
        obj = LinExpr(coef)
        # solved once the solution is within half the solver margin of the dual bound (``exact`` allows 2)
        r = scip.optimize(model, xs, obj, time_limit=limit, abs_gap=tolerances.solver_margin(obj.scale(lb, ub)) / 2)
        value, point = math.nan, None
        if r.x is not None:
            p = snap(x0, enc.point(r.x), threat, domain)
            if threat.contains(x0, p, tol=1e-12, domain=domain):
                value, point = float(layer_values(net, p[None], layer)[0, job.neuron]), p
        out.append(JobResult(job.neuron, job.side, r.status, r.bound, value, obj.scale(lb, ub),
                             time.monotonic() - now + build_s / len(jobs), r.stats["nodes"],
                             point if keep_points else None))
    return out, build_s
