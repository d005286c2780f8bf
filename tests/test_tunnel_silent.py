"""A laptop that sleeps with the tunnel up (lab scenario laptop-sleeps: real openconnect and ocserv; the lab stops
openconnect and cuts the client's network for 45 s, ocserv (dpd = 5) gives the silent session up, openconnect wakes,
finds its connections dead and reconnects with its cookie). The capture on the laptop has nothing of the session in
those 45 s.

Before: 'DEGRADED Tunnel dropped at +48.5 s and came back … look at what ended the first connection (a reset, loss
on the path)' — the reconnect told, the 45 s in which nothing crossed (the reason for it) not."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json
from dissectors.flows import MAX_QUIET, QUIET_MIN, FlowTable, UDPFlow, note_quiet
from dissectors.packet import Packet

from .conftest import sample


def _doc(cap: Path, keylog: Path | None) -> dict:
    k, info = load_keys([keylog] if keylog else [], [])
    return json.loads(render_json(analyze_paths([cap], k, info), version=__version__))


def _facts(name: str) -> dict:
    return json.loads((sample(name) / "facts.json").read_text())


def _action(facts: dict, name: str) -> dict:
    return next(a for a in facts["actions"] if a["action"] == name)


def _sleep(name: str) -> tuple[Path, float, float]:
    """The sample's directory and when the lab put the client to sleep and woke it (facts.json)."""
    facts = _facts(name)
    return sample(name), _action(facts, "client-suspended")["time"], _action(facts, "client-resumed")["time"]


def _silent(d: Path, keylog: Path | None) -> tuple[dict, dict, dict]:
    """The sample's one session, its one TUNNEL_SILENT finding and that finding's evidence."""
    return _silent_in(d / "capture.pcapng", keylog)


def _silent_in(cap: Path, keylog: Path | None) -> tuple[dict, dict, dict]:
    """`_silent` of a capture file."""
    [s] = _doc(cap, keylog)["sessions"]
    [f] = [f for f in s["findings"] if f["id"] == "TUNNEL_SILENT"]
    return s, f, f["evidence"]


def test_the_sleep_is_told_as_the_reason_for_the_reconnect_with_and_without_keys():
    d, slept, woke = _sleep("laptop-sleeps")
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent(d, keylog)
        # the silence: from the last packet before the lab stopped the client (the pings' last answer) to the first
        # after it woke (its own packets: openconnect runs again)
        assert slept - 1.0 <= ev["from"] <= slept
        assert woke - 0.5 <= ev["to"] <= woke + 1.0  # (the lab notes the wake-up just after SIGCONT)
        assert ev["dpd"] == (5 if keylog else None)  # X-CSTP-DPD of the CONNECT answer, read only with keys
        assert ev["reconnect"] == "tcp.stream 1" and ev["connections"][0] == "tcp.stream 0"
        # the old connection answered by the gateway's reset: it had torn the session's connection down (its log)
        assert ev["reset_frame"] is not None
        assert "DPD timeout" in (d / "gateway.log").read_text()
        assert f["severity"] == "info" and f.get("inferred", False) is (keylog is None)
        v = s["verdict"]
        assert v["experienced"].startswith("Tunnel interrupted at") and "the client was silent" in v["experienced"]
        assert "45.0 s" in v["cause"] and "reconnected with its cookie" in v["cause"]
        assert "TUNNEL_SILENT" in v["findings"] and "loss on the path" not in v["text"]
        # each flow's pauses are in the JSON: the tunnel's TLS connection had none of its packets in those 45 s
        tls = next(c for c in s["connections"] if c["connection"] == "tcp.stream 0")
        assert any(q["from"] <= slept and q["to"] >= woke - 0.5 for q in tls["silences"])


