"""RISE: randomized input sampling for explanation (Petsiuk, Das and Saenko, 2018).

The model is evaluated on the input seen through many random smooth masks; the saliency
of a pixel is the average score of the masked inputs weighted by how much each mask kept
that pixel. Only forward passes are needed, so any model (even a non-differentiable one)
can be explained.

Masks: a binary ``grid x grid`` array whose cells are kept with probability
``keep_prob`` is upsampled bilinearly to ``(grid + 1) * cell`` pixels per side, where
``cell = ceil(H / grid)`` (``ceil(W / grid)`` for the width), and an ``H x W`` window is
cut out of it at a random offset in ``[0, cell)`` per dimension. The shift moves the
cell borders so that the saliency is not blocky.

Every (mask, sample) pair is one row scored by
:class:`~seethrough._core.forward.ForwardRunner`; masks are drawn on demand for each
chunk, mask ``i`` from its own seeded generator, so nothing depends on the chunk size
and a large ``n_masks`` never materialises all masks at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.errors import ConfigError, InputError
from .._core.targets import Target
from ._base import Computed
from .baselines import BaselineLike, describe_baseline
from .perturbation import PerturbationAttribution, _baseline

__all__ = ["RISE"]

# Masks are reduced into the saliency in blocks of this many masks, always the same
# blocks in the same order, so the sum is bitwise independent of the forward chunk size.
_REDUCE_BLOCK = 256


def _check_image(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise InputError(
            f"{what} masks the two spatial dimensions of images, so it needs inputs of shape "
            f"(B, C, H, W); got {tuple(x.shape)}. For tabular or sequence inputs use "
            f"FeatureAblation or Occlusion instead (a single-channel image needs x.unsqueeze(1))."
        )


class RISE(PerturbationAttribution):
    """Randomized Input Sampling for Explanation (Petsiuk et al., 2018).

    ``saliency[b] = sum_i f_b(x_b * m_i + baseline_b * (1 - m_i)) * m_i / (n_masks * keep_prob)``,
    the paper's Monte-Carlo estimate of ``E[f(x * M) | M(pixel) = 1]``; the result has shape
    ``(B, 1, H, W)`` (one map per sample, broadcastable to the input).

    The **same masks are used for every sample of a batch** (mask ``i`` depends only on
    ``seed``, ``i`` and the image size), so explaining a batch at once or one sample at a
    time gives the same maps. The maps are non-negative when the target scores are
    (use ``Class(c, output="softmax")`` for the paper's probabilities); logits can make them
    negative.

    Parameters
    ----------
    n_masks:
        Number of random masks (the paper uses 4000 for ImageNet classifiers; the noise of
        the estimate falls as ``1 / sqrt(n_masks)``).
    grid:
        Cells per side of the low-resolution binary grid (the paper's ``s``; 7 for
        224x224 inputs). Smaller grids find larger regions.
    keep_prob:
        Probability that a grid cell is kept (the paper's ``p``), in ``(0, 1)``.
    seed:
        Seed of the masks; the same seed gives the same masks whatever the batching.
    baseline:
        What masked-out pixels become: a value, ``"blur"``, ``"mean"`` (per-channel mean),
        a Baseline or a tensor. The paper uses 0.
    batching, progress:
        Chunking of the rows (mask x sample) and the progress bar.

    The attributions are the *centred* map ``sum_i (f(x ⊙ m_i) - mean f) m_i / (N p)``:
    the paper's map (``extras["rise_map"]``) minus ``mean(f) · mask_mean / p``, an offset
    that is flat up to sampling noise. Pixels rank the same, but the centred map shows
    where the score rises (positive) and falls (negative) instead of a near-uniform field
    dominated by the mean score, and it does not depend on the score's offset (logits).

    ``extras["mask_mean"]`` is the per-pixel mean of the masks drawn, ``(1, 1, H, W)``,
    whose expectation is ``keep_prob`` everywhere: far from it, ``n_masks`` is too small.
    """

    name = "rise"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 4000,
        grid: int = 7,
        keep_prob: float = 0.5,
        seed: int = 0,
        baseline: BaselineLike = 0.0,
        batching=None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(model, batching=batching, progress=progress)
        self.n_masks = n_masks
        self.grid = grid
        self.keep_prob = keep_prob
        self.seed = seed
        self.baseline = baseline

    def settings(self):
        b = describe_baseline(self.baseline)
        return {
            "n_masks": self.n_masks,
            "grid": self.grid,
            "keep_prob": self.keep_prob,
            "seed": self.seed,
            "baseline": b,
        }

    def _check_settings(self) -> None:
        if isinstance(self.n_masks, bool) or not isinstance(self.n_masks, int) or self.n_masks < 1:
            raise ConfigError(f"n_masks must be a positive int, got {self.n_masks!r}")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 1:
            raise ConfigError(f"grid must be a positive int (cells per side of the mask grid), got {self.grid!r}")
        p = self.keep_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < float(p) < 1.0:
            raise ConfigError(
                f"keep_prob must be a probability strictly between 0 and 1 (the paper uses 0.5), got {p!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")

    # -- masks ---------------------------------------------------------------------------
    def cell_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Cell size in pixels ``(ceil(H / grid), ceil(W / grid))`` for images of ``shape``."""
        H, W = shape
        return math.ceil(H / self.grid), math.ceil(W / self.grid)

    def _draw(self, n: int, start: int, seed: int, cells: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Binary grids ``(n, s, s)`` and crop offsets ``(n, 2)`` of masks ``start ..``."""
        s = self.grid
        grids = torch.empty(n, s, s)
        offsets = torch.empty(n, 2, dtype=torch.long)
        gen = torch.Generator()
        for k in range(n):
            gen.manual_seed(_mask_seed(seed, start + k))
            grids[k] = (torch.rand(s, s, generator=gen) < self.keep_prob).float()
            offsets[k, 0] = torch.randint(0, cells[0], (), generator=gen)
            offsets[k, 1] = torch.randint(0, cells[1], (), generator=gen)
        return grids, offsets

    def _upsample(self, grids: Tensor, cells: tuple[int, int]) -> Tensor:
        s = self.grid
        return F.interpolate(
            grids.unsqueeze(1), size=((s + 1) * cells[0], (s + 1) * cells[1]), mode="bilinear", align_corners=False
        )

    def masks(self, n: int, shape: tuple[int, int], seed: int | None = None, *, start: int = 0) -> Tensor:
        """Masks ``start .. start + n - 1`` for images of spatial ``shape`` ``(H, W)``.

        Returns ``(n, 1, H, W)`` float32 values in ``[0, 1]``. Mask ``i`` is drawn from a
        generator seeded with ``(seed, i)`` only (``seed`` defaults to the method's), so any
        range of masks can be regenerated, in any chunks, identically.
        """
        H, W = int(shape[0]), int(shape[1])
        cells = self.cell_size((H, W))
        grids, offsets = self._draw(n, start, self.seed if seed is None else seed, cells)
        up = self._upsample(grids, cells)
        rows = offsets[:, 0, None] + torch.arange(H)  # (n, H)
        cols = offsets[:, 1, None] + torch.arange(W)  # (n, W)
        idx = torch.arange(n)[:, None, None]
        # clamped: interpolation rounding can leave values a few ulp outside [0, 1]
        return up[idx, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1).clamp_(0, 1)

    def _weighted_sum(self, scores: Tensor, shape: tuple[int, int]) -> Tensor:
        """``sum_i scores[i, b] * m_i`` for every sample ``b`` plus ``sum_i m_i`` as the
        last row, ``(B + 1, H, W)`` in float64.

        Upsampling and cropping are linear, so masks that share a crop offset are summed as
        grids first and upsampled once per offset (at most ``cell**2`` upsamplings instead
        of one per mask). The blocks and their order are fixed: the result does not depend
        on how the rows were chunked.
        """
        H, W = shape
        N, B = scores.shape
        cells = self.cell_size((H, W))
        s = self.grid
        acc = torch.zeros(cells[0] * cells[1], B + 1, s, s, dtype=torch.float64)
        ones = torch.ones(N, 1, dtype=torch.float64)
        weights = torch.cat([scores.detach().cpu().to(torch.float64), ones], dim=1)  # (N, B + 1)
        for start in range(0, N, _REDUCE_BLOCK):
            k = min(_REDUCE_BLOCK, N - start)
            grids, offsets = self._draw(k, start, self.seed, cells)
            key = offsets[:, 0] * cells[1] + offsets[:, 1]
            contrib = weights[start : start + k, :, None, None] * grids.to(torch.float64)[:, None]
            acc.index_add_(0, key, contrib)
        out = torch.zeros(B + 1, H, W, dtype=torch.float64)
        used = acc.flatten(1).abs().sum(1).nonzero().flatten().tolist()
        for o in used:
            oy, ox = divmod(o, cells[1])
            up = self._upsample(acc[o], cells)[:, 0]
            out += up[:, oy : oy + H, ox : ox + W]
        return out

    # -- compute -------------------------------------------------------------------------
    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"RISE.attribute() got unexpected arguments {sorted(kwargs)}")
        _check_image(x, "RISE")
        B, _, H, W = x.shape
        if self.grid > min(H, W):
            raise InputError(
                f"grid={self.grid} cells per side is finer than the {H}x{W} input; use a grid of "
                f"at most {min(H, W)} (the paper uses 7 for 224x224 images)"
            )
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        N = self.n_masks
        scores = torch.zeros(N, B, dtype=torch.float64)

        def rows(sl: slice):
            r = torch.arange(sl.start, sl.stop)
            first = sl.start // B
            m = self.masks((sl.stop - 1) // B - first + 1, (H, W), start=first).to(device=x.device, dtype=x.dtype)
            ks = (r // B - first).to(x.device)
            bs = (r % B).to(x.device)
            mk = m[ks]
            return x[bs] * mk + base[bs] * (1 - mk), bs

        def consume(sl: slice, s: Tensor) -> None:
            r = torch.arange(sl.start, sl.stop)
            scores[r // B, r % B] = s.detach().cpu().to(torch.float64)

        n = runner.run(N * B, rows, consume)

        total = self._weighted_sum(scores, (H, W)).to(device=x.device)
        sal = (total[:B] / (N * self.keep_prob)).to(x.dtype).unsqueeze(1)
        mask_mean = (total[B] / N).to(x.dtype).reshape(1, 1, H, W)
        # Centred map: sum_i (f_i - mean_i f) m_i / (N p). It differs from the paper's map
        # by mean(f) * mask_mean / p, which is flat up to sampling noise, so pixels rank the
        # same; the offset it removes would otherwise swamp the contrast (and the sign).
        mean_f = scores.mean(dim=0).to(device=x.device, dtype=x.dtype).reshape(B, 1, 1, 1)
        centred = sal - mean_f * mask_mean / self.keep_prob
        return Computed(centred, n, scores=f_x, extras={"mask_mean": mask_mean, "rise_map": sal})


def _mask_seed(seed: int, index: int) -> int:
    """A generator seed for mask ``index`` of ``seed``: a splitmix64 mix of the pair. The
    CPU generator uses only the low 32 bits of a seed, so the pair is hashed rather than
    packed into the high and low halves."""
    mask64 = (1 << 64) - 1
    z = ((int(seed) & mask64) * 0x9E3779B97F4A7C15 + int(index) + 0x632BE59BD9B4E019) & mask64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
    return (z ^ (z >> 31)) & 0xFFFFFFFF
