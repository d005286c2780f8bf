"""The TCP fast lane (analyzer/tcplane.py): it carries the CSTP tunnel's bulk, declines what it does not mirror,
and never changes a result.

The damaged variants are built from the dtls-blocked sample (whose VPN traffic all goes through CSTP): a
retransmitted, reordered, lost, FIN-carrying, option-carrying or corrupted tunnel segment in the middle of the
bulk. Each is analysed with and without fast lanes; the JSON documents and exported inner packets must match.
"""
from __future__ import annotations

import ssl
import struct
from pathlib import Path

import pytest

from analyzer.capture import read_capture
from analyzer.tcptracker import TCPTracker
from dissectors.pcapfile import Frame

from .helpers import analyze_with_and_without_lanes as _run_both_ways

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "dtls-blocked"


def _run(capture: Path, keylog: Path, fast: bool):
    """(JSON document with secrets shown, inner packets, pipeline): tests/test_fast_lanes.py's comparison run."""
    return _run_both_ways(capture, keylog, None, fast)


def _cstp_data_frames(pipe) -> int:
    return sum(c.tunnel.frames[d].get("DATA", [0])[0] for c in pipe.tcp.values() if c.tunnel for d in ("c2s", "s2c"))


def _lane_frames(monkeypatch, capture: Path, keylog: Path) -> tuple[list[int], object]:
    """Frame numbers the TCP lanes took (returned True for)."""
    taken: list[int] = []
    orig = TCPTracker.on_lane_segment

    def spy(self, where, data, view, ts, frame):
        ok = orig(self, where, data, view, ts, frame)
        if ok:
            taken.append(frame)
        return ok

    monkeypatch.setattr(TCPTracker, "on_lane_segment", spy)
    _doc, _inner, pipe = _run(capture, keylog, fast=True)
    monkeypatch.setattr(TCPTracker, "on_lane_segment", orig)
    return taken, pipe


@pytest.mark.skipif(not (SAMPLE / "capture.pcapng").exists(), reason="no dtls-blocked sample")
def test_tcp_lane_carries_the_cstp_bulk_of_the_dtls_blocked_sample(monkeypatch):
    taken, pipe = _lane_frames(monkeypatch, SAMPLE / "capture.pcapng", SAMPLE / "keys.log")
    data = _cstp_data_frames(pipe)
    assert data >= 20
    assert len(taken) >= data // 2, (len(taken), data)


# -- damaged variants ----------------------------------------------------------------------------------------


def _frames(capture: Path) -> list[Frame]:
    return [f for f in read_capture(capture) if isinstance(f, Frame)]


def _write_pcap(path: Path, frames: list[Frame]) -> None:
    lt = frames[0].linktype
    assert all(f.linktype == lt for f in frames)
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, lt)]
    for f in frames:
        sec = int(f.ts)
        nsec = min(round((f.ts - sec) * 1e9), 999_999_999)
        out.append(struct.pack("<IIII", sec, nsec, len(f.data), len(f.data)))
        out.append(bytes(f.data))
    path.write_bytes(b"".join(out))


def _ip_off(f: Frame) -> int:
    return {1: 14, 113: 16, 276: 20}.get(f.linktype, 0)


def _tcp_payload_len(f: Frame) -> int:
    off = _ip_off(f)
    d = f.data
    total = (d[off + 2] << 8) | d[off + 3]
    return total - 20 - ((d[off + 32] >> 4) << 2)


def _with(f: Frame, data: bytes) -> Frame:
    return Frame(f.number, f.ts, f.linktype, data, len(data), f.interface)


def _set_flags(f: Frame, flags: int) -> Frame:
    d = bytearray(f.data)
    d[_ip_off(f) + 33] = flags
    return _with(f, bytes(d))


