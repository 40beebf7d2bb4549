"""The zoo's graph models as ordinary torch modules: residual (BasicBlock, ResNet) and Inception-style.

Written as torch code, they reach the network IR by ``network.from_torch`` (torch.fx), like any
user's model; batch norms are folded into the convolution they follow, except on a shortcut or
wherever another node reads the convolution's output.

* ``BasicBlock``: torchvision's residual block in 3D,
  relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), 3x3x3 convolutions without bias; the
  shortcut is the identity, or a strided 1x1x1 convolution + batch norm when the block changes the
  shape (downsampling);
* ``ResNet``: a stem, a sequence of BasicBlocks, global average pooling, a linear head;
* ``InceptionBlock``: branches of 1x1x1, 1x1x1 -> 3x3x3 and max-pool (3x3x3, stride 1, padding 1)
  -> 1x1x1 units (conv + batch norm + ReLU, as I3D's), concatenated on channels;
* ``InceptionNet``: a stem, one InceptionBlock, global average pooling, a linear head.
"""
from __future__ import annotations

import torch
from torch import nn


def unit(cin: int, cout: int, kernel=1, stride=1, padding=0) -> nn.Sequential:
    """Conv3d (no bias) + BatchNorm3d + ReLU."""
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout), nn.ReLU())


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); shortcut: the identity, or a strided
    1x1x1 conv + batch norm where the block changes the number of channels or the grid."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """stem -> BasicBlocks (cin, cout, stride) -> global average pooling -> Linear(classes)."""

    def __init__(self, stem: nn.Module, blocks: list[tuple[int, int, int]], classes: int):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*(BasicBlock(cin, cout, stride) for cin, cout, stride in blocks))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(blocks[-1][1], classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class InceptionBlock(nn.Module):
    """[1x1x1 unit; 1x1x1 unit -> 3x3x3 unit; max-pool 3x3x3 (stride 1, padding 1) -> 1x1x1 unit],
    concatenated on channels (``widths``: the output channels of the three branches, and the
    reduction before the 3x3x3 unit)."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int]):
        super().__init__()
        w1, reduce, w3, wp = widths
        self.branch1 = unit(cin, w1)
        self.branch3 = nn.Sequential(unit(cin, reduce), unit(reduce, w3, 3, 1, 1))
        self.branch_pool = nn.Sequential(nn.MaxPool3d(3, 1, 1), unit(cin, wp))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch_pool(x)], dim=1)


class InceptionNet(nn.Module):
    """stem -> InceptionBlock -> global average pooling -> Linear(classes)."""

    def __init__(self, stem: nn.Module, cin: int, widths: tuple[int, int, int, int], classes: int):
        super().__init__()
        self.stem = stem
        self.block = InceptionBlock(cin, widths)
        self.fc = nn.Linear(widths[0] + widths[2] + widths[3], classes)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3, 4)))


def he_initialised(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with seeded random weights (a model used untrained, for scale): He-normal
    convolutions (fan-out, as torchvision's video ResNets), linear weights N(0, 1 / fan_in), zero
    biases, and batch norms with non-trivial parameters and running statistics (gamma in [0.5, 1.5],
    beta and the running mean N(0, 0.1^2), running variance in [0.5, 2]).  Returned in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
            elif isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            if isinstance(m, (nn.Conv3d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    return model.eval()
