"""The atlas page: browse the atlases this server built (layers -> units -> feature
visualization and dataset examples, the static site of :class:`seethrough.atlas.Atlas`),
and start a new build as a background job.

A build is resumable (the atlas keeps a manifest of its stages and a checkpoint of the
examples pass), so a server stopped mid-build continues it when it starts again.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from seethrough._core.errors import ConfigError

from ..layout import esc, options, page, table
from ..workers import JobHandle, job_kind
from .jobs import _int

__all__ = ["register", "AtlasProgress"]

_EXAMPLES = re.compile(r"examples: (\d+)/(\d+) images")
_FEATUREVIS = re.compile(r"feature visualisation: (\S+) channels (\d+)\.\.(\d+) of (\d+)")
_PAGES = re.compile(r"pages: (\S+) ")


class AtlasProgress:
    """The atlas's progress lines as a fraction: the examples pass is the first 30 %, the
    feature visualization of each layer the next 65 % (by layer and channel), the pages the
    rest."""

    def __init__(self, layers: list[str], handle: JobHandle) -> None:
        self.layers, self.handle = layers, handle

    def _index(self, name: str) -> int:
        return self.layers.index(name) if name in self.layers else 0

    def __call__(self, text: str) -> None:
        n = max(len(self.layers), 1)
        frac = None
        if m := _EXAMPLES.search(text):
            frac = 0.3 * int(m[1]) / max(int(m[2]), 1)
        elif m := _FEATUREVIS.search(text):
            frac = 0.3 + 0.65 * (self._index(m[1]) + int(m[2]) / max(int(m[4]), 1)) / n
        elif m := _PAGES.search(text):
            frac = 0.95 + 0.04 * self._index(m[1]) / n
        if frac is None:
            frac = self.handle.store.get(self.handle.id).progress
        self.handle.progress(min(frac, 0.99), text)


def _check(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    choice = ctx.image_choice(params.get("model", ctx.config.model))
    if choice.data is None:
        raise ConfigError(f"model {choice.key!r} has no data on this server; start serve with --data")
    layers = params.get("layers") or "conv"
    if not isinstance(layers, str):
        raise ConfigError('layers must be "conv" (every convolution) or comma-separated dotted layer names')
    return {
        "model": choice.key,
        "layers": layers,
        "n": _int(params, "n", 1000, 1, 1_000_000),
        "steps": _int(params, "steps", 64, 0, 4096),
        "top_k": _int(params, "top_k", 9, 1, 64),
    }


@job_kind(
    "atlas",
    check=_check,
    resumable=True,
    title=lambda p: f"atlas: {p['model']} ({p['layers']}, {p['n']} images, {p['steps']} steps)",
)
def run_atlas(ctx: Any, params: dict[str, Any], handle: JobHandle) -> dict[str, Any]:
    from seethrough.atlas import Atlas
    from seethrough.atlas.examples import select_layers

    choice = ctx.image_choice(params["model"])
    handle.progress(0.0, "loading the model and data")
    model = choice.spec.load().eval()
    source = dataclasses.replace(choice.data, n=params["n"]).image_source()
    layers = None if params["layers"] == "conv" else [s.strip() for s in params["layers"].split(",") if s.strip()]
    names = select_layers(model, layers)
    mean, std = choice.spec.normalization
    build = Atlas(
        model,
        layers=names,
        top_k=params["top_k"],
        steps=params["steps"],
        mean=mean,
        std=std,
        title=f"{params['model']} atlas",
        progress=AtlasProgress(names, handle),
    ).build(source, handle.folder / "atlas")
    return {
        "summary": {
            "units": build.n_units,
            "layers": list(build.layers),
            "seconds_examples": build.seconds_examples,
            "seconds_featurevis": build.seconds_featurevis,
        },
        "files": [ctx.rel(build.index)],
        "view": f"/files/{ctx.rel(build.index)}",
    }


def register(ctx: Any) -> Any:

    r = APIRouter()

    @r.get("/atlas", response_class=HTMLResponse)
    def atlas_page() -> str:
        jobs = ctx.store.list(kind="atlas", limit=50)
        rows = []
        for j in jobs:
            link = esc(j.title)
            if j.state == "done" and j.result:
                link = f'<a href="{esc(j.result["view"])}">{esc(j.title)}</a>'
                s = j.result["summary"]
                what = f"{s['units']} units in {len(s['layers'])} layers: {', '.join(s['layers'])}"
            else:
                what = j.error or j.message
            rows.append([link, j.state, what])
        body = (
            "<section><h2>Atlases</h2>"
            + (
                table(["atlas", "state", "contents"], rows, raw=(0,))
                + "<p class=note>An atlas opens at its index: layers, then a layer's grid of units, then a unit "
                "with its feature visualization and the dataset examples that drive it most and least.</p>"
                if rows
                else "<p>No atlas yet: build one below.</p>"
            )
            + "</section><section><h2>Build an atlas</h2>"
            '<form id="atlas-form" data-kind="atlas"><div class="row">'
            f'<label>model <select name="model">{options(ctx.image_choices, ctx.config.model)}</select></label>'
            '<label>layers <input name="layers" value="conv" title="conv, or comma-separated layer names"></label>'
            '<label>images <input name="n" type="number" value="1000" min="1"></label>'
            '<label>feature-vis steps <input name="steps" type="number" value="64" min="0"></label>'
            '<label>top k <input name="top_k" type="number" value="9" min="1" max="64"></label>'
            '<button type="submit">Build</button></div></form><div class="job-slot"></div></section>'
        )
        return page("Atlas", body, active="/atlas", page_id="atlas")

    return r