def _add_options(f: Frame) -> Frame:
    """Insert 12 bytes of TCP options (NOP, NOP, timestamps) after the fixed header."""
    off = _ip_off(f)
    d = bytearray(f.data)
    total = (d[off + 2] << 8) | d[off + 3]
    tcp = off + 20
    hl = (d[tcp + 12] >> 4) << 2
    opts = b"\x01\x01\x08\x0a" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02"
    d[tcp + hl:tcp + hl] = opts
    d[tcp + 12] = (((hl + 12) >> 2) << 4) | (d[tcp + 12] & 0x0F)
    struct.pack_into("!H", d, off + 2, total + 12)
    return _with(f, bytes(d))


def _corrupt(f: Frame) -> Frame:
    d = bytearray(f.data)
    d[-5] ^= 0xFF
    return _with(f, bytes(d))


def _split(f: Frame, cuts: list[int]) -> list[Frame]:
    """The segment cut into pieces at these payload offsets (sequence numbers and IP lengths adjusted)."""
    off = _ip_off(f)
    d = f.data
    tcp = off + 20
    hl = (d[tcp + 12] >> 4) << 2
    total = (d[off + 2] << 8) | d[off + 3]
    head, payload = d[:tcp + hl], d[tcp + hl:off + total]
    seq = struct.unpack_from("!I", d, tcp + 4)[0]
    out = []
    bounds = [0, *cuts, len(payload)]
    for a, b in zip(bounds, bounds[1:]):
        h = bytearray(head)
        struct.pack_into("!H", h, off + 2, 20 + hl + b - a)
        struct.pack_into("!I", h, tcp + 4, (seq + a) & 0xFFFFFFFF)
        out.append(_with(f, bytes(h) + payload[a:b]))
    return out


def _merge(f: Frame, g: Frame) -> Frame:
    """One segment carrying the payloads of f and of g (the next segment of the same direction)."""
    off = _ip_off(f)
    d, e = f.data, g.data
    tcp = off + 20
    hl, hl2 = (d[tcp + 12] >> 4) << 2, (e[tcp + 12] >> 4) << 2
    total, total2 = (d[off + 2] << 8) | d[off + 3], (e[off + 2] << 8) | e[off + 3]
    expected_seq = (struct.unpack_from("!I", d, tcp + 4)[0] + total - 20 - hl) & 0xFFFFFFFF
    assert struct.unpack_from("!I", e, tcp + 4)[0] == expected_seq
    h = bytearray(d[:tcp + hl])
    struct.pack_into("!H", h, off + 2, total + total2 - 20 - hl2)
    return _with(f, bytes(h) + d[tcp + hl:off + total] + e[tcp + hl2:off + total2])


def _bad_header(f: Frame) -> Frame:
    d = bytearray(f.data)
    off = _ip_off(f)
    d[off + 20 + ((d[off + 32] >> 4) << 2)] = 0x99  # the first payload byte: a record header's content type
    return _with(f, bytes(d))


def _syn(f: Frame) -> Frame:
    """A SYN on the same 4-tuple with another initial sequence number: a new connection replaces the old one."""
    off = _ip_off(f)
    d = bytearray(f.data)
    hl = (d[off + 32] >> 4) << 2
    del d[off + 20 + hl:]
    struct.pack_into("!H", d, off + 2, 20 + hl)
    struct.pack_into("!I", d, off + 24, struct.unpack_from("!I", d, off + 24)[0] ^ 0x55555555)
    d[off + 33] = 0x02
    return _with(f, bytes(d))


def _data_offset(f: Frame, words: int) -> Frame:
    d = bytearray(f.data)
    off = _ip_off(f)
    d[off + 32] = (words << 4) | (d[off + 32] & 0x0F)
    return _with(f, bytes(d))


