"""ERASER faithfulness for token attributions: comprehensiveness and sufficiency.

DeYoung et al. (2020), "ERASER: A Benchmark to Evaluate Rationalized NLP Models": with
``p(y | x)`` the probability of the explained token,

- **comprehensiveness** = ``p(y | x) - p(y | x without its top-k% tokens)``: high when the
  tokens the map ranks first carry the prediction (higher is better);
- **sufficiency** = ``p(y | x) - p(y | only the top-k% tokens)``: low when those tokens alone
  are enough (lower is better).

Each is averaged over the bins ``k`` in ``(1, 5, 10, 20, 50)`` % (the paper's AOPC); the top
``ceil(k P / 100)`` tokens (at least one) of the ``P`` removable ones are taken, ties broken
by a seeded random order. Tokens are removed by **deletion** (the model reruns on the shorter
sequence, as in the paper) or by **replacement** with a token id (``replacement=``, e.g. the
unknown or pad token), which keeps the positions.

This is the faithfulness family's machinery applied to token ids: the same setup object,
seeded tie-breaking order (:func:`~seethrough.evaluation.faithfulness._order`), the forward
runner that scores the perturbed rows in chunks under ``model_guard``, and the same refusal of
non-finite scores. The metrics take any model mapping token ids ``(N, T)`` to logits
``(N, T, V)`` (a plain ``nn.Module``; this module does not know the language family),
``inputs`` the ids, ``maps`` one score per token ``(N, T)`` (or ``(N, T, D)``, summed over the
last dimension), and ``target``: ``None`` (the token predicted after each sequence), a token
id or one per sample (the next token's probability, ``TokenAt(-1, id, output="softmax")``),
or any :class:`~seethrough.Target` on the ``(N, T, V)`` output, scored as it is.
``keep=`` ``(T,)`` or ``(N, T)`` bool marks tokens that are never removed (e.g. a BOS token).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .._core.call import call_model
from .._core.errors import ConfigError, InputError
from .._core.state import model_guard
from .._core.targets import Target, TokenAt
from ._common import _check_choice, _source_name
from .faithfulness import _order, _score_rows, _Setup
from .metric import Metric, Score

__all__ = ["TokenFaithfulness", "Comprehensiveness", "Sufficiency", "comprehensiveness", "sufficiency", "ERASER_BINS"]

#: The paper's bins: percentages of the tokens removed (comprehensiveness) or kept (sufficiency).
ERASER_BINS = (1, 5, 10, 20, 50)


def _ids(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor) or inputs.dtype.is_floating_point or inputs.dtype == torch.bool:
        raise InputError(
            f"token faithfulness takes integer token ids (N, T), got {getattr(inputs, 'dtype', type(inputs).__name__)}"
        )
    x = inputs.unsqueeze(0) if inputs.dim() == 1 else inputs
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"token ids must have shape (N, T) with N, T >= 1, got {tuple(inputs.shape)}")
    return x.detach().long()


def _token_maps(maps: Any, x: Tensor) -> Tensor:
    m = getattr(maps, "scores", maps)  # a TokenAttribution-like result: its per-token scores
    if hasattr(m, "attributions") and not isinstance(m, Tensor):
        m = m.attributions
    m = torch.as_tensor(m).detach()
    if m.dim() == 1:
        m = m.unsqueeze(0)
    if m.dim() == 3:
        m = m.sum(-1)
    if tuple(m.shape) != tuple(x.shape):
        raise InputError(
            f"the token scores have shape {tuple(m.shape)} but the ids have {tuple(x.shape)}: give one score per token"
        )
    m = m.double().cpu()
    if not bool(torch.isfinite(m).all()):
        raise InputError("the token scores contain NaN or inf; give finite scores (e.g. torch.nan_to_num)")
    return m


def _keep_mask(keep: Any, x: Tensor) -> Tensor:
    if keep is None:
        return torch.zeros(x.shape, dtype=torch.bool)
    k = torch.as_tensor(keep, dtype=torch.bool).cpu()
    if k.dim() == 1:
        k = k.unsqueeze(0).expand(x.shape[0], -1)
    if tuple(k.shape) != tuple(x.shape):
        raise InputError(f"keep= has shape {tuple(k.shape)}; give (T,) or (N, T) like the ids {tuple(x.shape)}")
    return k.clone()


def _scoring_target(model: nn.Module, x: Tensor, target: Any) -> Target:
    if isinstance(target, Target):
        return target
    if target is None:
        with model_guard(model, method="token faithfulness"), torch.no_grad():
            out = call_model(model, x.clone())
        if out.dim() != 3:
            raise InputError(f"token faithfulness needs a model with logits (N, T, V); it returned {tuple(out.shape)}")
        return TokenAt(-1, out[:, -1].argmax(-1).cpu(), output="softmax")
    if isinstance(target, bool):
        raise ConfigError("a target cannot be a bool; give a token id")
    t = torch.as_tensor(target).reshape(-1).long()
    return TokenAt(-1, t if t.numel() > 1 else int(t[0]), output="softmax")


class TokenFaithfulness(Metric[_Setup]):
    """An ERASER metric on token ids (see the module docstring)."""

    family: ClassVar[str] = "faithfulness"
    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    defaults = {"bins": ERASER_BINS, "mode": "deletion", "replacement": 0, "keep": None}
    #: "remove" the top tokens (comprehensiveness) or "keep" only them (sufficiency).
    action: ClassVar[str] = "remove"

    def check(self, settings):
        settings = super().check(settings)
        _check_choice("mode", settings["mode"], ("deletion", "replacement"))
        bins = settings["bins"]
        if isinstance(bins, (int, float)):
            bins = (bins,)
        bins = tuple(float(b) for b in bins)
        if not bins or any(not 0 < b <= 100 for b in bins):
            raise ConfigError(f"bins are percentages of the tokens in (0, 100], got {settings['bins']!r}")
        settings["bins"] = bins
        r = settings["replacement"]
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ConfigError(f"replacement must be a token id (int >= 0), got {r!r}")
        return settings

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> _Setup:
        settings = self.check(settings)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"token faithfulness evaluates a torch.nn.Module (ids -> logits), not {type(model).__name__}"
            )
        x = _ids(inputs)
        values = _token_maps(maps, x)
        t = _scoring_target(model, x, target)
        t = t.resolve(model, None, x.shape[0]) if not t.needs_clean_output else t
        setup = _Setup(
            model,
            x,
            values,
            t,
            settings,
            seed,
            batching,
            getattr(maps, "method", None) or _source_name(maps),
            0,
            record={"target": t.describe()},
            output=str(getattr(t, "output", "target")),
            method=self.name,
        )
        return setup

    def score(self, setup: _Setup) -> Score:
        x, s = setup.x, setup.settings
        keep = _keep_mask(s["keep"], x)
        values = setup.maps.clone()
        values[keep] = -math.inf  # never chosen first; their ranks come last
        order = _order(values, setup.seed, descending=True)
        bins = s["bins"]
        n, T = x.shape
        removable = (~keep).sum(dim=1)  # per sample
        counts = torch.stack([torch.clamp(torch.ceil(removable * b / 100.0 - 1e-9).long(), min=1) for b in bins], dim=1)
        counts = torch.minimum(counts, removable.unsqueeze(1))
        if bool((removable == 0).any()):
            raise InputError("a sample has no removable token (keep= protects them all)")
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(T).expand(n, T).contiguous())
        # chosen[b, j, t]: token t of sample b is among its top counts[b, j]
        chosen = ranks.unsqueeze(1) < counts.unsqueeze(2)  # (n, J, T)
        drop = chosen if self.action == "remove" else (~chosen & ~keep.unsqueeze(1))
        J = len(bins)
        clean = self._clean(setup)
        if s["mode"] == "replacement":
            scores = self._replaced(setup, drop, int(s["replacement"]))
        else:
            scores = self._deleted(setup, drop)
        curve = clean.unsqueeze(1) - scores  # (n, J)
        return Score(
            curve.mean(dim=1),
            settings={
                "bins": list(bins),
                "mode": s["mode"],
                "replacement": int(s["replacement"]) if s["mode"] == "replacement" else None,
                "output": setup.output,
                "seed": setup.seed,
            },
            curves={"scores": scores, "differences": curve, "fractions": torch.tensor(bins, dtype=torch.float64) / 100},
            extras={"clean_score": clean, "counts": counts.reshape(n, J)},
        )

    # -- scoring ------------------------------------------------------------------------------
    def _clean(self, setup: _Setup) -> Tensor:
        x = setup.x
        return _score_rows(
            setup,
            x.shape[0],
            lambda sl: (x[sl], torch.arange(sl.start, sl.stop, device=x.device)),
            per=1,
            describe=lambda k: "the clean input",
            clean=0,
        )

    def _replaced(self, setup: _Setup, drop: Tensor, replacement: int) -> Tensor:
        x = setup.x
        n, J, T = drop.shape
        d = drop.to(x.device)

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            b, j = r // J, r % J
            return torch.where(d[b, j], torch.full_like(x[b], replacement), x[b]), b

        bins = setup.settings["bins"]
        return _score_rows(
            setup, n * J, rows, per=J, describe=lambda j: f"{bins[j]:g}% of the tokens {self._verb()}", clean=None
        ).reshape(n, J)

    def _deleted(self, setup: _Setup, drop: Tensor) -> Tensor:
        x = setup.x
        n, J, T = drop.shape
        out = torch.empty(n, J, dtype=torch.float64)
        length = T - drop.sum(dim=2)  # (n, J)
        # rows of one length go through the runner together (deletion shortens the sequence)
        for L in sorted(set(length.reshape(-1).tolist())):
            if L < 1:
                raise InputError("deletion would leave an empty sequence; use mode='replacement' or fewer bins")
            pairs = (length == L).nonzero()  # (m, 2): sample, bin
            keep = ~drop[pairs[:, 0], pairs[:, 1]]  # (m, T)
            seqs = x.cpu()[pairs[:, 0]][keep].reshape(-1, int(L)).to(x.device)
            samples = pairs[:, 0].to(x.device)

            def rows(sl: slice, seqs: Tensor = seqs, samples: Tensor = samples) -> tuple[Tensor, Tensor]:
                return seqs[sl], samples[sl]

            got = _score_rows(
                setup,
                int(pairs.shape[0]),
                rows,
                per=1,
                describe=f"a sequence of {L} tokens after deletion".format,
                clean=None,
            )
            out[pairs[:, 0], pairs[:, 1]] = got
        return out

    def _verb(self) -> str:
        return "removed" if self.action == "remove" else "kept"


class Comprehensiveness(TokenFaithfulness):
    """ERASER comprehensiveness (DeYoung et al., 2020): ``p(y|x) - p(y|x without the top-k%
    tokens)``, averaged over the bins (AOPC). Higher is better."""

    name = "comprehensiveness"
    higher_is_better = True
    action = "remove"


class Sufficiency(TokenFaithfulness):
    """ERASER sufficiency (DeYoung et al., 2020): ``p(y|x) - p(y|only the top-k% tokens)``,
    averaged over the bins (AOPC). Lower is better."""

    name = "sufficiency"
    higher_is_better = False
    action = "keep"


comprehensiveness = Comprehensiveness()
sufficiency = Sufficiency()
