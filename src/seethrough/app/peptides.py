"""The Peptide Sampler on a peptide autoencoder and the real peptides that modlamp ships.

:class:`PeptideLab` puts together what the ``latent`` commands and the demo use:

* the codes ``z`` (posterior means) of every bundled peptide;
* latent attribute classifiers on ``z``: ``amp`` (antimicrobial vs not, from modlamp's AMP
  sets) and ``acp`` (anticancer vs not, from its ACP sets), with held-out AUC;
* latent regressors of modlamp descriptors (charge, hydrophobic moment, ...), held-out R²;
* independent sequence-level classifiers (k-mer composition; they never see ``z``) for the
  same two activities, which check what a decoded sequence really is;
* a Gaussian mixture of the aggregate posterior, the density that conditioned sampling
  draws candidates from (CLaSS).

Condition names are the same on both sides: ``amp > 0.8`` is scored on ``z`` by the latent
classifier while sampling, and checked on the decoded sequence by the sequence classifier;
``charge in [2, 6]`` is scored by the latent regressor and checked by modlamp.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough.generative import (
    Condition,
    ConditionalSampler,
    Direction,
    GaussianMixturePrior,
    Latent,
    LatentClassifier,
    LatentRegressor,
    LatentWalk,
    PCADirections,
    SampleSet,
)
from seethrough.generative.peptides import PeptideDescriber, SequenceClassifier, peptide_descriptors

from .autoencoders import AutoencoderSpec

__all__ = ["PeptideLab", "ACTIVITIES", "REGRESSED", "sampling_report"]

#: The activities with labels in modlamp: name -> what it is.
ACTIVITIES: dict[str, str] = {
    "amp": "antimicrobial (modlamp AMPvsUniProt, AMPvsTM)",
    "acp": "anticancer (modlamp ACPvsRandom, ACPvsTM)",
}
#: The descriptors that get a latent regressor (conditions and traversal directions).
REGRESSED: tuple[str, ...] = (
    "charge",
    "hydrophobic_moment",
    "hydrophobicity",
    "aromaticity",
    "instability_index",
    "molecular_weight",
    "length",
)


def _seq_column(name: str) -> str:
    return f"{name}_seq"


def _z_column(name: str) -> str:
    return f"{name}_z"


@dataclass
class PeptideLab:
    """A peptide autoencoder with its probes, priors and describers (see the module doc)."""

    name: str
    model: nn.Module
    latent: Latent
    sequences: tuple[str, ...]
    z: Tensor
    train_idx: np.ndarray
    test_idx: np.ndarray
    classifiers: dict[str, LatentClassifier]
    regressors: dict[str, LatentRegressor]
    sequence_classifiers: dict[str, SequenceClassifier]
    prior: GaussianMixturePrior
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        spec: AutoencoderSpec | str = "peptide-wae",
        *,
        seed: int = 0,
        components: int = 10,
        model: nn.Module | None = None,
    ) -> PeptideLab:
        """Load the model (unless ``model``, already loaded from ``spec``, is given) and the
        bundled peptides; fit every probe on the training split and score it on the held-out
        split."""
        from seethrough.data.peptides import load_peptides

        spec = AutoencoderSpec(name=spec) if isinstance(spec, str) else spec
        model = spec.load() if model is None else model
        if not callable(getattr(model, "tokens", None)) or not callable(getattr(model, "sequences", None)):
            raise ConfigError(
                f"{spec.label} is not a peptide model: it needs tokens(sequences) and sequences(z) methods "
                "(see seethrough.zoo.peptides.PeptideAutoencoder)"
            )
        data = load_peptides(max_len=int(getattr(model, "max_len", 40)))
        latent = Latent(model)
        z = latent.encode(model.tokens(list(data.sequences))).cpu()  # type: ignore[operator]
        tr, te = np.asarray(data.train_idx), np.asarray(data.test_idx)
        zn = z.numpy()
        seqs = data.sequences
        metrics: dict[str, Any] = {"model": spec.label, "n_sequences": len(seqs), "n_train": len(tr), "n_test": len(te)}

        classifiers: dict[str, LatentClassifier] = {}
        seq_classifiers: dict[str, SequenceClassifier] = {}
        for act in ACTIVITIES:
            y = np.asarray(getattr(data, act))
            a, b = tr[y[tr] >= 0], te[y[te] >= 0]
            clf = LatentClassifier().fit(zn[a], y[a])
            classifiers[act] = clf
            metrics[f"{act}_latent_auc"] = float(clf.evaluate(zn[b], y[b])["auc"])
            sc = SequenceClassifier().fit([seqs[i] for i in a], y[a])
            seq_classifiers[act] = sc
            metrics[f"{act}_sequence_auc"] = float(sc.evaluate([seqs[i] for i in b], y[b]))
            metrics[f"{act}_n_labelled"] = int(len(a) + len(b))

        desc = peptide_descriptors(list(seqs))
        regressors: dict[str, LatentRegressor] = {}
        for d in REGRESSED:
            reg = LatentRegressor().fit(zn[tr], desc[d][tr])
            regressors[d] = reg
            metrics[f"{d}_latent_r2"] = float(reg.evaluate(zn[te], desc[d][te])["r2"])

        prior = GaussianMixturePrior(n_components=components, seed=seed).fit(z[torch.from_numpy(tr.copy())])
        return cls(
            name=spec.label,
            model=model,
            latent=latent,
            sequences=tuple(seqs),
            z=z,
            train_idx=tr,
            test_idx=te,
            classifiers=classifiers,
            regressors=regressors,
            sequence_classifiers=seq_classifiers,
            prior=prior,
            metrics=metrics,
        )

    # -- scoring ---------------------------------------------------------------------------
    def scorers(self) -> dict[str, Any]:
        """Functions of ``z``, named ``<condition>_z``: the latent classifiers' probabilities
        (``amp_z``, ``acp_z``) and the descriptor regressors' predictions (``charge_z``, ...)."""
        out: dict[str, Any] = {_z_column(k): c for k, c in self.classifiers.items()}
        out.update({_z_column(k): r.predict for k, r in self.regressors.items()})
        return out

    def describer(self, *, latent_scores: bool = True) -> PeptideDescriber:
        """Columns of a decoded batch: sequence, validity, modlamp descriptors (``charge``,
        ...), the latent classifiers on ``z`` (``amp_z``, ``acp_z``; left out with
        ``latent_scores=False``) and the sequence classifiers on the decoded sequences
        (``amp_seq``, ``acp_seq``)."""
        return PeptideDescriber(
            self.model.sequences,  # type: ignore[arg-type]
            classifiers={_z_column(k): c for k, c in self.classifiers.items()} if latent_scores else {},
            sequence_scorers={_seq_column(k): c.predict_proba for k, c in self.sequence_classifiers.items()},
            max_len=int(getattr(self.model, "max_len", 40)),
        )

    @staticmethod
    def z_condition(c: Condition) -> Condition:
        """The condition as scored on ``z`` while sampling (latent classifier or regressor)."""
        return dataclasses.replace(c, name=_z_column(c.name))

    @staticmethod
    def decoded_condition(c: Condition) -> Condition:
        """The same condition checked on a decoded sequence: an activity by the independent
        sequence classifier, a descriptor by modlamp."""
        return dataclasses.replace(c, name=_seq_column(c.name) if c.name in ACTIVITIES else c.name)

    def check_names(self, conditions: Sequence[Condition]) -> None:
        known = [*self.classifiers, *self.regressors]
        for c in conditions:
            if c.name not in known:
                import difflib

                close = difflib.get_close_matches(c.name, known, n=2)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"no score called {c.name!r} for a condition.{hint} Choose from {', '.join(known)}")

    # -- walks -------------------------------------------------------------------------------
    def interpolate(self, a: str, b: str, *, steps: int = 8, method: str = "slerp") -> LatentWalk:
        return self.latent.interpolate(a, b, steps=steps, method=method, describe=self.describer())

    def direction(self, name: str) -> Direction:
        """A direction in z by name: an activity (its latent classifier's normal), a
        descriptor (its regressor's normal: the gradient of a linear regressor), or ``pcN``
        (the N-th principal axis of the codes, from 1)."""
        from seethrough.generative import ClassifierDirection

        if name in self.classifiers:
            return ClassifierDirection(self.classifiers[name], name=f"{name} (latent classifier normal)").fit()
        if name in self.regressors:
            return ClassifierDirection(self.regressors[name], name=f"{name} (regressor gradient)").fit()
        if name.lower().startswith("pc") and name[2:].isdigit():
            k = int(name[2:])
            if k < 1 or k > self.z.shape[1]:
                raise ConfigError(f"principal axis {name!r} out of range: pc1 .. pc{self.z.shape[1]}")
            pca = PCADirections(n_components=k).fit(self.z[torch.from_numpy(self.train_idx.copy())])
            return pca.direction(k - 1)
        known = [*self.classifiers, *self.regressors, "pc1", "pc2", "..."]
        raise ConfigError(f"unknown direction {name!r}; choose from {', '.join(known)}")

    def traverse(self, start: str, direction: str, *, strengths: Sequence[float]) -> LatentWalk:
        z0 = self.latent.encode(start)
        d = self.direction(direction)
        # strengths in units of the codes' spread along the direction
        scale = float(d.project(self.z).std())
        return self.latent.traverse(z0[0], d, strengths=[s * scale for s in strengths], describe=self.describer())

    # -- conditioned sampling ---------------------------------------------------------------
    def sampler(self, conditions: Sequence[Condition]) -> ConditionalSampler:
        self.check_names(conditions)
        return ConditionalSampler(
            self.latent,
            self.prior,
            scorers=self.scorers(),
            conditions=[self.z_condition(c) for c in conditions],
            describe=self.describer(latent_scores=False),
        )

    def sample(
        self, conditions: Sequence[Condition], *, n: int = 100, max_candidates: int = 100_000, seed: int = 0
    ) -> tuple[SampleSet, dict[str, Any]]:
        """Rejection-sample ``n`` codes meeting ``conditions`` (scored on z), decode them, and
        check the conditions on the decoded sequences. Returns the samples and a summary."""
        s = self.sampler(conditions).sample(n, max_candidates=max_candidates, seed=seed)
        return s, sampling_report(self, s, conditions)


