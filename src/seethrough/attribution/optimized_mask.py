"""Meaningful perturbation (Fong and Vedaldi, 2017): a mask learned by gradient descent.

A smooth low-resolution mask ``m`` in ``[0, 1]`` is upsampled to the input and blends
the input with a perturbed version of it, ``x * m + p(x) * (1 - m)`` (``m = 1`` keeps a
pixel). In *deletion* mode the mask learns the smallest region whose perturbation
destroys the target score; in *preservation* mode the smallest region that alone keeps
it. Regularisers keep the mask small (L1) and blob-like (total variation).

Unlike the other methods here the result is the solution of a non-convex optimisation:
it depends on the initialisation, the seed, the step size and the regularisation
weights. :meth:`MeaningfulPerturbation.seed_stability` measures how much.
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching
from .._core.call import call_model
from .._core.errors import ConfigError, GradientError, InputError
from .._core.hooks import StopForward, capture_activation
from .._core.layers import resolve_layer
from .._core.targets import Target, TargetLike
from ._base import Attribution, Computed
from .baselines import gaussian_blur
from .cam import upsample_map

__all__ = ["MeaningfulPerturbation"]

_MODES = ("deletion", "preservation")
_PERTURBATIONS = ("blur", "constant", "noise")
_UPSAMPLE = ("bilinear", "bicubic", "nearest")
_INITS = ("random", "ones", "half")


class MeaningfulPerturbation(Attribution):
    """Optimised perturbation mask (Fong and Vedaldi, 2017, "Interpretable explanations of
    black boxes by meaningful perturbation").

    Per sample, with ``M = upsample(m)`` and ``x' = x * M + p(x) * (1 - M)``, Adam minimises

    - deletion: ``score(x') + l1 * mean(1 - m) + tv * TV_beta(m)``
    - preservation: ``-score(x') + l1 * mean(m) + tv * TV_beta(m)``

    where ``TV_beta(m)`` is the mean over neighbouring cells of ``|m(u) - m(v)| ** tv_beta``
    (the L1 and TV terms are means, so their weights do not depend on ``mask_size``). After
    every step ``m`` is clipped to ``[0, 1]``. All samples of a batch are optimised together,
    each with its own mask (the per-sample losses are summed; Adam is elementwise, so the
    samples do not interact). Only the mask receives gradients; the model is frozen and
    left exactly as it was.

    The attributions are ``1 - M`` in deletion mode (what had to be deleted) and ``M`` in
    preservation mode (what had to be kept), shape ``(B, 1, H, W)``.

    **Sensitivity.** The objective is non-convex and the score term is a deep network:
    different seeds (random initialisations), learning rates, step counts and
    regularisation weights can give visibly different masks, and with weak regularisation
    the optimiser finds small adversarial patterns rather than the object. The weights
    trade the score against the area on the scale of the target: on logits (the default
    target) the score term is larger than on probabilities, so a larger ``l1`` is needed;
    the paper optimises the softmax probability (``Class(c, output="softmax")``). Check a
    result with :meth:`seed_stability`, and read ``extras["final_score"]``: a deletion mask
    whose final score is still high has not found what the model uses. The paper's
    random jitter of the perturbed image is not applied.

    Parameters
    ----------
    mode:
        ``"deletion"`` (smallest destroying region) or ``"preservation"`` (smallest
        sufficient region).
    perturbation:
        ``p(x)``: ``"blur"`` (Gaussian blur of standard deviation ``blur_sigma`` pixels),
        ``"constant"`` (``value`` everywhere) or ``"noise"`` (``x`` plus Gaussian noise of
        standard deviation ``noise_std``, drawn anew at every step from ``seed``).
    mask_size:
        Side of the low-resolution mask: an int, ``(h, w)``, or None for ``ceil(H / 8)`` x
        ``ceil(W / 8)`` (28 x 28 on 224 x 224 inputs, as in the paper). At most the input size.
    upsample:
        Interpolation of the mask to the input (``"bilinear"``, ``"bicubic"``, ``"nearest"``).
    l1, tv, tv_beta:
        Weights of the area and smoothness terms and the TV exponent (the paper's beta = 3).
    steps, lr:
        Adam iterations and learning rate.
    init:
        Initial mask: ``"random"`` (uniform in ``[0, 1]`` per cell, from ``seed``),
        ``"ones"`` (nothing deleted), ``"half"``, or a number in ``[0, 1]``.
    seed:
        Seed of the random initialisation and of the noise perturbation.
    batching:
        An int splits the batch into chunks of that many samples per step (same result).

    ``extras``: ``mask`` (the low-resolution ``m``, ``(B, 1, h, w)``), ``loss_curve``
    (``(steps,)``, the loss averaged over the samples, before each step), ``score_curve``
    (``(B, steps)``, the target score of the perturbed input before each step) and
    ``final_score`` (``(B,)``, the score with the returned mask; with the noise
    perturbation, on the last step's noise draw).
    """

    name = "meaningful_perturbation"
    signed = False

    def __init__(
        self,
        model: nn.Module,
        *,
        mode: str = "deletion",
        perturbation: str = "blur",
        mask_size: int | tuple[int, int] | None = None,
        upsample: str = "bilinear",
        l1: float = 3.0,
        tv: float = 0.2,
        tv_beta: float = 3.0,
        steps: int = 300,
        lr: float = 0.1,
        init: str | float = "random",
        seed: int = 0,
        blur_sigma: float = 10.0,
        value: float = 0.0,
        noise_std: float = 0.2,
        batching=None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(model, batching=batching)
        self.mode = mode
        self.perturbation = perturbation
        self.mask_size = mask_size
        self.upsample = upsample
        self.l1 = l1
        self.tv = tv
        self.tv_beta = tv_beta
        self.steps = steps
        self.lr = lr
        self.init = init
        self.seed = seed
        self.blur_sigma = blur_sigma
        self.value = value
        self.noise_std = noise_std
        self.progress = progress

    def settings(self) -> dict[str, Any]:
        ms = list(self.mask_size) if isinstance(self.mask_size, (tuple, list)) else self.mask_size
        return {
            "mode": self.mode,
            "perturbation": self.perturbation,
            "mask_size": ms,
            "upsample": self.upsample,
            "l1": self.l1,
            "tv": self.tv,
            "tv_beta": self.tv_beta,
            "steps": self.steps,
            "lr": self.lr,
            "init": self.init,
            "seed": self.seed,
            "blur_sigma": self.blur_sigma,
            "value": self.value,
            "noise_std": self.noise_std,
        }

    def _check_settings(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.perturbation not in _PERTURBATIONS:
            raise ConfigError(f"perturbation must be one of {_PERTURBATIONS}, got {self.perturbation!r}")
        if self.upsample not in _UPSAMPLE:
            raise ConfigError(f"upsample must be one of {_UPSAMPLE}, got {self.upsample!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be a positive int (Adam iterations), got {self.steps!r}")
        for name in ("l1", "tv", "blur_sigma", "noise_std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("lr", "tv_beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        if isinstance(self.init, str):
            if self.init not in _INITS:
                raise ConfigError(f"init must be one of {_INITS} or a number in [0, 1], got {self.init!r}")
        elif isinstance(self.init, bool) or not isinstance(self.init, (int, float)) or not 0 <= self.init <= 1:
            raise ConfigError(f"init must be one of {_INITS} or a number in [0, 1], got {self.init!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if self.mask_size is not None:
            sizes = (self.mask_size,) if isinstance(self.mask_size, int) else tuple(self.mask_size)
            if len(sizes) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
                raise ConfigError(f"mask_size must be a positive int, a pair (h, w) or None, got {self.mask_size!r}")

    # -- pieces ------------------------------------------------------------------------
    def low_res_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The low-resolution mask's ``(h, w)`` for inputs of spatial ``shape``."""
        H, W = shape
        if self.mask_size is None:
            return math.ceil(H / 8), math.ceil(W / 8)
        if isinstance(self.mask_size, int):
            h = w = self.mask_size
        else:
            h, w = tuple(self.mask_size) * (2 if len(tuple(self.mask_size)) == 1 else 1)
        if h > H or w > W:
            raise InputError(
                f"mask_size {(h, w)} is larger than the {H}x{W} input; use a low-resolution mask "
                f"no larger than the input (None picks ceil(H/8) x ceil(W/8))"
            )
        return h, w

    def perturbed_reference(self, x: Tensor) -> Tensor:
        """``p(x)`` for the blur and constant perturbations (noise is drawn per step)."""
        if self.perturbation == "blur":
            return gaussian_blur(x, float(self.blur_sigma))
        if self.perturbation == "constant":
            return torch.full_like(x, float(self.value))
        return x

    def _initial(self, B: int, hw: tuple[int, int], x: Tensor) -> Tensor:
        shape = (B, 1) + hw
        if self.init == "random":
            g = torch.Generator().manual_seed(self.seed)
            return torch.rand(shape, generator=g, dtype=x.dtype).to(x.device)
        v = {"ones": 1.0, "half": 0.5}.get(self.init, self.init) if isinstance(self.init, str) else float(self.init)
        return torch.full(shape, float(v), dtype=x.dtype, device=x.device)

    def _upsampled(self, m: Tensor, size: tuple[int, int]) -> Tensor:
        return upsample_map(m, size, self.upsample).clamp(0, 1)

    def _tv(self, m: Tensor) -> Tensor:
        """Per-sample mean of ``|difference| ** beta`` over horizontal and vertical neighbours."""
        parts = []
        if m.shape[-1] > 1:
            parts.append((m[..., :, 1:] - m[..., :, :-1]).abs().pow(self.tv_beta).flatten(1))
        if m.shape[-2] > 1:
            parts.append((m[..., 1:, :] - m[..., :-1, :]).abs().pow(self.tv_beta).flatten(1))
        if not parts:
            return m.new_zeros(m.shape[0])
        return torch.cat(parts, dim=1).mean(dim=1)

    def _score(self, xp: Tensor, target: Target, samples: Tensor, layer_module) -> Tensor:
        store: dict = {}
        with ExitStack() as stack:
            if layer_module is not None:
                stack.enter_context(capture_activation(layer_module, store, stop=True, key="t"))
            try:
                out = call_model(self.model, xp)
            except StopForward:
                out = None
        if layer_module is not None and "t" not in store:
            raise GradientError(f"target layer {target.layer!r} did not run during the forward pass")
        return target.score(out, samples, store.get("t"))

    # -- compute -----------------------------------------------------------------------
    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"MeaningfulPerturbation.attribute() got unexpected arguments {sorted(kwargs)}")
        if x.dim() != 4:
            raise InputError(
                f"MeaningfulPerturbation learns a mask over the two spatial dimensions of images, so "
                f"it needs inputs of shape (B, C, H, W); got {tuple(x.shape)}. For tabular inputs use "
                f"FeatureAblation (a single-channel image needs x.unsqueeze(1))."
            )
        B, _, H, W = x.shape
        hw = self.low_res_shape((H, W))
        layer_module = None if target.layer is None else resolve_layer(self.model, target.layer)[1]
        ref = self.perturbed_reference(x).detach()
        noise_gen = torch.Generator().manual_seed(self.seed + 1) if self.perturbation == "noise" else None
        chunk = batching.batch_size or B
        deletion = self.mode == "deletion"
        n_eval = 0

        with torch.no_grad():
            clean = self._score(x.clone(), target, torch.arange(B, device=x.device), layer_module).detach()
        n_eval += B

        m = self._initial(B, hw, x).requires_grad_(True)
        opt = torch.optim.Adam([m], lr=float(self.lr))
        loss_curve = torch.zeros(self.steps, dtype=x.dtype)
        score_curve = torch.zeros(B, self.steps, dtype=x.dtype)

        show = self.progress if self.progress is not None else (self.steps * B >= 2000 and sys.stderr.isatty())
        for step in tqdm(range(self.steps), disable=not show, desc="mask steps", leave=False):
            if noise_gen is not None:
                noise = torch.randn(x.shape, generator=noise_gen, dtype=x.dtype).to(x.device)
                pert = x + float(self.noise_std) * noise
            else:
                pert = ref
            opt.zero_grad(set_to_none=False)
            step_loss = torch.zeros((), dtype=torch.float64)
            for lo in range(0, B, chunk):
                hi = min(lo + chunk, B)
                samples = torch.arange(lo, hi, device=x.device)
                with torch.enable_grad():
                    mc = m[lo:hi]
                    M = self._upsampled(mc, (H, W))
                    xp = x[lo:hi] * M + pert[lo:hi] * (1 - M)
                    s = self._score(xp, target, samples, layer_module)
                    if not s.requires_grad:
                        raise GradientError(
                            f"the target {target.describe()} does not depend on the inputs through "
                            f"autograd (torch.no_grad(), .detach() or a numpy round trip inside "
                            f"forward?); an optimised mask needs gradients. Use RISE or Occlusion."
                        )
                    area = (1 - mc).flatten(1).mean(1) if deletion else mc.flatten(1).mean(1)
                    loss = (s if deletion else -s) + float(self.l1) * area + float(self.tv) * self._tv(mc)
                    loss.sum().backward()
                n_eval += hi - lo
                score_curve[lo:hi, step] = s.detach().cpu().to(x.dtype)
                step_loss += loss.detach().sum().cpu().to(torch.float64)
            loss_curve[step] = (step_loss / B).to(x.dtype)
            opt.step()
            with torch.no_grad():
                m.clamp_(0, 1)

        mask = m.detach().clone()
        M = self._upsampled(mask, (H, W))
        with torch.no_grad():
            final_pert = pert if noise_gen is not None else ref
            final = self._score(x * M + final_pert * (1 - M), target, torch.arange(B, device=x.device), layer_module)
        n_eval += B
        attributions = (1 - M) if deletion else M
        extras = {
            "mask": mask,
            "loss_curve": loss_curve,
            "score_curve": score_curve,
            "final_score": final.detach().to(x.dtype),
        }
        return Computed(attributions.detach(), n_eval, scores=clean, extras=extras)

    # -- sensitivity ---------------------------------------------------------------------
    def seed_stability(
        self, inputs: Tensor, target: TargetLike = None, seeds: Sequence[int] = (0, 1, 2), *, threshold: float = 0.5
    ) -> dict[str, Any]:
        """Run the optimisation once per seed and compare the low-resolution saliency masks
        (``1 - m`` for deletion, ``m`` for preservation) of every pair of seeds, per sample.

        Returns a dict with ``seeds``, ``pairs`` (the seed pairs compared), per pair and
        sample ``(n_pairs, B)`` tensors ``iou`` (intersection over union of the regions
        above ``threshold``; 1 when both are empty), ``cosine`` (cosine similarity of the
        saliencies; both in ``[0, 1]``) and ``correlation`` (Pearson, in ``[-1, 1]``, NaN when
        a mask is constant), their means ``mean_iou``, ``mean_cosine``, ``mean_correlation``
        (over the finite values), and the ``explanations``. Values well below 1 mean the
        mask depends on the initialisation more than on the model.
        """
        seeds = list(seeds)
        if len(seeds) < 2 or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seed_stability needs at least two distinct seeds, got {seeds!r}")
        if not 0 <= threshold <= 1:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        explanations = []
        for s in seeds:
            m = copy.copy(self)
            m.seed = int(s)
            explanations.append(m.attribute(inputs, target))
        sal = []
        for e in explanations:
            low = e.extras["mask"]
            sal.append((1 - low if self.mode == "deletion" else low).flatten(1).to(torch.float64))
        pairs = list(itertools.combinations(range(len(seeds)), 2))
        iou, cos, corr = [], [], []
        for i, j in pairs:
            a, b = sal[i], sal[j]
            ra, rb = a > threshold, b > threshold
            inter = (ra & rb).sum(1).to(torch.float64)
            union = (ra | rb).sum(1).to(torch.float64)
            iou.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)))
            na, nb = a.norm(dim=1), b.norm(dim=1)
            both_zero = (na == 0) & (nb == 0)
            c = (a * b).sum(1) / (na * nb).clamp(min=1e-12)
            cos.append(torch.where(both_zero, torch.ones_like(c), c).clamp(0, 1))
            ac, bc = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
            den = ac.norm(dim=1) * bc.norm(dim=1)
            r = (ac * bc).sum(1) / den
            corr.append(torch.where(den > 0, r.clamp(-1, 1), torch.full_like(r, float("nan"))))
        iou_t, cos_t, corr_t = torch.stack(iou), torch.stack(cos), torch.stack(corr)
        finite = corr_t[torch.isfinite(corr_t)]
        return {
            "seeds": seeds,
            "pairs": [(seeds[i], seeds[j]) for i, j in pairs],
            "iou": iou_t,
            "cosine": cos_t,
            "correlation": corr_t,
            "mean_iou": float(iou_t.mean()),
            "mean_cosine": float(cos_t.mean()),
            "mean_correlation": float(finite.mean()) if finite.numel() else float("nan"),
            "explanations": explanations,
        }
