"""Output properties: what must hold of the network's outputs over the threat set.

``unsafe``: a property as an unsafe set OR_k AND_i (c_ki . Y + d_ki >= 0) and its margin;
``grammar``: the named properties (label, deviation, range, target, topk) and ``parse_property``;
``reduce``: a property as the label margin of an extended network, which every method decides.
"""
from .grammar import EXAMPLES, Property, PropertyError, parse_property
from .reduce import reduce_to_label
from .unsafe import Atom, OutputSpec

__all__ = ["Atom", "EXAMPLES", "OutputSpec", "Property", "PropertyError", "parse_property", "reduce_to_label"]
