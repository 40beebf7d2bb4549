"""stverify: exact and certified verification of 3D CNNs under spatio-temporal threat sets."""
from .data import load_npz, load_sample
from .errors import InputError
from .network import Network
from .network.load import load_network
from .result import VerifyResult
from .stbp_hybrid.certify import Certificate, certify
from .threats import Threat, ThreatError, parse_threat
from .verify import METHODS, verify
from .complete.radius import RadiusResult, max_safe_radius
from .complete.crosscheck import CrossCheck, crosscheck
from .interchange.vnnlib import load_vnnlib
from .audit import ExactBounds, audit, exact_bounds

__version__ = "0.1.0"
__all__ = ["Certificate", "CrossCheck", "ExactBounds", "InputError", "METHODS", "Network", "RadiusResult", "Threat",
           "ThreatError", "VerifyResult", "audit", "certify", "crosscheck", "exact_bounds", "load_network", "load_npz",
           "load_sample", "load_vnnlib", "max_safe_radius", "parse_threat", "verify"]
