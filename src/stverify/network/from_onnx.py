"""ONNX model -> Network (a graph of nodes).

The graph has one input (``N x C x T x H x W``, ``N`` may be symbolic) and one output, and any
directed acyclic structure between them: branches, skip connections (``Add`` of two tensors),
``Concat`` on channels.  Every operator on a computed tensor must be one of ``SUPPORTED_OPS``;
``BatchNormalization``, and ``Add`` / ``Sub`` / ``Mul`` / ``Div`` by a constant per channel, become a
``BatchNorm`` node, folded into the Conv / Gemm / MatMul it reads when nothing else reads that
node's output.  Nodes that read only constants (``Constant``, and shape arithmetic such as
``Shape -> Gather -> Unsqueeze -> Concat`` feeding a ``Reshape``) are evaluated with the ONNX
reference evaluator; a symbolic batch counts as one.  Network nodes are named by the ONNX node
names (the first output's name for an unnamed node).  A file that is not an ONNX model (empty,
truncated, garbage), or whose external data is missing or lies outside its folder, is refused with
an ``InputError``; so is a node whose attributes or constants are malformed.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ..errors import InputError
from . import layers as L
from .builder import GraphBuilder, constant_op, per_channel
from .errors import UnsupportedOperatorError
from .graph import Network

SUPPORTED_OPS = ("Conv", "Relu", "AveragePool", "MaxPool", "GlobalAveragePool", "ReduceMean", "BatchNormalization",
                 "Add", "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape", "Gemm", "MatMul", "Identity", "Dropout")
MIN_OPSET = 11


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _fail(node: onnx.NodeProto, why: str):
    raise UnsupportedOperatorError(f"ONNX operator '{node.op_type}' (node '{_name(node)}'): {why}")


def _where(node: onnx.NodeProto) -> str:
    return f"ONNX operator '{node.op_type}' (node '{_name(node)}')"


def _pads(node, a: dict, kernel, shape) -> tuple[int, int, int]:
    """The symmetric zero padding per axis of a Conv / pool (auto_pad and dilations included)."""
    auto = a.get("auto_pad", "NOTSET")
    dil = list(a.get("dilations", [1, 1, 1]))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = a.get("strides", [1, 1, 1])
        out = [-(-n // s) for n, s in zip(shape[1:], strides)]
        total = [max(0, (o - 1) * s + (k - 1) * d + 1 - n)
                 for o, s, k, d, n in zip(out, strides, kernel, dil, shape[1:])]
        if any(t % 2 for t in total):
            _fail(node, f"auto_pad={auto} pads {total} in total per axis: one side more than the other (only "
                        "symmetric padding is supported)")
        return tuple(t // 2 for t in total)
    if auto not in ("NOTSET", "VALID"):
        _fail(node, f"auto_pad={auto} is not supported")
    pads = list(a.get("pads", [0] * 6)) if auto == "NOTSET" else [0] * 6
    if len(pads) != 6 or pads[:3] != pads[3:]:
        _fail(node, f"pads={pads} are not supported (3D, begin = end: symmetric padding)")
    return tuple(pads[:3])


class _Converter:
    """Walks the ONNX graph: nodes that read only constants are evaluated; the others become nodes
    of the network (or aliases of the tensor they read)."""

    def __init__(self, batch: int, input_name: str, input_shape, consts: dict):
        self.batch, self.consts = batch, consts
        self.graph = GraphBuilder(input_shape, UnsupportedOperatorError)
        self.tensor = {input_name: 0}  # computed tensors (by ONNX name) -> their tensor in the graph

    def full_shape(self, t: int) -> tuple[int, ...]:
        return (self.batch,) + self.graph.shapes[t]

    def const(self, node, i: int, required: bool = True):
        """Input i of ``node`` as a float64 constant (None when absent and not required)."""
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required:
                _fail(node, f"input {i} is missing")
            return None
        if name not in self.consts:
            _fail(node, f"input '{name}' must be a constant (an initializer or computed from constants only)")
        return np.asarray(self.consts[name], dtype=np.float64)

    def add(self, node, layer: L.Layer, sources) -> int:
        return self.graph.add(layer, sources, _name(node), _where(node))

    def convert(self, node) -> int:
        """The tensor holding the (first) output of ``node``, which reads computed tensors."""
        op, a = node.op_type, _attrs(node)
        if op not in SUPPORTED_OPS:
            raise UnsupportedOperatorError(f"unsupported ONNX operator '{op}' (node '{_name(node)}'); "
                                           f"supported: {', '.join(SUPPORTED_OPS)}")
        if op in ("Add", "Sub", "Mul", "Div"):
            return self._arithmetic(node, op)
        if op == "Concat":
            return self._concat(node, a)
        data = [i for i in node.input if i in self.tensor]
        if data != [node.input[0]]:
            _fail(node, f"only its first input may be a computed tensor, it reads {data}")
        t = self.tensor[node.input[0]]
        if op == "Relu":
            return self.add(node, L.ReLU(), [t])
        if op == "Conv":
            return self._conv(node, a, t)
        if op in ("AveragePool", "MaxPool"):
            return self._pool(node, a, t)
        if op in ("GlobalAveragePool", "ReduceMean"):
            return self._mean(node, a, t)
        if op == "BatchNormalization":
            if a.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
                _fail(node, "training mode is not supported")
            k = [self.const(node, i) for i in range(1, 5)]
            return self.add(node, L.BatchNorm.of(*k, a.get("epsilon", 1e-5)), [t])
        if op in ("Flatten", "Reshape"):
            return self._flatten(node, a, t)
        if op in ("Gemm", "MatMul"):
            return self._linear(node, a, t)
        if op == "Dropout" and (mode := self.const(node, 2, required=False)) is not None and mode.any():
            _fail(node, "training_mode=True is not supported")
        return t  # Identity, Dropout at inference

    def _conv(self, node, a: dict, t: int) -> int:
        w, b = self.const(node, 1), self.const(node, 2, required=False)
        if w.ndim != 5:
            _fail(node, f"only 3D convolutions are supported, the weight has shape {w.shape}")
        pads = _pads(node, a, w.shape[2:], self.graph.shapes[t])
        return self.add(node, L.Conv3d.of(w, b, a.get("strides", 1), pads, a.get("group", 1), a.get("dilations", 1)),
                        [t])

    def _pool(self, node, a: dict, t: int) -> int:
        kernel = a["kernel_shape"]
        if len(kernel) != 3:
            _fail(node, f"only 3D pooling is supported, kernel_shape={kernel}")
        if any(d != 1 for d in a.get("dilations", ())):
            _fail(node, f"dilations={a['dilations']} are not supported (only 1)")
        if a.get("ceil_mode", 0):
            _fail(node, "ceil_mode=1 is not supported")
        if len(node.output) > 1 and node.output[1]:
            _fail(node, "the Indices output is not supported")
        pads = _pads(node, a, kernel, self.graph.shapes[t])
        if node.op_type == "AveragePool" and any(pads):
            _fail(node, f"pads={list(pads) * 2} are not supported (only 0)")
        cls = L.MaxPool3d if node.op_type == "MaxPool" else L.AvgPool3d
        return self.add(node, cls(kernel, a.get("strides", (1, 1, 1)), pads), [t])

    def _mean(self, node, a: dict, t: int) -> int:
        """GlobalAveragePool, or ReduceMean over axes (2, 3, 4) (flattened when keepdims=0)."""
        shape = self.graph.shapes[t]
        if len(shape) != 4:
            _fail(node, f"needs an N x C x T x H x W input, got {self.full_shape(t)}")
        keep = True
        if node.op_type == "ReduceMean":
            axes = self.const(node, 1, required=False)  # opset 18: an input; before: an attribute
            axes = a.get("axes") if axes is None else [int(v) for v in axes]
            if sorted(int(v) % 5 for v in axes or ()) != [2, 3, 4]:
                _fail(node, f"axes={axes}: only the mean over axes (2, 3, 4) (T, H, W) is supported")
            keep = bool(a.get("keepdims", 1))
        u = self.add(node, L.AvgPool3d.global_(shape[1:]), [t])
        return u if keep else self.graph.flatten(u, f"{_name(node)}.flatten", _where(node))

    def _flatten(self, node, a: dict, t: int) -> int:
        full = self.full_shape(t)
        if node.op_type == "Flatten":
            axis = a.get("axis", 1) % len(full)
            out = int(np.prod(full[:axis])), int(np.prod(full[axis:]))
        else:
            target = [int(v) for v in self.const(node, 1)]
            if not a.get("allowzero", 0):
                target = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(target)]
            try:
                out = np.empty(full, dtype=np.uint8).reshape(target).shape
            except ValueError:
                _fail(node, f"cannot reshape {full} to {target}")
        n = int(np.prod(full[1:]))
        if tuple(out) != (self.batch, n):
            _fail(node, f"maps {full} to {tuple(out)}; only flattening to ({self.batch}, {n}) is supported")
        return self.graph.flatten(t, _name(node), _where(node))

    def _linear(self, node, a: dict, t: int) -> int:
        b = self.const(node, 1)
        if node.op_type == "MatMul":
            if b.ndim != 2:
                _fail(node, f"the constant operand must be a matrix, got shape {b.shape}")
            return self.add(node, L.Linear(b.T, None), [t])
        if a.get("transA", 0):
            _fail(node, "transA=1 is not supported")
        c = self.const(node, 2, required=False)
        w = a.get("alpha", 1.0) * (b if a.get("transB", 0) else b.T)
        bias = None if c is None else a.get("beta", 1.0) * np.broadcast_to(c, (1, w.shape[0]))[0]
        return self.add(node, L.Linear(w, bias), [t])

    def _concat(self, node, a: dict) -> int:
        if any(i not in self.tensor for i in node.input):
            _fail(node, "only computed tensors can be concatenated (no constants)")
        ts = [self.tensor[i] for i in node.input]
        if a.get("axis", 0) % len(self.full_shape(ts[0])) != 1:
            _fail(node, f"axis={a.get('axis')}: only concatenation on the channels (axis 1) is supported")
        return ts[0] if len(ts) == 1 else self.add(node, L.Concat(), ts)

    def _arithmetic(self, node, op: str) -> int:
        """x + y of two computed tensors (an Add node); x + c, x - c, c - x, x * c, x / c with a
        constant c per channel (a BatchNorm node: a scale and a shift per channel)."""
        if len(node.input) != 2:
            _fail(node, f"takes two inputs, got {len(node.input)}")
        x, y = node.input
        if x in self.tensor and y in self.tensor:
            if op != "Add":
                _fail(node, f"{op} of two computed tensors is not supported (only their sum, Add)")
            tx, ty = self.tensor[x], self.tensor[y]
            if self.graph.shapes[tx] != self.graph.shapes[ty]:
                _fail(node, f"broadcasts computed tensors of shapes {self.full_shape(tx)} and {self.full_shape(ty)}: "
                            "only tensors of one shape can be added")
            return self.add(node, L.Add(), [tx, ty])
        first = x in self.tensor
        t = self.tensor[x if first else y]
        try:
            c = per_channel(self.const(node, 1 if first else 0), self.graph.shapes[t])
            layer = constant_op(op.lower(), c, first)
        except ValueError as e:
            if isinstance(e, InputError):
                raise
            _fail(node, str(e))
        return self.add(node, layer, [t])


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
    input_name, batch, input_shape = _input_shape(graph, consts)
    conv = _Converter(batch, input_name, input_shape, consts)
    for node in graph.node:
        missing = [i for i in node.input if i and i not in consts and i not in conv.tensor]
        if missing:
            _fail(node, f"reads {missing}, which no earlier node produces (the graph must be topologically sorted)")
        data = [i for i in node.input if i in conv.tensor]
        if node.op_type == "Shape" and data:
            a = _attrs(node)
            consts[node.output[0]] = np.array(conv.full_shape(conv.tensor[data[0]]), dtype=np.int64)[
                a.get("start", 0):a.get("end")]
        elif not data:
            consts.update(_evaluate(node, consts, {**opsets, "": opset}))
        else:
            try:
                conv.tensor[node.output[0]] = conv.convert(node)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                if isinstance(e, InputError):
                    raise
                _fail(node, f"malformed ({type(e).__name__}: {e})")
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1 or outputs[0] not in conv.tensor:
        raise UnsupportedOperatorError(f"the graph must have one output computed from its input, it has {outputs}")
    return conv.graph.network(conv.tensor[outputs[0]], name or default_name)
