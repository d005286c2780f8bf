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


def test_without_keys_the_move_is_found_by_the_dtls_session_id_resumed_from_the_new_address():
    """Without keys the cookie is encrypted; the tunnel's DTLS session id is not: the moved client's DTLS hello from
    its new address resumes it, which puts that flow, and the TLS connection the client made from there next, in
    the session. The same reading as with keys: one session, the move, no loss on the path."""
    keyed, = _doc()["sessions"]
    [s] = _doc(keys=False)["sessions"]
    assert {c["connection"] for c in s["connections"]} == {c["connection"] for c in keyed["connections"]}
    f = next(f for f in s["findings"] if f["id"] == "CLIENT_ADDRESS_CHANGED")
    k = next(f for f in keyed["findings"] if f["id"] == "CLIENT_ADDRESS_CHANGED")
    assert f["inferred"] and "DTLS session id" in f["message"]
    assert (f["evidence"]["before"], f["evidence"]["after"]) == (k["evidence"]["before"], k["evidence"]["after"])
    assert abs(f["evidence"]["interrupted"] - k["evidence"]["interrupted"]) < 0.05
    ids = [f["id"] for f in s["findings"]]
    assert "RECONNECT" in ids and "TCP_RETRANSMISSIONS" not in ids
    assert s["verdict"]["experienced"] == keyed["verdict"]["experienced"]


def test_without_keys_another_dtls_session_id_from_the_new_address_is_another_session(tmp_path):
    """The link is the session id, not the timing: the same capture with the new address's resumed session id
    changed (scapy) reads as before the keyless link was made — two sessions, no move."""
    from scapy.all import UDP, Raw, rdpcap, wrpcap  # noqa: PLC0415

    moved = next(a for a in _facts()["actions"] if a["action"] == "client-moved")
    pkts = rdpcap(str(sample("client-roams") / "capture.pcapng"))
    sid = None
    changed = 0
    for p in pkts:
        if UDP in p and Raw in p and p[Raw].load[:1] == b"\x16" and p[Raw].load[13:14] == b"\x01":
            load = p[Raw].load
            # record header 13, handshake header 12, version 2, random 32: the session id's length, then it
            at = 13 + 12 + 2 + 32
            if load[at] != 32:
                continue
            if p["IP"].src == moved["old"]:
                sid = load[at + 1:at + 33]
            elif p["IP"].src == moved["new"] and load[at + 1:at + 33] == sid:
                p[Raw].load = load[:at + 1] + bytes(32) + load[at + 33:]
                del p[UDP].chksum
                changed += 1
    assert sid is not None and changed
    out = tmp_path / "other-session-id.pcap"
    wrpcap(str(out), pkts)
    k, info = load_keys([], [])
    d = json.loads(render_json(analyze_paths([out], k, info), version=__version__))
    assert len(d["sessions"]) == 2
    assert not any(f["id"] == "CLIENT_ADDRESS_CHANGED" for s in d["sessions"] for f in s["findings"])
