"""A model with planted detectors, for feature-visualization tests.

``PlantedNet`` takes ``(3, 32, 32)`` images in [0, 1]. Its first convolution (``conv``,
7x7, 3 channels, then ``relu``) has hand-set weights:

- channel 0: a vertical luminance grating (period 4 pixels), the same in R, G and B;
- channel 1: a colour detector: +1 on red, -0.5 on green and blue, flat over space;
- channel 2: a horizontal luminance grating (period 4 pixels);

each zero-mean, so a gray image gives zero response. ``pool`` + ``fc`` make it a
classifier (class k reads channel k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

K = 7
PERIOD = 4.0


def planted_kernels() -> torch.Tensor:
    """(3, 3, 7, 7): the planted filters of channels 0, 1, 2, each of unit norm."""
    r = torch.arange(K, dtype=torch.float32) - (K - 1) / 2
    wave = torch.cos(2 * math.pi * r / PERIOD)
    wave = wave - wave.mean()
    vertical = wave.view(1, K).expand(K, K)  # varies along x: vertical stripes
    horizontal = wave.view(K, 1).expand(K, K)
    grating_v = vertical.unsqueeze(0).expand(3, K, K)
    grating_h = horizontal.unsqueeze(0).expand(3, K, K)
    colour = torch.tensor([1.0, -0.5, -0.5]).view(3, 1, 1).expand(3, K, K)
    ks = torch.stack([grating_v, colour, grating_h]).clone()
    return ks / ks.flatten(1).norm(dim=1).view(3, 1, 1, 1)


class PlantedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, K, padding=K // 2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(planted_kernels())
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.eye(3))
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


def pattern_match(images: torch.Tensor) -> torch.Tensor:
    """(K, 3): for each image and planted filter, the mean over positions of the absolute
    normalised cross-correlation between the image's (mean-removed) 7x7 patches and the
    filter: 1 for a patch that is a scaled copy of the filter, 0 for an orthogonal one."""
    ks = planted_kernels().flatten(1)  # (3, 147), zero-mean, unit norm
    patches = F.unfold(images, K)  # (N, 147, L)
    patches = patches - patches.mean(dim=1, keepdim=True)
    patches = patches / (patches.norm(dim=1, keepdim=True) + 1e-8)
    ncc = torch.einsum("fd,ndl->nfl", ks, patches)
    return ncc.abs().mean(dim=2)
