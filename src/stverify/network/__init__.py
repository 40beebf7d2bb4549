"""Layer IR, importers (torch, ONNX) and the float64 reference execution."""
from .layers import AvgPool3d, Conv3d, Flatten, Layer, Linear, MaxPool3d, Network, ReLU, fold_batchnorm

__all__ = ["AvgPool3d", "Conv3d", "Flatten", "Layer", "Linear", "MaxPool3d", "Network", "ReLU", "fold_batchnorm"]
