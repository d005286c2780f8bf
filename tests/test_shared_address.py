"""Users behind one address (an office or hotel NAT, carrier-grade NAT): on the gateway's side their connections
come from the same client address. With keys the webvpn cookies keep their sessions apart; without keys acflow read
a second user's login during the first user's tunnel as that user's reconnect — one session, 'Tunnel dropped and
came back', a false RECONNECT (analyzer/phases/grouping.py `_another_client`).

The captures: two lab samples whose clients have the same address (198.18.0.2), the second shifted in time into
the first's tunnel (editcap -t) and merged (mergecap), as a gateway-side capture of two users behind one NAT shows
them. The keyed analysis of the merged capture is the truth."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.capture import first_frame_time
from analyzer.evidence import GatewaySpec
from analyzer.report.json_report import render_json

from .conftest import sample


def _merge(tmp_path, first: str, second: str, offset: float):
    """``second`` shifted to start ``offset`` seconds after ``first``'s first packet, merged with it; and the
    two key logs."""
    editcap, mergecap = shutil.which("editcap"), shutil.which("mergecap")
    if editcap is None or mergecap is None:
        pytest.skip("editcap/mergecap not installed")
    a, b = sample(first) / "capture.pcapng", sample(second) / "capture.pcapng"
    shift = first_frame_time(a) + offset - first_frame_time(b)
    shifted, merged = tmp_path / "shifted.pcapng", tmp_path / "two-users.pcapng"
    subprocess.run([editcap, "-t", f"{shift:.6f}", str(b), str(shifted)], check=True, capture_output=True)
    subprocess.run([mergecap, "-w", str(merged), str(a), str(shifted)], check=True, capture_output=True)
    keys = tmp_path / "keys.log"
    keys.write_bytes((sample(first) / "keys.log").read_bytes() + (sample(second) / "keys.log").read_bytes())
    return merged, keys


def _sessions(capture, keylog=None, gateways=None) -> list[dict]:
    k, info = load_keys([keylog] if keylog else [], [])
    return json.loads(render_json(analyze_paths([capture], k, info, gateways=gateways or []),
                                  version=__version__))["sessions"]


@pytest.mark.parametrize("first, offset", [
    ("dtls-blocked", 25.0),  # the first user's tunnel over TLS only (UDP blocked): CSTP keepalives and DPD on it
    ("dpd-late-answer", 5.0),  # the first user's tunnel over DTLS, its client still sending there; it reconnects
    # after the second user's session ended with a DISCONNECT: the reconnect is the first user's
])
def test_a_second_user_behind_the_same_address_is_a_session_of_its_own_without_keys(tmp_path, first, offset):
    merged, keys = _merge(tmp_path, first, "baseline", offset)
    keyed, keyless = _sessions(merged, keys), _sessions(merged)
    assert len(keyed) == 2
    assert [sorted(c["connection"] for c in s["connections"]) for s in keyless] == \
        [sorted(c["connection"] for c in s["connections"]) for s in keyed]
    # a reconnect only where there is one (dpd-late-answer's user reconnects after its dead peer, as with keys)
    assert [any(f["id"] == "RECONNECT" for f in s["findings"]) for s in keyless] == \
        [any(f["id"] == "RECONNECT" for f in s["findings"]) for s in keyed]


@pytest.mark.parametrize("first, second", [("baseline", "legacy-dtls"), ("baseline", "dtls-blocked"),
                                           ("dtls-blocked", "baseline"), ("legacy-dtls", "baseline")])
@pytest.mark.parametrize("offset", [0.0, 0.004, 0.02, 0.06, 0.3, 1.0, 2.5, 10.0])
def test_two_users_logging_in_at_the_same_moment_are_two_sessions_without_keys(tmp_path, first, second, offset):
    """The second user's login begins a few milliseconds to a second after the first's, before the first's tunnel is
    up: their logins, CONNECTs and DTLS hellos interleave (`_split_concurrent_tunnels`). Before session 14 the two
    were one session with the first user's verdict, the other's tunnel hidden in it."""
    merged, keys = _merge(tmp_path, first, second, offset)
    keyed, keyless = _sessions(merged, keys), _sessions(merged)
    assert len(keyed) == 2
    flows = [sorted(c["connection"] for c in s["connections"]) for s in keyed]
    assert [sorted(c["connection"] for c in s["connections"]) for s in keyless] == flows
    # each with its own client's verdict (the one whose UDP is blocked, the one whose DTLS came up)
    assert [s["verdict"]["text"].startswith("Tunnel up over TLS only") for s in keyless] == \
        [s["verdict"]["text"].startswith("Tunnel up over TLS only") for s in keyed]


def test_two_real_users_behind_one_address():
    """Lab scenario two-users-one-address: two openconnect clients in one namespace (one address, as behind a NAT),
    the second started 50 ms after the first; both logged in and got DTLS. Before session 14 the keyless reading was
    one session of four flows, 'Tunnel dropped at +0.1 s and came back' (a false RECONNECT)."""
    d = sample("two-users-one-address")
    acts = json.loads((d / "facts.json").read_text())["actions"]
    assert [a.get("which") for a in acts if a["action"] == "dtls-established"] == [None, "second"]
    keyed, keyless = _sessions(d / "capture.pcapng", d / "keys.log"), _sessions(d / "capture.pcapng")
    assert len(keyed) == 2 and {s["phases"][4]["details"]["parameters"]["address"] for s in keyed} == {
        "198.19.0.50", "198.19.0.53"}
    assert [sorted(c["connection"] for c in s["connections"]) for s in keyless] == \
        [sorted(c["connection"] for c in s["connections"]) for s in keyed]
    assert not any(f["id"] == "RECONNECT" for s in keyless for f in s["findings"])
    assert all(s["verdict"]["text"].startswith("No problem seen without keys") for s in keyless)


def test_one_client_reconnecting_or_scanning_beside_its_login_stays_one_session():
    """What stays one client: a reconnect after its tunnel connection was reset (sample reconnect: the old tunnel
    carries nothing of the client after the new connection), and a host scan's connection beside the login
    connection (scripted hostscan-stalled: HTTP on both at once, no tunnel)."""
    [s] = _sessions(sample("reconnect") / "capture.pcapng")
    assert any(f["id"] == "RECONNECT" for f in s["findings"])
    assert [sorted(c["connection"] for c in s["connections"])] == [
        sorted(c["connection"] for x in _sessions(sample("reconnect") / "capture.pcapng", sample("reconnect") /
                                                  "keys.log") for c in x["connections"])]
    d = sample("scripted/hostscan-stalled")
    sessions = _sessions(d / "capture.pcapng", gateways=[GatewaySpec.parse("198.18.0.1:443")])
    assert len(sessions) == 1
    keyed = _sessions(d / "capture.pcapng", d / "keys.log")
    assert sorted(c["connection"] for c in sessions[0]["connections"]) == \
        sorted(c["connection"] for s in keyed for c in s["connections"])
