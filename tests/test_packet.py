"""Tests for dissectors/packet.py: link types, IPv4/IPv6/TCP/UDP/ICMP decoding, truncation, garbage,
and IP defragmentation. Packets are built with scapy; tshark is the oracle where available."""

from __future__ import annotations

import functools
import glob
import operator
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    ICMP,
    IP,
    PPP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PPPoE,
    fragment,
    fragment6,
)

from analyzer.capture import iter_frames
from dissectors.packet import IPv4Defragmenter, Packet, decode

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(glob.glob(str(ROOT / "samples" / "*" / "capture.pcapng")))
HAVE_TSHARK = shutil.which("tshark") is not None

C4, S4 = "192.0.2.10", "203.0.113.5"
C6, S6 = "2001:db8::10", "2001:db8:0:1::5"


def tcp4(payload=b"hello", **kw):
    return IP(src=C4, dst=S4, id=77, ttl=61, flags="DF") / TCP(
        sport=51000, dport=443, seq=0xFFFFFFF0, ack=1234, flags="PA", window=501, **kw) / payload


def tcp6(payload=b"hello6"):
    return IPv6(src=C6, dst=S6, hlim=33) / TCP(sport=51001, dport=443, seq=7, ack=8, flags="A", window=9) / payload


# link-layer wrappers: linktype -> function(ip_bytes, version) -> frame bytes
def eth(ip: bytes, v: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800 if v == 4 else 0x86DD)) + ip


def vlan(ip: bytes, v: int) -> bytes:
    return bytes(Ether(type=0x8100) / Dot1Q(vlan=5, type=0x0800 if v == 4 else 0x86DD)) + ip


def qinq(ip: bytes, v: int) -> bytes:
    tag = Dot1Q(vlan=6, type=0x0800 if v == 4 else 0x86DD)
    return bytes(Ether(type=0x88A8) / Dot1AD(vlan=5, type=0x8100) / tag) + ip


def pppoe(ip: bytes, v: int) -> bytes:
    return bytes(Ether(type=0x8864) / PPPoE(sessionid=1, len=len(ip) + 2)
                 / PPP(proto=0x0021 if v == 4 else 0x0057)) + ip


def sll(ip: bytes, v: int) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800 if v == 4 else 0x86DD) + ip


def sll2(ip: bytes, v: int) -> bytes:
    return struct.pack("!HHIHBB8s", 0x0800 if v == 4 else 0x86DD, 0, 1, 772, 0, 6, b"\0" * 8) + ip


def null_le(ip: bytes, v: int) -> bytes:
    return struct.pack("<I", 2 if v == 4 else 30) + ip


def null_be(ip: bytes, v: int) -> bytes:
    return struct.pack(">I", 2 if v == 4 else 24) + ip


def null_linux6(ip: bytes, v: int) -> bytes:
    return struct.pack("<I", 2 if v == 4 else 10) + ip


def loop(ip: bytes, v: int) -> bytes:
    return struct.pack(">I", 2 if v == 4 else 24) + ip


def raw(ip: bytes, v: int) -> bytes:
    return ip


LINKS = [
    (1, eth), (1, vlan), (1, qinq), (1, pppoe), (113, sll), (276, sll2), (0, null_le), (0, null_be),
    (0, null_linux6), (108, loop), (101, raw), (12, raw),
]


@pytest.mark.parametrize("linktype, wrap", LINKS, ids=lambda x: getattr(x, "__name__", str(x)))
@pytest.mark.parametrize("v", [4, 6])
def test_link_types(linktype, wrap, v):
    ip = bytes(tcp4() if v == 4 else tcp6())
    p = decode(linktype, wrap(ip, v))
    assert p is not None
    assert p.ip_version == v and p.proto == 6
    if v == 4:
        assert (p.src, p.dst, p.sport, p.dport) == (C4, S4, 51000, 443)
        assert (p.seq, p.ack, p.flags, p.window, p.payload) == (0xFFFFFFF0, 1234, 0x18, 501, b"hello")
        assert (p.ttl, p.df, p.ip_id, p.ip_total_len) == (61, True, 77, len(ip))
    else:
        assert (p.src, p.dst, p.sport, p.dport) == (C6, S6, 51001, 443)
        assert (p.seq, p.ack, p.flags, p.window, p.payload, p.ttl) == (7, 8, 0x10, 9, b"hello6", 33)
    assert not p.truncated and p.payload_len == len(p.payload)


