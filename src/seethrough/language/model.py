"""One view of a language model: :class:`TextModel`, a transformers model with its tokenizer.

Every method of the language family takes a :class:`TextModel`. It knows where the parts of
the network are, by their dotted ``named_modules()`` paths (the token embedding, the blocks,
each block's attention and MLP, the final norm and the unembedding), found once from the
model's structure, so that a Llama-style causal LM (SmolLM2, the bundled ``kv-lm``), a BERT
encoder (all-MiniLM-L6-v2) or any transformers model of the same shape needs no
configuration; a model of another layout names its parts by keyword. It turns text into
token ids with the checks every method needs (an empty prompt, a prompt longer than the
context, a target that is not one token), and runs the model under
:func:`~seethrough._core.state.model_guard`.

transformers is an optional dependency (``pip install 'seethrough[text]'``): this module
imports it only inside the functions that need it, and :func:`require` names the package to
install when it is missing.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, InputError
from .._core.layers import resolve_layer
from .._core.state import model_guard

__all__ = [
    "TextModel",
    "require",
    "MissingDependency",
    "NotATextModel",
    "EmptyPrompt",
    "PromptTooLong",
    "NotOneToken",
    "EncoderCannotGenerate",
]

_INSTALL = {
    "transformers": "pip install 'seethrough[text]' (transformers, tokenizers)",
    "tokenizers": "pip install 'seethrough[text]' (transformers, tokenizers)",
    "gguf": "pip install 'seethrough[text]' (gguf, to read GGUF checkpoints such as SmolLM2)",
    "accelerate": "pip install 'seethrough[text]' (accelerate)",
    "sentence_transformers": "pip install sentence-transformers",
}


class MissingDependency(ConfigError, ImportError):
    """An optional package the language family needs is not installed; the message says
    which one, and the command that installs it."""


class NotATextModel(ConfigError):
    """The model is not a transformers language model whose parts could be found."""


class EmptyPrompt(InputError):
    """The prompt has no tokens."""


class PromptTooLong(InputError):
    """The prompt has more tokens than the model's context."""


