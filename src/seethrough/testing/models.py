"""Tiny models for tests and examples: fast on a CPU, with the structures that break
naive implementations (BatchNorm, residual adds, in-place ReLU, functional ReLU, one ReLU
module reused, a branch off the output path, no-grad forward)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TinyCNN",
    "TinyResNet",
    "TinyMLP",
    "FunctionalReLUNet",
    "ReusedReLUNet",
    "NoGradNet",
    "DeadBranchNet",
    "seeded",
]


def seeded(cls, *args, seed: int = 0, **kwargs) -> nn.Module:
    """Build ``cls(*args, **kwargs)`` with deterministic initial weights, in eval mode.
    BatchNorm running statistics are set to non-trivial values so eval mode matters."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = cls(*args, **kwargs)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


class TinyCNN(nn.Module):
    """conv-relu-pool-conv-relu-pool-linear on (3, 16, 16)."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Linear(12 * 4, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """ResNet-style: BatchNorm, residual adds, in-place ReLU reused inside blocks."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _Block(8, 8, 1)
        self.layer2 = _Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(self.pool(x).flatten(1))


class TinyMLP(nn.Module):
    def __init__(self, in_features: int = 10, num_classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, num_classes)
        )

    def forward(self, x):
        return self.net(x)


class FunctionalReLUNet(nn.Module):
    """ReLUs as functional calls (F.relu, torch.relu, Tensor.relu): no module hooks see them."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x).relu() - 0.1 * self.fc(x)


class ReusedReLUNet(nn.Module):
    """One in-place nn.ReLU module applied three times."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, num_classes)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


class NoGradNet(nn.Module):
    """Its forward runs under torch.no_grad(): gradient methods cannot explain it."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(10, num_classes)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(x)


class DeadBranchNet(nn.Module):
    """``side`` runs in forward but the output does not use it."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.main = nn.Linear(10, num_classes)
        self.side = nn.Linear(10, 4)

    def forward(self, x):
        _ = self.side(x)
        return self.main(x)
