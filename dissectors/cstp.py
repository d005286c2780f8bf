"""CSTP framing: the packets that follow ``HTTP/1.1 200 CONNECTED`` on the TLS stream (sans-I/O).

Each CSTP frame is an 8-byte header and a payload (openconnect protocol draft §2.2)::

    53 54 46 01  len_hi len_lo  type  00
    "S  T  F" 1  payload length (big endian, header excluded)  type  reserved

Types (shared with the DTLS channel, where a frame is 1 type byte + payload, §2.3): see
:class:`CSTPType`.  Implementations write one frame per TLS record, but a frame may span records and
a record may hold several frames, so :class:`CSTPFramer` reassembles per direction.  A header with a
wrong magic is reported as a :class:`CSTPError`; the framer then skips to the next ``STF\\x01``.

Also here: :func:`parse_dtls_payload` (DTLS channel framing), :func:`parse_disconnect_reason`
(the text of a DISCONNECT) and :func:`inner_packet_summary` (a glance at the tunnelled IP header).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from dissectors._fastevent import fast_constructor
from dissectors.compress import DEFAULT_MAX_OUTPUT, DecompressionError, decompress, normalize_encoding

__all__ = [
    "CSTP_HEADER_LEN",
    "CSTP_MAGIC",
    "CSTPError",
    "CSTPFrame",
    "CSTPFramer",
    "CSTPType",
    "InnerPacket",
    "build_cstp_frame",
    "decompress_packet",
    "inner_packet_summary",
    "parse_disconnect_reason",
    "parse_dtls_payload",
]

CSTP_MAGIC = b"STF\x01"
CSTP_HEADER_LEN = 8
_HEADER = struct.Struct("!4sHBB")  # magic, payload length, type, reserved
_HEADER_INT = struct.Struct("!IHBB")  # the same, the magic as a number (take_frame: no bytes object made)
_MAGIC_INT = int.from_bytes(CSTP_MAGIC, "big")


class CSTPType(enum.IntEnum):
    """Payload types of CSTP frames and DTLS channel packets."""

    DATA = 0x00
    DPD_REQ = 0x03
    DPD_RESP = 0x04
    DISCONNECT = 0x05
    KEEPALIVE = 0x07
    COMPRESSED_DATA = 0x08
    TERMINATE = 0x09


DATA = CSTPType.DATA
DPD_REQ = CSTPType.DPD_REQ
DPD_RESP = CSTPType.DPD_RESP
DISCONNECT = CSTPType.DISCONNECT
KEEPALIVE = CSTPType.KEEPALIVE
COMPRESSED_DATA = CSTPType.COMPRESSED_DATA
TERMINATE = CSTPType.TERMINATE


_TYPE_BY_VALUE = {int(t): t for t in CSTPType}


def _as_type(value: int) -> CSTPType | int:
    return _TYPE_BY_VALUE.get(value, value)


@dataclass(frozen=True, slots=True)
class CSTPFrame:
    """One complete CSTP frame.

    ``ts``/``frame`` are those of the capture frame that completed it (normally the only one);
    ``first_frame`` is where its header began.  ``type`` is a :class:`CSTPType`, or the raw int for
    an unknown type.  ``packet`` is the tunnelled IP packet: the payload of a DATA frame, the
    decompressed payload of a COMPRESSED DATA frame when the encoding is known and the data sound,
    else None.
    """

    direction: str
    type: CSTPType | int
    payload: bytes
    ts: float
    frame: int
    first_frame: int
    packet: bytes | None = None


@dataclass(frozen=True, slots=True)
class CSTPError:
    """Something in the CSTP byte stream that is not a well-formed frame."""

    direction: str
    message: str
    ts: float
    frame: int


_new_frame = fast_constructor(CSTPFrame)  # per-frame events without frozen-dataclass stores


def build_cstp_frame(ptype: int, payload: bytes = b"") -> bytes:
    """Encode one CSTP frame (used by tests and replay)."""
    if len(payload) > 0xFFFF:
        raise ValueError("CSTP payload longer than 65535 bytes")
    return _HEADER.pack(CSTP_MAGIC, len(payload), ptype, 0) + bytes(payload)


class _Direction:
    """Reassembly state of one direction."""

    __slots__ = ("buf", "closed", "last_frame", "last_ts", "marks", "offset", "resyncing")

    def __init__(self) -> None:
        self.buf = bytearray()
        # (stream offset of the first byte of a feed, ts, frame): where each buffered byte came from
        self.marks: list[tuple[int, float, int]] = []
        self.offset = 0  # stream offset of buf[0]
        self.resyncing = False
        self.closed = False
        self.last_ts = 0.0
        self.last_frame = 0

    def origin(self, offset: int) -> tuple[float, int]:
        found = self.marks[0] if self.marks else (0, self.last_ts, self.last_frame)
        for mark in self.marks:
            if mark[0] > offset:
                break
            found = mark
        return found[1], found[2]

    def consume(self, n: int) -> None:
        del self.buf[:n]
        self.offset += n
        # keep the last mark at or before the new start
        marks = self.marks
        k = 0
        while k + 1 < len(marks) and marks[k + 1][0] <= self.offset:
            k += 1
        if k:
            del marks[:k]


class CSTPFramer:
    """Reassembles CSTP frames from both directions of one decrypted TLS stream.

    ``encoding`` is the negotiated ``X-CSTP-Content-Encoding`` (``lzs``, ``oc-lz4``…) used to expand
    COMPRESSED DATA frames; :meth:`set_encoding` changes it.
    """

    def __init__(self, encoding: str | None = None, max_decompressed: int = DEFAULT_MAX_OUTPUT) -> None:
        self._dirs = {"c2s": _Direction(), "s2c": _Direction()}
        self._encoding = encoding
        self._max_decompressed = max_decompressed
        self.skipped_bytes = {"c2s": 0, "s2c": 0}

    @property
    def encoding(self) -> str | None:
        return self._encoding

    def set_encoding(self, encoding: str | None) -> None:
        self._encoding = encoding

    def take_frame(self, direction: str, data: bytes, ts: float, frame: int) -> int | None:
        """`feed` for the common case: ``data`` is exactly one whole frame, not COMPRESSED DATA, and nothing is
        buffered. Consumes it as `feed` would and returns its type without making the CSTPFrame (its payload is
        ``data[CSTP_HEADER_LEN:]``: the caller slices it where it needs it); None for anything else, having changed
        nothing: `feed` the data."""
        st = self._dirs[direction]
        size = len(data)
        if size < CSTP_HEADER_LEN or st.buf or st.resyncing or st.closed:
            return None
        magic, length, ptype, reserved = _HEADER_INT.unpack_from(data)
        if magic != _MAGIC_INT or length + CSTP_HEADER_LEN != size or reserved or ptype == COMPRESSED_DATA:
            return None
        st.last_ts = ts
        st.last_frame = frame
        start = st.offset
        st.offset = start + size
        st.marks = [(start, ts, frame)]  # what _drain and consume leave behind
        return ptype

    def feed(self, direction: str, data: bytes, ts: float, frame: int) -> list[CSTPFrame | CSTPError]:
        ptype = self.take_frame(direction, data, ts, frame)
        if ptype is not None:
            payload = data[CSTP_HEADER_LEN:]
            return self._make_frame(direction, ptype, payload if payload.__class__ is bytes else bytes(payload), ts,
                                    frame, frame)
        st = self._dirs[direction]
        st.last_ts, st.last_frame = ts, frame
        if st.closed:
            return [] if not data else [CSTPError(direction, "data after close", ts, frame)]
        if not data:
            return []
        st.marks.append((st.offset + len(st.buf), ts, frame))
        st.buf += data
        return self._drain(direction, st, ts, frame)

    def close(self, direction: str | None = None, ts: float | None = None,
              frame: int | None = None) -> list[CSTPFrame | CSTPError]:
        """End of one direction (or both): report a partial frame left in the buffer."""
        events: list[CSTPFrame | CSTPError] = []
        for d in ((direction,) if direction else ("c2s", "s2c")):
            st = self._dirs[d]
            if st.closed:
                continue
            st.closed = True
            ets = st.last_ts if ts is None else ts
            efr = st.last_frame if frame is None else frame
            if st.buf and not st.resyncing:
                events.append(CSTPError(d, f"stream ended inside a CSTP frame ({len(st.buf)} bytes left)",
                                        ets, efr))
            elif st.buf:
                self.skipped_bytes[d] += len(st.buf)
            st.buf.clear()
            st.marks.clear()
        return events

    # -- internals -------------------------------------------------------------------------------
    def _drain(self, direction: str, st: _Direction, ts: float, frame: int) -> list[CSTPFrame | CSTPError]:
        events: list[CSTPFrame | CSTPError] = []
        buf = st.buf
        while True:
            if st.resyncing:
                idx = buf.find(CSTP_MAGIC)
                if idx < 0:
                    # keep a possible partial magic at the end
                    drop = max(0, len(buf) - (len(CSTP_MAGIC) - 1))
                    self.skipped_bytes[direction] += drop
                    st.consume(drop)
                    return events
                self.skipped_bytes[direction] += idx
                st.consume(idx)
                st.resyncing = False
            if len(buf) < len(CSTP_MAGIC):
                return events
            if buf[:4] != CSTP_MAGIC:
                ets, efr = st.origin(st.offset)
                events.append(CSTPError(
                    direction,
                    f"bad CSTP magic {bytes(buf[:4]).hex()} at stream offset {st.offset}; "
                    "skipping to the next STF\\x01",
                    ets, efr))
                st.resyncing = True
                self.skipped_bytes[direction] += 1
                st.consume(1)
                continue
            if len(buf) < CSTP_HEADER_LEN:
                return events
            _, length, ptype, reserved = _HEADER.unpack_from(buf)
            total = CSTP_HEADER_LEN + length
            if len(buf) < total:
                return events
            payload = bytes(buf[CSTP_HEADER_LEN:total])
            _, first_frame = st.origin(st.offset)
            if reserved != 0:
                events.append(CSTPError(direction, f"CSTP header reserved byte is 0x{reserved:02x}, not 0",
                                        ts, frame))
            events.extend(self._make_frame(direction, ptype, payload, ts, frame, first_frame))
            st.consume(total)

    def _make_frame(self, direction: str, ptype: int, payload: bytes, ts: float, frame: int,
                    first_frame: int) -> list[CSTPFrame | CSTPError]:
        if ptype == 0:  # DATA
            return [_new_frame(direction, DATA, payload, ts, frame, first_frame, payload)]
        if ptype == 8:  # COMPRESSED DATA
            packet, err = decompress_packet(self._encoding, payload, self._max_decompressed)
            ev = _new_frame(direction, COMPRESSED_DATA, payload, ts, frame, first_frame, packet)
            return [ev, CSTPError(direction, err, ts, frame)] if err else [ev]
        return [_new_frame(direction, _TYPE_BY_VALUE.get(ptype, ptype), payload, ts, frame, first_frame, None)]


def decompress_packet(encoding: str | None, payload: bytes,
                      max_output: int = DEFAULT_MAX_OUTPUT) -> tuple[bytes | None, str | None]:
    """Expand a COMPRESSED DATA payload: ``(packet, None)`` or ``(None, error message)``."""
    if normalize_encoding(encoding) is None:
        if encoding:
            return None, f"COMPRESSED DATA with unsupported encoding {encoding!r}"
        return None, "COMPRESSED DATA but no content encoding was negotiated"
    try:
        return decompress(encoding or "", payload, max_output), None
    except DecompressionError as exc:
        return None, f"cannot decompress COMPRESSED DATA ({encoding}): {exc}"


def parse_dtls_payload(data: bytes) -> tuple[CSTPType | int, bytes] | None:
    """Split the plaintext of one DTLS channel record into (type, payload); None if empty."""
    if not data:
        return None
    return _as_type(data[0]), bytes(data[1:])


def parse_disconnect_reason(payload: bytes) -> str:
    """The human-readable reason in a DISCONNECT (or TERMINATE) payload.

    openconnect sends the byte 0xb0 followed by the reason text; other senders' leading non-text
    byte is dropped likewise.  Decoding is lenient (invalid UTF-8 becomes U+FFFD), NULs are trimmed.
    """
    data = bytes(payload)
    if data and (data[0] < 0x20 or data[0] >= 0x80) and data[0] not in (0x09, 0x0A, 0x0D):
        data = data[1:]
    return data.decode("utf-8", errors="replace").strip("\x00").strip()


class InnerPacket(NamedTuple):
    """A glance at a tunnelled IP packet header.

    ``length`` is the total length the header claims; ``df`` is the IPv4 Don't Fragment bit, and
    True for IPv6 (routers never fragment IPv6).  ``proto`` is the IPv4 protocol or the IPv6 upper
    layer after the common extension headers.
    """

    ip_version: int
    src: str
    dst: str
    proto: int
    length: int
    df: bool


_IPV6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options: (next, hdr ext len in 8-octets)
_IPV6_FRAGMENT = 44


def inner_packet_summary(payload: bytes) -> InnerPacket | None:
    """Parse the IPv4/IPv6 header at the start of ``payload``; None if it is not one."""
    data = bytes(payload)
    if not data:
        return None
    version = data[0] >> 4
    if version == 4:
        if len(data) < 20 or (data[0] & 0x0F) < 5:
            return None
        total_len, flags_frag, proto = struct.unpack_from("!2xH2xH1xB", data, 0)
        src = str(ipaddress.IPv4Address(data[12:16]))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        return InnerPacket(4, src, dst, proto, total_len, bool(flags_frag & 0x4000))
    if version == 6:
        if len(data) < 40:
            return None
        payload_len, next_header = struct.unpack_from("!4xHB", data, 0)
        src = str(ipaddress.IPv6Address(data[8:24]))
        dst = str(ipaddress.IPv6Address(data[24:40]))
        pos = 40
        for _ in range(8):  # bounded walk over extension headers
            if next_header in _IPV6_EXT and pos + 2 <= len(data):
                next_header, ext_len = data[pos], data[pos + 1]
                pos += (ext_len + 1) * 8
            elif next_header == _IPV6_FRAGMENT and pos + 8 <= len(data):
                next_header = data[pos]
                pos += 8
            else:
                break
        return InnerPacket(6, src, dst, next_header, payload_len + 40, True)
    return None
