"""A client that cannot resolve the gateway's name: real openconnect (no --resolve) against a DNS server in the lab
that answers NXDOMAIN (gateway-name-unknown: "getaddrinfo failed … Name or service not known") or never answers
(dns-unanswered: UDP 53 dropped; "Temporary failure in name resolution"). The capture holds the glibc resolver's A
and AAAA queries and nothing else of the VPN.

Before: 'No AnyConnect-protocol session found' and 'UDP/53 ×1' in other traffic."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, DNSRR, IP, UDP, Ether, wrpcap

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.dns_lookups import MAX_LOOKUPS
from analyzer.parallel import analyze_paths_parallel
from analyzer.report.json_report import render_json, to_document
from dissectors.dns import read_dns

from .conftest import NEVER_RESOLVED, facts, sample
from .oracle import tshark_fields

ANSWER = {"gateway-name-unknown": "NXDOMAIN", "dns-unanswered": "no answer"}


def _doc(path: Path) -> dict:
    keys, info = load_keys([], [])
    return to_document(analyze_paths([path], keys, info), version=__version__)


def test_read_dns():
    q = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="VPN.Example.com", qtype="AAAA")))
    m = read_dns(q)
    assert (m.id, m.response, m.name, m.qtype_name, m.rcode) == (0x1234, False, "vpn.example.com", "AAAA", 0)
    r = bytes(DNS(id=7, qr=1, rcode=3, qd=DNSQR(qname="x.test")))
    m = read_dns(r)
    assert m.response and m.rcode_name == "NXDOMAIN" and m.answers == 0
    assert read_dns(q[:15]) is None and read_dns(b"") is None
    # a compression pointer in the question, an opcode other than a query: not read
    assert read_dns(q[:12] + b"\xc0\x0c" + struct.pack(">HH", 1, 1)) is None
    assert read_dns(bytes(DNS(id=1, opcode=5, qd=DNSQR(qname="x.test")))) is None


def test_read_dns_answer_addresses():
    """The A and AAAA records of an answer, a CNAME's target's included (what ties a connection to a name looked up:
    analyzer/phases/sign_in.py); a cut answer gives what came before the cut."""
    r = DNS(id=1, qr=1, qd=DNSQR(qname="login.idp.test"),
            an=[DNSRR(rrname="login.idp.test", type="CNAME", rdata="edge.idp.test"),
                DNSRR(rrname="edge.idp.test", rdata="198.18.0.6"),
                DNSRR(rrname="edge.idp.test", type="AAAA", rdata="2001:db8::6")])
    m = read_dns(bytes(r))
    assert m.answers == 3 and m.addresses == ("198.18.0.6", "2001:db8::6")
    assert read_dns(bytes(r)[:-3]).addresses == ("198.18.0.6",)
    assert read_dns(bytes(DNS(id=2, qd=DNSQR(qname="x.test")))).addresses == ()  # a query has none


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_read_dns_never_raises(data):
    read_dns(data)


@pytest.mark.parametrize("name", sorted(NEVER_RESOLVED))
def test_the_client_could_not_resolve(name):
    errors = facts(name)["client_connect_errors"]
    assert any("getaddrinfo failed for host 'vpn.acflow.test'" in e["line"] for e in errors)


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(NEVER_RESOLVED))
def test_the_failed_lookup_is_reported(name, tshark):
    cap = sample(name) / "capture.pcapng"
    doc = _doc(cap)
    assert doc["sessions"] == []
    dns = doc["other_traffic"]["dns"]
    [bad] = dns["failed"]
    assert bad["name"] == "vpn.acflow.test" and bad["types"] == ["A", "AAAA"] and bad["answer"] == ANSWER[name]
    assert bad["client"] == "198.18.0.2" and bad["servers"] == ["198.18.0.1"]
    frames = [int(r[0]) for r in tshark_fields(cap, ["frame.number"], "dns && !icmp")]
    queries = [int(r[0]) for r in tshark_fields(cap, ["frame.number"], "dns.flags.response == 0 && !icmp")]
    assert bad["frames"] == frames[:10] and bad["queries"] == len(queries) and dns["lookups"] >= 2
    if name == "dns-unanswered":
        assert len(queries) >= 4  # (the resolver retried: timeout:2 attempts:2)
    [f] = [f for f in doc["findings"] if f["id"] == "DNS_LOOKUP_FAILED"]
    assert f["severity"] == "warning" and "vpn.acflow.test (A, AAAA)" in f["message"]
    assert ANSWER[name] in f["message"] and f["evidence"]["names"] == ["vpn.acflow.test"]
    assert {"NXDOMAIN": "does not exist", "no answer": "never answered"}[ANSWER[name]] in f["remedy"]
    assert "NO_VPN_SESSION" in {x["id"] for x in doc["findings"]}


def test_resolved_names_are_no_failure():
    """mixed-traffic: the lab's DNS responder answers every A query; a session is in the capture."""
    doc = _doc(sample("mixed-traffic") / "capture.pcapng")
    assert doc["other_traffic"]["dns"]["failed"] == [] and doc["other_traffic"]["dns"]["lookups"] >= 3
    assert "DNS_LOOKUP_FAILED" not in {f["id"] for f in doc["findings"]}


def test_jobs_give_the_same_document():
    cap = sample("gateway-name-unknown") / "capture.pcapng"
    keys, info = load_keys([], [])
    assert render_json(analyze_paths([cap], keys, info), version=__version__) == \
        render_json(analyze_paths_parallel([cap], [], [], 2), version=__version__)


def test_many_lookups_stay_bounded(tmp_path):
    """A resolver's capture: every query to another name, none answered; the first MAX_LOOKUPS are kept."""
    n = MAX_LOOKUPS + 200
    pkts = [Ether() / IP(src="198.18.0.2", dst="198.18.0.53") / UDP(sport=30000 + i % 3000, dport=53)
            / DNS(id=i, rd=1, qd=DNSQR(qname=f"host{i}.test")) for i in range(n)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.001
    cap = tmp_path / "lookups.pcap"
    wrpcap(str(cap), pkts)
    dns = _doc(cap)["other_traffic"]["dns"]
    assert dns["lookups"] == n and dns["failed_total"] == MAX_LOOKUPS and len(dns["failed"]) == 20
    assert dns["failed"][0]["name"] == "host0.test"
