"""Index normalisation shared by the ``subset`` methods of the bundled data sets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_index"]


def as_index(idx: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> slice | torch.Tensor:
    """``idx`` (an int, a slice, indices or a boolean mask) as something that indexes a tensor's
    first dimension and keeps it: a slice as it is, otherwise a bool mask or a long tensor."""
    if isinstance(idx, int):
        idx = [idx]
    if isinstance(idx, slice):
        return idx
    t = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
    return t if t.dtype == torch.bool else t.long()
