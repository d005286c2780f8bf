"""Tests for dissectors/pcapfile.py (PcapParser) and analyzer/capture.py (read_capture).

tshark is the oracle for frame numbering and timestamps: captures are built with scapy, converted to
the other formats with editcap, hand-assembled for pcapng corner cases, and every committed lab
sample (samples/*/capture.pcapng) is checked too.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import lzma
import os
import shutil
import struct
import subprocess
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture import CaptureFormatError, iter_frames, read_capture
from dissectors.pcapfile import SECRETS_TLS_KEYLOG, CaptureError, Frame, Interface, PcapParser, Secrets

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(
    glob.glob(str(ROOT / "samples" / "*" / "capture.pcapng"))
    + glob.glob(str(ROOT / "samples" / "*" / "capture.pcap"))
    + glob.glob(str(ROOT / "samples" / "*" / "capture.pcapng.gz"))
)
HAVE_TSHARK = shutil.which("tshark") is not None
HAVE_EDITCAP = shutil.which("editcap") is not None
needs_tshark = pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")


# --- helpers ---------------------------------------------------------------------------------------------


def parse_all(data: bytes, chunk: int | None = None, **kw) -> list:
    p = PcapParser(**kw)
    out: list = []
    if chunk is None:
        out += p.feed(data)
    else:
        for i in range(0, len(data), chunk):
            out += p.feed(data[i : i + chunk])
    out += p.close()
    return out


def frames_of(events) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def tshark_frames(path) -> dict[int, tuple[Decimal | None, int, int]]:
    """frame.number -> (time_epoch or None, cap_len, len), from tshark."""
    res = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch",
         "-e", "frame.cap_len", "-e", "frame.len"],
        capture_output=True, text=True, check=False,
    )
    rows = {}
    for line in res.stdout.splitlines():
        num, t, cap, ln = line.split("\t")
        rows[int(num)] = (Decimal(t) if t else None, int(cap), int(ln))
    return rows


def assert_matches_tshark(path, events, non_packet: set[int] = frozenset()) -> None:
    frames = frames_of(events)
    ref = tshark_frames(path)
    assert ref, "tshark read no frame"
    ours = {f.number: f for f in frames}
    assert set(ours) | set(non_packet) == set(ref), "frame numbering differs from tshark"
    for num, f in ours.items():
        t, cap, ln = ref[num]
        assert len(f.data) == cap, num
        assert f.orig_len == ln, num
        if t is not None:
            assert abs(Decimal(repr(f.ts)) - t) < Decimal("0.000001"), (num, f.ts, t)


def blk(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def opt(code: int, value: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(e: str = "<") -> bytes:
    return blk(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def idb(linktype: int, tsresol: int | None = None, tsoffset: int | None = None, snaplen: int = 0,
        e: str = "<") -> bytes:
    opts = b""
    if tsresol is not None:
        opts += opt(9, bytes([tsresol]), e)
    if tsoffset is not None:
        opts += opt(14, struct.pack(e + "q", tsoffset), e)
    if opts:
        opts += struct.pack(e + "HH", 0, 0)
    return blk(1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, e)


def epb(iface: int, ts: int, data: bytes, orig: int | None = None, e: str = "<") -> bytes:
    orig = len(data) if orig is None else orig
    return blk(6, struct.pack(e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig) + data, e)


def spb(data: bytes, orig: int | None = None, e: str = "<") -> bytes:
    return blk(3, struct.pack(e + "I", len(data) if orig is None else orig) + data, e)


def opb(iface: int, ts: int, data: bytes, e: str = "<") -> bytes:
    return blk(2, struct.pack(e + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data, e)


def dsb(kind: int, secret: bytes, e: str = "<") -> bytes:
    return blk(10, struct.pack(e + "II", kind, len(secret)) + secret, e)


def udp_ip(n: int, payload: bytes = b"abcd") -> bytes:
    """A minimal raw IPv4/UDP packet (checksums zero)."""
    ulen = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, n & 0xFFFF, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    return ip + struct.pack("!HHHH", 1000 + n, 2000, ulen, 0) + payload


def pcap_file(records: list[tuple[int, int, bytes]], linktype: int = 101, nano: bool = False,
              e: str = "<", orig_extra: int = 0) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for sec, frac, data in records:
        out.append(struct.pack(e + "IIII", sec, frac, len(data), len(data) + orig_extra) + data)
    return b"".join(out)


def make_scapy_pcap(path: Path, n: int = 40) -> None:
    from scapy.all import IP, TCP, UDP, Ether, wrpcap

    pkts = []
    for i in range(n):
        if i % 3:
            p = Ether() / IP(src="192.0.2.1", dst="198.51.100.7") / TCP(sport=40000 + i % 2, dport=443,
                                                                       seq=1000 * i, flags="PA") / (b"x" * i)
        else:
            p = Ether() / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=5000, dport=443) / (b"y" * i)
        p.time = Decimal("1700000000.000001") + Decimal(i) * Decimal("0.123457")
        pkts.append(p)
    wrpcap(str(path), pkts)


@pytest.fixture(scope="module")
def base_pcap(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "base.pcap"
    make_scapy_pcap(path)
    return path


# --- classic pcap ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_variants(tmp_path, e, nano):
    recs = [(1700000000 + i, (123456789 if nano else 123456) + i, udp_ip(i)) for i in range(5)]
    data = pcap_file(recs, nano=nano, e=e, orig_extra=3)
    frames = frames_of(parse_all(data))
    assert [f.number for f in frames] == [1, 2, 3, 4, 5]
    for f, (sec, frac, pkt) in zip(frames, recs):
        assert f.data == pkt and f.linktype == 101 and f.interface == 0
        assert f.orig_len == len(pkt) + 3
        assert f.ts == pytest.approx(sec + frac / (1e9 if nano else 1e6), abs=1e-6)
    assert not [e for e in parse_all(data) if isinstance(e, CaptureError)]
    if HAVE_TSHARK:
        p = tmp_path / "x.pcap"
        p.write_bytes(data)
        assert_matches_tshark(p, parse_all(data))


def test_frames_are_genuine_frozen_dataclasses():
    f = frames_of(parse_all(pcap_file([(5, 6, udp_ip(1))])))[0]
    ref = Frame(1, 5.000006, 101, udp_ip(1), len(udp_ip(1)), 0)
    assert type(f) is Frame and f == ref and hash(f) == hash(ref) and repr(f) == repr(ref)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.number = 2
    assert dataclasses.replace(f, number=3).number == 3
    assert dataclasses.astuple(f) == dataclasses.astuple(ref)


def test_pcap_linktype_fcs_bits_masked():
    data = pcap_file([(1, 0, udp_ip(1))], linktype=1 | 0x10000000 | (2 << 29))
    assert frames_of(parse_all(data))[0].linktype == 1


@needs_tshark
@pytest.mark.skipif(not HAVE_EDITCAP, reason="editcap not installed")
@pytest.mark.parametrize("fmt", ["pcap", "nsecpcap", "pcapng"])
def test_editcap_conversions_match_tshark(base_pcap, tmp_path, fmt):
    out = tmp_path / f"conv.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(base_pcap), str(out)], check=True, capture_output=True)
    events = list(read_capture(out))
    assert len(frames_of(events)) == 40
    assert_matches_tshark(out, events)
    # gzip-compressed copy gives the same frames
    gz = tmp_path / "conv.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    assert frames_of(read_capture(gz, chunk_size=777)) == frames_of(events)


@needs_tshark
@pytest.mark.skipif(not HAVE_EDITCAP, reason="editcap not installed")
def test_snaplen_truncated_capture_matches_tshark(base_pcap, tmp_path):
    out = tmp_path / "snap.pcapng"
    subprocess.run(["editcap", "-s", "60", "-F", "pcapng", str(base_pcap), str(out)], check=True,
                   capture_output=True)
    events = list(read_capture(out))
    assert all(len(f.data) <= 60 for f in frames_of(events))
    assert_matches_tshark(out, events)


# --- pcapng ----------------------------------------------------------------------------------------------


def build_rich_pcapng(e: str = "<") -> tuple[bytes, set[int]]:
    """Several interfaces and resolutions, SPB, OPB, DSB, skipped and counted-but-not-packet blocks."""
    parts = [
        shb(e),
        idb(101, e=e),  # iface 0: microseconds (default)
        idb(101, tsresol=9, e=e),  # iface 1: nanoseconds
        idb(228, tsresol=0x80 | 20, tsoffset=1000, e=e),  # iface 2: 2^-20 s, offset 1000 s
        idb(101, tsresol=3, e=e),  # iface 3: milliseconds
        epb(0, 1700000000_123456, udp_ip(1), e=e),  # 1
        epb(1, 1700000000_123456789, udp_ip(2), e=e),  # 2
        epb(2, 5 << 20 | 1 << 19, udp_ip(3), orig=99, e=e),  # 3
        dsb(SECRETS_TLS_KEYLOG, b"CLIENT_RANDOM aa bb\n", e=e),
        blk(4, struct.pack(e + "HH", 0, 0), e),  # NRB: skipped
        blk(5, struct.pack(e + "III", 0, 0, 0), e),  # ISB: skipped
        blk(0x80000001, b"local", e),  # local use: skipped
        spb(udp_ip(4), e=e),  # 4 (no timestamp)
        epb(3, 1700000001_500, udp_ip(5), e=e),  # 5
        blk(9, b"__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=x\n", e),  # 6: journal, counted
        blk(0xBAD, struct.pack(e + "I", 32473) + b"custom", e),  # 7: custom block, counted
        opb(0, 1700000002_000001, udp_ip(8), e=e),  # 8
        epb(0, 1700000003_000000, udp_ip(9)[:20], orig=len(udp_ip(9)), e=e),  # 9 truncated
    ]
    return b"".join(parts), {6, 7}


@pytest.mark.parametrize("e", ["<", ">"])
def test_pcapng_rich(tmp_path, e):
    data, non_packet = build_rich_pcapng(e)
    events = parse_all(data)
    assert not [x for x in events if isinstance(x, CaptureError)]
    frames = frames_of(events)
    assert [f.number for f in frames] == [1, 2, 3, 4, 5, 8, 9]
    assert [f.interface for f in frames] == [0, 1, 2, 0, 3, 0, 0]
    assert frames[0].ts == pytest.approx(1700000000.123456, abs=1e-7)
    assert frames[1].ts == pytest.approx(1700000000.123456789, abs=1e-6)
    assert frames[2].ts == 1005.5 and frames[2].linktype == 228 and frames[2].orig_len == 99
    assert frames[3].ts == frames[2].ts  # SPB: previous timestamp
    assert frames[4].ts == pytest.approx(1700000001.5)
    assert frames[6].data == udp_ip(9)[:20] and frames[6].orig_len == len(udp_ip(9))
    secrets = [x for x in events if isinstance(x, Secrets)]
    assert secrets == [Secrets(SECRETS_TLS_KEYLOG, b"CLIENT_RANDOM aa bb\n")]
    if HAVE_TSHARK:
        p = tmp_path / "rich.pcapng"
        p.write_bytes(data)
        assert_matches_tshark(p, events, non_packet)


def test_pcapng_multiple_sections_mixed_endianness(tmp_path):
    data = b"".join([
        shb("<"), idb(101, e="<"), epb(0, 1_000_000, udp_ip(1), e="<"),
        shb(">"), idb(229, tsresol=9, e=">"), idb(101, e=">"), epb(1, 2_000_000, udp_ip(2), e=">"),
        epb(0, 3_000_000_000, udp_ip(3), e=">"),
    ])
    frames = frames_of(parse_all(data))
    assert [(f.number, f.interface, f.linktype, f.ts) for f in frames] == [
        (1, 0, 101, 1.0), (2, 1, 101, 2.0), (3, 0, 229, 3.0)]
    if HAVE_TSHARK:
        p = tmp_path / "sections.pcapng"
        p.write_bytes(data)
        assert_matches_tshark(p, parse_all(data))


def test_pcapng_unknown_interface_is_reported_and_skipped():
    data = shb() + idb(101) + epb(5, 1, udp_ip(1)) + epb(0, 2, udp_ip(2))
    events = parse_all(data)
    assert events[0] == Interface(0, 101, None, None)
    assert isinstance(events[1], CaptureError) and "interface 5" in events[1].message
    assert [f.number for f in frames_of(events)] == [1]


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (lambda: shb()[:8] + b"\x01\x02\x03\x04" + shb()[12:], "byte-order"),
        (lambda: shb() + struct.pack("<II", 6, 14) + b"\0" * 8, "invalid length"),
        (lambda: shb() + blk(6, b"\0" * 20)[:-4] + struct.pack("<I", 999), "trailing length"),
        (lambda: shb() + idb(1) + blk(6, struct.pack("<IIIII", 0, 0, 0, 500, 500)), "exceeds"),
        (lambda: shb() + struct.pack("<II", 6, 0x7FFFFFF0), "limit"),
        (lambda: b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x4d\x3c\x2b\x1a" + struct.pack("<HHq", 2, 0, -1)
         + struct.pack("<I", 28), "version"),
    ],
)
def test_pcapng_structural_errors(bad, fragment):
    events = parse_all(bad())
    errors = [e for e in events if isinstance(e, CaptureError)]
    assert len(errors) == 1 and fragment in errors[0].message, errors


def test_huge_claimed_length_is_not_buffered():
    p = PcapParser()
    hdr = pcap_file([])
    events = p.feed(hdr + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0xFFFFFFF0))
    assert isinstance(events[-1], CaptureError) and "limit" in events[-1].message
    assert p.feed(b"\0" * 100000) == []  # dead: nothing buffered any more
    assert p._plen == 0
    assert p.close() == []


def test_block_limit_is_configurable():
    data = pcap_file([(0, 0, b"\0" * 5000)])
    events = parse_all(data, max_block=4096)
    assert isinstance(events[-1], CaptureError) and not frames_of(events)


# --- chunking, truncation, garbage ---------------------------------------------------------------------------


def small_files() -> dict[str, tuple[bytes, list[int]]]:
    """name -> (file bytes, offsets of record/block boundaries)."""
    recs = [(1700000000 + i, i, udp_ip(i, b"p" * i)) for i in range(4)]
    pc = pcap_file(recs)
    bounds = [24]
    for _s, _f, d in recs:
        bounds.append(bounds[-1] + 16 + len(d))
    ng_parts = [shb(), idb(1), epb(0, 1, udp_ip(1)), dsb(SECRETS_TLS_KEYLOG, b"k"), spb(udp_ip(2)),
                epb(0, 3, udp_ip(3, b"zz"))]
    ng = b"".join(ng_parts)
    nb = [0]
    for part in ng_parts:
        nb.append(nb[-1] + len(part))
    return {"pcap": (pc, bounds), "pcapng": (ng, nb[1:])}


@pytest.mark.parametrize("name", ["pcap", "pcapng"])
def test_any_chunking_gives_same_events(name):
    data, _ = small_files()[name]
    ref = parse_all(data)
    for chunk in (1, 2, 3, 5, 7, 13, 64, 1000):
        assert parse_all(data, chunk) == ref


@pytest.mark.parametrize("name", ["pcap", "pcapng"])
def test_truncation_at_every_offset(name):
    """Cut the file at every byte: frames before the cut, then exactly one CaptureError unless the cut
    falls exactly on a record boundary (then the prefix is itself a valid, shorter capture)."""
    data, bounds = small_files()[name]
    full = frames_of(parse_all(data))
    header_end = bounds[0]
    for cut in range(len(data) + 1):
        for chunk in (None, 7):
            events = parse_all(data[:cut], chunk)
            frames = frames_of(events)
            errors = [e for e in events if isinstance(e, CaptureError)]
            assert frames == full[: len(frames)]
            if cut in bounds:
                assert not errors, (cut, errors)
            else:
                assert len(errors) == 1 and errors[0] is events[-1], (cut, events)
                assert errors[0].offset <= cut
                if cut >= header_end:
                    assert "truncated" in errors[0].message
    assert frames_of(parse_all(data[:header_end])) == []


def test_truncation_counts_frames_before_cut():
    data, bounds = small_files()["pcap"]
    for i, b in enumerate(bounds):
        assert len(frames_of(parse_all(data[:b]))) == i
        if b + 5 <= len(data):
            ev = parse_all(data[: b + 5])
            assert len(frames_of(ev)) == i and isinstance(ev[-1], CaptureError)


def test_empty_and_not_a_capture():
    assert parse_all(b"") == [CaptureError("empty input: no pcap/pcapng header", 0)]
    p = PcapParser()
    ev = p.feed(b"GET / HTTP/1.1\r\n") + p.close()
    assert p.unrecognized and len(ev) == 1 and "not a pcap" in ev[0].message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_random_bytes_never_raise(data, chunk):
    parse_all(data, chunk)
    # and with a valid header in front, so that record/block parsing is exercised
    parse_all(pcap_file([]) + data, chunk)
    parse_all(shb() + idb(1) + data, chunk)
    parse_all(shb(">") + idb(1, e=">") + data, chunk)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_never_raise(d):
    name = d.draw(st.sampled_from(["pcap", "pcapng"]))
    data = bytearray(small_files()[name][0])
    for _ in range(d.draw(st.integers(1, 8))):
        pos = d.draw(st.integers(0, len(data) - 1))
        data[pos] = d.draw(st.integers(0, 255))
    events = parse_all(bytes(data), d.draw(st.integers(1, 50)))
    for e in events:
        assert isinstance(e, (Frame, Secrets, CaptureError, Interface))
    numbers = [f.number for f in frames_of(events)]
    assert numbers == sorted(set(numbers))


def test_memory_stays_bounded():
    """The pending buffer holds at most one incomplete record plus one chunk."""
    rec = udp_ip(1, b"q" * 1000)
    p = PcapParser()
    p.feed(pcap_file([]))
    chunk = b"".join(struct.pack("<IIII", i, 0, len(rec), len(rec)) + rec for i in range(64))
    peak = 0
    n = 0
    for i in range(2000):
        k = (i * 997) % len(chunk)  # split the (aligned) stream at varying places
        n += len(frames_of(p.feed(chunk[:k])))
        peak = max(peak, p._plen)
        n += len(frames_of(p.feed(chunk[k:])))
        peak = max(peak, p._plen)
    assert peak <= len(rec) + 16
    assert n == 2000 * 64
    assert p.close() == []


# --- read_capture (I/O edge) -------------------------------------------------------------------------------------


def test_read_capture_plain_and_gzip(tmp_path):
    data, _ = small_files()["pcapng"]
    plain = tmp_path / "a.pcapng"
    plain.write_bytes(data)
    gz = tmp_path / "a.pcapng.whatever"
    gz.write_bytes(gzip.compress(data))
    ref = parse_all(data)
    assert list(read_capture(plain)) == ref
    assert list(read_capture(gz)) == ref
    assert list(read_capture(gz, chunk_size=1)) == ref
    assert list(iter_frames(plain)) == frames_of(ref)
    seen = []
    list(iter_frames(plain, on_secrets=seen.append))
    assert seen == [Secrets(SECRETS_TLS_KEYLOG, b"k")]


def test_read_capture_truncated_gzip(tmp_path):
    recs = [(i, 0, udp_ip(i, os.urandom(200))) for i in range(200)]
    data = pcap_file(recs)
    gz = tmp_path / "t.pcap.gz"
    blob = gzip.compress(data)
    gz.write_bytes(blob[: len(blob) * 2 // 3])
    events = list(read_capture(gz, chunk_size=4096))
    frames = frames_of(events)
    assert 0 < len(frames) < 200
    assert frames == frames_of(parse_all(data))[: len(frames)]
    errors = [e for e in events if isinstance(e, CaptureError)]
    assert errors and "compressed" in errors[0].message


@pytest.mark.parametrize(
    "content, hint",
    [
        (b"", "empty"),
        (b"ab", "too short"),
        (b"CLIENT_RANDOM 00 11\n", "key log"),
        (b"hello world, this is text\n", "text file"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 20, "zstd"),
        (b"\x00\x01\x02\x03\x04\x05", "unknown magic"),
        (gzip.compress(b"plain text inside gzip\n"), "inside gzip"),
        (gzip.compress(b""), "empty"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip"),
        (b"GMBU\x02\x02" + b"\0" * 40, "Microsoft Network Monitor"),
        # what a customer pastes when asked for the ASA's capture: the `show capture` listing
        (b"\n4 packets captured\n\n   1: 06:23:53.816000       198.18.0.2.51000 > 198.18.0.1.443: S 1:1(0) win 64240\n",
         "ASA/FTD `show capture`"),
        (lzma.compress(b"   1: 06:23:53.816000       198.18.0.2.51000 > 198.18.0.1.443: S 1:1(0) win 64240\n"
                       b"   2: 06:23:53.816100       198.18.0.1.443 > 198.18.0.2.51000: S 7:7(0) ack 2\n"),
         "/admin/capture/NAME/pcap"),
    ],
)
def test_capture_format_error(tmp_path, content, hint):
    f = tmp_path / "x"
    f.write_bytes(content)
    with pytest.raises(CaptureFormatError) as ei:
        list(read_capture(f))
    assert hint in str(ei.value)
    assert str(f) in str(ei.value)


# --- real samples ----------------------------------------------------------------------------------------------------


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("sample", SAMPLES or [None], ids=lambda s: "none" if s is None else Path(s).parent.name)
def test_samples_match_tshark(sample):
    if sample is None:
        pytest.skip("no samples/*/capture.pcapng committed yet")
    events = list(read_capture(sample))
    assert not [e for e in events if isinstance(e, CaptureError)]
    assert_matches_tshark(sample, events)


def test_parser_counts_every_frame_of_a_large_file_fed_in_chunks(base_pcap):
    """50 000 records fed in 1 MiB chunks (records cut across chunk boundaries): every frame comes out. (Timings
    belong in bench/, not here.)"""
    recs = [(1700000000 + i, i, udp_ip(i, b"b" * (i % 1400))) for i in range(50000)]
    data = pcap_file(recs)
    n = 0
    p = PcapParser()
    for i in range(0, len(data), 1 << 20):
        n += len(p.feed(data[i : i + (1 << 20)]))
    n += len(p.close())
    assert n == 50000


def _pair_class(linktype, buf, start, length) -> int:
    """A classifier of the kind `index_range`'s ``plain`` cache is for: a plain frame (Ethernet, IPv4, not ICMP, 34
    bytes or more) by its address field alone, any other by what else it holds."""
    if linktype == 1 and length >= 34 and buf[start + 12:start + 14] == b"\x08\x00" and buf[start + 23] != 1:
        return zlib.crc32(bytes(buf[start + 26:start + 34])) % 200
    return 200 + (linktype + length + (buf[start] if length else 0)) % 56


def _read_by_ranges(buf: bytes, cuts: list[int]):
    """The frames of ``buf`` read as analyzer/parallel.py does: the head fed to a parser, the rest indexed in ranges
    starting at ``cuts`` (each resynced but the first), then read at the indexed offsets; None when the index
    declines (a range status "other", a resync not found or not where the previous range ended)."""
    from dissectors.pcapfile import head_length

    head = head_length(buf)
    if head is None:
        return None
    parser = PcapParser()
    if any(type(e) is CaptureError for e in parser.feed(buf[:head])):
        return None
    bounds = sorted({head, *(c for c in cuts if head < c < len(buf))})
    starts = [head] + [parser.resync(buf, c) for c in bounds[1:]]
    if None in starts:
        return None
    frames, base = [], 0
    for i, start in enumerate(starts):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(buf)
        r = parser.index_range(buf, start, end, _pair_class)
        if r["status"] != "ok" or r["crossing"] != (starts[i + 1] if i + 1 < len(starts) else len(buf)):
            return None
        # the walk that reads plain frames' address fields itself (`plain`) classifies every packet alike
        fast = parser.index_range(buf, start, end, _pair_class, plain={})
        assert (fast["status"], fast["crossing"], fast["offsets"], fast["shards"]) == \
            (r["status"], r["crossing"], r["offsets"], r["shards"])
        frames += parser.frames_at(buf, r["offsets"], range(1, len(r["offsets"]) + 1), base)
        base = r["count"] + base
    return frames


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["baseline", "dtls-blocked", "mixed-traffic"]), pcap=st.sampled_from([None, "<", ">"]),
       cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=4),
       flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=3))
def test_reading_by_ranges_gives_the_parsers_frames_or_declines(name, pcap, cuts, flips):
    """The index pass of `acflow analyze --jobs` (PcapParser.index_range / resync / frames_at) on a capture cut at
    arbitrary bytes and damaged at random: whenever it accepts the file, its frames are exactly the ones `feed`
    gives, and `feed` reported nothing after the head; otherwise it declines (every process then reads the file)."""
    data = (ROOT / "samples" / name / "capture.pcapng").read_bytes()
    if pcap:  # the same frames as a classic pcap file, in either byte order
        out = [struct.pack(pcap + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
        for fr in iter_frames(ROOT / "samples" / name / "capture.pcapng"):
            sec = int(fr.ts)
            out.append(struct.pack(pcap + "IIII", sec, round((fr.ts - sec) * 1e6), len(fr.data), fr.orig_len)
                       + fr.data)
        data = b"".join(out)
    buf = bytearray(data)
    for at, x in flips:
        buf[at % len(buf)] ^= x
    buf = bytes(buf)
    cuts = [c % len(buf) for c in cuts]
    got = _read_by_ranges(buf, cuts)
    if got is None:
        return
    p = PcapParser()
    events = p.feed(buf) + p.close()
    want = [e for e in events if type(e) is Frame]
    assert not any(type(e) is CaptureError for e in events)
    assert got == want


def test_a_windows_etl_trace_is_named_with_its_conversion(tmp_path):
    f = tmp_path / "PktMon.etl"
    f.write_bytes(b"\x00\x00\x01\x00" + bytes(range(256)) * 4)
    with pytest.raises(CaptureFormatError) as ei:
        list(read_capture(f))
    assert "Windows ETL trace" in str(ei.value) and "pktmon etl2pcap" in str(ei.value)


def test_interface_blocks_name_where_the_capture_was_taken():
    """The if_name and if_description options of each Interface Description Block (what dumpcap and npcap write:
    lab sample tunnel-side's second capture, dumpcap on tun0), bounded, NUL-terminated or not; none for pcap."""
    from .conftest import sample  # noqa: PLC0415

    events = parse_all((sample("tunnel-side") / "tunnel-side.pcapng").read_bytes())
    assert [e for e in events if isinstance(e, Interface)] == [Interface(0, 101, "tun0", None)]

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)

    options = (opt(2, b"\\Device\\NPF_{0B1C}\0") + opt(3, b"Cisco AnyConnect Virtual Miniport Adapter")
               + opt(3, b"second description ignored") + opt(0, b""))
    body = struct.pack("<HHI", 1, 0, 0) + options
    block = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    events = parse_all(shb() + block)
    itf = [e for e in events if isinstance(e, Interface)]
    assert itf == [Interface(0, 1, "\\Device\\NPF_{0B1C}", "Cisco AnyConnect Virtual Miniport Adapter")]
    long_name = opt(2, b"x" * 2000)
    body = struct.pack("<HHI", 1, 0, 0) + long_name + opt(0, b"")
    block = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    [itf] = [e for e in parse_all(shb() + block) if isinstance(e, Interface)]
    assert itf.name == "x" * 256
    assert not [e for e in parse_all(pcap_file([])) if isinstance(e, Interface)]