def _variants(frames: list[Frame], k: int, j: int) -> dict[str, list[Frame]]:
    """Damaged copies around data segment k (j: the next data segment in the same direction)."""
    fr = frames
    n = _tcp_payload_len(fr[k])
    merged = _merge(fr[k], fr[j])
    return {
        "retransmitted": fr[:k + 1] + [fr[k]] + fr[k + 1:],
        "reordered": fr[:k] + [fr[j]] + fr[k + 1:j] + [fr[k]] + fr[j + 1:],
        "lost": fr[:k] + fr[k + 1:],
        "fin": fr[:k] + [_set_flags(fr[k], 0x19)] + fr[k + 1:],
        "rst": fr[:k] + [_set_flags(fr[k], 0x14)] + fr[k + 1:],
        "urgent": fr[:k] + [_set_flags(fr[k], 0x30)] + fr[k + 1:],
        "options": fr[:k] + [_add_options(fr[k])] + fr[k + 1:],
        "corrupted": fr[:k] + [_corrupt(fr[k])] + fr[k + 1:],
        "corrupted-both": fr[:k] + [_corrupt(fr[k]), _corrupt(fr[k + 1])] + fr[k + 2:],
        "bad-header": fr[:k] + [_bad_header(fr[k])] + fr[k + 1:],
        "bad-data-offset": fr[:k] + [_data_offset(fr[k], 4)] + fr[k + 1:],
        "long-data-offset": fr[:k] + [_data_offset(fr[k], 15)] + fr[k + 1:],
        "new-connection": fr[:k] + [_syn(fr[k])] + fr[k:],
        # the same bytes, other segment boundaries: record headers cut, several records in one segment
        "split-header": fr[:k] + _split(fr[k], [2, 4]) + fr[k + 1:],
        "split-small": fr[:k] + _split(fr[k], [1, 5, 9, 40]) + fr[k + 1:],
        "merged": fr[:k] + [merged] + fr[k + 1:j] + fr[j + 1:],
        "merged-split": fr[:k] + _split(merged, [3]) + fr[k + 1:j] + fr[j + 1:],
        "merged-cut": fr[:k] + _split(merged, [n + 3]) + fr[k + 1:j] + fr[j + 1:],
        "merged-cut-later": fr[:k] + _split(merged, [n + 7]) + fr[k + 1:j] + fr[j + 1:],
        "merged-bad-second": fr[:k] + [_merge(fr[k], _bad_header(fr[j]))] + fr[k + 1:j] + fr[j + 1:],
        "merged-corrupt-second": fr[:k] + [_merge(fr[k], _corrupt(fr[j]))] + fr[k + 1:j] + fr[j + 1:],
    }


VARIANT_NAMES = ["retransmitted", "reordered", "lost", "fin", "rst", "urgent", "options", "corrupted",
                 "corrupted-both", "bad-header", "bad-data-offset", "long-data-offset", "new-connection",
                 "split-header", "split-small", "merged", "merged-split", "merged-cut", "merged-cut-later",
                 "merged-bad-second", "merged-corrupt-second"]
# a TLS 1.3 tunnel (AES-256-GCM) and a TLS 1.2 one (AES-GCM, explicit nonce)
LANE_SAMPLES = ["dtls-blocked", "client-cert-request"]


