"""Two captures of the same traffic (`acflow analyze CAPTURE --other-side OTHER`, analyzer/path.py): what was lost,
forged and translated between the two capture points.

The real captures are the lab's both-sides-* samples: openconnect and ocserv with a router namespace between them
(lab.netns.Lab.use_router), captured on the client's veth (capture.pcapng) and the gateway's (gateway-side.pcapng),
the router's nftables counters in facts.json — the ground truth of what it dropped. tshark reads what each capture
holds. Synthetic packets (analyzer.path.Observed) test what the lab cannot make: segments split differently at the
two points, shifted sequence numbers, clocks hours apart, captures that overlap only in part.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.analyze import analyze_paths, load_keys
from analyzer.both_sides import attach_other_side
from analyzer.cli import main
from analyzer.path import SHORT_PREFIX, Observed, SideCapture, compare, payload_hint, payload_key
from analyzer.path_findings import path_findings
from dissectors.packet import TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN

from .conftest import facts, sample

BOTH_SIDES = ("both-sides-dtls-blocked", "both-sides-reset", "both-sides-loss", "both-sides-tls-inspection",
              "both-sides-nat-split", "both-sides-mtu-blackhole")


def _analysed(name: str, swap: bool = False):
    d = sample(name)
    a, b = (d / "capture.pcapng", d / "gateway-side.pcapng")
    if swap:
        a, b = b, a
    keys, info = load_keys([d / "keys.log"], [])
    analysis = analyze_paths([a], keys, info)
    report = attach_other_side(analysis, a, b)
    return analysis, report


def _findings(analysis, fid: str) -> list:
    return [f for s in analysis.sessions for f in s.findings if f.id == fid] + \
        [f for f in analysis.findings if f.id == fid]


def _counter(name: str, comment: str) -> int:
    for act in facts(name)["actions"]:
        if act.get("action") == "router-counters":
            for rule in act["rules"]:
                if rule.get("comment") == comment:
                    return rule["packets"]
    raise AssertionError(f"no router counter {comment!r} in {name}'s facts")


def _tshark_frames(tshark: str, path: Path, display_filter: str) -> list[int]:
    out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("name", BOTH_SIDES)
@pytest.mark.parametrize("swap", [False, True], ids=["client-first", "gateway-first"])
def test_order_and_translation_read_from_both_captures(name, swap):
    """Which capture is nearer the client, whatever order they are given in; the router's NAT (facts) and nothing
    else is a translation; every packet the router forwarded is paired."""
    analysis, report = _analysed(name, swap)
    assert report.nearer_client == ("b" if swap else "a")
    router = next(a for a in facts(name)["actions"] if a.get("action") == "router")
    nats = {a for a in (router.get("nat_address"), router.get("nat_udp_address")) if a}
    translated = _findings(analysis, "PATH_ADDRESS_TRANSLATED")
    assert len(translated) == len(nats)  # one per translation (both-sides-nat-split: TCP and UDP apart)
    client = facts(name)["client_address"]
    for f in translated:
        ((a_addr, b_addr),) = {(m["client"]["a"].rsplit(":", 1)[0], m["client"]["b"].rsplit(":", 1)[0])
                               for m in f.evidence["translated"]}
        assert (b_addr, a_addr) in {(client, n) for n in nats} if swap else (a_addr, b_addr) in {(client, n)
                                                                                              for n in nats}
        assert f"is {b_addr} in" in f.message
    # each router hop lowers the TTL by one, both ways
    for pair in report.pairs:
        for res in (pair.c2s, pair.s2c):
            if res is not None and res.arrived:
                assert res.ttl_change == -1
    assert report.matched == sum(r.arrived for p in report.pairs for r in (p.c2s, p.s2c) if r) > 0


def test_dtls_blocked_between_the_captures(tshark):
    """The router dropped the client's UDP to port 443: every DTLS ClientHello the client's capture holds (tshark) is
    PATH_DTLS_BLOCKED's, as many as the router's drop counter, and the gateway's capture holds no UDP at all."""
    name = "both-sides-dtls-blocked"
    d = sample(name)
    analysis, _report = _analysed(name)
    hellos = _tshark_frames(tshark, d / "capture.pcapng", "dtls.handshake.type == 1")
    assert _tshark_frames(tshark, d / "gateway-side.pcapng", "udp") == []
    (f,) = _findings(analysis, "PATH_DTLS_BLOCKED")
    assert f.frames == hellos and f.evidence["count"] == len(hellos) == _counter(name, "drop-udp")
    assert f.evidence["kinds"] == ["DTLS ClientHello"] and f.evidence["arrived"] == 0
    s = analysis.sessions[0]
    assert f in s.findings  # the session's own DTLS flow
    assert s.verdict.outcome == "degraded" and "PATH_DTLS_BLOCKED" in s.verdict.findings
    assert "never got past the path between the captures" in s.verdict.text
    assert _findings(analysis, "PATH_PACKETS_LOST") == [] and _findings(analysis, "PATH_RESET_INJECTED") == []


def test_dtls_blocked_seen_from_the_gateway_side(tshark):
    """Analysing the gateway's capture with the client's beside it: the client's DTLS is in the other capture only,
    so the finding names that capture's frames (tshark's) and none of the analysed one's."""
    name = "both-sides-dtls-blocked"
    d = sample(name)
    analysis, _report = _analysed(name, swap=True)
    (f,) = _findings(analysis, "PATH_DTLS_BLOCKED")
    assert f.frames == [] and f.evidence["side"] == "b" and f.evidence["capture"] == "capture.pcapng"
    assert f.evidence["frames"] == _tshark_frames(tshark, d / "capture.pcapng", "dtls.handshake.type == 1")
    assert f"frames {', '.join(map(str, f.evidence['frames']))} of capture.pcapng" in f.message


