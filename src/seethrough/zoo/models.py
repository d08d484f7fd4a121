"""Architectures of the model zoo (plain PyTorch, no torchvision).

* :class:`ShapesCNN` and :class:`MnistCNN`: the small trained models shipped with the
  package (weights in ``seethrough/zoo/weights``).
* :class:`ResNet18` and :class:`SmallVGG`: randomly initialised networks of realistic
  shape for benchmarks and tests; pass ``seed=`` for reproducible weights. ``ResNet18``
  uses torchvision's module names (``conv1``, ``bn1``, ``relu``, ``maxpool``,
  ``layer1`` .. ``layer4``, ``avgpool``, ``fc``).

Every model takes images in ``[0, 1]`` (no normalisation inside or outside) and has a
class attribute ``default_cam_layer``: the dotted ``named_modules()`` path of the module
whose output is the last convolutional feature map, suitable for Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["ShapesCNN", "MnistCNN", "ResNet18", "SmallVGG", "BasicBlock"]


def _conv_bn_relu(cin: int, cout: int, *, inplace: bool = True) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=inplace),
    ]


def _init_weights(model: nn.Module, *, small_linear: bool) -> None:
    """Kaiming-normal convolutions, unit BN; linear layers either small normal (trained
    models: an unbiased start) or PyTorch's default uniform (random benchmark models:
    logits that differ between classes)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if small_linear:
                nn.init.normal_(m.weight, 0.0, 0.05)
                nn.init.zeros_(m.bias)
            else:
                m.reset_parameters()


@contextmanager
def _rng_scope(seed: int | None) -> Iterator[None]:
    """With a seed: a scope with a private, seeded torch RNG (the global RNG state is
    restored on exit), so building a model neither depends on nor changes it."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class ShapesCNN(nn.Module):
    """Small CNN for the shapes task: ``(N, 3, 64, 64)`` in ``[0, 1]`` -> logits.

    A 5x5 stride-2 stem (64 -> 32 pixels), then conv-BN-ReLU blocks of 32, 64, 128 and
    128 channels with max pooling after the first two (32 -> 8 pixels), global average
    pooling and a linear classifier (~250k parameters). The last ReLU (``features.16``,
    an 8x8 map) is not in-place so it can be hooked from either side; the others are.
    """

    default_cam_layer = "features.16"

    def __init__(self, num_classes: int = 4, *, seed: int | None = None) -> None:
        super().__init__()
        with _rng_scope(seed):
            self.features = nn.Sequential(
                nn.Conv2d(3, 32, kernel_size=5, stride=2, padding=2, bias=False),  # 0 -> 32x32
                nn.BatchNorm2d(32),  # 1
                nn.ReLU(inplace=True),  # 2
                *_conv_bn_relu(32, 32),  # 3 4 5
                nn.MaxPool2d(2),  # 6        -> 16x16
                *_conv_bn_relu(32, 64),  # 7 8 9
                nn.MaxPool2d(2),  # 10       -> 8x8
                *_conv_bn_relu(64, 128),  # 11 12 13
                *_conv_bn_relu(128, 128, inplace=False),  # 14 15 16
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.classifier = nn.Linear(128, num_classes)
            _init_weights(self, small_linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


class MnistCNN(nn.Module):
    """Small CNN for MNIST digits: ``(N, 1, 28, 28)`` in ``[0, 1]`` -> 10 logits.

    Conv blocks of 32, 64 and 128 channels (28 -> 14 -> 7 pixels), global average
    pooling, dropout and a linear classifier. ``features.10`` (7x7) is the CAM layer.
    """

    default_cam_layer = "features.10"

    def __init__(self, num_classes: int = 10, *, seed: int | None = None) -> None:
        super().__init__()
        with _rng_scope(seed):
            self.features = nn.Sequential(
                *_conv_bn_relu(1, 32),  # 0 1 2
                nn.MaxPool2d(2),  # 3        -> 14x14
                *_conv_bn_relu(32, 64),  # 4 5 6
                nn.MaxPool2d(2),  # 7        -> 7x7
                *_conv_bn_relu(64, 128, inplace=False),  # 8 9 10
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.dropout = nn.Dropout(0.2)
            self.classifier = nn.Linear(128, num_classes)
            _init_weights(self, small_linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers, an identity or 1x1 projection
    shortcut, the residual addition and a shared in-place ReLU."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 layout (BasicBlock x [2, 2, 2, 2]) for benchmarks; random weights.

    Module names follow torchvision, so layer paths like ``layer4.1.conv2`` carry over.
    ``default_cam_layer`` is ``"layer4"`` (output of the last residual stage).
    """

    default_cam_layer = "layer4"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, seed: int | None = None) -> None:
        super().__init__()
        with _rng_scope(seed):
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._stage(64, 64, stride=1)
            self.layer2 = self._stage(64, 128, stride=2)
            self.layer3 = self._stage(128, 256, stride=2)
            self.layer4 = self._stage(256, 512, stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)
            _init_weights(self, small_linear=False)

    @staticmethod
    def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SmallVGG(nn.Module):
    """Small VGG-style network for 64x64 inputs (benchmarks; random weights).

    Three blocks of conv-ReLU-conv-ReLU-maxpool (32, 64, 128 channels; 64 -> 8 pixels),
    adaptive average pooling to 2x2 and a two-layer classifier with dropout. In-place
    ReLUs and no batch norm, like the original VGG. ``features.13`` is the CAM layer.
    """

    default_cam_layer = "features.13"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, *, seed: int | None = None) -> None:
        super().__init__()
        with _rng_scope(seed):
            layers: list[nn.Module] = []
            cin = in_channels
            for cout in (32, 64, 128):
                layers += [
                    nn.Conv2d(cin, cout, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                ]
                cin = cout
            # index 13 is the ReLU after the last conv; 14 the last pool
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
            self.classifier = nn.Sequential(
                nn.Linear(128 * 4, 256),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(256, num_classes),
            )
            _init_weights(self, small_linear=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
