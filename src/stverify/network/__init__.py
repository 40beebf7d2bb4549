"""Network IR (a graph of nodes), importers and the float64 reference execution."""
from .errors import UnsupportedLayerError, UnsupportedOperatorError
from .from_onnx import from_onnx
from .from_torch import from_torch
from .graph import Network
from .layers import Add, AvgPool3d, BatchNorm, Concat, Conv3d, Flatten, Layer, Linear, MaxPool3d, ReLU, fold_batchnorm
from .load import load_network

__all__ = [
    "Add", "AvgPool3d", "BatchNorm", "Concat", "Conv3d", "Flatten", "Layer", "Linear", "MaxPool3d", "Network", "ReLU",
    "UnsupportedLayerError", "UnsupportedOperatorError", "fold_batchnorm", "from_onnx", "from_torch", "load_network",
]