def test_reset_forged_between_the_captures(tshark):
    """The router answered the client's keepalive with a reset in the gateway's name: the resets from the gateway's
    address in the client's capture (tshark) are PATH_RESET_INJECTED, the gateway's capture holds none from it, the
    keepalive the router swallowed is lost between; the verdict rests on the proof."""
    name = "both-sides-reset"
    d = sample(name)
    analysis, _report = _analysed(name)
    forged = _tshark_frames(tshark, d / "capture.pcapng", "tcp.flags.reset == 1 && ip.src == 198.18.0.1")
    assert forged and _tshark_frames(tshark, d / "gateway-side.pcapng",
                                     "tcp.flags.reset == 1 && ip.src == 198.18.0.1") == []
    injected = [f for f in _findings(analysis, "PATH_RESET_INJECTED") if f.evidence["side"] == "a"]
    assert sorted(fr for f in injected for fr in f.frames) == forged
    assert all(f.evidence["direction"] == "server-to-client" for f in injected)
    lost = [f for f in _findings(analysis, "PATH_PACKETS_LOST") if f.evidence["direction"] == "client-to-server"]
    assert lost and lost[0].time <= injected[0].time  # the client's packet went, the forged reset came back
    s = analysis.sessions[0]
    assert s.verdict.findings == ["PATH_RESET_INJECTED"]
    assert s.verdict.text.startswith("Connected, but a device between the two capture points reset")


def test_random_loss_counted_exactly(tshark):
    """The router dropped packets at random both ways: the packets lost between the captures are exactly as many
    as its counter says, and nothing was added."""
    name = "both-sides-loss"
    d = sample(name)
    mss = {}
    for side in ("capture", "gateway-side"):
        out = subprocess.run([tshark, "-n", "-r", str(d / f"{side}.pcapng"), "-Y", "tcp.flags.syn == 1", "-T",
                              "fields", "-e", "tcp.options.mss_val"], capture_output=True, text=True,
                             check=True).stdout
        mss[side] = [int(x) for x in out.split()]
    analysis, report = _analysed(name)
    lost = sum(f.evidence["count"] for f in _findings(analysis, "PATH_PACKETS_LOST"))
    assert lost == _counter(name, "loss:3") > 0
    assert sum(len(r.lost) for p in report.pairs for r in (p.c2s, p.s2c) if r) == lost
    assert _findings(analysis, "PATH_PACKETS_ADDED") == [] and _findings(analysis, "PATH_RESET_INJECTED") == []
    # the router lowered the MSS of both SYNs (its counter): 1460 as sent, 1200 as received
    clamped = _findings(analysis, "PATH_MSS_CHANGED")
    assert len(clamped) == _counter(name, "mss:1200") == 2
    assert {(f.evidence["upstream"], f.evidence["downstream"]) for f in clamped} == {(1460, 1200)}
    # as tshark reads the SYNs' options: the SYN sent 1460, received 1200; the SYN-ACK sent 1460, received 1200
    assert mss == {"capture": [1460, 1200], "gateway-side": [1200, 1460]}


def test_json_report_and_cli(tmp_path):
    d = sample("both-sides-reset")
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"), "--other-side",
              str(d / "gateway-side.pcapng"), "--format", "json", "-o", str(out)])
    assert e.value.code == 0
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads((Path(__file__).resolve().parent.parent / "docs" /
                                         "acflow-report.schema.json").read_text()))
    path = doc["path"]
    assert path["nearer_client"] == "a" and path["a"]["capture"].endswith("capture.pcapng")
    assert {f["roles"]["session"] for f in path["flows"] if f.get("roles")} == {"s1"}
    flow = next(f for f in path["flows"] if f["server_to_client"]["added"])
    assert flow["protocol"] == "tcp" and flow["server_to_client"]["added_packets"][0]["kind"] == "RST"
    assert any(f["id"] == "PATH_RESET_INJECTED" for f in doc["sessions"][0]["findings"])
    # without --other-side: no path
    with pytest.raises(SystemExit):
        main(["analyze", str(d / "capture.pcapng"), "--format", "json", "-o", str(out)])
    assert "path" not in json.loads(out.read_text())


def test_cli_refuses_what_it_cannot_compare(tmp_path, capsys):
    d = sample("both-sides-loss")
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "capture.pcapng"), str(d / "capture.pcapng"), "--other-side",
              str(d / "gateway-side.pcapng")])
    assert e.value.code == 2 and "one capture file" in capsys.readouterr().err
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all" * 10)
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "capture.pcapng"), "--other-side", str(junk)])
    assert e.value.code == 4 and "--other-side" in capsys.readouterr().err
    # a cut other side: compared as far as it goes, no crash
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes((d / "gateway-side.pcapng").read_bytes()[:9000])
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "capture.pcapng"), "--other-side", str(cut), "--format", "json", "-o",
              str(tmp_path / "o.json")])
    assert e.value.code == 0
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["path"]["b"]["errors"] and doc["path"]["packets_paired"] > 0


# -- synthetic: what the lab's router cannot do -------------------------------------------------------------------

C, S = ("10.0.0.2", 50000), ("192.0.2.1", 443)


def _pkt(ts, frame, c2s, *, flags=TCP_ACK, seq=0, payload=b"", proto=6, ttl=64, client=C, server=S):
    src, dst = (client, server) if c2s else (server, client)
    return Observed(ts, frame, src[0], src[1], dst[0], dst[1], proto, ttl, flags, seq, len(payload),
                    payload_key(payload, len(payload)), payload_key(payload, len(payload), SHORT_PREFIX),
                    payload_hint(proto, payload))


def _side(name, pkts):
    side = SideCapture(name, sorted(pkts, key=lambda p: p.ts))
    side.first_ts, side.last_ts = side.packets[0].ts, side.packets[-1].ts
    for i, p in enumerate(side.packets, 1):
        p.frame = i
    return side


