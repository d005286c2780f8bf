"""CSTP framing: reassembly across any split, resync after garbage, helpers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.cstp import (
    CSTPError,
    CSTPFrame,
    CSTPFramer,
    CSTPType,
    InnerPacket,
    build_cstp_frame,
    inner_packet_summary,
    parse_disconnect_reason,
    parse_dtls_payload,
)

try:
    import lz4.block as lz4_block
except ImportError:  # pragma: no cover
    lz4_block = None


def lzs_literals(data: bytes) -> bytes:
    """The simplest valid LZS stream: every byte a literal, then the end marker."""
    bits = "".join("0" + format(b, "08b") for b in data) + "110000000"
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def ipv4_packet(src=b"\xc0\xa8\x01\x02", dst=b"\x0a\x00\x00\x01", proto=1, payload=b"ping", df=True):
    total = 20 + len(payload)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0x4000 if df else 0, 64, proto, 0,
                       src, dst) + payload


STREAM_FRAMES = [
    (CSTPType.DPD_REQ, b""),
    (CSTPType.DPD_RESP, b""),
    (CSTPType.KEEPALIVE, b""),
    (CSTPType.DATA, ipv4_packet()),
    (CSTPType.DATA, b"\x60" + b"\x00" * 1399),
    (CSTPType.DPD_REQ, b"\x00" * 1200),  # MTU probe
    (CSTPType.DISCONNECT, b"\xb0Aborted by caller"),
]
STREAM = b"".join(build_cstp_frame(t, p) for t, p in STREAM_FRAMES)


def frames_only(events):
    return [(e.direction, e.type, e.payload) for e in events if isinstance(e, CSTPFrame)]


def feed_chunks(framer, direction, data, cuts, frame0=1):
    events = []
    pos = 0
    for i, cut in enumerate(sorted(set(cuts)) + [len(data)]):
        events += framer.feed(direction, data[pos:cut], float(i), frame0 + i)
        pos = cut
    return events


def test_header_layout():
    assert build_cstp_frame(CSTPType.DPD_REQ, b"ab") == b"STF\x01\x00\x02\x03\x00ab"
    assert [t.name for t in CSTPType] == ["DATA", "DPD_REQ", "DPD_RESP", "DISCONNECT", "KEEPALIVE",
                                          "COMPRESSED_DATA", "TERMINATE"]
    assert int(CSTPType.TERMINATE) == 9


def test_whole_stream_in_one_feed():
    events = CSTPFramer().feed("s2c", STREAM, 1.5, 7)
    assert frames_only(events) == [("s2c", t, p) for t, p in STREAM_FRAMES]
    assert all(e.frame == 7 and e.first_frame == 7 and e.ts == 1.5 for e in events)
    assert events[3].packet == ipv4_packet()
    assert events[0].packet is None


def test_byte_by_byte():
    framer = CSTPFramer()
    events = feed_chunks(framer, "c2s", STREAM, range(1, len(STREAM)))
    assert frames_only(events) == [("c2s", t, p) for t, p in STREAM_FRAMES]
    assert not [e for e in events if isinstance(e, CSTPError)]
    assert framer.close() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking(cuts):
    events = feed_chunks(CSTPFramer(), "s2c", STREAM, cuts)
    assert frames_only(events) == [("s2c", t, p) for t, p in STREAM_FRAMES]


def test_frame_spanning_feeds_records_first_and_last_frame():
    data = build_cstp_frame(CSTPType.DATA, ipv4_packet())
    framer = CSTPFramer()
    assert framer.feed("s2c", data[:5], 1.0, 10) == []
    assert framer.feed("s2c", data[5:20], 2.0, 11) == []
    (ev,) = framer.feed("s2c", data[20:], 3.0, 12)
    assert (ev.first_frame, ev.frame, ev.ts) == (10, 12, 3.0)


def test_directions_are_independent():
    framer = CSTPFramer()
    a = build_cstp_frame(CSTPType.DPD_REQ, b"req")
    b = build_cstp_frame(CSTPType.DPD_RESP, b"req")
    assert framer.feed("c2s", a[:3], 0, 1) == []
    assert framer.feed("s2c", b[:6], 0, 2) == []
    assert frames_only(framer.feed("c2s", a[3:], 0, 3)) == [("c2s", CSTPType.DPD_REQ, b"req")]
    assert frames_only(framer.feed("s2c", b[6:], 0, 4)) == [("s2c", CSTPType.DPD_RESP, b"req")]


@pytest.mark.parametrize("garbage", [
    b"\x17\x03\x03\x00\x20garbage",   # e.g. an undecrypted TLS record
    b"STF\x02xxxx",                   # almost the magic
    b"SSSTFSTF",                      # partial magics
    b"x",
])
def test_resync_after_garbage(garbage):
    data = build_cstp_frame(CSTPType.KEEPALIVE) + garbage + STREAM
    for cuts in ([], range(1, len(data))):
        framer = CSTPFramer()
        events = feed_chunks(framer, "s2c", data, list(cuts))
        errors = [e for e in events if isinstance(e, CSTPError)]
        assert len(errors) == 1
        assert "bad CSTP magic" in errors[0].message and "offset 8" in errors[0].message
        assert frames_only(events) == [("s2c", CSTPType.KEEPALIVE, b"")] + [("s2c", t, p)
                                                                           for t, p in STREAM_FRAMES]
        assert framer.skipped_bytes["s2c"] == len(garbage)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64).filter(lambda g: b"STF" not in g and g[:1] != b"S"),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_resync_any_garbage_any_chunking(garbage, cuts):
    data = garbage + STREAM
    events = feed_chunks(CSTPFramer(), "c2s", data, [c for c in cuts if c <= len(data)])
    assert frames_only(events) == [("c2s", t, p) for t, p in STREAM_FRAMES]
    assert len([e for e in events if isinstance(e, CSTPError)]) == (1 if garbage else 0)


def test_garbage_without_any_magic_is_dropped_not_held():
    framer = CSTPFramer()
    events = framer.feed("s2c", b"\x00" * 100_000, 0, 1)
    assert len(events) == 1 and isinstance(events[0], CSTPError)
    assert len(framer._dirs["s2c"].buf) <= 3
    assert framer.feed("s2c", b"\x00" * 100_000, 0, 2) == []  # one report per garbage run
    assert frames_only(framer.feed("s2c", STREAM, 0, 3)) == [("s2c", t, p) for t, p in STREAM_FRAMES]


def test_close_inside_a_frame():
    framer = CSTPFramer()
    framer.feed("c2s", build_cstp_frame(CSTPType.DATA, b"x" * 100)[:50], 1.0, 4)
    (err,) = framer.close("c2s")
    assert isinstance(err, CSTPError) and "ended inside" in err.message and err.frame == 4
    assert framer.close("c2s") == []
    assert framer.close("s2c") == []
    assert isinstance(framer.feed("c2s", b"STF", 2.0, 5)[0], CSTPError)


def test_reserved_byte_and_unknown_type():
    data = b"STF\x01\x00\x01\x0a\x07z"
    events = CSTPFramer().feed("s2c", data, 0, 1)
    assert isinstance(events[0], CSTPError) and "reserved" in events[0].message
    assert events[1].type == 0x0A and events[1].payload == b"z"


def test_compressed_data_lzs():
    packet = ipv4_packet(payload=b"A" * 200)
    framer = CSTPFramer(encoding="lzs")
    (ev,) = framer.feed("s2c", build_cstp_frame(CSTPType.COMPRESSED_DATA, lzs_literals(packet)), 0, 1)
    assert ev.type == CSTPType.COMPRESSED_DATA and ev.packet == packet


@pytest.mark.skipif(lz4_block is None, reason="the lz4 package is not installed (optional, tests only)")
def test_compressed_data_oc_lz4():
    packet = ipv4_packet(payload=b"B" * 300)
    framer = CSTPFramer()
    framer.set_encoding("oc-lz4")
    (ev,) = framer.feed("c2s", build_cstp_frame(CSTPType.COMPRESSED_DATA,
                                                lz4_block.compress(packet, store_size=False)), 0, 1)
    assert ev.packet == packet


def test_compressed_data_corrupt_or_not_negotiated():
    frame = build_cstp_frame(CSTPType.COMPRESSED_DATA, b"\xff\xff")
    ev, err = CSTPFramer(encoding="lzs").feed("s2c", frame, 0, 1)
    assert ev.packet is None and isinstance(err, CSTPError) and "decompress" in err.message
    ev, err = CSTPFramer().feed("s2c", frame, 0, 1)
    assert ev.packet is None and "no content encoding" in err.message
    ev, err = CSTPFramer(encoding="deflate").feed("s2c", frame, 0, 1)
    assert "unsupported encoding" in err.message


def test_disconnect_reason():
    assert parse_disconnect_reason(b"\xb0Aborted by caller") == "Aborted by caller"
    assert parse_disconnect_reason(b"\xb0Aborted by caller\x00") == "Aborted by caller"
    assert parse_disconnect_reason(b"Server shutdown") == "Server shutdown"
    assert parse_disconnect_reason(b"") == ""
    assert parse_disconnect_reason(b"\x01bad \xff utf8") == "bad \ufffd utf8"


def test_dtls_payload():
    assert parse_dtls_payload(b"\x03") == (CSTPType.DPD_REQ, b"")
    assert parse_dtls_payload(b"\x00" + ipv4_packet()) == (CSTPType.DATA, ipv4_packet())
    assert parse_dtls_payload(b"\x42xy") == (0x42, b"xy")
    assert parse_dtls_payload(b"") is None


def test_inner_packet_summary_ipv4():
    summary = inner_packet_summary(ipv4_packet(proto=17, payload=b"u" * 1480))
    assert summary == InnerPacket(4, "192.168.1.2", "10.0.0.1", 17, 1500, True)
    assert inner_packet_summary(ipv4_packet(df=False)).df is False


def test_inner_packet_summary_ipv6_with_extension_header():
    src = bytes.fromhex("fd000000000000000000000000000002")
    dst = bytes.fromhex("20010db8000000000000000000000001")
    hop_by_hop = bytes([58, 0]) + b"\x00" * 6  # next header ICMPv6, 8 bytes
    body = hop_by_hop + b"\x80\x00" + b"\x00" * 6
    header = struct.pack("!IHBB", 0x60000000, len(body), 0, 64) + src + dst
    summary = inner_packet_summary(header + body)
    assert summary == InnerPacket(6, "fd00::2", "2001:db8::1", 58, 40 + len(body), True)


@pytest.mark.parametrize("data", [b"", b"\x45" * 10, b"\x60" * 20, b"\x00" * 40, b"\x44" + b"\x00" * 30])
def test_inner_packet_summary_rejects_non_ip(data):
    assert inner_packet_summary(data) is None
