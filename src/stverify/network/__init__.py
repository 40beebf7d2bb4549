"""Network IR (a graph of nodes), importers and the float64 reference execution.

The names are imported on first use (``stverify.lazy``): ``network.layers`` and ``network.graph``
need numpy only, the importers torch and onnx."""
from ..lazy import lazy_package

__all__ = lazy_package(__name__, {
    **dict.fromkeys(("UnsupportedLayerError", "UnsupportedOperatorError"), ".errors"),
    "from_onnx": ".from_onnx", "from_torch": ".from_torch", "load_network": ".load", "Network": ".graph",
    **dict.fromkeys(("Add", "AvgPool3d", "BatchNorm", "Concat", "Conv3d", "Flatten", "Layer", "Linear", "MaxPool3d",
                     "ReLU", "fold_batchnorm"), ".layers"),
})