def _conversation(t0, *, isn_c=1000, isn_s=5000, seg=1000, segments=6, ttl_c=64, ttl_s=60, client=C, lose=(),
                  split=False, delay=0.0, clock=0.0, at_gateway=False):
    """A TCP connection as one point sees it: the handshake, `segments` client segments of `seg` bytes (their bytes
    differ), the gateway's answers. ``at_gateway``: the gateway's side — the client's packets `delay` later with a
    TTL one less, the gateway's earlier, `clock` added to every time; ``lose``: client segments missing there (then
    retransmitted 0.3 s later, at both points); ``split``: each client segment seen as two halves there."""
    out = []
    t = t0

    def at(ts, c2s):
        if not at_gateway:
            return ts
        return ts + clock + (delay if c2s else -delay)

    def add(ts, c2s, **kw):
        ttl = (ttl_c - (1 if at_gateway else 0)) if c2s else (ttl_s - (0 if at_gateway else 1))
        out.append(_pkt(at(ts, c2s), 0, c2s, ttl=ttl, client=client, **kw))

    add(t, True, flags=TCP_SYN, seq=isn_c)
    add(t + 0.01, False, flags=TCP_SYN | TCP_ACK, seq=isn_s)
    add(t + 0.02, True, seq=isn_c + 1)
    for i in range(segments):
        # a TLS application data record (what pairs two flows), its bytes different each time
        data = (b"\x17\x03\x03" + (seg - 5).to_bytes(2, "big") + bytes([i + 1]) * 3
                + i.to_bytes(4, "big") * (seg // 4 - 2))
        seq = isn_c + 1 + i * seg
        t += 0.05
        if i in lose and at_gateway:
            pass  # lost on the way: the gateway's side never saw the first transmission
        elif split and at_gateway:
            add(t, True, flags=TCP_ACK | TCP_PSH, seq=seq, payload=data[: seg // 2])
            add(t + 0.0001, True, flags=TCP_ACK | TCP_PSH, seq=seq + seg // 2, payload=data[seg // 2:])
        else:
            add(t, True, flags=TCP_ACK | TCP_PSH, seq=seq, payload=data)
        if i in lose:
            add(t + 0.3, True, flags=TCP_ACK | TCP_PSH, seq=seq, payload=data)  # the retransmission
        add(t + 0.31, False, flags=TCP_ACK | TCP_PSH, seq=isn_s + 1 + i * 40,
            payload=b"\x17\x03\x03\x00\x23" + bytes([0x80 + i]) * 35)
    add(t + 0.5, True, flags=TCP_ACK, seq=isn_c + 1 + segments * seg)
    return out


def _direction(report, d="c2s"):
    (pair,) = [p for p in report.pairs if p.a is not None and p.b is not None]
    return getattr(pair, d)


def test_retransmission_tells_the_lost_original():
    a = _side("client", _conversation(100.0, lose=(2,)))
    b = _side("gateway", _conversation(100.0, lose=(2,), at_gateway=True, delay=0.004))
    report = compare(a, b)
    assert report.nearer_client == "a" and report.one_way_delay == pytest.approx(0.004, abs=1e-6)
    c2s = _direction(report)
    assert [x["kind"] for x in c2s.lost] == ["1000 bytes"]
    assert c2s.lost[0]["ts"] == pytest.approx(100.0 + 3 * 0.05)  # the first transmission, not the retransmission
    assert c2s.added == [] and _direction(report, "s2c").lost == []


def test_segments_split_and_numbers_shifted_lose_nothing():
    """A firewall that randomises initial sequence numbers (ISN shifted) and a capture point that sees the client's
    segments split in two: every byte arrived, nothing lost or added; the gateway's clock an hour off."""
    a = _side("client", _conversation(100.0))
    b = _side("gateway", _conversation(100.0, isn_c=987654321, isn_s=3_000_000_000, split=True, at_gateway=True,
                                       delay=0.002, clock=3600.0, client=("203.0.113.9", 61000)))
    report = compare(a, b)
    assert report.clock_offset == pytest.approx(3600.0, abs=1e-6)
    c2s, s2c = _direction(report), _direction(report, "s2c")
    assert (c2s.lost, c2s.added, s2c.lost, s2c.added) == ([], [], [], [])
    assert c2s.arrived == c2s.sent == 7 and c2s.ttl_change == -1
    ((_pair, f),) = [x for x in path_findings(report) if x[1].id == "PATH_ADDRESS_TRANSLATED"]
    assert "10.0.0.2 in client is 203.0.113.9 in gateway" in f.message and "ports changed" in f.message


def test_forged_reset_and_capture_edges():
    """A reset at the client's point in the gateway's name that the gateway's point never saw is added between;
    packets outside the other capture's time (it started later) are neither lost nor added."""
    conv = _conversation(100.0)
    reset = _pkt(101.0, 0, False, flags=TCP_RST, seq=5000 + 1 + 6 * 40, ttl=63)
    a = _side("client", conv + [reset])
    late = [p for p in _conversation(100.0, at_gateway=True) if p.ts >= 100.2]  # started mid-conversation
    b = _side("gateway", late + [_pkt(101.2, 0, True, flags=TCP_ACK, seq=99, ttl=63)])
    report = compare(a, b)
    s2c = _direction(report, "s2c")
    assert [x["kind"] for x in s2c.added] == ["RST"]
    assert _direction(report).lost == []  # the handshake came before the gateway's capture began
    ids = {f.id for _p, f in path_findings(report)}
    assert ids == {"PATH_RESET_INJECTED"}
    # a middlebox's own data in the gateway's name (a block page) before the reset: added between too
    page = _pkt(100.9, 0, False, flags=TCP_ACK | TCP_PSH, seq=5000 + 1 + 6 * 40,
                payload=b"\x17\x03\x03\x00\x40" + b"p" * 64, ttl=63)
    report = compare(_side("client", conv + [page, reset]), b)
    added = {f.id: f for _p, f in path_findings(report)}
    assert set(added) == {"PATH_RESET_INJECTED", "PATH_PACKETS_ADDED"}
    assert added["PATH_PACKETS_ADDED"].evidence["kinds"] == ["69 bytes"]


def test_datagrams_blocked_one_way_and_nothing_in_common():
    hello = b"\x16\xfe\xff" + bytes(10) + b"\x01" + bytes(150)
    ups = [_pkt(10.0 + i, 0, True, proto=17, payload=hello[:-4] + i.to_bytes(4, "big")) for i in range(4)]
    tcp = _conversation(9.0, segments=90)  # (until 14 s: the hellos fall within the gateway's capture)
    a = _side("client", tcp + ups)
    b = _side("gateway", _conversation(9.0, segments=90, at_gateway=True, delay=0.003))
    found = path_findings(compare(a, b))
    (blocked,) = [f for _p, f in found if f.id == "PATH_DTLS_BLOCKED"]
    assert blocked.evidence["count"] == 4 and blocked.evidence["kinds"] == ["DTLS ClientHello"]
    other = _side("elsewhere", [_pkt(50.0, 0, True, payload=b"x" * 100, client=("10.9.9.9", 1234))])
    (nothing,) = [f for _p, f in path_findings(compare(a, other))]
    assert nothing.id == "PATH_NOTHING_IN_COMMON"


def test_payload_key_needs_enough_bytes():
    assert payload_key(b"", 0) is None
    assert payload_key(b"abc", 3) == (3, hash(b"abc"))
    assert payload_key(b"a" * 20, 1400) is None  # cut by the snaplen: cannot be told apart by 32 bytes
    assert payload_key(b"a" * 20, 1400, SHORT_PREFIX) == payload_key(b"a" * 16, 1400, SHORT_PREFIX)  # by 16 it can
    assert payload_key(b"a" * 100, 1400) == payload_key(b"a" * 32, 1400)  # two snaplens, one key


@pytest.mark.parametrize("snaplen", [96, 128])
def test_a_snapped_side_still_pairs(snaplen, tmp_path):
    """The gateway's capture cut at 96 bytes a frame (tcpdump's old default: 30 bytes of a TCP payload kept) or 128
    (Windows pktmon's default): the packets still pair — by their first 16 bytes when a capture kept fewer than 32
    — and the same packets are lost between as with whole frames."""
    from analyzer.path_read import read_side

    d = sample("both-sides-loss")
    cut = tmp_path / "cut.pcapng"
    subprocess.run(["editcap", "-s", str(snaplen), str(d / "gateway-side.pcapng"), str(cut)], check=True,
                   capture_output=True)
    whole = compare(read_side(d / "capture.pcapng"), read_side(d / "gateway-side.pcapng"))
    snapped = compare(read_side(d / "capture.pcapng"), read_side(cut))
    assert snapped.payload_bytes == (SHORT_PREFIX if snaplen == 96 else 32) and whole.payload_bytes == 32

    def lost(r):
        return sorted((x["frame"], x["kind"]) for p in r.pairs for d_ in (p.c2s, p.s2c) if d_ for x in d_.lost)
    assert lost(snapped) == lost(whole) and len(lost(whole)) == _counter("both-sides-loss", "loss:3")
    assert snapped.matched == whole.matched


def _hello_flow(t0, client, random_byte, n=4):
    """A TLS connection's client side: a ClientHello (its random one byte) and a few records."""
    hello = b"\x16\x03\x01\x02\x00\x01" + bytes([random_byte]) * 200
    out = [_pkt(t0, 0, True, flags=TCP_SYN, seq=10, client=client),
           _pkt(t0 + 0.02, 0, True, flags=TCP_ACK | TCP_PSH, seq=11, payload=hello, client=client)]
    out += [_pkt(t0 + 0.1 + i * 0.1, 0, True, flags=TCP_ACK | TCP_PSH, seq=11 + len(hello) + i * 50,
                 payload=bytes([random_byte, i]) * 25, client=client) for i in range(n)]
    return out


def test_tls_interception_pairs_two_connections():
    """The client's TLS connection never reaches the gateway's side, where a connection from another address with
    its own ClientHello starts 3 ms later: one PATH_TLS_INTERCEPTED, not lost and added packets. The DTLS that
    passes gives the clocks."""
    dtls = [_pkt(20.0 + i * 0.2 + (0.1 if i % 2 else 0), 0, i % 2 == 0, proto=17, ttl=64 if i % 2 == 0 else 63,
                 payload=b"\x17\xfe\xfd" + bytes([i]) * 90) for i in range(8)]
    dtls_gw = [replace(p, ts=p.ts + 5.0 + (0.001 if p.src == C[0] else -0.001),
                       ttl=p.ttl + (-1 if p.src == C[0] else 1)) for p in dtls]
    a = _side("client", _hello_flow(20.0, C, 0xAA) + dtls)
    b = _side("gateway", [replace(p, ts=p.ts + 5.0 + 0.003) for p in _hello_flow(20.0, ("198.51.100.7", 40000), 0xBB)]
                         + dtls_gw)
    report = compare(a, b)
    assert report.clock_offset == pytest.approx(5.0, abs=0.002)
    found = path_findings(report)
    assert [f.id for _p, f in found] == ["PATH_TLS_INTERCEPTED"]
    f = found[0][1]
    assert f.evidence["b"]["client"] == f.evidence["device_connection"]["client"] == "198.51.100.7:40000"
    assert f.frames == [1]
    assert f.evidence["start_gap"] == pytest.approx(0.002, abs=0.0015)


def test_read_side_bounds_what_it_holds():
    from analyzer.path_read import read_side

    d = sample("both-sides-loss")
    side = read_side(d / "capture.pcapng", limit=50)
    assert len(side.packets) == 50 and "first 50 TCP/UDP packets" in side.errors[0]
    full = read_side(d / "capture.pcapng")
    assert full.errors == [] and len(full.packets) > 50


def _tshark_hello_flows(tshark: str, path: Path) -> list[tuple[str, str]]:
    out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", "tls.handshake.type == 1", "-T", "fields", "-e",
                          "ip.src", "-e", "tcp.srcport"], capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line.strip()]


def test_tls_inspection_between_the_captures(tshark):
    """The router ends the client's TLS and opens its own (lab.inspect): the client's ClientHello (tshark, client
    side) and the router's (tshark, gateway side) are PATH_TLS_INTERCEPTED's two connections; the DTLS passes untouched
    (paired, nothing lost); the verdict rests on the proof."""
    name = "both-sides-tls-inspection"
    d = sample(name)
    router = next(a for a in facts(name)["actions"] if a.get("action") == "tls-inspection")["address"]
    analysis, report = _analysed(name)
    # (one connection each side; the gateway answered the middlebox's first ClientHello with a HelloRetryRequest)
    ((c_addr, c_port),) = set(_tshark_hello_flows(tshark, d / "capture.pcapng"))
    ((g_addr, g_port),) = set(_tshark_hello_flows(tshark, d / "gateway-side.pcapng"))
    assert c_addr == facts(name)["client_address"] and g_addr == router
    (f,) = _findings(analysis, "PATH_TLS_INTERCEPTED")
    assert f.evidence["client_connection"]["client"] == f"{c_addr}:{c_port}"
    assert f.evidence["device_connection"]["client"] == f"{g_addr}:{g_port}"
    assert 0 <= f.evidence["start_gap"] < 0.1
    s = analysis.sessions[0]
    assert s.verdict.findings[0] == "PATH_TLS_INTERCEPTED" and s.verdict.text.startswith("Tunnel up over TLS only")
    assert not _findings(analysis, "PATH_PACKETS_LOST") and not _findings(analysis, "PATH_PACKETS_ADDED")
    (udp,) = [p for p in report.pairs if p.proto == 17]
    assert udp.paired_by == "payload" and udp.c2s.lost == [] and udp.c2s.arrived == udp.c2s.sent > 0
    # from the gateway's side, the client's capture beside it: the same, the roles told by the order of the points
    analysis, report = _analysed(name, swap=True)
    (f,) = _findings(analysis, "PATH_TLS_INTERCEPTED")
    assert report.nearer_client == "b" and f.evidence["client_connection"]["client"] == f"{c_addr}:{c_port}"
    assert "never reached gateway-side.pcapng" in f.message


def test_tls_inspection_read_at_the_gateway_alone():
    """The gateway's capture alone, with the gateway's key log (its TLS session with the middlebox, as lab.inspect
    logged it: ocserv writes none): the client's DTLS Finished does not decrypt with the PSK of the session's TLS —
    proof, not 'most likely' — and the TLS came from the middlebox, the DTLS from the client. Without keys the
    client's DTLS, from another address than any TLS connection, is the session's (its CONNECT had just been
    answered) and the same shape is read."""
    name = "both-sides-tls-inspection"
    d = sample(name)
    router = next(a for a in facts(name)["actions"] if a.get("action") == "tls-inspection")["address"]
    client = facts(name)["client_address"]
    for keys in ([d / "inspect-keys.log"], []):
        k, info = load_keys(keys, [])
        analysis = analyze_paths([d / "gateway-side.pcapng"], k, info)
        (s,) = analysis.sessions
        assert s.client == router and {c.connection for c in s.connections} == {"tcp.stream 0", "udp.stream 0"}
        (f,) = [f for f in s.findings if f.id == "DTLS_PSK_MISMATCH"]
        assert (f.evidence["tls_client"], f.evidence["dtls_client"]) == (router, client)
        assert f.inferred is (not keys)
        assert "DTLS_NOT_OFFERED" not in {x.id for x in s.findings}
        if keys:
            assert f.evidence["verified_with_session_tls"] is False
            assert "does not decrypt with the key of this session's TLS connection" in f.message
            assert "KEYS_MISSING" not in {x.id for x in s.findings}  # the keys are there: the client used others
            assert s.verdict.text.startswith("Tunnel up over TLS only: a device between client and gateway "
                                             f"intercepts the TLS connection (TLS from {router}, DTLS from {client})")


def test_a_capture_against_itself_loses_nothing():
    """The same file at both points: every packet paired, nothing lost or added, no clock offset, no order."""
    from analyzer.path_read import read_side

    d = sample("both-sides-reset")
    a, b = read_side(d / "capture.pcapng", "a"), read_side(d / "capture.pcapng", "b")
    report = compare(a, b)
    assert report.nearer_client is None and report.clock_offset == 0.0
    assert all(not r.lost and not r.added for p in report.pairs for r in (p.c2s, p.s2c) if r)
    assert [f.id for _p, f in path_findings(report)] == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_comparison_holds_its_invariants_on_any_packets(data):
    """Packets of any shape at two points (random flags, sequence numbers, payloads, times, some dropped, some
    copied): no exception, and per direction the packets compared are those that arrived plus those lost."""
    n = data.draw(st.integers(1, 60))
    pkts = []
    for i in range(n):
        c2s = data.draw(st.booleans())
        proto = data.draw(st.sampled_from([6, 17]))
        payload = data.draw(st.binary(max_size=90))
        flags = data.draw(st.integers(0, 0x3F)) if proto == 6 else 0
        pkts.append(_pkt(10.0 + i * 0.01, 0, c2s, flags=flags, seq=data.draw(st.integers(0, 2**32 - 1)),
                         payload=payload, proto=proto))
    kept = [p for p in pkts if data.draw(st.booleans())]
    shift = data.draw(st.floats(-5, 5))
    other = [replace(p, ts=p.ts + shift + 0.001, ttl=p.ttl - 1) for p in kept]
    other += [other[i] for i in range(0, len(other), 7)]  # a few copies
    a = _side("a", pkts)
    report = compare(a, _side("b", other) if other else SideCapture("b"))
    for pair in report.pairs:
        for r in (pair.c2s, pair.s2c):
            if r is not None:
                assert r.arrived + len(r.lost) == r.sent
    path_findings(report)


def test_terminal_and_html_say_the_other_side(tmp_path, capsys):
    d = sample("both-sides-loss")
    for fmt in ("terminal", "html"):
        out = tmp_path / f"r.{fmt}"
        with pytest.raises(SystemExit) as e:
            main(["analyze", str(d / "capture.pcapng"), "--other-side", str(d / "gateway-side.pcapng"), "--format",
                  fmt, "-o", str(out)])
        assert e.value.code == 0
        text = " ".join(out.read_text().split())
        assert "other side: " in text and "nearer the client: this capture" in text
        assert f"{_counter('both-sides-loss', 'loss:3')} lost and 0 added between" in text
        assert "PATH_PACKETS_LOST" in text
        if fmt == "html":  # a row per flow: each way compared / arrived / lost / added
            doc = json.loads(subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"),
                                             "--other-side", str(d / "gateway-side.pcapng"), "--format", "json"],
                                            capture_output=True, text=True, check=True).stdout)
            for flow in doc["path"]["flows"]:
                c = flow["client_to_server"]
                cells = f"{c['compared']} / {c['arrived']} / {c['lost']} / {c['added']}"
                assert f"{flow['a']['client']} → {flow['a']['server']}" in text and cells in text


# -- one file, two points: the router's own capture of its two interfaces ---------------------------------------------

def _router_doc(name: str, tmp_path: Path, keys: bool = True) -> dict:
    d = sample(name)
    out = tmp_path / f"{name}.json"
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "router.pcapng"), *(["--keylog", str(d / "keys.log")] if keys else []),
              "--format", "json", "-o", str(out)])
    assert e.value.code == 0
    return json.loads(out.read_text())


