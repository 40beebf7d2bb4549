"""stverify: exact and certified verification of 3D CNNs under spatio-temporal threat sets."""
from .data import load_npz, load_sample
from .network import Network
from .network.load import load_network
from .result import VerifyResult
from .stbp_hybrid.certify import Certificate, certify
from .threats import Threat, ThreatError, parse_threat
from .verify import METHODS, verify
from .complete.radius import RadiusResult, max_safe_radius
from .complete.crosscheck import CrossCheck, crosscheck
from .audit import ExactBounds, audit, exact_bounds

__version__ = "0.1.0"
__all__ = ["Certificate", "CrossCheck", "METHODS", "Network", "Threat", "ThreatError", "VerifyResult", "certify", "load_network",
           "load_npz", "load_sample", "parse_threat", "crosscheck", "max_safe_radius", "verify"]
__all__ += ["ExactBounds", "audit", "exact_bounds"]
