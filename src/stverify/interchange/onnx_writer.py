"""Network IR -> ONNX, the inverse of ``network.from_onnx``; and running ONNX models with onnxruntime.

Conv3d -> Conv, ReLU -> Relu, AvgPool3d -> AveragePool, MaxPool3d -> MaxPool, Flatten -> Flatten,
Linear -> Gemm (transB=1), Add -> Add, Concat -> Concat (axis 1), BatchNorm -> Mul and Add by
per-channel constants; opset 13, batch 1 (``1 x C x T x H x W``), the graph as the network's (a node
reads the ONNX tensors of the network's tensors it reads), node ``i`` named ``layer{i}_{op}`` after
``net.layers[i]``.  ONNX tools compute in float32, so the weights are written as float32: exact for
weights trained in float32 (the zoo), rounded otherwise (e.g. a BatchNorm folded in float64);
``float32_rounding`` gives the largest change.  ``dtype=np.float64`` writes double tensors instead
(exact; for tools and evaluators that run double, e.g. ``onnx.reference``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..network import Network, layers as L

OPSET = 13


class OnnxGraph:
    """ONNX nodes over named tensors, from one float input ``input`` (batch 1) to one output ``output``."""

    def __init__(self, name: str, input_shape, dtype=np.float32):
        self.name, self.dtype = name, np.dtype(dtype)
        self.elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.input = helper.make_tensor_value_info("input", self.elem, [1, *map(int, input_shape)])
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def add(self, op: str, name: str, inputs: list[str], consts=(), **attrs) -> str:
        """Append ``op`` reading the tensors ``inputs`` and the constants ``consts``; returns its output
        (named ``name``, made unique)."""
        if any(n.name == name for n in self.nodes):
            name += f"_{len(self.nodes)}"
        inputs = list(inputs)
        for k, c in enumerate(consts):
            inputs.append(f"{name}_c{k}")
            self.inits.append(numpy_helper.from_array(np.asarray(c, dtype=self.dtype), inputs[-1]))
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def model(self, output: str, n_outputs: int) -> onnx.ModelProto:
        """The model whose output is the tensor ``output`` (renamed ``output``)."""
        for n in self.nodes:
            n.output[:] = ["output" if o == output else o for o in n.output]
            n.input[:] = ["output" if i == output else i for i in n.input]
        graph = helper.make_graph(self.nodes, self.name, [self.input],
                                  [helper.make_tensor_value_info("output", self.elem, [1, n_outputs])], self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="stverify",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        onnx.checker.check_model(model, full_check=True)
        return model


def channel_affine(g: OnnxGraph, i: int, inputs: list[str], scale: np.ndarray, shift: np.ndarray) -> str:
    """x * scale + shift with constants that broadcast against x (the BatchNorm node, in any layout)."""
    return g.add("Add", f"layer{i}_Add", [g.add("Mul", f"layer{i}_Mul", inputs, [scale])], [shift])


def add_node(g: OnnxGraph, i: int, layer: L.Layer, inputs: list[str]) -> str:
    """The ONNX node(s) of IR node ``i`` reading the ONNX tensors ``inputs``; returns its output."""
    if isinstance(layer, L.Conv3d):
        return g.add("Conv", f"layer{i}_Conv", inputs, [layer.weight, layer.bias], kernel_shape=list(layer.kernel),
                     strides=list(layer.stride), pads=list(layer.padding) * 2)
    if isinstance(layer, L.Linear):
        return g.add("Gemm", f"layer{i}_Gemm", inputs, [layer.weight, layer.bias], transB=1)
    if isinstance(layer, L.ReLU):
        return g.add("Relu", f"layer{i}_Relu", inputs)
    if isinstance(layer, L.AvgPool3d):
        return g.add("AveragePool", f"layer{i}_AveragePool", inputs, kernel_shape=list(layer.kernel),
                     strides=list(layer.stride))
    if isinstance(layer, L.MaxPool3d):
        return g.add("MaxPool", f"layer{i}_MaxPool", inputs, kernel_shape=list(layer.kernel), strides=list(layer.stride),
                     pads=list(layer.padding) * 2)
    if isinstance(layer, L.Flatten):
        return g.add("Flatten", f"layer{i}_Flatten", inputs, axis=1)
    if isinstance(layer, L.Add):
        return g.add("Add", f"layer{i}_Add", inputs)
    if isinstance(layer, L.Concat):
        return g.add("Concat", f"layer{i}_Concat", inputs, axis=1)
    raise TypeError(f"no ONNX operator for {layer.describe()}")


def network_to_onnx(net: Network, dtype=np.float32) -> onnx.ModelProto:
    """The ONNX model of ``net`` (module docstring)."""
    g = OnnxGraph(net.name, net.input_shape, dtype)
    names = ["input"]
    for i, (layer, src) in enumerate(zip(net.layers, net.sources)):
        if isinstance(layer, L.BatchNorm):
            per = (-1,) + (1,) * (len(net.shapes[src[0]]) - 1)
            names.append(channel_affine(g, i, [names[src[0]]], layer.scale.reshape(per), layer.shift.reshape(per)))
        else:
            names.append(add_node(g, i, layer, [names[t] for t in src]))
    return g.model(names[-1], net.n_classes)


def float32_rounding(net: Network) -> float:
    """The largest absolute change of a weight, bias, scale or shift when written as float32 (0: exact)."""
    arrays = [getattr(layer, a) for layer in net.layers for a in ("weight", "bias", "scale", "shift") if hasattr(layer, a)]
    return max((float(np.max(np.abs(a.astype(np.float32).astype(np.float64) - a))) for a in arrays if a.size),
               default=0.0)


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
