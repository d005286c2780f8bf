"""Host scan (Cisco Secure Desktop, posture) before the login, from real openconnect running the Debian package's
CSD script (--csd-wrapper=/usr/libexec/openconnect/csd-post.sh: curl, on TLS connections of its own) against the
scripted gateway (samples/scripted/hostscan, hostscan-stalled).

Before: the scan's requests were the downloader ('downloader ok: 4 GETs'), and a scan whose evaluation never ended
was 'Login failed: the gateway rejected the login' at best — no credentials had been sent."""
from __future__ import annotations

import json
from pathlib import Path

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json

S = Path(__file__).resolve().parent.parent / "samples" / "scripted"


def _session(name: str) -> dict:
    d = S / name
    k, info = load_keys([d / "keys.log"], [])
    [s] = json.loads(render_json(analyze_paths([d / "capture.pcapng"], k, info), version=__version__))["sessions"]
    return s


def _steps(name: str) -> list[tuple[str, str, str]]:
    events = [json.loads(line) for line in (S / name / "gateway-events.jsonl").read_text().splitlines()
              if line.strip()]
    return [(e["method"], e["target"], e["step"]) for e in events if e["type"] == "request"]


def test_a_completed_host_scan_then_the_login():
    s = _session("hostscan")
    assert s["verdict"]["outcome"] == "healthy"
    phases = {p["phase"]: p for p in s["phases"]}
    auth = phases["user-auth"]
    assert auth["status"] == "ok" and auth["summary"].startswith("host scan (posture) done in")
    scan = auth["details"]["host_scan"]
    gateway_saw = [(m, t) for m, t, step in _steps("hostscan") if step.startswith("hostscan")]
    assert [(r["method"], r["target"]) for r in scan["requests"]] == gateway_saw
    assert scan["token_fetched"] and scan["results_status"] == 200 and scan["outcome"] == "completed"
    assert (scan["waits"], scan["refreshes"]) == (3, 2)  # the script: two refresh pages, then the XML
    assert phases["downloader"]["status"] == "absent"  # the scan's requests are not the downloader
    assert "downloader" not in [e["code"] for e in s["evidence"]]


def test_a_host_scan_the_gateway_never_finishes():
    s = _session("hostscan-stalled")
    auth = next(p for p in s["phases"] if p["phase"] == "user-auth")
    assert auth["status"] == "failed"
    scan = auth["details"]["host_scan"]
    waits = len([1 for _m, _t, step in _steps("hostscan-stalled") if step == "hostscan-wait"])
    assert scan["waits"] == scan["refreshes"] == waits >= 3 and scan["outcome"] == "gave-up"
    assert 7.0 < scan["waited"] < 10.0  # the user pressed Ctrl-C 8 s after openconnect started
    ids = [f["id"] for f in s["findings"]]
    assert "HOSTSCAN_INCOMPLETE" in ids and "AUTH_FAILED" not in ids
    assert s["verdict"]["experienced"] == "Login not completed: the host scan did not finish"
    assert "never finished evaluating the scan" in s["verdict"]["text"]
