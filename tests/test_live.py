"""`acflow live` streams frames through the same pipeline as `analyze` (here: a pcapng stream on stdin)."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import sample


def test_live_stdin_matches_analyze():
    d = sample("legacy-dtls")
    cap = (d / "capture.pcapng").read_bytes()
    live = subprocess.run([sys.executable, "-m", "analyzer.cli", "live", "--stdin", "--keylog", str(d / "keys.log"),
                           "--format", "json"], input=cap, capture_output=True)
    assert live.returncode == 0, live.stderr
    ana = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                          str(d / "keys.log"), "--format", "json"], capture_output=True)
    a, b = json.loads(live.stdout), json.loads(ana.stdout)
    assert [[(p["phase"], p["status"], p["frames"]) for p in s["phases"]] for s in a["sessions"]] == \
        [[(p["phase"], p["status"], p["frames"]) for p in s["phases"]] for s in b["sessions"]]
    assert [f["id"] for f in a["sessions"][0]["findings"]] == [f["id"] for f in b["sessions"][0]["findings"]]


def test_live_needs_a_source():
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "live"], capture_output=True, text=True)
    assert p.returncode == 2 and "--stdin" in p.stderr
