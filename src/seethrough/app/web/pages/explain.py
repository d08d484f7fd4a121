"""The explain page: an image (from the model's data or uploaded), methods and a target in;
heatmaps side by side out, each with its trust scores, and the maps to download.

``POST /api/explain`` runs :func:`seethrough.app.runs.run_methods` (what ``seethrough
explain`` runs) on the shared model, behind the model's lock, and scores every map with the
evaluation registry's deletion and insertion (and, when the image comes with an evidence
mask, relevance mass accuracy): one image's trust scores, beside a link to a full trust
report. The maps are written once per distinct request to ``explain/<digest>.safetensors``
under the output root.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse, Response

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.targets import ClassDifference

from ..context import digest
from ..layout import esc, jsonable, options, page, png_data_url
from ..security import TooLarge, read_upload

__all__ = ["register", "DEFAULT_METHODS", "TRUST_METRICS", "parse_target"]

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")
#: The per-map trust scores: (metric, settings). Deletion to the blurred image, as in the trust report.
TRUST_METRICS: tuple[tuple[str, dict[str, Any]], ...] = (("deletion", {"baseline": "blur"}), ("insertion", {}))
MAX_METHODS = 8


def parse_target(value: Any, n_classes: int | None) -> Any:
    """``"predicted"``/None, a class index (int or digits), or ``"a-b"`` (class a vs b)."""
    if value is None or value == "" or value == "predicted":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"target must be a class index, 'a-b' or 'predicted', got {value!r}")
    text = str(value).strip()
    try:
        if "-" in text.strip("-"):
            a, b = (int(v) for v in text.split("-", 1))
            idx: list[int] = [a, b]
            out: Any = ClassDifference(a, b)
        else:
            out = int(text)
            idx = [out]
    except ValueError:
        raise ConfigError(
            f"cannot read target {value!r}: give a class index (3), a difference (3-5) or 'predicted'"
        ) from None
    if n_classes is not None and any(not 0 <= i < n_classes for i in idx):
        raise ConfigError(f"target {value!r} is not a class of this model (0..{n_classes - 1})")
    return out


def _image_png(x: torch.Tensor) -> bytes:
    from seethrough.report.plot import array_to_png, image_for_display

    return array_to_png(image_for_display(x), cmap="gray", vmin=0.0, vmax=1.0, min_size=96)


def _overlay_png(image: torch.Tensor, heat: torch.Tensor) -> bytes:
    from seethrough.report.plot import array_to_png, heatmap_overlay

    h = heat.detach().float().cpu().numpy()
    signed = bool((h < 0).any() and (h > 0).any())
    return array_to_png(heatmap_overlay(image, h, signed=signed), min_size=160)


def _input(ctx: Any, key: str, image: Any) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(input (1, C, H, W), evidence mask (1, H, W) or None, a label of where it came from)."""
    if not isinstance(image, dict) or not ({"index", "upload"} & set(image)):
        raise InputError('image must be {"index": i} (an image of the model\'s data) or {"upload": id}')
    if "upload" in image:
        return ctx.upload_image(key, str(image["upload"])), None, "uploaded image"
    data = ctx.gallery(key)
    i = image["index"]
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(data):
        raise InputError(f"image index must be 0..{len(data) - 1}, got {i!r}")
    mask = None if data.masks is None else data.masks[i : i + 1]
    return data.images[i : i + 1], mask, f"image {i} of the data"


