"""Every floating-point tolerance stverify uses, in one place, with what it protects.

Bounds (STBP) are computed in float64 without directed rounding.  The rounding error of a
float64 dot product of n terms is at most about n * 2^-53 times the sum of the absolute terms;
for the networks stverify targets (<= 10^5 terms per neuron, a handful of layers) that is below
1e-10 relative.  Every bound STBP reports is therefore moved outward by
``BOUND_SLACK_ABS + BOUND_SLACK_REL * |bound|``, which dominates that error by orders of magnitude.
"""

BOUND_SLACK_ABS = 1e-9
BOUND_SLACK_REL = 1e-9

# Membership of a counterexample in the threat set: a voxel moved by <= this counts as unchanged,
# and values may exceed the clipped interval by at most this much (solver round-off).
MEMBERSHIP_TOL = 1e-6

# A replayed counterexample must beat the true class by more than this in both the float32
# model and the float64 reference (logit_j - logit_y > REPLAY_MARGIN), so ties never count.
REPLAY_MARGIN = 0.0


def widen(lo, hi):
    """Move a (lower, upper) pair of bounds outward by the float64 slack above."""
    return lo - (BOUND_SLACK_ABS + BOUND_SLACK_REL * abs(lo)), hi + (BOUND_SLACK_ABS + BOUND_SLACK_REL * abs(hi))


def lower(lb):
    """Move a lower bound down by the float64 slack above."""
    return lb - (BOUND_SLACK_ABS + BOUND_SLACK_REL * abs(lb))


# MILP / LP solver answers (SCIP, HiGHS, Gurobi) hold only up to the solvers' tolerances: rows may
# be violated by ~1e-6 (feasibility), reduced costs by ~1e-7 (optimality), binaries may sit 1e-6
# away from 0/1.  Feasibility slack only enlarges the set (the reported minimum can only drop),
# but optimality slack can overstate a dual bound by roughly the tolerance times the size of the
# terms summed in the objective.  So a margin counts as proven positive only when the solver's
# dual bound exceeds MILP_VERIFY_MARGIN + MILP_VERIFY_MARGIN_REL * scale, where scale =
# |c0| + sum_i |c_i| max(|lb_i|, |ub_i|) for the objective c0 + <c, x>; the same slack is taken off
# every LP-tightened neuron bound.  This guards against solver round-off, not adversarial
# numerics: exact rational checking is the SMT path's job.
MILP_VERIFY_MARGIN = 1e-6
MILP_VERIFY_MARGIN_REL = 1e-6

# A solver point with margin < 0 that fails replay (tolerance-level violations) is searched for
# again with logit_y - logit_j <= -delta, delta = MILP_RETRY_DELTA * 2^k for k < MILP_RETRIES, so a
# point that replays must have a margin clearly below zero.
MILP_RETRY_DELTA = 1e-4
MILP_RETRIES = 4


# MILP terms that vary by less than this over their variable's domain, and continuous variables with
# a domain narrower than this (the solvers' feasibility tolerance), are taken out of the rows before
# a solve, soundly (``encodings.milp.relax_negligible``): the solvers' presolve mishandled them.
NEGLIGIBLE = 1e-6


def solver_margin(scale: float) -> float:
    """The slack a solver's bound must clear (see MILP_VERIFY_MARGIN above)."""
    return MILP_VERIFY_MARGIN + MILP_VERIFY_MARGIN_REL * scale


# Another tool's witness (the counterexample of a claimed ``sat`` / ``falsified``) that does not replay
# (``REPLAY_MARGIN``) but whose margins in the float64 reference and the float32 model both lie within
# WITNESS_TOL_REL * max(1, max |logit|) of the decision boundary is a *boundary witness*, not a wrong
# verdict: VNN-LIB's unsafe set (Y_j >= Y_y) includes the tie, and tools that read the ONNX model in
# float32 or solve with LP tolerances land on it (Marabou: float64 margin +1e-15, float32 -4e-7).  The
# tolerance is float32 noise on the logits (the export holds rewrites to the same 1e-5).  An exact answer
# still contradicts one: a proven margin_lb above the witness's float64 margin plus the tolerance.
WITNESS_TOL_REL = 1e-5
