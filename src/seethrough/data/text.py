"""Synthetic text prompts whose evidence is known, for the language family's ground truth.

Two tasks, each a handful of words from :data:`VOCAB` (one word is one token of the bundled
``kv-lm`` tokenizer, which splits on whitespace and puts ``<bos>`` in front):

* **key-value retrieval** (:func:`kv_retrieval`): ``"c 7 ; a 2 ; e 9 ; a"`` answers
  ``"2"`` (pairs ``key value ;`` with letter keys and digit values, then the queried key). Keys and values are distinct within a
  prompt, so exactly one pair holds the answer: its value token is the evidence, its key
  token the supporting evidence. ``sep=True`` writes the pairs ``k3 = 7 ;`` and
  ``arrow=True`` the query ``a ->`` (same evidence; ``kv-lm`` was trained on the default
  format only).
* **copy / induction** (:func:`copy_task`): ``"d a g e b f d a g"`` answers ``"e"``: a run of
  distinct letters, then its beginning repeated; the next token is the one that followed the
  current token's earlier occurrence. That earlier ``"e"`` is the evidence, the earlier
  ``"g"`` (the current token's first occurrence) the supporting evidence.

Positions are **token positions of the tokenized prompt with its** ``<bos>`` (word ``i`` of
the prompt is token ``i + 1``; :attr:`TextTask.offset`), i.e. indices into
``TextModel.encode(prompt)[0]``. Generation is deterministic for a seed (one
``numpy.random.Generator`` consumed prompt after prompt).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .._core.errors import ConfigError

__all__ = [
    "TextTask",
    "kv_retrieval",
    "copy_task",
    "make_text_task",
    "TEXT_TASKS",
    "VOCAB",
    "SPECIAL_TOKENS",
    "KEYS",
    "VALUES",
    "LETTERS",
    "PUNCTUATION",
    "MAX_PROMPT_TOKENS",
]

#: Special tokens of the task vocabulary, in id order (``<pad>`` is id 0, ``<bos>`` id 1).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
#: Keys of the key-value task: the letters a..j (the copy task's symbols; see kv_retrieval).
KEYS: tuple[str, ...] = tuple("abcdefghij")
#: Word tokens ``k0`` .. ``k9`` in the vocabulary (ids 4..13), no longer used by the tasks.
_SPARE_KEYS: tuple[str, ...] = tuple(f"k{i}" for i in range(10))
#: Values of the key-value task.
VALUES: tuple[str, ...] = tuple(str(i) for i in range(10))
#: Separators of the key-value task: pair, pair end, query.
PUNCTUATION: tuple[str, ...] = ("=", ";", "->")
#: Symbols of the copy task.
LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz")
#: Every word of both tasks, specials first: the vocabulary of the bundled ``kv-lm``
#: (token id = index).
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + _SPARE_KEYS + VALUES + PUNCTUATION + LETTERS

#: The longest prompt of either task with the default settings, in tokens with ``<bos>``.
MAX_PROMPT_TOKENS = 32

#: The task names of :func:`make_text_task`.
TEXT_TASKS: tuple[str, ...] = ("kv", "copy")


@dataclass(frozen=True)
class TextTask:
    """Prompts of one synthetic task with their answers and evidence positions.

    Attributes:
        name: ``"kv"`` or ``"copy"``.
        prompts: the prompts (words separated by single spaces).
        answers: the one-word answer of each prompt (the next token).
        evidence: per prompt, the token position of the evidence (the token the answer is
            read from: the queried pair's value, the earlier occurrence of the answer).
        support: per prompt, every evidence position, sorted (the value and the key of the
            queried pair; the copied token and the earlier occurrence of the current token).
        seed: the seed the prompts were drawn with.
        offset: token position of the prompt's first word (1: the ``<bos>`` comes first).
    """

    name: str
    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    evidence: tuple[int, ...]
    support: tuple[tuple[int, ...], ...]
    seed: int
    offset: int = 1

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        """``(prompt, answer, evidence position)`` per prompt."""
        return iter(zip(self.prompts, self.answers, self.evidence))

    def words(self, i: int) -> list[str]:
        """The words of prompt ``i`` (its tokens without ``<bos>``)."""
        return self.prompts[i].split(" ")

    def tokens(self, i: int) -> list[str]:
        """The tokens of prompt ``i`` as the bundled tokenizer makes them (``<bos>`` first)."""
        return ["<bos>"] * self.offset + self.words(i)

    def n_tokens(self, i: int) -> int:
        """Number of tokens of prompt ``i`` with ``<bos>``."""
        return self.offset + len(self.words(i))


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be an int >= 0, got {n!r}")
    return n


def _check_range(name: str, r: tuple[int, int], lo: int, hi: int) -> tuple[int, int]:
    if not (isinstance(r, tuple | list) and len(r) == 2 and all(isinstance(v, int) for v in r)):
        raise ConfigError(f"{name} must be a pair (min, max) of ints, got {r!r}")
    a, b = int(r[0]), int(r[1])
    if not lo <= a <= b <= hi:
        raise ConfigError(f"{name} must satisfy {lo} <= min <= max <= {hi}, got {r!r}")
    return a, b


def kv_retrieval(
    n: int, *, seed: int = 0, pairs: tuple[int, int] = (2, 6), sep: bool = False, arrow: bool = False
) -> TextTask:
    """Key-value retrieval prompts: ``"c 7 ; a 2 ; e 9 ; a"`` answers ``"2"``.

    Each prompt lists between ``pairs[0]`` and ``pairs[1]`` pairs ``key value ;`` with
    distinct keys and distinct values, then queries one of the keys (uniformly) by naming it.
    Evidence: the queried value; support: the queried key and value.

    The default format is the one ``kv-lm`` was trained on: its answer is an induction step
    (the queried key's earlier occurrence is followed by the answer), and its keys are the
    letters a..j, the symbols of :func:`copy_task`, so that the induction circuit the copy task
    trains serves both tasks. What we measured while training 2-block models (width 64,
    fresh prompts): with keys ``k0`` .. ``k9`` the key-value accuracy stayed at chance (about
    0.29: one of the prompt's values, named at random) in every run we tried: ``"k3 = 7 ; k1 ->"``
    prompts for 5,500 steps (loss on the answer only) and 2,500 steps (every pair queried),
    ``"k3 7 ; k1 ->"`` for 2,500 steps, ``"k3 7 ; k1"`` for 1,750 steps mixed with copy and
    3,000 steps alone; with letter keys (this format) it went from 0.28 to 1.0 between steps
    500 and 750 of the shipped run.

    Args:
        n: number of prompts.
        seed: seed of the generator.
        pairs: (min, max) number of pairs, within 1..7 (at most 7 keeps a prompt in
            :data:`MAX_PROMPT_TOKENS`).
        sep: pairs ``key = value ;``.
        arrow: query ``key ->`` (the key is then not the last token).
    """
    n = _check_n(n)
    lo, hi = _check_range("pairs", pairs, 1, 7)
    rng = np.random.default_rng(seed)
    prompts, answers, evidence, support = [], [], [], []
    for _ in range(n):
        k = int(rng.integers(lo, hi + 1))
        keys = rng.choice(len(KEYS), size=k, replace=False)
        vals = rng.choice(len(VALUES), size=k, replace=False)
        q = int(rng.integers(k))
        words: list[str] = []
        for key, val in zip(keys, vals):
            words += [KEYS[key], "=", VALUES[val], ";"] if sep else [KEYS[key], VALUES[val], ";"]
        words += [KEYS[keys[q]], "->"] if arrow else [KEYS[keys[q]]]
        prompts.append(" ".join(words))
        answers.append(VALUES[vals[q]])
        width = 4 if sep else 3
        key_pos = 1 + width * q
        val_pos = key_pos + width - 2
        evidence.append(val_pos)
        support.append((key_pos, val_pos))
    return TextTask("kv", tuple(prompts), tuple(answers), tuple(evidence), tuple(support), seed)


def copy_task(n: int, *, seed: int = 0, length: tuple[int, int] = (4, 10)) -> TextTask:
    """Copy (induction) prompts: ``"d a g e b f d a g"`` answers ``"e"``.

    Each prompt is a run of ``L`` distinct letters (``L`` uniform in ``length``) followed by
    its first ``m`` letters again (``m`` uniform in ``1 .. L - 1``); the answer is letter
    ``m`` of the run. Evidence: the answer's earlier occurrence (token ``1 + m``); support:
    also the earlier occurrence of the current (last) token (token ``m``).

    Args:
        n: number of prompts.
        seed: seed of the generator.
        length: (min, max) length of the run, within 2..15.
    """
    n = _check_n(n)
    lo, hi = _check_range("length", length, 2, 15)
    rng = np.random.default_rng(seed)
    prompts, answers, evidence, support = [], [], [], []
    for _ in range(n):
        L = int(rng.integers(lo, hi + 1))
        run = [LETTERS[i] for i in rng.choice(len(LETTERS), size=L, replace=False)]
        m = int(rng.integers(1, L))
        prompts.append(" ".join(run + run[:m]))
        answers.append(run[m])
        evidence.append(1 + m)
        support.append((m, 1 + m))
    return TextTask("copy", tuple(prompts), tuple(answers), tuple(evidence), tuple(support), seed)


def make_text_task(name: str, n: int, *, seed: int = 0) -> TextTask:
    """The task called ``name`` (``"kv"`` or ``"copy"``) with its default settings."""
    if name == "kv":
        return kv_retrieval(n, seed=seed)
    if name == "copy":
        return copy_task(n, seed=seed)
    raise ConfigError(f"unknown text task {name!r}; choose from {', '.join(TEXT_TASKS)}")
