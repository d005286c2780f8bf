"""`--gateway NAME`: the gateway's host name (what users type into the client) stands for the addresses the capture
ties to it — its DNS answers, the servers of TLS connections whose ClientHello names it (SNI). Before, --gateway
took an address only, which an engineer handed a laptop's capture often does not know."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.all import DNS, DNSQR, DNSRR, IP, UDP, Ether, rdpcap, wrpcap

from analyzer.evidence import GatewaySpec

from .conftest import sample
from .oracle import tshark_fields


def _acflow(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", "--format", "json", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _json(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _same_sessions(a: dict, b: dict) -> None:
    assert [s["id"] for s in a["sessions"]] == [s["id"] for s in b["sessions"]]
    for x, y in zip(a["sessions"], b["sessions"]):
        assert x == y


def test_parse():
    assert GatewaySpec.parse("VPN.Example.com.") == GatewaySpec(None, None, "vpn.example.com")
    assert GatewaySpec.parse("vpn.example.com:8443").port == 8443
    assert GatewaySpec.parse("vpn.example.com:8443").text == "vpn.example.com:8443"
    assert GatewaySpec.parse("198.18.0.1").name is None
    for bad in ("a_b.example", "-x.example", "1.2.3", "vpn.example.com:0", "[vpn.example.com]:443"):
        with pytest.raises(ValueError):
            GatewaySpec.parse(bad)
    assert not GatewaySpec.parse("vpn.example.com").matches("198.18.0.1", 443)  # unresolved: nothing


def test_a_name_the_client_sent_in_sni():
    """The scripted cases' client names vpn.acflow.test in its ClientHello (openconnect --resolve: no DNS in the
    capture): --gateway vpn.acflow.test is --gateway 198.18.0.1, without keys too."""
    cap = sample("scripted/saml-idp-unknown") / "capture.pcapng"
    by_name, by_addr = _json(_acflow(cap, "--gateway", "vpn.acflow.test")), _json(_acflow(cap, "--gateway",
                                                                                          "198.18.0.1"))
    _same_sessions(by_name, by_addr)
    assert by_name["sessions"][0]["verdict"]["outcome"] == "failed"
    assert by_name["filters"]["gateway"] == ["vpn.acflow.test"]
    assert by_name["filters"]["gateway_addresses"] == {"vpn.acflow.test": ["198.18.0.1"]}
    # a port given with the name filters by it too
    assert _json(_acflow(cap, "--gateway", "vpn.acflow.test:8443"))["sessions"] == []


def test_a_name_resolved_by_dns_in_the_capture(tmp_path: Path):
    """A client that never got a TCP connection through (gateway-unreachable: SYNs unanswered) shows no SNI; its DNS
    lookup of the name, when the capture holds one, ties the name to the address (the lookup added in front of the
    real capture, as a laptop's resolver sends it)."""
    pkts = rdpcap(str(sample("gateway-unreachable") / "capture.pcapng"))
    first = next(p for p in pkts if p.haslayer(IP))
    t0 = float(first.time) - 0.05
    q = Ether(src=first[Ether].src, dst=first[Ether].dst) / IP(src="198.18.0.2", dst="198.18.0.53") / UDP(
        sport=53000, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="vpn.acflow.test"))
    a = Ether(src=first[Ether].dst, dst=first[Ether].src) / IP(src="198.18.0.53", dst="198.18.0.2") / UDP(
        sport=53, dport=53000) / DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="vpn.acflow.test"),
                                     an=[DNSRR(rrname="vpn.acflow.test", rdata="198.18.0.1", ttl=60)])
    q.time, a.time = t0, t0 + 0.002
    cap = tmp_path / "resolved-then-unreachable.pcap"
    wrpcap(str(cap), [q, a, *pkts])
    by_name, by_addr = _json(_acflow(cap, "--gateway", "vpn.acflow.test")), _json(_acflow(cap, "--gateway",
                                                                                          "198.18.0.1"))
    _same_sessions(by_name, by_addr)
    (s,) = by_name["sessions"]
    assert s["verdict"]["text"].startswith("Could not connect to the gateway")
    assert by_name["filters"]["gateway_addresses"] == {"vpn.acflow.test": ["198.18.0.1"]}


def test_a_name_the_capture_does_not_know():
    """gateway-name-unknown: the name was looked up and answered NXDOMAIN — no address; said on standard error, and
    no session is made up."""
    p = _acflow(sample("gateway-name-unknown") / "capture.pcapng", "--gateway", "vpn.acflow.test")
    d = _json(p)
    assert d["sessions"] == [] and d["filters"]["gateway_addresses"] == {"vpn.acflow.test": []}
    assert "--gateway vpn.acflow.test: the capture ties no address to this name" in p.stderr
    assert any(f["id"] == "DNS_LOOKUP_FAILED" for f in d["findings"])


@pytest.mark.tshark
def test_the_tls_servers_of_other_traffic_name_the_candidates():
    """Without keys and without --gateway, a login that failed is no session (a TLS connection alone looks like any
    HTTPS): other traffic lists the TLS servers with the names their clients gave them (SNI), which --gateway takes,
    and NO_VPN_SESSION's remedy names them; tshark sees the same SNI on the same server."""
    cap = sample("scripted/saml-idp-unknown") / "capture.pcapng"
    d = _json(_acflow(cap))
    assert d["sessions"] == []
    (t,) = d["other_traffic"]["tls_servers"]
    assert (t["server"], t["names"], t["connections"], t["clients"]) == ("198.18.0.1:443", ["vpn.acflow.test"], 2, 1)
    rows = tshark_fields(cap, ["ip.dst", "tls.handshake.extensions_server_name"], "tls.handshake.type == 1")
    assert {tuple(r) for r in rows} == {("198.18.0.1", "vpn.acflow.test")} and len(rows) == 2
    nvs = next(f for f in d["findings"] if f["id"] == "NO_VPN_SESSION")
    assert "vpn.acflow.test 198.18.0.1:443 ×2" in nvs["remedy"]
    m = _json(_acflow(sample("mixed-traffic") / "capture.pcapng", "--gateway", "198.18.0.9"))
    counts = [x["connections"] for x in m["other_traffic"]["tls_servers"]]
    assert counts == sorted(counts, reverse=True) and len(counts) >= 3


def test_a_failed_lookup_beside_a_reached_gateway_is_not_called_the_gateways():
    """saml-idp-unknown without keys or --gateway: the failed name is the identity provider's, and the client did
    reach vpn.acflow.test over TLS — DNS_LOOKUP_FAILED says so and names the --gateway that shows the session;
    gateway-name-unknown (the gateway's own name failed, nothing reached) keeps its plain message."""
    d = _json(_acflow(sample("scripted/saml-idp-unknown") / "capture.pcapng"))
    f = next(f for f in d["findings"] if f["id"] == "DNS_LOOKUP_FAILED")
    assert f["evidence"]["names"] == ["idp.acflow.test"] and f["evidence"]["tls_servers_reached"] == ["vpn.acflow.test"]
    assert "--gateway vpn.acflow.test shows the session" in f["message"]
    g = _json(_acflow(sample("gateway-name-unknown") / "capture.pcapng"))
    f = next(f for f in g["findings"] if f["id"] == "DNS_LOOKUP_FAILED")
    assert "tls_servers_reached" not in f["evidence"] and "did reach" not in f["message"]
