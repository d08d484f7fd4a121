"""Testing with concept activation vectors (TCAV, Kim et al. 2018), with a significance
test whose false-positive rate is measured, not assumed.

For a layer ``l``, a concept's CAV ``v`` separates the concept's activations from random
ones. The directional derivative of class ``k`` at input ``x`` is ``grad_l(logit_k)(x) . v``
and the TCAV score of (concept, class) is the fraction of class-``k`` inputs where it is
positive.

Is a score more than chance? A random set posed as a concept also gets a score, and
where the class gradients of a layer point the same way for most inputs that score is
close to 0 or 1, so a high score alone means nothing. The paper trains the concept's CAV
against ``R`` random sets and compares those ``R`` scores with the scores of one random
"concept" by a t-test. All ``R`` concept runs share the same concept examples (and the
random runs their one random "concept"), so the runs are not independent samples: the
t-test sees the shared part as signal. :func:`tcav_null_check` measures that protocol
(``protocol="shared"``) calling a random set significant in most trials on small CNNs
(see ``docs/concepts.md``).

The default protocol (``protocol="disjoint"``) makes the runs independent:

1. the concept's examples are split into ``random_runs`` disjoint subsets of
   ``n_examples`` (each run sees its own examples); run ``i`` trains the CAV of subset
   ``i`` against random set ``r_i``;
2. random run ``i`` trains a random "concept" ``q_i`` against the same ``r_i``; all
   ``r_i`` and ``q_i`` are disjoint sets of random images, so both groups of runs are
   independent draws and, if the concept were just random images, run ``i`` of either
   group would be exchangeable;
3. a two-sided paired t-test (``scipy.stats.ttest_rel``, pairs sharing ``r_i``) of the
   concept's run scores against the random runs' scores;
4. Bonferroni correction over the concepts x classes tested in one call;
5. a concept is called significant for a class when the corrected p-value is below
   ``significance``, the effect (mean concept score minus mean random score) is at least
   ``min_effect`` in size and the concept's mean held-out CAV accuracy is at least
   ``min_accuracy`` (a layer that cannot tell the concept from random images has no
   direction for it).

When every paired difference is the same non-zero number the t statistic is infinite;
the p-value is then the exact two-sided sign-test value ``2 * 0.5 ** R``.
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
from .._core.call import call_model
from .._core.capture import collect_activations
from .._core.errors import ConfigError, InputError, TargetError
from .._core.layers import LayerRef, resolve_layer
from .._core.result import Result
from .._core.seeds import check_seed, generator, mix_seed
from .._core.state import model_guard
from ._common import check_images, class_gradients
from .cav import CAV, MIN_EXAMPLES

__all__ = ["TCAV", "TCAVResult", "NullCheckResult", "tcav_null_check"]

#: Example images: a tensor (or numpy array) ``(N, C, H, W)`` shaped like the inputs.
Examples = Tensor | np.ndarray
_PROTOCOLS = ("disjoint", "shared")
_POOLINGS = ("mean", "flatten")
_DATA_HINT = (
    "seethrough.app.concepts.concept_examples and random_examples make them from generated concept names, "
    "folders of images or tensor files"
)


def _permutation(n: int, seed: int, *stream: int) -> np.ndarray:
    """A random order of ``n`` items from the stream ``(seed, *stream)``."""
    return torch.randperm(n, generator=generator(seed, *stream)).numpy()


@dataclass(frozen=True, eq=False)
class TCAVResult(Result):
    """TCAV scores and their test, for each concept x class.

    Attributes
    ----------
    layer: the layer's dotted name.
    concepts, classes: the tested concepts and class indices.
    scores: ``(n_concepts, n_classes)``, the TCAV score averaged over the runs.
    run_scores: ``(n_concepts, n_classes, R)``, the score of each run.
    random_scores: ``(n_concepts, n_classes, R)``, the scores of the random runs the
        concept is compared with.
    effects: mean of ``run_scores`` minus mean of ``random_scores``.
    p_values: two-sided t-test p-values, uncorrected.
    p_corrected: Bonferroni-corrected over ``settings["n_tests"]`` = concepts x classes.
    significant: bool, the decision (corrected p, minimum effect, minimum accuracy).
    cav_accuracy: ``(n_concepts, R)`` held-out accuracy of each concept CAV.
    random_accuracy: ``(n_concepts, R)`` the same for the random-vs-random CAVs.
    cavs: concept -> ``(R, D)`` unit CAVs (``D``: channels with ``pooling="mean"``).
    n_inputs: class -> inputs the class was scored on.
    examples_per_run: concept -> examples in each of its runs.
    settings: the protocol's settings.
    class_names: names of the model's classes, for display (optional).
    seconds: wall-clock time.
    """

    layer: str
    concepts: tuple[str, ...]
    classes: tuple[int, ...]
    scores: Tensor
    run_scores: Tensor
    random_scores: Tensor
    effects: Tensor
    p_values: Tensor
    p_corrected: Tensor
    significant: Tensor
    cav_accuracy: Tensor
    random_accuracy: Tensor
    cavs: Mapping[str, Tensor]
    n_inputs: Mapping[int, int]
    examples_per_run: Mapping[str, int]
    settings: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    seconds: float = 0.0

    def class_label(self, j: int) -> str:
        """How class ``classes[j]`` is shown: its index, with its name when known."""
        k = self.classes[j]
        if self.class_names is not None and 0 <= k < len(self.class_names):
            return f"{k} ({self.class_names[k]})"
        return str(k)

    def table(self) -> list[dict[str, Any]]:
        """One row per (concept, class), ready for printing or an HTML table."""
        rows = []
        for i, c in enumerate(self.concepts):
            for j in range(len(self.classes)):
                rows.append(
                    {
                        "concept": c,
                        "class": self.class_label(j),
                        "TCAV score": round(float(self.scores[i, j]), 3),
                        "random score": round(float(self.random_scores[i, j].mean()), 3),
                        "effect": round(float(self.effects[i, j]), 3),
                        "p": float(self.p_values[i, j]),
                        "p (Bonferroni)": float(self.p_corrected[i, j]),
                        "CAV accuracy": round(float(self.cav_accuracy[i].mean()), 3),
                        "significant": bool(self.significant[i, j]),
                    }
                )
        return rows

    def describe_protocol(self) -> str:
        """One sentence stating the test and the decision rule."""
        s = self.settings
        return (
            f"layer {self.layer!r}; protocol {s['protocol']!r} with {s['random_runs']} runs "
            f"({'paired' if s['protocol'] == 'disjoint' else 'unpaired'} two-sided t-test of concept "
            f"vs random-concept scores); significant: Bonferroni-corrected p < {s['significance']} "
            f"over {s['n_tests']} tests, |effect| >= {s['min_effect']}, mean CAV accuracy >= "
            f"{s['min_accuracy']}"
        )

    def to_text(self) -> str:
        """A plain-text table (what the CLI prints)."""
        rows = self.table()
        cols = [
            "concept",
            "class",
            "TCAV score",
            "random score",
            "effect",
            "p (Bonferroni)",
            "CAV accuracy",
            "significant",
        ]
        cells = [[_cell(r[c]) for c in cols] for r in rows]
        widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
        lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]
        lines.append(self.describe_protocol())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"TCAVResult(layer={self.layer!r}, concepts={list(self.concepts)}, classes={list(self.classes)}, "
            f"significant={int(self.significant.sum())}/{self.significant.numel()})"
        )


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2e}" if (v != 0 and abs(v) < 1e-3) else f"{v:.3f}"
    return str(v)


@dataclass(frozen=True, eq=False)
class NullCheckResult(Result):
    """Random sets posed as concepts, tested ``trials`` times: how often is one called
    significant?

    Attributes
    ----------
    false_positive_rate: share of trials in which the random "concept" was called
        significant for at least one class (the family-wise rate that the Bonferroni
        correction over the classes keeps at or below ``significance`` when the test is
        calibrated).
    n_false_positives, trials: its numerator and denominator.
    per_test_rate: share of (trial, class) tests called significant.
    interval: two-sided 95% Clopper-Pearson interval of ``false_positive_rate``.
    p_values: ``(trials, n_classes)`` corrected p-values; ``effects`` and
        ``significant`` alike.
    accuracy: ``(trials,)`` mean held-out accuracy of the random concept's CAVs (with
        ``p_values`` and ``effects``, enough to apply another decision rule afterwards).
    """

    false_positive_rate: float
    n_false_positives: int
    trials: int
    per_test_rate: float
    interval: tuple[float, float]
    significance: float
    p_values: Tensor
    effects: Tensor
    significant: Tensor
    accuracy: Tensor
    settings: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __repr__(self) -> str:
        lo, hi = self.interval
        return (
            f"NullCheckResult(protocol={self.settings.get('protocol')!r}, false_positive_rate="
            f"{self.false_positive_rate:.3f} ({self.n_false_positives}/{self.trials}, 95% CI {lo:.3f}-{hi:.3f}), "
            f"significance={self.significance})"
        )


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


@dataclass
class _Setup:
    """What is computed from the model once: CAV features and class gradients."""

    layer: str
    layer_shape: tuple[int, ...]
    grads: dict[int, np.ndarray]  # class -> (n_k, D)
    concept_acts: dict[str, np.ndarray]  # concept -> (N_c, D)
    pool: np.ndarray  # random images (P, D)
    n_inputs: dict[int, int]


class TCAV:
    """TCAV at one layer, with a significance test whose false-positive rate is checked.

    Parameters
    ----------
    model:
        The classifier (logits out).
    layer:
        Dotted ``named_modules()`` name or module whose output the CAVs live in.
    random_runs:
        Runs per concept (R, default 20): CAVs, each against its own random set. With
        10 runs a t-test on the typically 0-or-1 scores of random runs rarely reaches
        significance after the correction; 20 do (see ``docs/concepts.md``).
    n_examples:
        Examples per run and per random set (default 20). ``protocol="disjoint"`` splits
        a concept into R disjoint subsets of this size (fewer when the concept has fewer
        than ``R * n_examples`` examples; at least 10 each): :meth:`examples_needed`.
        Random images needed: ``2 * R * n_examples`` (:meth:`random_needed`).
    protocol:
        ``"disjoint"`` (default; independent runs, see the module docstring) or
        ``"shared"`` (the paper's per-run t-test, every run on all the concept's
        examples; kept to measure and compare, its false-positive rate is inflated).
    significance:
        Family-wise level after the Bonferroni correction over concepts x classes.
    min_effect:
        Smallest ``|concept score - random score|`` called significant (default 0.05).
    min_accuracy:
        Smallest mean held-out CAV accuracy for a concept to be called significant
        (default 0.6).
    pooling:
        ``"mean"`` (default): CAVs in the space of channel means (position-invariant,
        one feature per channel); the directional derivative moves every position along
        the CAV, so it is the gradient summed over positions dotted with it.
        ``"flatten"``: the paper's flattened activations.
    classifier, C, alpha, test_fraction:
        Passed to each :class:`~seethrough.concepts.CAV`.
    batching:
        A :class:`~seethrough.Batching`, a batch size or None (automatic).
    seed:
        Seeds the splits into runs and sets and every CAV (the app layer also seeds
        generated data with it).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        random_runs: int = 20,
        n_examples: int = 20,
        protocol: str = "disjoint",
        significance: float = 0.05,
        min_effect: float = 0.05,
        min_accuracy: float = 0.6,
        pooling: str = "mean",
        classifier: str = "logistic",
        C: float = 0.1,
        alpha: float = 0.01,
        test_fraction: float = 0.33,
        batching: Batching | int | None = None,
        seed: int = 0,
    ) -> None:
        # stored as given, checked by check_settings() when a test runs
        self.model, self.layer, self.pooling, self.batching = model, layer, pooling, batching
        self.protocol, self.random_runs, self.n_examples, self.seed = protocol, random_runs, n_examples, seed
        self.significance, self.min_effect, self.min_accuracy = significance, min_effect, min_accuracy
        self.classifier, self.C, self.alpha, self.test_fraction = classifier, C, alpha, test_fraction  # each CAV's

    # -- settings -------------------------------------------------------------------
    def check_settings(self) -> None:
        """Raise a :class:`ConfigError` on a bad setting (:meth:`test` checks them first)."""
        if self.protocol not in _PROTOCOLS:
            raise ConfigError(f"protocol must be one of {_PROTOCOLS}, got {self.protocol!r}")
        if not isinstance(self.random_runs, int) or isinstance(self.random_runs, bool) or self.random_runs < 2:
            raise ConfigError(f"random_runs must be an int >= 2 (the paper uses 10 or more), got {self.random_runs!r}")
        if not isinstance(self.n_examples, int) or self.n_examples < MIN_EXAMPLES:
            raise ConfigError(f"n_examples must be an int >= {MIN_EXAMPLES}, got {self.n_examples!r}")
        if not 0.0 < self.significance < 1.0:
            raise ConfigError(f"significance must be in (0, 1), got {self.significance}")
        if self.min_effect < 0 or not 0.0 <= self.min_accuracy <= 1.0:
            raise ConfigError(
                f"min_effect must be >= 0 and min_accuracy in [0, 1], got {self.min_effect} and {self.min_accuracy}"
            )
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"pooling must be one of {_POOLINGS}, got {self.pooling!r}")
        check_seed(self.seed)
        self._cav(0)._check()

    def settings(self) -> dict[str, Any]:
        """The settings that decide the result (JSON-serialisable)."""
        return {
            "layer": self.layer if isinstance(self.layer, str) else type(self.layer).__name__,
            "protocol": self.protocol,
            "random_runs": self.random_runs,
            "n_examples": self.n_examples,
            "significance": self.significance,
            "correction": "bonferroni",
            "min_effect": self.min_effect,
            "min_accuracy": self.min_accuracy,
            "pooling": self.pooling,
            "classifier": self.classifier,
            "C": self.C,
            "alpha": self.alpha,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
        }

    def _cav(self, seed: int) -> CAV:
        return CAV(classifier=self.classifier, C=self.C, alpha=self.alpha, test_fraction=self.test_fraction, seed=seed)

    def examples_needed(self) -> int:
        """Examples a concept needs for every run to get ``n_examples`` of its own:
        ``random_runs * n_examples`` (``"disjoint"``) or ``n_examples`` (``"shared"``)."""
        self.check_settings()
        return self.random_runs * self.n_examples if self.protocol == "disjoint" else self.n_examples

    def random_needed(self, concepts: Mapping[str, Any] | None = None) -> int:
        """Random images :meth:`test` needs for ``concepts`` (name -> examples, sized by their
        first dimension); without concepts, for concepts of :meth:`examples_needed` examples."""
        self.check_settings()
        if concepts is None:
            return self._random_needed(self.n_examples)
        return self._random_needed(max(self._per_run(str(c), len(v)) for c, v in concepts.items()))

    def null_pool_needed(self) -> int:
        """Random images :func:`tcav_null_check` needs (its pool)."""
        self.check_settings()
        return self.examples_needed() + self._random_needed(self.n_examples)

    def _per_run(self, name: str, available: int) -> int:
        """Examples in each run of a concept with ``available`` examples."""
        r = self.random_runs
        if self.protocol == "shared":
            if available < MIN_EXAMPLES:
                raise InputError(
                    f"concept {name!r} has {available} examples; TCAV needs at least {MIN_EXAMPLES} "
                    f"(20 or more recommended). Add examples."
                )
            return available
        n = min(self.n_examples, available // r)
        if n < MIN_EXAMPLES:
            raise InputError(
                f"concept {name!r} has {available} examples, but protocol 'disjoint' gives each of "
                f"the {r} runs its own {MIN_EXAMPLES} or more: give at least {r * MIN_EXAMPLES} "
                f"examples ({r * self.n_examples} for n_examples={self.n_examples}) or lower random_runs"
            )
        return n

    def _random_needed(self, n: int) -> int:
        r = self.random_runs
        return 2 * r * n if self.protocol == "disjoint" else (r + 1) * n

    # -- features -------------------------------------------------------------------
    def _features(self, acts: Tensor) -> np.ndarray:
        """Activations as CAV features: channel means (``pooling="mean"``) or flattened."""
        if self.pooling == "mean" and acts.dim() > 2:
            acts = acts.reshape(acts.shape[0], acts.shape[1], -1).mean(dim=2)
        return acts.reshape(acts.shape[0], -1).double().numpy()

    def _grad_features(self, grads: Tensor) -> np.ndarray:
        """Gradients in the CAV's space: summed over positions for ``pooling="mean"``."""
        if self.pooling == "mean" and grads.dim() > 2:
            grads = grads.reshape(grads.shape[0], grads.shape[1], -1).sum(dim=2)
        return grads.reshape(grads.shape[0], -1).double().numpy()

    # -- data -----------------------------------------------------------------------
    def _load_concepts(self, concepts: Any, like: Tensor) -> dict[str, Tensor]:
        """The concepts' example images, checked against the inputs ``like``."""
        if isinstance(concepts, Mapping) and not concepts:
            raise InputError("no concepts given; give at least one, as a dict name -> example images")
        if not isinstance(concepts, Mapping):
            raise InputError(
                f"concepts must be a dict name -> example images (a tensor (N, C, H, W) like the inputs), got "
                f"{type(concepts).__name__}; {_DATA_HINT}"
            )
        out: dict[str, Tensor] = {}
        for name, src in concepts.items():
            name = str(name)
            if name in out:
                raise InputError(f"concept {name!r} is given twice")
            if not isinstance(src, (Tensor, np.ndarray)):
                raise InputError(
                    f"examples of concept {name!r} must be a tensor of images (N, C, H, W), got "
                    f"{type(src).__name__}; {_DATA_HINT}"
                )
            x = check_images(self.model, src, f"examples of concept {name!r}").to(like.device)
            if tuple(x.shape[1:]) != tuple(like.shape[1:]):
                raise InputError(
                    f"examples of concept {name!r} have shape {tuple(x.shape[1:])} but the inputs "
                    f"have {tuple(like.shape[1:])}; give examples the model takes"
                )
            self._per_run(name, x.shape[0])  # enough examples?
            out[name] = x
        return out

    def _load_random(self, random: Any, like: Tensor, needed: int) -> Tensor:
        """The random images, checked against the inputs ``like``."""
        if random is None:
            raise InputError(
                f"give random=... : at least {needed} random images (N, C, H, W) like the inputs, for protocol "
                f"{self.protocol!r} with {self.random_runs} runs; {_DATA_HINT}"
            )
        if not isinstance(random, (Tensor, np.ndarray)):
            raise InputError(f"random images must be a tensor (N, C, H, W), got {type(random).__name__}; {_DATA_HINT}")
        x = check_images(self.model, random, "random images").to(like.device)
        if tuple(x.shape[1:]) != tuple(like.shape[1:]):
            raise InputError(
                f"random images have shape {tuple(x.shape[1:])} but the inputs have {tuple(like.shape[1:])}"
            )
        if x.shape[0] < needed:
            raise InputError(
                f"got {x.shape[0]} random images, but protocol {self.protocol!r} with {self.random_runs} runs "
                f"needs {needed} (disjoint random sets); give more random images or lower random_runs "
                f"or n_examples"
            )
        return x

    def _classes(self, model: nn.Module, x: Tensor, labels: Any, classes: Any) -> tuple[list[int], Tensor | None]:
        with torch.no_grad():
            out = call_model(model, x[:1].clone())
        n_out = out.reshape(1, -1).shape[1]
        lab = None
        if labels is not None:
            lab = torch.as_tensor(labels).reshape(-1)
            if lab.dtype.is_floating_point or lab.dtype == torch.bool:
                raise TargetError(f"labels must be integer class indices, got dtype {lab.dtype}")
            if lab.numel() != x.shape[0]:
                raise TargetError(f"got {lab.numel()} labels for {x.shape[0]} inputs; give one label per input")
            lab = lab.long().cpu()
        if classes is None:
            if lab is None:
                raise TargetError("give classes=[...] (the classes to test), or labels for the inputs")
            classes = sorted(set(lab.tolist()))
        if isinstance(classes, (int, np.integer)):
            classes = [int(classes)]
        classes = [int(k) for k in classes]
        if not classes:
            raise TargetError("classes is empty; name at least one class to test")
        if len(set(classes)) != len(classes):
            raise TargetError(f"classes {classes} has duplicates")
        for k in classes:
            if not 0 <= k < n_out:
                raise TargetError(f"class {k} is out of range for a model with {n_out} outputs (valid: 0..{n_out - 1})")
            if lab is not None and not bool((lab == k).any()):
                present = ", ".join(str(v) for v in sorted(set(lab.tolist()))[:10])
                raise TargetError(
                    f"class {k} has no inputs among the {lab.numel()} labelled inputs (labels present: "
                    f"{present}); add inputs of class {k} or leave it out of classes"
                )
        return classes, lab

    def _prepare(self, inputs: Any, labels: Any, classes: Any):
        """Validate the inputs, the layer and the classes."""
        x = check_images(self.model, inputs, "inputs")
        if x.dim() != 4:
            raise InputError(f"inputs must be images (N, C, H, W), got shape {tuple(x.shape)}")
        layer = resolve_layer(self.model, self.layer)
        classes, lab = self._classes(self.model, x, labels, classes)
        return x, layer, as_batching(self.batching), classes, lab

    def _gradients(self, x: Tensor, lab: Tensor | None, layer, classes: list[int], batching: Batching):
        """Per class: the gradients of its logit at the layer, in CAV space, and the
        number of inputs they come from."""
        grads, n_inputs = {}, {}
        for k in classes:
            xk = x if lab is None else x[(lab == k).to(x.device)]
            grads[k] = self._grad_features(class_gradients(self.model, layer, xk, k, batching))
            n_inputs[k] = int(xk.shape[0])
        return grads, n_inputs

    def _setup(self, inputs, concepts, labels, classes, random) -> tuple[_Setup, list[int]]:
        x, layer, batching, classes, lab = self._prepare(inputs, labels, classes)
        concept_x = self._load_concepts(concepts, x)  # every check before the model runs
        n_max = max(self._per_run(c, v.shape[0]) for c, v in concept_x.items())
        pool_x = self._load_random(random, x, self._random_needed(n_max))
        grads, n_inputs = self._gradients(x, lab, layer, classes, batching)
        acts = {c: self._activations(layer, v, batching) for c, v in concept_x.items()}
        shape = tuple(next(iter(acts.values())).shape[1:])
        pool = self._features(self._activations(layer, pool_x, batching))
        setup = _Setup(layer[0], shape, grads, {c: self._features(a) for c, a in acts.items()}, pool, n_inputs)
        return setup, classes

    def _activations(self, layer: tuple[str, nn.Module], x: Tensor, batching: Batching) -> Tensor:
        """The layer's output on every row of ``x``, on the CPU."""
        name, module = layer
        return collect_activations(self.model, {name: module}, x, batching=batching)[name]

    # -- protocol -------------------------------------------------------------------
    def _run(self, pos: np.ndarray, neg: np.ndarray, grads: dict[int, np.ndarray], classes, seed: int):
        """One CAV of ``pos`` against ``neg``: (unit vector (D,), held-out accuracy,
        TCAV score per class (n_classes,))."""
        cav = self._cav(seed).fit(pos, neg)
        v = cav.vector_.double().numpy()
        return v, cav.accuracy_, np.array([float(((grads[k] @ v) > 0).mean()) for k in classes])

    def _random_runs(self, pool: np.ndarray, perm: np.ndarray, n: int, grads, classes, key: tuple):
        """Counterpart sets ``r_i`` and the random runs for concepts of ``n`` examples per
        run: (counterparts, scores (n_classes, R), accuracies (R,))."""
        r = self.random_runs
        negs = [pool[perm[i * n : (i + 1) * n]] for i in range(r)]
        if self.protocol == "disjoint":
            fakes = [pool[perm[(r + i) * n : (r + i + 1) * n]] for i in range(r)]
        else:
            fakes = [pool[perm[r * n : (r + 1) * n]]] * r
        scores, accs = [], []
        for i in range(r):
            _, acc, sc = self._run(fakes[i], negs[i], grads, classes, mix_seed(self.seed, *key, i))
            scores.append(sc)
            accs.append(acc)
        return negs, np.stack(scores, axis=1), np.asarray(accs)

    def _concept_runs(self, acts: np.ndarray, n: int, negs, grads, classes, key: tuple, perm: np.ndarray):
        """The concept's runs: (vectors (R, D), scores (n_classes, R), accuracies (R,))."""
        vecs, scores, accs = [], [], []
        for i in range(self.random_runs):
            pos = acts[perm[i * n : (i + 1) * n]] if self.protocol == "disjoint" else acts
            v, acc, sc = self._run(pos, negs[i], grads, classes, mix_seed(self.seed, *key, i))
            vecs.append(v)
            scores.append(sc)
            accs.append(acc)
        return np.stack(vecs), np.stack(scores, axis=1), np.asarray(accs)

    def _p_value(self, a: np.ndarray, b: np.ndarray) -> float:
        """Two-sided t-test of concept runs ``a`` against random runs ``b``."""
        import warnings

        from scipy.stats import ttest_ind, ttest_rel

        with warnings.catch_warnings():  # scipy warns on nearly identical scores; handled here
            warnings.simplefilter("ignore", RuntimeWarning)
            if self.protocol == "disjoint":
                d = a - b
                if np.ptp(d) == 0:  # identical differences: t is 0/0 or infinite
                    return 1.0 if d[0] == 0 else float(min(1.0, 2 * 0.5 ** len(d)))
                p = ttest_rel(a, b).pvalue
            else:
                if np.ptp(np.concatenate([a, b])) == 0:
                    return 1.0
                p = ttest_ind(a, b, equal_var=True).pvalue
        return float(p) if np.isfinite(p) else 1.0

    def _decide(self, run_scores: np.ndarray, random_scores: np.ndarray, accs: np.ndarray, n_tests: int):
        """Per class: effect, raw p, corrected p, decision."""
        effect = run_scores.mean(axis=1) - random_scores.mean(axis=1)
        p = np.array([self._p_value(run_scores[j], random_scores[j]) for j in range(run_scores.shape[0])])
        p_corr = np.minimum(1.0, p * n_tests)
        sig = (p_corr < self.significance) & (np.abs(effect) >= self.min_effect) & (accs.mean() >= self.min_accuracy)
        return effect, p, p_corr, sig

    # -- public ---------------------------------------------------------------------
    def test(
        self,
        inputs: Tensor,
        concepts: Mapping[str, Examples],
        *,
        labels: Any = None,
        classes: Sequence[int] | int | None = None,
        random: Examples | None = None,
        class_names: Sequence[str] | None = None,
    ) -> TCAVResult:
        """Test each concept for each class.

        Args:
            inputs: images ``(N, C, H, W)``; class ``k`` is scored on the inputs labelled
                ``k`` (``labels``), or on all of them when there are no labels.
            concepts: a dict name -> example images ``(n, C, H, W)`` shaped like the inputs
                (:meth:`examples_needed` each, for every run to get ``n_examples``).
            labels: one class index per input (optional).
            classes: the classes to test (default: every label present).
            random: random images shaped like the inputs, at least :meth:`random_needed`
                (required; e.g. :func:`seethrough.data.concepts.random_images`).
            class_names: names of the model's classes, for display.

        Generated concepts by name, folders of images and tensor files are turned into
        these tensors by the app layer (:mod:`seethrough.app.concepts`).
        """
        self.check_settings()
        t0 = time.perf_counter()
        with model_guard(self.model, method="TCAV"):
            setup, classes = self._setup(inputs, concepts, labels, classes, random)
        fields = self._evaluate(setup, classes)
        return TCAVResult(
            **fields,
            class_names=tuple(str(c) for c in class_names) if class_names is not None else None,
            seconds=time.perf_counter() - t0,
        )

    def _evaluate(self, setup: _Setup, classes: list[int]) -> dict[str, Any]:
        names = list(setup.concept_acts)
        n_tests = len(names) * len(classes)
        perm = _permutation(setup.pool.shape[0], self.seed, 7)
        random_cache: dict[int, tuple] = {}
        cols: dict[str, list] = {k: [] for k in ("run", "rand", "eff", "p", "pc", "sig", "acc", "racc")}
        cavs: dict[str, Tensor] = {}
        per_run: dict[str, int] = {}
        for ci, c in enumerate(names):
            acts = setup.concept_acts[c]
            n = self._per_run(c, acts.shape[0])
            per_run[c] = n
            if n not in random_cache:
                random_cache[n] = self._random_runs(setup.pool, perm, n, setup.grads, classes, (2, n))
            negs, rand_scores, rand_accs = random_cache[n]
            cperm = _permutation(acts.shape[0], self.seed, 3, ci)
            v, run_scores, accs = self._concept_runs(acts, n, negs, setup.grads, classes, (1, ci), cperm)
            effect, p, p_corr, sig = self._decide(run_scores, rand_scores, accs, n_tests)
            for key, val in zip(cols, (run_scores, rand_scores, effect, p, p_corr, sig, accs, rand_accs)):
                cols[key].append(val)
            cavs[c] = torch.from_numpy(v.astype(np.float32))

        def t(key: str, dtype=torch.float64) -> Tensor:
            return torch.from_numpy(np.stack(cols[key])).to(dtype)

        run = t("run")
        settings = self.settings()
        settings.update(layer=setup.layer, n_tests=n_tests, layer_shape=list(setup.layer_shape))
        return dict(
            layer=setup.layer,
            concepts=tuple(names),
            classes=tuple(classes),
            scores=run.mean(dim=2),
            run_scores=run,
            random_scores=t("rand"),
            effects=t("eff"),
            p_values=t("p"),
            p_corrected=t("pc"),
            significant=t("sig", torch.bool),
            cav_accuracy=t("acc"),
            random_accuracy=t("racc"),
            cavs=cavs,
            n_inputs=setup.n_inputs,
            examples_per_run=per_run,
            settings=settings,
        )


def tcav_null_check(
    tcav: TCAV,
    inputs: Tensor,
    *,
    labels: Any = None,
    classes: Sequence[int] | int | None = None,
    random: Examples | None = None,
    trials: int = 100,
) -> NullCheckResult:
    """How often does ``tcav``'s protocol call a random set a significant concept?

    Each trial draws from one pool of random images a random "concept" (as many images
    as a generated concept gets), plus the disjoint random sets the protocol needs (a
    fresh partition of the pool per trial), and tests the random concept for every class
    with ``tcav``'s settings; the Bonferroni correction is over the classes. The pool,
    ``random`` (required), needs ``tcav.null_pool_needed()`` images: ``3 * R * n_examples``
    for ``protocol="disjoint"``, ``(R + 2) * n_examples`` for ``"shared"``. Activations and
    gradients are computed once; each trial only fits CAVs.

    A calibrated protocol calls at most a ``significance`` share of the trials
    significant (up to sampling error: see ``interval``).
    """
    if not isinstance(tcav, TCAV):
        raise ConfigError(f"tcav_null_check takes a TCAV instance (its protocol is checked), got {type(tcav).__name__}")
    tcav.check_settings()
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ConfigError(f"trials must be a positive int, got {trials!r}")
    t0 = time.perf_counter()
    n = tcav.n_examples
    n_fake = tcav.examples_needed()
    with model_guard(tcav.model, method="TCAV null check"):
        x, layer, batching, tested, lab = tcav._prepare(inputs, labels, classes)
        pool_x = tcav._load_random(random, x, tcav.null_pool_needed())
        grads, _ = tcav._gradients(x, lab, layer, tested, batching)
        pool = tcav._features(tcav._activations(layer, pool_x, batching))
    n_tests = len(tested)
    p_all, eff_all, sig_all, acc_all = [], [], [], []
    for trial in range(trials):
        perm = _permutation(pool.shape[0], tcav.seed, 11, trial)
        fake, rest = pool[perm[:n_fake]], perm[n_fake:]
        negs, rand_scores, _ = tcav._random_runs(pool, rest, n, grads, tested, (12, trial))
        cperm = np.arange(n_fake)
        _, run_scores, accs = tcav._concept_runs(fake, n, negs, grads, tested, (13, trial), cperm)
        effect, _, p_corr, sig = tcav._decide(run_scores, rand_scores, accs, n_tests)
        p_all.append(p_corr)
        eff_all.append(effect)
        sig_all.append(sig)
        acc_all.append(accs.mean())
    sig = np.stack(sig_all)
    k = int(sig.any(axis=1).sum())
    settings = tcav.settings()
    settings.update(layer=layer[0], trials=trials, classes=tested, pool=int(pool.shape[0]), n_tests_per_trial=n_tests)
    return NullCheckResult(
        false_positive_rate=k / trials,
        n_false_positives=k,
        trials=trials,
        per_test_rate=float(sig.mean()),
        interval=_clopper_pearson(k, trials),
        significance=tcav.significance,
        p_values=torch.from_numpy(np.stack(p_all)),
        effects=torch.from_numpy(np.stack(eff_all)),
        significant=torch.from_numpy(sig),
        accuracy=torch.tensor(acc_all, dtype=torch.float64),
        settings=settings,
        seconds=time.perf_counter() - t0,
    )
