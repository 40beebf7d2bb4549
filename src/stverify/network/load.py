"""One entry point for every accepted model format, and the checks of model files.

A file is refused with an ``InputError`` naming it and saying what is wrong: missing, a directory,
empty, not parseable, a pickle holding code rather than tensors, a state dict that does not fit
the architecture, an unsupported layer, non-finite weights (``Network`` checks those).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import onnx
import torch
from torch import nn

from ..errors import InputError
from .from_onnx import from_onnx
from .from_torch import from_torch
from .graph import Network

ACCEPTED = "a Network, a torch nn.Module, an onnx.ModelProto, a .onnx file, or a .pt/.pth state dict with arch="
EXTENSIONS = (".onnx", ".pt", ".pth")


def check_file(path: str, what: str = "model file") -> None:
    """``path`` names a readable, non-empty regular file."""
    if not os.path.exists(path):
        raise InputError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{what} {path!r} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path!r} is not readable (permissions)")
    if os.path.getsize(path) == 0:
        raise InputError(f"{what} {path!r} is empty")


def load_network(source, arch: str | None = None, input_shape=None, as_eval: bool = False) -> Network:
    """Load ``source`` as a Network.

    ``input_shape`` (C, T, H, W) is needed for an ``nn.Module`` without an ``input_shape``
    attribute.  A ``.pt`` / ``.pth`` file holds a state dict (loaded with ``weights_only=True``)
    for the zoo architecture ``arch``.  A module in ``train()`` mode with batch norm or dropout is
    refused unless ``as_eval`` (convert it with eval-mode semantics).
    """
    if isinstance(source, Network):
        return source
    if isinstance(source, nn.Module):
        shape = input_shape or getattr(source, "input_shape", None)
        if shape is None:
            raise InputError(f"{type(source).__name__} has no input_shape attribute; pass input_shape=(C, T, H, W)")
        return from_torch(source, shape, as_eval=as_eval)
    if isinstance(source, onnx.ModelProto):
        return from_onnx(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot load a {type(source).__name__}; accepted: {ACCEPTED}")
    path = os.fspath(source)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise InputError(f"cannot load {path!r}: unknown extension {ext!r}; accepted: {ACCEPTED}")
    check_file(path)
    try:
        if ext == ".onnx":
            return from_onnx(path)
        return _from_state_file(path, arch, input_shape)
    except InputError as e:
        if path in str(e):
            raise
        raise type(e)(f"{path}: {e}") from None


def _read_state(path: str) -> dict:
    """The state dict in a torch file, loaded with weights_only=True (no pickled code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError("holds pickled Python objects (e.g. a whole module), not just tensors; stverify never "
                         "unpickles code: save model.state_dict() instead, or export the model to ONNX") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise InputError(f"is not a readable torch file ({first})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, Mapping):
        raise InputError(f"holds a {type(state).__name__}, expected a state dict (parameter name -> tensor)")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise InputError(f"is not a state dict: entries {bad[:3]} are not (name -> tensor)")
    return dict(state)


def _names(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _from_state_file(path: str, arch: str | None, input_shape) -> Network:
    if arch is None:
        raise InputError("holds only weights; pass arch= (a zoo architecture name; --arch on the command line)")
    from stverify.zoo import build_torch

    module = build_torch(arch)
    state, expected = _read_state(path), module.state_dict()
    problems = []
    if missing := expected.keys() - state.keys():
        problems.append(f"missing {_names(missing)}")
    if unexpected := state.keys() - expected.keys():
        problems.append(f"unexpected {_names(unexpected)}")
    for k in sorted(expected.keys() & state.keys()):
        if tuple(state[k].shape) != tuple(expected[k].shape):
            problems.append(f"{k} has shape {tuple(state[k].shape)}, {arch} needs {tuple(expected[k].shape)}")
            break
    if problems:
        raise InputError(f"does not fit architecture {arch!r}: {'; '.join(problems)} (is --arch right?)")
    module.load_state_dict(state, strict=True)
    return from_torch(module.eval(), input_shape or module.input_shape, name=arch)
