"""Layer IR, importers (torch, ONNX) and the float64 reference execution."""
from .errors import UnsupportedLayerError, UnsupportedOperatorError
from .from_onnx import from_onnx
from .from_torch import from_torch
from .layers import AvgPool3d, Conv3d, Flatten, Layer, Linear, MaxPool3d, Network, ReLU, fold_batchnorm
from .load import load_network

__all__ = [
    "AvgPool3d", "Conv3d", "Flatten", "Layer", "Linear", "MaxPool3d", "Network", "ReLU", "UnsupportedLayerError",
    "UnsupportedOperatorError", "fold_batchnorm", "from_onnx", "from_torch", "load_network",
]