def explain(ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    from seethrough.app.runs import run_methods
    from seethrough.attribution.registry import get_method
    from seethrough.evaluation.registry import get_metric

    key = body.get("model", ctx.config.model)
    choice = ctx.image_choice(key)
    methods = body.get("methods") or list(DEFAULT_METHODS)
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ConfigError('methods must be a list of method names, e.g. ["saliency", "gradcam"]')
    if len(methods) > MAX_METHODS:
        raise ConfigError(f"at most {MAX_METHODS} methods a request; got {len(methods)}")
    names = [get_method(m).name for m in methods]  # unknown names: the registry's error, with near names
    x, mask, source = _input(ctx, key, body.get("image"))
    classes = choice.spec.classes or (list(ctx.gallery(key).classes or []) if choice.data is not None else None)
    target = parse_target(body.get("target"), len(classes) if classes else None)
    layer = body.get("layer") or choice.layer
    if layer is not None and not isinstance(layer, str):
        raise ConfigError(f"layer must be a dotted layer name, got {layer!r}")
    slot = ctx.image_model(key)
    t0 = time.perf_counter()
    with slot.lock:
        model = slot.get()
        with torch.no_grad():
            logits = model(x)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        probs = torch.softmax(logits.float(), dim=-1)[0]
        pred = int(probs.argmax())
        fixed = pred if target is None else target
        explanations = run_methods(model, x, names, target=fixed, layer=layer)
        scores: dict[str, dict[str, float | None]] = {}
        for name, e in explanations.items():
            row: dict[str, float | None] = {}
            metrics = list(TRUST_METRICS) + ([("relevance_mass_accuracy", {})] if mask is not None else [])
            for metric, settings in metrics:
                spec = get_metric(metric)
                kwargs = dict(settings)
                if "masks" in spec.needs:
                    kwargs["masks"] = mask
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        row[metric] = float(spec.fn(model, x, e, target=fixed, seed=0, **kwargs).mean)
                except InputError as err:  # e.g. a map the metric cannot rank (all zero)
                    row[metric] = None
                    row[f"{metric}_error"] = str(err)  # type: ignore[assignment]
            scores[name] = row
    seconds = time.perf_counter() - t0
    shown = ctx.display(key, x[0])
    maps = []
    for name, e in explanations.items():
        heat = e.heatmap()[0]
        method_spec = get_method(name)
        maps.append(
            {
                "method": name,
                "family": method_spec.family,
                "png": png_data_url(_overlay_png(shown, heat)),
                "seconds": e.seconds,
                "evaluations": e.n_evaluations,
                "scores": jsonable(scores[name]),
                "settings": jsonable(dict(e.settings)),
            }
        )
    target_label = "predicted" if target is None else str(body.get("target"))
    file = ctx.root / "explain" / f"{digest(key, x.numpy().tobytes(), names, target_label)}.safetensors"
    _save_maps(explanations, file)
    return {
        "model": key,
        "source": source,
        "input": png_data_url(_image_png(shown)),
        "prediction": {
            "index": pred,
            "label": classes[pred] if classes and pred < len(classes) else str(pred),
            "probability": float(probs[pred]),
        },
        "target": target_label,
        "layer": layer,
        "maps": maps,
        "metrics": {
            "deletion": "area under the curve as the most relevant pixels go to the blurred image (lower is better)",
            "insertion": "area as they come back (higher is better)",
            "relevance_mass_accuracy": "share of positive relevance inside the evidence mask (higher is better)",
        },
        "download": f"/files/{ctx.rel(file)}",
        "seconds": seconds,
    }


def _save_maps(explanations: dict[str, Any], file: Any) -> None:
    """Write the maps atomically (a temp file renamed over), so a concurrent identical
    request never reads half a file."""
    from safetensors.torch import save_file

    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    save_file({k: e.attributions.detach().cpu().contiguous() for k, e in explanations.items()}, str(tmp))
    os.replace(tmp, file)


def upload(ctx: Any, data: bytes) -> dict[str, Any]:
    png, info = read_upload(data, max_bytes=ctx.config.max_upload_bytes, max_pixels=ctx.config.max_pixels)
    path = ctx.upload_path(info["sha256"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
    return {"upload": info["sha256"], "width": info["width"], "height": info["height"], "format": info["format"]}


def register(ctx: Any) -> Any:

    from seethrough.attribution.registry import METHODS

    r = APIRouter()

    @r.post("/api/explain")
    def api_explain(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return explain(ctx, body)

    @r.post("/api/upload")
    async def api_upload(request: Request) -> dict[str, Any]:
        limit = ctx.config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the upload is {int(declared):,} bytes; the limit is {limit:,} (serve --max-upload-mb)")
        buf = io.BytesIO()
        async for chunk in request.stream():
            buf.write(chunk)
            if buf.tell() > limit:
                raise TooLarge(f"the upload is over {limit:,} bytes; the limit is {limit:,} (serve --max-upload-mb)")
        return upload(ctx, buf.getvalue())

    @r.get("/api/images/{model}/{index}.png")
    def api_image(model: str, index: int) -> Response:
        data = ctx.gallery(model)
        if not 0 <= index < len(data):
            raise InputError(f"image index must be 0..{len(data) - 1}, got {index}")
        png = _image_png(ctx.display(model, data.images[index]))
        return Response(png, media_type="image/png", headers={"cache-control": "max-age=3600"})

    @r.get("/explain", response_class=HTMLResponse)
    def explain_page(model: str | None = None) -> str:
        key = model if model is not None else ctx.config.model
        choice = ctx.image_choice(key)
        classes = choice.spec.classes
        gallery = ""
        if choice.data is not None:
            data = ctx.gallery(key)
            classes = classes or (list(data.classes) if data.classes else None)
            labels = data.labels.tolist() if data.labels is not None else [None] * len(data)
            gallery = "".join(
                f'<button type="button" class="thumb" data-index="{i}" title="image {i}'
                f'{esc(": " + str(classes[y])) if classes and y is not None else ""}">'
                f'<img alt="image {i}" src="/api/images/{esc(key)}/{i}.png"></button>'
                for i, y in zip(range(len(data)), labels)
            )
        targets = ["predicted"] + [str(i) for i in range(len(classes or []))]
        tlabels = {str(i): f"{i}: {c}" for i, c in enumerate(classes or [])}
        methods = "".join(
            f'<label class="check"><input type="checkbox" name="methods" value="{esc(n)}"'
            f"{' checked' if n in DEFAULT_METHODS else ''}> {esc(n)} <small>{esc(s.family)}</small></label>"
            for n, s in METHODS.items()
        )
        body = (
            '<form id="explain-form">'
            f'<div class="row"><label>model <select name="model" id="model-select">'
            f"{options(ctx.image_choices, key)}</select></label>"
            f'<label>target <select name="target">{options(targets, "predicted", tlabels)}</select></label>'
            '<label>or upload <input type="file" id="upload" accept="image/*"></label>'
            '<button type="submit" id="run-explain">Explain</button></div>'
            f'<div class="gallery" id="gallery">{gallery or "<p>No data for this model: upload an image.</p>"}</div>'
            f'<details open><summary>methods</summary><div class="methods">{methods}</div></details>'
            '</form><p id="explain-status" class="status"></p><div id="explain-result"></div>'
            "<p class=note>Trust scores are for this one image: deletion (lower is better) and insertion (higher "
            'is better) of the model\'s probability; the <a href="/trust">trust page</a> runs every check, '
            "sanity checks included, on a data set.</p>"
        )
        return page("Explain", body, active="/explain", page_id="explain")

    return r
