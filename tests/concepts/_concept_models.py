"""Models with known concept behaviour for the concept tests.

``PlantedDetectors``: hand-set (planted) concept detectors, for dissection tests.

``relu2`` has four units: unit 0 fires on saturated red (a 1x1 colour filter, then a 5x5
average), unit 1 on horizontal stripes (local energy of the vertical luminance
derivative minus 1.5 times that of the horizontal one), units 2 and 3 are random
filters. The head is random: only the planted units matter.
"""

from __future__ import annotations

import torch
from torch import nn

_LUMA = (0.299, 0.587, 0.114)


class PlantedDetectors(nn.Module):
    RED, HSTRIPES = 0, 1

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(5, 4, 7, padding=3)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w1 = torch.zeros(5, 3, 3, 3)
            b1 = torch.zeros(5)
            # channel 0: red evidence R - G - B at the centre tap, minus a margin
            w1[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
            b1[0] = -0.15
            # channels 1, 2: +/- vertical derivative of luminance (horizontal edges)
            # channels 3, 4: +/- horizontal derivative (vertical edges)
            for c, wc in enumerate(_LUMA):
                w1[1, c, 0, 1], w1[1, c, 2, 1] = -wc, wc
                w1[3, c, 1, 0], w1[3, c, 1, 2] = -wc, wc
            w1[2], w1[4] = -w1[1], -w1[3]
            self.conv1.weight.copy_(w1)
            self.conv1.bias.copy_(b1)
            w2 = torch.randn(4, 5, 7, 7, generator=g) * 0.05
            b2 = torch.zeros(4)
            w2[self.RED] = 0.0
            w2[self.RED, 0, 1:6, 1:6] = 1.0 / 25
            w2[self.HSTRIPES] = 0.0
            w2[self.HSTRIPES, 1:3] = 1.0 / 49
            w2[self.HSTRIPES, 3:5] = -1.5 / 49
            self.conv2.weight.copy_(w2)
            self.conv2.bias.copy_(b2)
            self.head.weight.copy_(torch.randn(2, 4, generator=g))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


class RednessNet(nn.Module):
    """Class 0's logit is the mean "redness" (R - (G + B) / 2) of the image, class 1's its
    negative: moving ``features.1`` (an identity 1x1 conv and a ReLU on RGB) toward red
    raises class 0 and lowers class 1 for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.features[0].bias.zero_()
            self.head.weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [-1.0, 0.5, 0.5]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
