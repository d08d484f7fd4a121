"""Helpers for tests: tiny models with the structures that break naive implementations."""

from .generative import TinyGAN, TinySeqAE, TinyVAE
from .models import (
    DeadBranchNet,
    FunctionalReLUNet,
    NoGradNet,
    ReusedReLUNet,
    TinyCNN,
    TinyEncoder,
    TinyGenerator,
    TinyLM,
    TinyMLP,
    TinyResNet,
    seeded,
)

__all__ = [
    "TinyCNN",
    "TinyResNet",
    "TinyMLP",
    "FunctionalReLUNet",
    "ReusedReLUNet",
    "NoGradNet",
    "DeadBranchNet",
    "TinyLM",
    "TinyEncoder",
    "TinyGenerator",
    "TinyVAE",
    "TinySeqAE",
    "TinyGAN",
    "seeded",
]
