"""Training of the bundled tiny language model ``kv-lm`` (``scripts/train_lm.py``).

``kv-lm`` is a transformers ``LlamaForCausalLM`` (:func:`lm_config`: 2 blocks, width 64, 4
heads) with a word-level tokenizer over :data:`seethrough.data.text.VOCAB`
(:func:`build_tokenizer`: whitespace split, one word one token, ``<bos>`` in front), trained
on the two synthetic tasks of :mod:`seethrough.data.text` mixed half and half: key-value
retrieval and copy (induction), in the default formats of :func:`~seethrough.data.text.kv_retrieval`
and :func:`~seethrough.data.text.copy_task`. The loss is the cross-entropy of every token
that the prompt determines (:func:`_training_rows`): a key-value prompt is extended by
queries of all its other keys, a copy prompt is scored at each repeated position. Each step draws fresh prompts (seed ``seed * 1_000_000 + step``), the
validation prompts that decide early stopping use ``seed + 2 * TEST_SEED_OFFSET``, the
held-out test prompts of the card ``seed + TEST_SEED_OFFSET``; so training is deterministic
for a seed on CPU (seeded data, weights, order; deterministic algorithms on).

The model directory (:func:`save_lm`) is a plain Hugging Face one (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``) plus ``card.json``,
the zoo card with the training settings and the held-out answer accuracy of each task.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data.text import SPECIAL_TOKENS, VOCAB, TextTask, copy_task, kv_retrieval
from .language import CARD_FILE
from .train import TEST_SEED_OFFSET, _deterministic, progress_bar

__all__ = [
    "build_tokenizer",
    "lm_config",
    "encode_task",
    "answer_accuracy",
    "train_kv_lm",
    "save_lm",
    "LM_RECIPES",
    "train_lm_zoo",
    "CARD_FILE",
]

_PAD, _BOS, _EOS, _UNK = (VOCAB.index(t) for t in SPECIAL_TOKENS)


def build_tokenizer(*, max_length: int = 64) -> Any:
    """The word-level fast tokenizer of ``kv-lm``: token id = index in :data:`VOCAB`,
    whitespace split, ``<bos>`` put in front of every text (``add_special_tokens=True``)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", _BOS)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.model_max_length = max_length
    return fast


def lm_config(*, layers: int = 2, hidden: int = 64, heads: int = 4, context: int = 64) -> Any:
    """The ``LlamaConfig`` of ``kv-lm`` (full multi-head attention, untied embeddings)."""
    import transformers

    return transformers.LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context,
        bos_token_id=_BOS,
        eos_token_id=_EOS,
        pad_token_id=_PAD,
        tie_word_embeddings=False,
        attention_dropout=0.0,
    )


_INDEX = {w: i for i, w in enumerate(VOCAB)}


def encode_task(task: TextTask) -> tuple[Tensor, Tensor, Tensor]:
    """``(ids, last, answers)``: the prompts as ids ``(N, T)`` with ``<bos>``, right-padded
    with ``<pad>``; the position of each prompt's last token ``(N,)``; the answer ids ``(N,)``.
    (The same ids as :func:`build_tokenizer` gives, without the tokenizer's overhead.)"""
    rows = [[_BOS] + [_INDEX[w] for w in p.split(" ")] for p in task.prompts]
    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), _PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    last = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
    answers = torch.tensor([_INDEX[a] for a in task.answers], dtype=torch.long)
    return ids, last, answers


def _answer_logits(model: nn.Module, ids: Tensor, last: Tensor) -> Tensor:
    # Right padding under a causal mask: the padding never reaches a prompt's own positions.
    logits = model(input_ids=ids).logits
    return logits[torch.arange(len(ids)), last]


@torch.no_grad()
def answer_accuracy(model: nn.Module, task: TextTask, *, batch_size: int = 500) -> float:
    """Fraction of ``task``'s prompts whose greedy next token is the answer (``model`` in eval
    mode for the duration, restored after)."""
    was = model.training
    model.eval()
    try:
        ids, last, answers = encode_task(task)
        correct = 0
        for i in range(0, len(ids), batch_size):
            sl = slice(i, i + batch_size)
            pred = _answer_logits(model, ids[sl], last[sl]).argmax(-1)
            correct += int((pred == answers[sl]).sum())
        return correct / max(1, len(ids))
    finally:
        model.train(was)


