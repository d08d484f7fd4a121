"""The "essence" experiment of Leino et al. (2018): a few influential neurons carry a class.

Keep only ``k`` neurons of a slice (every other neuron's output is set to zero in a
forward hook) and use what is left of the model as a binary classifier, class ``c``
against the rest. If the ``k`` neurons with the highest influence make a much better
classifier than ``k`` random neurons, the influence measure has found the neurons the
model relies on for ``c``.

Exact protocol (:meth:`EssenceExperiment.run`):

1. **Neurons.** The internal influence (:class:`InternalInfluence`,
   ``distribution="class"``) of every neuron of the slice is computed over the instances
   of ``c`` in the *training* split, for the quantity ``logit_c - mean_{c' != c} logit_c'``
   (``quantity="vs_rest"``, default) or ``logit_c`` (``quantity="class"``); channels are
   reduced over positions by ``reduce``. The top-``k`` neurons are the ``k`` with the
   largest influence (``select="positive"``, the paper's choice) or the largest absolute
   influence (``select="absolute"``).
2. **Masked model.** A forward hook multiplies the slice's output by a 0/1 mask over
   neurons (a channel's mask covers all its positions).
3. **Decision rule.** The masked model's margin is
   ``m(x) = z_c(x) - max_{c' != c} z_c'(x)`` on its logits ``z``; the classifier says
   "``c``" when ``m(x) > tau``. The threshold ``tau`` is chosen, for every mask
   separately, on the training split to maximise the balanced accuracy there (the
   lowest such threshold, midway between two margins). With all neurons kept the
   margin rule is the model's own ``argmax == c`` only when ``tau`` is 0; ``tau`` is
   refitted for it too, so the reference row uses the same rule.
4. **Score.** Balanced accuracy ``(TPR + TNR) / 2`` on the *test* split (chance 0.5
   whatever the class balance), and the area under the ROC curve of the margin
   (threshold-free).
5. **Baseline.** ``n_random`` draws of ``k`` neurons uniformly without replacement
   (the first ``k`` of ``torch.randperm``; draw ``d`` for ``k`` uses the generator
   ``seethrough._core.seeds.generator(seed, k, d)``, so a draw does not depend on the
   other ``ks``), scored the same way: mean and standard deviation (``ddof=1``) over the
   draws.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.call import ForwardFailed, call_model
from .._core.capture import forward_chunk_rows
from .._core.errors import ConfigError, InputError, LayerError, TargetError
from .._core.layers import LayerRef, layer_label, resolve_layer
from .._core.result import Result
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.targets import Class, Custom
from .._core.validation import check_inputs
from ._common import check_labels, check_position_reduce, mask_neurons, select_class
from .internal import InfluenceResult, InternalInfluence

__all__ = ["EssenceExperiment", "EssenceResult", "class_vs_rest", "balanced_accuracy_threshold"]

QUANTITIES = ("vs_rest", "class")
SELECTIONS = ("positive", "absolute")


def class_vs_rest(cls: int) -> Custom:
    """The quantity ``logit_cls - mean of the other logits`` as a target."""
    c = int(cls)

    def vs_rest(output: Tensor) -> Tensor:
        k = output.shape[1]
        if not 0 <= c < k:
            raise TargetError(f"class {c} is out of range for a model output with {k} classes (valid: 0..{k - 1})")
        return output[:, c] - (output.sum(dim=1) - output[:, c]) / (k - 1)

    return Custom(vs_rest, name=f"class {c} vs rest")


def balanced_accuracy_threshold(margins: Tensor, positive: Tensor) -> tuple[float, float]:
    """``(tau, balanced accuracy)`` of the rule ``margin > tau`` that maximises the
    balanced accuracy on these margins; ties go to the lowest threshold. ``tau`` lies
    midway between two consecutive distinct margins (or is +-inf)."""
    m = margins.detach().double().cpu().numpy()
    y = positive.detach().cpu().numpy().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(m, kind="stable")
    ms, ys = m[order], y[order]
    # split after i smallest margins (i = 0..n): those are predicted negative
    fn = np.concatenate([[0], np.cumsum(ys)])
    tn = np.concatenate([[0], np.cumsum(~ys)])
    bal = 0.5 * ((n_pos - fn) / n_pos + tn / n_neg)
    valid = np.ones(len(m) + 1, dtype=bool)
    valid[1:-1] = ms[1:] > ms[:-1]  # cannot split between equal margins
    bal = np.where(valid, bal, -1.0)
    i = int(np.argmax(bal))
    if i == 0:
        tau = -np.inf
    elif i == len(m):
        tau = np.inf
    else:
        tau = 0.5 * (ms[i - 1] + ms[i])
    return float(tau), float(bal[i])


def _balanced_accuracy(margins: np.ndarray, positive: np.ndarray, tau: float) -> float:
    pred = margins > tau
    tpr = float((pred & positive).sum()) / max(int(positive.sum()), 1)
    tnr = float((~pred & ~positive).sum()) / max(int((~positive).sum()), 1)
    return 0.5 * (tpr + tnr)


def _auc(margins: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of the margins (Mann-Whitney U, ties counted half)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    _, inv, counts = np.unique(margins, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct value
    ranks = avg_rank[inv.reshape(-1)]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True, eq=False)
class EssenceResult(Result):
    """Balanced accuracy (and ROC AUC) of class ``cls`` vs the rest when only ``k``
    neurons of ``layer`` are kept: the top-``k`` by influence versus ``k`` random ones.

    ``top_accuracy[i]`` and ``top_auc[i]`` belong to ``ks[i]``; ``random_accuracy[i, d]``
    and ``random_auc[i, d]`` to draw ``d``. ``full_accuracy``/``full_auc``: every neuron
    kept, same rule. ``top_neurons``: the slice's neurons ordered by influence (largest
    first). ``thresholds[i]``: the threshold fitted for the top-``ks[i]`` mask.
    ``plot(ax=..., metric="accuracy")`` (:func:`seethrough.influence.plot_essence`),
    ``to_html()``, ``save``/``load``.
    """

    cls: int
    layer: str
    ks: tuple[int, ...]
    n_neurons: int
    top_neurons: Tensor
    top_accuracy: Tensor
    random_accuracy: Tensor
    top_auc: Tensor
    random_auc: Tensor
    full_accuracy: float
    full_auc: float
    thresholds: Tensor
    influence: InfluenceResult
    counts: Mapping[str, int] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per ``k``: the numbers of the table in the docs and reports."""
        out = []
        for i, k in enumerate(self.ks):
            ra, rc = self.random_accuracy[i].double(), self.random_auc[i].double()
            sd = lambda t: float(t.std(unbiased=True)) if t.numel() > 1 else 0.0  # noqa: E731
            out.append(
                {
                    "k": int(k),
                    "top-k balanced accuracy": float(self.top_accuracy[i]),
                    "random-k balanced accuracy (mean)": float(ra.mean()),
                    "random-k balanced accuracy (std)": sd(ra),
                    "top-k AUC": float(self.top_auc[i]),
                    "random-k AUC (mean)": float(rc.mean()),
                    "random-k AUC (std)": sd(rc),
                }
            )
        return out

    def __repr__(self) -> str:
        return f"EssenceResult(class {self.cls}, layer={self.layer!r}, ks={self.ks}, {self.n_neurons} neurons)"


