"""QUIC on UDP 443 (browsers' HTTP/3, most of a laptop's UDP/443 traffic) is named in the other-traffic summary and
never taken for DTLS (dissectors/quic.py). No QUIC stack runs in the lab: the packets are built with scapy from RFC
9000's long-header layout (Initial, Handshake, then short-header packets) and merged into the mixed-traffic sample
beside its TLS connection to the same server; tshark, the independent oracle, reads them as QUIC."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json
from dissectors.quic import is_quic_long_header

from .conftest import sample


def _long(kind: int, dcid: bytes, scid: bytes, n: int, version: bytes = b"\x00\x00\x00\x01") -> bytes:
    body = os.urandom(n)
    length = len(body) + 4
    return (bytes([0xC0 | (kind << 4) | 0x03]) + version + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
            + (b"\x00" if kind == 0 else b"") + bytes([0x40 | (length >> 8), length & 0xFF]) + os.urandom(4) + body)


def _with_quic(tmp_path, server: str = "198.18.0.4"):
    from scapy.all import IP, UDP, Ether, Raw, rdpcap, wrpcap  # noqa: PLC0415

    random.seed(5)
    pk = rdpcap(str(sample("mixed-traffic") / "capture.pcapng"))
    eth = pk[0][Ether]
    client = "198.18.0.2"
    dcid, scid = os.urandom(8), os.urandom(8)
    t = float(pk[0].time) + 6.0
    out = []

    def add(sender, payload, dt):
        nonlocal t
        t += dt
        up = sender == client
        p = (Ether(src=eth.src if up else eth.dst, dst=eth.dst if up else eth.src)
             / IP(src=sender, dst=server if up else client)
             / UDP(sport=51515 if up else 443, dport=443 if up else 51515) / Raw(payload))
        p.time = t
        out.append(p)

    add(client, _long(0, dcid, scid, 1150), 0)
    add(server, _long(0, scid, dcid, 200) + _long(2, scid, dcid, 900), 0.01)
    add(client, _long(2, dcid, scid, 80), 0.01)
    for _ in range(20):
        add(client, bytes([0x43]) + scid + os.urandom(random.randint(40, 300)), 0.02)
        add(server, bytes([0x43]) + dcid + os.urandom(random.randint(40, 1200)), 0.005)
    path = tmp_path / "mixed-quic.pcap"
    wrpcap(str(path), sorted(list(pk) + out, key=lambda p: float(p.time)))
    return path


def _doc(path, keylog=None) -> dict:
    k, info = load_keys([keylog] if keylog else [], [])
    return json.loads(render_json(analyze_paths([path], k, info), version=__version__))


def test_quic_beside_a_vpn_session_is_named_and_changes_nothing_else(tmp_path):
    tshark = shutil.which("tshark")
    path = _with_quic(tmp_path)
    if tshark is not None:
        out = subprocess.run([tshark, "-r", str(path), "-Y", "quic.long.packet_type == 0", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True, check=True).stdout.split()
        assert out, "tshark reads no QUIC Initial in the built packets"
    base = _doc(sample("mixed-traffic") / "capture.pcapng", sample("mixed-traffic") / "keys.log")
    doc = _doc(path, sample("mixed-traffic") / "keys.log")
    # (the built file is a pcap: microsecond times, the sample's are nanoseconds)
    assert [(s["verdict"]["outcome"], s["verdict"]["text"], [f["id"] for f in s["findings"]]) for s in
            doc["sessions"]] == [(s["verdict"]["outcome"], s["verdict"]["text"], [f["id"] for f in s["findings"]])
                                 for s in base["sessions"]]
    rows = {(r["protocol"], r["server_port"]): r["flows"] for r in doc["other_traffic"]["by_protocol"]}
    assert rows[("QUIC", 443)] == 1 and ("UDP", 443) not in rows
    assert doc["other_traffic"]["flows"] == base["other_traffic"]["flows"] + 1
    assert "ipsec" not in doc["other_traffic"]
    keyless = _doc(path)
    assert len(keyless["sessions"]) == len(base["sessions"])


@pytest.mark.parametrize("payload, quic", [
    (_long(0, b"\x01" * 8, b"\x02" * 8, 50), True),
    (_long(0, b"\x01" * 8, b"\x02" * 8, 50, version=bytes.fromhex("6b3343cf")), True),  # QUIC v2
    (_long(2, b"\x01" * 20, b"", 50, version=bytes.fromhex("ff00001d")), True),  # draft-29
    (bytes([0x80]) + b"\x00\x00\x00\x00" + bytes([8]) + b"\x01" * 8 + bytes([8]) + b"\x02" * 8 + b"\x00\x00\x00\x01",
     True),  # a Version Negotiation packet
    (bytes([0x43]) + b"\x01" * 30, False),  # a short header: no version to tell
    (_long(0, b"\x01" * 8, b"\x02" * 8, 50, version=b"\x12\x34\x56\x78"), False),  # unknown version
    (bytes([0xC3]) + b"\x00\x00\x00\x01" + bytes([21]) + b"\x01" * 30, False),  # a connection ID over 20 bytes
    (bytes.fromhex("16fefd0000000000000000002e"), False),  # a DTLS 1.2 handshake record
    (bytes.fromhex("17fefd0001000000000005"), False),  # DTLS application data
    (b"", False), (b"\xc0\x00", False),
])
def test_what_is_a_quic_long_header(payload, quic):
    assert is_quic_long_header(payload) is quic
