"""The explorer under load: concurrent clients on the explain endpoint of `seethrough serve`.

    python bench/bench_web_load.py --out docs/bench-web-load.md [--clients 50] [--seconds 30]

A real server process (the command a user runs, on loopback) is started with its own output
folder and warmed up; then ``--clients`` asyncio clients (httpx) post ``/api/explain``
(saliency, with the per-map trust scores: deletion, insertion, relevance mass) on the
bundled shapes images in a closed loop for ``--seconds``. Reported: requests, errors (any
status but 200, any exception), latency percentiles, throughput, and the server process's
resident memory before the load and at its peak (VmHWM). The floor, in the same run: the
same work (the page's own explain function) called in-process, one request after another,
with no HTTP, JSON or threads in between; the server's throughput is given as a ratio of it.
``--json`` writes the numbers for the load test (tests/app/web/test_web_load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = {"methods": ["saliency"], "target": "predicted"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            fields[k] = int(v.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def _start(out: Path, port: int) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-c", "import sys; from seethrough.app.cli import main; sys.exit(main())",
           "serve", "--out", str(out), "--port", str(port)]  # fmt: skip
    log = (out.parent / "serve.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {(out.parent / 'serve.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not start in 120 s")


async def _load(url: str, clients: int, seconds: float, n_images: int, pid: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    peak_rss = [0]
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        k = i
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await http.post("/api/explain", json={**BODY, "image": {"index": k % n_images}})
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            k += clients

    async def sample_memory() -> None:
        while time.monotonic() < stop_at:
            peak_rss[0] = max(peak_rss[0], _rss_kib(pid)[0])
            await asyncio.sleep(0.2)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(sample_memory(), *(client(i, http) for i in range(clients)))
    wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall": wall, "peak_rss_sampled_kib": peak_rss[0]}


def _floor(seconds: float, n_images: int) -> dict:
    """The same explain work in-process, sequentially: the page's explain() with no server."""
    from seethrough.app.web import ServeConfig, WebContext
    from seethrough.app.web.pages.explain import explain

    with tempfile.TemporaryDirectory() as tmp:
        ctx = WebContext(ServeConfig(out=tmp))
        explain(ctx, {**BODY, "image": {"index": 0}})  # warm-up: model, data
        times = []
        stop_at = time.monotonic() + seconds
        k = 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            explain(ctx, {**BODY, "image": {"index": k % n_images}})
            times.append(time.perf_counter() - t0)
            k += 1
    return {"requests": len(times), "per_s": len(times) / sum(times), "p50": statistics.median(times)}


def _pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--floor-seconds", type=float, default=10.0)
    p.add_argument("--images", type=int, default=24, help="distinct gallery images cycled through (default: 24)")
    p.add_argument("--out", help="write the markdown table here")
    p.add_argument("--json", help="write the numbers as JSON here")
    args = p.parse_args(argv)
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        port = _free_port()
        proc = _start(out, port)
        url = f"http://127.0.0.1:{port}"
        try:
            for i in range(3):  # warm-up: the model, the gallery, the metrics
                httpx.post(url + "/api/explain", json={**BODY, "image": {"index": i}}, timeout=120).raise_for_status()
            rss_before, _ = _rss_kib(proc.pid)
            res = asyncio.run(_load(url, args.clients, args.seconds, args.images, proc.pid))
            rss_after, hwm = _rss_kib(proc.pid)
            alive = httpx.get(url + "/api/health", timeout=10).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    floor = _floor(args.floor_seconds, args.images)
    lat = res["latencies"]
    n = len(lat)
    numbers = {
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": n,
        "errors": len(res["errors"]),
        "error_examples": res["errors"][:5],
        "throughput_per_s": n / res["wall"],
        "p50_s": _pct(lat, 50) if lat else None,
        "p95_s": _pct(lat, 95) if lat else None,
        "p99_s": _pct(lat, 99) if lat else None,
        "max_s": max(lat) if lat else None,
        "rss_before_mib": rss_before / 1024,
        "rss_peak_mib": max(hwm, res["peak_rss_sampled_kib"]) / 1024,
        "rss_after_mib": rss_after / 1024,
        "server_alive_after": alive,
        "floor_per_s": floor["per_s"],
        "floor_p50_s": floor["p50"],
        "throughput_vs_floor": (n / res["wall"]) / floor["per_s"],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    rows = [
        ("concurrent clients", f"{args.clients}"),
        ("duration", f"{args.seconds:.0f} s"),
        ("requests answered", f"{n}"),
        ("errors", f"{numbers['errors']}"),
        ("throughput", f"{numbers['throughput_per_s']:.1f} requests/s"),
        (
            "latency p50 / p95 / p99 / max",
            " / ".join(f"{numbers[k]:.2f} s" for k in ("p50_s", "p95_s", "p99_s", "max_s")) if lat else "-",
        ),  # fmt: skip
        (
            "server memory: before / peak / after",
            f"{numbers['rss_before_mib']:.0f} / {numbers['rss_peak_mib']:.0f} / {numbers['rss_after_mib']:.0f} MiB",
        ),  # fmt: skip
        (
            "floor: the same work in-process, sequential",
            f"{floor['per_s']:.1f} requests/s (p50 {floor['p50'] * 1000:.0f} ms)",
        ),
        ("server throughput / floor", f"{numbers['throughput_vs_floor']:.2f}"),
    ]
    md = (
        "# The explorer under load\n\n"
        f"`python bench/bench_web_load.py --clients {args.clients} --seconds {args.seconds:.0f}` on "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}: {args.clients} asyncio httpx clients post "
        "`/api/explain` (saliency with its per-map trust scores: deletion, insertion, relevance mass accuracy) "
        "in a closed loop against a `seethrough serve` process on loopback.\n\n"
        "| measure | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows) + "\n"
        "Requests on one model are served one at a time (the model's lock: two requests never run hooks on the "
        "same module at once), so the latency under load is mostly queueing: about the number of clients times "
        "the time of one request. The floor is the same explain function called directly, one request after "
        "another, so the ratio is what HTTP, JSON, PNG encoding in the response and the thread pool cost.\n"
    )
    if args.out:
        Path(args.out).write_text(md)
    print(md)
    return 0 if numbers["errors"] == 0 and alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