class EssenceExperiment:
    """Keep the top-``k`` influential neurons of ``layer`` and test the remaining model as a
    binary classifier of one class against random ``k``-neuron subsets (see the module
    docstring for the exact protocol).

    Parameters
    ----------
    layer:
        The slice whose neurons (channels of a conv map, units of a flat layer) are kept or
        zeroed.
    ks:
        Numbers of neurons to keep.
    n_random:
        Random draws of ``k`` neurons per ``k``.
    quantity:
        ``"vs_rest"`` (default, ``logit_c - mean of the other logits``) or ``"class"``
        (``logit_c``): the quantity of interest whose influence ranks the neurons.
    reduce:
        ``"max"`` or ``"mean"``: channel influence reduced over positions.
    multiply_by_activation:
        Rank by influence times activation (see :class:`InternalInfluence`).
    select:
        ``"positive"`` (default): the ``k`` largest influences; ``"absolute"``: the ``k``
        largest ``|influence|``.
    seed:
        Seed of the random draws.
    batching:
        Chunking of the gradient and masked forward passes.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        ks: Sequence[int] = (1, 5, 10),
        n_random: int = 10,
        quantity: str = "vs_rest",
        reduce: str = "max",
        multiply_by_activation: bool = False,
        select: str = "positive",
        seed: int = 0,
        batching: Batching | int | None = None,
    ) -> None:
        self.model, self.layer, self.ks, self.n_random = model, layer, ks, n_random
        self.quantity, self.reduce, self.multiply_by_activation = quantity, reduce, multiply_by_activation
        self.select, self.seed, self.batching = select, seed, batching

    def settings(self) -> dict[str, Any]:
        return {
            "layer": layer_label(self.layer),
            "ks": [int(k) for k in self.ks] if _is_int_seq(self.ks) else repr(self.ks),
            "n_random": self.n_random,
            "quantity": self.quantity,
            "reduce": self.reduce,
            "multiply_by_activation": bool(self.multiply_by_activation),
            "select": self.select,
            "seed": self.seed,
            "selection": "top-k by internal influence over the training instances of the class",
            "rule": "margin z_c - max_{c' != c} z_c' > tau, tau maximising balanced accuracy on the training split",
        }

    def __repr__(self) -> str:
        return f"EssenceExperiment({', '.join(f'{k}={v!r}' for k, v in self.settings().items() if k in ('layer', 'ks', 'n_random', 'quantity', 'reduce', 'seed'))})"

    def _check_settings(self) -> tuple[str, nn.Module, list[int]]:
        if self.layer is None:
            raise ConfigError("EssenceExperiment needs layer=: the dotted name (or module) of the slice")
        name, module = resolve_layer(self.model, self.layer)
        if not _is_int_seq(self.ks) or len(self.ks) == 0 or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be a non-empty sequence of positive ints (neurons to keep), got {self.ks!r}")
        if isinstance(self.n_random, bool) or not isinstance(self.n_random, int) or self.n_random < 1:
            raise ConfigError(f"n_random must be a positive int (random draws per k), got {self.n_random!r}")
        if self.quantity not in QUANTITIES:
            raise ConfigError(f"quantity must be one of {QUANTITIES}, got {self.quantity!r}")
        check_position_reduce(self.reduce)
        check_seed(self.seed)
        if self.select not in SELECTIONS:
            raise ConfigError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        return name, module, [int(k) for k in self.ks]

    def run(
        self,
        train_inputs: Tensor,
        train_labels: Tensor,
        test_inputs: Tensor,
        test_labels: Tensor,
        cls: int,
    ) -> EssenceResult:
        """Select neurons and thresholds on the training split; score on the test split."""
        name, module, ks = self._check_settings()
        start = time.perf_counter()
        x_tr = check_inputs(self.model, train_inputs, name="train_inputs")
        x_te = check_inputs(self.model, test_inputs, name="test_inputs")
        y_tr = check_labels(train_labels, x_tr.shape[0])
        y_te = check_labels(test_labels, x_te.shape[0])
        if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
            raise ConfigError(f"cls must be a class index (int), got {cls!r}")
        cls = int(cls)
        select_class(y_tr, cls, what="training inputs")
        select_class(y_te, cls, what="test inputs")
        for split, y in (("training", y_tr), ("test", y_te)):
            if bool((y == cls).all()):
                raise InputError(
                    f"every {split} input is of class {cls}; the binary classifier needs instances of other classes too"
                )
        target = class_vs_rest(cls) if self.quantity == "vs_rest" else Class(cls)
        influence = InternalInfluence(
            self.model,
            layer=name,
            distribution="class",
            reduce=self.reduce,
            multiply_by_activation=self.multiply_by_activation,
            batching=self.batching,
        ).compute(x_tr, target, labels=y_tr, of_class=cls)
        n = influence.n_neurons
        if max(ks) > n:
            raise ConfigError(
                f"k={max(ks)} is larger than the {n} {influence.neuron}s of layer {name!r}; use ks <= {n}"
            )
        ranked = influence.neuron_influence.double().cpu()
        if self.select == "absolute":
            ranked = ranked.abs()
        order = torch.sort(-ranked, stable=True).indices
        masks = [torch.ones(n)]
        for k in ks:
            m = torch.zeros(n)
            m[order[:k]] = 1.0
            masks.append(m)
            for d in range(self.n_random):
                r = torch.zeros(n)
                r[torch.randperm(n, generator=generator(self.seed, k, d))[:k]] = 1.0
                masks.append(r)
        mask_t = torch.stack(masks)
        x_all = torch.cat([x_tr, x_te])
        margins, n_eval = self._masked_margins(x_all, mask_t, cls, name, module)
        m_tr, m_te = margins[:, : x_tr.shape[0]].numpy(), margins[:, x_tr.shape[0] :].numpy()
        pos_tr, pos_te = (y_tr == cls).numpy(), (y_te == cls).numpy()

        def score(j: int) -> tuple[float, float, float]:
            tau, _ = balanced_accuracy_threshold(torch.from_numpy(m_tr[j]), torch.from_numpy(pos_tr))
            return _balanced_accuracy(m_te[j], pos_te, tau), _auc(m_te[j], pos_te), tau

        full_acc, full_auc, _ = score(0)
        R = self.n_random
        top_acc, top_auc, taus = [], [], []
        rnd_acc = np.zeros((len(ks), R))
        rnd_auc = np.zeros((len(ks), R))
        for i in range(len(ks)):
            base = 1 + i * (1 + R)
            a, u, tau = score(base)
            top_acc.append(a)
            top_auc.append(u)
            taus.append(tau)
            for d in range(R):
                rnd_acc[i, d], rnd_auc[i, d], _ = score(base + 1 + d)
        counts = {
            "train_positive": int(pos_tr.sum()),
            "train_negative": int((~pos_tr).sum()),
            "test_positive": int(pos_te.sum()),
            "test_negative": int((~pos_te).sum()),
        }
        return EssenceResult(
            cls=cls,
            layer=name,
            ks=tuple(ks),
            n_neurons=n,
            top_neurons=order.clone(),
            top_accuracy=torch.tensor(top_acc),
            random_accuracy=torch.from_numpy(rnd_acc),
            top_auc=torch.tensor(top_auc),
            random_auc=torch.from_numpy(rnd_auc),
            full_accuracy=full_acc,
            full_auc=full_auc,
            thresholds=torch.tensor(taus),
            influence=influence,
            counts=counts,
            settings={**self.settings(), "layer": name},
            n_evaluations=influence.n_evaluations + n_eval,
            seconds=time.perf_counter() - start,
        )

    # -- masked forward passes ----------------------------------------------------------
    def _masked_margins(self, x: Tensor, masks: Tensor, cls: int, name: str, module: nn.Module) -> tuple[Tensor, int]:
        """``(M, N)`` margins of the masked model for every mask and input."""
        batching = as_batching(self.batching)
        M, N = masks.shape[0], x.shape[0]
        with model_guard(self.model, method="essence experiment"):
            per_chunk = max(1, forward_chunk_rows(self.model, x, batching) // M)
            out = torch.empty(M, N)
            n_eval = 0
            expand = True
            for sl in Batching.chunks(N, per_chunk):
                xc = x[sl]
                if expand:
                    try:
                        z = self._forward(xc, masks, module, name)
                        if z.shape[0] != M * xc.shape[0]:
                            raise ForwardFailed("the batch size changed after the slice")
                        z = z.reshape(M, xc.shape[0], -1)
                    except ForwardFailed:
                        # the layers after the slice mix with paths that bypass it (a skip
                        # connection around the slice): one pass per mask instead
                        expand = False
                if not expand:
                    z = torch.stack([self._forward(xc, masks[j : j + 1], module, name) for j in range(M)])
                    z = z.reshape(M, xc.shape[0], -1)
                n_eval += M * xc.shape[0]
                out[:, sl] = _margins(z, cls).cpu()
        return out, n_eval

    def _forward(self, x: Tensor, masks: Tensor, module: nn.Module, name: str) -> Tensor:
        calls = [0]
        with torch.no_grad(), mask_neurons(module, masks, calls):
            out = call_model(self.model, x.clone())
        if calls[0] == 0:
            raise LayerError(
                f"layer {name!r} did not run during the forward pass; pick a layer on the path to the output"
            )
        if calls[0] > 1:
            raise LayerError(
                f"layer {name!r} runs {calls[0]} times per forward pass (a reused module), so masking its "
                f"neurons is ambiguous; pick a module that runs once"
            )
        if out.dim() != 2 or out.shape[1] < 2:
            raise TargetError(
                f"the essence experiment needs a classifier with at least 2 logits per input; the model "
                f"returned shape {tuple(out.shape)}"
            )
        return out


def _margins(z: Tensor, cls: int) -> Tensor:
    """``z_c - max_{c' != c} z_c'`` for logits ``(..., K)``."""
    k = z.shape[-1]
    if not 0 <= cls < k:
        raise TargetError(f"class {cls} is out of range for a model output with {k} classes (valid: 0..{k - 1})")
    other = z.clone()
    other[..., cls] = -torch.inf
    return z[..., cls] - other.amax(dim=-1)


def _is_int_seq(v: object) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in v)
