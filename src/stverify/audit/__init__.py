"""Ground truth for incomplete verifiers: exact neuron bounds, and audits of claimed bounds and
verdicts (stverify's own incomplete methods, another tool's bounds file or VNN-COMP results).
The names are imported on first use (``stverify.lazy``)."""
from ..lazy import lazy_package

__all__ = lazy_package(__name__, {
    **dict.fromkeys(("AuditOptions", "audit"), ".audit"),
    **dict.fromkeys(("ExactBounds", "exact_bounds", "exact_layer_bounds"), ".exact_bounds"),
})
