"""The jobs API and page, and the dataset-pass job (:mod:`seethrough.app.jobs`).

``POST /api/jobs`` ``{"kind", "params"}`` queues a job (its parameters are checked first:
bad ones are a ``400`` with the reason); ``GET /api/jobs`` lists them, ``GET /api/jobs/{id}``
is one (state, progress, message, result), ``POST /api/jobs/{id}/cancel`` cancels it.
The dataset pass runs :func:`~seethrough.app.jobs.run_job` on the local engine and commits
shard by shard, so a server killed mid-job resumes it when it starts again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import HTMLResponse

from seethrough._core.errors import ConfigError

from ..layout import esc, options, page
from ..workers import JOB_KINDS, JobHandle, job_kind

__all__ = ["register"]


def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    v = params.get(name, default)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {v!r}")
    return v


# ------------------------------------------------------------------------------ dataset pass
def _dataset_spec(ctx: Any, params: dict[str, Any], out: str) -> Any:
    from seethrough.app.jobs import JobSpec

    choice = ctx.image_choice(params.get("model"))
    if choice.data is None:
        raise ConfigError(f"model {choice.key!r} has no data on this server; start serve with --data")
    s = choice.spec
    settings = dict(params.get("settings") or {})
    if params.get("task", "explain") in ("explain", "trust") and "layer" not in settings and choice.layer:
        settings["layer"] = choice.layer
    return JobSpec(
        task=params.get("task", "explain"),
        model=s.name,
        data=choice.data.source,
        out=out,
        settings=settings,
        n=params.get("n"),
        shard_size=params.get("shard_size", 64),
        seed=params.get("seed", 0),
        weights=s.weights,
        size=s.size,
        channels=s.channels,
        mean=s.mean,
        std=s.std,
    )


def _check_dataset(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    from seethrough.app.jobs.tasks import check_settings

    task = params.get("task", "explain")
    if task not in ("explain", "atlas", "trust"):
        raise ConfigError(f"the web dataset pass runs explain, atlas or trust; got task {task!r}")
    out = {
        "task": task,
        "model": params.get("model", ctx.config.model),
        "settings": params.get("settings") or {},
        "n": _int(params, "n", 256, 1, 1_000_000),
        "shard_size": _int(params, "shard_size", 64, 1, 100_000),
        "seed": _int(params, "seed", 0, 0, 2**31 - 1),
    }
    if not isinstance(out["settings"], dict):
        raise ConfigError('settings must be a JSON object, e.g. {"method": "saliency"}')
    check_settings(_dataset_spec(ctx, out, str(ctx.root / "jobs" / "check")))
    return out


@job_kind(
    "dataset",
    check=_check_dataset,
    resumable=True,
    title=lambda p: f"dataset pass: {p['task']} {p['settings'].get('method', '')} on {p['model']} ({p['n']} samples)",
)
def run_dataset(ctx: Any, params: dict[str, Any], handle: JobHandle) -> dict[str, Any]:
    from seethrough.app.jobs import run_job

    spec = _dataset_spec(ctx, params, str(handle.folder / "shards"))

    def progress(done: int, total: int, rec: Any) -> None:
        handle.progress(done / max(total, 1), f"shard {done} of {total}")

    handle.progress(0.0, "starting")
    manifest = run_job(spec, engine="local", progress=progress)
    files = sorted(ctx.rel(p) for p in (handle.folder / "shards").iterdir() if not p.name.startswith("."))
    return {"summary": {"shards": manifest.n_shards, "samples": manifest.n_items}, "files": files}


# ------------------------------------------------------------------------------ API and page
def register(ctx: Any) -> Any:

    r = APIRouter()

    def one(job_id: str) -> Any:
        try:
            return ctx.store.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}; see GET /api/jobs") from None

    @r.post("/api/jobs", status_code=202)
    def submit(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        job = ctx.runner.submit(body.get("kind"), body.get("params") or {})
        return job.to_json()

    @r.get("/api/jobs")
    def list_jobs(kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [j.to_json() for j in ctx.store.list(kind=kind, limit=max(1, min(limit, 1000)))]

    @r.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return one(job_id).to_json()

    @r.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        one(job_id)
        return ctx.store.request_cancel(job_id).to_json()

    @r.get("/jobs", response_class=HTMLResponse)
    def jobs_page() -> str:
        from seethrough.attribution.registry import METHODS

        models = list(ctx.image_choices)
        body = (
            "<section><h2>All jobs</h2><p>Every background job of this server, newest first. They are kept in "
            f"the output folder <code>{esc(ctx.root)}</code>: a restarted server lists them again.</p>"
            '<div id="job-list" class="jobs">loading…</div></section>'
            "<section><h2>A dataset pass</h2><p>One attribution method over the first N images of the model's "
            "data, shard by shard (the same job as <code>seethrough run explain</code>); a stopped server resumes "
            "it.</p>"
            '<form id="dataset-form" class="row">'
            f'<label>model <select name="model">{options(models, ctx.config.model)}</select></label>'
            f'<label>method <select name="method">{options(METHODS, "saliency")}</select></label>'
            '<label>images <input name="n" type="number" value="256" min="1" max="100000"></label>'
            '<label>shard size <input name="shard_size" type="number" value="64" min="1"></label>'
            '<button type="submit">Start</button></form><div id="dataset-job"></div></section>'
        )
        return page("Jobs", body, active="/jobs", page_id="jobs")

    return r


def kinds() -> list[str]:
    return sorted(JOB_KINDS)