def _training_rows(task: TextTask, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
    """Training sequences of ``task`` as ``(ids, targets)`` (target -100: no loss there).

    A key-value prompt is followed by its answer and then queries of all its other keys in a
    random order (``... ; e 9 ; c 7``), each answer a target: one prompt teaches every pair. A
    copy prompt gets a target at each repeated position (the repeat predicts the run)."""
    rows = []
    for i, prompt in enumerate(task.prompts):
        words = prompt.split(" ")
        ids = [_BOS] + [_INDEX[w] for w in words]
        tgt = [-100] * len(ids)
        if task.name == "kv":
            arrow = words[-1] == "->"
            query = words[-2] if arrow else words[-1]
            pairs = [w for w in words[: -2 if arrow else -1] if w not in ("=", ";")]
            table = dict(zip(pairs[0::2], pairs[1::2]))
            rest = [k for k in table if k != query]
            tgt[-1] = _INDEX[task.answers[i]]
            for j in rng.permutation(len(rest)):
                k = rest[int(j)]
                # the previous query's answer and ";", then the next query
                ids += [tgt[-1], _INDEX[";"], _INDEX[k]] + ([_INDEX["->"]] if arrow else [])
                tgt += [-100, -100] + [-100] * arrow + [_INDEX[table[k]]]
        else:
            # prompt: <bos> run(L) run[:m]; the token at position p > L predicts run[p - L]
            run_len = ids.index(ids[1], 2) - 1
            for pos in range(run_len + 1, len(ids) - 1):
                tgt[pos] = ids[pos + 1 - run_len]
            tgt[-1] = _INDEX[task.answers[i]]
        rows.append((ids, tgt))
    return rows


def _batch(step: int, seed: int, batch_size: int, sep: bool) -> tuple[Tensor, Tensor]:
    s = seed * 1_000_000 + step
    half = batch_size // 2
    rng = np.random.default_rng(s)
    rows = _training_rows(kv_retrieval(half, seed=2 * s, sep=sep), rng) + _training_rows(
        copy_task(batch_size - half, seed=2 * s + 1), rng
    )
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), _PAD, dtype=torch.long)
    tgt = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (r, t) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        tgt[i, : len(t)] = torch.tensor(t)
    return ids, tgt


