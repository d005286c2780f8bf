"""HTTP/1.1 over one decrypted TLS connection, both directions, then CSTP after CONNECT (sans-I/O).

Theory of operation
-------------------
:class:`HTTPStream` is fed the decrypted bytes of both directions of one TLS connection, in capture
order: ``"c2s"`` carries requests, ``"s2c"`` responses.  Each direction has its own reader, a small
state machine::

    START ──start line──► HEADERS ──empty line──► body (LENGTH | CHUNK_SIZE⇄CHUNK_DATA→TRAILERS | EOF)
      ▲                                                         │
      └──────────────────────── message complete ◄──────────────┘

Responses are paired with requests in order (HTTP/1.1 pipelining); the request method decides
whether a response has a body (HEAD, CONNECT) and 1xx/204/304 never do (RFC 9112 §6.3).  A response
without Content-Length or chunked coding ends when the server closes: call :meth:`HTTPStream.close`.

``CONNECT`` (the AnyConnect ``CONNECT /CSCOSSLC/tunnel``) holds the client direction in ``HOLD``
until its response is seen: a 2xx (``HTTP/1.1 200 CONNECTED``) emits :class:`TunnelEstablished` and
from then on the bytes of both directions are CSTP, handed to a :class:`~dissectors.cstp.CSTPFramer`
whose events come out of the same :meth:`HTTPStream.feed`; any other status resumes HTTP.

Every bound is enforced while reading, never after buffering: the header section (start line
included) is limited to ``max_header_bytes`` and ``max_headers`` lines, a body to ``max_body``, data
held after CONNECT to ``max_pending``.  Crossing one emits an :class:`HTTPError` naming the bound,
then the reader keeps framing the message (it keeps only the headers it needs for that:
Content-Length, Transfer-Encoding, Connection) and marks the event ``headers_truncated`` or
``body_truncated``.  A start line that does not parse is reported and the reader skips lines until
one does.

Whatever part of a body is kept, every event says how long the whole body was (``body_length``)
and gives its SHA-1 (``body_sha1``), computed as the bytes arrive.  The answer to a GET (the VPN
downloader's files: profiles, and client packages of tens of megabytes) keeps only its first
``max_download_body`` bytes: its length and digest are what the analysis needs of it, so cutting
it is no error (``body_truncated`` says it was cut).

Events carry ``ts``/``frame`` of the capture frame that delivered the message's first byte and
``end_frame`` of the one that delivered its last byte.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from dissectors.cstp import CSTPError, CSTPFrame, CSTPFramer

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_DOWNLOAD_BODY",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_PENDING",
    "NO_HEADERS",
    "hands_out_tunnel",
    "HTTPError",
    "HTTPEvent",
    "HTTPStream",
    "Headers",
    "Request",
    "Response",
    "TunnelEstablished",
]

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 1000
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: bytes kept of the body of an answer to a GET (its length and SHA-1 always cover the whole body)
DEFAULT_MAX_DOWNLOAD_BODY = 1024 * 1024
DEFAULT_MAX_PENDING = 1024 * 1024

#: Headers still kept after a header bound was crossed: those needed to frame the message.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_MAX_KEPT_FRAMING = 16
#: Malformed header lines reported per message before the rest are only counted.
_MAX_LINE_ERRORS = 5

_EMPTY_SHA1 = hashlib.sha1(b"").hexdigest()

_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION_RE = re.compile(rb"^HTTP/[0-9]\.[0-9]$")
_STATUS_RE = re.compile(rb"^[0-9]{3}$")
_HEX_RE = re.compile(rb"^[0-9A-Fa-f]{1,16}$")


class Headers(tuple):
    """An ordered tuple of ``(name, value)`` string pairs with case-insensitive lookup.

    It is a plain tuple (``headers[0] == ("Host", "vpn.example")``), so it compares, hashes and
    prints like one; :meth:`get` and :meth:`get_all` search names case-insensitively.
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[tuple[str, str]] = ()) -> Self:
        return super().__new__(cls, ((str(n), str(v)) for n, v in items))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first header called ``name`` (any case), else ``default``."""
        key = name.lower()
        size = len(key)
        for n, v in self:
            if len(n) == size and n.lower() == key:  # the length first: most names differ in it (CONNECT: ~30)
                return v
        return default

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (any case), in order."""
        key = name.lower()
        return tuple(v for n, v in self if n.lower() == key)

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(n.lower() == key for n, _ in self)

    def tokens(self, name: str) -> tuple[str, ...]:
        """The comma-separated list elements of every ``name`` header, lower-cased and stripped."""
        return tuple(t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip())

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


