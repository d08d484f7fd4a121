"""Real peptides with labels: the four classification sets that ``modlamp`` ships.

No download is needed (the sequences are part of modlamp's wheel). The sets are

==================  =====  ===================================================
modlamp loader      size   labels
==================  =====  ===================================================
load_AMPvsUniProt   5200   2600 antimicrobial (AMP) / 2600 UniProt (not AMP)
load_AMPvsTM         412   206 AMP / 206 transmembrane (not AMP)
load_ACPvsRandom     826   413 anticancer (ACP) / 413 random sequences (not ACP)
load_ACPvsTM         826   413 ACP / 413 transmembrane (not ACP)
==================  =====  ===================================================

:func:`load_peptides` merges them, keeps the sequences of at most ``max_len`` residues made
only of the 20 standard amino acids, and deduplicates: a sequence found in several sets
gets the ``amp`` label from the AMP sets and the ``acp`` label from the ACP sets (``-1``
where no set says; also ``-1`` if two sets disagree). With the default ``max_len = 40``
the result has :data:`N_PEPTIDES` sequences (see :data:`KEPT_PER_SET` for what each set
contributes before deduplication). A fixed seeded split puts 10% of them in ``test_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .._core.errors import ConfigError

__all__ = [
    "AMINO_ACIDS",
    "MAX_LEN",
    "PEPTIDE_SETS",
    "KEPT_PER_SET",
    "N_PEPTIDES",
    "PeptideData",
    "load_peptides",
]

#: The 20 standard amino acids (one-letter codes, alphabetical).
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
#: Longest sequence kept by default (and the length the peptide autoencoders handle).
MAX_LEN = 40
#: modlamp loaders merged by :func:`load_peptides`, with the label each one gives.
PEPTIDE_SETS: tuple[tuple[str, str], ...] = (
    ("AMPvsUniProt", "amp"),
    ("AMPvsTM", "amp"),
    ("ACPvsRandom", "acp"),
    ("ACPvsTM", "acp"),
)
#: Distinct sequences of each set kept with ``max_len = 40`` (rows kept: 3814 of 5200, 378 of 412,
#: 826, 826; AMPvsUniProt repeats some sequences), before deduplication across sets.
KEPT_PER_SET = {"AMPvsUniProt": 3423, "AMPvsTM": 378, "ACPvsRandom": 826, "ACPvsTM": 826}
#: Number of distinct sequences :func:`load_peptides` returns with ``max_len = 40``
#: (4318 train, 480 test; amp: 1987 AMP, 1620 not, 1191 unknown of which 22 have conflicting
#: labels in modlamp's sets; acp: 413 ACP, 826 not, 3559 unknown).
N_PEPTIDES = 4798
#: Seed of the train/test split.
SPLIT_SEED = 0
#: Fraction of the sequences in the held-out split.
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class PeptideData:
    """Deduplicated peptides with their labels and a fixed train/test split.

    Attributes:
        sequences: the sequences (upper-case one-letter codes), sorted.
        amp: int8 ``(n,)``: 1 antimicrobial, 0 not (UniProt or transmembrane), -1 unknown.
        acp: int8 ``(n,)``: 1 anticancer, 0 not (random or transmembrane), -1 unknown.
        source: for each sequence the modlamp sets it is in, joined by ``"+"``.
        train_idx, test_idx: sorted int64 indices of the split (10% test, seed 0).
    """

    sequences: tuple[str, ...]
    amp: np.ndarray
    acp: np.ndarray
    source: tuple[str, ...]
    train_idx: np.ndarray
    test_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, which: str) -> tuple[str, ...]:
        """The sequences of ``"train"`` or ``"test"``."""
        if which not in ("train", "test"):
            raise ConfigError(f"subset must be 'train' or 'test', got {which!r}")
        idx = self.train_idx if which == "train" else self.test_idx
        return tuple(self.sequences[i] for i in idx)


def _modlamp_sets() -> dict[str, tuple[list[str], np.ndarray]]:
    try:
        from modlamp import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "seethrough.data.load_peptides needs the 'modlamp' package, which ships the peptide "
            "sets; install it with `pip install modlamp`."
        ) from exc
    out = {}
    for name, _ in PEPTIDE_SETS:
        d = getattr(datasets, f"load_{name}")()
        out[name] = ([str(s).strip().upper() for s in d.sequences], np.asarray(d.target, dtype=np.int64))
    return out


@lru_cache(maxsize=4)
def _build(max_len: int) -> PeptideData:
    letters = set(AMINO_ACIDS)
    labels: dict[str, dict[str, set[int]]] = {}
    sources: dict[str, list[str]] = {}
    for name, (seqs, target) in _modlamp_sets().items():
        kind = dict(PEPTIDE_SETS)[name]
        for s, t in zip(seqs, target, strict=True):
            if not s or len(s) > max_len or not set(s) <= letters:
                continue
            labels.setdefault(s, {"amp": set(), "acp": set()})[kind].add(int(t))
            src = sources.setdefault(s, [])
            if name not in src:
                src.append(name)
    seqs_sorted = tuple(sorted(labels))

    def label(kind: str) -> np.ndarray:
        vals = [labels[s][kind] for s in seqs_sorted]
        arr = np.array([next(iter(v)) if len(v) == 1 else -1 for v in vals], dtype=np.int8)
        arr.setflags(write=False)
        return arr

    n = len(seqs_sorted)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = round(TEST_FRACTION * n)
    test_idx = np.sort(perm[:n_test]).astype(np.int64)
    train_idx = np.sort(perm[n_test:]).astype(np.int64)
    for a in (test_idx, train_idx):
        a.setflags(write=False)
    return PeptideData(
        sequences=seqs_sorted,
        amp=label("amp"),
        acp=label("acp"),
        source=tuple("+".join(sources[s]) for s in seqs_sorted),
        train_idx=train_idx,
        test_idx=test_idx,
    )


def load_peptides(max_len: int = MAX_LEN) -> PeptideData:
    """The merged, deduplicated modlamp peptides of at most ``max_len`` residues.

    The split depends only on the set of sequences kept (seed 0, 10% test), so it is the
    same on every call and every machine.

    Raises:
        ConfigError: ``max_len`` not a positive int.
        ImportError: modlamp is not installed (the message says how to install it).
    """
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ConfigError(f"max_len must be a positive int, got {max_len!r}")
    return _build(max_len)
