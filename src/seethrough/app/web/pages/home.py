"""The home page: what this server offers, and the latest jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ..layout import esc, page, table

__all__ = ["register"]

_PAGES = (
    ("/explain", "Explain", "an image in, heatmaps of every method side by side, each with its trust scores"),
    ("/trust", "Trust", "sanity checks, faithfulness, robustness and localization of methods on a data set"),
    ("/atlas", "Atlas", "layers, units, feature visualization and the dataset examples that drive each unit"),
    ("/latent", "Latent walk", "sliders along latent directions; the Peptide Sampler"),
    ("/language", "Language", "token heatmaps, the generation matrix, logit lens and activation patching"),
    ("/jobs", "Jobs", "every background job, its progress and outputs; dataset passes"),
)


def register(ctx: Any) -> Any:

    r = APIRouter()

    @r.get("/", response_class=HTMLResponse)
    def home() -> str:
        cards = "".join(
            f'<a class="card" href="{href}"><strong>{esc(name)}</strong><span>{esc(text)}</span></a>'
            for href, name, text in _PAGES
        )
        c = ctx.config
        models = table(
            ["what", "models"],
            [
                ["image models", ", ".join(ctx.image_choices)],
                ["language models", ", ".join(ctx.text_choices)],
                ["generators", ", ".join(ctx.generator_choices)],
                ["output folder", str(ctx.root)],
            ],
        )
        jobs = ctx.store.list(limit=8)
        recent = (
            table(
                ["job", "state", "progress"],
                [[f'<a href="/jobs#{esc(j.id)}">{esc(j.title)}</a>', j.state, f"{j.progress:.0%}"] for j in jobs],
                raw=(0,),
            )
            if jobs
            else "<p>No jobs yet.</p>"
        )
        body = (
            f'<div class="cards">{cards}</div><h2>This server</h2>{models}'
            f"<p class=note>Started with model {esc(c.model)}; a page can only choose among the models above.</p>"
            f"<h2>Latest jobs</h2>{recent}"
        )
        return page("seethrough explorer", body, active="/", page_id="home")

    return r
