"""One entry point for every accepted model format."""
from __future__ import annotations

import os

import onnx
import torch
from torch import nn

from .from_onnx import from_onnx
from .from_torch import from_torch
from .layers import Network

ACCEPTED = "a Network, a torch nn.Module, an onnx.ModelProto, a .onnx file, or a .pt/.pth state dict with arch="


def load_network(source, arch: str | None = None, input_shape=None) -> Network:
    """Load ``source`` as a Network.

    ``input_shape`` (C, T, H, W) is needed for an ``nn.Module`` without an ``input_shape``
    attribute.  A ``.pt`` / ``.pth`` file holds a state dict (loaded with
    ``weights_only=True``) for the zoo architecture ``arch``.
    """
    if isinstance(source, Network):
        return source
    if isinstance(source, nn.Module):
        shape = input_shape or getattr(source, "input_shape", None)
        if shape is None:
            raise ValueError(f"{type(source).__name__} has no input_shape attribute; pass input_shape=(C, T, H, W)")
        return from_torch(source, shape)
    if isinstance(source, onnx.ModelProto):
        return from_onnx(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"cannot load a {type(source).__name__}; accepted: {ACCEPTED}")
    ext = os.path.splitext(os.fspath(source))[1].lower()
    if ext == ".onnx":
        return from_onnx(source)
    if ext in (".pt", ".pth"):
        if arch is None:
            raise ValueError(f"{os.fspath(source)!r} holds only weights; pass arch= (a zoo architecture name)")
        from stverify.zoo import build_torch

        module = build_torch(arch)
        state = torch.load(source, map_location="cpu", weights_only=True)
        module.load_state_dict(state.get("state_dict", state), strict=True)
        return from_torch(module.eval(), input_shape or module.input_shape, name=arch)
    raise ValueError(f"cannot load {os.fspath(source)!r}: unknown extension {ext!r}; accepted: {ACCEPTED}")
