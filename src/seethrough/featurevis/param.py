"""Image parameterizations: what the optimiser changes, and how it becomes an image.

An image is produced in three stages, each one a choice:

1. a **spatial** parameterization gives an unbounded tensor ``t`` of shape ``(K, C, H, W)``:
   ``"pixel"`` (the tensor is the parameter) or ``"fft"`` (the parameter is a Fourier
   spectrum whose coefficients are scaled by ``1 / max(f, 1/max(H, W)) ** decay_power``,
   ``f`` the frequency in cycles per pixel, so that equal steps in parameter space are
   equal steps in a 1/f natural-image spectrum; Olah et al., Distill 2017, Lucid);
2. for 3-channel images, a **colour decorrelation**: ``t`` is read in a decorrelated
   colour basis and mapped to RGB by a 3x3 matrix, the square root of the colour
   covariance (:class:`ColorDecorrelation`, estimated from data or a documented default);
3. a **squash** to the displayable range ``[0, 1]``: ``"sigmoid"``, or ``"clip"`` (a
   clamp whose gradient also passes outside the range where it points back inside).

The ``[0, 1]`` image is then mapped to the model's input space by :class:`InputSpace`
(``input_range=(lo, hi)`` or per-channel ``mean``/``std`` normalisation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.estimator import Estimator
from .._core.seeds import generator

__all__ = ["ColorDecorrelation", "ImageParam", "InputSpace", "as_param", "DEFAULT_COLOR_SQRT"]

#: Square root of the colour covariance of ImageNet pixels (RGB in [0, 1]), as the
#: columns ``U sqrt(S)`` of its SVD; published with Lucid (Olah et al., 2017) and used
#: as the default colour decorrelation when no data are given.
DEFAULT_COLOR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))

_SPACES = ("fft", "pixel")
_SQUASH = ("sigmoid", "clip")


class ColorDecorrelation(Estimator):
    """A 3x3 colour matrix ``M`` with ``M M^T`` proportional to the colour covariance
    (an :class:`~seethrough._core.estimator.Estimator`: ``fit`` returns it, fitted
    attributes end in ``_``, ``check_fitted`` raises ``NotFittedError`` before).

    ``fit(images)`` estimates it from images ``(N, 3, H, W)`` in ``[0, 1]`` (before any
    mean/std normalisation): the eigendecomposition ``Cov = U S U^T`` of the pixel colours
    gives ``M = U sqrt(S / max(S))``, so the strongest colour direction has unit gain.
    :meth:`default` gives Lucid's ImageNet matrix (:data:`DEFAULT_COLOR_SQRT`) scaled the
    same way (largest column norm 1).

    Attributes (after ``fit``): ``matrix_`` (3, 3) float32, ``covariance_`` (3, 3)
    float64 (None for the default), ``mean_`` (3,) colour mean, ``n_pixels_``.
    """

    matrix_: Tensor
    covariance_: Tensor | None
    mean_: Tensor | None
    n_pixels_: int

    def fit(self, images: Tensor) -> ColorDecorrelation:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise InputError(
                f"ColorDecorrelation.fit needs RGB images of shape (N, 3, H, W) in [0, 1], got {got}; "
                f"for grayscale models colour decorrelation does not apply (use decorrelate=False)"
            )
        pix = images.detach().to(torch.float64).permute(1, 0, 2, 3).reshape(3, -1)
        if pix.shape[1] < 2 or not bool(torch.isfinite(pix).all()):
            raise InputError("ColorDecorrelation.fit needs at least 2 finite pixels")
        cov = torch.cov(pix)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp(min=0.0)
        if float(evals.max()) <= 0.0:
            raise InputError(
                "the images have no colour variation (constant pixels); colour decorrelation cannot "
                "be estimated from them. Give varied images or use the default (color=None)."
            )
        # a deterministic sign per column: its largest-magnitude entry positive
        idx = evecs.abs().argmax(dim=0)
        signs = torch.sign(evecs[idx, torch.arange(3)])
        evecs = evecs * torch.where(signs == 0, torch.ones_like(signs), signs)
        m = evecs * (evals / evals.max()).sqrt()
        self.matrix_ = m.to(torch.float32)
        self.covariance_ = cov
        self.mean_ = pix.mean(dim=1).to(torch.float32)
        self.n_pixels_ = int(pix.shape[1])
        return self

    @classmethod
    def default(cls) -> ColorDecorrelation:
        m = torch.tensor(DEFAULT_COLOR_SQRT, dtype=torch.float64)
        m = m / m.norm(dim=0).max()
        obj = cls()
        obj.matrix_ = m.to(torch.float32)
        obj.covariance_ = None
        obj.mean_ = None
        obj.n_pixels_ = 0
        return obj

    def __repr__(self) -> str:
        if not self.is_fitted():
            return "ColorDecorrelation() (not fitted)"
        src = "default (ImageNet)" if self.covariance_ is None else f"fitted on {self.n_pixels_} pixels"
        return f"ColorDecorrelation({src})"


class _InwardClamp(torch.autograd.Function):
    """Clamp to [0, 1]; the gradient passes inside the range, and outside it only where a
    descent step would move the value back towards the range."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        # a descent step moves x by -grad: below the range it must rise (grad < 0),
        # above it must fall (grad > 0)
        keep = ((x >= 0) & (x <= 1)) | ((x < 0) & (grad < 0)) | ((x > 1) & (grad > 0))
        return grad * keep.to(grad.dtype)


