"""The gateway ends a session at its session or idle timeout ("the VPN drops after N hours / when I leave it idle and
I have to log in again"): real ocserv with `session-timeout` or `idle-timeout` set (lab scenarios session-timeout,
session-timeout-reconnect, idle-timeout), real openconnect ('Received server disconnect … Session terminated by
server; exiting'). The gateway's log says which timer ran out and when: the ground truth here.

Before: 'HEALTHY Healthy: logged in, tunnel … ended by the gateway (DISCONNECT)' and SESSION_DISCONNECT 'Nothing to
do for a user-initiated disconnect'; without keys 'The client disconnected over CSTP'."""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.model import Phase
from analyzer.phases.cstp_connect import ConnectExchange, CSTPConnectDetails, TunnelParameters
from analyzer.phases.tunnel import Tunnel, TunnelEnd
from analyzer.report.json_report import render_json
from analyzer.rules import gateway_timeout

from .conftest import SAMPLES, sample

TIMED_OUT = ("session-timeout", "session-timeout-reconnect", "idle-timeout", "idle-timeout-gateway-side")
#: every sample whose gateway ended the session at a timer (the scripted gateway's announced what remained)
ANY_TIMER = (*TIMED_OUT, "scripted/session-timeout-remaining")


@cache
def _doc(cap: str, keyed: bool) -> dict:
    p = Path(cap)
    keylog = p.parent / "keys.log"
    k, info = load_keys([keylog] if keyed and keylog.exists() else [], [])
    return json.loads(render_json(analyze_paths([p], k, info), version=__version__))


def _session(name: str, keyed: bool = True) -> dict:
    sessions = _doc(str(sample(name) / "capture.pcapng"), keyed)["sessions"]
    assert len(sessions) == 1
    return sessions[0]


def _ids(s: dict) -> set[str]:
    return {f["id"] for f in s["findings"]}


def _gateway_says(name: str) -> tuple[float, str, int]:
    """When the gateway logged that a timer ran out, which one, and the seconds it counted (ocserv's log)."""
    for line in (sample(name) / "gateway.log").read_text().splitlines():
        m = re.match(r"([\d.]+)\s.*\b(session|idle) timeout reached for process \((\d+) secs\)", line)
        if m:
            return float(m[1]), m[2], int(m[3])
    raise AssertionError(f"{name}: no timeout in gateway.log")


def _conf(name: str, key: str) -> int:
    m = re.search(rf"^{key}\s*=\s*(\d+)", (sample(name) / "ocserv.conf").read_text(), re.M)
    assert m, f"{name}: {key} not set"
    return int(m[1])


@pytest.mark.parametrize("name", TIMED_OUT)
def test_the_timer_that_ran_out_is_told_with_the_gateways_time(name):
    logged, which, counted = _gateway_says(name)
    s = _session(name)
    fid = "SESSION_TIMEOUT" if which == "session" else "IDLE_TIMEOUT"
    other = "IDLE_TIMEOUT" if which == "session" else "SESSION_TIMEOUT"
    assert fid in _ids(s) and other not in _ids(s)
    f = next(f for f in s["findings"] if f["id"] == fid)
    assert f["severity"] == "warning"
    assert abs(f["time"] - logged) < 0.5  # the DISCONNECT left the gateway as it logged the timer
    ev = f["evidence"]
    timer = _conf(name, f"{which}-timeout")
    if which == "session":
        assert ev["session_timeout"] == timer and ev["remaining"] == timer  # ocserv: the whole timer on each CONNECT
        assert abs(ev["elapsed"] - counted) <= 1.0
    else:
        assert ev["idle_timeout"] == timer
        assert abs(ev["idle"] - counted) <= 1.0  # ocserv counts idleness as acflow does: packets inside the tunnel
    assert ev["end_frame"] in f["frames"] and ev["connect_frame"] in f["frames"]
    v = s["verdict"]
    assert v["outcome"] == "tunnel-lost" and v["findings"][0] == fid
    assert ("session timeout" in v["text"]) == (which == "session") and ("idle" in v["text"]) == (which == "idle")
    # the DISCONNECT was the gateway's: not "Nothing to do for a user-initiated disconnect"
    bye = next(f for f in s["findings"] if f["id"] == "SESSION_DISCONNECT")
    assert bye["evidence"]["direction"] == "s2c" and "user-initiated" not in bye["remedy"]