def _doc_findings(doc: dict, fid: str) -> list[dict]:
    return [f for s in doc["sessions"] for f in s["findings"] if f["id"] == fid] + \
        [f for f in doc["findings"] if f["id"] == fid]


@pytest.mark.parametrize("name", BOTH_SIDES)
def test_router_capture_is_read_as_two_points(name, tmp_path, tshark):
    """dumpcap on the router's two veths (client side first): one file, the same traffic twice. acflow reads the
    sessions from the client side's interface (its frames only, as tshark counts them) and compares the other with
    it — the same path findings as the two files given with --other-side."""
    d = sample(name)
    doc = _router_doc(name, tmp_path)
    (two,) = _doc_findings(doc, "CAPTURE_TWO_POINTS")
    assert (two["evidence"]["near_interface"], two["evidence"]["far_interface"]) == (0, 1)
    assert doc["path"]["nearer_client"] == "a" and doc["path"]["a"]["capture"].endswith("interface 0 (" +
                                                                                       doc["captures"][0]
                                                                                       ["interfaces"][0]["name"] + ")")
    assert doc["captures"][0]["frames"] == len(_tshark_frames(tshark, d / "router.pcapng", "frame.interface_id == 0"))
    assert len(doc["sessions"]) == 1
    ids = {f["id"] for f in doc["sessions"][0]["findings"]}
    assert not ids & {"CLIENT_ADDRESS_CHANGED", "CAPTURE_DUPLICATES"}  # the far side's copies are not read as such
    analysis, _report = _analysed(name)
    # (the same kinds of findings; both-sides-mtu-blackhole: the client's big frames are dropped as they reach the
    # router, so its own capture holds only the gateway's lost ones)
    expected = {f.id for s in analysis.sessions for f in s.findings if f.id.startswith("PATH_")}
    assert {f["id"] for f in doc["sessions"][0]["findings"] if f["id"].startswith("PATH_")} == expected
    if name == "both-sides-dtls-blocked":
        (f,) = _doc_findings(doc, "PATH_DTLS_BLOCKED")
        assert f["frames"] == _tshark_frames(tshark, d / "router.pcapng",
                                             "frame.interface_id == 0 && dtls.handshake.type == 1")
        assert f["evidence"]["count"] == _counter(name, "drop-udp")
    if name == "both-sides-loss":
        assert sum(f["evidence"]["count"] for f in _doc_findings(doc, "PATH_PACKETS_LOST")) == \
            _counter(name, "loss:3")


