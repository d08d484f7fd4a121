"""Latent recovery: find the code a generator would need to produce a given image, and test
whether it reproduces its training images better than unseen ones (memorisation).

* :class:`LatentRecovery`: for each image, optimise codes ``z`` (Adam, a fixed budget of
  steps, several random restarts) to minimise the reconstruction error ``loss(G(z), image)``.
  Only the codes get gradients: the generator runs inside
  :func:`~seethrough._core.state.model_guard` (eval mode, frozen parameters). The loss is
  summed over rows, so each (image, restart) row is optimised independently of the others and
  of how rows are chunked.
* :func:`memorization_test`: recover a set of training images and a held-out set from the same
  distribution and compare the two error distributions (as Webster et al. 2019, "Detecting
  overfitting of deep generative networks via latent recovery"): a one-sided Mann-Whitney U
  test (training errors smaller), the rank-biserial effect size (Cliff's delta) and the ratio
  of medians; flagged when the test is significant and the effect is large.

Results: :class:`Recovery` and :class:`RecoveryTest` (frozen, with ``plot(ax=...)`` histograms
and ``to_html``, registered here).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching, as_batching, saved_bytes
from .._core.call import call_model
from .._core.capture import forward_chunk_rows
from .._core.errors import ConfigError, InputError
from .._core.result import Result, register_view
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.validation import model_device
from ..report.html import HtmlReport, _esc, _img_tag, _input_png
from ..report.plot import _new_axes
from .gan import _as_generator

__all__ = ["LatentRecovery", "Recovery", "RecoveryTest", "memorization_test", "LOSSES"]

#: ``loss(outputs, targets) -> (N,)``: one reconstruction error per row, differentiable in outputs.
Loss = Callable[[Tensor, Tensor], Tensor]


def _mse(out: Tensor, target: Tensor) -> Tensor:
    return (out - target).pow(2).reshape(out.shape[0], -1).mean(dim=1)


def _l1(out: Tensor, target: Tensor) -> Tensor:
    return (out - target).abs().reshape(out.shape[0], -1).mean(dim=1)


#: The named reconstruction losses: mean squared and mean absolute error per image.
LOSSES: Mapping[str, Loss] = {"mse": _mse, "l1": _l1}


def _loss_fn(loss: str | Loss) -> tuple[Loss, str]:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ConfigError(
                f"loss must be one of {sorted(LOSSES)} or a callable (outputs, targets) -> (N,), got {loss!r}"
            )
        return LOSSES[loss], loss
    if not callable(loss):
        raise ConfigError(f"loss must be one of {sorted(LOSSES)} or a callable (outputs, targets) -> (N,)")
    return loss, getattr(loss, "__name__", type(loss).__name__)


def _check_errors(err: Any, rows: int) -> Tensor:
    if not isinstance(err, Tensor) or err.shape != (rows,):
        shape = tuple(err.shape) if isinstance(err, Tensor) else type(err).__name__
        raise InputError(f"the loss returned {shape} for {rows} rows; it must return one error per row, a tensor (N,)")
    return err


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Recovery(Result):
    """Codes recovered for a set of images.

    Attributes
    ----------
    z:
        ``(N, Z)`` the best code found for each image (over restarts and steps).
    errors:
        ``(N,)`` the reconstruction error of that code (recomputed on ``reconstructions``).
    restart_errors:
        ``(N, R)`` the best error of each restart.
    best_restart:
        ``(N,)`` which restart gave ``z``.
    reconstructions:
        ``G(z)``, the generated outputs of the best codes.
    loss, steps, restarts, lr, seed:
        The settings; ``seconds`` the wall-clock time.
    """

    z: Tensor
    errors: Tensor
    restart_errors: Tensor
    best_restart: Tensor
    reconstructions: Tensor
    loss: str
    steps: int
    restarts: int
    lr: float
    seed: int
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def rows(self) -> list[dict[str, Any]]:
        """One row per image: its error, best restart and the spread over restarts."""
        out = []
        for i in range(len(self)):
            r = self.restart_errors[i]
            out.append(
                {
                    "image": i,
                    "error": float(self.errors[i]),
                    "best restart": int(self.best_restart[i]),
                    "worst restart error": float(r.max()),
                }
            )
        return out

    def __repr__(self) -> str:
        med = float(self.errors.median()) if len(self) else float("nan")
        return (
            f"Recovery({len(self)} images, {self.restarts} restarts x {self.steps} steps, median {self.loss} {med:.4g})"
        )


@dataclass(frozen=True, eq=False)
class RecoveryTest(Result):
    """A memorisation test: latent-recovery errors of training vs held-out images.

    Attributes
    ----------
    train_errors, heldout_errors:
        ``(N_train,)`` and ``(N_heldout,)`` reconstruction errors.
    statistic:
        Mann-Whitney U of the training errors (pairs with a training error above a held-out one,
        ties counted half).
    p_value:
        One-sided: the alternative is that training errors are smaller.
    effect:
        Rank-biserial correlation ``P(train < heldout) - P(train > heldout)`` (Cliff's delta),
        ``1 - 2 U / (N_train N_heldout)``: 1 when every training image is recovered better than
        every held-out one, 0 when the two sets are recovered alike.
    median_ratio:
        ``median(train) / median(heldout)`` (below 1: training images recovered better).
    flagged:
        ``p_value < alpha and effect >= min_effect``.
    train, heldout:
        The two :class:`Recovery` results.
    """

    train_errors: Tensor
    heldout_errors: Tensor
    statistic: float
    p_value: float
    effect: float
    median_ratio: float
    flagged: bool
    alpha: float
    min_effect: float
    train: Recovery | None = None
    heldout: Recovery | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The test in one row."""
        return {
            "n train": int(self.train_errors.numel()),
            "n held-out": int(self.heldout_errors.numel()),
            "median train": float(self.train_errors.median()),
            "median held-out": float(self.heldout_errors.median()),
            "median ratio": self.median_ratio,
            "U": self.statistic,
            "p-value": self.p_value,
            "effect (rank-biserial)": self.effect,
            "flagged": self.flagged,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per set: size and error quantiles."""
        out = []
        for name, e in (("train", self.train_errors), ("held-out", self.heldout_errors)):
            v = e.double().numpy()
            out.append(
                {
                    "set": name,
                    "n": int(v.size),
                    "mean": float(v.mean()),
                    "median": float(np.median(v)),
                    "q10": float(np.quantile(v, 0.1)),
                    "q90": float(np.quantile(v, 0.9)),
                }
            )
        return out

    def __repr__(self) -> str:
        verdict = "FLAGGED" if self.flagged else "not flagged"
        return (
            f"RecoveryTest({verdict}: p={self.p_value:.3g}, effect={self.effect:.3f}, "
            f"median ratio {self.median_ratio:.3g}; {self.train_errors.numel()} train vs "
            f"{self.heldout_errors.numel()} held-out)"
        )


# ---------------------------------------------------------------------------- the method
class LatentRecovery:
    """Recover latent codes for images by optimisation.

    Parameters
    ----------
    generator:
        A generator ``z (N, Z) -> outputs`` (``latent_dim`` attribute or ``latent_dim=``), a
        :class:`~seethrough.generative.protocol.Generator`, or an autoencoder (its decoder).
    steps:
        Adam steps per restart (a fixed budget; the best code seen is kept).
    restarts:
        Random starting codes ``z ~ N(0, I)`` per image (seeded).
    lr:
        Adam's learning rate.
    loss:
        ``"mse"`` or ``"l1"`` (mean per image), or ``loss(outputs, targets) -> (N,)``.
    seed:
        Seed of the starting codes.
    batching:
        Rows (image x restart) optimised at once: a
        :class:`~seethrough._core.batching.Batching`, an int, or None (from the bytes one row
        keeps for its backward pass, within the memory budget).
    latent_dim:
        The latent size when the generator has no ``latent_dim`` attribute.
    """

    def __init__(
        self,
        generator: nn.Module,
        *,
        steps: int = 200,
        restarts: int = 4,
        lr: float = 0.05,
        loss: str | Loss = "mse",
        seed: int = 0,
        batching: Batching | int | None = None,
        latent_dim: int | None = None,
    ) -> None:
        self.generator, self.steps, self.restarts, self.lr, self.loss = generator, steps, restarts, lr, loss
        self.seed, self.batching, self.latent_dim = seed, batching, latent_dim

    def _settings(self) -> tuple[int, int, float, int]:
        for what, v, low in (("steps", self.steps, 0), ("restarts", self.restarts, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < low:
                raise ConfigError(f"{what} must be an int >= {low}, got {v!r}")
        lr = float(self.lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        return int(self.steps), int(self.restarts), lr, check_seed(self.seed)

    def recover(self, images: Any, *, progress: bool = False) -> Recovery:
        """Best codes for ``images`` ``(N, ...)`` (the generator's output shape)."""
        steps, restarts, lr, seed = self._settings()
        loss_fn, loss_name = _loss_fn(self.loss)
        gen, root = _as_generator(self.generator, self.latent_dim)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, Tensor) or images.dim() < 1 or images.shape[0] == 0:
            raise InputError(
                "images must be a tensor (N, ...) with at least one image, in the generator's output shape"
            )
        if not images.dtype.is_floating_point:
            raise InputError(f"images must be floating point (the generator's output range), got {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise InputError("images contain NaN or infinite values")
        dev = model_device(gen) or torch.device("cpu")
        dim = gen.latent_dim
        n = int(images.shape[0])
        b = as_batching(self.batching)
        start = time.perf_counter()
        # every starting code drawn at once, so the result does not depend on the chunking
        z0 = torch.randn(n, restarts, dim, generator=generator(seed)).reshape(n * restarts, dim)
        targets = images.detach()
        best_err = torch.full((n * restarts,), float("inf"), dtype=torch.float64)
        best_z = z0.clone()
        with model_guard(root, method="latent recovery"):
            probe = self._probe(gen, z0[:1].to(dev), targets[:1].to(dev), loss_fn)
            size = b.rows_per_chunk(probe, dev)
            chunks = list(Batching.chunks(n * restarts, size))
            bar = tqdm(total=len(chunks) * (steps + 1), desc="latent recovery", disable=not progress, file=sys.stderr)
            try:
                for sl in chunks:
                    rows = torch.arange(sl.start, sl.stop)
                    target = targets[rows // restarts].to(dev)
                    e, zb = self._optimise(gen, z0[sl].to(dev), target, loss_fn, steps, lr, bar)
                    best_err[sl], best_z[sl] = e, zb
            finally:
                bar.close()
            restart_errors = best_err.reshape(n, restarts)
            pick = restart_errors.argmin(dim=1)
            z = best_z.reshape(n, restarts, dim)[torch.arange(n), pick]
            recon, errors = self._reconstruct(gen, z, targets, loss_fn, b, dev)
        return Recovery(
            z=z,
            errors=errors,
            restart_errors=restart_errors,
            best_restart=pick,
            reconstructions=recon,
            loss=loss_name,
            steps=steps,
            restarts=restarts,
            lr=lr,
            seed=seed,
            seconds=time.perf_counter() - start,
            settings={"batch_rows": int(size), "optimizer": "Adam"},
        )

    @staticmethod
    def _probe(gen: nn.Module, z: Tensor, target: Tensor, loss_fn: Loss) -> int:
        """Bytes one row keeps for its backward pass; checks the output shape and the loss."""
        skip = {p.untyped_storage().data_ptr() for p in gen.parameters()}
        skip |= {t.untyped_storage().data_ptr() for t in gen.buffers()}
        zr = z.clone().requires_grad_(True)
        with saved_bytes(skip) as counter, torch.enable_grad():
            out = call_model(gen, zr)
            if out.shape[1:] != target.shape[1:]:
                raise InputError(
                    f"the generator makes outputs of shape {tuple(out.shape[1:])} but the images have shape "
                    f"{tuple(target.shape[1:])}; give images in the generator's output shape (and range)"
                )
            err = _check_errors(loss_fn(out, target), 1)
        if not err.requires_grad:
            raise InputError(
                "the reconstruction error does not depend on z through torch operations; the loss must be a torch "
                "function of the outputs"
            )
        row = counter.total + 4 * (out.numel() * out.element_size() + zr.numel() * zr.element_size())
        return max(int(row), 1)

    @staticmethod
    def _optimise(
        gen: nn.Module, z0: Tensor, target: Tensor, loss_fn: Loss, steps: int, lr: float, bar: Any
    ) -> tuple[Tensor, Tensor]:
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        best = torch.full((z.shape[0],), float("inf"), dtype=torch.float64, device=z.device)
        best_z = z.detach().clone()
        with torch.enable_grad():
            for t in range(steps + 1):
                err = _check_errors(loss_fn(call_model(gen, z), target), z.shape[0])
                e = err.detach().double()
                if not bool(torch.isfinite(e).all()):
                    raise InputError(
                        f"the reconstruction error became NaN or infinite at step {t}; lower lr (now {lr}) or check "
                        f"the generator's outputs"
                    )
                better = e < best
                best = torch.where(better, e, best)
                best_z[better] = z.detach()[better]
                bar.update(1)
                if t == steps:
                    break
                opt.zero_grad(set_to_none=True)
                err.sum().backward()
                opt.step()
        return best.cpu(), best_z.cpu()

    @staticmethod
    def _reconstruct(
        gen: nn.Module, z: Tensor, targets: Tensor, loss_fn: Loss, b: Batching, dev: torch.device
    ) -> tuple[Tensor, Tensor]:
        outs, errs = [], []
        with torch.no_grad():
            size = forward_chunk_rows(gen, z[:1].to(dev), b)
            for sl in Batching.chunks(z.shape[0], size):
                out = call_model(gen, z[sl].to(dev))
                errs.append(_check_errors(loss_fn(out, targets[sl].to(dev)), out.shape[0]).double().cpu())
                outs.append(out.detach().cpu())
        return torch.cat(outs), torch.cat(errs)

    def __repr__(self) -> str:
        return (
            f"LatentRecovery({type(self.generator).__name__}, steps={self.steps}, restarts={self.restarts}, "
            f"lr={self.lr}, loss={self.loss!r})"
        )


# ------------------------------------------------------------------------ the memorisation test
def memorization_test(
    generator: nn.Module,
    train_images: Any,
    heldout_images: Any,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.3,
    steps: int = 200,
    restarts: int = 4,
    lr: float = 0.05,
    loss: str | Loss = "mse",
    seed: int = 0,
    batching: Batching | int | None = None,
    latent_dim: int | None = None,
    progress: bool = False,
) -> RecoveryTest:
    """Does the generator reproduce its training images better than unseen ones?

    Both sets (from the same distribution; at least 2 images each, a few dozen for power) are
    recovered with one :class:`LatentRecovery` (the same settings and seed), and the two error
    distributions are compared with a one-sided Mann-Whitney U test
    (``scipy.stats.mannwhitneyu``, alternative: training errors smaller). ``flagged`` when
    ``p < alpha`` and the rank-biserial effect is at least ``min_effect``: a significant but tiny
    difference (large sets) is not flagged."""
    from scipy.stats import mannwhitneyu

    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    m = float(min_effect)
    if not -1.0 <= m <= 1.0:
        raise ConfigError(f"min_effect is a rank-biserial correlation, in [-1, 1]; got {min_effect!r}")
    for what, x in (("train_images", train_images), ("heldout_images", heldout_images)):
        if not isinstance(x, (Tensor, np.ndarray)) or x.ndim < 1 or x.shape[0] < 2:
            shape = tuple(x.shape) if isinstance(x, (Tensor, np.ndarray)) else type(x).__name__
            raise InputError(f"{what} must be a tensor of at least 2 images (N, ...), got {shape}")
    rec = LatentRecovery(
        generator,
        steps=steps,
        restarts=restarts,
        lr=lr,
        loss=loss,
        seed=seed,
        batching=batching,
        latent_dim=latent_dim,
    )
    train = rec.recover(train_images, progress=progress)
    heldout = rec.recover(heldout_images, progress=progress)
    tr, ho = train.errors.double().numpy(), heldout.errors.double().numpy()
    test = mannwhitneyu(tr, ho, alternative="less")
    u, p = float(test.statistic), float(test.pvalue)
    effect = 1.0 - 2.0 * u / (tr.size * ho.size)
    med_h = float(np.median(ho))
    ratio = float(np.median(tr)) / med_h if med_h > 0 else (float("nan") if np.median(tr) == 0 else float("inf"))
    flagged = bool(math.isfinite(p) and p < a and effect >= m)
    return RecoveryTest(
        train_errors=train.errors,
        heldout_errors=heldout.errors,
        statistic=u,
        p_value=p,
        effect=float(effect),
        median_ratio=ratio,
        flagged=flagged,
        alpha=a,
        min_effect=m,
        train=train,
        heldout=heldout,
        settings={
            "test": "Mann-Whitney U, one-sided (train < held-out)",
            "effect": "rank-biserial (Cliff's delta)",
            "steps": train.steps,
            "restarts": train.restarts,
            "lr": train.lr,
            "loss": train.loss,
            "seed": train.seed,
        },
    )


# ---------------------------------------------------------------------------------- views
def _bins(values: list[np.ndarray], bins: int) -> tuple[np.ndarray, bool]:
    v = np.concatenate([x for x in values if x.size])
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    if lo > 0 and hi / lo > 20:  # errors spanning decades: log-spaced bins
        return np.geomspace(lo, hi, bins + 1), True
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1), False


def plot_recovery_test(result: RecoveryTest, *, ax: Any = None, bins: int = 30) -> Any:
    """Histograms of the training and held-out errors on shared bins (log-spaced when they
    span decades), with their medians. Returns the figure."""
    fig, ax = _new_axes(ax, (5.0, 3.2))
    tr, ho = result.train_errors.double().numpy(), result.heldout_errors.double().numpy()
    edges, log = _bins([tr, ho], bins)
    for v, name, color in ((tr, "train", "C3"), (ho, "held-out", "C0")):
        ax.hist(v, bins=edges, alpha=0.55, color=color, label=f"{name} (n={v.size})")
        if v.size:
            ax.axvline(float(np.median(v)), color=color, linestyle="--", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"reconstruction error ({result.settings.get('loss', 'loss')})")
    ax.set_ylabel("images")
    verdict = "flagged" if result.flagged else "not flagged"
    ax.set_title(f"memorisation: p={result.p_value:.2g}, effect {result.effect:.2f} ({verdict})", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def recovery_test_html(result: RecoveryTest) -> str:
    report = HtmlReport("memorisation test")
    report.add_heading("memorisation test (latent recovery)", 3)
    verdict = "FLAGGED as memorising" if result.flagged else "not flagged"
    report.add_paragraph(
        f"{verdict}: one-sided Mann-Whitney U test of the latent-recovery errors (training images recovered "
        f"better than held-out ones), p = {result.p_value:.3g} (alpha {result.alpha:g}); rank-biserial effect "
        f"{result.effect:.3f} (at least {result.min_effect:g} to flag); median ratio train / held-out "
        f"{result.median_ratio:.3g}."
    )
    report.add_figure(plot_recovery_test(result), caption="Reconstruction errors; dashed lines: medians.")
    report.add_table(result.rows())
    report.add_table([result.summary()])
    for name, rec in (("train", result.train), ("held-out", result.heldout)):
        if rec is not None and _is_image(rec.reconstructions) and len(rec):
            report.add_paragraph(f"best reconstructions ({name}), first {min(8, len(rec))}, with their errors:")
            report.add_html(_images(rec.reconstructions[:8], [f"{float(e):.3g}" for e in rec.errors[:8]]))
    return report._repr_html_()


def _is_image(x: Tensor) -> bool:
    return x.dim() == 4 and x.shape[1] in (1, 3, 4)


def _images(images: Tensor, labels: list[str]) -> str:
    cells = []
    for i in range(images.shape[0]):
        png, _ = _input_png(images[i])
        cells.append(f"<td>{_img_tag(png, alt=labels[i])}<span class='st-sub'>{_esc(labels[i])}</span></td>")
    return f'<div class="st-gridwrap"><table class="st-grid"><tbody><tr>{"".join(cells)}</tr></tbody></table></div>'


def plot_recovery(result: Recovery, *, ax: Any = None, bins: int = 30) -> Any:
    """Histogram of the per-image errors (best restart) and of every restart's error."""
    fig, ax = _new_axes(ax, (5.0, 3.2))
    best, every = result.errors.double().numpy(), result.restart_errors.double().numpy().reshape(-1)
    edges, log = _bins([best, every], bins)
    ax.hist(every, bins=edges, alpha=0.4, color="C7", label=f"every restart ({every.size})")
    ax.hist(best, bins=edges, alpha=0.7, color="C0", label=f"best per image ({best.size})")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"reconstruction error ({result.loss})")
    ax.set_ylabel("count")
    ax.set_title(f"latent recovery: {result.restarts} restarts x {result.steps} steps", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def recovery_html(result: Recovery) -> str:
    report = HtmlReport("latent recovery")
    report.add_heading("latent recovery", 3)
    report.add_paragraph(
        f"{len(result)} images, {result.restarts} restarts x {result.steps} Adam steps (lr {result.lr:g}), loss "
        f"{result.loss}; median error {float(result.errors.median()):.4g}; {result.seconds:.2f} s."
    )
    report.add_figure(plot_recovery(result))
    if _is_image(result.reconstructions) and len(result):
        k = min(16, len(result))
        report.add_html(_images(result.reconstructions[:k], [f"{float(e):.3g}" for e in result.errors[:k]]))
    report.add_table(result.rows()[:200])
    return report._repr_html_()


register_view(Recovery, plot=plot_recovery, html=recovery_html)
register_view(RecoveryTest, plot=plot_recovery_test, html=recovery_test_html)
