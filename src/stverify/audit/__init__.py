"""Ground truth for incomplete verifiers: exact neuron bounds, and audits of claimed bounds and
verdicts (stverify's own incomplete methods, another tool's bounds file or VNN-COMP results)."""
from .audit import AuditOptions, audit
from .exact_bounds import ExactBounds, exact_bounds, exact_layer_bounds

__all__ = ["AuditOptions", "ExactBounds", "audit", "exact_bounds", "exact_layer_bounds"]