def test_adapter_beside_the_physical_interface_is_not_two_points(tmp_path):
    """A capture of the physical interface and the VPN's adapter (different packets: the tunnel's inside) holds two
    interfaces but not the same traffic: read as before, no comparison."""
    from analyzer.both_sides import two_points

    d = sample("inner-unreachable-adapter")
    merged = tmp_path / "both.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), str(d / "capture.pcapng"), str(d / "tunnel-side.pcapng")],
                   check=True, capture_output=True)
    assert two_points(merged) is None
    assert two_points(d / "capture.pcapng") is None  # one interface


def test_a_capture_started_mid_flow_and_copies_of_packets():
    """The client's capture began mid-connection with a packet from the gateway (no SYN: its ends told by the ports,
    then turned to match the other capture's SYN), and it holds every packet twice (a capture on a bridge and its
    port): nothing lost, nothing added."""
    # (a client port below the server's: the ports guess the ends wrong, the other capture's SYN sets them right)
    conv = _conversation(100.0, segments=8, client=("10.0.0.2", 100))
    late = [p for p in conv if p.ts >= 100.3]
    assert late[0].src == S[0]  # the gateway's answer first
    a_pkts = sorted(late + [replace(p, ts=p.ts + 0.0002) for p in late], key=lambda p: p.ts)  # every packet twice
    a = _side("client", a_pkts)
    b = _side("gateway", _conversation(100.0, segments=8, client=("10.0.0.2", 100), at_gateway=True, delay=0.002))
    report = compare(a, b)
    (pair,) = [p for p in report.pairs if p.a is not None and p.b is not None]
    assert pair.a.client == ("10.0.0.2", 100) and pair.a.copies == len(late)
    assert all(not r.lost and not r.added for r in (pair.c2s, pair.s2c))
    assert pair.c2s.arrived > 0 and pair.s2c.arrived > 0


