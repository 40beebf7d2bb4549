"""torch.nn.Module -> Network (a graph of nodes).

The module is traced with ``torch.fx.symbolic_trace``; its forward may branch, add and concatenate
tensors freely (residual and Inception blocks) as long as every operation on a computed tensor is
one of ``SUPPORTED``.  The conversion has eval-mode semantics: dropout is removed and batch norm
uses its running statistics (a ``BatchNorm`` node, folded into the Conv3d / Linear it reads when
nothing else reads that layer's output).  So a module left in ``train()`` mode with batch norm or
dropout, where it computes something else, is refused unless ``as_eval=True`` says eval mode is
meant.  Shape computations such as ``x.view(x.size(0), -1)`` are evaluated on a batch of one, the
batch the verifier reasons about; so is anything computed from constants only.

A traced graph has no notion of mutation, so an in-place operation (``ReLU(inplace=True)``,
``out += identity``, ``x.relu_()``) is accepted only where the tensor it overwrites (or a view of it)
is not read afterwards, as in ``out = relu(out)``; otherwise the graph would compute something else
than the module, and it is refused.  What fx cannot show (``y += x`` is recorded as ``y + x``, so an
alias of the old ``y`` is wrong; a random draw in forward becomes a constant) is caught by running
the module and the converted network on a random input: a difference refuses the conversion.

Nodes are named by module path (``layer1.0.conv1``; a module called twice: ``relu``, ``relu_1``)
or, for functions and methods, by the fx node name (``add``, ``cat_1``).
"""
from __future__ import annotations

import copy
import functools
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import InputError
from . import layers as L
from .builder import GraphBuilder, constant_op, per_channel
from .errors import UnsupportedLayerError
from .graph import Network
from .to_torch import torch_model

SUPPORTED = (
    "Conv3d (groups, dilation, zero padding), Linear, ReLU, AvgPool3d, MaxPool3d (zero or -inf padding), "
    "AdaptiveAvgPool3d (to a divisor of the grid), BatchNorm1d/BatchNorm3d, Dropout, Identity, Flatten; relu, "
    "+ of two tensors, + - * / by a per-channel constant, cat on channels, mean over (T, H, W), "
    "adaptive_avg_pool3d, max_pool3d, avg_pool3d, flatten / view / reshape to (batch, -1), dropout, contiguous"
)
# op kinds of functions (call_function targets) and methods (call_method names)
_KINDS = {
    "relu": (F.relu, F.relu_, torch.relu, torch.relu_, "relu", "relu_"),
    "reshape": (torch.flatten, torch.reshape, "flatten", "view", "reshape"),
    "alias": ("contiguous",),
    "dropout": (F.dropout,),
    "add": (operator.add, operator.iadd, torch.add, "add", "add_"),
    "sub": (operator.sub, operator.isub, torch.sub, "sub", "sub_"),
    "mul": (operator.mul, operator.imul, torch.mul, "mul", "mul_"),
    "div": (operator.truediv, operator.itruediv, torch.div, "div", "div_"),
    "cat": (torch.cat, torch.concat),
    "mean": (torch.mean, "mean"),
    "adaptive_avg_pool3d": (F.adaptive_avg_pool3d,),
    "max_pool3d": (F.max_pool3d,),
    "avg_pool3d": (F.avg_pool3d,),
}
_KIND = {target: kind for kind, targets in _KINDS.items() for target in targets}
_IN_PLACE = {F.relu_, torch.relu_, "relu_", operator.iadd, "add_", operator.isub, "sub_", operator.imul, "mul_",
             operator.itruediv, "div_"}
