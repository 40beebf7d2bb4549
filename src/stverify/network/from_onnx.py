"""ONNX model -> layer IR.

The graph must be a single chain from its one input (``N x C x T x H x W``, ``N`` may be
symbolic) to its one output.  Nodes that read only constants (``Constant``, and shape
arithmetic such as ``Shape -> Gather -> Unsqueeze -> Concat`` feeding a ``Reshape``) are
evaluated with the ONNX reference evaluator; a symbolic batch counts as one.  A file that is not
an ONNX model (empty, truncated, garbage), or whose external data is missing or lies outside its
folder, is refused with an ``InputError``; so is a node whose attributes or constants are malformed.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ..errors import InputError
from . import layers as L
from .graph import Network
from .errors import UnsupportedOperatorError

SUPPORTED_OPS = ("Conv", "Relu", "AveragePool", "MaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Add",
                 "BatchNormalization", "Identity", "Dropout")
MIN_OPSET = 11


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _fail(node: onnx.NodeProto, why: str):
    raise UnsupportedOperatorError(f"ONNX operator '{node.op_type}' (node '{node.name or node.output[0]}'): {why}")


class _Chain:
    """The layers built so far and the shape of the current tensor (batch axis first)."""

    def __init__(self, batch: int, shape):
        self.layers: list[L.Layer] = []
        self.batch = batch
        self.shape = tuple(shape)

    def add(self, node, layer: L.Layer):
        try:
            self.shape = layer.output_shape(self.shape)
        except ValueError as e:
            _fail(node, str(e))
        self.layers.append(layer)

    def flatten_to(self, node, out_shape):
        n = int(np.prod(self.shape))
        if tuple(out_shape) != (self.batch, n):
            _fail(node, f"maps {(self.batch,) + self.shape} to {tuple(out_shape)}; only flattening to "
                        f"({self.batch}, {n}) is supported")
        if len(self.shape) != 1:
            self.add(node, L.Flatten())

    def last_affine(self, node) -> L.Layer:
        last = self.layers[-1] if self.layers else None
        if last is None or not last.affine:
            _fail(node, "must directly follow a Conv, Gemm or MatMul (it is folded into it)")
        return last

    def add_bias(self, node, c: np.ndarray):
        """Fold ``+ c`` into the preceding affine layer if ``c`` is constant per output channel."""
        last = self.last_affine(node)
        try:
            full = np.broadcast_to(c, (1,) + self.shape).reshape(self.shape[0], -1)
        except ValueError:
            _fail(node, f"constant of shape {c.shape} does not broadcast to {(1,) + self.shape}")
        if not np.all(full == full[:, :1]):
            _fail(node, "only a per-channel bias can be added")
        self.layers[-1] = dataclasses.replace(last, bias=last.bias + full[:, 0])


def _conv(chain: _Chain, node, a: dict, w: np.ndarray, b):
    if w.ndim != 5:
        _fail(node, f"only 3D convolutions are supported, the weight has shape {w.shape}")
    if a.get("group", 1) != 1:
        _fail(node, f"group={a['group']} is not supported (only 1)")
    pads = _pads(node, a)
    chain.add(node, L.Conv3d(w, b, a.get("strides", (1, 1, 1)), pads[:3]))


def _pads(node, a: dict) -> list[int]:
    """Symmetric explicit padding (6 values) after checking auto_pad and dilations."""
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        _fail(node, f"auto_pad={a['auto_pad']} is not supported (only NOTSET or VALID)")
    if any(d != 1 for d in a.get("dilations", ())):
        _fail(node, f"dilations={a['dilations']} are not supported (only 1)")
    pads = list(a.get("pads", [0] * 6)) if a.get("auto_pad", "NOTSET") == "NOTSET" else [0] * 6
    if len(pads) != 6 or pads[:3] != pads[3:]:
        _fail(node, f"pads={pads} are not supported (3D, begin = end)")
    return pads


def _pool(chain: _Chain, node, a: dict):
    kernel = a["kernel_shape"]
    if len(kernel) != 3:
        _fail(node, f"only 3D pooling is supported, kernel_shape={kernel}")
    if any(_pads(node, a)):
        _fail(node, f"pads={a['pads']} are not supported (only 0)")
    if a.get("ceil_mode", 0):
        _fail(node, "ceil_mode=1 is not supported")
    if len(node.output) > 1 and node.output[1]:
        _fail(node, "the Indices output is not supported")
    cls = L.MaxPool3d if node.op_type == "MaxPool" else L.AvgPool3d
    chain.add(node, cls(kernel, a.get("strides", (1, 1, 1))))


def _linear(chain: _Chain, node, a: dict, b: np.ndarray, c):
    if node.op_type == "MatMul":
        if b.ndim != 2:
            _fail(node, f"the constant operand must be a matrix, got shape {b.shape}")
        chain.add(node, L.Linear(b.T, None))
        return
    if a.get("transA", 0):
        _fail(node, "transA=1 is not supported")
    w = a.get("alpha", 1.0) * (b if a.get("transB", 0) else b.T)
    bias = None if c is None else a.get("beta", 1.0) * np.broadcast_to(c, (1, w.shape[0]))[0]
    chain.add(node, L.Linear(w, bias))


def _batchnorm(chain: _Chain, node, a: dict, gamma, beta, mean, var):
    if a.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
        _fail(node, "training mode is not supported")
    last = chain.last_affine(node)
    if gamma.shape != (last.weight.shape[0],):
        _fail(node, f"has {gamma.size} channels, the preceding layer {last.weight.shape[0]} outputs")
    w, b = L.fold_batchnorm(last.weight, last.bias, gamma, beta, mean, var, a.get("epsilon", 1e-5))
    chain.layers[-1] = dataclasses.replace(last, weight=w, bias=b)


def _reshape_target(chain: _Chain, node, a: dict, target) -> tuple[int, ...]:
    """The shape a Flatten or Reshape (to ``target``) node produces from the current tensor."""
    full = (chain.batch,) + chain.shape
    if node.op_type == "Flatten":
        axis = a.get("axis", 1) % len(full)
        return int(np.prod(full[:axis])), int(np.prod(full[axis:]))
    target = [int(v) for v in target]
    if not a.get("allowzero", 0):
        target = [full[i] if v == 0 else v for i, v in enumerate(target)]
    try:
        return np.empty(full, dtype=np.uint8).reshape(target).shape
    except ValueError:
        _fail(node, f"cannot reshape {full} to {target}")


def _add_node(chain: _Chain, node, consts: dict, current: str, data: list[str]):
    """Convert one node that reads the chain tensor ``current``."""
    op, a = node.op_type, _attrs(node)
    if op not in SUPPORTED_OPS:
        raise UnsupportedOperatorError(f"unsupported ONNX operator '{op}' (node '{node.name or node.output[0]}'); "
                                       f"supported: {', '.join(SUPPORTED_OPS)}")
    if data != [current] or (op != "Add" and node.input[0] != current):
        _fail(node, "the graph is not a single chain (branches and skip connections are not supported)")
    k = [np.asarray(consts[i], dtype=np.float64) if i else None for i in node.input if i != current]
    k += [None] * (4 - len(k))  # absent optional inputs
    if op == "Conv":
        _conv(chain, node, a, k[0], k[1])
    elif op == "Relu":
        chain.add(node, L.ReLU())
    elif op in ("AveragePool", "MaxPool"):
        _pool(chain, node, a)
    elif op in ("Flatten", "Reshape"):
        chain.flatten_to(node, _reshape_target(chain, node, a, k[0]))
    elif op in ("Gemm", "MatMul"):
        _linear(chain, node, a, k[0], k[1])
    elif op == "Add":
        chain.add_bias(node, k[0])
    elif op == "BatchNormalization":
        _batchnorm(chain, node, a, *k[:4])
    elif op == "Dropout" and k[1] is not None and k[1].any():
        _fail(node, "training_mode=True is not supported")


def _evaluate(node, consts: dict, opsets) -> dict:
    """Outputs of a node whose inputs are all constants."""
    inits = [numpy_helper.from_array(np.asarray(consts[i]), i) for i in dict.fromkeys(node.input) if i]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", [], outputs, inits)
    try:
        values = ReferenceEvaluator(graph, opsets=opsets).run(None, {})
    except Exception as e:
        _fail(node, f"cannot be evaluated on constants ({e})")
    return {o.name: v for o, v in zip(outputs, values)}


def _input_shape(graph, consts) -> tuple[str, int, tuple[int, ...]]:
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedOperatorError(f"the graph must have exactly one input, it has {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 5 or not all(d.HasField("dim_value") for d in dims[1:]):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
        raise UnsupportedOperatorError(f"the input '{inputs[0].name}' must be N x C x T x H x W with fixed C, T, H, W, got {shape}")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else 1
    return inputs[0].name, batch, tuple(d.dim_value for d in dims[1:])


def read_model(path) -> onnx.ModelProto:
    """The ONNX model in a file, external data included; InputError if it is not one."""
    path = os.fspath(path)
    try:
        model = onnx.load(path)
    except DecodeError as e:
        raise InputError(f"{path!r} is not an ONNX model (the protobuf does not parse: {e})") from None
    except onnx.checker.ValidationError as e:  # external data: missing, or outside the model's folder
        raise InputError(f"{path!r}: its external data cannot be loaded: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise InputError(f"cannot read {path!r}: {e.strerror or e}") from None
    if not model.opset_import and not model.graph.node:
        raise InputError(f"{path!r} holds no ONNX model (no graph and no opset: an empty or foreign file)")
    return model


def _constants(graph) -> dict:
    try:
        return {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    except (ValueError, TypeError, OSError) as e:
        raise UnsupportedOperatorError(f"an initializer cannot be read ({e})") from None


def from_onnx(path_or_model, name: str | None = None) -> Network:
    """Convert an ONNX model (a path or an ``onnx.ModelProto``) to a Network."""
    if isinstance(path_or_model, onnx.ModelProto):
        model, default_name = path_or_model, path_or_model.graph.name or "onnx"
    else:
        model, default_name = read_model(path_or_model), os.path.splitext(os.path.basename(path_or_model))[0]
    opsets = {o.domain or "": o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset < MIN_OPSET:
        raise UnsupportedOperatorError(f"ONNX opset {opset} is not supported; export with opset_version >= {MIN_OPSET}")
    graph = model.graph
    consts = _constants(graph)
    current, batch, input_shape = _input_shape(graph, consts)
    chain = _Chain(batch, input_shape)
    shapes = {current: (batch,) + input_shape}  # every chain tensor -> its shape
    for node in graph.node:
        missing = [i for i in node.input if i and i not in consts and i not in shapes]
        if missing:
            _fail(node, f"reads {missing}, which no earlier node produces (the graph must be topologically sorted)")
        data = [i for i in node.input if i in shapes]
        if node.op_type == "Shape" and data:
            a = _attrs(node)
            consts[node.output[0]] = np.array(shapes[data[0]], dtype=np.int64)[a.get("start", 0):a.get("end")]
        elif not data:
            consts.update(_evaluate(node, consts, {**opsets, "": opset}))
        else:
            try:
                _add_node(chain, node, consts, current, data)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                if isinstance(e, InputError):
                    raise
                _fail(node, f"malformed ({type(e).__name__}: {e})")
            current = node.output[0]
            shapes[current] = (batch,) + chain.shape
    outputs = [o.name for o in graph.output]
    if outputs != [current]:
        raise UnsupportedOperatorError(f"the graph outputs {outputs}, expected the end of the layer chain '{current}'")
    return Network(chain.layers, input_shape, name or default_name)