def test_nat_without_paired_pooling(tshark):
    """A carrier-grade NAT that gives the client's TCP and UDP two addresses (router rules nat-tcp, nat-udp): at the
    gateway the session's TLS and DTLS come from two addresses (tshark). Read as one session there, with keys (the
    CONNECT's DTLS session id) and without (the DTLS flow whose ClientHello followed the one tunnel just up);
    --other-side names both translations."""
    name = "both-sides-nat-split"
    d = sample(name)
    acts = next(a for a in facts(name)["actions"] if a.get("action") == "router")
    tcp_from = {line.strip() for line in subprocess.run(
        [tshark, "-n", "-r", str(d / "gateway-side.pcapng"), "-Y", "tcp", "-T", "fields", "-e", "ip.src"],
        capture_output=True, text=True, check=True).stdout.split()} - {"198.18.0.1"}
    udp_from = {line.strip() for line in subprocess.run(
        [tshark, "-n", "-r", str(d / "gateway-side.pcapng"), "-Y", "udp", "-T", "fields", "-e", "ip.src"],
        capture_output=True, text=True, check=True).stdout.split()} - {"198.18.0.1"}
    assert (tcp_from, udp_from) == ({acts["nat_address"]}, {acts["nat_udp_address"]})
    for keys in ([d / "keys.log"], []):
        k, info = load_keys(keys, [])
        (s,) = analyze_paths([d / "gateway-side.pcapng"], k, info).sessions
        assert s.client == acts["nat_address"]
        assert {c.connection for c in s.connections} == {"tcp.stream 0", "udp.stream 0"}
        assert s.verdict.outcome == ("healthy" if keys else "inconclusive")
        assert "DTLS_NOT_OFFERED" not in {f.id for f in s.findings}
    analysis, _report = _analysed(name)
    mapped = sorted(f.evidence["translated"][0]["client"]["b"].rsplit(":", 1)[0]
                    for f in _findings(analysis, "PATH_ADDRESS_TRANSLATED"))
    assert mapped == sorted([acts["nat_address"], acts["nat_udp_address"]])


def test_big_packets_lost_and_small_ones_through_is_a_path_mtu_black_hole():
    """The client's 1400-byte segments lost between the points, each sent three times, while its 300-byte ones and
    the gateway's arrive: PATH_MTU_BLACKHOLE, not plain loss. The same loss of small packets is plain loss."""
    def conv(at_gateway, seg, lose):
        out = _conversation(100.0, seg=300, segments=3, at_gateway=at_gateway, delay=0.002)
        big = [p for p in _conversation(101.0, seg=seg, segments=2, isn_c=1000 + 900, at_gateway=at_gateway,
                                        delay=0.002) if p.length]
        kept = [p for p in big if not (lose and at_gateway and p.length == seg)]
        # the client sends each big segment three times (retransmissions, 1 s apart)
        again = [replace(p, ts=p.ts + k) for k in (1, 2) for p in big if p.length == seg and not at_gateway]
        end = replace(out[-1], ts=105.0)  # (both captures run on past the retransmissions)
        return out + kept + again + [end]

    a = _side("client", conv(False, 1400, True))
    b = _side("gateway", conv(True, 1400, True))
    ids = [f.id for _p, f in path_findings(compare(a, b))]
    assert "PATH_MTU_BLACKHOLE" in ids and "PATH_PACKETS_LOST" not in ids
    (f,) = [f for _p, f in path_findings(compare(a, b)) if f.id == "PATH_MTU_BLACKHOLE"]
    assert f.evidence["smallest_lost"] == 1400 and f.evidence["largest_arrived"] == 300 and f.evidence["count"] == 6
    a = _side("client", conv(False, 200, True))
    b = _side("gateway", conv(True, 200, True))
    ids = [f.id for _p, f in path_findings(compare(a, b))]
    assert "PATH_MTU_BLACKHOLE" not in ids and "PATH_PACKETS_LOST" in ids


