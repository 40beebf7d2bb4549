"""alpha-CROWN: CROWN with optimised lower ReLU slopes.

For an unstable ReLU (l < 0 < u) every lower line y >= alpha x with alpha in [0, 1] is valid, so
a CROWN bound is valid for any choice of the slopes, and alpha-CROWN picks them by projected
signed-gradient ascent on the bound itself.  Every row (a margin, or the lower / upper bound of
one intermediate neuron) has its own slopes at every ReLU it passes, held in the row's own form
there (its receptive-field box, or the layer when dense): a row never carries slopes of neurons it
cannot see, and rows are independent, so they are optimised chunk by chunk under the memory
budget.  The first iterate uses CROWN's slopes and every iterate is a valid bound, so the best
one seen per row is kept: never looser than CROWN.  Intermediate rows (many, each optimised
only to help the margins) stop early, per chunk, once PATIENCE steps in a row each added less
than STALL_SHARE of the chunk's total gain so far (diminishing returns); margin rows (few) run
every step.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

DECAY = 0.9  # the step at iteration s is lr * DECAY ** s
STALL_SHARE = 0.02  # early stop: a step that adds less than this share of the gain so far ...
PATIENCE = 2  # ... this many times in a row


def optimise(bound_of: Callable[[dict], torch.Tensor], steps: int, lr: float, early_stop: bool = True,
             deadline: float = math.inf) -> torch.Tensor:
    """The best per-row value of ``bound_of(alphas)`` over ``steps`` iterates of signed-gradient
    ascent on the slopes (fewer once ``deadline``, a ``time.perf_counter()`` instant, has passed);
    ``bound_of`` creates the missing slopes (CROWN's) at its first call."""
    alphas: dict = {}
    with torch.enable_grad():
        cur = bound_of(alphas)
        best, stall = cur.detach(), 0
        first = best.sum()
        for step in range(steps):
            params = [a for a in alphas.values() if a.requires_grad]
            if not params or not cur.requires_grad or time.perf_counter() >= deadline:
                break
            grads = torch.autograd.grad(cur.sum(), params, allow_unused=True)
            with torch.no_grad():
                for a, g in zip(params, grads):
                    if g is not None:
                        a.add_(lr * DECAY ** step * g.sign()).clamp_(0.0, 1.0)
            cur = bound_of(alphas)
            before = best.sum()
            best = torch.maximum(best, cur.detach())
            added, total = best.sum() - before, best.sum() - first
            stall = stall + 1 if added <= STALL_SHARE * total else 0
            if early_stop and stall >= PATIENCE:
                break
    return best