def test_raw_ip_specific_linktypes():
    assert decode(228, bytes(tcp4())).src == C4
    assert decode(228, bytes(tcp6())) is None
    assert decode(229, bytes(tcp6())).src == C6
    assert decode(229, bytes(tcp4())) is None


def test_non_ip_and_unknown_linktypes():
    assert decode(1, bytes(Ether(type=0x0806)) + b"\0" * 28) is None  # ARP
    assert decode(147, bytes(tcp4())) is None
    assert decode(0, struct.pack("<I", 7) + bytes(tcp4())) is None
    assert decode(1, b"") is None


def test_ethernet_padding_is_trimmed():
    frame = eth(bytes(IP(src=C4, dst=S4) / UDP(sport=1, dport=2) / b"x"), 4) + b"\0" * 20
    p = decode(1, frame)
    assert p.payload == b"x" and not p.truncated


def test_ipv4_options_and_udp():
    ip = IP(src=C4, dst=S4, options=b"\x94\x04\x00\x00\x01\x01\x01\x00") / UDP(sport=443, dport=5555) / b"dtls"
    p = decode(101, bytes(ip))
    assert (p.proto, p.sport, p.dport, p.payload, p.seq) == (17, 443, 5555, b"dtls", None)


def test_tcp_options_skipped():
    pkt = tcp4(b"data", options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("WScale", 7)])
    p = decode(101, bytes(pkt))
    assert p.payload == b"data" and p.payload_len == 4


def test_tso_zero_total_length():
    b = bytearray(bytes(tcp4(b"z" * 3000)))
    b[2:4] = b"\0\0"
    p = decode(101, bytes(b))
    assert p.payload == b"z" * 3000 and not p.truncated


@pytest.mark.parametrize("ext", [
    IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(addresses=["2001:db8::99"]),
    IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
    IPv6ExtHdrFragment(offset=0, m=0, id=5),  # atomic fragment: decoded normally
])
def test_ipv6_extension_headers(ext):
    pkt = IPv6(src=C6, dst=S6) / ext / UDP(sport=1, dport=2) / b"abc"
    p = decode(229, bytes(pkt))
    assert (p.proto, p.sport, p.dport, p.payload, p.is_fragment) == (17, 1, 2, b"abc", False)


def test_ipv6_fragments_are_marked():
    frags = fragment6(IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=0xABCD) / UDP(sport=1, dport=2) / (b"q" * 3000),
                      1280)
    ps = [decode(229, bytes(f)) for f in frags]
    assert all(p.is_fragment and p.ip_id == 0xABCD and p.sport is None and p.proto == 17 for p in ps)
    assert [p.more_fragments for p in ps] == [True] * (len(ps) - 1) + [False]
    assert ps[0].frag_offset == 0 and ps[1].frag_offset > 0


def test_icmp_port_unreachable_v4():
    quoted = bytes(IP(src=C4, dst=S4) / UDP(sport=40001, dport=443) / (b"d" * 100))[:28]
    pkt = IP(src=S4, dst=C4) / ICMP(type=3, code=3) / quoted
    p = decode(101, bytes(pkt))
    assert (p.proto, p.icmp_type, p.icmp_code) == (1, 3, 3)
    inner = p.icmp_inner
    assert (inner.src, inner.dst, inner.proto, inner.sport, inner.dport) == (C4, S4, 17, 40001, 443)
    assert inner.truncated


def test_icmp_quoting_tcp_v4():
    quoted = bytes(IP(src=C4, dst=S4) / TCP(sport=40002, dport=443, seq=99))[:28]  # 8 bytes of TCP
    p = decode(101, bytes(IP(src=S4, dst=C4) / ICMP(type=11, code=0) / quoted))
    assert (p.icmp_inner.sport, p.icmp_inner.dport, p.icmp_inner.seq) == (40002, 443, None)


