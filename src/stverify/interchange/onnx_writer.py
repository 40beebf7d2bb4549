"""Layer IR -> ONNX, the inverse of ``network.from_onnx``; and running ONNX models with onnxruntime.

Conv3d -> Conv, ReLU -> Relu, AvgPool3d -> AveragePool, MaxPool3d -> MaxPool, Flatten -> Flatten,
Linear -> Gemm (transB=1), opset 13, batch 1 (``1 x C x T x H x W``), node ``i`` named ``layer{i}_{op}``
after ``net.layers[i]``.  ONNX tools compute in float32, so the weights are written as float32:
exact for weights trained in float32 (the zoo), rounded otherwise (e.g. a BatchNorm folded in
float64); ``float32_rounding`` gives the largest change.  ``dtype=np.float64`` writes double tensors
instead (exact; for tools and evaluators that run double, e.g. ``onnx.reference``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..network import Network, layers as L

OPSET = 13


class GraphBuilder:
    """A chain of ONNX nodes from one float input (batch 1) to one output named ``output``."""

    def __init__(self, name: str, input_shape, dtype=np.float32):
        self.name, self.dtype = name, np.dtype(dtype)
        self.elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.input = helper.make_tensor_value_info("input", self.elem, [1, *map(int, input_shape)])
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.current = "input"

    def add(self, op: str, layer: int, consts=(), **attrs) -> None:
        """Append ``op`` reading the current tensor and the constants ``consts`` (for IR layer ``layer``)."""
        name = f"layer{layer}_{op}"
        if any(n.name == name for n in self.nodes):
            name += f"_{len(self.nodes)}"
        inputs = [self.current]
        for k, c in enumerate(consts):
            inputs.append(f"{name}_c{k}")
            self.inits.append(numpy_helper.from_array(np.asarray(c, dtype=self.dtype), inputs[-1]))
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.current = name

    def model(self, n_outputs: int) -> onnx.ModelProto:
        self.nodes[-1].output[0] = "output"
        graph = helper.make_graph(self.nodes, self.name, [self.input],
                                  [helper.make_tensor_value_info("output", self.elem, [1, n_outputs])], self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="stverify",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        onnx.checker.check_model(model, full_check=True)
        return model


def add_layer(g: GraphBuilder, i: int, layer: L.Layer) -> None:
    """The ONNX node of one IR layer (its input and output shapes are those of the IR)."""
    if isinstance(layer, L.Conv3d):
        g.add("Conv", i, [layer.weight, layer.bias], kernel_shape=list(layer.kernel), strides=list(layer.stride),
              pads=list(layer.padding) * 2)
    elif isinstance(layer, L.Linear):
        g.add("Gemm", i, [layer.weight, layer.bias], transB=1)
    elif isinstance(layer, L.ReLU):
        g.add("Relu", i)
    elif isinstance(layer, (L.AvgPool3d, L.MaxPool3d)):
        g.add("MaxPool" if isinstance(layer, L.MaxPool3d) else "AveragePool", i, kernel_shape=list(layer.kernel),
              strides=list(layer.stride))
    elif isinstance(layer, L.Flatten):
        g.add("Flatten", i, axis=1)
    else:
        raise TypeError(f"no ONNX operator for {layer.describe()}")


def network_to_onnx(net: Network, dtype=np.float32) -> onnx.ModelProto:
    """The ONNX model of ``net`` (module docstring)."""
    g = GraphBuilder(net.name, net.input_shape, dtype)
    for i, layer in enumerate(net.layers):
        add_layer(g, i, layer)
    return g.model(net.n_classes)


def float32_rounding(net: Network) -> float:
    """The largest absolute change of a weight or bias when written as float32 (0: exact)."""
    arrays = [getattr(layer, a) for layer in net.layers if layer.affine for a in ("weight", "bias")]
    return max((float(np.max(np.abs(a.astype(np.float32).astype(np.float64) - a))) for a in arrays), default=0.0)


def input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)


def run_onnx(model: onnx.ModelProto, xs: np.ndarray) -> np.ndarray:
    """onnxruntime outputs (float32, one thread) for the inputs ``xs`` (N x anything of the input's size), one at a time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    shape = input_shape(model)
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: np.asarray(x, dtype=np.float32).reshape(shape)})[0][0] for x in xs])