def test_a_capture_that_starts_mid_tunnel_tells_the_sleep_too(tmp_path, tshark):
    """laptop-sleeps from the first ping on (editcap): no TCP or TLS handshake, the old TLS connection only as its
    last two packets (FIN, reset) — not a flow of the session. The DTLS flow whose last packet began the silence, a
    reconnect ending it, no DISCONNECT between: told, with and without keys."""
    d, slept, woke = _sleep("laptop-sleeps")
    frames = subprocess.run([tshark, "-n", "-r", str(d / "capture.pcapng"), "-Y", "dtls.record.content_type == 23",
                             "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True,
                            timeout=120).stdout.split()
    cut = tmp_path / "mid.pcapng"
    subprocess.run(["editcap", "-r", str(d / "capture.pcapng"), str(cut), f"{frames[len(frames) // 3]}-100000"],
                   check=True, capture_output=True)
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent_in(cut, keylog)
        assert slept - 1.0 <= ev["from"] <= slept and woke - 0.5 <= ev["to"] <= woke + 1.0
        assert ev["reconnect"] is not None and ev["connections"] and all(
            c.startswith("udp.") for c in ev["connections"])
        assert s["verdict"]["experienced"].startswith("Tunnel interrupted at")


def test_at_the_gateway_the_client_went_silent_while_the_gateway_sent_into_the_silence():
    """laptop-sleeps-gateway-side: the same sleep captured at the gateway. The gateway's packets go on (tunnel
    traffic over DTLS, then a CSTP record over TLS sent again 7 times, unacknowledged): the client alone is silent.
    Before: WARNING TCP_RETRANSMISSIONS 'find where packets were lost' and a verdict on the reconnect."""
    d, slept, woke = _sleep("laptop-sleeps-gateway-side")
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent(d, keylog)
        assert slept - 1.0 <= ev["from"] <= slept and woke - 0.5 <= ev["to"] <= woke + 1.0
        assert ev["gateway_sent"] is True and ev["retransmitted"] == ["tcp.stream 0"]
        assert (ev["dpd"], ev["keepalive"]) == ((5, 30) if keylog else (None, None))
        assert ev["reconnect"] == "tcp.stream 1"
        assert "The client sent nothing on any of the session's flows" in f["message"]
        # the gateway's data sent again into the silence is no loss on the path
        assert "TCP_RETRANSMISSIONS" not in {x["id"] for x in s["findings"]}
        tls = next(c for c in s["connections"] if c["connection"] == "tcp.stream 0")
        assert tls["retransmissions"]["s2c"] >= 3  # (they are there)
        # the client's own packets on it: none in those 45 s; the flow's, either way, had some (the gateway's)
        assert any(q["from"] <= slept and q["to"] >= woke - 0.5 for q in tls["client_silences"])
        assert not any(q["from"] <= slept and q["to"] >= woke - 0.5 for q in tls.get("silences", []))
        v = s["verdict"]
        assert "the client was silent" in v["experienced"] and "while the gateway went on sending" in v["cause"]


def test_a_vpn_client_that_hung_while_the_computer_went_on_is_told_apart_from_a_sleep():
    """vpn-client-hangs: openconnect stopped (SIGSTOP) ~50 s while the client's other traffic (TLS, DTLS, DNS, HTTP
    to other servers) runs. The tunnel is as silent as in laptop-sleeps, but the computer was awake: the other flows
    of its address had packets meanwhile — named, and the reading is a VPN client that stopped, not a sleep."""
    d = sample("vpn-client-hangs")
    facts = _facts("vpn-client-hangs")
    stopped, went_on = _action(facts, "client-stopped")["time"], _action(facts, "client-continued")["time"]
    others = [a for a in facts["actions"] if a["action"] == "other-flow-start"]
    assert len(others) >= 4
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent(d, keylog)
        assert stopped - 1.0 <= ev["from"] <= stopped + 0.5 and ev["to"] <= went_on + 1.0
        assert len(ev["other_flows"]) >= 3  # TLS, DTLS, DNS, HTTP to the other servers while the VPN was silent
        own = {c["connection"] for c in s["connections"]}
        assert not own & set(ev["other_flows"])
        assert "the client's computer was awake" in f["message"] and "VPN client stopped" in f["message"]
        assert "the computer was awake" in s["verdict"]["cause"]
    # the sleeps, whose captures hold nothing else of the client meanwhile, say no such thing
    for name in ("laptop-sleeps", "laptop-sleeps-gateway-side"):
        _s, f, ev = _silent(sample(name), sample(name) / "keys.log")
        assert ev["other_flows"] == [] and "slept" in f["message"]


def test_a_client_that_never_came_back_before_the_capture_ended(tmp_path, tshark):
    """laptop-sleeps-gateway-side cut before the client's first packet after the sleep (editcap): the session ends with
    the gateway's data sent again into the silence. Before: WARNING TCP_RETRANSMISSIONS 'loss on the path' as the
    verdict. Now: 'Client gone', the silence to the session's last packet (the gateway's last retransmission)."""
    d, slept, woke = _sleep("laptop-sleeps-gateway-side")
    back = subprocess.run([tshark, "-n", "-r", str(d / "capture.pcapng"), "-Y",
                           f"ip.src == 198.18.0.2 && frame.time_epoch > {woke - 1.0}", "-T", "fields", "-e",
                           "frame.number"], capture_output=True, text=True, check=True, timeout=120).stdout.split()
    cut = tmp_path / "gone.pcapng"
    subprocess.run(["editcap", "-r", str(d / "capture.pcapng"), str(cut), f"1-{int(back[0]) - 1}"], check=True,
                   capture_output=True)
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent_in(cut, keylog)
        assert ev["trailing"] is True and ev["gateway_sent"] is True and ev["reconnect"] is None
        assert slept - 1.0 <= ev["from"] <= slept and ev["to"] < woke and ev["retransmitted"] == ["tcp.stream 0"]
        assert f["frames"][-1] == int(back[0]) - 1  # the gateway's last retransmission
        assert "TCP_RETRANSMISSIONS" not in {x["id"] for x in s["findings"]}
        v = s["verdict"]
        assert v["outcome"] == "tunnel-lost" and v["experienced"].startswith("Client gone at")
        assert "the client sent nothing for the last" in v["cause"]


def test_a_reconnect_refused_after_the_silence_is_a_lost_tunnel_the_user_logs_in_again():
    """scripted/sleep-reconnect-refused: the client asleep 40 s; the gateway ended the tunnel's connection in the
    silence (its FIN lost) and refuses the reconnect's cookie (401). Before: 'Connected, with a problem: the gateway
    answered the CONNECT with 401' — as if the tunnel had never come up for a reason of its own."""
    d, slept, woke = _sleep("scripted/sleep-reconnect-refused")
    s, f, ev = _silent(d, d / "keys.log")
    assert slept - 1.0 <= ev["from"] <= slept and woke - 0.5 <= ev["to"] <= woke + 1.0
    assert (ev["reconnect"], ev["reconnect_status"], ev["reconnect_reason"]) == (
        "tcp.stream 1", 401, "Cookie is not acceptable")
    assert ev["reset_frame"] is not None and ev["gateway_sent"] is False and ev["dpd"] == 10
    assert "was refused (401 Cookie is not acceptable" in f["message"] and "log in again" in f["message"]
    v = s["verdict"]
    assert v["outcome"] == "tunnel-lost" and v["experienced"].startswith("Tunnel lost at")
    assert "refused the client's reconnect (401 Cookie is not acceptable" in v["cause"]
    assert v["findings"] == ["TUNNEL_SILENT", "CONNECT_REJECTED"]
    # its gateway announced an idle timeout of 1800 s: not what ended the session
    assert ev["idle_timeout"] == 1800 and "outlasted" not in f["message"] and "outlasted" not in v["cause"]


def test_a_gateways_dpd_requests_into_the_sleep_seen_at_the_gateway():
    """scripted/sleep-gateway-dpd, captured at the gateway (as an ASA's own capture): the gateway runs its own DPD —
    one request answered, then two into the client's 40 s sleep (TCP sends the first again and again, the second
    held behind it) —, ends the tunnel connection, and accepts the reconnect. Keyed and keyless agree: the tunnel was
    interrupted by the client's silence, no TCP loss on the path."""
    d, slept, woke = _sleep("scripted/sleep-gateway-dpd")
    for keylog in (d / "keys.log", None):
        s, f, ev = _silent(d, keylog)
        assert ev["gateway_sent"] is True and ev["retransmitted"] == ["tcp.stream 0"]
        assert slept - 1.0 <= ev["from"] <= slept and woke - 0.5 <= ev["to"] <= woke + 1.0
        assert ev["reconnect"] == "tcp.stream 1" and (keylog is None or ev["reconnect_status"] == 200)
        assert "TCP_RETRANSMISSIONS" not in {x["id"] for x in s["findings"]}
        v = s["verdict"]
        assert v["outcome"] == "degraded" and v["experienced"].startswith("Tunnel interrupted at")
    # without keys the gateway's unanswered check into the sleep reads as a DPD request: it came after a longer
    # silence of the client's than the gateway's answered one did (analyzer/keyless.py refine)
    k, info = load_keys([], [])
    [ks] = analyze_paths([d / "capture.pcapng"], k, info).sessions
    t0 = next(t for t in ks.phase("cstp-connect").inferred.tunnels if t.connection == "tcp.stream 0")
    gw = [(e[3], e[2]) for e in t0.reading.estimate.controls if e[0] == "s2c"]
    assert [c for c, _ in gw] == ["DPD_REQ", "DPD_REQ"] and slept <= gw[1][1] <= woke


def test_a_dpd_timeout_the_clients_silence_explains_with_the_session_back_is_an_interruption():
    """vpn-client-hangs: the gateway's DPD requests go unanswered while openconnect is stopped (DPD_TIMEOUT, an
    error), then it reconnects with its cookie and is accepted: the verdict is the interruption (degraded), the
    DPD checks read as the silence's, as the same sleep seen from the client reads."""
    d = sample("vpn-client-hangs")
    [s] = _doc(d / "capture.pcapng", d / "keys.log")["sessions"]
    assert {"DPD_TIMEOUT", "TUNNEL_SILENT", "RECONNECT"} <= {f["id"] for f in s["findings"]}
    v = s["verdict"]
    assert v["outcome"] == "degraded" and v["experienced"].startswith("Tunnel interrupted at")
    assert v["findings"][:2] == ["TUNNEL_SILENT", "DPD_TIMEOUT"]
    assert "the gateway's dead-peer checks (DPD) went unanswered, and the client reconnected" in v["cause"]
    assert v["remedy"].startswith("look at the client's VPN software")  # its other traffic went on: awake


def test_a_silence_longer_than_the_announced_idle_timeout_is_named_as_the_cause():
    """scripted/sleep-past-idle-timeout: the same sleep, the CONNECT answer announcing X-CSTP-Idle-Timeout 30 — a
    Cisco gateway keeps a session whose tunnel is down that long only —: the 40 s silence outlasted it."""
    d, slept, woke = _sleep("scripted/sleep-past-idle-timeout")
    s, f, ev = _silent(d, d / "keys.log")
    assert ev["idle_timeout"] == 30 and ev["seconds"] >= 30 and ev["reconnect_status"] == 401
    assert "the silence outlasted the idle timeout it had announced (X-CSTP-Idle-Timeout 30 s)" in f["message"]
    v = s["verdict"]
    assert v["outcome"] == "tunnel-lost" and "the silence outlasted its idle timeout, 30 s" in v["cause"]
    assert "its idle timeout, 30 s: ASA/FTD vpn-idle-timeout" in v["remedy"]
    # without keys the timer is not known (and this CSTP-only tunnel without a DISCONNECT is not recognised as a
    # session at all: docs/keyless-agreement.md): no idle timeout is claimed
    kf = [x for k in _doc(d / "capture.pcapng", None)["sessions"] for x in k["findings"] if x["id"] == "TUNNEL_SILENT"]
    assert all(x["evidence"]["idle_timeout"] is None and "outlasted" not in x["message"] for x in kf)


def _paused(cap: Path, after_frame: int, seconds: int, out: Path) -> Path:
    """``cap`` with every frame after ``after_frame`` moved ``seconds`` later (editcap, mergecap)."""
    a, b, b2 = out.with_suffix(".a.pcapng"), out.with_suffix(".b.pcapng"), out.with_suffix(".b2.pcapng")
    subprocess.run(["editcap", "-r", str(cap), str(a), f"1-{after_frame}"], check=True, capture_output=True)
    subprocess.run(["editcap", str(cap), str(b), f"1-{after_frame}"], check=True, capture_output=True)
    subprocess.run(["editcap", "-t", str(seconds), str(b), str(b2)], check=True, capture_output=True)
    subprocess.run(["mergecap", "-a", "-w", str(out), str(a), str(b2)], check=True, capture_output=True)
    return out


def test_a_pause_the_tunnel_carries_on_after_is_told_but_the_session_stays_healthy(tmp_path):
    """The baseline (DPD 20 s) with 2 minutes inserted before the client's DISCONNECT: as a capture that paused, or a
    laptop that slept while the gateway kept the session. Told (more than 2 × DPD + 5 s), no reconnect, healthy."""
    d = sample("baseline")
    [s0] = _doc(d / "capture.pcapng", d / "keys.log")["sessions"]
    bye = next(f for f in s0["findings"] if f["id"] == "SESSION_DISCONNECT")["frames"][0]
    cap = _paused(d / "capture.pcapng", bye - 1, 120, tmp_path / "paused.pcapng")
    for keylog in (d / "keys.log", None):
        [s] = _doc(cap, keylog)["sessions"]
        found = [f for f in s["findings"] if f["id"] == "TUNNEL_SILENT"]
        if keylog is None:
            # without keys the DPD interval is unknown: 2 minutes is more than 2 × the usual 30 s + 5 s
            assert len(found) == 1 and found[0]["evidence"]["dpd"] is None
        else:
            assert len(found) == 1 and found[0]["evidence"]["dpd"] == 20
        ev = found[0]["evidence"]
        assert 120 <= ev["seconds"] < 125 and ev["reconnect"] is None and ev["reset_frame"] is None
        assert found[0]["frames"][-1] == bye and "carried on" in found[0]["message"]
        assert s["verdict"]["outcome"] == ("healthy" if keylog else "inconclusive")
    # the whole capture: no pause, nothing said
    [s] = _doc(d / "capture.pcapng", d / "keys.log")["sessions"]
    assert not [f for f in s["findings"] if f["id"] == "TUNNEL_SILENT"]


def test_a_pause_shorter_than_the_dpd_rule_is_not_told(tmp_path):
    """30 s inserted (baseline: DPD 20 s, so 2 × 20 + 5 = 45 s are needed without a reconnect)."""
    d = sample("baseline")
    [s0] = _doc(d / "capture.pcapng", d / "keys.log")["sessions"]
    bye = next(f for f in s0["findings"] if f["id"] == "SESSION_DISCONNECT")["frames"][0]
    cap = _paused(d / "capture.pcapng", bye - 1, 30, tmp_path / "paused.pcapng")
    [s] = _doc(cap, d / "keys.log")["sessions"]
    assert not [f for f in s["findings"] if f["id"] == "TUNNEL_SILENT"]
    assert s["verdict"]["outcome"] == "healthy"


def test_a_flow_keeps_its_longest_pauses_only():
    fl = UDPFlow(0, ("198.18.0.2", 40000), ("198.18.0.1", 443), 0.0, 1)
    t, frame = 0.0, 1
    for pause in [11, 30, 12, 50, 13, 14, 15, 16, 17, 18, 19, 5]:
        t += pause
        frame += 1
        if pause >= QUIET_MIN:
            note_quiet(fl, t, frame)
        fl.last_ts, fl.last_frame = t, frame
    assert len(fl.quiet) == MAX_QUIET
    assert sorted(round(b - a) for a, b, _fa, _fb in fl.quiet) == [14, 15, 16, 17, 18, 19, 30, 50]
    # each pause names the packets around it
    assert all(fb == fa + 1 for _a, _b, fa, fb in fl.quiet)


def test_each_direction_knows_its_first_and_last_packet_and_its_pauses_whatever_the_times():
    """A capture whose clock starts near 0 (a file written with relative times): the first packet of each direction
    is noted as such, pauses are each direction's own, either way the flow's."""
    ft = FlowTable()
    out = Packet(4, "198.18.0.2", "198.18.0.1", 17, 40000, 443, payload=b"c", payload_len=1)
    back = Packet(4, "198.18.0.1", "198.18.0.2", 17, 443, 40000, payload=b"g", payload_len=1)
    for ts, frame, p in ((0.5, 1, out), (0.6, 2, back), (12.0, 3, back), (30.0, 4, back), (31.0, 5, out)):
        fl, _dg = ft.feed(p, ts, frame)[0]
    a, b = fl.sides()
    assert (a.first_ts, a.first_frame, a.seen_ts, a.seen_frame) == (0.5, 1, 31.0, 5)
    assert (b.first_ts, b.first_frame, b.seen_ts, b.seen_frame) == (0.6, 2, 30.0, 4)
    assert a.quiet == [(0.5, 31.0, 1, 5)] and b.quiet == [(0.6, 12.0, 2, 3), (12.0, 30.0, 3, 4)]
    assert fl.quiet == [(0.6, 12.0, 2, 3), (12.0, 30.0, 3, 4)]