def _fft_scale(h: int, w: int, decay_power: float) -> Tensor:
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = (fx**2 + fy**2).sqrt()
    return (1.0 / f.clamp(min=1.0 / max(h, w)) ** decay_power).to(torch.float32)


@dataclass
class BuiltImage:
    """The optimisable parameters of one batch and the function making its images."""

    params: list[Tensor]
    image: Callable[[], Tensor]  # -> (K, C, H, W) in [0, 1]


@dataclass(eq=False)
class ImageParam:
    """How images are parameterized (see the module docstring).

    Parameters
    ----------
    space:
        ``"fft"`` (default) or ``"pixel"``.
    decorrelate:
        Colour decorrelation: ``"auto"`` (on for 3-channel images, off otherwise),
        ``True`` (3 channels required) or ``False``.
    color:
        The colour matrix when decorrelating: None (:meth:`ColorDecorrelation.default`),
        a fitted :class:`ColorDecorrelation`, or RGB images ``(N, 3, H, W)`` in [0, 1] to
        estimate it from.
    squash:
        ``"sigmoid"`` (default) or ``"clip"``.
    sd:
        Standard deviation of the random initial parameters (0.01, as in Lucid).
    decay_power:
        Exponent of the 1/f spectrum scaling (``"fft"`` only; 1.0).
    """

    space: str = "fft"
    _: KW_ONLY
    decorrelate: bool | str = "auto"
    color: ColorDecorrelation | Tensor | None = None
    squash: str = "sigmoid"
    sd: float = 0.01
    decay_power: float = 1.0

    # -- validation ---------------------------------------------------------------------
    def _check(self, channels: int) -> Tensor | None:
        """Validate the settings for ``channels``-channel images; the colour matrix or None."""
        if self.space not in _SPACES:
            raise ConfigError(f"unknown image parameterization {self.space!r}; use one of {_SPACES}")
        if self.squash not in _SQUASH:
            raise ConfigError(f"unknown squash {self.squash!r}; use 'sigmoid' or 'clip'")
        if not (isinstance(self.sd, (int, float)) and self.sd >= 0 and math.isfinite(self.sd)):
            raise ConfigError(f"sd must be a non-negative number, got {self.sd!r}")
        if not (isinstance(self.decay_power, (int, float)) and math.isfinite(self.decay_power)):
            raise ConfigError(f"decay_power must be a finite number, got {self.decay_power!r}")
        if self.decorrelate not in ("auto", True, False):
            raise ConfigError(f"decorrelate must be 'auto', True or False, got {self.decorrelate!r}")
        use = channels == 3 if self.decorrelate == "auto" else bool(self.decorrelate)
        if not use:
            return None
        if channels != 3:
            raise ConfigError(
                f"colour decorrelation needs 3-channel (RGB) images, but the model takes {channels} "
                f"channel(s); use ImageParam(decorrelate=False) or 'auto'"
            )
        color = self.color
        if color is None:
            color = ColorDecorrelation.default()
        elif isinstance(color, Tensor):
            color = ColorDecorrelation().fit(color)
        elif not isinstance(color, ColorDecorrelation):
            raise ConfigError(
                f"color must be None, a fitted ColorDecorrelation or RGB images (N, 3, H, W), "
                f"got {type(color).__name__}"
            )
        color.check_fitted("call .fit(images) or use ColorDecorrelation.default()")
        return color.matrix_

    def settings(self) -> dict:
        color = self.color
        if isinstance(color, Tensor):
            color_s = f"fitted on {tuple(color.shape)} images"
        elif isinstance(color, ColorDecorrelation):
            color_s = repr(color)
        else:
            color_s = "default"
        return {
            "space": self.space,
            "decorrelate": self.decorrelate,
            "color": color_s,
            "squash": self.squash,
            "sd": self.sd,
            "decay_power": self.decay_power,
        }

    # -- building -------------------------------------------------------------------------
    def build(
        self,
        shape: tuple[int, int, int],
        rows: Sequence[int],
        *,
        seed: int,
        device: torch.device | None = None,
    ) -> BuiltImage:
        """Parameters for ``len(rows)`` images of per-image ``shape`` ``(C, H, W)``.

        Image ``k`` is initialised from its own random stream, seeded by ``(seed,
        rows[k])``, so an image does not depend on which other images share its batch.
        """
        c, h, w = (int(v) for v in shape)
        matrix = self._check(c)
        device = device or torch.device("cpu")
        pshape: tuple[int, ...]
        if self.space == "fft":
            pshape = (c, h, w // 2 + 1, 2)
        else:
            pshape = (c, h, w)
        init = []
        for r in rows:
            g = generator(seed, 0x1A6E, int(r))
            init.append(torch.randn(pshape, generator=g) * float(self.sd))
        p = torch.stack(init).to(device).requires_grad_(True)

        if self.space == "fft":
            # orthonormal inverse transform; the 1/4 keeps the initial image small before
            # the squash (the same overall scale as Lucid's)
            scale = (_fft_scale(h, w, float(self.decay_power)) / 4.0).to(device)

            def spatial() -> Tensor:
                return torch.fft.irfft2(torch.view_as_complex(p) * scale, s=(h, w), norm="ortho")
        else:

            def spatial() -> Tensor:
                return p

        m = None if matrix is None else matrix.to(device)
        squash = self.squash

        def image() -> Tensor:
            t = spatial()
            if m is not None:
                t = torch.einsum("ij,kjhw->kihw", m, t)
            if squash == "sigmoid":
                return torch.sigmoid(t)
            return _InwardClamp.apply(t + 0.5)

        return BuiltImage(params=[p], image=image)


def as_param(param: ImageParam | str) -> ImageParam:
    if isinstance(param, ImageParam):
        return param
    if isinstance(param, str) and param in _SPACES:
        return ImageParam(param)
    raise ConfigError(f"param must be 'fft', 'pixel' or an ImageParam(...), got {param!r}")


@dataclass(frozen=True)
class InputSpace:
    """The affine map from displayable images ``u`` in [0, 1] to model inputs:
    ``x = u * scale + shift`` per channel (``input_range=(lo, hi)``: ``scale = hi - lo``,
    ``shift = lo``; ``mean``/``std``: ``x = (u - mean) / std``)."""

    scale: tuple[float, ...]
    shift: tuple[float, ...]
    description: str

    @classmethod
    def build(cls, channels: int, input_range=None, mean=None, std=None) -> InputSpace:
        if input_range is not None and (mean is not None or std is not None):
            raise ConfigError("give either input_range=(lo, hi) or mean/std normalisation, not both")
        if mean is not None or std is not None:
            if mean is None or std is None:
                raise ConfigError("mean and std normalisation need both mean= and std=")
            mean_t = _per_channel(mean, channels, "mean")
            std_t = _per_channel(std, channels, "std")
            if any(s <= 0 for s in std_t):
                raise ConfigError(f"std must be positive per channel, got {list(std_t)}")
            return cls(
                tuple(1.0 / s for s in std_t),
                tuple(-m / s for m, s in zip(mean_t, std_t)),
                f"(u - mean) / std with mean={list(mean_t)}, std={list(std_t)}",
            )
        lo, hi = (0.0, 1.0) if input_range is None else _range(input_range)
        return cls((hi - lo,) * channels, (lo,) * channels, f"input range [{lo:g}, {hi:g}]")

    def tensors(self, device=None) -> tuple[Tensor, Tensor]:
        s = torch.tensor(self.scale, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        b = torch.tensor(self.shift, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return s, b


def _per_channel(values, channels: int, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = [values]
    try:
        vals = [float(v) for v in (values.tolist() if isinstance(values, (Tensor, np.ndarray)) else values)]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or one number per channel, got {values!r}") from None
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels or not all(math.isfinite(v) for v in vals):
        raise ConfigError(
            f"{name} has {len(vals)} values but the model takes {channels}-channel images; give one value or {channels}"
        )
    return tuple(vals)


def _range(input_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ConfigError(f"input_range must be a pair (lo, hi), got {input_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"input_range must satisfy lo < hi (finite), got {input_range!r}")
    return lo, hi
