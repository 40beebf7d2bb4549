"""3D CNNs of the zoo, as a registry of named specs.

The chain models are ``nn.Sequential`` stacks of Conv3d, ReLU, AvgPool3d, MaxPool3d, Flatten and
Linear, sized for exact verification (MILP / SMT).  The graph models (``graphs.py``: residual and
Inception blocks with batch norm and global average pooling) are ordinary torch modules that
``network.from_torch`` imports.  A spec records the dataset the model is trained on and the
training recipe of the shipped weights (the defaults of ``stverify.zoo.train``); a spec with
``init_seed`` is not trained: its weights are its seeded random initialisation (``r3d18_small``,
an R3D-18-topology model for scale, with no dataset).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import InputError
from .graphs import InceptionNet, ResNet, he_initialised, unit

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


def _resnet2b() -> nn.Module:
    """ResNet-2B-shaped: a strided stem, an identity block, a downsampling block (strided conv and a
    strided 1x1x1 conv + BN shortcut), global average pooling; on 1 x 8 x 16 x 16."""
    stem = unit(1, 4, 3, 2, 1)  # 4 x 4 x 8 x 8
    return ResNet(stem, [(4, 4, 1), (4, 8, 2)], 4)  # 4 x 4 x 8 x 8, then 8 x 2 x 4 x 4


def _medmnist_resnet() -> nn.Module:
    """A small MedMNIST-shaped ResNet on 1 x 28 x 28 x 28: a strided stem and average pooling to
    4 x 7^3, an identity block, a downsampling block to 8 x 4^3, global average pooling."""
    stem = nn.Sequential(unit(1, 4, 4, 2, 1), nn.AvgPool3d(2))  # 4 x 14^3, then 4 x 7^3
    return ResNet(stem, [(4, 4, 1), (4, 8, 2)], 4)


def _inception() -> nn.Module:
    """A strided stem and one Inception block (1x1x1: 4; 1x1x1 2 -> 3x3x3: 4; max-pool -> 1x1x1: 4),
    global average pooling; on 1 x 8 x 16 x 16."""
    return InceptionNet(unit(1, 4, 3, 2, 1), 4, (4, 2, 4, 4), 4)  # 4 x 4 x 8 x 8, then 12 x 4 x 8 x 8


R3D_WIDTH = 4
R3D_CLASSES = 10


def _r3d18_small() -> nn.Module:
    """torchvision's R3D-18 topology at width ``R3D_WIDTH``: stem Conv3d(3, w, (3, 7, 7), stride
    (1, 2, 2), padding (1, 3, 3)) + BN + ReLU, 4 stages of 2 BasicBlocks of widths w, 2w, 4w, 8w
    (stages 2-4 start with a stride-2 block: strided 1x1x1 conv + BN shortcut), global average
    pooling, a linear head; on 3 x 16 x 112 x 112."""
    w = R3D_WIDTH
    stem = unit(3, w, (3, 7, 7), (1, 2, 2), (1, 3, 3))
    blocks, cin = [], w
    for stage, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
        blocks += [(cin, cout, 2 if stage else 1), (cout, cout, 1)]
        cin = cout
    return ResNet(stem, blocks, R3D_CLASSES)


def _steering() -> list[nn.Module]:
    return [
        nn.Conv3d(3, 8, kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 8 x 3 x 8 x 8
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=2, padding=1),  # 8 x 2 x 4 x 4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 16),
        nn.ReLU(),
        nn.Linear(16, 1),
    ]


def _action() -> list[nn.Module]:
    return [
        nn.Conv3d(1, 8, 3, stride=2, padding=1),  # 8 x 4 x 8 x 8
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=2, padding=1),  # 8 x 2 x 4 x 4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    ]


def _chain(layers: Callable[[], list[nn.Module]]) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(*layers())


@dataclass(frozen=True)
class ArchSpec:
    """A named model: how to build it, its input, dataset, and the recipe of its shipped weights."""

    name: str
    build: Callable[[], nn.Module]  # a freshly initialised float32 module
    dataset: str | None  # a generated dataset (``stverify.data.DATASETS``); None: none (an untrained model)
    input_shape: Shape
    n_classes: int  # outputs: classes of a classifier, 1 for the steering regression
    description: str
    arch: str = ""  # the architecture name (differs from ``name`` for variants such as tiny_std)
    train: dict = field(default_factory=dict)  # defaults of stverify.zoo.train.train for this model
    init_seed: int | None = None  # not trained: the weights are the seeded initialisation (graphs.he_initialised)

    def __post_init__(self):
        if not self.arch:
            object.__setattr__(self, "arch", self.name)

    @property
    def weights_file(self) -> str:
        return f"{self.name}.pt"

    @property
    def trained(self) -> bool:
        return self.init_seed is None


_IBP = dict(method="ibp", lr=3e-3, batch_size=50)

ARCHITECTURES: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec("tiny", _chain(_tiny), "video", (1, 4, 10, 10), 4,
                 "Conv3d(1->4, k=2x3x3, s=1x2x2), Linear(192->16), Linear(16->4); 208 ReLUs",
                 train=dict(_IBP, eps=4 / 255, epochs=40)),
        ArchSpec("tiny_std", _chain(_tiny), "video", (1, 4, 10, 10), 4,
                 "the tiny architecture, standard (non-certified) training",
                 arch="tiny", train=dict(method="standard", lr=3e-3, batch_size=50, eps=4 / 255, epochs=20)),
        ArchSpec("tiny_maxpool", _chain(_tiny_maxpool), "video", (1, 4, 10, 10), 4,
                 "tiny with MaxPool3d(1x2x2) after the conv ReLU, Linear(48->16), Linear(16->4); 208 ReLUs",
                 train=dict(_IBP, eps=4 / 255, epochs=40)),
        ArchSpec("small", _chain(_small), "video8", (1, 8, 16, 16), 4,
                 "Conv3d(1->4, k3, s2, p1), Conv3d(4->8, k3, s2, p1), Linear(256->4); 1280 ReLUs",
                 train=dict(_IBP, eps=2 / 255, epochs=30)),
        ArchSpec("medmnist", _chain(_medmnist), "volume", (1, 28, 28, 28), 4,
                 "Conv3d(1->4, k4, s2, p1), AvgPool(2), Conv3d(4->8, k3, s2), AvgPool(2, s1), "
                 "Linear(64->32), Linear(32->4); 11224 ReLUs",
                 train=dict(_IBP, eps=2 / 255, epochs=60, warmup=0.2, ramp=0.4)),
        ArchSpec("resnet2b", _resnet2b, "video8", (1, 8, 16, 16), 4,
                 "ResNet-2B shape: stem conv(1->4, k3, s2)+BN, BasicBlock(4), BasicBlock(4->8, s2; 1x1x1 conv+BN "
                 "shortcut), global average pool, Linear(8->4)",
                 train=dict(_IBP, eps=2 / 255, epochs=30)),
        ArchSpec("medmnist_resnet", _medmnist_resnet, "volume", (1, 28, 28, 28), 4,
                 "stem conv(1->4, k4, s2)+BN, AvgPool3d(2), BasicBlock(4), BasicBlock(4->8, s2; 1x1x1 conv+BN "
                 "shortcut), global average pool, Linear(8->4)",
                 train=dict(_IBP, eps=2 / 255, epochs=60, warmup=0.2, ramp=0.4)),
        ArchSpec("inception", _inception, "video8", (1, 8, 16, 16), 4,
                 "stem conv(1->4, k3, s2)+BN, Inception block [1x1x1: 4 | 1x1x1: 2 -> 3x3x3: 4 | max-pool 3x3x3 "
                 "-> 1x1x1: 4] concatenated, global average pool, Linear(12->4)",
                 train=dict(_IBP, eps=2 / 255, epochs=30)),
        ArchSpec("r3d18_small", _r3d18_small, None, (3, 16, 112, 112), R3D_CLASSES,
                 f"torchvision's R3D-18 topology at width {R3D_WIDTH} (stages {R3D_WIDTH}, {2 * R3D_WIDTH}, "
                 f"{4 * R3D_WIDTH}, {8 * R3D_WIDTH}), He-initialised with seed 0, not trained", init_seed=0),
        ArchSpec("steering", _chain(_steering), "driving", (3, 4, 16, 16), 1,
                 "Conv3d(3->8, k 2x3x3, s 1x2x2, p 0x1x1), Conv3d(8->8, k3, s2, p1), Linear(256->16), Linear(16->1): "
                 "the steering angle (regression)",
                 train=dict(_IBP, eps=2 / 255, epochs=40)),
        ArchSpec("action", _chain(_action), "action", (1, 8, 16, 16), 4,
                 "Conv3d(1->8, k3, s2, p1), Conv3d(8->8, k3, s2, p1), Linear(256->32), Linear(32->4)",
                 train=dict(_IBP, eps=2 / 255, epochs=40)),
    )
}


def get_spec(name: str) -> ArchSpec:
    """The registry entry ``name``; InputError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown model {name!r}; available: {', '.join(ARCHITECTURES)}") from None


def build_torch(name: str) -> nn.Module:
    """A freshly initialised float32 module for ``name`` (an ``nn.Sequential`` for the chain models),
    with attributes ``input_shape`` (C, T, H, W), ``dataset``, ``n_classes`` and ``zoo_name``."""
    spec = get_spec(name)
    model = spec.build().float()
    if spec.init_seed is not None:
        model = he_initialised(model, spec.init_seed)
    model.input_shape = spec.input_shape
    model.dataset = spec.dataset
    model.n_classes = spec.n_classes
    model.zoo_name = spec.name
    return model