def test_a_reconnects_answer_restarts_the_count():
    """ocserv counts its session timeout from each connection's start: the reconnect's CONNECT answer (its
    X-CSTP-Session-Timeout-Remaining 45 again) is the one the end is measured from."""
    s = _session("session-timeout-reconnect")
    f = next(f for f in s["findings"] if f["id"] == "SESSION_TIMEOUT")
    ev = f["evidence"]
    assert ev["reconnects"] == 1
    phase = next(p for p in s["phases"] if p["phase"] == "cstp-connect")
    connects = [c for c in phase["details"]["connects"] if c.get("status") == 200]
    assert len(connects) == 2
    assert ev["connect_frame"] == connects[1]["response_frame"] != connects[0]["response_frame"]
    assert connects[1]["parameters"]["session_timeout_remaining"] == "45"
    # from the first CONNECT the end is well past the timer; from the reconnect's, within ocserv's 30 s check
    assert f["time"] - connects[0]["response_time"] > 45 + 10
    assert 45 - gateway_timeout.EARLY <= ev["elapsed"] <= 45 + 30


def test_what_remains_of_a_long_session_timeout_is_the_bound():
    """Scripted gateway (real openconnect): 6 s left of an 8-hour session timeout, then a DISCONNECT with a reason
    text: measured against the 6 s; the reason is told."""
    s = _session("scripted/session-timeout-remaining")
    f = next(f for f in s["findings"] if f["id"] == "SESSION_TIMEOUT")
    ev = f["evidence"]
    assert (ev["session_timeout"], ev["remaining"], ev["reason"], ev["end_type"]) == \
        (28800, 6, "Max time exceeded", "DISCONNECT")
    assert 6 - gateway_timeout.EARLY <= ev["elapsed"] <= 6 + 1
    assert "X-CSTP-Session-Timeout 8 h, 6 s of it remaining" in f["message"] and "'Max time exceeded'" in f["message"]
    assert "having 6 s left at that CONNECT" in s["verdict"]["text"]
    # openconnect logged the same reason (facts.json: the client's log)
    assert "Received server disconnect: b0 'Max time exceeded'" in (sample("scripted/session-timeout-remaining")
                                                                     / "client.log").read_text()


@pytest.mark.parametrize("name", TIMED_OUT)
def test_without_keys_the_gateway_ended_it(name):
    """No keys: the gateway's DISCONNECT is a bare control record, answered at once by the client's own
    DISCONNECT: the gateway ended the session (its timers are not visible)."""
    logged, which, counted = _gateway_says(name)
    s = _session(name, keyed=False)
    f = next(f for f in s["findings"] if f["id"] == "SESSION_DISCONNECT")
    assert f["inferred"] and f["evidence"]["direction"] == "s2c"
    assert abs(f["time"] - logged) < 0.5
    assert s["verdict"]["outcome"] == "tunnel-lost" and s["verdict"]["text"].startswith("Tunnel ended by the gateway")
    assert not _ids(s) & {"SESSION_TIMEOUT", "IDLE_TIMEOUT"}
    if which == "idle":  # the idle time read from record sizes is the decrypted one
        keyed = next(f for f in _session(name)["findings"] if f["id"] == "IDLE_TIMEOUT")
        assert abs(f["evidence"]["idle"] - keyed["evidence"]["idle"]) < 0.5
        assert "no data record either way for" in f["message"]


def _captures():
    """Every sample capture with its key log (the lab's, the scripted gateway's, the cut ones)."""
    for cap in SAMPLES.rglob("capture.pcapng"):
        if (cap.parent / "keys.log").exists():
            yield cap.parent.relative_to(SAMPLES).as_posix()


