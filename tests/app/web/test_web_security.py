"""The explorer's security rules, each tried against the running app."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seethrough.app.web import ServeConfig
from seethrough.app.web.security import FileRefused, check_bind, read_upload, safe_path


def _png(w=32, h=32, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(w=50_000, h=50_000) -> bytes:
    """A valid PNG header and a tiny zlib stream that would inflate to w*h*3 bytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * (w * 3)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(50)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------ binding
def test_loopback_by_default_and_a_warning_elsewhere():
    assert ServeConfig().host == "127.0.0.1"
    for host in ("127.0.0.1", "::1", "localhost"):
        assert check_bind(host) is None
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        w = check_bind(host)
        assert w and "WARNING" in w and host in w and "--host 127.0.0.1" in w


# ------------------------------------------------------------------------------ hosts and origins
def test_host_header_must_name_this_server(client):
    assert client.get("/", headers={"host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    r = client.get("/", headers={"host": "evil.example:8765"})
    assert r.status_code == 400 and "Host" in r.json()["detail"]


def test_cross_origin_posts_are_refused(client):
    body = {"kind": "trust", "params": {"n": 1, "methods": ["saliency"], "families": ["complexity"]}}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        r = client.post("/api/jobs", json=body, headers={"origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"], origin
    assert client.get("/api/jobs").json() == []  # nothing was queued
    ok = client.post("/api/jobs", json=body, headers={"origin": "http://127.0.0.1:8765"})
    assert ok.status_code == 202


def test_state_changes_only_by_post(client):
    for path in ("/api/explain", "/api/jobs/abc/cancel", "/api/upload", "/api/peptides/interpolate"):
        assert client.get(path).status_code == 405, path
    assert client.put("/api/jobs", json={}).status_code == 405


def test_security_headers(client):
    page = client.get("/explain")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert page.headers["x-content-type-options"] == "nosniff"
    # the pages hold no inline script (the CSP would block it): all of it is /static/app.js
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.text)


# ------------------------------------------------------------------------------ uploads
def test_upload_limits_and_formats(tmp_path, make_client):
    cfg = ServeConfig(out=str(tmp_path / "out"), port=8765, max_upload_bytes=20_000, max_pixels=100_000)
    with make_client(cfg) as c:
        ok = c.post("/api/upload", content=_png())
        assert ok.status_code == 200 and ok.json()["width"] == 32 and len(ok.json()["upload"]) == 64
        big = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, format="PNG")
        r = c.post("/api/upload", content=buf.getvalue())
        assert r.status_code == 413 and "limit is 20,000" in r.json()["detail"]
        r = c.post("/api/upload", content=_png(400, 400))  # small file, too many pixels
        assert r.status_code == 413 and "160,000 pixels" in r.json()["detail"]
        for junk in (b"#!/bin/sh\necho hi\n", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                     b"PK\x03\x04 not a zip either", b""):  # fmt: skip
            r = c.post("/api/upload", content=junk)
            assert r.status_code == 400, junk
        assert not list((Path(cfg.out) / "uploads").glob("*.svg"))
        r = c.post("/api/language/explain", json={"prompt": "x" * 2001})  # refused before any model loads
        assert r.status_code == 413 and "the limit is 2000" in r.json()["detail"]


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _bomb_png()
    assert len(bomb) < 200_000
    with pytest.raises(Exception, match="decompression bomb is refused before it is decoded"):
        read_upload(bomb, max_bytes=10**7, max_pixels=16_000_000)


def test_uploads_are_reencoded_png(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(buf, format="JPEG")
    png, info = read_upload(buf.getvalue(), max_bytes=10**6, max_pixels=10**6)
    assert png.startswith(b"\x89PNG") and info["format"] == "JPEG" and (info["width"], info["height"]) == (20, 10)


# ------------------------------------------------------------------------------ file serving
def test_files_only_from_the_output_root(tmp_path, config, make_client):
    root = Path(config.out)
    with make_client(config) as c:
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        (root / "jobs" / "ok.json").write_text('{"a": 1}')
        outside = tmp_path / "secret.txt"
        outside.write_text("TOPSECRET-CONTENT")
        (root / "jobs" / "link.txt").symlink_to(outside)
        (root / "jobs" / "inner.json").symlink_to(root / "jobs" / "ok.json")
        (root / "linkdir").symlink_to(tmp_path)
        assert c.get("/files/jobs/ok.json").json() == {"a": 1}
        assert "default-src 'none'" in c.get("/files/jobs/ok.json").headers["content-security-policy"]
        for bad in ("jobs/link.txt", "jobs/inner.json", "linkdir/secret.txt", "jobs/%2e%2e/%2e%2e/secret.txt",
                    "%2Fetc%2Fpasswd", "..%2fsecret.txt", ".jobs.sqlite", "jobs", "jobs/missing.json",
                    "jobs%5c..%5c..%5csecret.txt"):  # fmt: skip
            r = c.get(f"/files/{bad}")
            assert r.status_code == 404 and "TOPSECRET" not in r.text, bad
    for bad in ("/etc/passwd", "../secret.txt", "a/../../b", "C:/x", "a\\b", "", "a\x00b"):
        with pytest.raises(FileRefused):
            safe_path(root, bad)


# ------------------------------------------------------------------------------ models and escaping
def test_a_page_cannot_name_a_model_path(client, tmp_path):
    r = client.post("/api/explain", json={"model": str(tmp_path / "evil.pt"), "image": {"index": 0}})
    assert r.status_code == 400 and "This server offers: shapes-cnn" in r.json()["detail"]
    r = client.post("/api/explain", json={"model": "os:system", "image": {"index": 0}})
    assert r.status_code == 400
    r = client.get("/api/latent/methods", params={"generator": "seethrough.testing.models:TinyGenerator"})
    assert r.status_code == 400 and "scenes-gan" in r.json()["detail"]
    r = client.post("/api/language/lens", json={"model": str(tmp_path), "prompt": "a"})
    assert r.status_code == 400 and "kv-lm" in r.json()["detail"]
    r = client.post("/api/jobs", json={"kind": "atlas", "params": {"model": "/tmp/m.pt"}})
    assert r.status_code == 400


def test_user_strings_are_escaped(client):
    evil = '<img src=x onerror="alert(1)">'
    ctx = client.app.state.ctx
    ctx.store.create("trust", {"methods": ["saliency"]}, title=evil)
    for path in ("/", "/trust"):
        text = client.get(path).text
        assert evil not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text, path
    r = client.get("/explain", params={"model": evil})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    r = client.post("/api/language/lens", json={"model": "kv-lm", "prompt": f"k1 = 2 ; {evil} k1 ->"})
    assert r.status_code == 200 and evil not in r.json()["html"] and "<img src=x" not in r.json()["html"]


def test_no_pickle_in_the_explorer():
    src = Path(__file__).resolve().parents[3] / "src" / "seethrough" / "app" / "web"
    text = "\n".join(p.read_text() for p in src.rglob("*.py"))
    assert "pickle" not in text and "torch.load" not in text and "weights_only=False" not in text
