"""The tasks: stateful per-worker callables, ``worker(start, stop) -> {name: tensor}``.

A worker is built from the :class:`~seethrough.app.jobs.JobSpec` alone, on the worker: it
loads the model from its name or factory and weights file and opens the data itself, once,
and then computes shard after shard. Nothing is re-implemented here; each task calls the
library:

* ``explain``: :func:`~seethrough.attribution.registry.build_method` and ``attribute``;
* ``atlas``: the dataset-examples pass of :mod:`seethrough.atlas` (the per-unit maximum
  over positions and its position, recorded by ``_core.capture.stream_activations``);
* ``trust``: the evaluation registry's metrics, per sample;
* ``metrics``: :class:`~seethrough.generative.metrics.FeatureExtractor`;
* ``sample``: the Peptide Sampler's prior, latent scorers and conditions
  (:class:`~seethrough.app.peptides.PeptideLab`).

Seeds: a sampled method or draw for sample (or candidate) ``i`` gets
``sample_seed(job seed, i)``, and such methods run one sample per call, so results do not
depend on the shard size, the worker or the engine. Deterministic methods run a whole
shard per call, in model calls sized by the core's :class:`~seethrough._core.batching.Batching`
(``batch_size`` in the settings, else sized from memory).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough._core.seeds import mix_seed

from .spec import JobSpec, close_names

__all__ = ["make_worker", "check_settings", "count_items", "decode_strings", "Worker", "TASK_SETTINGS"]

#: The settings each task reads itself (a method's own settings come on top for explain).
TASK_SETTINGS: dict[str, tuple[str, ...]] = {
    "explain": ("method", "layer", "target", "batch_size"),
    "atlas": ("layers", "batch_size"),
    "trust": ("method", "metrics", "layer", "target", "batch_size", "method_settings", "metric_settings"),
    "metrics": ("layer", "batch_size"),
    "sample": ("conditions", "components", "chunk"),
}

_DEFAULT_METRICS = ("deletion", "insertion")


def sample_seed(job_seed: int, index: int) -> int:
    """The seed of sample (or candidate) ``index``: from the job's seed and the index only,
    never the worker or the shard. 31 bits, because methods combine a seed with their own
    counters (SmoothGrad's ``seed * 1_000_003 + row`` must still fit a 64-bit generator seed)."""
    return mix_seed(job_seed, index) & 0x7FFFFFFF


def _method_parameters(name: str) -> tuple[Any, set[str]]:
    from seethrough.attribution.registry import get_method

    spec = get_method(name)
    params = set(inspect.signature(spec.cls.__init__).parameters) - {"self", "model"}
    return spec, params


def _check_method_settings(name: str, settings: Mapping[str, Any], what: str) -> None:
    spec, params = _method_parameters(name)
    allowed = params - {"layer", "batching", "seed"}
    for k in settings:
        if k == "seed" and "seed" in params:
            raise ConfigError(
                f"{spec.name} draws noise: the job gives sample i a seed derived from (job seed, i); set the job's seed "
                f"(seed=, --seed) instead of a seed in {what}"
            )
        if k not in allowed:
            raise close_names(k, sorted(allowed), f"setting of {spec.name} in {what}")


def check_settings(spec: JobSpec) -> None:
    """Refuse unknown tasks' settings, methods and metrics on the driver, with near names."""
    s = dict(spec.settings)
    own = TASK_SETTINGS[spec.task]
    if spec.task == "explain":
        if "method" not in s:
            raise ConfigError("the explain task needs settings['method'] (--method), e.g. 'integrated_gradients'")
        _check_method_settings(s["method"], {k: v for k, v in s.items() if k not in own}, "settings")
    else:
        extra = [k for k in s if k not in own]
        if extra:
            raise close_names(extra[0], list(own), f"setting of the {spec.task} task")
    if spec.task == "trust":
        from seethrough.evaluation.registry import get_metric

        _check_method_settings(s.get("method", "saliency"), s.get("method_settings", {}), "method_settings")
        for m in s.get("metrics", _DEFAULT_METRICS):
            if "masks" in get_metric(m).needs:
                raise ConfigError(f"metric {m!r} needs ground-truth masks, which jobs do not read; pick another")
    if spec.task == "sample":
        from seethrough.generative import Condition

        for c in s.get("conditions", []):
            Condition.parse(c)
    if spec.task in ("explain", "trust"):
        from seethrough.attribution.registry import get_method

        name = s.get("method", "saliency")
        if get_method(name).needs_layer and s.get("layer") is None and spec.model_spec().default_layer is None:
            raise ConfigError(
                f"method {name!r} needs a layer: give settings['layer'] (--layer), a dotted module name of the model"
            )
    bs = s.get("batch_size")
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
        raise ConfigError(f"batch_size must be a positive int, got {bs!r}")


def count_items(spec: JobSpec) -> int:
    """How many samples (or candidates) the job has."""
    if spec.task == "sample":
        assert spec.n is not None
        return int(spec.n)
    from .inputs import open_inputs

    return len(open_inputs(spec))


class Worker:
    """Base of the task workers: the model and data, opened once per worker."""

    def __init__(self, spec: JobSpec) -> None:
        from .inputs import open_inputs

        self.spec = spec
        self.settings = dict(spec.settings)
        model_spec = spec.model_spec()
        if self.settings.get("layer") is None and spec.task in ("explain", "trust"):
            from seethrough.attribution.registry import get_method

            if get_method(self.settings.get("method", "saliency")).needs_layer:
                self.settings["layer"] = model_spec.default_layer  # a bundled model's CAM layer
        self.model: nn.Module = model_spec.load()
        self.source = open_inputs(spec)

    def inputs(self, start: int, stop: int) -> Tensor:
        x = self.source.get(slice(start, stop))
        return x if x.dtype.is_floating_point else x.float()

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def _attribution(model: nn.Module, settings: Mapping[str, Any], name: str, own: Mapping[str, Any]) -> Callable:
    """``fn(x, sample_index) -> Explanation`` for a registered method: one call per shard
    for a deterministic method, one per sample (seeded by its index) for a sampled one."""
    from seethrough.attribution.masks import default_feature_mask
    from seethrough.attribution.registry import build_method

    spec, params = _method_parameters(name)
    layer = settings.get("layer")
    kw = dict(own)
    if settings.get("batch_size") is not None:
        kw["batching"] = int(settings["batch_size"])
    sampled = "seed" in params

    def run(x: Tensor, seed: int | None) -> Any:
        extra = {"seed": seed} if seed is not None else {}
        method = build_method(spec.name, model, layer=layer, **kw, **extra)
        call = {"feature_mask": default_feature_mask(x)} if spec.takes_feature_mask else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return method.attribute(x, target=settings.get("target"), **call)

    run.sampled = sampled  # type: ignore[attr-defined]
    run.method_name = spec.name  # type: ignore[attr-defined]
    return run


class ExplainWorker(Worker):
    """Attribution maps of every sample: ``attributions``, ``target``, ``score``."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        own = {k: v for k, v in self.settings.items() if k not in TASK_SETTINGS["explain"]}
        self.run = _attribution(self.model, self.settings, self.settings["method"], own)

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        x = self.inputs(start, stop)
        if self.run.sampled:  # type: ignore[attr-defined]
            parts = [self.run(x[i : i + 1], sample_seed(self.spec.seed, start + i)) for i in range(x.shape[0])]
        else:
            parts = [self.run(x, None)]
        out = {"index": torch.arange(start, stop, dtype=torch.int64)}
        out["attributions"] = torch.cat([e.attributions.detach().float() for e in parts])
        if all(e.target_indices is not None for e in parts):
            out["target"] = torch.cat([e.target_indices.reshape(-1).long() for e in parts])
        if all(e.scores is not None for e in parts):
            out["score"] = torch.cat([e.scores.detach().reshape(-1).float() for e in parts])
        return out


class AtlasWorker(Worker):
    """The dataset-examples pass per sample: ``<layer>.max`` ``(N, U)`` (each unit's
    maximum over positions) and ``<layer>.argmax`` ``(N, U, D)`` (its position)."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        from seethrough._core.capture import resolve_layers
        from seethrough.atlas import select_layers

        self.names = select_layers(self.model, self.settings.get("layers", "conv"))
        self.modules = resolve_layers(self.model, self.names)

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        from seethrough._core.capture import stream_activations
        from seethrough._core.state import model_guard
        from seethrough.atlas.examples import _unit_maxima

        x = self.inputs(start, stop)
        parts: dict[str, list[Tensor]] = {}
        with model_guard(self.model, method="dataset examples job"):
            stream = stream_activations(
                self.model,
                self.modules,
                x,
                batching=self.settings.get("batch_size"),
                transform=_unit_maxima,
                clone=False,
            )
            for _rows, store in stream:
                for nm, (vals, pos, _shape) in store.items():
                    parts.setdefault(f"{nm}.max", []).append(vals)
                    parts.setdefault(f"{nm}.argmax", []).append(pos.to(torch.int32))
        out = {k: torch.cat(v) for k, v in parts.items()}
        out["index"] = torch.arange(start, stop, dtype=torch.int64)
        return out


class TrustWorker(Worker):
    """Per-sample scores of evaluation metrics for one method: ``<metric>`` ``(N,)``."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        from seethrough.evaluation.registry import get_metric

        self.metrics = [get_metric(m) for m in self.settings.get("metrics", _DEFAULT_METRICS)]
        self.method_name = self.settings.get("method", "saliency")
        self.method_settings = dict(self.settings.get("method_settings", {}))

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        from seethrough.attribution.registry import build_method, get_method

        x = self.inputs(start, stop)
        ms = get_method(self.method_name)
        _, params = _method_parameters(self.method_name)
        kw = dict(self.method_settings)
        if self.settings.get("batch_size") is not None:
            kw["batching"] = int(self.settings["batch_size"])
        values: dict[str, list[Tensor]] = {m.name: [] for m in self.metrics}
        for i in range(x.shape[0]):
            seed = sample_seed(self.spec.seed, start + i)
            if "seed" in params:
                kw["seed"] = seed
            method = build_method(ms.name, self.model, layer=self.settings.get("layer"), **kw)
            xi = x[i : i + 1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                for m in self.metrics:
                    r = m.fn(
                        self.model,
                        xi,
                        method,
                        target=self.settings.get("target"),
                        batching=self.settings.get("batch_size"),
                        seed=seed,
                    )
                    values[m.name].append(r.values.reshape(-1).double())
        out = {k: torch.cat(v) for k, v in values.items()}
        out["index"] = torch.arange(start, stop, dtype=torch.int64)
        return out


class MetricsWorker(Worker):
    """Features for FID / KID: ``features`` ``(N, D)`` float64 from ``layer`` (default:
    the model's output)."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        from seethrough.generative.metrics import FeatureExtractor

        self.extractor = FeatureExtractor(
            self.model, layer=self.settings.get("layer"), batching=self.settings.get("batch_size")
        )

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        f = self.extractor.extract(self.inputs(start, stop))
        return {"features": f, "index": torch.arange(start, stop, dtype=torch.int64)}


def _encode_strings(strings: list[str], width: int) -> Tensor:
    buf = np.zeros((len(strings), width), dtype=np.uint8)
    for i, s in enumerate(strings):
        b = s.encode("ascii", errors="replace")[:width]
        buf[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return torch.from_numpy(buf)


def decode_strings(codes: Tensor) -> list[str]:
    """The sequences of a sample job's ``sequence`` output."""
    return [bytes(row[row > 0].tolist()).decode("ascii") for row in codes.to(torch.uint8)]


class SampleWorker:
    """Rejection sampling over candidates ``start .. stop - 1``: candidate ``i`` is drawn
    from the prior's stream ``(job seed, i)``; the accepted ones are kept with ``index``
    (their candidate numbers), ``z``, the latent scores and the decoded ``sequence``
    (ASCII codes, zero-padded; :func:`decode_strings`)."""

    def __init__(self, spec: JobSpec) -> None:
        from seethrough.app.peptides import PeptideLab
        from seethrough.generative import Condition

        self.spec = spec
        self.settings = dict(spec.settings)
        self.lab = PeptideLab.build(
            spec.autoencoder_spec(), seed=0, components=int(self.settings.get("components", 10))
        )
        conditions = [Condition.parse(c) for c in self.settings.get("conditions", [])]
        self.lab.check_names(conditions)
        self.conditions = [self.lab.z_condition(c) for c in conditions]
        self.scorers = self.lab.scorers()
        self.width = int(getattr(self.lab.model, "max_len", 40))

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        prior = self.lab.prior
        z = torch.cat([prior.sample(1, self.spec.seed, stream=(i,)) for i in range(start, stop)])
        scores = {}
        for name, fn in self.scorers.items():
            s = fn(z)
            scores[name] = np.asarray(s.detach().cpu().numpy() if isinstance(s, Tensor) else s, dtype=np.float64)
        ok = np.ones(z.shape[0], dtype=bool)
        for c in self.conditions:
            ok &= c.holds(scores[c.name].reshape(-1))
        keep = torch.from_numpy(np.nonzero(ok)[0])
        out = {"index": keep.to(torch.int64) + start, "z": z[keep]}
        for name, s in scores.items():
            out[name] = torch.from_numpy(s.reshape(-1)[keep.numpy()].copy())
        seqs = self.lab.model.sequences(z[keep]) if keep.numel() else []  # type: ignore[operator]
        out["sequence"] = _encode_strings(list(seqs), self.width)
        return out


_WORKERS: dict[str, Callable[[JobSpec], Any]] = {
    "explain": ExplainWorker,
    "atlas": AtlasWorker,
    "trust": TrustWorker,
    "metrics": MetricsWorker,
    "sample": SampleWorker,
}


def make_worker(spec: JobSpec) -> Callable[[int, int], dict[str, Tensor]]:
    """The task's worker, built here (load the model, open the data)."""
    return _WORKERS[spec.task](spec)
