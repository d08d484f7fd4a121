"""Tests of the synthetic text tasks with known evidence (seethrough.data.text)."""

from __future__ import annotations

import pytest

from seethrough._core.errors import ConfigError
from seethrough.data.text import (
    KEYS,
    LETTERS,
    MAX_PROMPT_TOKENS,
    TEXT_TASKS,
    VALUES,
    VOCAB,
    TextTask,
    copy_task,
    kv_retrieval,
    make_text_task,
)


def test_vocabulary_one_word_one_id():
    assert len(set(VOCAB)) == len(VOCAB)
    assert VOCAB[:2] == ("<pad>", "<bos>")
    assert all(" " not in w for w in VOCAB)


def test_kv_example_and_evidence():
    t = kv_retrieval(300, seed=4)
    assert isinstance(t, TextTask) and t.name == "kv" and len(t) == 300 and t.offset == 1
    for i, (prompt, answer, ev) in enumerate(t):
        words = prompt.split(" ")
        assert all(w in VOCAB for w in words)
        toks = t.tokens(i)
        assert toks[0] == "<bos>" and toks[1:] == words
        assert toks[-1] in KEYS and toks[-2] == ";"
        key_pos, val_pos = t.support[i]
        assert val_pos == ev and toks[ev] == answer and answer in VALUES
        assert toks[key_pos] == toks[-1] and key_pos + 1 == val_pos and toks[val_pos + 1] == ";"
        pairs = words[:-1]
        keys, vals = pairs[0::3], pairs[1::3]
        assert len(set(keys)) == len(keys) and len(set(vals)) == len(vals)  # one pair holds the answer
        assert dict(zip(keys, vals))[words[-1]] == answer
        assert 2 <= len(keys) <= 6 and t.n_tokens(i) <= MAX_PROMPT_TOKENS


def test_copy_example_and_evidence():
    t = copy_task(300, seed=5)
    assert t.name == "copy"
    for i, (_prompt, answer, ev) in enumerate(t):
        toks = t.tokens(i)
        assert all(w in LETTERS for w in toks[1:])
        cur = toks[-1]
        first = toks.index(cur)
        assert t.support[i] == (first, first + 1) and ev == first + 1
        assert toks[ev] == answer
        n = len(toks) - 1
        m = n - toks[1:].index(toks[1], 1) if toks[1:].count(toks[1]) > 1 else None
        assert m is not None and 1 <= m
        run = toks[1 : n - m + 1]
        assert len(set(run)) == len(run) and toks[n - m + 1 :] == run[:m] and run[m] == answer
        assert t.n_tokens(i) <= MAX_PROMPT_TOKENS


def test_deterministic_and_seed_dependent():
    assert kv_retrieval(50, seed=1) == kv_retrieval(50, seed=1)
    assert copy_task(50, seed=1) == copy_task(50, seed=1)
    assert kv_retrieval(50, seed=1).prompts != kv_retrieval(50, seed=2).prompts
    assert make_text_task("kv", 20, seed=3) == kv_retrieval(20, seed=3)
    assert make_text_task("copy", 20, seed=3) == copy_task(20, seed=3)
    assert TEXT_TASKS == ("kv", "copy")


def test_kv_formats():
    plain = kv_retrieval(30, seed=2)
    arrow = kv_retrieval(30, seed=2, sep=True, arrow=True)
    assert plain.answers == arrow.answers
    for i in range(30):
        toks = arrow.tokens(i)
        assert toks[-1] == "->" and toks[arrow.evidence[i]] == arrow.answers[i]
        k, v = arrow.support[i]
        assert toks[k] == toks[-2] and toks[k + 1] == "=" and k + 2 == v
        assert arrow.prompts[i].replace(" =", "") == plain.prompts[i] + " ->"
    assert arrow.prompts[0].split(" ")[:4][1] == "="


def test_options_and_bad_settings():
    t = kv_retrieval(40, seed=0, pairs=(7, 7), sep=True, arrow=True)
    assert all(t.n_tokens(i) == 1 + 7 * 4 + 2 for i in range(len(t))) and max(map(t.n_tokens, range(40))) <= 32
    c = copy_task(40, seed=0, length=(3, 3))
    assert all(c.n_tokens(i) in (5, 6) for i in range(len(c)))
    assert len(kv_retrieval(0)) == 0
    for bad in (dict(pairs=(0, 3)), dict(pairs=(5, 2)), dict(pairs=(1, 8)), dict(pairs=3)):
        with pytest.raises(ConfigError, match="pairs"):
            kv_retrieval(5, **bad)
    with pytest.raises(ConfigError, match="length"):
        copy_task(5, length=(1, 4))
    with pytest.raises(ConfigError, match="n must be"):
        kv_retrieval(-1)
    with pytest.raises(ConfigError, match="unknown text task"):
        make_text_task("qa", 3)