_ARGS = {  # parameter names of each kind, in order (the tensor first)
    "relu": ("input", "inplace"), "dropout": ("input", "p", "training", "inplace"),
    "add": ("input", "other", "alpha"), "sub": ("input", "other", "alpha"), "mul": ("input", "other"),
    "div": ("input", "other", "rounding_mode"), "cat": ("tensors", "dim"), "mean": ("input", "dim", "keepdim", "dtype"),
    "adaptive_avg_pool3d": ("input", "output_size"),
    "max_pool3d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool3d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
}
_REMOVED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_MODULES = (nn.Conv3d, nn.Linear, nn.ReLU, nn.AvgPool3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.BatchNorm1d,
            nn.BatchNorm3d, nn.Flatten) + _REMOVED
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout)


def _np(t) -> np.ndarray | None:
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _nonzero(v) -> bool:
    return bool(np.any(np.asarray(v) != 0))


def _check(cond: bool, m: nn.Module, where: str, what: str):
    if cond:
        raise UnsupportedLayerError(f"unsupported layer {type(m).__name__} at '{where}': {what}")


def _same_padding(m: nn.Conv3d, where: str) -> tuple[int, ...]:
    """The explicit padding of padding='same' (stride 1): half of dilation * (kernel - 1) per axis."""
    total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
    _check(any(t % 2 for t in total), m, where, f"padding='same' with kernel {m.kernel_size} pads one side more "
           "than the other (only symmetric padding)")
    return tuple(t // 2 for t in total)


def _conv3d(m: nn.Conv3d, where: str) -> L.Conv3d:
    _check(m.padding_mode != "zeros", m, where, f"padding_mode={m.padding_mode!r} (only 'zeros')")
    padding = {"valid": (0, 0, 0), "same": None}.get(m.padding, m.padding) if isinstance(m.padding, str) else m.padding
    if padding is None:
        padding = _same_padding(m, where)
    return L.Conv3d.of(_np(m.weight), _np(m.bias), m.stride, padding, m.groups, m.dilation)


def _pool3d(m: nn.Module, where: str) -> L.Layer:
    _check(m.ceil_mode, m, where, "ceil_mode=True (only floor mode)")
    if isinstance(m, nn.MaxPool3d):
        _check(np.any(np.asarray(m.dilation) != 1), m, where, f"dilation={m.dilation} (only 1)")
        _check(m.return_indices, m, where, "return_indices=True")
        return L.MaxPool3d(m.kernel_size, m.stride, m.padding)
    _check(_nonzero(m.padding), m, where, f"padding={m.padding} (only 0)")
    _check(m.divisor_override is not None, m, where, "divisor_override is set")
    return L.AvgPool3d(m.kernel_size, m.stride)


def _adaptive_avg_pool3d(output_size, shape, what: str, where: str) -> L.AvgPool3d:
    """AdaptiveAvgPool3d to ``output_size`` on a C x T x H x W input: an AvgPool3d when each output
    size divides the input size (``AvgPool3d.global_`` for output size 1)."""
    if len(shape) != 4:
        raise UnsupportedLayerError(f"{what} at '{where}' needs a C x T x H x W input, got shape {shape}")
    out = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 3
    out = tuple(n if o is None else int(o) for o, n in zip(out, shape[1:]))
    if any(n % o for o, n in zip(out, shape[1:])):
        raise UnsupportedLayerError(f"{what} at '{where}' maps the grid {shape[1:]} to {out}: only output sizes "
                                    "that divide the input size (e.g. 1, global average pooling) are supported")
    kernel = tuple(n // o for o, n in zip(out, shape[1:]))
    return L.AvgPool3d.global_(kernel) if out == (1, 1, 1) else L.AvgPool3d(kernel, kernel)


def _batchnorm(bn: nn.Module, where: str) -> L.BatchNorm:
    if bn.running_mean is None:
        raise UnsupportedLayerError(f"{type(bn).__name__} at '{where}' has no running statistics "
                                    "(track_running_stats=False normalises with the batch's own statistics)")
    ones, zeros = torch.ones(bn.num_features), torch.zeros(bn.num_features)
    gamma, beta = (bn.weight, bn.bias) if bn.affine else (ones, zeros)
    return L.BatchNorm.of(_np(gamma), _np(beta), _np(bn.running_mean), _np(bn.running_var), bn.eps)


def _arguments(node: fx.Node, kind: str) -> dict:
    """The values of a call's arguments by parameter name (the tensor: ``input``)."""
    names = _ARGS.get(kind, ("input",))
    out = dict(zip(names, node.args), **node.kwargs)
    if "self" in out:
        out["input"] = out.pop("self")
    return out


def _call(gm: fx.GraphModule, node: fx.Node, env: dict):
    """Evaluate a call node on the values (meta tensors, sizes, constants) in ``env``."""
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "call_module":
        return gm.get_submodule(node.target)(*args, **kwargs)
    return node.target(*args, **kwargs)


def _is_shape_query(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr and node.args[1] == "shape")


class _Converter:
    """Walks the traced graph: constants are evaluated, operations on computed tensors become nodes."""

    def __init__(self, gm: fx.GraphModule, input_shape, as_eval: bool):
        self.gm, self.as_eval = gm, as_eval
        self.graph = GraphBuilder(input_shape, UnsupportedLayerError)
        self.env: dict[fx.Node, object] = {}  # computed tensors: meta tensors (batch of one); others: values
        self.tensor: dict[fx.Node, int] = {}  # computed tensors -> their tensor in the graph
        self.view_of: dict[int, int] = {}  # a flattened tensor -> the tensor it is a view of
        self.overwritten: dict[int, str] = {}  # a tensor (the root of its views) -> where it was overwritten

    def convert(self, name: str) -> Network:
        for node in self.gm.graph.nodes:
            data = [a for a in node.all_input_nodes if a in self.tensor]
            if node.op == "output":
                return self._output(node, name)
            if node.op == "placeholder":
                if self.tensor:
                    raise UnsupportedLayerError(f"the model takes more than one input ('{node.name}')")
                self._bind(node, 0)
            elif node.op == "get_attr":
                self.env[node] = functools.reduce(getattr, node.target.split("."), self.gm)
            elif _is_shape_query(node) or not data:
                self.env[node] = _call(self.gm, node, self.env)  # sizes of tensors, arithmetic on them, constants
            else:
                self._check_not_overwritten(node, data)
                try:
                    self._bind(node, self._node(node, data))
                except (TypeError, KeyError, IndexError, AttributeError) as e:
                    raise UnsupportedLayerError(f"cannot convert '{_where(node)}' ({type(e).__name__}: {e})") from None
        raise UnsupportedLayerError("the traced graph has no output")

    def _bind(self, node: fx.Node, t: int):
        self.tensor[node] = t
        self.env[node] = torch.empty((1,) + self.graph.shapes[t], device="meta")

    def _output(self, node: fx.Node, name: str) -> Network:
        out = node.args[0]
        if not isinstance(out, fx.Node) or out not in self.tensor:
            raise UnsupportedLayerError(f"the model must return one computed tensor, it returns {out}")
        self._check_not_overwritten(node, [out])
        return self.graph.network(self.tensor[out], name)

    def _value(self, v):
        """A constant argument: a python number, or the value of a node (a parameter, a buffer, ...)."""
        return self.env[v] if isinstance(v, fx.Node) else v

    # --- in-place operations ---------------------------------------------------------------
    def _root(self, t: int) -> int:
        while t in self.view_of:
            t = self.view_of[t]
        return t

    def _check_not_overwritten(self, node: fx.Node, data):
        for a in data:
            if (by := self.overwritten.get(self._root(self.tensor[a]))) is not None:
                raise UnsupportedLayerError(f"'{_where(node)}' reads '{a.name}' after the in-place operation at "
                                            f"'{by}' overwrote it: the traced graph would compute something else; "
                                            "use the operation's result (out = relu(out)) or a non-in-place one")

    def _overwrites(self, node: fx.Node, t: int):
        self.overwritten[self._root(t)] = _where(node)

    # --- nodes -----------------------------------------------------------------------------
    def _node(self, node: fx.Node, data) -> int:
        """Convert one operation on computed tensors; return the tensor holding its result."""
        where = _where(node)
        if node.op == "call_module":
            return self._module(node, self.gm.get_submodule(node.target), where)
        kind = _KIND.get(node.target)
        if kind is None:
            fname = getattr(node.target, "__name__", node.target)
            raise UnsupportedLayerError(f"unsupported operation {fname} at '{where}'; supported: {SUPPORTED}")
        a = _arguments(node, kind)
        if kind in ("add", "sub", "mul", "div"):
            return self._arithmetic(node, kind, a, where)
        if kind == "cat":
            return self._cat(a, where)
        x = a.get("input")
        if x not in self.tensor or len(data) != 1:
            raise UnsupportedLayerError(f"'{where}' ({kind}) must take one computed tensor as its input")
        t = self.tensor[x]
        if node.target in _IN_PLACE or (kind == "relu" and a.get("inplace")):
            self._overwrites(node, t)
        if kind == "relu":
            return self.graph.add(L.ReLU(), [t], where, f"relu at '{where}'")
        if kind == "reshape":
            return self._flatten(t, _call(self.gm, node, self.env).shape, where)
        if kind == "dropout" and a.get("training", True) and a.get("p", 0.5) != 0 and not self.as_eval:
            raise InputError(f"F.dropout at '{where}' is active (training=True, its default): the model is random; "
                             "pass training=self.training and call model.eval() (or pass as_eval=True to verify "
                             "without it)")
        if kind in ("alias", "dropout"):
            return t
        if kind == "mean":
            return self._mean(t, a, where)
        if kind == "adaptive_avg_pool3d":
            layer = _adaptive_avg_pool3d(a["output_size"], self.graph.shapes[t], kind, where)
            return self.graph.add(layer, [t], where, f"{kind} at '{where}'")
        options = fx.node.map_arg({k: v for k, v in a.items() if k != "input"}, self.env.__getitem__)
        module = (nn.MaxPool3d if kind == "max_pool3d" else nn.AvgPool3d)(**options)
        return self.graph.add(_pool3d(module, where), [t], where, f"{kind} at '{where}'")

    def _module(self, node: fx.Node, m: nn.Module, where: str) -> int:
        if not isinstance(m, _MODULES):
            raise UnsupportedLayerError(f"unsupported layer {type(m).__name__} at '{where}'; supported: {SUPPORTED}")
        if len(node.args) != 1 or node.kwargs or node.args[0] not in self.tensor:
            raise UnsupportedLayerError(f"module '{where}' ({type(m).__name__}) must be called on one computed tensor")
        t = self.tensor[node.args[0]]
        shape = self.graph.shapes[t]
        if isinstance(m, _REMOVED):
            return t
        if isinstance(m, nn.Flatten):
            return self._flatten(t, m(self.env[node.args[0]]).shape, where)
        if isinstance(m, nn.ReLU) and m.inplace:
            self._overwrites(node, t)
        if isinstance(m, nn.Linear) and len(shape) != 1:
            raise UnsupportedLayerError(f"Linear at '{where}' receives a tensor of shape {shape}, not a flat vector; "
                                        "the model must flatten it first")
        batchnorm = isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d))
        if batchnorm and len(shape) != (4 if isinstance(m, nn.BatchNorm3d) else 1):
            raise UnsupportedLayerError(f"{type(m).__name__} at '{where}' cannot take a tensor of shape {shape}")
        if isinstance(m, nn.Conv3d):
            layer = _conv3d(m, where)
        elif isinstance(m, nn.Linear):
            layer = L.Linear(_np(m.weight), _np(m.bias))
        elif isinstance(m, nn.ReLU):
            layer = L.ReLU()
        elif isinstance(m, (nn.AvgPool3d, nn.MaxPool3d)):
            layer = _pool3d(m, where)
        elif isinstance(m, nn.AdaptiveAvgPool3d):
            layer = _adaptive_avg_pool3d(m.output_size, shape, type(m).__name__, where)
        else:
            layer = _batchnorm(m, where)
        return self.graph.add(layer, [t], where, f"{type(m).__name__} at '{where}'")

    def _flatten(self, t: int, out_shape, where: str) -> int:
        """A flatten / view / reshape whose result (batch of one) has shape ``out_shape``."""
        n = int(np.prod(self.graph.shapes[t]))
        if tuple(out_shape) != (1, n):
            raise UnsupportedLayerError(f"reshape at '{where}' maps {(1,) + self.graph.shapes[t]} to "
                                        f"{tuple(out_shape)}; only flattening to (batch, {n}) is supported")
        u = self.graph.flatten(t, where, f"flatten at '{where}'")
        if u != t:
            self.view_of[u] = t
        return u

    def _mean(self, t: int, a: dict, where: str) -> int:
        """x.mean over (T, H, W): global average pooling (then flattened unless keepdim)."""
        shape = self.graph.shapes[t]
        dims = a.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if len(shape) != 4 or sorted(d % 5 for d in dims) != [2, 3, 4] or a.get("dtype") is not None:
            raise UnsupportedLayerError(f"mean at '{where}' over dims {dims} of a tensor of shape {(1,) + shape}: "
                                        "only the mean over (T, H, W) = dims (2, 3, 4) is supported (global "
                                        "average pooling)")
        u = self.graph.add(L.AvgPool3d.global_(shape[1:]), [t], where, f"mean at '{where}'")
        return u if a.get("keepdim") else self.graph.flatten(u, f"{where}.flatten", f"mean at '{where}'")

    def _cat(self, a: dict, where: str) -> int:
        tensors = a.get("tensors", a.get("input"))
        if not isinstance(tensors, (list, tuple)) or any(x not in self.tensor for x in tensors):
            raise UnsupportedLayerError(f"cat at '{where}' must join computed tensors only (no constants)")
        ts = [self.tensor[x] for x in tensors]
        ndim = len(self.graph.shapes[ts[0]]) + 1
        if a.get("dim", 0) % ndim != 1:
            raise UnsupportedLayerError(f"cat at '{where}' joins on dim {a.get('dim', 0)}: only dim=1 (channels) "
                                        "is supported")
        return ts[0] if len(ts) == 1 else self.graph.add(L.Concat(), ts, where, f"cat at '{where}'")

    def _arithmetic(self, node: fx.Node, kind: str, a: dict, where: str) -> int:
        """x + y of two computed tensors (an Add node); x + c, x - c, c - x, x * c, x / c with a
        constant c per channel (a BatchNorm node: scale and shift per channel)."""
        x, y, alpha = a.get("input"), a.get("other"), a.get("alpha", 1)
        if kind == "div" and a.get("rounding_mode") is not None:
            raise UnsupportedLayerError(f"div at '{where}' with rounding_mode={a['rounding_mode']!r} is not affine")
        if x in self.tensor and y in self.tensor:
            if kind != "add" or alpha != 1:
                raise UnsupportedLayerError(f"{kind} at '{where}' of two computed tensors: only their sum x + y "
                                            "is supported (not a product, a quotient, a difference or alpha)")
            tx, ty = self.tensor[x], self.tensor[y]
            if self.graph.shapes[tx] != self.graph.shapes[ty]:
                raise UnsupportedLayerError(f"add at '{where}' broadcasts tensors of shapes {self.graph.shapes[tx]} "
                                            f"and {self.graph.shapes[ty]}: only tensors of one shape can be added")
            if node.target in _IN_PLACE:
                self._overwrites(node, tx)
            return self.graph.add(L.Add(), [tx, ty], where, f"add at '{where}'")
        data_first = x in self.tensor
        t = self.tensor[x if data_first else y]
        if node.target in _IN_PLACE and data_first:
            self._overwrites(node, t)
        try:
            layer = constant_op(kind, per_channel(_np(self._value(y if data_first else x)), self.graph.shapes[t]),
                                data_first, alpha)
        except ValueError as e:
            raise UnsupportedLayerError(f"{kind} at '{where}': {e}") from None
        return self.graph.add(layer, [t], where, f"{kind} at '{where}'")


