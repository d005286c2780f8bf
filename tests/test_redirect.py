"""A gateway that redirects the client's first request to another host (a load-balancing director sending it to a
member), from real openconnect against two scripted gateways (samples/scripted/load-balancer-redirect).

Before: two sessions, the director's 'FAILED No tunnel: the group-selection phase failed' (its 302) beside the
healthy one at the member."""
from __future__ import annotations

import json
from pathlib import Path

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json

D = Path(__file__).resolve().parent.parent / "samples" / "scripted" / "load-balancer-redirect"


def _doc(keys: bool = True) -> dict:
    k, info = load_keys([D / "keys.log"] if keys else [], [])
    return json.loads(render_json(analyze_paths([D / "capture.pcapng"], k, info), version=__version__))


def test_the_redirect_is_the_start_of_the_session_at_the_member():
    events = [json.loads(line) for line in (D / "gateway-events.jsonl").read_text().splitlines() if line.strip()]
    member = next(e["host"] for e in events if e["type"] == "listening" and e.get("gateway"))
    [s] = _doc()["sessions"]
    assert s["gateway"] == f"{member}:443" and s["verdict"]["outcome"] == "healthy"
    assert len([c for c in s["connections"] if c["connection"].startswith("tcp.")]) == 2
    gs = next(p for p in s["phases"] if p["phase"] == "group-selection")
    assert gs["status"] == "ok" and gs["summary"].startswith(f"redirected to {member} (HTTP 302)")
    first = gs["details"]["posts"][0]
    assert (first["status"], first["redirect"]) == (302, member)
    assert any("on a redirect from 198.18.0.1:443" in n for n in s["notes"])
    assert s["start"] == min(c["start"] for c in s["connections"])  # the director's connection starts it


def test_a_redirect_nobody_followed_stays_a_failure(tmp_path):
    """The director's connection alone (the member's traffic cut away): the redirect is the last answer, a failure."""
    import subprocess

    cut = tmp_path / "director-only.pcapng"
    subprocess.run(["tshark", "-r", str(D / "capture.pcapng"), "-Y", "not ip.addr == 198.18.0.4", "-w", str(cut)],
                   check=True, capture_output=True)
    keys, info = load_keys([D / "keys.log"], [])
    doc = json.loads(render_json(analyze_paths([cut], keys, info), version=__version__))
    [s] = doc["sessions"]
    gs = next(p for p in s["phases"] if p["phase"] == "group-selection")
    assert gs["status"] == "failed" and s["verdict"]["outcome"] == "failed"