#: The (immutable, shared) empty header list.
NO_HEADERS = Headers()


def hands_out_tunnel(headers) -> bool:
    """The headers (name, value pairs) carry X-CSTP-* fields: a CONNECT's answer handing out the tunnel."""
    return any(k.lower().startswith("x-cstp-") for k, _ in headers)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: Headers
    body: bytes
    ts: float
    frame: int
    end_frame: int
    trailers: Headers = NO_HEADERS
    headers_truncated: bool = False
    body_truncated: bool = False
    #: the whole body's length and SHA-1 (hex), however much of it ``body`` keeps
    body_length: int = 0
    body_sha1: str = _EMPTY_SHA1
    #: False when the message ended before its body did (the stream ended inside it, or its framing broke)
    body_complete: bool = True


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    version: str
    headers: Headers
    body: bytes
    request_method: str | None
    ts: float
    frame: int
    end_frame: int
    trailers: Headers = NO_HEADERS
    headers_truncated: bool = False
    body_truncated: bool = False
    #: the whole body's length and SHA-1 (hex), however much of it ``body`` keeps (an answer to a GET keeps at
    #: most ``max_download_body`` bytes)
    body_length: int = 0
    body_sha1: str = _EMPTY_SHA1
    #: False when the message ended before its body did (the stream ended inside it, or its framing broke)
    body_complete: bool = True


@dataclass(frozen=True, slots=True)
class HTTPError:
    """Input that is not well-formed HTTP, or a bound crossed.

    ``kind`` is ``"malformed"``, the name of the bound (``"max_header_bytes"``, ``"max_headers"``,
    ``"max_body"``, ``"max_pending"``), ``"truncated"`` (stream ended inside a message) or
    ``"after-close"``.
    """

    direction: str
    message: str
    ts: float
    frame: int
    kind: str = "malformed"


@dataclass(frozen=True, slots=True)
class TunnelEstablished:
    """A CONNECT was answered 2xx: from here on the stream carries CSTP frames."""

    ts: float
    frame: int


HTTPEvent = Request | Response | HTTPError | TunnelEstablished | CSTPFrame | CSTPError

# Reader states
_START = "start"
_RESYNC = "resync"
_HEADERS = "headers"
_LENGTH = "length"
_CHUNK_SIZE = "chunk-size"
_CHUNK_DATA = "chunk-data"
_CHUNK_END = "chunk-end"
_TRAILERS = "trailers"
_EOF = "until-close"
_HOLD = "hold"
_TUNNEL = "tunnel"
_OPAQUE = "opaque"
_CLOSED = "closed"

# The CONNECT hand-off (h11-style: one table instead of flags): the states of the exchange, the events that move
# it, and the state each event sends the client's reader to (its CONNECT request may be read before or after the
# answer: pipelined bytes after CONNECT are held until the answer says whether they are CSTP or HTTP).
_IDLE, _WAITING, _TUNNELLED, _REFUSED = "idle", "waiting", "tunnel", "refused"
_CONNECT_SENT = "CONNECT request headers read"
_ANSWERED_2XX = "CONNECT answered 2xx"
_ANSWERED_OTHER = "CONNECT answered otherwise"
_CONNECT_READ = "CONNECT request complete"
_CONNECT_TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {}
for _state in (_IDLE, _WAITING, _TUNNELLED, _REFUSED):
    _CONNECT_TRANSITIONS[(_state, _CONNECT_SENT)] = (_WAITING, _HOLD)
    _CONNECT_TRANSITIONS[(_state, _ANSWERED_2XX)] = (_TUNNELLED, _TUNNEL)
    _CONNECT_TRANSITIONS[(_state, _ANSWERED_OTHER)] = (_REFUSED, _START)
