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
