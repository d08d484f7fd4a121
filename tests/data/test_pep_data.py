"""Tests of seethrough.data.peptides (modlamp's peptide sets merged and split)."""

from __future__ import annotations

import numpy as np
import pytest

from seethrough._core.errors import ConfigError
from seethrough.data.peptides import AMINO_ACIDS, KEPT_PER_SET, MAX_LEN, N_PEPTIDES, load_peptides

pytest.importorskip("modlamp")


def test_counts_and_labels():
    d = load_peptides()
    assert len(d) == N_PEPTIDES == 4798
    assert len(d.test_idx) == 480 and len(d.train_idx) == 4318
    assert d.amp.shape == d.acp.shape == (len(d),)
    assert set(np.unique(d.amp)) == {-1, 0, 1} and set(np.unique(d.acp)) == {-1, 0, 1}
    assert int((d.acp == 1).sum()) == 413 and int((d.acp == 0).sum()) == 826
    assert int((d.amp == 1).sum()) == 1987 and int((d.amp == 0).sum()) == 1620
    assert len(set(d.sequences)) == len(d)  # deduplicated
    assert all(0 < len(s) <= MAX_LEN and set(s) <= set(AMINO_ACIDS) for s in d.sequences)
    # what every set contributes (distinct sequences) is what the module documents
    for name, kept in KEPT_PER_SET.items():
        assert sum(name in src.split("+") for src in d.source) == kept
    # sequences only in an ACP set have no AMP label, and vice versa
    only_acp = [i for i, src in enumerate(d.source) if "AMP" not in src]
    assert (d.amp[only_acp] == -1).all()
    only_amp = [i for i, src in enumerate(d.source) if "ACP" not in src]
    assert (d.acp[only_amp] == -1).all()


def test_split_is_fixed_and_disjoint():
    a, b = load_peptides(), load_peptides()
    assert np.array_equal(a.test_idx, b.test_idx)
    assert not set(a.test_idx) & set(a.train_idx)
    assert sorted([*a.test_idx, *a.train_idx]) == list(range(len(a)))
    assert a.subset("test") == tuple(a.sequences[i] for i in a.test_idx)
    # a fresh build (cache cleared) gives the same split
    from seethrough.data import peptides

    peptides._build.cache_clear()
    c = load_peptides()
    assert c.sequences == a.sequences and np.array_equal(c.test_idx, a.test_idx)


def test_max_len_and_errors():
    short = load_peptides(20)
    assert all(len(s) <= 20 for s in short.sequences) and len(short) < N_PEPTIDES
    with pytest.raises(ConfigError, match="max_len"):
        load_peptides(0)
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        short.subset("val")
    with pytest.raises(AttributeError):
        short.amp = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        short.amp[0] = 3  # read-only arrays