_CONNECT_TRANSITIONS.update({
    (_IDLE, _CONNECT_READ): (_IDLE, _HOLD),
    (_WAITING, _CONNECT_READ): (_WAITING, _HOLD),  # no answer yet: hold what follows
    (_TUNNELLED, _CONNECT_READ): (_TUNNELLED, _TUNNEL),  # answered 2xx first: what follows is CSTP
    (_REFUSED, _CONNECT_READ): (_IDLE, _START),  # refused: what follows is HTTP again
})

_NEED = object()
_OVERLONG = object()


class _Side:
    """Buffer and message-in-progress state of one direction."""

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.is_request = direction == "c2s"
        self.state = _START
        self.buf = bytearray()
        self.offset = 0  # stream offset of buf[0]
        self.marks: list[tuple[int, float, int]] = []  # (stream offset, ts, frame) of each feed
        self.scan_from = 0
        self.discarding = False  # inside an over-long line being dropped
        self.last_ts = 0.0
        self.last_frame = 0
        self.after_close_reported = False
        self.pending_overflow = False
        self.reset_message()

    def reset_message(self) -> None:
        self.start: tuple[float, int] = (0.0, 0)
        self.line: tuple[str, str, str] = ("", "", "")
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.header_count = 0
        self.kept_framing = 0
        self.bytes_overflow = False
        self.count_overflow = False
        self.headers_truncated = False
        self.line_errors = 0
        self.body = bytearray()
        self.body_truncated = False
        self.body_length = 0  # every body byte, kept or not
        self.body_hash = None  # hashlib.sha1 of them, from the first one
        self.body_incomplete = False  # the message ended before its body did
        self.remaining = 0
        self.request_method: str | None = None
        self.after_body = _START

    # -- byte bookkeeping ------------------------------------------------------------------------
    def append(self, data: bytes, ts: float, frame: int) -> None:
        self.marks.append((self.offset + len(self.buf), ts, frame))
        self.buf += data

    def origin(self, offset: int) -> tuple[float, int]:
        """ts and frame of the feed that delivered the byte at stream ``offset``."""
        found = (offset, self.last_ts, self.last_frame)
        for mark in self.marks:
            if mark[0] > offset:
                break
            found = mark
        return found[1], found[2]

    def consume(self, n: int) -> None:
        if n <= 0:
            return
        del self.buf[:n]
        self.offset += n
        self.scan_from = 0
        keep_from = self.offset - 1  # keep the mark of the last consumed byte (for end_frame)
        marks = self.marks
        k = 0
        while k + 1 < len(marks) and marks[k + 1][0] <= keep_from:
            k += 1
        if k:
            del marks[:k]

    def take_segments(self) -> list[tuple[bytes, float, int]]:
        """Remove the whole buffer, split by the feed it came from."""
        segments = []
        end = self.offset + len(self.buf)
        for i, (start, ts, frame) in enumerate(self.marks):
            seg_end = self.marks[i + 1][0] if i + 1 < len(self.marks) else end
            lo, hi = max(start, self.offset), min(seg_end, end)
            if hi > lo:
                segments.append((bytes(self.buf[lo - self.offset:hi - self.offset]), ts, frame))
        self.consume(len(self.buf))
        return segments

    def read_line(self, budget: int) -> bytes | object:
        """One line (with its LF), ``_NEED`` or ``_OVERLONG`` (reported once, then dropped)."""
        buf = self.buf
        if self.discarding:
            idx = buf.find(b"\n")
            if idx < 0:
                self.consume(len(buf))
                return _NEED
            self.consume(idx + 1)
            self.discarding = False
        idx = buf.find(b"\n", self.scan_from)
        if idx < 0:
            if len(buf) > budget:
                self.consume(len(buf))
                self.discarding = True
                return _OVERLONG
            self.scan_from = len(buf)
            return _NEED
        if idx + 1 > budget:
            self.consume(idx + 1)
            return _OVERLONG
        line = bytes(buf[:idx + 1])
        self.consume(idx + 1)
        return line


