"""The trust page: run a trust report as a background job, or open one that was run.

The job calls :func:`seethrough.evaluation.trust_report` (what ``seethrough trust`` runs)
on its own copy of the model and writes ``trust.html`` (the ranking table, every metric,
the sanity-check curves and example maps) and ``trust.safetensors`` (the whole report,
:meth:`~seethrough.evaluation.TrustReport.load` reads it back) into the job's folder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from seethrough._core.errors import ConfigError

from ..layout import esc, jsonable, options, page, table
from ..workers import JobHandle, job_kind
from .jobs import _int

__all__ = ["register"]

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")


def _check(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    from seethrough.attribution.registry import get_method
    from seethrough.evaluation.registry import METRIC_FAMILIES, get_metric

    choice = ctx.image_choice(params.get("model", ctx.config.model))
    if choice.data is None:
        raise ConfigError(f"model {choice.key!r} has no data on this server; start serve with --data")
    methods = params.get("methods") or list(DEFAULT_METHODS)
    if not isinstance(methods, list) or not methods:
        raise ConfigError('methods must be a non-empty list, e.g. ["saliency", "gradcam"]')
    methods = [get_method(str(m)).name for m in methods]
    families = params.get("families") or None
    if families is not None:
        bad = [f for f in families if f not in METRIC_FAMILIES]
        if bad:
            raise ConfigError(f"unknown metric families {bad}; choose from {', '.join(METRIC_FAMILIES)}")
    metrics = params.get("metrics") or None
    if metrics is not None:
        metrics = [get_metric(str(m)).name for m in metrics]
    budget = params.get("time_budget")
    if budget is not None and (not isinstance(budget, (int, float)) or budget <= 0):
        raise ConfigError(f"time_budget must be positive seconds, got {budget!r}")
    return {
        "model": choice.key,
        "methods": methods,
        "families": families,
        "metrics": metrics,
        "n": _int(params, "n", 8, 1, 512),
        "randomization": bool(params.get("randomization", True)),
        "time_budget": budget,
        "seed": _int(params, "seed", 0, 0, 2**31 - 1),
    }


@job_kind("trust", check=_check, title=lambda p: f"trust report: {', '.join(p['methods'])} on {p['model']}")
def run_trust(ctx: Any, params: dict[str, Any], handle: JobHandle) -> dict[str, Any]:
    from seethrough.evaluation.registry import select_metrics
    from seethrough.evaluation.trust import trust_report

    choice = ctx.image_choice(params["model"])
    handle.progress(0.0, "loading the model and data")
    model = choice.spec.load().eval()  # the job's own copy: the pages keep theirs
    data = dataclasses.replace(choice.data, n=params["n"]).load(default_n=params["n"])
    n_metrics = len(select_metrics(params["metrics"], families=params["families"], have_masks=data.masks is not None))
    total = len(params["methods"]) * (1 + n_metrics + (1 if params["randomization"] else 0))
    report = trust_report(
        model,
        data.images,
        params["methods"],
        masks=data.masks,
        layer=choice.layer,
        metrics=params["metrics"],
        families=params["families"],
        randomization=params["randomization"],
        class_names=list(data.classes) if data.classes else choice.spec.classes,
        time_budget=params["time_budget"],
        seed=params["seed"],
        progress=handle.steps(total),
        title=f"Trust report: {params['model']} on {data.note or 'its data'}",
    )
    handle.progress(0.99, "writing the report")
    html = report.save(handle.folder / "trust.html")
    st = report.save(handle.folder / "trust.safetensors")
    return {
        "summary": {
            "table": jsonable(report.table()),
            "rankings": jsonable({f: dict(v) for f, v in report.rankings.items()}),
            "metrics": [s.name for s in report.metrics],
            "higher_is_better": {s.name: s.higher_is_better for s in report.metrics},
            "notes": list(report.notes),
            "seconds": report.seconds,
            "n": int(data.images.shape[0]),
        },
        "files": [ctx.rel(html), ctx.rel(st)],
        "view": f"/trust/{handle.id}",
    }


def report_body(job: Any) -> str:
    """The ranking table and the metric table of a finished trust job, and its full page."""
    s = job.result["summary"]
    fams = s["rankings"]
    methods = [row["method"] for row in s["table"]]
    rank_rows = [[m] + [fams[f].get(m) for f in fams] for m in methods]
    rank = table(["method"] + [f"{f} (mean rank)" for f in fams], rank_rows, cls="ranking")
    metric_rows = [[row["method"]] + [row.get(k) for k in s["metrics"]] for row in s["table"]]
    arrows = ["↑" if s["higher_is_better"][k] else "↓" for k in s["metrics"]]
    metrics = table(["method"] + [f"{k} {a}" for k, a in zip(s["metrics"], arrows)], metric_rows, cls="metrics")
    html, st = job.result["files"]
    notes = "".join(f"<li>{esc(n)}</li>" for n in s["notes"])
    return (
        f"<p>{s['n']} images, {s['seconds']:.1f} s. Rank 1 is best in each family. "
        f'<a href="/files/{esc(html)}">open the full report</a> · '
        f'<a href="/files/{esc(st)}">download it (.safetensors)</a></p>'
        f"<h2>Ranking</h2>{rank}<h2>Every metric</h2>{metrics}"
        + (f"<ul class=note>{notes}</ul>" if notes else "")
        + "<h2>Sanity checks and example maps</h2>"
        f'<iframe class="report" title="the trust report" src="/files/{esc(html)}"></iframe>'
    )


def register(ctx: Any) -> Any:

    from seethrough.attribution.registry import METHODS
    from seethrough.evaluation.registry import METRIC_FAMILIES

    r = APIRouter()

    @r.get("/trust", response_class=HTMLResponse)
    def trust_page() -> str:
        done = ctx.store.list(kind="trust", limit=50)
        rows = [
            [f'<a href="/trust/{esc(j.id)}">{esc(j.title)}</a>' if j.state == "done" else esc(j.title), j.state]
            for j in done
        ]
        methods = "".join(
            f'<label class="check"><input type="checkbox" name="methods" value="{esc(n)}"'
            f"{' checked' if n in DEFAULT_METHODS else ''}> {esc(n)}</label>"
            for n in METHODS
        )
        fams = "".join(
            f'<label class="check"><input type="checkbox" name="families" value="{esc(f)}" checked> {esc(f)}</label>'
            for f in METRIC_FAMILIES
        )
        body = (
            "<section><h2>Run a trust report</h2>"
            '<form id="trust-form" data-kind="trust">'
            f'<div class="row"><label>model <select name="model">{options(ctx.image_choices, ctx.config.model)}'
            '</select></label><label>images <input name="n" type="number" value="8" min="1" max="512"></label>'
            '<label class="check"><input type="checkbox" name="randomization" checked> sanity checks '
            "(model randomization)</label>"
            '<label>time budget (s) <input name="time_budget" type="number" min="1" placeholder="none"></label>'
            '<button type="submit">Start</button></div>'
            f'<details open><summary>methods</summary><div class="methods">{methods}</div></details>'
            f'<details><summary>metric families</summary><div class="methods">{fams}</div></details>'
            '</form><div class="job-slot"></div></section>'
            "<section><h2>Reports</h2>"
            + (table(["report", "state"], rows, raw=(0,)) if rows else "<p>None yet.</p>")
            + "</section>"
        )
        return page("Trust", body, active="/trust", page_id="trust")

    @r.get("/trust/{job_id}", response_class=HTMLResponse)
    def trust_view(job_id: str) -> str:
        try:
            job = ctx.store.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        if job.kind != "trust" or job.state != "done":
            raise HTTPException(404, f"job {job_id!r} is not a finished trust report ({job.kind}, {job.state})")
        return page(job.title, report_body(job), active="/trust", page_id="trust-view")

    return r
