"""Layer IR, importers (torch, ONNX) and the float64 reference execution.

The names are imported on first use (``stverify.lazy``): ``network.layers`` needs numpy only,
the importers torch and onnx."""
from ..lazy import lazy_package

__all__ = lazy_package(__name__, {
    **dict.fromkeys(("UnsupportedLayerError", "UnsupportedOperatorError"), ".errors"),
    "from_onnx": ".from_onnx", "from_torch": ".from_torch", "load_network": ".load",
    **dict.fromkeys(("AvgPool3d", "Conv3d", "Flatten", "Layer", "Linear", "MaxPool3d", "Network", "ReLU",
                     "fold_batchnorm"), ".layers"),
})
