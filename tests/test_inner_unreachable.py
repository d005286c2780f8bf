"""Connected, but servers inside the tunnel do not answer (lab scenario inner-unreachable: real openconnect and ocserv;
in the gateway's namespace a blackhole route for 198.19.0.77 — dropped silently, as an ACL's drop — and a prohibit
route for 198.19.0.78 — ICMP administratively prohibited, as an ACL's reject —, and nothing listening for DNS at the
tunnel's DNS address 198.19.0.1). The client's curl and DNS query run through the tunnel (route 198.19.0.0/24).

Before: 'Healthy: logged in, tunnel … over DTLS' — the tunnel was up, and what the user could not reach was not
looked at."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, ICMP, IP, TCP, UDP, raw

from analyzer.inner import InnerAttempts, failed_connects, failed_lookups

from .conftest import facts
from .helpers import doc

NAME = "inner-unreachable"


def _actions(kind: str) -> list[dict]:
    return [a for a in facts(NAME)["actions"] if a["action"] == kind]


def test_the_lab_made_what_it_says():
    tcp = {a["address"]: a for a in _actions("inner-tcp")}
    assert tcp["198.19.0.77"]["returncode"] == 28  # curl: timed out (the blackhole route)
    assert tcp["198.19.0.78"]["returncode"] == 7  # curl: could not connect (the ICMP error)
    (dns,) = _actions("inner-dns")
    assert dns["returncode"] != 0 and "timed out" in dns["output"]


def test_what_the_client_could_not_reach_inside_the_tunnel():
    (s,) = doc(NAME)["sessions"]
    u = s["tunnel"]["unreachable"]
    by = {c["dst"]: c for c in u["connects"]}
    assert set(by) == {"198.19.0.77", "198.19.0.78"} and all(c["port"] == 8080 for c in by.values())
    drop, reject = by["198.19.0.77"], by["198.19.0.78"]
    # the blackhole: SYNs sent again and never answered, within the time curl tried (4 s)
    tcp = {a["address"]: a for a in _actions("inner-tcp")}
    assert drop["answer"] == "none" and len(drop["syn_frames"]) >= 4
    assert tcp["198.19.0.77"]["issued"] <= drop["time"] <= tcp["198.19.0.77"]["time"]
    # the prohibit route: the gateway's ICMP administratively prohibited, quoting the SYN
    assert reject["answer"] == "icmp" and reject["icmp"]["from"] == "198.19.0.1"
    assert reject["icmp"]["code"] == 13 and "administratively prohibited" in reject["icmp"]["text"]
    (lk,) = u["lookups"]
    assert (lk["server"], lk["name"], lk["type"]) == ("198.19.0.1", "intranet.acflow.test", "A")
    assert lk["answer"] == "ICMP port unreachable from 198.19.0.1"
    (f,) = [f for f in s["findings"] if f["id"] == "INNER_UNREACHABLE"]
    assert f["severity"] == "warning" and set(drop["syn_frames"][:3]) <= set(f["frames"])
    assert "198.19.0.77:8080" in f["message"] and "intranet.acflow.test" in f["message"]
    assert s["verdict"]["outcome"] == "degraded"
    assert s["verdict"]["experienced"] == "Connected, but servers inside the tunnel did not answer"
    # the pings to the gateway's tunnel address were answered: no claim about them
    assert "198.19.0.1:" not in " ".join(c["dst"] + ":" for c in u["connects"])


def test_reached_or_once_is_not_unreachable():
    """Read from packets made with scapy (the parts the lab cannot make alone): a SYN answered is no failure, a SYN
    sent once and unanswered (a lost packet, the capture's end) neither; a reset is; a SYN-ACK for another port does
    not answer it."""
    a = InnerAttempts()

    def feed(direction, pkt, ts):
        b = raw(pkt)
        a.note(direction, b, 0, ts, int(ts * 10))

    feed("c2s", IP(src="10.0.0.2", dst="10.9.9.9") / TCP(sport=4000, dport=443, flags="S"), 1.0)
    feed("s2c", IP(src="10.9.9.9", dst="10.0.0.2") / TCP(sport=443, dport=4000, flags="SA"), 1.1)
    feed("c2s", IP(src="10.0.0.2", dst="10.9.9.8") / TCP(sport=4001, dport=443, flags="S"), 2.0)
    feed("c2s", IP(src="10.0.0.2", dst="10.9.9.7") / TCP(sport=4002, dport=22, flags="S"), 3.0)
    feed("s2c", IP(src="10.9.9.7", dst="10.0.0.2") / TCP(sport=22, dport=4002, flags="RA"), 3.1)
    feed("c2s", IP(src="10.0.0.2", dst="10.9.9.6") / TCP(sport=4003, dport=80, flags="S"), 4.0)
    feed("s2c", IP(src="10.9.9.6", dst="10.0.0.2") / TCP(sport=81, dport=4003, flags="SA"), 4.1)
    feed("c2s", IP(src="10.0.0.2", dst="10.9.9.6") / TCP(sport=4003, dport=80, flags="S"), 5.0)
    feed("c2s", IP(src="10.0.0.2", dst="10.0.0.53") / UDP(sport=5000, dport=53) /
         DNS(id=9, qd=DNSQR(qname="x.corp")), 6.0)
    feed("s2c", IP(src="10.0.0.53", dst="10.0.0.2") / UDP(sport=53, dport=5000) /
         DNS(id=9, qr=1, rcode=3, qd=DNSQR(qname="x.corp")), 6.1)
    feed("s2c", IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=1) /
         IP(src="10.0.0.2", dst="10.9.9.5") / TCP(sport=4009, dport=443, flags="S"), 7.0)  # quotes no attempt seen
    got = {(d["dst"], d["answer"]) for d in failed_connects(a)}
    assert got == {("10.9.9.7", "reset"), ("10.9.9.6", "none")}
    (lk,) = failed_lookups(a)
    assert (lk["name"], lk["answer"]) == ("x.corp", "NXDOMAIN")
    assert a.icmp_errors == 1


def test_ipv6_extension_headers_are_walked():
    """An IPv6 packet may carry extension headers before its transport header (RFC 8200 §4): hop-by-hop options,
    routing, destination options, a fragment header. The SYN, the lookup and the ICMPv6 error behind them are read;
    a fragment other than the first has no transport header and is left alone — through ChannelStats.data, as a
    decrypted tunnel hands them over."""
    from scapy.layers.inet6 import (  # noqa: PLC0415
        ICMPv6DestUnreach,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )

    from analyzer.tcptracker import ChannelStats  # noqa: PLC0415

    cs = ChannelStats()
    me, far, dns = "2001:2::50", "2001:2:0:9::9", "2001:2::1"
    pkts = [
        ("c2s", IPv6(src=me, dst=far) / IPv6ExtHdrHopByHop() / TCP(sport=4000, dport=443, flags="S")),
        ("c2s", IPv6(src=me, dst=far) / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / TCP(sport=4000, dport=443,
                                                                                           flags="S")),
        ("c2s", IPv6(src=me, dst=far) / IPv6ExtHdrFragment(offset=0, m=1, id=7) / TCP(sport=4001, dport=22,
                                                                                       flags="S")),
        ("c2s", IPv6(src=me, dst=far) / IPv6ExtHdrFragment(offset=5, m=0, id=8) / (b"z" * 16)),
        ("s2c", IPv6(src=far, dst=me) / IPv6ExtHdrHopByHop() / TCP(sport=22, dport=4001, flags="RA")),
        ("c2s", IPv6(src=me, dst=dns) / IPv6ExtHdrDestOpt() / UDP(sport=5000, dport=53) /
         DNS(id=3, qd=DNSQR(qname="y.corp", qtype="AAAA"))),
        ("s2c", IPv6(src=dns, dst=me) / IPv6ExtHdrHopByHop() / ICMPv6DestUnreach(code=4) /
         IPv6(src=me, dst=dns) / IPv6ExtHdrDestOpt() / UDP(sport=5000, dport=53) /
         DNS(id=3, qd=DNSQR(qname="y.corp", qtype="AAAA"))),
    ]
    for i, (d, p) in enumerate(pkts, 1):
        cs.data(d, float(i), i, raw(p), 0, None)
    a = cs.inner_attempts
    got = {(d["dst"], d["port"], d["answer"]) for d in failed_connects(a)}
    assert got == {(far, 443, "none"), (far, 22, "reset")}
    (lk,) = failed_lookups(a)
    assert (lk["name"], lk["server"], lk["type"]) == ("y.corp", dns, "AAAA") and lk["answer"].startswith("ICMP")


def test_only_the_packets_that_matter_are_read():
    """ChannelStats.data hands InnerAttempts only TCP SYNs or resets, UDP to or from port 53 and ICMP: bulk packets,
    other UDP and fragments are never parsed further (and make no attempts table)."""
    from analyzer.tcptracker import ChannelStats

    cs = ChannelStats()
    for i, pkt in enumerate([IP(src="10.0.0.2", dst="10.9.9.9") / TCP(sport=4000, dport=443, flags="PA") / (b"x" * 100),
                             IP(src="10.0.0.2", dst="10.9.9.9") / UDP(sport=4000, dport=4433) / (b"y" * 50),
                             IP(src="10.0.0.2", dst="10.9.9.9", flags="MF") / TCP(sport=4000, dport=443, flags="S"),
                             b"\x00" * 30]):
        cs.data("c2s", 1.0 + i, i + 1, raw(pkt) if not isinstance(pkt, bytes) else pkt, 0, None)
    assert cs.inner_attempts is None
    cs.data("c2s", 9.0, 9, raw(IP(src="10.0.0.2", dst="10.9.9.9") / TCP(sport=4000, dport=443, flags="S")), 0, None)
    assert cs.inner_attempts is not None and len(cs.inner_attempts.connects) == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["c2s", "s2c"]))
def test_any_bytes_are_read_without_error(data, direction):
    """What a hostile or broken tunnel carries: InnerAttempts.note never raises, whatever the bytes (an IPv4 or IPv6
    header of any length, a quoted packet cut anywhere)."""
    a = InnerAttempts()
    for prefix in (b"", b"\x45\x00\x00\x30" + bytes(5) + b"\x06", b"\x45\x00\x00\x30" + bytes(5) + b"\x01",
                   b"\x60" + bytes(5) + b"\x3a"):
        a.note(direction, prefix + data, 0, 1.0, 1)
    failed_connects(a)
    failed_lookups(a)
