"""stverify: exact and certified verification of 3D CNNs under spatio-temporal threat sets.

The public names are imported on first use (``lazy``): ``import stverify as sv`` is cheap, and
``sv.verify`` imports what it needs."""
from .lazy import lazy_package

__version__ = "0.1.0"
__all__ = lazy_package(__name__, {
    **dict.fromkeys(("Certificate", "certify"), ".stbp_hybrid.certify"),
    **dict.fromkeys(("CrossCheck", "crosscheck"), ".complete.crosscheck"),
    **dict.fromkeys(("ExactBounds", "audit", "exact_bounds"), ".audit"),
    "InputError": ".errors",
    **dict.fromkeys(("METHODS", "verify"), ".verify"),
    "Network": ".network.graph",
    **dict.fromkeys(("RadiusResult", "max_safe_radius"), ".complete.radius"),
    **dict.fromkeys(("Threat", "ThreatError", "parse_threat"), ".threats"),
    "VerifyResult": ".result",
    "load_network": ".network.load",
    **dict.fromkeys(("load_npz", "load_sample"), ".data"),
    "load_vnnlib": ".interchange.vnnlib",
    **dict.fromkeys(("OutputSpec", "Property", "parse_property"), ".properties"),
    "output_range": ".complete.output_range",
})
