"""Tests of seethrough.generative.peptides: checks, modlamp descriptors, the sequence
classifier and the describer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError, InputError, NotFittedError
from seethrough.generative.peptides import (
    DESCRIPTOR_NAMES,
    STANDARD_AMINO_ACIDS,
    PeptideDescriber,
    SequenceClassifier,
    check_sequences,
    is_valid_sequence,
    peptide_descriptors,
)

modlamp = pytest.importorskip("modlamp")

SEQS = ["KKKK", "GLWSKIKEVGKEAAKAAAKAAGKAALGAVSEAV", "DDEEDD", "FLPLLAGLAANFLPKIFCKITRKC"]


def test_check_sequences_messages():
    assert check_sequences("KLW") == ["KLW"]
    assert check_sequences(np.array(["KK", "LL"])) == ["KK", "LL"]
    with pytest.raises(InputError, match=r"sequence 2 \('KKBK'\) has 'B' at position 2"):
        check_sequences(["KK", "LL", "KKBK"])
    with pytest.raises(InputError, match="upper case"):
        check_sequences(["kk"])
    with pytest.raises(InputError, match="sequence 0 is empty"):
        check_sequences([""])
    with pytest.raises(InputError, match="at least one"):
        check_sequences([])
    with pytest.raises(InputError, match="at most 3"):
        check_sequences(["KKKK"], max_len=3)
    assert check_sequences(["AB"], alphabet="AB") == ["AB"]  # the alphabet is an argument
    assert len(STANDARD_AMINO_ACIDS) == 20
    assert is_valid_sequence("KK") and not is_valid_sequence("") and not is_valid_sequence("KXK")
    assert not is_valid_sequence("KKK", max_len=2) and not is_valid_sequence(None)


def test_descriptors_equal_modlamp_direct_calls():
    from modlamp.descriptors import GlobalDescriptor, PeptideDescriptor

    d = peptide_descriptors(SEQS)
    assert tuple(d) == DESCRIPTOR_NAMES
    assert all(v.shape == (len(SEQS),) and v.dtype == np.float64 for v in d.values())
    g = GlobalDescriptor(SEQS)
    g.calculate_charge(ph=7.4)
    np.testing.assert_allclose(d["charge"], g.descriptor[:, 0])
    g.instability_index()
    np.testing.assert_allclose(d["instability_index"], g.descriptor[:, 0])
    g.calculate_MW()
    np.testing.assert_allclose(d["molecular_weight"], g.descriptor[:, 0])
    g.boman_index()
    np.testing.assert_allclose(d["boman_index"], g.descriptor[:, 0])
    p = PeptideDescriptor(SEQS, "eisenberg")
    p.calculate_moment()
    np.testing.assert_allclose(d["hydrophobic_moment"], p.descriptor[:, 0])
    p.calculate_global()
    np.testing.assert_allclose(d["hydrophobicity"], p.descriptor[:, 0])
    # known values
    np.testing.assert_array_equal(d["length"], [len(s) for s in SEQS])
    assert d["charge"][0] > 3.5 and d["charge"][2] < -3.5  # KKKK positive, DDEEDD negative at pH 7.4
    assert d["isoelectric_point"][0] > 10 and d["isoelectric_point"][2] < 4
    assert d["aromaticity"][0] == 0 and d["hydrophobic_ratio"][0] == 0
    assert peptide_descriptors(["KKKK"], ph=12.0)["charge"][0] < d["charge"][0]


def test_descriptors_bad_input():
    with pytest.raises(InputError, match="'J' at position 1"):
        peptide_descriptors(["KJ"])


def _amp_split(n_train=1500):
    from seethrough.data.peptides import load_peptides

    data = load_peptides()
    tr = [i for i in data.train_idx if data.amp[i] >= 0][:n_train]
    te = [i for i in data.test_idx if data.amp[i] >= 0]
    pick = lambda idx: ([data.sequences[i] for i in idx], data.amp[idx])  # noqa: E731
    return pick(tr), pick(te)


def test_sequence_classifier_amp_auc():
    (xs, ys), (xt, yt) = _amp_split()
    clf = SequenceClassifier(k=(1, 2), C=0.1)
    with pytest.raises(NotFittedError):
        clf.predict_proba(xt)
    clf.fit(xs, ys)
    auc = clf.evaluate(xt, yt)
    assert auc > 0.8, auc
    p = clf.predict_proba(xt)
    assert p.shape == (len(xt),) and ((p >= 0) & (p <= 1)).all()
    assert set(clf.predict(xt)) <= {0, 1}
    assert len(clf.feature_names_) == len(clf.coef_) == 20 + 400 + 1
    # composition only is weaker than a random guess? no: still informative
    assert SequenceClassifier(k=1).fit(xs, ys).evaluate(xt, yt) > 0.75


def test_sequence_classifier_errors():
    with pytest.raises(InputError, match="exactly two label values"):
        SequenceClassifier().fit(["KK", "LL", "AA"], [0, 1, -1])
    with pytest.raises(InputError, match="2 labels"):
        SequenceClassifier().fit(["KK", "LL", "AA"], [0, 1])
    with pytest.raises(ConfigError, match="k must be"):
        SequenceClassifier(k=(0,)).fit(["KK", "LL"], [0, 1])
    with pytest.raises(ConfigError, match="C must be"):
        SequenceClassifier(C=-1).fit(["KK", "LL"], [0, 1])


def test_describer_columns():
    tokens = {"KKKK": 0, "GLWK": 1, "": 2, "KXK": 3}
    decoded = list(tokens)
    z = torch.arange(8.0).reshape(4, 2)
    describe = PeptideDescriber(
        lambda out: out,
        classifiers={"z0": lambda zz: zz[:, 0]},
        sequence_scorers={"n_k": lambda seqs: [s.count("K") for s in seqs]},
        descriptors=("charge", "length"),
    )
    cols = describe(decoded, z)
    assert tuple(cols) == describe.columns() == ("sequence", "valid", "charge", "length", "z0", "n_k")
    assert cols["sequence"] == tuple(decoded)
    np.testing.assert_array_equal(cols["valid"], [True, True, False, False])
    np.testing.assert_array_equal(cols["length"][:2], [4, 4])
    assert np.isnan(cols["charge"][2:]).all() and cols["charge"][0] > cols["charge"][1] > 0
    np.testing.assert_array_equal(cols["z0"], [0, 2, 4, 6])
    np.testing.assert_array_equal(cols["n_k"][:2], [4, 1])
    assert np.isnan(cols["n_k"][2:]).all()
    all_bad = PeptideDescriber(lambda out: out)([""], z[:1])
    assert np.isnan(all_bad["hydrophobicity"]).all()
    with pytest.raises(ConfigError, match="unknown descriptors"):
        PeptideDescriber(lambda out: out, descriptors=("charm",))
    with pytest.raises(ConfigError, match="used twice"):
        PeptideDescriber(lambda out: out, classifiers={"charge": lambda zz: zz})
    with pytest.raises(InputError, match="returned 1 scores for 4"):
        PeptideDescriber(lambda out: out, classifiers={"bad": lambda zz: [1.0]})(decoded, z)