@pytest.mark.parametrize("name", sorted(_captures()))
def test_the_gateways_end_read_without_keys_is_the_decrypted_one(name):
    """On every sample: the keyless reading says the gateway ended the session exactly where the decrypted one
    does (its DISCONNECT or TERMINATE), and SESSION_TIMEOUT / IDLE_TIMEOUT only on the timeout samples."""
    cap = sample(name) / "capture.pcapng"
    keyed = {s["id"]: s for s in _doc(str(cap), True)["sessions"]}
    keyless = _doc(str(cap), False)["sessions"]
    for s in keyed.values():
        if name not in ANY_TIMER:
            assert not _ids(s) & {"SESSION_TIMEOUT", "IDLE_TIMEOUT"}
    by_gateway = sorted(round(s["tunnel"]["end"]["ts"], 3) for s in keyed.values()
                        if (s.get("tunnel") or {}).get("end") and s["tunnel"]["end"]["direction"] == "s2c")
    inferred = sorted(round(f["evidence"]["ts"], 3) for s in keyless for f in s["findings"]
                      if f["id"] == "SESSION_DISCONNECT" and f.get("inferred")
                      and f["evidence"].get("direction") == "s2c")
    assert inferred == [t for t in by_gateway if t in inferred] and len(inferred) <= len(by_gateway)
    if name in ANY_TIMER or name == "scripted/terminate":
        assert inferred == by_gateway and inferred


def _session_of(end_ts: float, *, session_timeout=None, remaining=None, idle_timeout=None, last_inner=None,
                direction="s2c"):
    params = TunnelParameters(**{f: None for f in ("address", "netmask", "address_ip6", "default_domain", "dpd",
                                                   "keepalive", "mtu", "base_mtu", "rekey_time", "rekey_method",
                                                   "disconnected_timeout", "content_encoding", "banner",
                                                   "dtls_port", "dtls_dpd", "dtls_keepalive", "dtls_mtu",
                                                   "dtls_ciphersuite", "dtls_session_id", "dtls_app_id",
                                                   "dtls_content_encoding")},
                              dns=[], split_include=[], split_exclude=[],
                              idle_timeout=None if idle_timeout is None else str(idle_timeout),
                              session_timeout=None if session_timeout is None else str(session_timeout))
    if remaining is not None:
        params.session_timeout_remaining = str(remaining)
    cx = ConnectExchange(time=99.9, frame=20, connection="tcp.stream 0", target="/CSCOSSLC/tunnel",
                         request_headers=[], status=200, reason="CONNECTED", response_time=100.0,
                         response_frame=21, parameters=params)
    phase = Phase("cstp-connect")
    phase.details = CSTPConnectDetails(connects=[cx], parameters=params)
    tunnel = Tunnel(end=TunnelEnd(direction=direction, type="DISCONNECT", ts=end_ts, frame=99, reason=None,
                                  channel="cstp"))
    if last_inner is not None:
        tunnel.last_inner_packet = {"c2s": last_inner}
    return SimpleNamespace(tunnel=tunnel, start=99.0, phase=lambda name: phase)


@pytest.mark.parametrize("end, expect", [
    (100.0 + 30 - 2.5, None),  # before the timer: something else ended it
    (100.0 + 30 - 1.5, "SESSION_TIMEOUT"),
    (100.0 + 30 + 59, "SESSION_TIMEOUT"),  # a periodic check's delay
    (100.0 + 30 + 61, None),  # far past it: not that timer
])
def test_session_timeout_bounds(end, expect):
    got = gateway_timeout.check(_session_of(end, session_timeout=30), None)
    assert [f.id for f in got] == ([expect] if expect else [])


def test_remaining_wins_over_the_whole_timer_and_a_client_end_is_not_the_gateways():
    s = _session_of(100.0 + 600, session_timeout=3600, remaining=600)
    assert [f.id for f in gateway_timeout.check(s, None)] == ["SESSION_TIMEOUT"]
    assert gateway_timeout.check(_session_of(100.0 + 3600, session_timeout=3600, remaining=600), None) == []
    assert gateway_timeout.check(_session_of(100.0 + 30, session_timeout=30, direction="c2s"), None) == []
    assert gateway_timeout.check(_session_of(100.0 + 30, session_timeout=None), None) == []  # "none"