def sampling_report(lab: PeptideLab, samples: SampleSet, conditions: Sequence[Condition]) -> dict[str, Any]:
    """Acceptance, validity, uniqueness, novelty and, decisive, the fraction of accepted
    samples whose decoded sequence meets each condition (and all of them)."""
    from seethrough.generative import novelty, uniqueness, validity
    from seethrough.generative.peptides import is_valid_sequence

    table = samples.table
    seqs = list(table["sequence"])
    valid = np.asarray(table["valid"], dtype=bool)
    train = [lab.sequences[i] for i in lab.train_idx]
    good = [s for s, v in zip(seqs, valid, strict=True) if v]
    nov = novelty(good, train)  # NaNs when no sequence is valid
    checks = samples.check([lab.decoded_condition(c) for c in conditions]) if conditions else {}
    on_z = samples.check([lab.z_condition(c) for c in conditions]) if conditions else {}
    out: dict[str, Any] = {
        "conditions": [str(c) for c in conditions],
        "accepted": int(len(seqs)),
        "candidates": int(samples.n_candidates),
        "acceptance_rate": float(samples.acceptance_rate),
        "validity": float(validity(seqs, is_valid_sequence)),
        "uniqueness": float(uniqueness(good)) if good else float("nan"),
        "novelty": dict(nov),
        "z_meets": {k: float(v) for k, v in dict(on_z).items()},
        "decoded_meets": {k: float(v) for k, v in dict(checks).items()},
    }
    return out
