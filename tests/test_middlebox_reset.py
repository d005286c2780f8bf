"""A device between client and gateway resets the tunnel's TCP connection (lab scenario middlebox-reset: nftables in
the gateway namespace answers the client's next CSTP keepalive with a TCP reset that ocserv never sent, TTL 64,
while the gateway's own packets leave with TTL 200; the client's immediate reconnect is reset too, the next one
connects with its cookie).

Before: 'Tunnel dropped … and came back' as if the gateway had closed the connection; the TTL that shows another
sender was not read."""
from __future__ import annotations

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import facts, sample
from .helpers import session
from .oracle import tshark_fields


def _session(keys: bool) -> dict:
    return session("middlebox-reset", keys=keys, show_secrets=False)


def test_the_lab_made_the_reset():
    acts = {a["action"]: a for a in facts("middlebox-reset")["actions"]}
    assert acts["gateway-ttl"]["ttl"] == 200 and "tcp-reset-rule" in acts and "tcp-reset-rule-removed" in acts


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
def test_the_reset_is_named_not_the_gateways(keys, tshark):
    cap = sample("middlebox-reset") / "capture.pcapng"
    rows = tshark_fields(cap, ["frame.number", "tcp.stream", "ip.ttl", "tcp.flags.str"], "ip.src == 198.18.0.1 && tcp")
    synack = {int(st): int(ttl) for _f, st, ttl, fl in rows if "S" in fl and "A" in fl}
    resets = [(int(f), int(st), int(ttl)) for f, st, ttl, fl in rows if "R" in fl]
    assert set(synack.values()) == {200} and resets and all(ttl == 64 for _f, _s, ttl in resets)
    s = _session(keys)
    conns = {c["connection"]: c for c in s["connections"]}
    for st, ttl in synack.items():
        assert conns[f"tcp.stream {st}"]["handshake_ttl"]["s2c"] == ttl
    [f] = [f for f in s["findings"] if f["id"] == "TCP_RESET_INJECTED"]
    assert f["severity"] == "warning" and f["frames"] == [fr for fr, _s, _t in resets]
    assert [(r["frame"], r["ttl"], r["expected_ttl"]) for r in f["evidence"]["resets"]] == \
        [(fr, 64, 200) for fr, _s, _t in resets]
    assert "The gateway did not send them." in f["message"]
    v = s["verdict"]
    # (without keys too: the reset is read from the wire, and the tunnel was read up from its records)
    assert v["text"].startswith("Connected, but a device on the path reset the tunnel's connection")
    assert "arrived with TTL 64 where the gateway's packets arrive with TTL 200" in v["text"]


@pytest.mark.parametrize("name", ["reconnect", "dpd-late-answer", "baseline"])
def test_a_peers_own_reset_is_no_injection(name):
    """reconnect: the client's kernel resets its own connection (ss -K); dpd-late-answer: the client resets a
    connection it closed — each with the TTL of its SYN."""
    d = sample(name)
    k, info = load_keys([d / "keys.log"], [])
    doc = to_document(analyze_paths([d / "capture.pcapng"], k, info), version=__version__)
    assert "TCP_RESET_INJECTED" not in {f["id"] for s in doc["sessions"] for f in s["findings"]}
    resets = [x for s in doc["sessions"] for c in s["connections"] for x in c.get("closed") or []
              if x["reason"] == "rst"]
    assert name == "baseline" or resets and all("ttl" in x for x in resets)


def test_the_gateway_went_on_after_its_reset():
    s = _session(True)
    c = next(c for c in s["connections"] if c["connection"] == "tcp.stream 0")
    assert c["after_reset"]["s2c"] >= 1  # (ocserv never saw the reset: it sent again on the connection)
    [f] = [f for f in s["findings"] if f["id"] == "TCP_RESET_INJECTED"]
    assert f["evidence"]["resets"][0]["sent_after"] == c["after_reset"]["s2c"]


def test_a_forged_reset_with_the_right_ttl_is_still_told(tmp_path):
    """The same capture with the forged resets' TTL set to the gateway's (a device that copies it): the gateway's
    data after the reset still tells."""
    from scapy.all import IP, TCP, PcapReader, wrpcap

    out = []
    for p in PcapReader(str(sample("middlebox-reset") / "capture.pcapng")):
        if IP in p and TCP in p and p[IP].src == "198.18.0.1" and p[TCP].flags & 0x04:
            p[IP].ttl = 200
            del p[IP].chksum
        out.append(p)
    cap = tmp_path / "same-ttl.pcap"
    wrpcap(str(cap), out)
    k, info = load_keys([sample("middlebox-reset") / "keys.log"], [])
    [s] = to_document(analyze_paths([cap], k, info), version=__version__)["sessions"]
    [f] = [f for f in s["findings"] if f["id"] == "TCP_RESET_INJECTED"]
    [r] = f["evidence"]["resets"]  # (the refused connect's reset has no data after it: only stream 0's)
    assert r["connection"] == "tcp.stream 0" and r["sent_after"] >= 1 and "with TTL" not in f["message"]
