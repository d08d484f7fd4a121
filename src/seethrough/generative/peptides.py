"""Peptides in the generative family: checking sequences, describing them with modlamp's
physico-chemical descriptors, a classifier on raw sequences, and a ``describe`` callable for
latent walks and samplers.

Nothing here knows a particular model: sequences are strings of one-letter codes (the 20
standard amino acids :data:`STANDARD_AMINO_ACIDS` unless another ``alphabet`` is given), and the
describer takes a function that turns decoded outputs into strings (a peptide autoencoder's
``sequences`` method, say).

The descriptors are computed by modlamp (``modlamp.descriptors``; Müller et al. 2017), not
re-implemented here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from .._core.errors import ConfigError, InputError
from .._core.estimator import Estimator

__all__ = [
    "STANDARD_AMINO_ACIDS",
    "DESCRIPTOR_NAMES",
    "check_sequences",
    "is_valid_sequence",
    "peptide_descriptors",
    "SequenceClassifier",
    "PeptideDescriber",
]

#: The 20 standard amino acids (one-letter codes, alphabetical): the default alphabet.
STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"

#: Columns of :func:`peptide_descriptors`, in order.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "length",
    "charge",
    "isoelectric_point",
    "molecular_weight",
    "aromaticity",
    "aliphatic_index",
    "instability_index",
    "boman_index",
    "hydrophobic_ratio",
    "hydrophobicity",
    "hydrophobic_moment",
)


def _show(s: object) -> str:
    r = repr(s)
    return r if len(r) <= 50 else r[:47] + "..."


def check_sequences(
    seqs: Sequence[str] | str,
    *,
    alphabet: str = STANDARD_AMINO_ACIDS,
    max_len: int | None = None,
) -> list[str]:
    """The sequences as a list of strings, after checking every one of them.

    Raises:
        InputError: not a list of strings, no sequences, an empty sequence, a letter outside
            ``alphabet`` (the message names the letter, its position and the sequence's index),
            or a sequence longer than ``max_len``.
    """
    if isinstance(seqs, str):
        seqs = [seqs]
    if isinstance(seqs, np.ndarray):
        seqs = seqs.tolist()
    if not isinstance(seqs, Sequence):
        raise InputError(f"expected a list of peptide sequences (strings), got {type(seqs).__name__}")
    if len(seqs) == 0:
        raise InputError("expected at least one peptide sequence, got none")
    allowed = frozenset(alphabet)
    out: list[str] = []
    for i, s in enumerate(seqs):
        if not isinstance(s, str):
            raise InputError(f"sequence {i} is a {type(s).__name__} ({_show(s)}), not a string of one-letter codes")
        if len(s) == 0:
            raise InputError(f"sequence {i} is empty; a peptide needs at least one residue")
        bad = next((j for j, c in enumerate(s) if c not in allowed), None)
        if bad is not None:
            c = s[bad]
            hint = "; write the codes in upper case" if c.upper() in allowed else ""
            raise InputError(
                f"sequence {i} ({_show(s)}) has {c!r} at position {bad} (0-based), which is not in the "
                f"alphabet {alphabet!r}{hint}"
            )
        if max_len is not None and len(s) > max_len:
            raise InputError(f"sequence {i} ({_show(s)}) is {len(s)} residues long; at most {max_len} are allowed")
        out.append(s)
    return out


def is_valid_sequence(s: object, *, alphabet: str = STANDARD_AMINO_ACIDS, max_len: int | None = None) -> bool:
    """True for a non-empty string of letters of ``alphabet`` (and at most ``max_len`` long):
    the ``is_valid`` of :func:`seethrough.generative.validity` for peptides."""
    return (
        isinstance(s, str) and len(s) > 0 and (max_len is None or len(s) <= max_len) and all(c in alphabet for c in s)
    )


def peptide_descriptors(
    seqs: Sequence[str] | str,
    *,
    ph: float = 7.4,
    alphabet: str = STANDARD_AMINO_ACIDS,
) -> dict[str, np.ndarray]:
    """modlamp's global descriptors of each sequence, one float array ``(n,)`` per column of
    :data:`DESCRIPTOR_NAMES` (a mapping an ``AttributeTable`` takes as columns).

    * ``length``, ``aromaticity``, ``aliphatic_index``, ``instability_index``, ``boman_index``,
      ``hydrophobic_ratio``, ``isoelectric_point``: ``modlamp.descriptors.GlobalDescriptor``;
    * ``charge``: ``GlobalDescriptor.calculate_charge(ph=ph)`` (amidated C-terminus, modlamp's default);
    * ``molecular_weight``: ``GlobalDescriptor.calculate_MW()`` (Da, free C-terminus, modlamp's default);
    * ``hydrophobicity``: mean Eisenberg consensus hydrophobicity,
      ``PeptideDescriptor(seqs, "eisenberg").calculate_global()`` (window 1000: the whole sequence);
    * ``hydrophobic_moment``: Eisenberg hydrophobic moment over the whole sequence at 100 degrees
      (alpha helix), ``PeptideDescriptor(seqs, "eisenberg").calculate_moment()`` (window 1000).

    Raises:
        InputError: see :func:`check_sequences`.
        ImportError: modlamp is not installed.
    """
    seqs = check_sequences(seqs, alphabet=alphabet)
    try:
        from modlamp.descriptors import GlobalDescriptor, PeptideDescriptor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("peptide_descriptors needs modlamp; install it with `pip install modlamp`") from exc

    g = GlobalDescriptor(list(seqs))
    p = PeptideDescriptor(list(seqs), "eisenberg")

    def col(run: Callable[[], Any], d: Any) -> np.ndarray:
        run()
        return np.asarray(d.descriptor, dtype=np.float64)[:, 0].copy()

    calls: dict[str, tuple[Callable[[], Any], Any]] = {
        "length": (g.length, g),
        "charge": (lambda: g.calculate_charge(ph=ph), g),
        "isoelectric_point": (g.isoelectric_point, g),
        "molecular_weight": (g.calculate_MW, g),
        "aromaticity": (g.aromaticity, g),
        "aliphatic_index": (g.aliphatic_index, g),
        "instability_index": (g.instability_index, g),
        "boman_index": (g.boman_index, g),
        "hydrophobic_ratio": (g.hydrophobic_ratio, g),
        "hydrophobicity": (p.calculate_global, p),
        "hydrophobic_moment": (p.calculate_moment, p),
    }
    return {name: col(*calls[name]) for name in DESCRIPTOR_NAMES}


class SequenceClassifier(Estimator):
    """A binary classifier on raw peptide sequences, independent of any latent space:
    the k-mer composition (frequency of every k-mer, for each ``k`` in ``k``) and the length,
    standardised, into an L2-regularised logistic regression (scikit-learn).

    Args:
        k: k-mer sizes (1: amino-acid composition, 2: dipeptide composition, ...).
        C: inverse regularisation strength of the logistic regression.
        alphabet: letters allowed in the sequences.
        max_iter: iterations of the solver.

    Fitted attributes: ``classes_`` (the two labels), ``coef_`` ``(n_features,)`` (on the
    standardised features), ``intercept_``, ``feature_names_``, ``train_auc_``.
    """

    def __init__(
        self,
        k: int | Sequence[int] = (1, 2),
        C: float = 1.0,
        *,
        alphabet: str = STANDARD_AMINO_ACIDS,
        max_iter: int = 2000,
    ) -> None:
        self.k = k
        self.C = C
        self.alphabet = alphabet
        self.max_iter = max_iter

    def _ks(self) -> tuple[int, ...]:
        ks = (self.k,) if isinstance(self.k, int) else tuple(self.k)
        if not ks or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 3 for v in ks):
            raise ConfigError(f"k must be an int or ints in 1..3 (k-mer sizes), got {self.k!r}")
        return ks

    def _features(self, seqs: Sequence[str] | str) -> np.ndarray:
        seqs = check_sequences(seqs, alphabet=self.alphabet)
        a = len(self.alphabet)
        index = {c: i for i, c in enumerate(self.alphabet)}
        blocks = []
        for k in self._ks():
            x = np.zeros((len(seqs), a**k))
            for row, s in enumerate(seqs):
                ids = [index[c] for c in s]
                n = len(ids) - k + 1
                if n <= 0:
                    continue
                code = np.zeros(n, dtype=np.int64)
                for j in range(k):
                    code = code * a + np.asarray(ids[j : j + n])
                x[row] = np.bincount(code, minlength=a**k) / n
            blocks.append(x)
        blocks.append(np.log([[len(s)] for s in seqs]))
        return np.concatenate(blocks, axis=1)

    def fit(self, seqs: Sequence[str], y: Sequence[int] | np.ndarray) -> SequenceClassifier:
        """Fit on sequences and binary labels (two distinct values; drop unlabelled ones first)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.preprocessing import StandardScaler

        x = self._features(seqs)
        yy = np.asarray(y).reshape(-1)
        if len(yy) != len(x):
            raise InputError(f"got {len(x)} sequences but {len(yy)} labels")
        classes = np.unique(yy)
        if len(classes) != 2:
            raise InputError(
                f"SequenceClassifier needs exactly two label values, got {classes.tolist()}; "
                f"drop unlabelled entries (e.g. -1) before fitting"
            )
        if not isinstance(self.C, int | float) or self.C <= 0:
            raise ConfigError(f"C must be a positive number, got {self.C!r}")
        self._scaler = StandardScaler().fit(x)
        self._model = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
        self._model.fit(self._scaler.transform(x), (yy == classes[1]).astype(int))
        self.classes_ = classes
        self.coef_ = self._model.coef_[0].copy()
        self.intercept_ = float(self._model.intercept_[0])
        names = []
        for k in self._ks():
            names += ["".join(t) for t in product(self.alphabet, repeat=k)]
        self.feature_names_ = (*names, "log_length")
        self.train_auc_ = float(
            roc_auc_score(yy == classes[1], self._model.decision_function(self._scaler.transform(x)))
        )
        return self

    def decision_function(self, seqs: Sequence[str] | str) -> np.ndarray:
        """Log-odds of the second class ``classes_[1]``, ``(n,)``."""
        self.check_fitted("call fit(sequences, labels) first")
        return np.asarray(self._model.decision_function(self._scaler.transform(self._features(seqs))))

    def predict_proba(self, seqs: Sequence[str] | str) -> np.ndarray:
        """Probability of the second class ``classes_[1]`` (e.g. AMP for labels 0/1), ``(n,)``."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.decision_function(seqs))))

    def predict(self, seqs: Sequence[str] | str) -> np.ndarray:
        """The more probable label of each sequence."""
        return np.where(self.decision_function(seqs) > 0, self.classes_[1], self.classes_[0])

    def evaluate(self, seqs: Sequence[str], y: Sequence[int] | np.ndarray) -> float:
        """ROC AUC on held-out sequences and labels."""
        from sklearn.metrics import roc_auc_score

        yy = np.asarray(y).reshape(-1)
        scores = self.decision_function(seqs)
        if len(yy) != len(scores):
            raise InputError(f"got {len(scores)} sequences but {len(yy)} labels")
        if len(np.unique(yy)) != 2:
            raise InputError(f"evaluate needs both classes among the labels, got {np.unique(yy).tolist()}")
        return float(roc_auc_score(yy == self.classes_[1], scores))


class PeptideDescriber:
    """A ``describe`` callable ``(decoded_outputs, z) -> columns`` for latent walks and samplers
    over peptides.

    Columns, in order: ``sequence`` (strings from ``to_sequences(decoded_outputs)``), ``valid``
    (non-empty, only letters of ``alphabet``, at most ``max_len`` long), the modlamp
    descriptors (:func:`peptide_descriptors`; NaN for invalid sequences), one column per entry of
    ``classifiers`` (functions of the codes ``z``, e.g. a latent classifier's probability) and one
    per entry of ``sequence_scorers`` (functions of the valid sequences, e.g.
    ``SequenceClassifier.predict_proba``; NaN for invalid ones).

    Args:
        to_sequences: decoded outputs -> list of strings (a peptide model's ``sequences``).
        classifiers: name -> callable on ``z`` ``(N, Z)`` returning ``(N,)`` scores.
        sequence_scorers: name -> callable on a list of sequences returning ``(n,)`` scores.
        descriptors: which descriptor columns (default all of :data:`DESCRIPTOR_NAMES`; ``()`` none).
        ph: pH of the charge.
        alphabet, max_len: what counts as a valid sequence.
    """

    def __init__(
        self,
        to_sequences: Callable[[Any], Sequence[str]],
        *,
        classifiers: Mapping[str, Callable[[Any], Any]] | None = None,
        sequence_scorers: Mapping[str, Callable[[list[str]], Any]] | None = None,
        descriptors: Sequence[str] | None = None,
        ph: float = 7.4,
        alphabet: str = STANDARD_AMINO_ACIDS,
        max_len: int | None = None,
    ) -> None:
        if not callable(to_sequences):
            raise ConfigError(
                f"to_sequences must be callable (e.g. model.sequences), got {type(to_sequences).__name__}"
            )
        names = DESCRIPTOR_NAMES if descriptors is None else tuple(descriptors)
        unknown = [n for n in names if n not in DESCRIPTOR_NAMES]
        if unknown:
            raise ConfigError(f"unknown descriptors {unknown}; choose from {', '.join(DESCRIPTOR_NAMES)}")
        self.to_sequences = to_sequences
        self.classifiers = dict(classifiers or {})
        self.sequence_scorers = dict(sequence_scorers or {})
        taken = {"sequence", "valid", *names}
        for name in (*self.classifiers, *self.sequence_scorers):
            if name in taken:
                raise ConfigError(f"column name {name!r} is used twice; rename the classifier or scorer")
            taken.add(name)
        for name, fn in (*self.classifiers.items(), *self.sequence_scorers.items()):
            if not callable(fn):
                raise ConfigError(f"{name!r} must be callable, got {type(fn).__name__}")
        self.descriptors = names
        self.ph = ph
        self.alphabet = alphabet
        self.max_len = max_len

    def columns(self) -> tuple[str, ...]:
        """Names of the columns :meth:`__call__` returns, in order."""
        return ("sequence", "valid", *self.descriptors, *self.classifiers, *self.sequence_scorers)

    def __call__(self, decoded: Any, z: Any) -> dict[str, Any]:
        seqs = [str(s) for s in self.to_sequences(decoded)]
        n = len(seqs)
        valid = np.array([is_valid_sequence(s, alphabet=self.alphabet, max_len=self.max_len) for s in seqs], dtype=bool)
        good = [s for s, v in zip(seqs, valid, strict=True) if v]
        out: dict[str, Any] = {"sequence": tuple(seqs), "valid": valid}

        def spread(values: Any) -> np.ndarray:
            full = np.full(n, np.nan)
            full[valid] = np.asarray(values, dtype=np.float64).reshape(-1)
            return full

        if self.descriptors:
            desc = peptide_descriptors(good, ph=self.ph, alphabet=self.alphabet) if good else {}
            for name in self.descriptors:
                out[name] = spread(desc[name]) if good else np.full(n, np.nan)
        for name, fn in self.classifiers.items():
            vals = fn(z)
            arr = np.asarray(vals.detach().cpu() if hasattr(vals, "detach") else vals, dtype=np.float64).reshape(-1)
            if len(arr) != n:
                raise InputError(f"classifier {name!r} returned {len(arr)} scores for {n} codes")
            out[name] = arr
        for name, fn in self.sequence_scorers.items():
            out[name] = spread(fn(good)) if good else np.full(n, np.nan)
        return out
