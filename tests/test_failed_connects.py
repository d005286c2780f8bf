"""A client that cannot reach the gateway: real openconnect against ocserv behind an nftables rule on TCP 443 that
drops (gateway-unreachable), resets (gateway-refused) or rejects with ICMP administratively prohibited
(gateway-filtered): 'Failed to connect to host'. And the reconnect attempts of a tunnel during an outage (dpd-loss:
two attempts whose SYNs got no answer).

Before: those captures were 'No AnyConnect-protocol session found' with 0 flows — a TCP connection that never carried
data left no trace — even with --gateway; dpd-loss said nothing of its failed reconnect attempts."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, PcapReader, wrpcap

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.evidence import GatewaySpec
from analyzer.parallel import analyze_paths_parallel
from analyzer.report.json_report import render_json, to_document

from .conftest import NEVER_CONNECTED, facts, sample
from .oracle import tshark_fields

#: the lab's path fault (facts: action path-fault) -> acflow's `answer`
ANSWER = {"drop": "none", "reset": "reset", "icmp": "icmp", "synack-in": "unacknowledged"}


def _doc(paths, keylog=None, gateway=None) -> dict:
    keys, info = load_keys([keylog] if keylog else [], [])
    gws = [GatewaySpec.parse(gateway)] if gateway else None
    return to_document(analyze_paths([Path(p) for p in paths], keys, info, gateways=gws), version=__version__)


def _blocked(name: str) -> str:
    return next(a["how"] for a in facts(name)["actions"] if a["action"] == "path-fault")


def _oracle(capture: Path) -> dict:
    """tshark: the client's SYN frames and the answer (RST or ICMP error) of each tcp.stream."""
    out: dict = {}
    for num, stream, flags in tshark_fields(capture, ["frame.number", "tcp.stream", "tcp.flags"], "tcp && !icmp"):
        st = out.setdefault(int(stream.split("|")[0]), {"syns": [], "rst": None, "icmp": None, "synacks": []})
        f = int(flags.split("|")[0], 16)
        if f & 0x02 and not f & 0x10:
            st["syns"].append(int(num))
        if f & 0x12 == 0x12:
            st["synacks"].append(int(num))
        if f & 0x04 and st["rst"] is None:
            st["rst"] = int(num)
    for num, stream in tshark_fields(capture, ["frame.number", "tcp.stream"], "icmp.type == 3"):
        out.setdefault(int(stream.split("|")[0]), {"syns": [], "rst": None, "icmp": None, "synacks": []})["icmp"] = \
            int(num)
    return out


@pytest.mark.parametrize("name", sorted(NEVER_CONNECTED))
def test_the_client_could_not_connect(name):
    assert any("Failed to connect to host" in e["line"] for e in facts(name)["client_connect_errors"])


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(NEVER_CONNECTED))
def test_without_the_gateway_named_the_connect_is_reported(name, tshark):
    d = sample(name)
    doc = _doc([d / "capture.pcapng"])
    assert doc["sessions"] == []
    ids = [f["id"] for f in doc["findings"]]
    assert "NO_VPN_SESSION" in ids and "TCP_CONNECT_FAILED" in ids
    [f] = [f for f in doc["findings"] if f["id"] == "TCP_CONNECT_FAILED"]
    [c] = doc["other_traffic"]["failed_connects"]
    assert doc["other_traffic"]["failed_connects_total"] == 1
    assert c["server"] == f"{facts(name)['gateway_address']}:443" and c["client"].startswith("198.18.0.2:")
    assert c["answer"] == ANSWER[_blocked(name)]
    [(stream, want)] = _oracle(d / "capture.pcapng").items()
    assert c["connection"] == f"tcp.stream {stream}" and c["syn_frames"] == want["syns"]
    assert c["answer_frame"] == {"none": None, "reset": want["rst"], "icmp": want["icmp"],
                                 "unacknowledged": (want["synacks"] or [None])[0]}[c["answer"]]
    if c["answer"] == "unacknowledged":  # (the gateway's side: its SYN-ACKs left, the client sent its SYN again)
        assert c["accepted"] and len(want["synacks"]) >= 2 and len(want["syns"]) >= 2
    if c["answer"] == "icmp":
        assert c["icmp"]["code"] == 13 and c["icmp"]["text"] == "communication administratively prohibited"
    assert f["severity"] == "warning" and "If 198.18.0.1 is the VPN gateway" in f["message"]
    assert "--gateway 198.18.0.1:443" in f["remedy"]
    assert set(f["frames"]) >= set(want["syns"][:3])


