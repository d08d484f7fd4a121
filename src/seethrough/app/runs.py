"""Explaining a user's model with registered methods: the job behind ``seethrough explain``."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from seethrough._core.result import Explanation
from seethrough._core.targets import TargetLike
from seethrough.attribution.registry import build_method, get_method
from seethrough.report.html import HtmlReport

__all__ = ["run_methods", "explain_report", "save_maps", "timing_rows"]


def run_methods(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[str],
    *,
    target: TargetLike = None,
    layer=None,
    settings: dict[str, dict] | None = None,
    feature_mask: Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Explanation]:
    """Run registered methods by name on the same inputs and target. Mask-based methods
    get ``feature_mask`` (default: :func:`~seethrough.attribution.masks.default_feature_mask`)."""
    from seethrough.attribution.masks import default_feature_mask

    settings = settings or {}
    out: dict[str, Explanation] = {}
    for name in methods:
        spec = get_method(name)
        if progress:
            progress(spec.name)
        method = build_method(spec.name, model, layer=layer, **settings.get(spec.name, {}))
        kwargs = {}
        if spec.takes_feature_mask:
            kwargs["feature_mask"] = feature_mask if feature_mask is not None else default_feature_mask(inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            out[spec.name] = method.attribute(inputs, target=target, **kwargs)
    return out


def save_maps(explanations: dict[str, Explanation], path: str | Path) -> Path:
    """Write every method's attributions to one ``.safetensors`` file, or a folder of
    ``<method>.npy`` files when ``path`` has no ``.safetensors`` suffix."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: e.attributions.detach().cpu().contiguous() for k, e in explanations.items()}, str(path))
        return path
    import numpy as np

    path.mkdir(parents=True, exist_ok=True)
    for k, e in explanations.items():
        np.save(path / f"{k}.npy", e.attributions.detach().cpu().numpy())
    return path


def timing_rows(explanations: dict[str, Explanation]) -> list[dict]:
    rows = []
    for name, e in explanations.items():
        row = {
            "method": name,
            "seconds": f"{e.seconds:.3f}",
            "model evaluations": e.n_evaluations,
            "settings": ", ".join(f"{k}={v}" for k, v in e.settings.items()),
        }
        if e.delta is not None:
            assert e.scores is not None  # a completeness delta comes with the scores
            gap = (e.scores - e.extras["baseline_scores"]).abs().clamp(min=1e-12)
            row["completeness |delta| / |F(x)-F(x')|"] = f"{float((e.delta.abs() / gap).max()):.2e} (max)"
        rows.append(row)
    return rows


def explain_report(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[str],
    *,
    target: TargetLike = None,
    layer=None,
    class_names: Sequence[str] | None = None,
    title: str = "seethrough explanation",
    html: str | Path | None = None,
    maps: str | Path | None = None,
    feature_mask: Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Explanation]:
    """Explain ``inputs`` with ``methods``; write an HTML report and/or the raw maps."""
    start = time.perf_counter()
    explanations = run_methods(
        model, inputs, methods, target=target, layer=layer, feature_mask=feature_mask, progress=progress
    )
    if html is not None:
        with torch.no_grad():
            logits = model(inputs)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        report = HtmlReport(title)
        report.add_paragraph(
            f"{inputs.shape[0]} input(s) of shape {tuple(inputs.shape[1:])}; target: "
            f"{next(iter(explanations.values())).target}; total time "
            f"{time.perf_counter() - start:.2f} s."
        )
        report.add_method_grid(
            inputs,
            explanations,
            predictions=logits if logits.dim() == 2 else None,
            class_names=list(class_names) if class_names else None,
        )
        report.add_heading("Run time and settings")
        report.add_table(timing_rows(explanations))
        Path(html).parent.mkdir(parents=True, exist_ok=True)
        report.save(html)
    if maps is not None:
        save_maps(explanations, maps)
    return explanations
