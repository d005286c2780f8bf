"""A client that moves to another network mid-session (lab scenario client-roams: real openconnect and ocserv; the
client's address changes from 198.18.0.2 to 198.18.0.3, its DPD declares the gateway dead, it reconnects with its
cookie from the new address).

Before: two sessions — the first 'DEGRADED: 4 retransmitted TCP segments … loss on the path' (the gateway's packets
to the address the client had left), the second a session without login from the new address."""
from __future__ import annotations

import json

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json

from .conftest import sample


def _doc(keys: bool = True) -> dict:
    d = sample("client-roams")
    k, info = load_keys([d / "keys.log"] if keys else [], [])
    return json.loads(render_json(analyze_paths([d / "capture.pcapng"], k, info), version=__version__))


def _facts() -> dict:
    return json.loads((sample("client-roams") / "facts.json").read_text())


def test_the_move_is_one_session_interrupted_not_two():
    moved = next(a for a in _facts()["actions"] if a["action"] == "client-moved")
    reconnected = next(a for a in _facts()["actions"] if a["action"] == "client-logged"
                       and a["pattern"] == "^CSTP connected")
    [s] = _doc()["sessions"]
    hosts = {c["client"].rsplit(":", 1)[0] for c in s["connections"]}
    assert hosts == {moved["old"], moved["new"]}
    f = next(f for f in s["findings"] if f["id"] == "CLIENT_ADDRESS_CHANGED")
    assert (f["evidence"]["before"], f["evidence"]["after"]) == (moved["old"], moved["new"])
    # the interruption runs from the last packet of the old address's flows (at or after the move: the gateway
    # still sent there) to the reconnect
    assert 0 < f["evidence"]["interrupted"] <= reconnected["line_time"] - moved["time"] + 0.5
    ids = [f["id"] for f in s["findings"]]
    assert "RECONNECT" in ids and "TCP_RETRANSMISSIONS" not in ids  # the old address's packets are not loss
    assert s["verdict"]["outcome"] == "degraded"
    assert s["verdict"]["experienced"].startswith("Tunnel interrupted at") and "the client moved" in \
        s["verdict"]["experienced"]
    phases = {p["phase"]: p["status"] for p in s["phases"]}
    assert phases["user-auth"] == "ok" and phases["cstp-connect"] == "ok" and phases["dtls"] == "ok"


def test_a_reconnect_that_ended_the_old_connection_is_not_a_negative_gap():
    [s] = _doc()["sessions"]
    rc = next(f for f in s["findings"] if f["id"] == "RECONNECT")
    assert "-0.0 s" not in rc["message"]