def test_icmpv6_port_unreachable():
    quoted = bytes(IPv6(src=C6, dst=S6) / UDP(sport=40003, dport=443) / (b"e" * 50))
    p = decode(229, bytes(IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / quoted))
    assert (p.proto, p.icmp_type, p.icmp_code) == (58, 1, 4)
    assert (p.icmp_inner.src, p.icmp_inner.sport, p.icmp_inner.dport) == (C6, 40003, 443)


def test_icmp_echo_has_no_inner():
    p = decode(101, bytes(IP(src=C4, dst=S4) / ICMP(type=8) / b"ping"))
    assert (p.icmp_type, p.icmp_inner, p.payload) == (8, None, b"ping")
    p = decode(229, bytes(IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(data=b"p6")))
    assert (p.icmp_type, p.icmp_inner) == (128, None)


def test_other_protocols():
    p = decode(101, bytes(IP(src=C4, dst=S4, proto=47) / b"\0\0\x08\0rest"))
    assert (p.proto, p.sport, p.payload) == (47, None, b"\0\0\x08\0rest")


@pytest.mark.parametrize("pkt", [tcp4(b"p" * 300), tcp6(b"p" * 300),
                                 IP(src=C4, dst=S4) / UDP(sport=1, dport=2) / (b"u" * 300)])
def test_truncated_by_snaplen(pkt):
    full = bytes(pkt)
    ref = decode(101, full)
    for cut in range(len(full)):
        p = decode(101, full[:cut])
        if p is None:
            # only when not even the fixed IP header is there
            assert cut < (20 if ref.ip_version == 4 else 40)
            continue
        assert p.truncated
        assert (p.src, p.dst, p.proto) == (ref.src, ref.dst, ref.proto)
        assert p.payload_len == ref.payload_len or p.sport is None
        assert ref.payload.startswith(p.payload)
        if p.sport is not None:
            assert (p.sport, p.dport) == (ref.sport, ref.dport)


def test_garbage_returns_none():
    assert decode(101, b"\x45\x00\x00\x0a" + b"\0" * 16) is None  # total length < header
    bad = bytearray(bytes(tcp4()))
    bad[32] = 0x20  # TCP data offset 2 (< 5 words)
    assert decode(101, bytes(bad)) is None
    assert decode(101, b"\x75" + b"\0" * 40) is None  # IP version 7


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]), st.binary(max_size=200))
def test_random_bytes_never_raise(linktype, data):
    p = decode(linktype, data)
    assert p is None or isinstance(p, Packet)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_packets_never_raise(d):
    linktype, wrap = d.draw(st.sampled_from(LINKS))
    v = d.draw(st.sampled_from([4, 6]))
    base = bytes(tcp4() if v == 4 else tcp6())
    if d.draw(st.booleans()):
        base = bytes(IP(src=S4, dst=C4) / ICMP(type=3, code=3) / base[:28]) if v == 4 else bytes(
            IPv6(src=S6, dst=C6) / ICMPv6DestUnreach() / base)
    b = bytearray(wrap(base, v))
    for _ in range(d.draw(st.integers(1, 6))):
        b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    cut = d.draw(st.integers(0, len(b)))
    p = decode(linktype, bytes(b[:cut]))
    assert p is None or isinstance(p, Packet)


# --- defragmentation ---------------------------------------------------------------------------------------


def test_defragment_ipv4_any_order():
    orig = IP(src=C4, dst=S4, id=4242) / UDP(sport=4433, dport=443) / (bytes(range(256)) * 12)
    frags = [decode(101, bytes(f)) for f in fragment(orig, fragsize=512)]
    assert len(frags) > 3 and all(f.is_fragment and f.sport is None for f in frags)
    for order in (frags, frags[::-1], frags[2:3] + frags[1:] + frags[:1]):  # last: with a duplicate
        d = IPv4Defragmenter()
        results = [d.feed(f, 1.0, i + 1) for i, f in enumerate(order)]
        done = [r for r in results if r is not None]
        assert len(done) == 1
        r = done[0]
        assert (r.sport, r.dport, r.payload, r.is_fragment) == (4433, 443, bytes(range(256)) * 12, False)
        assert r.ip_total_len == len(bytes(orig))
        assert len(d) == 0 and d.completed == 1


