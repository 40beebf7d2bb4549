"""Small 3D CNNs for exact verification, their training, and shipped trained weights.

>>> from stverify import zoo
>>> model = zoo.load_pretrained("tiny")       # nn.Sequential, eval mode
>>> net = zoo.pretrained_network("tiny")      # the same model as a stverify Network
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .architectures import ARCHITECTURES, ArchSpec, build_torch, get_spec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["ARCHITECTURES", "ArchSpec", "WEIGHTS_DIR", "available", "build_torch", "load_pretrained",
           "manifest", "pretrained_network", "weights_path"]


def manifest() -> dict:
    """The shipped ``weights/manifest.json``: per model its recipe, accuracies and file hash."""
    path = WEIGHTS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def available() -> list[str]:
    """Names of the registry models that have shipped weights."""
    return [n for n, s in ARCHITECTURES.items() if (WEIGHTS_DIR / s.weights_file).is_file()]


def weights_path(name: str) -> Path:
    """Path of the shipped weights of ``name``; ValueError if unknown or not shipped."""
    path = WEIGHTS_DIR / get_spec(name).weights_file
    if not path.is_file():
        raise InputError(f"no shipped weights for {name!r} (expected {path}); models with weights: "
                         f"{', '.join(available()) or 'none'}; train one with python -m stverify.zoo.train {name}")
    return path


def load_pretrained(name: str) -> nn.Sequential:
    """The zoo model ``name`` with its shipped weights (strict, weights_only), in eval mode."""
    model = build_torch(name)
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def pretrained_network(name: str):
    """The shipped model ``name`` converted to the layer IR (``stverify.network.Network``)."""
    from ..network.from_torch import from_torch

    model = load_pretrained(name)
    return from_torch(model, model.input_shape, name=name)