def test_path_mtu_black_hole_between_the_captures(tshark):
    """The router's link toward the client takes 1300 bytes: the client's bigger datagrams (its DTLS MTU probes) are
    dropped as they arrive, the gateway's as they leave — each with an ICMP 'fragmentation needed' the router drops
    (its counter). Both ways PATH_MTU_BLACKHOLE, exactly the packets over 1300 IP bytes (tshark), and the verdict rests
    on it rather than on MTU_EXCEEDED's reading of one side."""
    name = "both-sides-mtu-blackhole"
    d = sample(name)
    analysis, _report = _analysed(name)
    holes = {f.evidence["direction"]: f for f in _findings(analysis, "PATH_MTU_BLACKHOLE")}
    assert set(holes) == {"client-to-server", "server-to-client"}
    # (a veth takes a frame 4 bytes over its MTU as it arrives — room for a VLAN tag —, not as it leaves)
    assert holes["client-to-server"].frames == _tshark_frames(
        tshark, d / "capture.pcapng", "udp && ip.src == 198.18.0.2 && ip.len > 1304")
    gw_big = _tshark_frames(tshark, d / "gateway-side.pcapng", "udp && ip.src == 198.18.0.1 && ip.len > 1300")
    assert holes["server-to-client"].evidence["frames"] == gw_big[:20]
    assert holes["server-to-client"].evidence["count"] == len(gw_big) == _counter(name, "mtu:1300")
    assert all(f.evidence["smallest_lost"] > f.evidence["largest_arrived"] for f in holes.values())
    assert not _findings(analysis, "PATH_PACKETS_LOST")
    s = analysis.sessions[0]
    assert s.verdict.findings == ["PATH_MTU_BLACKHOLE"]
    assert s.verdict.text.startswith("Connected, but big packets are lost between the two capture points")


@pytest.mark.parametrize("name", ["baseline", "group-select", "client-roams", "route-outside-tunnel"])
def test_captures_of_other_sessions_share_nothing(name):
    """Another session's capture as the other side (the same gateway and client addresses, other connections): some
    of their records are the same bytes in every session — DTLS PSK handshakes' ClientKeyExchange ('psk') and
    ServerHelloDone, ChangeCipherSpec — and must not pair the flows (they did: false PATH_TLS_INTERCEPTED,
    PATH_DTLS_BLOCKED). Nothing paired, PATH_NOTHING_IN_COMMON alone."""
    from analyzer.path_read import read_side

    report = compare(read_side(sample(name) / "capture.pcapng"),
                     read_side(sample("both-sides-loss") / "gateway-side.pcapng"))
    assert report.matched == 0
    assert [f.id for _p, f in path_findings(report)] == ["PATH_NOTHING_IN_COMMON"]


# -- TLS inspection with nothing in common (session 16) ---------------------------------------------------------

INSPECT_NO_UDP = "both-sides-inspect-no-udp"


def _read(name: str, which: str, skew: float = 0.0) -> SideCapture:
    """One capture of a sample as a side, its clock moved by ``skew`` seconds (a capturing machine's clock off)."""
    from analyzer.path_read import read_side

    side = read_side(sample(name) / which)
    for p in side.packets:
        p.ts += skew
    side.first_ts += skew
    side.last_ts += skew
    return side


@pytest.mark.parametrize("skew", [0.0, 37.2, -95.0])
def test_tls_inspection_told_by_timing_when_nothing_crosses(skew, tshark):
    """A TLS-inspecting firewall that also drops UDP 443 (lab: lab.inspect on the router, nftables drop-udp): not one
    packet crosses both points unchanged, and the gateway's clock may be off. The client's connection and the
    device's are paired by their turns (requests and answers going by in step): PATH_TLS_INTERCEPTED between the
    two ClientHellos tshark sees, the clocks' offset told from the timing, and with it the dropped DTLS
    ClientHellos become PATH_DTLS_BLOCKED — as many as the router's counter. Either order."""
    d = sample(INSPECT_NO_UDP)
    router = next(a for a in facts(INSPECT_NO_UDP)["actions"] if a.get("action") == "tls-inspection")["address"]
    ((c_addr, c_port),) = set(_tshark_hello_flows(tshark, d / "capture.pcapng"))
    ((g_addr, g_port),) = set(_tshark_hello_flows(tshark, d / "gateway-side.pcapng"))
    assert g_addr == router
    for swap in (False, True):
        a, b = _read(INSPECT_NO_UDP, "capture.pcapng"), _read(INSPECT_NO_UDP, "gateway-side.pcapng", skew)
        if swap:
            a, b = b, a
        report = compare(a, b)
        assert report.matched == 0 and report.offset_from == "timing"
        assert report.clock_offset == pytest.approx(-skew if swap else skew, abs=0.05)
        assert report.nearer_client == ("b" if swap else "a")
        found = path_findings(report)
        assert sorted(f.id for _p, f in found) == ["PATH_DTLS_BLOCKED", "PATH_TLS_INTERCEPTED"]
        (f,) = [f for _p, f in found if f.id == "PATH_TLS_INTERCEPTED"]
        assert f.evidence["client_connection"]["client"] == f"{c_addr}:{c_port}"
        assert f.evidence["device_connection"]["client"] == f"{g_addr}:{g_port}"
        timing = f.evidence["relay_timing"]
        assert timing["lined_up"] >= 0.8 * timing["turns"] >= 8
        assert 0 <= f.evidence["start_gap"] < 0.1
        (blocked,) = [f for _p, f in found if f.id == "PATH_DTLS_BLOCKED"]
        assert blocked.evidence["count"] == _counter(INSPECT_NO_UDP, "drop-udp")