def test_idle_is_counted_from_the_last_packet_inside_and_the_first_timer_out_is_told():
    # the last packet 20 s after the CONNECT: idle 35 s at the end, 55 s since the CONNECT
    s = _session_of(155.0, idle_timeout=30, last_inner=120.0)
    got = gateway_timeout.check(s, None)
    assert [f.id for f in got] == ["IDLE_TIMEOUT"] and got[0].evidence["idle"] == 35.0
    assert gateway_timeout.check(_session_of(155.0, idle_timeout=40, last_inner=120.0), None) == []
    # no packet inside at all: idle since the CONNECT answer
    got = gateway_timeout.check(_session_of(135.0, idle_timeout=30), None)
    assert [f.id for f in got] == ["IDLE_TIMEOUT"] and got[0].evidence["last_inner_packet"] is None
    # both ran out: the idle timer ran out at 150, the session timer at 140 — the session timeout is told
    got = gateway_timeout.check(_session_of(155.0, idle_timeout=30, last_inner=120.0, session_timeout=40), None)
    assert [f.id for f in got] == ["SESSION_TIMEOUT"]


def test_the_gateways_end_stays_the_end_when_the_clients_answer_comes_on_another_channel():
    """The gateway's DISCONNECT over DTLS, the client's goodbye over CSTP 5 ms later: the session's end is the
    gateway's (the client's is its answer); a client's DISCONNECT 2 s after is its own."""
    from analyzer.phases import tunnel as tunnel_mod
    from analyzer.phases.channel import Disconnect

    def build(client_after: float):
        zero = {"c2s": 0, "s2c": 0}
        cstp = SimpleNamespace(
            summary=lambda: {"inner_packets": zero, "inner_bytes": zero, "dpd": {"requests": zero},
                             "keepalives": zero, "last_data": {},
                             "disconnect": {"direction": "c2s", "type": "DISCONNECT", "ts": 100.0 + client_after,
                                            "frame": 9, "reason": "Server request"}},
            series=lambda: [], inner_attempts=None)
        flow = SimpleNamespace(channel=SimpleNamespace(
            inner_packets=zero, inner_bytes=zero, last_data={},
            disconnect=Disconnect(direction="s2c", type="DISCONNECT", ts=100.0, frame=8, reason=None),
            series=lambda: [], inner_attempts=None), undecrypted_records_by_direction=None)
        g = SimpleNamespace(conns=[SimpleNamespace(c=SimpleNamespace(tunnel=cstp, decrypted=True, is_tls=True))],
                            dtls=[flow])
        return tunnel_mod.build(g, SimpleNamespace(flow_list=[flow])).end

    assert (build(0.005).direction, build(0.005).frame) == ("s2c", 8)
    assert (build(2.0).direction, build(2.0).frame) == ("c2s", 9)


def test_a_capture_started_mid_tunnel_still_tells_the_gateway_ended_it(tmp_path, tshark):
    """session-timeout cut to start mid-tunnel (editcap: from frame 40, after the TLS handshake and the CONNECT):
    no key can decrypt it, the timers are not in it — the gateway's end is still read from record sizes, and the
    verdict does not send the user for a key log that cannot help."""
    import subprocess

    cut = tmp_path / "mid.pcapng"
    subprocess.run(["editcap", "-r", str(sample("session-timeout") / "capture.pcapng"), str(cut), "40-100000"],
                   check=True, capture_output=True)
    logged, _which, _n = _gateway_says("session-timeout")
    for keyed in (True, False):
        k, info = load_keys([sample("session-timeout") / "keys.log"] if keyed else [], [])
        [s] = json.loads(render_json(analyze_paths([cut], k, info), version=__version__))["sessions"]
        bye = next(f for f in s["findings"] if f["id"] == "SESSION_DISCONNECT")
        assert bye["inferred"] and bye["evidence"]["direction"] == "s2c" and abs(bye["time"] - logged) < 0.5
        v = s["verdict"]
        assert v["outcome"] == "tunnel-lost" and v["text"].startswith("Tunnel ended by the gateway")
        assert "key log" not in v["remedy"] and "the gateway's log says why" in v["remedy"]
