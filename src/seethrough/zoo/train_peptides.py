"""Training of the peptide autoencoders ``peptide-wae`` and ``peptide-vae``.

Data: :func:`seethrough.data.peptides.load_peptides` (modlamp's peptides of at most 40 residues),
its fixed split (the test part is never trained on). The decoder is trained with teacher forcing
and *word dropout*: a fraction of its input tokens is replaced by ``PAD``, so that it has to read
the code ``z`` instead of the previous residues. The loss per sequence is the summed cross-entropy
of the residues and the ``EOS`` plus

* WAE: ``lambda * MMD(q(z), N(0, I))`` with the inverse multiquadratic kernel summed over scales
  (Tolstikhin et al. 2018, "Wasserstein Auto-Encoders"; as in Das et al. 2021, CLaSS);
* VAE: ``beta * KL(q(z|x) || N(0, I))`` with beta annealed linearly from 0 to 1 and free bits
  per dimension (Kingma et al. 2016), so that the code is used.

Deterministic for a seed on CPU: weights from ``torch.manual_seed``, batches, word dropout,
reparameterisation noise and prior samples from seeded generators
(:func:`seethrough._core.seeds.generator`), deterministic algorithms on while training.

Measured (on the held-out split, with greedy decoding from the code): per-token reconstruction
accuracy (residues and the ``EOS``), exact-match fraction, and for 1,000 codes drawn from
``N(0, I)`` the validity (non-empty, only amino acids, ended by ``EOS`` within ``max_len``) and
uniqueness of the decoded sequences; VAE also the KL per sequence and the active units
(``Var_x E[z_d | x] > 0.01``, Burda et al. 2016); WAE the MMD to the prior.

The shipped weights (40 epochs, seed 0, one thread, about 21 minutes each on a shared CPU) reach a
held-out per-token accuracy of 0.461 (WAE) and 0.398 (VAE), exact match 0.065 / 0.010, prior
validity 0.872 / 0.989, VAE KL 16.5 nats with 32 active units: both still improve with more epochs
(the training loss had not levelled off), so the codes are informative but far from lossless.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .._core.errors import ConfigError
from .._core.seeds import generator
from ..data.peptides import load_peptides
from .peptides import BOS, BUNDLED, EOS, PAD, PeptideAutoencoder, bundled
from .train import Recipe, _deterministic, run_recipes

__all__ = [
    "train_peptide_autoencoder",
    "evaluate_peptide_autoencoder",
    "imq_mmd",
    "DEFAULTS",
    "QUICK",
    "PEPTIDE_RECIPES",
    "train_peptide_zoo",
]

#: Training settings of the shipped models, per kind.
DEFAULTS: dict[str, dict[str, Any]] = {
    "wae": {"epochs": 40, "batch_size": 32, "lr": 3e-3, "word_dropout": 0.3, "mmd_weight": 10.0},
    "vae": {"epochs": 40, "batch_size": 32, "lr": 3e-3, "word_dropout": 0.3, "free_bits": 0.5, "anneal": 0.4},
}
#: Tiny settings for tests (seconds).
QUICK: dict[str, Any] = {"epochs": 1, "n_train": 64, "n_test": 16, "n_prior": 16, "hidden_dim": 32, "embed_dim": 16}

_MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_mmd(z: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between samples ``z`` and ``prior`` (same shape ``(n, d)``) with the inverse
    multiquadratic kernel ``C / (C + |x - y|^2)``, ``C = 2 d s`` summed over the scales ``s`` of WAE."""
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(a, b).pow(2)
        return sum((2.0 * d * s) / (2.0 * d * s + dist) for s in _MMD_SCALES)  # type: ignore[return-value]

    off = 1.0 - torch.eye(n, dtype=z.dtype, device=z.device)
    kzz = (k(z, z) * off).sum() / (n * (n - 1))
    kpp = (k(prior, prior) * off).sum() / (n * (n - 1))
    kzp = k(z, prior).mean()
    return kzz + kpp - 2.0 * kzp


def _teacher_inputs(tokens: torch.Tensor, word_dropout: float, gen: torch.Generator | None) -> torch.Tensor:
    inputs = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
    if word_dropout > 0 and gen is not None:
        drop = torch.rand(inputs.shape, generator=gen) < word_dropout
        drop[:, 0] = False
        inputs = inputs.masked_fill(drop, PAD)
    return inputs