def _decimal(text: str) -> int | None:
    """A Content-Length value: ASCII digits only (``str.isdigit`` also accepts '²', which ``int`` refuses), and
    no 4300-digit conversion error — a claim beyond 2**64 is kept as 2**64 (the body bound applies anyway)."""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else 1 << 64


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _parse_request_line(line: bytes) -> tuple[str, str, str] | None:
    parts = line.split()
    if len(parts) != 3:
        return None
    method, target, version = parts
    if not _TOKEN_RE.match(method) or not _VERSION_RE.match(version):
        return None
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii")


def _parse_status_line(line: bytes) -> tuple[str, str, str] | None:
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        return None
    version, status = parts[0], parts[1].strip()
    if not _VERSION_RE.match(version) or not _STATUS_RE.match(status):
        return None
    reason = parts[2].strip() if len(parts) == 3 else b""
    return version.decode("ascii"), status.decode("ascii"), reason.decode("latin-1")


class HTTPStream:
    """Parses the two directions of one decrypted TLS connection into HTTP (then CSTP) events."""

    def __init__(self, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
                 max_headers: int = DEFAULT_MAX_HEADERS, max_body: int = DEFAULT_MAX_BODY,
                 max_pending: int = DEFAULT_MAX_PENDING, framer: CSTPFramer | None = None,
                 max_download_body: int | None = None) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        # (None: the module's DEFAULT_MAX_DOWNLOAD_BODY as it is now)
        self.max_download_body = min(DEFAULT_MAX_DOWNLOAD_BODY if max_download_body is None else max_download_body,
                                     max_body)
        self.max_pending = max_pending
        self._sides = {"c2s": _Side("c2s"), "s2c": _Side("s2c")}
        self._pending: deque[str] = deque(maxlen=1024)  # methods of requests awaiting a final response
        self._connect = _IDLE  # the CONNECT hand-off state: see _CONNECT_TRANSITIONS
        self._resume_c2s = False
        self._framer = framer
        self.tunnel = False
        self._lost_answers = False  # the server's side lost bytes since its last answer (`gap`)

    @property
    def framer(self) -> CSTPFramer | None:
        """The CSTP framer, once the tunnel is up."""
        return self._framer

    # -- public ----------------------------------------------------------------------------------
    def feed(self, direction: str, data: bytes, ts: float, frame: int) -> list[HTTPEvent]:
        side = self._sides[direction]
        side.last_ts, side.last_frame = ts, frame
        if not data:
            return []
        if side.state == _CLOSED:
            if side.after_close_reported:
                return []
            side.after_close_reported = True
            return [HTTPError(direction, f"{len(data)} bytes after the stream was closed", ts, frame,
                              "after-close")]
        if side.state == _TUNNEL:
            return list(self._framer_feed(direction, data, ts, frame))
        if side.state == _OPAQUE:
            return []
        events: list[HTTPEvent] = []
        if side.state == _HOLD:
            room = self.max_pending - len(side.buf)
            if len(data) > room:
                if not side.pending_overflow:
                    side.pending_overflow = True
                    events.append(HTTPError(
                        direction, f"more than max_pending={self.max_pending} bytes sent before the "
                        "CONNECT was answered; the excess is dropped", ts, frame, "max_pending"))
                data = data[:max(room, 0)]
                if not data:
                    return events
        side.append(data, ts, frame)
        events.extend(self._advance(side))
        return events

    def gap(self, direction: str) -> bool:
        """Bytes of ``direction`` were lost (the capture missed the TLS records that held them): the message being
        read is dropped and the next one is looked for from the next start line — between messages or in a start
        line or headers; in a body the reading goes on as before (the body comes out short or mixed, which the
        caller tells from the capture's gaps). A lost stretch of the server's side between answers may have held
        whole answers: the next answer read then answers the last request still waiting, not the first (clients
        send a request once the previous one is answered: `_lost_answers`). The tunnel's CSTP framing is left to
        the framer (it finds the next frame by its header). True when the reading starts over."""
        side = self._sides[direction]
        if side.state not in (_START, _RESYNC, _HEADERS):
            # a body under way (its bytes counted on: the hole leaves it short, which its reader reports), the
            # tunnel, or nothing more to read
            return False
        side.consume(len(side.buf))
        side.discarding = False
        side.reset_message()
        side.state = _RESYNC
        if direction == "s2c":
            self._lost_answers = True
        return True

    def tunnel_framer(self, direction: str) -> CSTPFramer | None:
        """The CSTP framer that reads ``direction`` once the tunnel carries it (None before). From then on `feed`
        hands every byte of that direction to it and nothing else, and `close` closes that direction of it (the
        framer then declines every frame itself): a caller may give it one whole frame (`CSTPFramer.take_frame`,
        the common case) instead of feeding this stream, and `feed` what it declines. (The side's own time is then
        behind, but it is read only at `close`, for a frame the framer holds, which came through `feed`.)"""
        return self._framer if self._sides[direction].state == _TUNNEL else None

    def close(self, direction: str | None = None, ts: float | None = None,
              frame: int | None = None) -> list[HTTPEvent]:
        """The stream of ``direction`` (or both) ended: finish or report what was in progress."""
        events: list[HTTPEvent] = []
        for d in ((direction,) if direction else ("c2s", "s2c")):
            side = self._sides[d]
            if ts is not None:
                side.last_ts = ts
            if frame is not None:
                side.last_frame = frame
            events.extend(self._close_side(side))
        return events

    # -- driving the readers -----------------------------------------------------------------------
    def _framer_feed(self, direction: str, data: bytes, ts: float, frame: int):
        if self._framer is None:
            self._framer = CSTPFramer()
        return self._framer.feed(direction, data, ts, frame)

    def _error(self, side: _Side, message: str, kind: str = "malformed",
               at: tuple[float, int] | None = None) -> HTTPError:
        ts, frame = at if at is not None else (side.last_ts, side.last_frame)
        return HTTPError(side.direction, message, ts, frame, kind)

    def _advance(self, side: _Side) -> list[HTTPEvent]:
        events: list[HTTPEvent] = []
        while side.buf:
            state = side.state
            if state in (_START, _RESYNC):
                if not self._read_start_line(side, events):
                    break
            elif state in (_HEADERS, _TRAILERS):
                if not self._read_header_line(side, events):
                    break
            elif state in (_LENGTH, _CHUNK_DATA):
                n = min(len(side.buf), side.remaining)
                self._add_body(side, side.buf[:n], events)
                side.consume(n)
                side.remaining -= n
                if side.remaining == 0:
                    if state == _LENGTH:
                        self._finish(side, events)
                    else:
                        side.state = _CHUNK_END
            elif state in (_CHUNK_SIZE, _CHUNK_END):
                if not self._read_chunk_line(side, events):
                    break
            elif state == _EOF:
                self._add_body(side, side.buf, events)
                side.consume(len(side.buf))
            elif state == _TUNNEL:
                for data, ts, frame in side.take_segments():
                    events.extend(self._framer_feed(side.direction, data, ts, frame))
            elif state == _OPAQUE:
                side.consume(len(side.buf))
            else:  # _HOLD, _CLOSED
                break
        return events

    def _read_start_line(self, side: _Side, events: list[HTTPEvent]) -> bool:
        line_origin = side.origin(side.offset)  # before read_line consumes (and forgets) it
        line = side.read_line(self.max_header_bytes)
        if line is _NEED:
            return False
        if line is _OVERLONG:
            if side.state == _START:
                events.append(self._error(
                    side, f"start line longer than max_header_bytes={self.max_header_bytes}; "
                    "skipping to the next message", "max_header_bytes", line_origin))
                side.state = _RESYNC
            return True
        text = _strip_eol(line)
        if not text.strip():
            return True  # empty lines between messages are ignored (RFC 9112 §2.2)
        parsed = (_parse_request_line if side.is_request else _parse_status_line)(text)
        if parsed is None:
            if side.state == _START:
                what = "request line" if side.is_request else "status line"
                events.append(self._error(side, f"malformed {what} {text[:64]!r}; skipping to the next "
                                          "message", "malformed", line_origin))
                side.state = _RESYNC
            return True
        side.reset_message()
        side.start = line_origin
        side.line = parsed
        side.header_bytes = len(line)
        side.state = _HEADERS
        return True

    def _read_header_line(self, side: _Side, events: list[HTTPEvent]) -> bool:
        trailers = side.state == _TRAILERS
        overflow = side.bytes_overflow or side.count_overflow
        budget = self.max_header_bytes if overflow else self.max_header_bytes - side.header_bytes
        line = side.read_line(max(budget, 0))
        if line is _NEED:
            return False
        where = "trailer section" if trailers else "header section"
        if line is _OVERLONG:
            side.headers_truncated = True
            if not side.bytes_overflow:
                side.bytes_overflow = True
                events.append(self._error(
                    side, f"{where} longer than max_header_bytes={self.max_header_bytes}; "
                    "further headers dropped", "max_header_bytes"))
            return True
        side.header_bytes += len(line)
        text = _strip_eol(line)
        target = side.trailers if trailers else side.headers
        if not text:
            if trailers:
                self._finish(side, events)
            else:
                self._headers_complete(side, events)
            return True
        if text[:1] in (b" ", b"\t"):  # obsolete line folding: continue the previous value
            if target and not overflow:
                name, value = target[-1]
                target[-1] = (name, (value + " " + text.strip().decode("latin-1")).strip())
            elif not target:
                self._line_error(side, events, f"continuation line without a header: {text[:64]!r}")
            return True
        name, sep, value = text.partition(b":")
        name = name.rstrip(b" \t")
        if not sep or not _TOKEN_RE.match(name):
            self._line_error(side, events, f"malformed header line {text[:64]!r}")
            return True
        side.header_count += 1
        if side.header_count > self.max_headers and not side.count_overflow:
            side.count_overflow = True
            side.headers_truncated = True
            events.append(self._error(
                side, f"more than max_headers={self.max_headers} lines in the {where}; "
                "further headers dropped", "max_headers"))
        pair = (name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
        if not (side.bytes_overflow or side.count_overflow):
            target.append(pair)
        elif pair[0].lower() in _FRAMING_HEADERS and side.kept_framing < _MAX_KEPT_FRAMING:
            side.kept_framing += 1
            target.append(pair)
        return True

    def _line_error(self, side: _Side, events: list[HTTPEvent], message: str) -> None:
        side.line_errors += 1
        if side.line_errors <= _MAX_LINE_ERRORS:
            events.append(self._error(side, message))
        elif side.line_errors == _MAX_LINE_ERRORS + 1:
            events.append(self._error(side, "further malformed header lines in this message not reported"))

    def _read_chunk_line(self, side: _Side, events: list[HTTPEvent]) -> bool:
        state = side.state
        line = side.read_line(self.max_header_bytes)
        if line is _NEED:
            return False
        if line is _OVERLONG:
            self._abort_body(side, events, f"chunk line longer than max_header_bytes={self.max_header_bytes}",
                             "max_header_bytes")
            return True
        text = _strip_eol(line)
        if state == _CHUNK_END:
            side.state = _CHUNK_SIZE
            if not text:
                return True
            # lenient: the line is taken as the next chunk-size line
            events.append(self._error(side, f"chunk data not followed by CRLF: {text[:32]!r}"))
        size_text = text.split(b";", 1)[0].strip(b" \t")
        if not _HEX_RE.match(size_text):
            self._abort_body(side, events, f"bad chunk size line {text[:32]!r}", "malformed")
            return True
        size = int(size_text, 16)
        if size == 0:
            side.state = _TRAILERS
            side.header_bytes = 0
            side.header_count = 0
            side.bytes_overflow = side.count_overflow = False
        else:
            side.remaining = size
            side.state = _CHUNK_DATA
        return True

    def _abort_body(self, side: _Side, events: list[HTTPEvent], message: str, kind: str) -> None:
        """The body can no longer be framed: emit what we have and look for the next message."""
        events.append(self._error(side, message + "; message truncated", kind))
        side.body_truncated = True
        side.body_incomplete = True
        self._finish(side, events)
        if side.state == _START:
            side.state = _RESYNC

    def _add_body(self, side: _Side, data: bytes | bytearray, events: list[HTTPEvent]) -> None:
        if not data:
            return
        side.body_length += len(data)
        if side.body_hash is None:
            side.body_hash = hashlib.sha1(data)
        else:
            side.body_hash.update(data)
        # an answer to a GET: its length and digest are what is needed of it, the rest need not be kept
        download = not side.is_request and side.request_method is not None and side.request_method.upper() == "GET"
        limit = self.max_download_body if download else self.max_body
        room = limit - len(side.body)
        if len(data) <= room:
            side.body += data
            return
        if room > 0:
            side.body += data[:room]
        if not side.body_truncated:
            side.body_truncated = True
            if not download:
                events.append(self._error(side, f"body longer than max_body={self.max_body} bytes; truncated",
                                          "max_body"))

    # -- message framing decisions -------------------------------------------------------------
    def _headers_complete(self, side: _Side, events: list[HTTPEvent]) -> None:
        headers = Headers(side.headers)
        if side.is_request:
            method = side.line[0]
            self._pending.append(method)
            if method.upper() == "CONNECT":
                self._connect_event(_CONNECT_SENT)
                side.after_body = _HOLD
            self._frame_body(side, headers, events, may_read_to_close=False)
            return
        status = int(side.line[1])
        if self._lost_answers:
            # the answers of the requests before the last one were in the lost bytes
            self._lost_answers = False
            while len(self._pending) > 1:
                self._pending.popleft()
        method = self._pending[0] if self._pending else None
        inferred = False
        if method is None and 200 <= status < 300 and hands_out_tunnel(side.headers):
            # no request waits, yet the answer hands out a tunnel: the answer of a CONNECT the capture missed
            method, inferred = "CONNECT", True
        side.request_method = method
        if 100 <= status < 200:
            self._finish(side, events)  # interim response: the request still awaits its final one
            if status == 101:
                self._switch_opaque(side, events)
            return
        if self._pending:
            self._pending.popleft()
        if method is not None and method.upper() == "CONNECT":
            if 200 <= status < 300:
                self._finish(side, events)
                self._start_tunnel(side, headers, events)
                c2s = self._sides["c2s"]
                if inferred and c2s.state in (_START, _RESYNC):  # what the client sent after it is CSTP too
                    c2s.state = _TUNNEL
                    for data, ts, frame in c2s.take_segments():
                        events.extend(self._framer_feed("c2s", data, ts, frame))
                return
            self._connect_event(_ANSWERED_OTHER)
            c2s = self._sides["c2s"]
            if c2s.state == _HOLD:
                self._connect_event(_CONNECT_READ)  # the client's CONNECT was complete: back to HTTP
                c2s.state = _START
                c2s.pending_overflow = False
                # the client's held bytes are HTTP after all: parse them once this response is out
                self._resume_c2s = True
        if (method is not None and method.upper() == "HEAD") or status in (204, 304):
            self._finish(side, events)
            return
        self._frame_body(side, headers, events, may_read_to_close=True)

    def _frame_body(self, side: _Side, headers: Headers, events: list[HTTPEvent],
                    may_read_to_close: bool) -> None:
        codings = headers.tokens("transfer-encoding")
        if codings:
            if codings[-1] == "chunked":
                side.state = _CHUNK_SIZE
                return
            events.append(self._error(side, f"Transfer-Encoding {', '.join(codings)} does not end in "
                                      "chunked; body read until close"))
            side.state = _EOF
            return
        lengths = set(headers.tokens("content-length"))
        if lengths:
            if len(lengths) == 1 and _decimal(next(iter(lengths))) is not None:
                side.remaining = _decimal(next(iter(lengths)))
                if side.remaining == 0:
                    self._finish(side, events)
                else:
                    side.state = _LENGTH
                return
            events.append(self._error(side, f"bad Content-Length {sorted(lengths)!r}"))
            if not may_read_to_close:
                first = _decimal(headers.tokens("content-length")[0])
                if first:
                    side.remaining = first
                    side.state = _LENGTH
                    return
                self._finish(side, events)
                return
        if may_read_to_close:
            side.state = _EOF
        else:
            self._finish(side, events)

    def _finish(self, side: _Side, events: list[HTTPEvent]) -> None:
        ts, frame = side.start
        end_frame = side.origin(side.offset - 1)[1] if side.offset else side.last_frame
        headers = Headers(side.headers)
        trailers = Headers(side.trailers)
        truncated = side.headers_truncated
        digest = side.body_hash.hexdigest() if side.body_hash is not None else _EMPTY_SHA1
        if side.is_request:
            method, target, version = side.line
            events.append(Request(method, target, version, headers, bytes(side.body), ts, frame, end_frame,
                                  trailers, truncated, side.body_truncated, side.body_length, digest,
                                  not side.body_incomplete))
        else:
            version, status, reason = side.line
            events.append(Response(int(status), reason, version, headers, bytes(side.body),
                                   side.request_method, ts, frame, end_frame, trailers, truncated,
                                   side.body_truncated, side.body_length, digest, not side.body_incomplete))
        next_state = side.after_body
        if side.is_request and next_state == _HOLD:
            next_state = self._connect_event(_CONNECT_READ)
            if next_state == _HOLD and len(side.buf) > self.max_pending:
                side.pending_overflow = True
                events.append(self._error(
                    side, f"more than max_pending={self.max_pending} bytes sent before the CONNECT was "
                    "answered; the excess is dropped", "max_pending"))
                del side.buf[self.max_pending:]
        side.reset_message()
        side.state = next_state
        if not side.is_request and self._resume_c2s:
            self._resume_c2s = False
            events.extend(self._advance(self._sides["c2s"]))

    def _connect_event(self, event: str) -> str:
        """Apply one CONNECT hand-off event; returns the client reader's next state (see _CONNECT_TRANSITIONS)."""
        self._connect, client_state = _CONNECT_TRANSITIONS.get((self._connect, event), (self._connect, _HOLD))
        return client_state

    def _start_tunnel(self, s2c: _Side, headers: Headers, events: list[HTTPEvent]) -> None:
        self.tunnel = True
        self._connect_event(_ANSWERED_2XX)
        encoding = headers.get("X-CSTP-Content-Encoding")
        if self._framer is None:
            self._framer = CSTPFramer(encoding)
        elif encoding:
            self._framer.set_encoding(encoding)
        events.append(TunnelEstablished(*s2c.origin(s2c.offset - 1)))
        s2c.state = _TUNNEL
        c2s = self._sides["c2s"]
        if c2s.state == _HOLD:
            c2s.state = _TUNNEL
            for data, ts, frame in c2s.take_segments():
                events.extend(self._framer_feed("c2s", data, ts, frame))

    def _switch_opaque(self, s2c: _Side, events: list[HTTPEvent]) -> None:
        events.append(self._error(s2c, "101 Switching Protocols: the rest of the connection is not "
                                  "HTTP and is not parsed"))
        for side in self._sides.values():
            if side.state != _CLOSED:
                side.state = _OPAQUE
                side.consume(len(side.buf))

    def _close_side(self, side: _Side) -> list[HTTPEvent]:
        events: list[HTTPEvent] = []
        state = side.state
        if state == _CLOSED:
            return events
        if state == _TUNNEL:
            if side.buf:
                for data, ts, frame in side.take_segments():
                    events.extend(self._framer_feed(side.direction, data, ts, frame))
            if self._framer is not None:
                events.extend(self._framer.close(side.direction, side.last_ts, side.last_frame))
        elif state == _EOF:
            self._finish(side, events)
        elif state == _HOLD:
            if side.buf:
                events.append(self._error(side, f"stream ended with {len(side.buf)} bytes sent after a CONNECT "
                                          "that was never answered", "truncated"))
        elif state in (_START, _RESYNC, _OPAQUE):
            if state == _START and side.buf.strip():
                events.append(self._error(side, f"stream ended inside a message head ({len(side.buf)} bytes)",
                                          "truncated"))
        else:
            events.append(self._error(side, f"stream ended inside a message ({state})", "truncated"))
            side.body_truncated = True
            side.body_incomplete = True
            self._finish(side, events)
        side.state = _CLOSED
        side.consume(len(side.buf))
        side.discarding = False
        return events
