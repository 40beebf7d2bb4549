"""Errors raised by the importers when a model uses something the network IR cannot express."""
from ..errors import InputError


class UnsupportedLayerError(InputError):
    """A torch module or operation that has no exact equivalent in the network IR."""


class UnsupportedOperatorError(InputError):
    """An ONNX operator, attribute or graph structure that has no exact equivalent in the network IR."""