@pytest.mark.parametrize("name", sorted(NEVER_CONNECTED))
def test_with_the_gateway_named_the_session_could_not_connect(name):
    d = sample(name)
    [s] = _doc([d / "capture.pcapng"], gateway="198.18.0.1")["sessions"]
    phases = {p["phase"]: p for p in s["phases"]}
    assert phases["tls-handshake"]["status"] == "failed"
    assert phases["tls-handshake"]["summary"].startswith("no TCP connection to the gateway")
    assert all(p["status"] == "absent" for n, p in phases.items() if n != "tls-handshake")
    [c] = s["connections"]
    assert c["failed_connect"] is True and c["answer"] == ANSWER[_blocked(name)]
    [f] = s["findings"]
    assert (f["id"], f["severity"]) == ("TCP_CONNECT_FAILED", "error")
    v = s["verdict"]
    assert v["outcome"] == "failed" and v["text"].startswith("Could not connect to the gateway")
    assert v["findings"] == ["TCP_CONNECT_FAILED"]
    how = c["answer"]
    assert {"none": "nothing answered", "reset": "refused (reset)", "icmp": "ICMP destination unreachable",
            "unacknowledged": "never reached the client"}[how] in v["cause"]
    if how in ("none", "unacknowledged"):  # the client's SYN retries (tcp_syn_retries 2: Linux sends more)
        assert len(c["syn_frames"]) >= 3 and c["syn_times"] == sorted(c["syn_times"])
        assert s["end"] - s["start"] >= 2.0


def test_a_gateway_named_on_another_port_is_no_session():
    d = sample("gateway-refused")
    doc = _doc([d / "capture.pcapng"], gateway="198.18.0.1:8443")
    assert doc["sessions"] == []
    assert [c["answer"] for c in doc["other_traffic"]["failed_connects"]] == ["reset"]


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
def test_reconnect_attempts_during_an_outage(keys, tshark):
    """dpd-loss: the block makes the client's two reconnect attempts time out (facts: 'sleep 10s', 'sleep 20s'
    between them); the third connects."""
    d = sample("dpd-loss")
    doc = _doc([d / "capture.pcapng"], keylog=d / "keys.log" if keys else None)
    [s] = doc["sessions"]
    failed = [c for c in s["connections"] if c.get("failed_connect")]
    oracle = _oracle(d / "capture.pcapng")
    unanswered = [n for n, st in oracle.items() if st["syns"] and n not in
                  {int(x[0]) for x in tshark_fields(d / "capture.pcapng", ["tcp.stream"],
                                                    "tcp.flags.syn == 1 && tcp.flags.ack == 1")}]
    assert [c["connection"] for c in failed] == [f"tcp.stream {n}" for n in sorted(unanswered)] and len(failed) == 2
    assert all(c["answer"] == "none" and c["syn_frames"] == oracle[int(c["connection"].split()[1])]["syns"]
               for c in failed)
    [f] = [f for f in s["findings"] if f["id"] == "TCP_CONNECT_FAILED"]
    assert f["severity"] == "warning" and f["evidence"]["attempts"] == 2
    assert "The client connected again on tcp.stream 3" in f["message"]
    # the connections in time order: the failed ones between the first tunnel connection and the reconnect
    tcp = [c["connection"] for c in s["connections"] if not c.get("dtls")]
    assert tcp == ["tcp.stream 0", "tcp.stream 1", "tcp.stream 2", "tcp.stream 3"]
    if keys:
        assert "2 reconnect attempts got no answer" in s["verdict"]["text"]
        assert "TCP_CONNECT_FAILED" in s["verdict"]["findings"]


def test_jobs_give_the_same_document(tmp_path):
    """--jobs: the failed connects of each shard, numbered as in the whole capture."""
    d = sample("dpd-loss")
    keys, info = load_keys([d / "keys.log"], [])
    one = render_json(analyze_paths([d / "capture.pcapng"], keys, info), version=__version__)
    two = render_json(analyze_paths_parallel([d / "capture.pcapng"], [d / "keys.log"], [], 2), version=__version__)
    assert one == two and '"failed_connect": true' in one


def _move(src: Path, dst: Path, server: str, shift: float) -> None:
    """``src`` with its gateway's address replaced by ``server`` and its times moved by ``shift`` seconds."""
    out = []
    with PcapReader(str(src)) as r:
        for p in r:
            if IP in p:
                for field in ("src", "dst"):
                    if getattr(p[IP], field) == "198.18.0.1":
                        setattr(p[IP], field, server)
                del p[IP].chksum
                if TCP in p:
                    del p[TCP].chksum
            p.time = float(p.time) + shift
            out.append(p)
    wrpcap(str(dst), out)


