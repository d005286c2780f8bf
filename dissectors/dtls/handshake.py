"""DTLS handshake messages: fragment headers, reassembly, and the hello/key-exchange bodies.

RFC 6347 §4.2.2: every handshake fragment carries a 12-byte header::

    msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)   body[fragment_length]

A message may be split over several records/datagrams and fragments may overlap or repeat
(retransmission).  :class:`Reassembler` rebuilds whole messages with bounded memory.
For the handshake hash (RFC 6347 §4.2.6) each message counts as if sent in one fragment:
header with fragment_offset = 0 and fragment_length = length, see :func:`transcript_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "CERTIFICATE",
    "CERTIFICATE_REQUEST",
    "CERTIFICATE_VERIFY",
    "CLIENT_HELLO",
    "CLIENT_KEY_EXCHANGE",
    "FINISHED",
    "HELLO_REQUEST",
    "HELLO_VERIFY_REQUEST",
    "HS_HEADER_LEN",
    "NEW_SESSION_TICKET",
    "SERVER_HELLO",
    "SERVER_HELLO_DONE",
    "SERVER_KEY_EXCHANGE",
    "Fragment",
    "HandshakeParseError",
    "Message",
    "Reassembler",
    "parse_client_hello",
    "parse_fragments",
    "parse_hello_verify_request",
    "parse_psk_identity",
    "parse_server_hello",
    "transcript_bytes",
]

HS_HEADER_LEN = 12

HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
NEW_SESSION_TICKET = 4
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14
CERTIFICATE_VERIFY = 15
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20

MAX_MESSAGE = 256 * 1024  # larger messages are not reassembled (certificate chains are far smaller)


class HandshakeParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fragment:
    msg_type: int
    length: int
    message_seq: int
    offset: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Message:
    msg_type: int
    message_seq: int
    body: bytes
    frames: tuple[int, ...]


def parse_fragments(data: bytes) -> tuple[list[Fragment], str | None]:
    """Split the plaintext of a handshake record into fragments.  Returns (fragments, error)."""
    out: list[Fragment] = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < HS_HEADER_LEN:
            return out, f"truncated handshake fragment header ({n - pos} bytes)"
        msg_type = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        message_seq = int.from_bytes(data[pos + 4:pos + 6], "big")
        frag_off = int.from_bytes(data[pos + 6:pos + 9], "big")
        frag_len = int.from_bytes(data[pos + 9:pos + 12], "big")
        start = pos + HS_HEADER_LEN
        if start + frag_len > n:
            return out, (f"handshake fragment (type {msg_type}, seq {message_seq}) claims {frag_len} bytes, "
                         f"{n - start} present")
        if frag_off + frag_len > length:
            return out, (f"handshake fragment (type {msg_type}, seq {message_seq}) offset {frag_off} + length "
                         f"{frag_len} exceeds the message length {length}")
        out.append(Fragment(msg_type, length, message_seq, frag_off, bytes(data[start:start + frag_len])))
        pos = start + frag_len
    return out, None


class _Pending:
    __slots__ = ("buf", "frames", "length", "msg_type", "ranges")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buf = bytearray(length)
        self.ranges: list[tuple[int, int]] = []  # sorted, merged [start, end)
        self.frames: list[int] = []

    def add(self, offset: int, body: bytes, frame: int) -> bool:
        end = offset + len(body)
        self.buf[offset:end] = body
        if frame not in self.frames and len(self.frames) < 64:
            self.frames.append(frame)
        merged: list[tuple[int, int]] = []
        new = (offset, end)
        for r in sorted([*self.ranges, new]):
            if merged and r[0] <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], r[1]))
            else:
                merged.append(r)
        self.ranges = merged
        return self.length == 0 or (len(merged) == 1 and merged[0] == (0, self.length))


class Reassembler:
    """Reassembles the handshake messages of one direction.  ``add`` returns a :class:`Message` when a
    fragment completes one (for a message already delivered, the caller decides about retransmission by
    comparing message_seq / body).  Bounded: at most ``max_pending`` incomplete messages."""

    __slots__ = ("_pending", "max_pending")

    def __init__(self, max_pending: int = 16) -> None:
        self._pending: OrderedDict[tuple[int, int, int], _Pending] = OrderedDict()
        self.max_pending = max_pending

    def add(self, frag: Fragment, frame: int) -> Message | str | None:
        """Message when complete, an error string if the fragment cannot be used, else None."""
        if frag.offset == 0 and len(frag.body) == frag.length:
            return Message(frag.msg_type, frag.message_seq, frag.body, (frame,))
        if frag.length > MAX_MESSAGE:
            return f"handshake message of {frag.length} bytes is too large to reassemble"
        key = (frag.message_seq, frag.msg_type, frag.length)
        p = self._pending.get(key)
        if p is None:
            p = _Pending(frag.msg_type, frag.length)
            self._pending[key] = p
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        if p.add(frag.offset, frag.body, frame):
            del self._pending[key]
            return Message(p.msg_type, frag.message_seq, bytes(p.buf), tuple(p.frames))
        return None

    def clear(self) -> None:
        self._pending.clear()


def transcript_bytes(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """The bytes a message contributes to the handshake hash (RFC 6347 §4.2.6): the DTLS handshake
    header as if the message were one fragment, then the body."""
    n = len(body)
    return (bytes([msg_type]) + n.to_bytes(3, "big") + message_seq.to_bytes(2, "big") + b"\x00\x00\x00"
            + n.to_bytes(3, "big") + body)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise HandshakeParseError(f"truncated {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vec(self, len_bytes: int, what: str) -> bytes:
        return self.take(self.uint(len_bytes, what + " length"), what)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def _extensions(r: _Reader) -> tuple[tuple[int, bytes], ...]:
    if r.remaining == 0:
        return ()
    block = _Reader(r.vec(2, "extensions"))
    out = []
    while block.remaining:
        ext_type = block.uint(2, "extension type")
        out.append((ext_type, block.vec(2, "extension data")))
    return tuple(out)


def parse_client_hello(body: bytes) -> dict:
    """RFC 6347 §4.2.1 (ClientHello with the DTLS cookie field)."""
    r = _Reader(body)
    version = r.uint(2, "client_version")
    random = r.take(32, "random")
    session_id = r.vec(1, "session_id")
    if len(session_id) > 32:
        raise HandshakeParseError(f"session_id of {len(session_id)} bytes (max 32)")
    cookie = r.vec(1, "cookie")
    suites_raw = r.vec(2, "cipher_suites")
    if len(suites_raw) % 2:
        raise HandshakeParseError("odd cipher_suites length")
    suites = tuple(int.from_bytes(suites_raw[i:i + 2], "big") for i in range(0, len(suites_raw), 2))
    compression = tuple(r.vec(1, "compression_methods"))
    extensions = _extensions(r)
    return {"version": version, "random": random, "session_id": session_id, "cookie": cookie,
            "cipher_suites": suites, "compression_methods": compression, "extensions": extensions}


def parse_server_hello(body: bytes) -> dict:
    r = _Reader(body)
    version = r.uint(2, "server_version")
    random = r.take(32, "random")
    session_id = r.vec(1, "session_id")
    if len(session_id) > 32:
        raise HandshakeParseError(f"session_id of {len(session_id)} bytes (max 32)")
    suite = r.uint(2, "cipher_suite")
    compression = r.uint(1, "compression_method")
    extensions = _extensions(r)
    return {"version": version, "random": random, "session_id": session_id, "cipher_suite": suite,
            "compression_method": compression, "extensions": extensions}


def parse_hello_verify_request(body: bytes) -> dict:
    r = _Reader(body)
    version = r.uint(2, "server_version")
    cookie = r.vec(1, "cookie")
    return {"version": version, "cookie": cookie}


def parse_psk_identity(body: bytes) -> bytes | None:
    """The psk_identity<0..2^16-1> that starts a PSK / DHE_PSK / ECDHE_PSK ClientKeyExchange
    (RFC 4279 §2-3, RFC 5489 §2); None if the body is not shaped like one."""
    if len(body) < 2:
        return None
    n = int.from_bytes(body[:2], "big")
    if 2 + n > len(body):
        return None
    return bytes(body[2:2 + n])
