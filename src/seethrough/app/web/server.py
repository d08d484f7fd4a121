"""The explorer's FastAPI application: :func:`create_app` and :func:`serve`.

The pages are thin: each module in :mod:`seethrough.app.web.pages` reads a form, calls the
library (the same functions as the command line) and shows what it returns. Errors of the
library (bad input, unknown names) come back as ``400`` with the library's own message.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from seethrough._core.errors import SeethroughError

from .context import ServeConfig, WebContext
from .security import FileRefused, GuardMiddleware, TooLarge, check_bind, content_type, safe_path
from .workers import JobRunner, QueueFull

__all__ = ["create_app", "serve", "PAGES"]

log = logging.getLogger("seethrough.web")

#: The page modules; each has ``register(ctx) -> APIRouter``.
PAGES = (".home", ".explain", ".trust", ".atlas", ".latent", ".language", ".jobs")

STATIC = Path(__file__).parent / "static"


def create_app(config: ServeConfig | None = None, *, start_jobs: bool = True) -> Any:
    """The application for ``config``. ``start_jobs=False`` leaves queued and interrupted
    jobs as they are (for tests that look at the store before a restart)."""

    config = config or ServeConfig()
    ctx = WebContext(config)
    for name in PAGES:  # the job kinds register as the pages import
        importlib.import_module(name, "seethrough.app.web.pages")
    runner = JobRunner(ctx, ctx.store, workers=config.workers, max_queued=config.max_queued)
    ctx.runner = runner

    @asynccontextmanager
    async def lifespan(app: Any):
        if start_jobs:
            requeued, failed = runner.resume()
            if requeued or failed:
                log.warning("after the restart: %d job(s) resumed, %d marked failed", len(requeued), len(failed))
        try:
            yield
        finally:
            runner.shutdown(wait=False)

    app = FastAPI(title="seethrough explorer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.add_middleware(GuardMiddleware, allowed_hosts=config.allowed_hosts())

    @app.exception_handler(SeethroughError)
    async def _library_error(request: Request, exc: SeethroughError) -> JSONResponse:
        headers = {}
        if isinstance(exc, QueueFull):  # the server is busy, the request was fine: ask again later
            status, headers = 503, {"Retry-After": "10"}
        elif isinstance(exc, TooLarge):
            status = 413
        else:
            status = 400
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status, headers=headers)

    @app.exception_handler(FileRefused)
    async def _refused(request: Request, exc: FileRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        path = safe_path(STATIC, name)
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}.get(path.suffix)
        if kind is None:
            raise FileRefused(f"no static file {name!r}")
        return FileResponse(path, media_type=kind, headers={"cache-control": "no-cache"})

    @app.get("/files/{path:path}")
    def files(path: str) -> Response:
        """A file from the output root (job outputs, saved maps): never outside it."""
        real = safe_path(ctx.root, path)
        kind = content_type(real)
        if kind is None:  # tensors and anything else: a download
            return FileResponse(real, media_type="application/octet-stream", filename=real.name)
        return FileResponse(real, media_type=kind)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "root": str(ctx.root), "workers": config.workers}

    for name in PAGES:
        module = importlib.import_module(name, "seethrough.app.web.pages")
        app.include_router(module.register(ctx))
    return app


def serve(config: ServeConfig, *, log_level: str = "warning") -> None:
    """Run the explorer until interrupted (uvicorn on ``config.host:config.port``)."""
    import uvicorn

    warning = check_bind(config.host)
    if warning:
        print(warning, flush=True)
    app = create_app(config)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"seethrough explorer on http://{host}:{config.port}/  (output folder: {app.state.ctx.root})", flush=True)
    print("Press Ctrl+C to stop. Finished jobs and their outputs stay in the output folder.", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, access_log=False)
