"""What keeps the explorer safe to run: hosts, origins, uploads and file serving.

* :func:`check_bind` — loopback by default; any other address needs ``--host`` and gets a
  printed warning (the explorer has no accounts: whoever reaches the port can use it).
* :class:`GuardMiddleware` — requests must name this server in ``Host`` (against DNS
  rebinding); state-changing requests (anything but GET/HEAD/OPTIONS) must carry an
  ``Origin`` of this server when they carry one at all (browsers always do on POST), and
  every response gets a content security policy (scripts only from this server; no
  network beyond it) and ``nosniff``.
* :func:`read_upload` — a size limit while reading, a pixel limit read from the header
  before any pixel is decoded (decompression bombs), and only image formats decoded.
* :func:`safe_path` — files served only from inside the output root: absolute paths,
  ``..``, symbolic links and anything but regular files are refused.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

from seethrough._core.errors import InputError

__all__ = [
    "ALLOWED_FORMATS",
    "GuardMiddleware",
    "TooLarge",
    "UploadError",
    "check_bind",
    "is_loopback",
    "read_upload",
    "safe_path",
    "FileRefused",
]

#: Image formats an upload may be in (by the decoder's own identification, not the name).
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"})

#: Content types of the files the server hands out, by suffix; anything else goes as a download.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

# pages: scripts only from here (no inline script), inline styles (the library's HTML
# fragments use them), images from here or data: URLs, nothing fetched from elsewhere
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'; form-action 'self'"
)
# files from the output root (reports the library wrote): no script at all
FILE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline' 'self'; img-src 'self' data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)


class UploadError(InputError):
    """An upload that is refused (too large, too many pixels, not an image)."""


class TooLarge(UploadError):
    """Input over a size limit of this server (bytes, pixels, prompt length): answered 413."""


class FileRefused(InputError):
    """A file request outside the output root, through a link, or of something not a file."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str) -> str | None:
    """The warning to print when ``host`` is not a loopback address, else None."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host}, not loopback: anyone who can reach this address and port can run "
        "models and read the results in the output folder (there are no accounts). Use the default "
        "--host 127.0.0.1 unless you mean it."
    )


# ------------------------------------------------------------------------------ uploads
def read_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[bytes, dict[str, Any]]:
    """Check an uploaded image and re-encode it as PNG (the only form kept on disk).

    Returns ``(png bytes, info)`` with ``info = {"sha256", "format", "width", "height"}``.
    Refuses more than ``max_bytes``, images over ``max_pixels`` (from the header, before
    decoding), files the decoder does not identify as one of :data:`ALLOWED_FORMATS`,
    and files that fail to decode."""
    from PIL import Image

    if len(data) > max_bytes:
        raise TooLarge(f"the upload is {len(data):,} bytes; the limit is {max_bytes:,} (serve --max-upload-mb)")
    if not data:
        raise UploadError("the upload is empty; choose an image file (PNG, JPEG, GIF, BMP, WebP or TIFF)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(
            f"the image is too large to decode ({e}); the limit is {max_pixels:,} pixels (a decompression bomb "
            "is refused before it is decoded)"
        ) from None
    except Image.UnidentifiedImageError:
        raise UploadError(
            "the upload is not an image this server decodes; send PNG, JPEG, GIF, BMP, WebP or TIFF"
        ) from None
    except OSError as e:
        raise UploadError(f"cannot read the upload as an image: {e}") from None
    w, h = img.size
    if w < 1 or h < 1 or w * h > max_pixels:
        raise TooLarge(
            f"the image is {w} x {h} = {w * h:,} pixels; the limit is {max_pixels:,} (a decompression bomb is "
            "refused before it is decoded; serve --max-pixels raises the limit)"
        )
    try:
        img.seek(0)
        rgb = img.convert("RGB")  # decodes the first frame only
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UploadError(f"cannot decode the image: {e}") from None
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    png = buf.getvalue()
    return png, {"sha256": hashlib.sha256(png).hexdigest(), "format": img.format, "width": w, "height": h}


# ------------------------------------------------------------------------------ file serving
def safe_path(root: Path, requested: str) -> Path:
    """The file ``requested`` (a relative, forward-slash path) inside ``root``.

    Refused: empty, absolute or drive paths, backslashes, ``.``/``..`` parts, hidden parts
    (``.name``: the job store and temp files), a symbolic link anywhere on the way, and
    anything that is not a regular file."""
    if not requested or "\x00" in requested or "\\" in requested:
        raise FileRefused(f"refused file path {requested!r}: give a path relative to the output folder")
    pure = PurePosixPath(requested)
    if pure.is_absolute() or requested.startswith("/") or (len(requested) > 1 and requested[1] == ":"):
        raise FileRefused(f"refused absolute path {requested!r}: only files under the output folder are served")
    parts = pure.parts
    if any(p in ("..", ".") or p.startswith(".") for p in parts):
        raise FileRefused(f"refused path {requested!r}: '..', '.' and hidden names are not served")
    root = Path(os.path.realpath(root))
    here = root
    for p in parts:
        here = here / p
        if here.is_symlink():
            raise FileRefused(f"refused {requested!r}: it goes through a symbolic link")
    if not here.is_file():
        raise FileRefused(f"no file {requested!r} in the output folder")
    real = Path(os.path.realpath(here))
    if root != real and root not in real.parents:
        raise FileRefused(f"refused {requested!r}: it is outside the output folder")
    return real


def content_type(path: Path) -> str | None:
    return CONTENT_TYPES.get(path.suffix.lower())


# ------------------------------------------------------------------------------ middleware
class GuardMiddleware:
    """ASGI middleware: the Host and Origin checks and the security headers (see the module doc)."""

    def __init__(self, app: Any, *, allowed_hosts: set[str]) -> None:
        self.app = app
        self.allowed_hosts = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "").lower()
        method = scope.get("method", "GET").upper()
        problem = None
        if host not in self.allowed_hosts:
            problem = (400, f"unexpected Host header {host!r}; open the explorer at the URL that serve printed")
        elif method not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None:
                bare = origin.lower().split("://", 1)[-1].rstrip("/")
                if origin.lower() == "null" or bare not in self.allowed_hosts:
                    problem = (403, f"cross-origin request refused (Origin {origin!r}); use the explorer's own pages")
        if problem is not None:
            await _plain(send, *problem)
            return
        path = scope.get("path", "")
        csp = FILE_CSP if path.startswith("/files/") else PAGE_CSP

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Any, status: int, text: str) -> None:
    import json

    body = json.dumps({"detail": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