def _segment_choice(name: str):
    d = ROOT / "samples" / name
    if not (d / "capture.pcapng").exists():
        pytest.skip(f"no {name} sample")
    mp = pytest.MonkeyPatch()
    try:
        taken, _pipe = _lane_frames(mp, d / "capture.pcapng", d / "keys.log")
    finally:
        mp.undo()
    frames = _frames(d / "capture.pcapng")
    by_number = {f.number: i for i, f in enumerate(frames)}
    data_taken = [by_number[n] for n in taken if _tcp_payload_len(frames[by_number[n]]) > 0]
    # a lane-taken data segment followed by another data segment in the same direction
    for k in data_taken[len(data_taken) // 2:] + data_taken[:len(data_taken) // 2]:
        key = _key(frames[k])
        j = next((i for i in range(k + 1, len(frames))
                  if _key(frames[i]) == key and _tcp_payload_len(frames[i]) > 0), None)
        if j is not None:
            return d, frames, k, j
    pytest.fail(f"{name}: no lane-taken data segment followed by another")


_CHOICES: dict = {}


@pytest.fixture(params=LANE_SAMPLES)
def lane_taken_data_segment(request):
    if request.param not in _CHOICES:
        _CHOICES[request.param] = _segment_choice(request.param)
    return _CHOICES[request.param]


def _key(f: Frame) -> bytes:
    off = _ip_off(f)
    return bytes(f.data[off + 12:off + 24])


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_tcp_lane_gives_the_same_analysis_on_damaged_tunnel_segments(name, lane_taken_data_segment, tmp_path):
    d, frames, k, j = lane_taken_data_segment
    cap = tmp_path / f"{name}.pcap"
    variants = _variants(frames, k, j)
    assert set(variants) == set(VARIANT_NAMES)
    _write_pcap(cap, variants[name])
    slow_doc, slow_inner, slow_pipe = _run(cap, d / "keys.log", fast=False)
    fast_doc, fast_inner, fast_pipe = _run(cap, d / "keys.log", fast=True)
    assert slow_pipe.fast_frames == 0
    assert fast_pipe.fast_frames > 0
    assert fast_doc == slow_doc
    assert fast_inner == slow_inner


def test_tcp_lane_declines_what_it_does_not_mirror(monkeypatch, lane_taken_data_segment, tmp_path):
    """A retransmitted copy, a FIN and a segment ahead of the expected sequence number take the general path."""
    d, frames, k, j = lane_taken_data_segment
    declined: list[int] = []
    orig = TCPTracker.on_lane_segment

    def spy(self, where, data, view, ts, frame):
        ok = orig(self, where, data, view, ts, frame)
        if not ok:
            declined.append(frame)
        return ok

    monkeypatch.setattr(TCPTracker, "on_lane_segment", spy)
    # frames are numbered by their position in the written file (1-based)
    for name, expect in (("retransmitted", k + 2), ("fin", k + 1), ("reordered", k + 1)):
        declined.clear()
        cap = tmp_path / f"{name}.pcap"
        _write_pcap(cap, _variants(frames, k, j)[name])
        _run(cap, d / "keys.log", fast=True)
        assert expect in declined, (name, expect, declined[:20])


# -- re-framed tunnel: CSTP frames that do not map one to one onto TLS records -------------------------------


def _tls13_secrets(keylog: Path) -> list[bytes]:
    out = []
    for line in keylog.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"):
            out.append(bytes.fromhex(parts[2]))
    return out


def _reframed(frames: list[Frame], keylog: Path, direction_key: bytes):
    """The capture with one direction's TLS 1.3 application records re-cut in the middle of the tunnel: two CSTP
    frames in one record (twice), a CSTP frame split over two records (header cut), a padded record; every later
    record of that direction is re-encrypted with its shifted sequence number. Byte counts are kept, so every
    TCP header stays valid. None if the sample does not allow it."""
    from dissectors.tls.ciphers import DecryptError, TLS13Protection, suite_info

    segs = []  # (frame index, payload offset in the frame, payload length, stream offset)
    stream = bytearray()
    nxt = None
    for i, f in enumerate(frames):
        if _key(f) != direction_key:
            continue
        off = _ip_off(f)
        d = f.data
        total = (d[off + 2] << 8) | d[off + 3]
        hl = (d[off + 32] >> 4) << 2
        n = total - 20 - hl
        seq = struct.unpack_from("!I", d, off + 24)[0]
        if d[off + 33] & 0x02:
            nxt = (seq + 1) & 0xFFFFFFFF
            continue
        if n <= 0:
            continue
        if nxt is not None and seq != nxt:
            return None  # retransmission / reordering: keep the test simple
        nxt = (seq + n) & 0xFFFFFFFF
        segs.append((i, off + 20 + hl, n, len(stream)))
        stream += d[off + 20 + hl:off + total]
    records = []  # (offset, header, fragment)
    pos = 0
    while pos + 5 <= len(stream):
        ln = struct.unpack_from("!H", stream, pos + 3)[0]
        if pos + 5 + ln > len(stream):
            break
        records.append((pos, bytes(stream[pos:pos + 5]), bytes(stream[pos + 5:pos + 5 + ln])))
        pos += 5 + ln
    app = [r for r in records if r[1][0] == 23]
    last = app[-1]
    prot = None
    for secret in _tls13_secrets(keylog):  # the key and sequence number of the last record
        for suite in (0x1302, 0x1301, 0x1303):
            p = TLS13Protection(suite_info(suite), secret)
            for s in range(len(records)):
                try:
                    p.decrypt(s, last[1], last[2])
                except DecryptError:
                    continue
                prot, seq_last = p, s
                break
            if prot:
                break
        if prot:
            break
    if prot is None:
        return None
    # the application records under that key, and the first run of 6 CSTP frames from the middle on
    plain = []
    for k in range(seq_last + 1):
        _o, hdr, frag = app[len(app) - 1 - seq_last + k]
        plain.append(prot.decrypt(k, hdr, frag))  # (inner content type, content)
    first = next((k for k in range(len(plain) // 2, len(plain) - 6)
                  if all(ct == 23 and c.startswith(b"STF\x01") for ct, c in plain[k:k + 6])), None)
    if first is None:
        return None
    seq0 = first
    plain = plain[first:]
    first = len(app) - 1 - seq_last + first
    c = [content for _ct, content in plain]
    pad = b"\x00" * 22
    cut = [
        (c[0] + c[1], b""),  # two CSTP frames in one record
        (c[2][:5], b""), (c[2][5:], b""),  # a CSTP frame split over two records, inside its header
        (c[3] + c[4], b""),  # two frames again
        (c[5], pad),  # padding (RFC 8446 §5.4) makes up for the bytes the merges saved
    ] + [(content, b"") for content in c[6:]]
    cts = [23] * 6 + [ct for ct, _c in plain[6:]]
    new = bytearray()
    for k, ((content, padding), ct) in enumerate(zip(cut, cts)):
        inner = content + bytes([ct]) + padding
        hdr = b"\x17\x03\x03" + struct.pack("!H", len(inner) + 16)
        nonce = (prot._iv ^ (seq0 + k)).to_bytes(12, "big")
        new += hdr + prot._aead.encrypt(nonce, inner, hdr)
    start = app[first][0]
    assert len(new) == len(stream) - start, (len(new), len(stream) - start)
    stream[start:] = new
    out = list(frames)
    for i, po, n, so in segs:
        if so + n <= start:
            continue
        d = bytearray(frames[i].data)
        d[po:po + n] = stream[so:so + n]
        out[i] = _with(frames[i], bytes(d))
    return out


@pytest.mark.skipif(not (SAMPLE / "capture.pcapng").exists(), reason="no dtls-blocked sample")
def test_tcp_lane_gives_the_same_analysis_when_cstp_frames_and_records_do_not_match(tmp_path, monkeypatch):
    taken, _pipe = _lane_frames(monkeypatch, SAMPLE / "capture.pcapng", SAMPLE / "keys.log")
    frames = _frames(SAMPLE / "capture.pcapng")
    by_number = {f.number: i for i, f in enumerate(frames)}
    keys = [_key(frames[by_number[n]]) for n in taken if _tcp_payload_len(frames[by_number[n]]) > 0]
    done = 0
    for key in sorted(set(keys), key=keys.count, reverse=True):
        variant = _reframed(frames, SAMPLE / "keys.log", key)
        if variant is None:
            continue
        cap = tmp_path / f"reframed-{done}.pcap"
        _write_pcap(cap, variant)
        slow_doc, slow_inner, slow_pipe = _run(cap, SAMPLE / "keys.log", fast=False)
        fast_doc, fast_inner, fast_pipe = _run(cap, SAMPLE / "keys.log", fast=True)
        assert fast_pipe.fast_frames > 0
        assert fast_doc == slow_doc
        assert fast_inner == slow_inner
        # the re-cut records still carry every CSTP frame: the same DATA frames as the original capture
        assert _cstp_data_frames(fast_pipe) == _cstp_data_frames(_pipe)
        done += 1
    assert done, "no direction of the tunnel could be re-framed"


# -- synthetic tunnels: every kind of record protection -------------------------------------------------------

from tests.tls_sessions import OP_NO_ENCRYPT_THEN_MAC, OPENSSL, generate, pki  # noqa: E402, F401


def _cstp(ptype: int, payload: bytes = b"") -> bytes:
    return b"STF\x01" + struct.pack("!HBB", len(payload), ptype, 0) + payload


def _inner_ipv4(n: int, i: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, n, i & 0xFFFF, 0x4000, 64, 17, 0, b"\x0a\x0a\x00\x02",
                       b"\x0a\x0a\x00\x01") + bytes((i + k) & 0xFF for k in range(n - 20))


def _tunnel_messages() -> list[tuple[str, bytes]]:
    msgs = [("c2s", b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn.example\r\nX-CSTP-MTU: 1300\r\n\r\n"),
            ("s2c", b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1300\r\nX-CSTP-DPD: 30\r\n\r\n")]
    for i in range(60):
        d = "c2s" if i % 3 else "s2c"
        size = 40 + (i * 97) % 1360  # some larger than the MTU
        frame = _cstp(0, _inner_ipv4(size, i))
        if i % 7 == 3:  # two frames in one record
            msgs.append((d, frame + _cstp(0, _inner_ipv4(60, i + 1000))))
        elif i % 11 == 5:  # one frame over two records, cut inside its header and inside its payload
            msgs += [(d, frame[:3]), (d, frame[3:30]), (d, frame[30:])]
        elif i % 13 == 6:
            msgs += [(d, _cstp(3)), ("s2c" if d == "c2s" else "c2s", _cstp(4)), (d, _cstp(7))]
        else:
            msgs.append((d, frame))
    msgs.append(("c2s", _cstp(5, b"\xb0Client disconnected")))
    return msgs


def _tcp_capture(path: Path, chunks: list[tuple[str, bytes]], mss: int = 600) -> None:
    """An Ethernet/IPv4 capture of one TCP connection carrying these (direction, bytes) chunks."""
    ends = {"c2s": (b"\x0a\x00\x00\x01", 40000), "s2c": (b"\x0a\x00\x00\x02", 443)}
    nxt = {"c2s": 1000, "s2c": 500000}
    frames: list[Frame] = []

    def seg(d: str, flags: int, payload: bytes = b"") -> None:
        o = "s2c" if d == "c2s" else "c2s"
        (sa, sp), (da, dp) = ends[d], ends[o]
        tcp = struct.pack("!HHIIBBHHH", sp, dp, nxt[d] & 0xFFFFFFFF, nxt[o] & 0xFFFFFFFF if flags & 0x10 else 0,
                          0x50, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), len(frames), 0x4000, 64, 6, 0, sa, da)
        data = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload
        frames.append(Frame(len(frames) + 1, 1_700_000_000 + len(frames) / 1000, 1, data, len(data), 0))
        nxt[d] += len(payload) + (1 if flags & 0x02 else 0)

    seg("c2s", 0x02)
    seg("s2c", 0x12)
    seg("c2s", 0x10)
    for d, data in chunks:
        for i in range(0, len(data), mss):
            seg(d, 0x18, data[i:i + mss])
        seg("s2c" if d == "c2s" else "c2s", 0x10)  # the receiver's ACK
    _write_pcap(path, frames)


_SUITES = [
    ("tls13-aes256gcm", dict(tls13_suite="TLS_AES_256_GCM_SHA384")),
    ("tls13-chacha20", dict(tls13_suite="TLS_CHACHA20_POLY1305_SHA256")),
    ("tls13-key-update", dict(key_update_after=30)),
    ("tls12-aes128gcm", dict(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")),
    ("tls12-chacha20", dict(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-CHACHA20-POLY1305")),
    ("tls12-cbc-etm", dict(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-SHA256")),
    ("tls12-cbc-mte", dict(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES256-SHA384",
                           options=OP_NO_ENCRYPT_THEN_MAC)),
    ("tls10-cbc", dict(max_version=ssl.TLSVersion.TLSv1, min_version=ssl.TLSVersion.TLSv1,
                       ciphers="ECDHE-RSA-AES128-SHA:@SECLEVEL=0")),
]


@pytest.mark.parametrize("name,kw", _SUITES, ids=[s[0] for s in _SUITES])
def test_tcp_lane_gives_the_same_analysis_for_every_record_protection(name, kw, pki, tmp_path, monkeypatch):
    if ("tls13_suite" in kw or "key_update_after" in kw) and OPENSSL is None:
        pytest.skip("OpenSSL SSL* not reachable through ctypes")
    try:
        s = generate(pki, tmp_path, messages=_tunnel_messages(), **kw)
    except (ssl.SSLError, ValueError, AssertionError) as exc:
        pytest.skip(f"this OpenSSL refuses {name}: {exc}")
    cap = tmp_path / "tunnel.pcap"
    _tcp_capture(cap, s.chunks)
    keylog = tmp_path / "keys.log"
    keylog.write_text(s.keylog)
    slow_doc, slow_inner, slow_pipe = _run(cap, keylog, fast=False)
    taken, fast_pipe = _lane_frames(monkeypatch, cap, keylog)
    fast_doc, fast_inner, _p = _run(cap, keylog, fast=True)
    assert fast_doc == slow_doc
    assert fast_inner == slow_inner
    data = _cstp_data_frames(slow_pipe)
    assert data >= 60  # every DATA frame was decrypted and framed
    assert len(taken) >= data, (len(taken), data)


# -- random damage --------------------------------------------------------------------------------------------


def _damaged(frames: list[Frame], rng, lo: int) -> list[Frame]:
    """A few random drops, duplicates, swaps, byte flips and truncations among frames[lo:]."""
    fr = list(frames)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(lo, len(fr) - 1)
        what = rng.choice(("drop", "dup", "swap", "flip", "cut"))
        if what == "drop":
            del fr[i]
        elif what == "dup":
            fr.insert(rng.randrange(i, min(i + 8, len(fr))), fr[i])
        elif what == "swap":
            j = rng.randrange(i, min(i + 6, len(fr)))
            fr[i], fr[j] = fr[j], fr[i]
        elif what == "flip":
            d = bytearray(fr[i].data)
            k = rng.randrange(14, len(d))
            d[k] ^= 1 << rng.randrange(8)
            fr[i] = _with(fr[i], bytes(d))
        else:
            fr[i] = _with(fr[i], fr[i].data[:rng.randrange(14, len(fr[i].data))])
    return fr


@pytest.mark.skipif(not (SAMPLE / "capture.pcapng").exists(), reason="no dtls-blocked sample")
@pytest.mark.parametrize("seed", range(24))
def test_tcp_lane_gives_the_same_analysis_on_randomly_damaged_tunnels(seed, tmp_path, monkeypatch):
    import random

    rng = random.Random(seed)
    taken, _pipe = _lane_frames(monkeypatch, SAMPLE / "capture.pcapng", SAMPLE / "keys.log")
    frames = _frames(SAMPLE / "capture.pcapng")
    first = min(i for i, f in enumerate(frames) if f.number in set(taken))
    cap = tmp_path / "damaged.pcap"
    _write_pcap(cap, _damaged(frames, rng, first))
    slow_doc, slow_inner, _slow = _run(cap, SAMPLE / "keys.log", fast=False)
    fast_doc, fast_inner, _fast = _run(cap, SAMPLE / "keys.log", fast=True)
    assert fast_doc == slow_doc
    assert fast_inner == slow_inner