def test_defragment_overlap_first_wins_and_passthrough():
    d = IPv4Defragmenter()
    plain = decode(101, bytes(tcp4()))
    assert d.feed(plain, 0.0) is plain
    hdr = bytes(UDP(sport=1, dport=2, len=8 + 24, chksum=0))
    a = decode(101, bytes(IP(src=C4, dst=S4, id=9, flags="MF", frag=0, proto=17) / (hdr + b"A" * 16)))
    b = decode(101, bytes(IP(src=C4, dst=S4, id=9, flags="MF", frag=2, proto=17) / (b"B" * 16)))
    c = decode(101, bytes(IP(src=C4, dst=S4, id=9, flags=0, frag=3, proto=17) / (b"C" * 8)))
    assert d.feed(a, 0.0, 1) is None
    assert d.feed(b, 0.0, 2) is None
    r = d.feed(c, 0.0, 3)
    assert r.payload == b"A" * 16 + b"B" * 8 and r.payload_len == 24  # C was fully overlapped by B
    assert d.last_frames == (1, 2, 3)


def test_defragment_bounds_and_timeout():
    d = IPv4Defragmenter(max_pending=10, timeout=5.0)
    for i in range(100):
        f = decode(101, bytes(IP(src=C4, dst=S4, id=i, flags="MF", proto=17) / (b"x" * 8)))
        assert d.feed(f, float(i) * 0.01) is None
    assert len(d) == 10 and d.dropped == 90
    late = decode(101, bytes(IP(src=C4, dst=S4, id=1000, flags="MF", proto=17) / (b"x" * 8)))
    d.feed(late, 100.0)
    assert len(d) == 1  # all others expired (capture time)
    huge = decode(101, bytes(IP(src=C4, dst=S4, id=5, flags=0, frag=8190, proto=17) / (b"x" * 64)))
    assert d.feed(huge, 100.0) is None


def test_defragment_ipv6():
    orig = IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=7) / TCP(sport=5, dport=443, seq=1) / (b"t" * 4000)
    d = IPv4Defragmenter()
    out = [d.feed(decode(229, bytes(f)), 0.0) for f in fragment6(orig, 1280)[::-1]]
    r = out[-1]
    assert (r.ip_version, r.proto, r.sport, r.dport, r.seq, r.payload) == (6, 6, 5, 443, 1, b"t" * 4000)


# --- tshark oracle -------------------------------------------------------------------------------------------

FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
          "udp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value", "tcp.len", "ip.ttl",
          "ip.id", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code"]


def tshark_rows(path) -> dict[int, dict[str, str]]:
    """Every frame's FIELDS, each as the list of its occurrences (a packet inside VXLAN has two ip.src)."""
    res = subprocess.run(["tshark", "-r", str(path), "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields",
                          *functools.reduce(operator.iadd, (["-e", f] for f in FIELDS), []), "-E", "occurrence=a",
                          "-E", "aggregator=|"],
                         capture_output=True, text=True, check=False)
    rows = {}
    for line in res.stdout.splitlines():
        vals = {k: v.split("|") if v else [] for k, v in zip(FIELDS, line.split("\t"))}
        rows[int(vals["frame.number"][0])] = vals
    return rows