def _length_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Random batches of similar lengths (shuffle, sort within pools of 20 batches, shuffle the
    batches), so that trimming a batch to its longest sequence saves most of the padding."""
    order = torch.randperm(len(lengths), generator=gen)
    pool = 20 * batch_size
    batches = []
    for i in range(0, len(order), pool):
        chunk = order[i : i + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches += list(chunk.split(batch_size))
    return [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]


@torch.no_grad()
def evaluate_peptide_autoencoder(
    model: PeptideAutoencoder,
    sequences: list[str] | tuple[str, ...],
    *,
    n_prior: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """Held-out metrics of ``model`` on ``sequences`` (greedy decoding from the code; see the module)."""
    was = model.training
    model.eval()
    try:
        correct = total = exact = 0
        mus, kls = [], []
        for i in range(0, len(sequences), batch_size):
            chunk = list(sequences[i : i + batch_size])
            tok = model.tokens(chunk)
            mu, logvar = model.encode_distribution(tok)
            mus.append(mu)
            if model.kind == "vae":
                kls.append(0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1))
            pred = model.decode(mu).argmax(-1)
            mask = tok != PAD
            correct += int(((pred == tok) & mask).sum())
            total += int(mask.sum())
            exact += sum(a == b for a, b in zip(model.sequences(pred), chunk, strict=True))
        out: dict[str, float] = {
            "test_token_accuracy": correct / max(1, total),
            "test_exact_match": exact / max(1, len(sequences)),
        }
        z_all = torch.cat(mus)
        if model.kind == "vae":
            out["test_kl"] = float(torch.cat(kls).mean())
            var = z_all.var(0)
            out["active_units"] = int((var > 0.01).sum())
        else:
            g = generator(seed, 17)
            n = min(len(z_all), 500)
            prior = torch.randn(n, model.latent_dim, generator=g)
            out["test_mmd"] = float(imq_mmd(z_all[:n], prior))
        out["code_mean_abs"] = float(z_all.mean(0).abs().mean())
        out["code_std_mean"] = float(z_all.std(0).mean())
        # sequences decoded from the prior
        z = torch.randn(n_prior, model.latent_dim, generator=generator(seed, 29))
        ids = torch.cat([model.decode(z[i : i + batch_size]).argmax(-1) for i in range(0, n_prior, batch_size)])
        valid = []
        for row in ids.tolist():
            if EOS not in row:
                continue
            end = row.index(EOS)
            if end >= 1 and all(t >= 3 for t in row[:end]):
                valid.append(model.sequences(torch.tensor([row]))[0])
        out["prior_validity"] = len(valid) / max(1, n_prior)
        out["prior_uniqueness"] = len(set(valid)) / max(1, len(valid))
        out["prior_mean_length"] = sum(map(len, valid)) / max(1, len(valid))
        return out
    finally:
        model.train(was)


def train_peptide_autoencoder(
    kind: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    quick: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> tuple[PeptideAutoencoder, dict[str, Any]]:
    """Train ``peptide-<kind>`` (``kind`` "wae" or "vae") on the training split of
    :func:`~seethrough.data.peptides.load_peptides`.

    Args:
        kind: "wae" or "vae".
        seed: seeds the weights, the batches, word dropout and all noise.
        epochs: default :data:`DEFAULTS` (``quick``: 1).
        quick: tiny model and data (seconds; for tests) -- not the shipped architecture.
        progress: a tqdm bar on stderr.
        overrides: other settings of :data:`DEFAULTS` (``lr``, ``batch_size``, ``word_dropout``,
            ``mmd_weight``, ``free_bits``, ``anneal``) and ``n_train``/``n_test``/``n_prior``.

    Returns:
        The model (eval mode) and its metrics (see :func:`evaluate_peptide_autoencoder`).
    """
    if kind not in DEFAULTS:
        raise ConfigError(f"kind must be 'wae' or 'vae', got {kind!r}")
    cfg: dict[str, Any] = dict(DEFAULTS[kind])
    arch = dict(BUNDLED[f"peptide-{kind}"])
    if quick:
        q = dict(QUICK)
        arch["hidden_dim"], arch["embed_dim"] = q.pop("hidden_dim"), q.pop("embed_dim")
        cfg.update(q)
    if epochs is not None:
        cfg["epochs"] = epochs
    unknown = set(overrides) - set(cfg) - {"n_train", "n_test", "n_prior"}
    if unknown:
        raise ConfigError(f"unknown training settings {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(overrides)
    data = load_peptides(arch["max_len"])
    train_seqs = list(data.subset("train"))[: cfg.get("n_train")]
    test_seqs = list(data.subset("test"))[: cfg.get("n_test")]

    t0 = time.perf_counter()
    history: dict[str, list[float]] = {"loss": [], "recon": [], "reg": []}
    with _deterministic(seed):
        model = (
            bundled(f"peptide-{kind}")
            if not quick
            else PeptideAutoencoder(
                kind, arch["latent_dim"], **{k: arch[k] for k in ("embed_dim", "hidden_dim", "max_len")}
            )
        )
        tokens = model.tokens(train_seqs)
        n, bs, n_epochs = len(tokens), int(cfg["batch_size"]), int(cfg["epochs"])
        steps_per_epoch = len(_length_batches(torch.zeros(n), bs, torch.Generator()))
        total_steps = max(1, n_epochs * steps_per_epoch)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total_steps, pct_start=0.1)
        g_batch, g_drop, g_noise = generator(seed, 1), generator(seed, 2), generator(seed, 3)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total_steps, desc=f"peptide-{kind}", leave=False, file=sys.stderr)
        model.train()
        step = 0
        lengths = (tokens != PAD).sum(1)
        for _ in range(n_epochs):
            sums = {"loss": 0.0, "recon": 0.0, "reg": 0.0}
            for idx in _length_batches(lengths, bs, g_batch):
                tb = tokens[idx][:, : int(lengths[idx].max())]  # trimmed to the batch's longest
                mu, logvar = model.encode_distribution(tb)
                if kind == "vae":
                    eps = torch.randn(mu.shape, generator=g_noise)
                    z = mu + eps * (0.5 * logvar).exp()
                    kl_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
                    reg = kl_dim.clamp(min=cfg["free_bits"]).sum()
                    beta = min(1.0, step / max(1.0, cfg["anneal"] * total_steps))
                    weight = beta
                else:
                    z = mu
                    prior = torch.randn(mu.shape, generator=g_noise)
                    reg = imq_mmd(z, prior)
                    weight = cfg["mmd_weight"]
                logits = model.decode_teacher(z, _teacher_inputs(tb, cfg["word_dropout"], g_drop))
                recon = F.cross_entropy(logits.transpose(1, 2), tb, ignore_index=PAD, reduction="sum") / len(tb)
                loss = recon + weight * reg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                for k, v in (("loss", loss), ("recon", recon), ("reg", reg)):
                    sums[k] += float(v.detach()) * len(tb)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(recon=f"{float(recon):.2f}", reg=f"{float(reg):.3f}")
            for k, v in sums.items():
                history[k].append(round(v / n, 5))
        if bar is not None:
            bar.close()
        model.eval()
    train_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "kind": kind,
        "seed": seed,
        "quick": quick,
        "data": "seethrough.data.peptides.load_peptides (modlamp AMPvsUniProt, AMPvsTM, ACPvsRandom, ACPvsTM)",
        "max_len": arch["max_len"],
        "n_train": len(train_seqs),
        "n_test": len(test_seqs),
        "epochs": n_epochs,
        "architecture": arch,
        **cfg,
        "train_seconds": round(train_seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "history": history,
    }
    evaluated = evaluate_peptide_autoencoder(model, test_seqs, n_prior=int(cfg.get("n_prior", 1000)), seed=seed)
    metrics.update({k: round(v, 5) if isinstance(v, float) else v for k, v in evaluated.items()})
    train_eval = evaluate_peptide_autoencoder(model, train_seqs[:500], n_prior=1, seed=seed)
    metrics["train_token_accuracy"] = round(train_eval["test_token_accuracy"], 5)
    metrics["train_exact_match"] = round(train_eval["test_exact_match"], 5)
    return model, metrics


#: The shipped peptide models as recipes of :func:`~seethrough.zoo.train.run_recipes`.
PEPTIDE_RECIPES: dict[str, Recipe] = {
    f"peptide-{kind}": (partial(train_peptide_autoencoder, kind), {"seed": 0}, {"seed": 0, "quick": True})
    for kind in DEFAULTS
}


def _peptide_metadata(name: str, model: nn.Module, kwargs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "architecture": "PeptideAutoencoder",
        "kind": name.split("-")[1],
        "latent_dim": str(model.latent_dim),
        "token_accuracy": f"{metrics['test_token_accuracy']:.4f}",
    }


def _peptide_summary(name: str, metrics: dict[str, Any]) -> str:
    return (
        f"held-out token accuracy {metrics['test_token_accuracy']:.4f}, exact match "
        f"{metrics['test_exact_match']:.4f}, prior validity {metrics['prior_validity']:.3f}, "
        f"{metrics['train_seconds']:.0f} s"
    )


def train_peptide_zoo(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Train the named models of :data:`PEPTIDE_RECIPES` (all by default) with ``seed`` and
    ``epochs`` (default the recipe's) and save weights and cards into ``out_dir`` (default: the
    package's weights folder). Returns ``{name: metrics}``."""
    return run_recipes(
        PEPTIDE_RECIPES,
        names,
        out_dir=out_dir,
        quick=quick,
        progress=progress,
        command=command,
        caller="seethrough.zoo.train_peptides.train_peptide_zoo",
        log=log,
        metadata=_peptide_metadata,
        summary=_peptide_summary,
        overrides={"seed": seed, "epochs": epochs},
    )
