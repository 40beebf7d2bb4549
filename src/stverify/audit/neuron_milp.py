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
    scale: float  # ``row_scales`` of the neuron's variable: sets the solver margin
    time_s: float
    nodes: int = 0
    point: np.ndarray | None = None


def layer_values(net, points: np.ndarray, layer: int) -> np.ndarray:
    """Tensor ``layer`` (in a chain: the input of ``net.layers[layer]``) for a batch of inputs,
    float64 reference, flattened per point."""
    h = net.values(np.asarray(points, dtype=np.float64), keep=False, upto=layer)[layer]
    return h.reshape(len(h), -1)


def row_scales(model) -> np.ndarray:
    """Per variable: the size of the terms the solver adds up in the rows holding it, the largest of
    |row bound| + sum_j |a_j| max(|lb_j|, |ub_j|) over those rows.  The solver's tolerances act on
    these sums, so a neuron's margin scales with them, not with the neuron's own magnitude: with the
    latter, SCIP's dual bound exceeded a point's value by up to twice the margin on the zoo models."""
    A = model.to_csr()
    big = np.maximum(np.abs(model.lb), np.abs(model.ub))
    rhs = np.maximum(*(np.where(np.isfinite(b), np.abs(b), 0.0) for b in (model.row_lo, model.row_hi)))
    per_row = abs(A) @ big + rhs
    C = A.tocsc()
    out = big.copy()
    has = np.diff(C.indptr) > 0
    out[has] = np.maximum(out[has], np.maximum.reduceat(per_row[C.indices], C.indptr[:-1][has]))
    return out


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
    # No presolve: on a cone of the zoo's `small` (patch:eps=16/255, logit 0 of test #0) SCIP's presolve
    # returned an "optimal" minimum 2e-3 above a point of the set (HiGHS's presolve erred likewise on
    # `medmnist`); without it SCIP found that point.  It costs up to 10x on the largest models.
    model.setParam("presolving/maxrounds", 0)
    build_s = time.monotonic() - start
    out, var = [], enc.vars[layer].reshape(-1)
    scales = row_scales(enc.model)
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
        scale = float(scales[v])
        # solved once the solution is within half the solver margin of the dual bound (``exact`` allows 2)
        r = scip.optimize(model, xs, LinExpr(coef), time_limit=limit, abs_gap=tolerances.solver_margin(scale) / 2)
        value, point = math.nan, None
        if r.x is not None:
            p = snap(x0, enc.point(r.x), threat, domain)
            if threat.contains(x0, p, tol=1e-12, domain=domain):
                value, point = float(layer_values(net, p[None], layer)[0, job.neuron]), p
        out.append(JobResult(job.neuron, job.side, r.status, r.bound, value, scale,
                             time.monotonic() - now + build_s / len(jobs), r.stats["nodes"],
                             point if keep_points else None))
    return out, build_s