def compare_with_tshark(path) -> int:
    rows = tshark_rows(path)
    checked = 0
    for fr in iter_frames(path):
        p = decode(fr.linktype, fr.data)
        occ = rows[fr.number]
        # a packet acflow read inside an encapsulation is tshark's innermost layer of its IP version; else the first
        # (an ICMP error's quoted packet is a second IP layer after it)
        inner = p is not None and p.encap is not None
        r = {k: (v[-1] if inner else v[0]) if v else "" for k, v in occ.items()}
        if inner:
            fam = "ip" if p.ip_version == 4 else "ipv6"
            src, dst = r[f"{fam}.src"], r[f"{fam}.dst"]
        else:
            src, dst = r["ip.src"] or r["ipv6.src"], r["ip.dst"] or r["ipv6.dst"]
        if not src:
            assert p is None, fr.number
            continue
        assert p is not None, fr.number
        assert (p.src, p.dst) == (src, dst), fr.number
        if p.is_fragment:
            continue
        if p.proto == 6 and r["tcp.srcport"]:
            assert (p.sport, p.dport) == (int(r["tcp.srcport"]), int(r["tcp.dstport"]))
            if p.seq is not None:
                assert (p.seq, p.ack) == (int(r["tcp.seq_raw"]), int(r["tcp.ack_raw"])), fr.number
                assert p.flags == int(r["tcp.flags"], 16) & 0x1FF
                assert p.window == int(r["tcp.window_size_value"])
                if not p.truncated:
                    assert len(p.payload) == int(r["tcp.len"]), fr.number
        elif p.proto == 17 and r["udp.srcport"]:
            assert (p.sport, p.dport) == (int(r["udp.srcport"]), int(r["udp.dstport"]))
        elif p.proto == 1:
            assert (p.icmp_type, p.icmp_code) == (int(r["icmp.type"]), int(r["icmp.code"]))
        elif p.proto == 58:
            assert (p.icmp_type, p.icmp_code) == (int(r["icmpv6.type"]), int(r["icmpv6.code"]))
        if p.ip_version == 4:
            assert (p.ttl, p.ip_id) == (int(r["ip.ttl"]), int(r["ip.id"], 16))
        checked += 1
    return checked


def write_pcap(path: Path, linktype: int, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1700000000 + i, 0, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def mixed_ip_packets() -> list[tuple[bytes, int]]:
    pk = [(tcp4(), 4), (tcp6(), 6),
          (IP(src=C4, dst=S4, options=b"\x01\x01\x01\x00") / UDP(sport=9, dport=443) / b"u", 4),
          (IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=9, dport=443) / b"x", 6),
          (IP(src=S4, dst=C4) / ICMP(type=3, code=3) / bytes(IP(src=C4, dst=S4) / UDP(sport=1, dport=2))[:28], 4),
          (IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / bytes(IPv6(src=C6, dst=S6) / UDP(sport=1, dport=2)), 6),
          (IP(src=C4, dst=S4) / TCP(sport=1, dport=2, flags="S", options=[("MSS", 1400), ("WScale", 7)]), 4)]
    pk += [(f, 4) for f in fragment(IP(src=C4, dst=S4) / UDP(sport=3, dport=4) / (b"f" * 2000), fragsize=800)]
    return [(bytes(p), v) for p, v in pk]


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
@pytest.mark.tshark
@pytest.mark.parametrize("linktype, wrap", [(1, eth), (1, qinq), (113, sll), (276, sll2), (0, null_le), (108, loop),
                                            (101, raw)], ids=lambda x: getattr(x, "__name__", str(x)))
def test_decode_matches_tshark(tmp_path, linktype, wrap):
    path = tmp_path / "x.pcap"
    frames = [wrap(ip, v) for ip, v in mixed_ip_packets()]
    frames.append(wrap(bytes(tcp4(b"s" * 500))[:80], 4))  # truncated (no snaplen semantics in file, fine)
    write_pcap(path, linktype, frames)
    assert compare_with_tshark(path) >= len(frames) - 4


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
@pytest.mark.tshark
@pytest.mark.parametrize("sample", SAMPLES or [None], ids=lambda s: "none" if s is None else Path(s).parent.name)
def test_samples_decode_matches_tshark(sample):
    if sample is None:
        pytest.skip("no samples/*/capture.pcapng committed yet")
    assert compare_with_tshark(sample) > 0
