"""Ground truth for incomplete verifiers: exact neuron bounds and audits of claimed bounds and verdicts."""
from .exact_bounds import ExactBounds, exact_bounds, exact_layer_bounds

__all__ = ["ExactBounds", "exact_bounds", "exact_layer_bounds"]