def train_kv_lm(
    *,
    steps: int = 8000,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    warmup: int = 300,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    seed: int = 0,
    n_val: int = 500,
    n_test: int = 2000,
    eval_every: int = 250,
    stop_at: float = 0.999,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    kv_sep: bool = False,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Train ``kv-lm`` on both tasks mixed; stop early once the validation answer accuracy
    of both tasks reaches ``stop_at`` (checked every ``eval_every`` steps).

    AdamW with linear warm-up over ``warmup`` steps and cosine decay over ``steps``.

    Returns:
        The model (eval mode), its tokenizer and the metrics (held-out answer accuracy per
        task on ``n_test`` fresh prompts each, the loss and validation history, timings).
    """
    import transformers

    t0 = time.perf_counter()
    val_seed, test_seed = seed + 2 * TEST_SEED_OFFSET, seed + TEST_SEED_OFFSET
    val = {"kv": kv_retrieval(n_val, seed=val_seed, sep=kv_sep), "copy": copy_task(n_val, seed=val_seed + 1)}
    with _deterministic(seed):
        config = lm_config(layers=layers, hidden=hidden, heads=heads)
        model = transformers.LlamaForCausalLM(config)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

        def schedule(i: int) -> float:
            if i < warmup:
                return (i + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (i - warmup) / max(1, steps - warmup))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        bar = progress_bar(steps, "kv-lm", progress)
        history: dict[str, list[Any]] = {"step": [], "loss": [], "val_kv": [], "val_copy": []}
        run_loss, done = 0.0, 0
        model.train()
        for step in range(steps):
            ids, tgt = _batch(step, seed, batch_size, kv_sep)
            logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run_loss += loss.item()
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if done % eval_every == 0 or done == steps:
                acc = {k: answer_accuracy(model, t) for k, t in val.items()}
                history["step"].append(done)
                history["loss"].append(round(run_loss / eval_every, 5))
                history["val_kv"].append(acc["kv"])
                history["val_copy"].append(acc["copy"])
                if log is not None:
                    log(f"step {done}: loss {history['loss'][-1]:.4f}, val kv {acc['kv']:.3f}, copy {acc['copy']:.3f}")
                run_loss = 0.0
                if min(acc.values()) >= stop_at:
                    break
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t0
        model.eval()
        test = {"kv": kv_retrieval(n_test, seed=test_seed, sep=kv_sep), "copy": copy_task(n_test, seed=test_seed + 1)}
        test_acc = {k: answer_accuracy(model, t) for k, t in test.items()}
    metrics: dict[str, Any] = {
        "test_accuracy_kv": test_acc["kv"],
        "test_accuracy_copy": test_acc["copy"],
        "test_accuracy": min(test_acc.values()),
        "n_test": n_test,
        "test_seed_kv": test_seed,
        "test_seed_copy": test_seed + 1,
        "val_seed": val_seed,
        "n_val": n_val,
        "history": history,
        "steps_run": done,
        "steps": steps,
        "stop_at": stop_at,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "seed": seed,
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "data": (
            "seethrough.data.text: kv_retrieval (2-6 pairs, default format) and copy_task (runs of 4-10 letters), "
            "half and half; fresh prompts every step; a key-value prompt extended by queries of all its keys, "
            "loss on every determined token"
        ),
    }
    return model, build_tokenizer(), metrics


def save_lm(model: nn.Module, tokenizer: Any, out_dir: str | Path, card: dict[str, Any]) -> Path:
    """Write ``model`` and ``tokenizer`` (``save_pretrained``) and ``card`` (``card.json``)
    into ``out_dir``, atomically: everything goes to a temporary folder beside it that then
    replaces ``out_dir`` (a run interrupted midway leaves the old folder intact)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)  # type: ignore[operator]
        tokenizer.save_pretrained(tmp)
        card = {**card}
        card.setdefault("date", _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


#: How ``kv-lm`` is trained: (trainer, full settings, quick settings for tests).
LM_RECIPES: dict[str, tuple[Callable[..., tuple[nn.Module, Any, dict[str, Any]]], dict[str, Any], dict[str, Any]]] = {
    "kv-lm": (
        train_kv_lm,
        dict(steps=4000, batch_size=64, lr=3e-3, seed=0),
        dict(steps=20, batch_size=16, seed=0, n_val=32, n_test=64, eval_every=10, warmup=5),
    ),
}


def train_lm_zoo(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """Train the named language models of :data:`LM_RECIPES` (all by default) and write each
    to ``<out_dir>/<name>/`` (default: the package's weights folder). Returns ``{name: metrics}``."""
    from . import WEIGHTS_DIR

    names = list(LM_RECIPES) if names is None else list(names)
    for name in names:
        if name not in LM_RECIPES:
            raise KeyError(f"no training recipe for {name!r}; choose from {', '.join(LM_RECIPES)}")
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        trainer, full, small = LM_RECIPES[name]
        kwargs = dict(small if quick else full)
        t0 = time.perf_counter()
        model, tokenizer, metrics = trainer(**kwargs, progress=progress, log=log)
        metrics["total_seconds"] = round(time.perf_counter() - t0, 2)
        metrics["quick"] = quick
        card = {
            "name": name,
            "architecture": type(model).__name__,
            "kind": "language-model",
            "seed": str(kwargs.get("seed", 0)),
            "command": command or f"seethrough.zoo.train_lm.train_lm_zoo({[name]!r}, quick={quick})",
            "torch_version": torch.__version__,
            "transformers_version": __import__("transformers").__version__,
            "metrics": metrics,
        }
        path = save_lm(model, tokenizer, out / name, card)
        results[name] = metrics
        if log is not None:
            log(
                f"{name}: held-out answer accuracy kv {metrics['test_accuracy_kv']:.4f}, copy "
                f"{metrics['test_accuracy_copy']:.4f} after {metrics['steps_run']} steps, "
                f"{metrics['total_seconds']:.0f} s -> {path}"
            )
    return results
