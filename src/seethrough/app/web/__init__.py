"""The local web explorer (``seethrough serve``): the toolkit in a browser.

A thin layer over the library: every page calls the same functions as the command line
(no second implementation of any method). Long work runs as background jobs on a bounded
pool, kept in a SQLite store under the output folder, so a restarted server lists finished
jobs and their outputs and resumes the dataset passes and atlas builds it was running.
Needs the ``web`` extra (FastAPI, uvicorn). See docs/web.md.
"""

from .context import ServeConfig, WebContext
from .server import create_app, serve
from .store import JobRecord, JobStore
from .workers import JOB_KINDS, JobCancelled, JobHandle

__all__ = [
    "JOB_KINDS",
    "JobCancelled",
    "JobHandle",
    "JobRecord",
    "JobStore",
    "ServeConfig",
    "WebContext",
    "create_app",
    "serve",
]
