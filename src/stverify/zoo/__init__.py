"""3D CNNs for verification (chains and residual / Inception graphs), their training, and
shipped trained weights.

>>> from stverify import zoo
>>> model = zoo.load_pretrained("tiny")       # the torch module (nn.Sequential for chains), eval mode
>>> net = zoo.network("resnet2b")             # a zoo model as a stverify Network (a graph)
>>> net = zoo.network("r3d18_small")          # untrained: its seeded initialisation, no weights file
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .architectures import ARCHITECTURES, ArchSpec, build_torch, get_spec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["ARCHITECTURES", "ArchSpec", "WEIGHTS_DIR", "available", "build_torch", "dataset_of", "load_pretrained",
           "manifest", "network", "pretrained_network", "weights_path"]


def manifest() -> dict:
    """The shipped ``weights/manifest.json``: per model its recipe, accuracies and file hash."""
    path = WEIGHTS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def available() -> list[str]:
    """Names of the registry models that can be loaded: shipped weights, or a seeded initialisation."""
    return [n for n, s in ARCHITECTURES.items() if not s.trained or (WEIGHTS_DIR / s.weights_file).is_file()]


def dataset_of(name: str) -> str:
    """The generated dataset zoo model ``name`` is trained on; InputError for a model without one."""
    dataset = get_spec(name).dataset
    if dataset is None:
        raise InputError(f"the zoo model {name!r} has no dataset (untrained, {'x'.join(map(str, get_spec(name).input_shape))} "
                         "inputs, for scale): give the data (--data, or data = in a bench config)")
    return dataset


def weights_path(name: str) -> Path:
    """Path of the shipped weights of ``name``; ValueError if unknown or not shipped."""
    path = WEIGHTS_DIR / get_spec(name).weights_file
    if not path.is_file():
        raise InputError(f"no shipped weights for {name!r} (expected {path}); models with weights: "
                         f"{', '.join(available()) or 'none'}; train one with python -m stverify.zoo.train {name}")
    return path


def load_pretrained(name: str) -> nn.Module:
    """The zoo model ``name`` with its shipped weights (strict, weights_only), in eval mode; an
    untrained model (``init_seed``) with its seeded initialisation."""
    model = build_torch(name)
    if not get_spec(name).trained:
        return model.eval()
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def network(name: str):
    """The zoo model ``name`` (``load_pretrained``) converted to the IR (``stverify.network.Network``)."""
    from ..network.from_torch import from_torch

    model = load_pretrained(name)
    return from_torch(model, model.input_shape, name=name)


pretrained_network = network  # the name every caller used before the untrained r3d18_small