def test_a_backup_server_after_an_unreachable_first(tmp_path):
    """The client tried another server on the gateway's port just before the session (a backup server list: the
    primary unreachable): the session's notes say so; the connect is no session and no session finding."""
    base = sample("baseline") / "capture.pcapng"
    first = float(next(iter(PcapReader(str(base)))).time)
    unreachable = sample("gateway-unreachable") / "capture.pcapng"
    last = max(float(p.time) for p in PcapReader(str(unreachable)))
    moved = tmp_path / "primary.pcap"
    _move(unreachable, moved, "198.18.0.9", first - last - 1.0)
    merged = tmp_path / "merged.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), str(moved), str(base)], check=True)
    doc = _doc([merged], keylog=sample("baseline") / "keys.log")
    [s] = doc["sessions"]
    assert s["gateway"] == "198.18.0.1:443" and not any(c.get("failed_connect") for c in s["connections"])
    [note] = [n for n in s["notes"] if n.startswith("Before this session")]
    assert "198.18.0.9:443" in note and "SYNs unanswered" in note
    assert "TCP_CONNECT_FAILED" not in {f["id"] for f in s["findings"] + doc["findings"]}
    assert doc["other_traffic"]["failed_connects"][0]["server"] == "198.18.0.9:443"


def test_many_failed_connects_stay_bounded(tmp_path):
    """A scan's worth of SYNs (every one to another port, none answered): the first MAX_FAILED_CONNECTS are kept,
    all are counted, the report lists 20."""
    from analyzer.attempts import MAX_FAILED_CONNECTS

    n = MAX_FAILED_CONNECTS + 300
    pkts = [Ether() / IP(src="198.18.0.2", dst="198.18.0.7") / TCP(sport=40000 + (i % 20000), dport=1 + i,
                                                                     flags="S", seq=1000 + i) for i in range(n)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.001
    cap = tmp_path / "scan.pcap"
    wrpcap(str(cap), pkts)
    doc = _doc([cap])
    assert doc["other_traffic"]["failed_connects_total"] == n
    assert len(doc["other_traffic"]["failed_connects"]) == 20
    assert doc["other_traffic"]["failed_connects"][0]["syn_frames"] == [1]
    assert "TCP_CONNECT_FAILED" not in {f["id"] for f in doc["findings"]}  # (none to port 443)
    json.dumps(doc)


@pytest.mark.tshark
def test_a_live_view_sees_the_connect_once_it_had_time_to_be_answered(tshark):
    """A live snapshot (Analyzer.snapshot) names an open connection without an answer once its last SYN is 3 s old,
    not before (a SYN just sent may still be answered)."""
    from analyzer.capture import iter_frames
    from analyzer.driver import Analyzer

    keys, info = load_keys([], [])
    an = Analyzer(keys, key_info=info)
    an.start_capture("live")
    last = None
    for fr in iter_frames(sample("gateway-unreachable") / "capture.pcapng"):
        an.feed(fr)
        last = fr.ts
    syns = _oracle(sample("gateway-unreachable") / "capture.pcapng")[0]["syns"]
    frames = {fr.number: fr.ts for fr in iter_frames(sample("gateway-unreachable") / "capture.pcapng")}
    assert last - frames[syns[-1]] < 3.0  # the capture ends soon after the last SYN: not settled yet there
    assert "TCP_CONNECT_FAILED" not in {f.id for f in an.snapshot().findings}
    snap = an.snapshot(now=last + 5)
    assert "TCP_CONNECT_FAILED" in {f.id for f in snap.findings}
    assert snap.other_traffic["failed_connects_total"] == 1
    assert "TCP_CONNECT_FAILED" in {f.id for f in an.finish().findings}


def test_a_mix_of_answers_is_told_as_one():
    """Refused connects (gateway-refused) and, 8 s later, unacknowledged ones (return-path-blocked), read as one
    capture: one session, and the finding's chosen answer (evidence.answer) is the one its message and the verdict
    speak of."""
    caps = [sample(n) / "capture.pcapng" for n in ("gateway-refused", "return-path-blocked")]
    [s] = _doc(caps, gateway="198.18.0.1")["sessions"]
    assert sorted({c["answer"] for c in s["connections"]}) == ["reset", "unacknowledged"]
    [f] = [f for f in s["findings"] if f["id"] == "TCP_CONNECT_FAILED"]
    assert f["evidence"]["answer"] == "reset" and set(f["evidence"]["answers"]) == {"reset", "unacknowledged"}
    assert "refused (reset)" in s["verdict"]["cause"]
