"""Shared test settings."""

import torch

# The tiny test models run in microseconds per op; with pytest-xdist on a small machine,
# intra-op threads only contend for cores (up to 100x slower). One thread per worker.
torch.set_num_threads(1)
