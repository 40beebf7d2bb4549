"""Interval arithmetic (IBP) through torch modules, differentiable (also used for certified training).

For an affine map y = W x + b over the box [lo, hi]:  y in [W c - |W| r + b, W c + |W| r + b]
with c = (lo + hi) / 2 and r = (hi - lo) / 2, which is the exact range of each output over the box;
a per-channel scale s (batch norm) maps the endpoints and swaps them where s < 0.  Monotone nodes
(ReLU, pooling, flatten) map the endpoints; a sum adds them; a concatenation joins them.

``interval_all`` runs these rules over a ``TorchNet`` (nodes and their sources), or over any other
``nn.Module`` traced by ``torch.fx`` (a residual or Inception block written as ordinary torch code):
``BoxInterpreter`` evaluates the traced graph on boxes.  Batch norm is always its eval-mode map (the
running statistics), whatever the module's mode: the bounds are those of the model that gets verified.
"""
from __future__ import annotations

import operator
import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..network.to_torch import ChannelConcat, ScaleShift, Sum, TorchNet

MONOTONE = (nn.ReLU, nn.AvgPool3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.Flatten)
IDENTITY = (nn.Identity, nn.modules.dropout._DropoutNd)  # dropout as in eval mode, as batch norm


def batchnorm_affine(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a ScaleShift, or of a torch batch norm with its running statistics."""
    if isinstance(m, ScaleShift):
        return m.scale, m.shift
    scale = m.running_var.add(m.eps).rsqrt()
    if m.affine:
        scale = scale * m.weight
    shift = -m.running_mean * scale + (m.bias if m.affine else 0.0)
    return scale, shift


def node_interval(module: nn.Module, boxes: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of module(*xs) for every xs in the boxes ``(lo, hi)`` of its inputs (batched)."""
    if isinstance(module, Sum):
        return boxes[0][0] + boxes[1][0], boxes[0][1] + boxes[1][1]
    if isinstance(module, ChannelConcat):
        return torch.cat([b[0] for b in boxes], 1), torch.cat([b[1] for b in boxes], 1)
    ((lo, hi),) = boxes
    return interval(module, lo, hi)


def interval(module: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of module(x) for every x in the box [lo, hi] (batched; one input)."""
    if isinstance(module, (nn.Conv3d, nn.Linear)):
        c, r = (hi + lo) / 2, (hi - lo) / 2
        yc = module(c)
        if isinstance(module, nn.Conv3d):
            if module.padding_mode != "zeros":
                raise TypeError(f"no interval rule for Conv3d with padding_mode={module.padding_mode!r}")
            yr = F.conv3d(r, module.weight.abs(), None, module.stride, module.padding, module.dilation, module.groups)
        else:
            yr = F.linear(r, module.weight.abs())
        return yc - yr, yc + yr
    if isinstance(module, (ScaleShift, nn.modules.batchnorm._BatchNorm)):
        s, b = (v.reshape((1, -1) + (1,) * (lo.dim() - 2)) for v in batchnorm_affine(module))
        a, z = lo * s + b, hi * s + b
        return torch.minimum(a, z), torch.maximum(a, z)
    if isinstance(module, MONOTONE):
        return module(lo), module(hi)
    if isinstance(module, IDENTITY):
        return lo, hi
    raise TypeError(f"no interval rule for {type(module).__name__}")


def interval_all(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Bounds of every tensor of ``model`` over the box [lo, hi] of its input, the input first and
    the output last.  A ``TorchNet``: ``[(lo, hi), bounds of the output of node 0, ...]``; any other
    module (an nn.Sequential: a chain, or a graph module) is traced with torch.fx and gives one box
    per value of the traced graph computed from the input, in the graph's order."""
    if isinstance(model, TorchNet):
        out = [(lo, hi)]
        for m, src in zip(model, model.sources):
            out.append(node_interval(m, [out[t] for t in src]))
        return out
    seen: list[Box] = []
    result = BoxInterpreter(traced(model), seen).run(Box(lo, hi))
    if not isinstance(result, Box):
        raise TypeError(f"{type(model).__name__} must return one tensor computed from its input")
    if seen[-1] is not result:
        seen.append(result)
    return [(b.lo, b.hi) for b in seen]


_traced: "weakref.WeakKeyDictionary[nn.Module, fx.GraphModule]" = weakref.WeakKeyDictionary()


def traced(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(model)``, cached per module (the trace shares its parameters)."""
    if model not in _traced:
        _traced[model] = fx.symbolic_trace(model)
    return _traced[model]


class Box:
    """The value of a traced graph node computed from the input: elementwise bounds lo <= hi."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor):
        self.lo, self.hi = lo, hi


_RELU = (F.relu, torch.relu, F.relu_, torch.relu_, "relu", "relu_")
# non-decreasing in their tensor argument (linear maps with non-negative weights, max, relu, reshapes)
_MONOTONE = _RELU + (torch.flatten, torch.reshape, torch.mean, F.adaptive_avg_pool3d, F.avg_pool3d, F.max_pool3d,
                     "flatten", "view", "reshape", "mean", "contiguous")
_SHAPE_QUERIES = ("size", "dim")
_ADD, _SUB = (operator.add, operator.iadd, torch.add, "add", "add_"), (operator.sub, operator.isub, torch.sub, "sub")
_MUL, _DIV = (operator.mul, operator.imul, torch.mul, "mul"), (operator.truediv, operator.itruediv, torch.div, "div")


class BoxInterpreter(fx.Interpreter):
    """Runs a traced module on boxes (``Box``); other values (sizes, constants) run as they are.

    Modules take ``interval``; functions and methods: relu, flatten / view / reshape, mean and the
    3D poolings map the endpoints; x + y and x - y of two boxes add the matching endpoints; + - * /
    by a constant; torch.cat joins the boxes.  Anything else is a TypeError naming it.  Every box
    computed is appended to ``seen``."""

    def __init__(self, module: fx.GraphModule, seen: list):
        super().__init__(module)
        self.seen = seen

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, Box):
            self.seen.append(out)
        return out

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if len(args) != 1 or kwargs or not isinstance(args[0], Box):
            return self._plain(module, target, args, kwargs)
        return Box(*interval(module, args[0].lo, args[0].hi))

    def call_function(self, target, args, kwargs):
        return self._apply(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        return self._apply(target, args, kwargs)

    def _apply(self, target, args, kwargs):
        leaves: list = []
        fx.node.map_aggregate((args, kwargs), leaves.append)
        boxes = [a for a in leaves if isinstance(a, Box)]
        if target in (torch.cat, torch.concat) and boxes:
            return _cat(*args, **kwargs)
        if not boxes:
            return self._plain(target, target, args, kwargs)
        x, rest = args[0], args[1:]
        if target in _SHAPE_QUERIES and isinstance(x, Box):
            return getattr(x.lo, target)(*rest, **kwargs)
        if target is getattr and isinstance(x, Box) and rest == ("shape",):
            return x.lo.shape
        if target == "dropout" or target is F.dropout:
            if kwargs.get("training", rest[1] if len(rest) > 1 else True):
                raise TypeError("no interval rule for dropout in training mode (it is random)")
            return x
        if len(boxes) == 1 and isinstance(x, Box) and target in _MONOTONE:
            return Box(_call(target, x.lo, rest, kwargs), _call(target, x.hi, rest, kwargs))
        if target in _ADD + _SUB + _MUL + _DIV and not kwargs and len(args) == 2:
            return _arithmetic(target, *args)
        name = getattr(target, "__name__", target)
        raise TypeError(f"no interval rule for {name} on a tensor computed from the input")

    def _plain(self, fn, target, args, kwargs):
        if isinstance(fn, nn.Module) and any(isinstance(a, Box) for a in list(args) + list(kwargs.values())):
            raise TypeError(f"no interval rule for module '{target}' ({type(fn).__name__}) called with "
                            f"{len(args)} arguments and {len(kwargs)} keywords")
        if isinstance(fn, str):
            return getattr(args[0], fn)(*args[1:], **kwargs)
        return fn(*args, **kwargs)


def _call(target, t: torch.Tensor, rest, kwargs):
    return getattr(t, target)(*rest, **kwargs) if isinstance(target, str) else target(t, *rest, **kwargs)


def _cat(tensors, dim: int = 0, **kwargs):
    if kwargs or not all(isinstance(b, Box) for b in tensors):
        raise TypeError("no interval rule for torch.cat of boxes and constants")
    return Box(torch.cat([b.lo for b in tensors], dim), torch.cat([b.hi for b in tensors], dim))


def _arithmetic(target, a, b) -> Box:
    """a op b with a box and a box (+, -) or a box and a constant (+, -, *, /)."""
    if isinstance(a, Box) and isinstance(b, Box):
        if target in _ADD:
            return Box(a.lo + b.lo, a.hi + b.hi)
        if target in _SUB:
            return Box(a.lo - b.hi, a.hi - b.lo)
        raise TypeError(f"no interval rule for {getattr(target, '__name__', target)} of two tensors computed from the input")
    if target in _ADD:
        return Box(a.lo + b, a.hi + b) if isinstance(a, Box) else Box(a + b.lo, a + b.hi)
    if target in _SUB:
        return Box(a.lo - b, a.hi - b) if isinstance(a, Box) else Box(a - b.hi, a - b.lo)
    if not isinstance(a, Box) and target in _DIV:
        raise TypeError("no interval rule for a constant divided by a tensor computed from the input")
    box, c = (a, b) if isinstance(a, Box) else (b, a)
    p, q = (box.lo * c, box.hi * c) if target in _MUL else (box.lo / c, box.hi / c)
    return Box(torch.minimum(p, q), torch.maximum(p, q))