def test_tls_inspection_with_a_clock_off_in_the_report(tmp_path):
    """The same through the CLI, the gateway's capture 37.2 s ahead (editcap -t): the session's verdict rests on
    PATH_TLS_INTERCEPTED (it said 'UDP 443 is blocked' before), JSON path says where the offset came from."""
    d = sample(INSPECT_NO_UDP)
    ahead = tmp_path / "gateway-ahead.pcapng"
    subprocess.run(["editcap", "-t", "37.2", str(d / "gateway-side.pcapng"), str(ahead)], check=True,
                   capture_output=True)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(d / "capture.pcapng"), "--other-side", str(ahead), "--format", "json", "-o", str(out)])
    assert e.value.code == 0
    doc = json.loads(out.read_text())
    assert doc["path"]["clock_offset_from"] == "timing"
    assert doc["path"]["clock_offset"] == pytest.approx(37.2, abs=0.05)
    (s,) = doc["sessions"]
    assert s["verdict"]["findings"][0] == "PATH_TLS_INTERCEPTED"
    assert s["verdict"]["text"].startswith("Tunnel up over TLS only: the client's TLS connection")


def test_clocks_too_far_apart_say_so():
    """Beyond MAX_CLOCK_SKEW nothing is paired by timing: nothing in common, and since the captures' times do not
    even overlap, the message says both spans and the gap."""
    from analyzer.path import MAX_CLOCK_SKEW

    report = compare(_read(INSPECT_NO_UDP, "capture.pcapng"),
                     _read(INSPECT_NO_UDP, "gateway-side.pcapng", -3600.5))
    assert 3600.5 > MAX_CLOCK_SKEW and report.clock_offset is None
    ((_p, f),) = path_findings(report)
    assert f.id == "PATH_NOTHING_IN_COMMON"
    assert f.evidence["overlap"] < -3500 and "Their times do not overlap" in f.message and "min apart" in f.message


def test_another_client_of_the_same_program_is_not_a_device():
    """The other capture lacks the client's connection (another gateway of a cluster, a capture filter) but holds
    another openconnect client's, begun 0.3 s after it: the same TLS client program (its ClientHello's
    fingerprint), so no TLS interception — which the start time alone used to claim. Nothing in common."""
    a = _read("baseline", "capture.pcapng")
    b = _read("group-select", "capture.pcapng")
    first = lambda side: next(p for p in side.packets if p.hint == ("tls", 22, 1))  # noqa: E731
    ha, hb = first(a), first(b)
    assert ha.hello_fp is not None and ha.hello_fp == hb.hello_fp
    skew = ha.ts + 0.3 - hb.ts
    for p in b.packets:
        p.ts += skew
    b.first_ts += skew
    b.last_ts += skew
    report = compare(a, b)
    assert not [p for p in report.pairs if p.paired_by == "tls-intercepted"]
    assert [f.id for _p, f in path_findings(report)] == ["PATH_NOTHING_IN_COMMON"]


def test_a_device_is_told_by_its_own_tls_program_and_only_alone():
    """The inspecting device's ClientHello (Python's ssl, OpenSSL) is not openconnect's (GnuTLS); two candidate
    connections begun in the window (a busy gateway capture) tell nothing."""
    a = _read(INSPECT_NO_UDP, "capture.pcapng")
    b = _read(INSPECT_NO_UDP, "gateway-side.pcapng")
    (fa,) = {p.hello_fp for p in a.packets if p.hint == ("tls", 22, 1)}
    fb = {p.hello_fp for p in b.packets if p.hint == ("tls", 22, 1)}
    assert fa is not None and None not in fb and fa not in fb
    one = _side("client", _hello_flow(20.0, C, 0xAA))
    two = _side("gateway", _hello_flow(20.1, ("198.51.100.7", 40000), 0xBB)
                + _hello_flow(20.5, ("198.51.100.8", 40001), 0xCC))
    report = compare(one, two)
    assert not [p for p in report.pairs if p.paired_by == "tls-intercepted"]


def test_other_side_as_the_files_of_a_ring_buffer(tmp_path):
    """The gateway's capture cut into three files (a ring buffer: editcap -c), given as a directory or file by
    file in any order: read in the order they were written, as one capture point — the same path findings as the
    whole file, its frames numbered on through the files (the whole file's numbers)."""
    d = sample("both-sides-loss")
    whole = d / "gateway-side.pcapng"
    n = int(subprocess.run(["capinfos", "-c", "-M", str(whole)], capture_output=True, text=True,
                           check=True).stdout.split()[-1])
    ring = tmp_path / "ring"
    ring.mkdir()
    subprocess.run(["editcap", "-c", str(n // 3 + 1), str(whole), str(ring / "gw.pcapng")], check=True,
                   capture_output=True)
    parts = sorted(ring.iterdir())
    assert len(parts) == 3

    def doc(*other) -> dict:
        out = tmp_path / "r.json"
        args = [a for o in other for a in ("--other-side", str(o))]
        with pytest.raises(SystemExit) as e:
            main(["analyze", str(d / "capture.pcapng"), *args, "--format", "json", "-o", str(out)])
        assert e.value.code == 0
        return json.loads(out.read_text())

    def path_findings_of(doc: dict) -> list:
        return sorted((f["id"], f["evidence"].get("count"), tuple(f["evidence"].get("frames") or ()))
                      for f in _doc_findings_all(doc) if f["id"].startswith("PATH_"))

    expected = doc(whole)
    assert path_findings_of(expected)  # (PATH_PACKETS_LOST, PATH_MSS_CHANGED…: something to hold them to)
    for files in ((ring,), tuple(reversed(parts))):
        got = doc(*files)
        assert path_findings_of(got) == path_findings_of(expected)
        assert got["path"]["packets_paired"] == expected["path"]["packets_paired"]
        assert got["path"]["b"]["capture"] == ", ".join(str(p) for p in parts)
        assert got["path"]["b"]["packets"] == expected["path"]["b"]["packets"]
    # a file of the set that is no capture: said, the others compared all the same
    (ring / "zz-notes.pcapng").write_text("not a capture\n")
    got = doc(ring)
    assert path_findings_of(got) == path_findings_of(expected)
    assert got["path"]["b"]["errors"][0].startswith("zz-notes.pcapng: not read")


def _doc_findings_all(doc: dict) -> list[dict]:
    return [f for s in doc["sessions"] for f in s["findings"]] + list(doc["findings"])
