"""torch.nn.Module -> layer IR.

Accepts ``nn.Sequential`` (nested too) and any module that ``torch.fx`` traces into a
straight chain of supported layers and calls.  The conversion has eval-mode semantics:
dropout is removed and batch norm uses its running statistics (folded into the
preceding Conv3d / Linear).  So a module left in ``train()`` mode with batch norm or dropout,
where it computes something else, is refused unless ``as_eval=True`` says eval mode is meant.  Shape computations such as ``x.view(x.size(0), -1)`` are
evaluated on a batch of one, the batch the verifier reasons about.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import InputError
from . import layers as L
from .graph import Network
from .errors import UnsupportedLayerError

SUPPORTED = (
    "Conv3d, Linear, ReLU, AvgPool3d, MaxPool3d, Flatten, BatchNorm1d/BatchNorm3d (folded), "
    "Dropout, Identity, relu, flatten / view / reshape to (batch, -1), dropout, contiguous"
)
_RELU = {F.relu, F.relu_, torch.relu, torch.relu_, "relu", "relu_"}
_RESHAPE = {torch.flatten, torch.reshape, "flatten", "view", "reshape"}
_NO_OPS = {F.dropout, "contiguous"}
_REMOVED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().to(torch.float64).numpy()


def _nonzero(v) -> bool:
    return bool(np.any(np.asarray(v) != 0))


class _Chain:
    """The layers built so far and the per-sample shape of the current tensor."""

    def __init__(self, shape):
        self.layers: list[L.Layer] = []
        self.shape = tuple(shape)

    def add(self, layer: L.Layer, where: str):
        if isinstance(layer, L.Linear) and len(self.shape) != 1:
            raise UnsupportedLayerError(f"Linear at '{where}' receives a tensor of shape {self.shape}, not a flat vector; "
                             "the model must flatten it first")
        try:
            self.shape = layer.output_shape(self.shape)
        except ValueError as e:
            raise UnsupportedLayerError(f"{type(layer).__name__} at '{where}': {e}") from None
        self.layers.append(layer)

    def flatten_to(self, out_shape, where: str):
        """Record a flatten/view/reshape whose result (batch of one) has shape ``out_shape``."""
        n = int(np.prod(self.shape))
        if tuple(out_shape) != (1, n):
            raise UnsupportedLayerError(f"reshape at '{where}' maps {(1,) + self.shape} to {tuple(out_shape)}; "
                                        f"only flattening to (batch, {n}) is supported")
        if len(self.shape) != 1:
            self.add(L.Flatten(), where)

    def fold_batchnorm(self, bn, where: str):
        last = self.layers[-1] if self.layers else None
        if not (last is not None and last.affine):
            raise UnsupportedLayerError(f"{type(bn).__name__} at '{where}' does not directly follow a Conv3d or "
                                        "Linear, so it cannot be folded")
        if bn.running_mean is None:
            raise UnsupportedLayerError(f"{type(bn).__name__} at '{where}' has no running statistics")
        if bn.num_features != last.weight.shape[0]:
            raise UnsupportedLayerError(f"{type(bn).__name__} at '{where}' has {bn.num_features} features, "
                             f"the preceding layer {last.weight.shape[0]} outputs")
        if len(self.shape) != (4 if isinstance(bn, nn.BatchNorm3d) else 1):
            raise UnsupportedLayerError(f"{type(bn).__name__} at '{where}' cannot take a tensor of shape {self.shape}")
        gamma, beta = (bn.weight, bn.bias) if bn.affine else (torch.ones(bn.num_features), torch.zeros(bn.num_features))
        w, b = L.fold_batchnorm(last.weight, last.bias, _np(gamma), _np(beta), _np(bn.running_mean),
                                _np(bn.running_var), bn.eps)
        self.layers[-1] = dataclasses.replace(last, weight=w, bias=b)


def _check(cond: bool, m: nn.Module, where: str, what: str):
    if cond:
        raise UnsupportedLayerError(f"unsupported layer {type(m).__name__} at '{where}': {what}")


def _add_module(chain: _Chain, m: nn.Module, where: str, x_meta: torch.Tensor):
    if isinstance(m, nn.Conv3d):
        padding = (0, 0, 0) if m.padding == "valid" else m.padding
        _check(isinstance(padding, str), m, where, f"padding={padding!r} (only explicit padding)")
        _check(m.groups != 1, m, where, f"groups={m.groups} (only groups=1)")
        _check(tuple(m.dilation) != (1, 1, 1), m, where, f"dilation={m.dilation} (only 1)")
        _check(m.padding_mode != "zeros", m, where, f"padding_mode={m.padding_mode!r} (only 'zeros')")
        chain.add(L.Conv3d(_np(m.weight), _np(m.bias), m.stride, padding), where)
    elif isinstance(m, nn.Linear):
        chain.add(L.Linear(_np(m.weight), _np(m.bias)), where)
    elif isinstance(m, nn.ReLU):
        chain.add(L.ReLU(), where)
    elif isinstance(m, (nn.AvgPool3d, nn.MaxPool3d)):
        _check(_nonzero(m.padding), m, where, f"padding={m.padding} (only 0)")
        _check(m.ceil_mode, m, where, "ceil_mode=True (only floor mode)")
        if isinstance(m, nn.MaxPool3d):
            _check(np.any(np.asarray(m.dilation) != 1), m, where, f"dilation={m.dilation} (only 1)")
            _check(m.return_indices, m, where, "return_indices=True")
            chain.add(L.MaxPool3d(m.kernel_size, m.stride), where)
        else:
            _check(m.divisor_override is not None, m, where, "divisor_override is set")
            chain.add(L.AvgPool3d(m.kernel_size, m.stride), where)
    elif isinstance(m, nn.Flatten):
        chain.flatten_to(m(x_meta).shape, where)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d)):
        chain.fold_batchnorm(m, where)
    elif not isinstance(m, _REMOVED):
        raise UnsupportedLayerError(f"unsupported layer {type(m).__name__} at '{where}'; supported: {SUPPORTED}")


def _call(node: fx.Node, env: dict):
    """Evaluate a call node on the values (meta tensors, sizes, constants) in ``env``."""
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _is_shape_query(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr and node.args[1] == "shape")


def _active_dropout(node: fx.Node) -> bool:
    """An F.dropout call that drops (training=True, its default, and p > 0)."""
    args = dict(zip(("input", "p", "training"), node.args), **node.kwargs)
    return node.target is F.dropout and bool(args.get("training", True)) and args.get("p", 0.5) != 0


def _add_node(chain: _Chain, gm: fx.GraphModule, node: fx.Node, env: dict, current: fx.Node, n_chain_inputs: int,
              as_eval: bool = False):
    """Convert one node that reads the layer chain."""
    where = node.target if node.op == "call_module" else node.name
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
    elif node.target not in _RELU | _RESHAPE | _NO_OPS:
        fname = getattr(node.target, "__name__", node.target)
        raise UnsupportedLayerError(f"unsupported operation {fname} at '{where}'; supported: {SUPPORTED}")
    if not node.args or node.args[0] is not current or n_chain_inputs != 1:
        raise UnsupportedLayerError(f"'{where}' does not continue a single chain of layers "
                                    "(branches and skip connections are not supported)")
    if node.op == "call_module":
        _add_module(chain, module, where, env[current])
    elif node.target in _RELU:
        chain.add(L.ReLU(), where)
    elif node.target in _RESHAPE:
        chain.flatten_to(_call(node, env).shape, where)
    elif _active_dropout(node) and not as_eval:
        raise InputError(f"F.dropout at '{where}' is active (training=True, its default): the model is random; pass "
                         "training=self.training and call model.eval() (or pass as_eval=True to verify without it)")


def _check_eval_mode(module: nn.Module) -> None:
    """Refuse a module whose batch norm or dropout is in training mode (see the module docstring)."""
    training = [f"'{name}' ({type(m).__name__})" for name, m in module.named_modules()
                if m.training and isinstance(m, _MODE_DEPENDENT)]
    if training:
        more = f" and {len(training) - 3} more" if len(training) > 3 else ""
        raise InputError(f"{type(module).__name__} is in train() mode, where {', '.join(training[:3])}{more} compute(s) "
                         "something else than in eval mode, which is what gets verified; call model.eval() first "
                         "(or pass as_eval=True)")


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
        raise UnsupportedLayerError(f"torch.fx cannot trace {type(module).__name__} ({why}); supported are nn.Sequential "
                                    "and modules whose forward is a straight chain of supported layers") from e
    chain = _Chain(input_shape)
    env: dict[fx.Node, object] = {}  # chain tensors -> meta tensors (batch of one); other nodes -> their values
    on_chain: set[fx.Node] = set()
    current = None
    for node in gm.graph.nodes:
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedLayerError(f"the model output {node.args[0]} is not the end of the layer chain")
            return Network(chain.layers, input_shape, name or type(module).__name__)
        n_chain_inputs = sum(a in on_chain for a in node.all_input_nodes)
        if node.op == "placeholder":
            if current is not None:
                raise UnsupportedLayerError(f"the model takes more than one input ('{node.name}')")
        elif node.op == "get_attr":
            env[node] = functools.reduce(getattr, node.target.split("."), gm)
            continue
        elif _is_shape_query(node) or (n_chain_inputs == 0 and node.op != "call_module"):
            env[node] = _call(node, env)  # sizes of chain tensors, arithmetic on them, other constants
            continue
        else:
            _add_node(chain, gm, node, env, current, n_chain_inputs, as_eval)
        env[node] = torch.empty((1,) + chain.shape, device="meta")
        on_chain.add(node)
        current = node
    raise UnsupportedLayerError("the traced graph has no output")
