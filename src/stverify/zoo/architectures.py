"""Small 3D CNNs sized for exact verification (MILP / SMT), as a registry of named specs.

Every model is an ``nn.Sequential`` of Conv3d, ReLU, AvgPool3d, MaxPool3d, Flatten and Linear
only, so it imports into the layer IR unchanged.  A spec also records the dataset the model is
trained on and the training recipe that produced the shipped weights (the defaults of
``stverify.zoo.train``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import InputError

Shape = tuple[int, int, int, int]


def _tiny() -> list[nn.Module]:
    return [
        nn.Conv3d(1, 4, kernel_size=(2, 3, 3), stride=(1, 2, 2)),  # 4 x 3 x 4 x 4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(192, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    ]


def _tiny_maxpool() -> list[nn.Module]:
    return [
        nn.Conv3d(1, 4, kernel_size=(2, 3, 3), stride=(1, 2, 2)),  # 4 x 3 x 4 x 4
        nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),  # 4 x 3 x 2 x 2
        nn.Flatten(),
        nn.Linear(48, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    ]


def _small() -> list[nn.Module]:
    return [
        nn.Conv3d(1, 4, 3, stride=2, padding=1),  # 4 x 4 x 8 x 8
        nn.ReLU(),
        nn.Conv3d(4, 8, 3, stride=2, padding=1),  # 8 x 2 x 4 x 4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 4),
    ]


def _medmnist() -> list[nn.Module]:
    return [
        nn.Conv3d(1, 4, 4, stride=2, padding=1),  # 4 x 14 x 14 x 14
        nn.ReLU(),
        nn.AvgPool3d(2),  # 4 x 7 x 7 x 7
        nn.Conv3d(4, 8, 3, stride=2),  # 8 x 3 x 3 x 3
        nn.ReLU(),
        nn.AvgPool3d(2, stride=1),  # 8 x 2 x 2 x 2
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    ]


@dataclass(frozen=True)
class ArchSpec:
    """A named model: its layers, input, dataset, and the recipe of its shipped weights."""

    name: str
    layers: Callable[[], list[nn.Module]]
    dataset: str
    input_shape: Shape
    n_classes: int
    description: str
    arch: str = ""  # the architecture name (differs from ``name`` for variants such as tiny_std)
    train: dict = field(default_factory=dict)  # defaults of stverify.zoo.train.train for this model

    def __post_init__(self):
        if not self.arch:
            object.__setattr__(self, "arch", self.name)

    @property
    def weights_file(self) -> str:
        return f"{self.name}.pt"


_IBP = dict(method="ibp", lr=3e-3, batch_size=50)

ARCHITECTURES: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec("tiny", _tiny, "video", (1, 4, 10, 10), 4,
                 "Conv3d(1->4, k=2x3x3, s=1x2x2), Linear(192->16), Linear(16->4); 208 ReLUs",
                 train=dict(_IBP, eps=4 / 255, epochs=40)),
        ArchSpec("tiny_std", _tiny, "video", (1, 4, 10, 10), 4,
                 "the tiny architecture, standard (non-certified) training",
                 arch="tiny", train=dict(method="standard", lr=3e-3, batch_size=50, eps=4 / 255, epochs=20)),
        ArchSpec("tiny_maxpool", _tiny_maxpool, "video", (1, 4, 10, 10), 4,
                 "tiny with MaxPool3d(1x2x2) after the conv ReLU, Linear(48->16), Linear(16->4); 208 ReLUs",
                 train=dict(_IBP, eps=4 / 255, epochs=40)),
        ArchSpec("small", _small, "video8", (1, 8, 16, 16), 4,
                 "Conv3d(1->4, k3, s2, p1), Conv3d(4->8, k3, s2, p1), Linear(256->4); 1280 ReLUs",
                 train=dict(_IBP, eps=2 / 255, epochs=30)),
        ArchSpec("medmnist", _medmnist, "volume", (1, 28, 28, 28), 4,
                 "Conv3d(1->4, k4, s2, p1), AvgPool(2), Conv3d(4->8, k3, s2), AvgPool(2, s1), "
                 "Linear(64->32), Linear(32->4); 11224 ReLUs",
                 train=dict(_IBP, eps=2 / 255, epochs=60, warmup=0.2, ramp=0.4)),
    )
}


def get_spec(name: str) -> ArchSpec:
    """The registry entry ``name``; InputError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown model {name!r}; available: {', '.join(ARCHITECTURES)}") from None


def build_torch(name: str) -> nn.Sequential:
    """A freshly initialised float32 ``nn.Sequential`` for ``name``, with attributes
    ``input_shape`` (C, T, H, W), ``dataset``, ``n_classes`` and ``zoo_name``."""
    spec = get_spec(name)
    model = nn.Sequential(*spec.layers()).float()
    model.input_shape = spec.input_shape
    model.dataset = spec.dataset
    model.n_classes = spec.n_classes
    model.zoo_name = spec.name
    return model