class NotOneToken(InputError):
    """A text that should be one token is several (``ids``) or none. A multi-token target
    can be attributed as a sequence log-probability instead."""

    def __init__(self, message: str, ids: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.ids = list(ids)


class EncoderCannotGenerate(ConfigError):
    """Generation was asked of an encoder (it has no next-token head)."""


def require(package: str) -> Any:
    """Import ``package`` (e.g. ``"transformers"``) or raise :class:`MissingDependency` naming
    the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        how = _INSTALL.get(package, f"pip install {package}")
        raise MissingDependency(
            f"the language-model methods need the optional package {package!r}, which is not installed: {how}"
        ) from e


_ATTENTION_NAMES = ("self_attn", "attention", "attn", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")


def _name_of(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    for name, mod in model.named_modules():
        if mod is target:
            return name
    return None


class TextModel:
    """A transformers language model (causal or encoder) and its tokenizer.

    ``TextModel(model, tokenizer)`` only stores them; the parts are found on first use.
    Keywords override what would be found (dotted ``named_modules()`` paths): ``kind``
    (``"causal"`` or ``"encoder"``), ``embedding``, ``blocks``, ``attentions``, ``mlps``,
    ``final_norm``, ``unembed``.

    Attributes (read-only): ``model``, ``tokenizer``, ``kind``, ``embedding``, ``blocks``,
    ``attentions``, ``mlps``, ``final_norm``, ``unembed``, ``n_layers``, ``n_heads``,
    ``vocab_size``, ``context_length``, ``name``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        name: str | None = None,
        kind: str | None = None,
        embedding: str | None = None,
        blocks: Sequence[str] | None = None,
        attentions: Sequence[str] | None = None,
        mlps: Sequence[str] | None = None,
        final_norm: str | None = None,
        unembed: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"TextModel wraps a torch.nn.Module (a transformers model), not {type(model).__name__}")
        if kind is not None and kind not in ("causal", "encoder"):
            raise ConfigError(f"kind must be 'causal' or 'encoder', got {kind!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or type(model).__name__
        self._given = {
            "kind": kind,
            "embedding": embedding,
            "blocks": list(blocks) if blocks is not None else None,
            "attentions": list(attentions) if attentions is not None else None,
            "mlps": list(mlps) if mlps is not None else None,
            "final_norm": final_norm,
            "unembed": unembed,
        }
        self._parts: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"TextModel({self.name}, kind={self.kind!r}, layers={self.n_layers})"

    # -- the parts --------------------------------------------------------------------------
    def _find(self) -> dict[str, Any]:
        if self._parts is not None:
            return self._parts
        m: Any = self.model
        g: dict[str, Any] = self._given
        config = getattr(m, "config", None)
        parts: dict[str, Any] = {}

        kind = g["kind"]
        if kind is None:
            arch = type(m).__name__
            is_lm = arch.endswith(("ForCausalLM", "LMHeadModel")) or bool(getattr(config, "is_decoder", False))
            kind = "causal" if is_lm else "encoder"
        parts["kind"] = kind

        emb = g["embedding"]
        if emb is None and hasattr(m, "get_input_embeddings"):
            emb = _name_of(m, m.get_input_embeddings())
        if emb is None:
            embs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Embedding)]
            emb = embs[0] if embs else None
        if emb is None:
            raise NotATextModel(
                f"{type(m).__name__} has no token embedding (no nn.Embedding module): it is not a language model "
                f"seethrough can read. Pass embedding='<dotted name>' to TextModel if it has one under another type."
            )
        resolve_layer(m, emb)
        parts["embedding"] = emb

        blocks = g["blocks"]
        if blocks is None:
            n = getattr(config, "num_hidden_layers", None)
            for name, mod in m.named_modules():
                if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
                    blocks = [f"{name}.{i}" for i in range(len(mod))]
                    break
        if not blocks:
            raise NotATextModel(
                f"found no stack of transformer blocks (an nn.ModuleList of num_hidden_layers modules) in "
                f"{type(m).__name__}; pass blocks=[...] (dotted names) to TextModel"
            )
        for b in blocks:
            resolve_layer(m, b)
        parts["blocks"] = list(blocks)

        def child(block: str, names: Sequence[str], what: str, key: str) -> list[str]:
            given = g[key]
            if given is not None:
                for x in given:
                    resolve_layer(m, x)
                return list(given)
            out = []
            for b in blocks:
                _, mod = resolve_layer(m, b)
                kids = dict(mod.named_children())
                hit = next((k for k in names if k in kids), None)
                if hit is None:
                    near = difflib.get_close_matches(names[0], list(kids), n=3, cutoff=0.3)
                    raise NotATextModel(
                        f"block {b!r} has no {what} module (looked for {', '.join(names)}; it has "
                        f"{', '.join(kids) or 'no children'}{'; close: ' + ', '.join(near) if near else ''}); "
                        f"pass {key}=[...] to TextModel"
                    )
                out.append(f"{b}.{hit}")
            return out

        parts["attentions"] = child(blocks[0], _ATTENTION_NAMES, "attention", "attentions")
        if g["mlps"] is not None:
            parts["mlps"] = child(blocks[0], _MLP_NAMES, "MLP", "mlps")
        else:
            _, first = resolve_layer(m, blocks[0])
            kids = dict(first.named_children())
            if any(k in kids for k in _MLP_NAMES):
                parts["mlps"] = child(blocks[0], _MLP_NAMES, "MLP", "mlps")
            elif "intermediate" in kids and "output" in kids:  # BERT: intermediate -> output.dense
                parts["mlps"] = [f"{b}.output.dense" for b in blocks]
            else:
                parts["mlps"] = []

        norm = g["final_norm"]
        if norm is None:
            stack_parent = blocks[0].rsplit(".", 2)[0] if blocks[0].count(".") >= 2 else ""
            _, base = resolve_layer(m, stack_parent) if stack_parent else ("", m)
            kids = dict(base.named_children())
            hit = next((k for k in _NORM_NAMES if k in kids), None)
            if hit is not None:
                norm = f"{stack_parent}.{hit}" if stack_parent else hit
        parts["final_norm"] = norm

        un = g["unembed"]
        if un is None and hasattr(m, "get_output_embeddings"):
            out_emb = m.get_output_embeddings()
            un = _name_of(m, out_emb) if isinstance(out_emb, nn.Module) else None
        parts["unembed"] = un
        if kind == "causal" and un is None:
            raise NotATextModel(
                f"{type(m).__name__} is a causal LM without an output embedding (unembedding); pass unembed='<name>'"
            )

        parts["n_heads"] = int(getattr(config, "num_attention_heads", 0) or 0)
        _, emb_mod = resolve_layer(m, emb)
        parts["vocab_size"] = int(getattr(emb_mod, "num_embeddings", 0) or getattr(config, "vocab_size", 0))
        ctx = getattr(config, "max_position_embeddings", None)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 10**8:
            ctx = min(ctx, tok_max) if ctx else tok_max
        parts["context_length"] = int(ctx) if ctx else None
        self._parts = parts
        return parts

    @property
    def kind(self) -> str:
        return self._find()["kind"]

    @property
    def embedding(self) -> str:
        return self._find()["embedding"]

    @property
    def blocks(self) -> list[str]:
        return list(self._find()["blocks"])

    @property
    def attentions(self) -> list[str]:
        return list(self._find()["attentions"])

    @property
    def mlps(self) -> list[str]:
        return list(self._find()["mlps"])

    @property
    def final_norm(self) -> str | None:
        return self._find()["final_norm"]

    @property
    def unembed(self) -> str | None:
        return self._find()["unembed"]

    @property
    def n_layers(self) -> int:
        return len(self._find()["blocks"])

    @property
    def n_heads(self) -> int:
        return self._find()["n_heads"]

    @property
    def vocab_size(self) -> int:
        return self._find()["vocab_size"]

    @property
    def context_length(self) -> int | None:
        return self._find()["context_length"]

    def module(self, name: str) -> nn.Module:
        """The submodule at dotted path ``name`` (a miss lists the closest names)."""
        return resolve_layer(self.model, name)[1]

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # -- text <-> ids ----------------------------------------------------------------------
    def _tok(self) -> Any:
        if self.tokenizer is None:
            raise ConfigError(
                "this TextModel has no tokenizer: pass token ids (a LongTensor (1, T)) instead of text, or build it "
                "with TextModel(model, tokenizer)"
            )
        return self.tokenizer

    def encode(self, text: str, *, special: bool = True) -> Tensor:
        """Token ids ``(1, T)`` of ``text`` on the model's device (``special``: with the
        tokenizer's special tokens, e.g. [CLS]/[SEP] or a BOS)."""
        if not isinstance(text, str):
            raise InputError(f"a prompt is a str, got {type(text).__name__}")
        if not text.strip():
            raise EmptyPrompt(
                "the prompt is empty: give some text to explain (e.g. --prompt 'The capital of France is')"
            )
        ids = self._tok()(text, add_special_tokens=special, return_tensors="pt")["input_ids"]
        return self.check_ids(ids.to(self.device))

    def check_ids(self, ids: Tensor) -> Tensor:
        """Check token ids ``(B, T)``: integer, non-empty, within the vocabulary and the context."""
        if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise InputError(f"token ids must be an integer tensor (B, T), got {getattr(ids, 'dtype', type(ids))}")
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2:
            raise InputError(f"token ids must have shape (B, T), got {tuple(ids.shape)}")
        if ids.shape[1] == 0:
            raise EmptyPrompt("the prompt has no tokens: give some text to explain")
        ctx = self.context_length
        if ctx is not None and ids.shape[1] > ctx:
            raise PromptTooLong(
                f"the prompt has {ids.shape[1]} tokens but {self.name} has a context of {ctx}: shorten it to at "
                f"most {ctx} tokens"
            )
        if int(ids.min()) < 0 or (self.vocab_size and int(ids.max()) >= self.vocab_size):
            raise InputError(f"token ids must lie in 0..{self.vocab_size - 1}, got {int(ids.min())}..{int(ids.max())}")
        return ids.long()

    def ids(self, prompt: str | Tensor, *, special: bool = True) -> Tensor:
        """``prompt`` as checked ids ``(1, T)`` (or ``(B, T)`` when given as ids)."""
        return self.encode(prompt, special=special) if isinstance(prompt, str) else self.check_ids(prompt)

    def tokens(self, ids: Tensor | Sequence[int]) -> list[str]:
        """Display strings of one sequence of ids (``(T,)`` or ``(1, T)``)."""
        flat = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)
        if self.tokenizer is None:
            return [str(i) for i in flat]
        return [self.tokenizer.decode([i]) for i in flat]

    def token_id(self, text: str | int) -> int:
        """The id of ``text`` if it is exactly one token (an int is checked and returned);
        :class:`NotOneToken` otherwise. Causal tokenizers mark a leading space: ``" Paris"``
        and ``"Paris"`` are different tokens."""
        if isinstance(text, int):
            if not 0 <= text < max(self.vocab_size, 1):
                raise InputError(f"token id {text} is out of range 0..{self.vocab_size - 1}")
            return int(text)
        if not isinstance(text, str) or text == "":
            raise NotOneToken("the target token is empty: give a token such as ' Paris'")
        ids = self._tok()(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
        hint = ""
        if not text.startswith(" "):
            alt = self._tok()(" " + text, add_special_tokens=False)["input_ids"]
            if len(alt) == 1:
                hint = f"; {' ' + text!r} (with a leading space) is one token, id {alt[0]}"
        pieces = self.tokens(ids)
        raise NotOneToken(
            f"{text!r} is {len(ids)} tokens {pieces}, not one{hint}. To explain a continuation of several "
            f"tokens, attribute its sequence log-probability instead (target=<the text>, which the methods then "
            f"score with SequenceLogProb, and say so)",
            ids,
        )

    def continuation_ids(self, text: str) -> Tensor:
        """The ids ``(L,)`` of a continuation (no special tokens); :class:`EmptyPrompt` if none."""
        ids = self._tok()(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise EmptyPrompt(f"the continuation {text!r} has no tokens")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    # -- running ---------------------------------------------------------------------------
    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Any:
        """The model's raw output on ``ids`` (no guard, no grad control: for methods that
        already run inside :func:`model_guard`)."""
        if self.kind == "causal":
            kwargs.setdefault("use_cache", False)
        return self.model(input_ids=ids, attention_mask=attention_mask, **kwargs)

    def logits(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits ``(B, T, V)`` of a causal LM (for an encoder: the last hidden
        states ``(B, T, D)``). Runs as it is called: wrap in ``torch.no_grad()`` or
        :func:`model_guard` as needed."""
        out = self.forward(ids, attention_mask)
        if self.kind == "causal":
            return out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, tuple) else out)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def generate(self, ids: Tensor | str, n: int, *, stop_at_eos: bool = False) -> Tensor:
        """Greedy continuation: ``ids`` ``(1, T)`` followed by ``n`` generated tokens ``(1, T + n)``
        (fewer with ``stop_at_eos`` when the end-of-sequence token comes first)."""
        if self.kind != "causal":
            raise EncoderCannotGenerate(
                f"{self.name} is an encoder: it has no next-token head and cannot generate. Use a causal LM "
                f"(e.g. --model smollm2 or kv-lm), or explain a similarity (seethrough text similarity)"
            )
        if not isinstance(n, int) or n < 0:
            raise ConfigError(f"the number of tokens to generate must be an int >= 0, got {n!r}")
        x = self.ids(ids) if isinstance(ids, str) else self.check_ids(ids)
        if x.shape[0] != 1:
            raise InputError(f"generate takes one prompt (1, T), got a batch of {x.shape[0]}")
        ctx = self.context_length
        if ctx is not None and x.shape[1] + n > ctx:
            raise PromptTooLong(
                f"the prompt ({x.shape[1]} tokens) and {n} generated tokens exceed the context of {ctx}: generate "
                f"at most {ctx - x.shape[1]} tokens"
            )
        eos = getattr(self.tokenizer, "eos_token_id", None)
        with model_guard(self.model, method="generation"), torch.no_grad():
            for _ in range(n):
                nxt = self.logits(x)[:, -1].argmax(-1, keepdim=True)
                x = torch.cat([x, nxt], dim=1)
                if stop_at_eos and eos is not None and int(nxt) == eos:
                    break
        return x