def _where(node: fx.Node) -> str:
    return node.target if node.op == "call_module" else node.name


def _check_eval_mode(module: nn.Module) -> None:
    """Refuse a module whose batch norm or dropout is in training mode (see the module docstring)."""
    training = [f"'{name}' ({type(m).__name__})" for name, m in module.named_modules()
                if m.training and isinstance(m, _MODE_DEPENDENT)]
    if training:
        more = f" and {len(training) - 3} more" if len(training) > 3 else ""
        raise InputError(f"{type(module).__name__} is in train() mode, where {', '.join(training[:3])}{more} compute(s) "
                         "something else than in eval mode, which is what gets verified; call model.eval() first "
                         "(or pass as_eval=True)")


def _check_same_function(module: nn.Module, net: Network) -> None:
    """Refuse a conversion that computes something else than the module on a random input.

    fx can record a graph that differs from the module without any error: ``y += x`` is recorded as
    ``y + x``, so a tensor that aliases the old ``y`` keeps its old value; a random tensor drawn in
    forward becomes a constant.  Run both (the module in eval mode, its own precision) and compare."""
    params = [p for p in module.parameters() if p.is_floating_point()]
    dtype = torch.float64 if params and all(p.dtype == torch.float64 for p in params) else torch.float32
    training = any(m.training for m in module.modules() if isinstance(m, _MODE_DEPENDENT))  # as_eval=True
    if training or any(p.dtype != dtype for p in params):
        module = copy.deepcopy(module).eval().to(dtype)
    x = torch.rand((1,) + net.input_shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            expected = module(x)
        except Exception as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UnsupportedLayerError(f"{type(module).__name__} fails on an input of shape {tuple(x.shape)} "
                                        f"({why})") from None
        got = torch_model(net, dtype)(x)
    if not isinstance(expected, torch.Tensor) or expected.shape != got.shape:
        raise UnsupportedLayerError(f"{type(module).__name__} returns {type(expected).__name__} of shape "
                                    f"{getattr(expected, 'shape', '?')}, its traced graph {tuple(got.shape)}")
    gap = float((expected - got).abs().max())
    tol = (1e-4 if dtype == torch.float32 else 1e-9) * max(1.0, float(expected.abs().max()))
    if not gap <= tol:
        raise UnsupportedLayerError(f"the traced graph of {type(module).__name__} computes something else than the "
                                    f"module (outputs differ by {gap:.3g} on a random input): an in-place operation "
                                    "on a tensor that another name still refers to (y += x with z = y), or "
                                    "randomness in forward?")


def from_torch(module: nn.Module, input_shape: tuple[int, int, int, int], name: str | None = None,
               as_eval: bool = False) -> Network:
    """Convert ``module`` (inputs ``N x C x T x H x W``; ``input_shape`` is (C, T, H, W)) to a Network.
    ``as_eval``: convert a module in train() mode with eval-mode semantics instead of refusing it."""
    try:
        input_shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise InputError(f"input_shape must be (C, T, H, W), got {input_shape!r}") from None
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise InputError(f"input_shape must be (C, T, H, W) with positive sizes, got {input_shape}")
    if not as_eval:
        _check_eval_mode(module)
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UnsupportedLayerError(f"torch.fx cannot trace {type(module).__name__} ({why}); the forward must be "
                                    "made of supported layers and calls, with no branch on tensor values") from e
    net = _Converter(gm, input_shape, as_eval).convert(name or type(module).__name__)
    _check_same_function(module, net)
    return net
