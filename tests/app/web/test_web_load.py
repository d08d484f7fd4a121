"""The load test: 50 concurrent clients for 30 s on the explain endpoint of a real server
(bench/bench_web_load.py, bounded in count and time, loopback only). The numbers are in
docs/bench-web-load.md; here only what must hold: no errors, and the server still up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-load")]

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_web_load.py"


def test_fifty_clients_for_thirty_seconds(tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(BENCH), "--clients", "50", "--seconds", "30", "--floor-seconds", "2", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.is_file(), res.stdout + res.stderr
    n = json.loads(out.read_text())
    print(json.dumps(n, indent=1))
    assert n["errors"] == 0, n["error_examples"]
    assert n["server_alive_after"] and res.returncode == 0
    assert n["requests"] >= 50  # every client was answered at least once
    assert n["p95_s"] < 60 and n["rss_peak_mib"] < 4096
