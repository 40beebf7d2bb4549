"""Small residual, Inception-style and global-pooling 3D CNNs (torch), shared by the import tests and
by tests/data/onnx/make_fixtures.py.  Inputs are N x 2 x 4 x 6 x 6 (``SHAPE``); batch norms get
random (non-trivial) parameters and running statistics from ``randomized``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHAPE = (2, 4, 6, 6)


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """``model`` in eval mode, its batch norms given random affine parameters and statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


class BasicBlock(nn.Module):
    """torchvision's residual block in 3D: conv-bn-relu-conv-bn, plus the input (identity) or its
    strided 1x1x1 conv + bn (downsampling); one ReLU(inplace=True) module called twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel=3):
        super().__init__()
        pad = tuple(k // 2 for k in ((kernel,) * 3 if isinstance(kernel, int) else kernel))
        self.conv1 = nn.Conv3d(cin, cout, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(cout, cout, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """(2+1)D stem, an identity block, a downsampling block, global average pooling, a linear head."""

    def __init__(self, width: int = 4, classes: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(SHAPE[0], width, (1, 3, 3), padding=(0, 1, 1), bias=False),
                                  nn.BatchNorm3d(width), nn.ReLU(inplace=True),
                                  nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0)), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class PreActBlock(nn.Module):
    """Pre-activation: bn -> relu -> conv -> bn -> relu -> conv, plus the block's input."""

    def __init__(self, c: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm3d(c), nn.BatchNorm3d(c)
        self.conv1, self.conv2 = nn.Conv3d(c, c, 3, padding=1), nn.Conv3d(c, c, 3, padding=1)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        return x + self.conv2(F.relu(self.bn2(out)))


class PreActNet(nn.Module):
    def __init__(self, width: int = 3, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(SHAPE[0], width, 3, padding=1)
        self.block = PreActBlock(width)
        self.bn = nn.BatchNorm3d(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.block(self.conv(x))))
        return self.fc(x.mean((2, 3, 4)))


class InputSkip(nn.Module):
    """x + conv(x) on the network input itself (the skip carries the input)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(SHAPE[0], SHAPE[0], 3, padding=1)
        self.fc = nn.Linear(SHAPE[0] * 4 * 3 * 3, classes)

    def forward(self, x):
        x = F.max_pool3d(torch.relu(x + self.conv(x)), (1, 2, 2))
        return self.fc(x.view(x.size(0), -1))


class Inception(nn.Module):
    """An Inception block on the input: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> (2+1)D 1x3x3 + 3x1x1; a max-pool
    branch (3x3x3, stride 1, padding 1) -> 1x1x1; concatenated on channels; global average pooling."""

    def __init__(self, classes: int = 3):
        super().__init__()
        c = SHAPE[0]
        self.b1 = nn.Conv3d(c, 2, 1)
        self.b2 = nn.Sequential(nn.Conv3d(c, 2, 1), nn.BatchNorm3d(2), nn.ReLU(), nn.Conv3d(2, 3, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv3d(c, 2, 1), nn.ReLU(), nn.Conv3d(2, 2, (1, 3, 3), padding=(0, 1, 1)),
                                nn.ReLU(), nn.Conv3d(2, 2, (3, 1, 1), padding=(1, 0, 0)))
        self.b4 = nn.Sequential(nn.MaxPool3d(3, 1, 1), nn.Conv3d(c, 1, 1))
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        x = F.relu(self.bn(x))
        return self.fc(torch.mean(x, dim=[2, 3, 4], keepdim=True).flatten(1))


class GlobalPoolHead(nn.Module):
    """conv -> relu -> global average pooling spelt ``how`` -> linear."""

    HOWS = ("module", "functional", "mean", "mean_keepdim")

    def __init__(self, how: str, classes: int = 3):
        super().__init__()
        self.how = how
        self.conv = nn.Conv3d(SHAPE[0], 4, 3)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if self.how == "module":
            x = torch.flatten(self.pool(x), 1)
        elif self.how == "functional":
            x = F.adaptive_avg_pool3d(x, 1).view(x.size(0), -1)
        elif self.how == "mean":
            x = x.mean((2, 3, 4))
        else:
            x = torch.mean(x, dim=[2, 3, 4], keepdim=True).reshape(x.shape[0], -1)
        return self.fc(x)


class GroupedDilated(nn.Module):
    """A grouped conv with 'same' padding, a dilated conv, a depthwise conv; input normalisation
    (x - mean) / std per channel and a learned per-channel bias added after a conv."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.6]).view(1, 2, 1, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.3]).view(1, 2, 1, 1, 1))
        self.grouped = nn.Conv3d(SHAPE[0], 4, 3, padding="same", groups=2)
        self.bias = nn.Parameter(torch.tensor([0.1, -0.2, 0.3, -0.4]).view(4, 1, 1, 1))
        self.dilated = nn.Conv3d(4, 4, 3, padding=(1, 2, 2), dilation=(1, 2, 2))
        self.depthwise = nn.Conv3d(4, 4, (1, 3, 3), groups=4)
        self.fc = nn.Linear(4 * 4 * 4 * 4, classes)

    def forward(self, x):
        x = self.grouped((x - self.mean) / self.std) + self.bias
        x = self.depthwise(F.relu(self.dilated(F.relu(x))))
        return self.fc(torch.flatten(F.relu(x), 1))


def models() -> dict[str, nn.Module]:
    """Every test model by name, with seeded random weights (eval mode, float32)."""
    torch.manual_seed(0)
    out = {"resnet": ResNet(), "preact": PreActNet(), "input_skip": InputSkip(), "inception": Inception(),
           "grouped_dilated": GroupedDilated()}
    out.update({f"pool_{how}": GlobalPoolHead(how) for how in GlobalPoolHead.HOWS})
    return {name: randomized(m, seed) for seed, (name, m) in enumerate(out.items())}
