"""Errors raised by the importers when a model uses something the layer IR cannot express."""


class UnsupportedLayerError(ValueError):
    """A torch module or operation that has no exact equivalent in the layer IR."""


class UnsupportedOperatorError(ValueError):
    """An ONNX operator, attribute or graph structure that has no exact equivalent in the layer IR."""
