"""TCP stream reassembly and UDP flow tracking (sans-I/O).

:class:`TCPStream` rebuilds the two byte streams of one TCP connection (RFC 9293) from decoded
:class:`~dissectors.packet.Packet` objects, in capture order, and emits events:

* :class:`StreamData` -- contiguous, in-order bytes of one direction; ``seq`` is the offset of
  ``data[0]`` in that direction's stream (0 = first byte after the SYN, or the first sequence number
  seen when the capture starts mid-connection). Offsets are 64-bit: 32-bit sequence numbers are
  unwrapped, so streams longer than 4 GiB and wraparound are handled.
* :class:`Gap` -- bytes ``[seq, seq+length)`` are missing and will not be waited for any more; the
  data after the gap is still delivered. A gap is declared when (a) the peer acknowledged bytes that
  were never captured and they did not come within `REORDER_PACKETS` packets or `REORDER_WINDOW` seconds,
  nor before a later segment of their direction (a capture may hold the ACK before the segment: the
  acknowledging side's events wait meanwhile, so that an answer never comes before its request),
  (b) the out-of-order buffer of a direction exceeds its bound, (c) the frame
  was cut by the snaplen, (d) the stream is reset, or (e) at :meth:`TCPStream.flush` (end of capture)
  for holes before buffered data or before a FIN.
* :class:`StreamClosed` -- the direction sent a FIN (reported once every byte before the FIN has been
  delivered or declared missing) or a RST.
* :class:`Retransmission` -- a segment whose bytes had all been seen already.

Overlapping data: the first bytes seen win (later copies are ignored). SYN and FIN each consume one
sequence number. The client is the SYN sender; without a SYN the client is guessed from the ports
(a well-known server port such as 443, else a port below 1024, else the larger port is the client's).

:class:`FlowTable` dispatches packets to streams by canonical 4-tuple and numbers them like
Wireshark's ``tcp.stream`` (0-based, in order of first packet; a SYN that starts a new connection on
a tuple that is closed or was used with a different initial sequence number gets a new index). UDP
packets get a ``udp.stream``-like index too and are returned as :class:`Datagram` events. Several
capture files can be fed through one table (a ring buffer's files: a connection may run on from one file into
the next): :meth:`FlowTable.new_capture` starts the next file, whose flows are numbered from 0 again, as
``tshark -r FILE`` numbers them. A flow's ``index`` stays unique for the table's lifetime (it equals the
tcp.stream / udp.stream number while one capture is fed); ``capture`` and ``stream`` are the file it was
first seen in and its number there, ``numbers`` its ``(capture, stream)`` in every file it has packets in. The
table bounds the number of flows (least recently used flows are flushed and evicted, reported with
:class:`FlowEvicted`) and the total out-of-order data buffered across all streams.

Each flow also keeps its long pauses (`QUIET_MIN` s or more between two of its packets, the `MAX_QUIET` longest), either
way (``quiet``) and per direction (`Side`, a TCP stream's halves: `sides()`, with each direction's first and last
packet), for the silences of a session (analyzer/rules/tunnel_silent.py) without keeping every packet's time.

IP fragments must be reassembled before (``packet.IPv4Defragmenter``); packets without ports are
ignored by the table.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from ._fastevent import fast_constructor
from .packet import Packet

__all__ = [
    "C2S",
    "S2C",
    "SERVER_PORTS",
    "DUPLICATE_WINDOW",
    "Datagram",
    "Duplicate",
    "FlowEvicted",
    "FlowTable",
    "Gap",
    "Retransmission",
    "StreamClosed",
    "StreamData",
    "TCPStream",
    "UDPFlow",
    "flow_key",
    "guess_client",
]

C2S = "c2s"
S2C = "s2c"

_SYN = 0x02
_FIN = 0x01
_RST = 0x04
_PSH = 0x08
_ACK = 0x10
_ACK_PSH = _ACK | _PSH
MAX_HANDSHAKE = 32  # SYN / SYN-ACK segments kept per connection (`TCPStream.handshake`)
_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_WRAP = 0x100000000

#: Ports taken to be the server side when a capture starts mid-connection.
SERVER_PORTS = frozenset(
    (443, 80, 8443, 4443, 10443, 9443, 8080, 8000, 3128, 22, 25, 53, 110, 143, 465, 587, 993, 995, 636,
     500, 4500, 1194, 3389)
)


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamData:
    direction: str  # "c2s" or "s2c"
    data: bytes
    ts: float
    frame: int
    seq: int  # offset of data[0] in this direction's byte stream


@dataclass(frozen=True, slots=True)
class Gap:
    direction: str
    seq: int  # offset of the first missing byte
    length: int
    ts: float  # packet that made us give up waiting
    frame: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    direction: str
    reason: str  # "fin" or "rst"
    ts: float
    frame: int
    ttl: int | None = None  # a reset's IP TTL (IPv6: hop limit) as captured (None: a FIN, or not known)


@dataclass(frozen=True, slots=True)
class Retransmission:
    direction: str
    ts: float
    frame: int
    seq: int = 0  # offset of the segment's first byte
    length: int = 0


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The segment just delivered, again, within `DUPLICATE_WINDOW` seconds: a copy the capture made (a capture on
    two interfaces of the path, ``tcpdump -i any`` on a router, Windows pktmon on several components), not a
    retransmission (a sender retransmits after a timeout or after duplicate ACKs, not within a millisecond)."""
    direction: str
    ts: float
    frame: int
    seq: int = 0
    length: int = 0


#: seconds: the same data segment (a DTLS record of the same number, dissectors/dtls) again this soon is a copy the
#: capture made (`Duplicate`)
DUPLICATE_WINDOW = 0.001
#: an ACK of bytes not seen yet is a gap once this many more packets of the connection, or this many seconds, went
#: by without them (or a later segment of that direction came): a capture that took the ACK before the segment
#: (several receive queues, `tcpdump -i any`, merged files) has them right after
REORDER_PACKETS = 4
REORDER_WINDOW = 0.005
#: seconds: a flow's pause at least this long between two of its packets is kept — either way in the flow's
#: ``quiet`` list, from one side in that side's (`Side.quiet`, `_Half.quiet`) — as (from time, to time, the frame
#: before, the frame after), the MAX_QUIET longest: so that a session's silences (a laptop that slept, a client gone
#: offline) can be told without keeping every packet's time
QUIET_MIN = 10.0
MAX_QUIET = 8


def keep_pause(q: list | None, since: float, until: float, frame_before: int, frame_after: int) -> list:
    """``q`` (a list of pauses, or None: a new one) with the pause from ``since`` to ``until`` kept among its
    MAX_QUIET longest; changed in place (a tracker may hold the list)."""
    entry = (since, until, frame_before, frame_after)
    if q is None:
        return [entry]
    if len(q) < MAX_QUIET:
        q.append(entry)
    else:
        k = min(range(len(q)), key=lambda n: q[n][1] - q[n][0])
        if until - since > q[k][1] - q[k][0]:
            del q[k]
            q.append(entry)
    return q


def note_quiet(flow, ts: float, frame: int) -> None:
    """``flow`` (a TCPStream or UDPFlow whose ``last_ts``/``last_frame`` are still its previous packet's) had no
    packet from ``last_ts`` until ``ts`` (frame ``frame``): kept in ``flow.quiet``."""
    flow.quiet = keep_pause(flow.quiet, flow.last_ts, ts, flow.last_frame, frame)


def side_pause(side, ts: float, frame: int) -> None:
    """A packet at ``ts`` (frame ``frame``) of a direction (`Side`, `_Half`) QUIET_MIN s or more after its previous one:
    the pause kept (`keep_pause`), or, its first packet, noted as that."""
    if side.seen_frame:
        side.quiet = keep_pause(side.quiet, side.seen_ts, ts, side.seen_frame, frame)
    else:
        side.first_ts, side.first_frame = ts, frame


class Side:
    """One direction of a UDP flow, as far as its pauses go: the time and frame of its first and last packet, and
    its pauses of QUIET_MIN s or more (`keep_pause`). (A TCP direction, `_Half`, has the same five.)"""

    __slots__ = ("first_frame", "first_ts", "quiet", "seen_frame", "seen_ts")

    def __init__(self) -> None:
        self.first_ts = 0.0
        self.first_frame = 0
        self.seen_ts = -math.inf  # (so that the first packet, whatever its time, is noted as the first)
        self.seen_frame = 0  # 0: no packet yet
        self.quiet: list | None = None


@dataclass(frozen=True, slots=True)
class Datagram:
    flow_index: int  # udp.stream-like, 0-based
    direction: str  # "c2s" when sent by the flow's first sender
    data: bytes
    ts: float
    frame: int
    src: str
    sport: int
    dst: str
    dport: int


@dataclass(frozen=True, slots=True)
class FlowEvicted:
    """The flow table was full: the least recently used flow was flushed and forgotten."""

    kind: str  # "tcp" or "udp"
    index: int
    ts: float
    frame: int


# --- fast construction of per-packet events (see dissectors/_fastevent.py) ---------------------------------
_new_stream_data = fast_constructor(StreamData)
_new_datagram = fast_constructor(Datagram)


# --- helpers -----------------------------------------------------------------------------------------


def guess_client(packet: Packet) -> tuple[str, int]:
    """Which endpoint of ``packet`` is the client (SYN sender, else guessed from the ports)."""
    src = (packet.src, packet.sport)
    dst = (packet.dst, packet.dport)
    fl = packet.flags or 0
    if fl & _SYN:
        return dst if fl & _ACK else src
    sp, dp = packet.sport or 0, packet.dport or 0
    s_srv, d_srv = sp in SERVER_PORTS, dp in SERVER_PORTS
    if s_srv != d_srv:
        return dst if s_srv else src
    if (sp < 1024) != (dp < 1024):
        return dst if sp < 1024 else src
    if sp != dp:
        return src if sp > dp else dst
    return src


def flow_key(src: str, sport: int, dst: str, dport: int) -> tuple:
    """The key of the flow between ``src:sport`` and ``dst:dport`` in a :class:`FlowTable` (the same for both
    directions): the lower endpoint first."""
    if src < dst or (src == dst and sport <= dport):
        return (src, sport, dst, dport)
    return (dst, dport, src, sport)


def _first(seg: list) -> int:
    return seg[0]


class _Half:
    """State of one direction of a TCP connection."""

    __slots__ = (
        "acked",
        "after_rst",
        "buf",
        "buffered",
        "bytes",
        "closed",
        "fin",
        "fin_frame",
        "fin_ts",
        "first_frame",
        "first_seq",
        "first_ts",
        "isn",
        "last_end",
        "last_len",
        "last_ts",
        "name",
        "next",
        "quiet",
        "seen_frame",
        "seen_ts",
        "syn_seq",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen_ts = -math.inf  # the direction's last packet (time, frame; 0: none yet), its first, its long
        self.seen_frame = 0  # pauses (as `Side`)
        self.first_ts = 0.0
        self.first_frame = 0
        self.quiet: list | None = None
        self.isn: int | None = None  # absolute sequence number of stream offset 0
        self.syn_seq: int | None = None  # sequence number of the SYN, if seen
        self.first_seq: int | None = None  # first sequence number seen in this direction
        self.next = 0  # offset of the next byte to deliver
        self.buf: list[list] = []  # sorted, non-overlapping [start, end, data, ts, frame], start > next
        self.buffered = 0  # bytes in buf
        self.fin: int | None = None  # offset of the FIN
        self.fin_ts = 0.0
        self.fin_frame = 0
        self.closed: str | None = None  # None, "fin" or "rst"
        self.after_rst = 0  # segments with data this direction sent after its own reset (not delivered)
        # [offset, ts, frame, packets left]: the peer acknowledged up to offset, bytes not seen yet — a gap once
        # they do not come right after (`REORDER_PACKETS`, `REORDER_WINDOW`: a capture that put the ACK before them)
        self.acked: list | None = None
        self.bytes = 0  # bytes delivered
        # the last data segment taken (its end offset, length, time): one just like it right after is a `Duplicate`
        self.last_end = -1
        self.last_len = 0
        self.last_ts = 0.0


class TCPStream:
    """Reassembles one TCP connection. See the module docstring for the events.

    ``client``/``server`` are ``(address, port)`` tuples, set by the first packet fed. ``index`` is the
    unique number given by the :class:`FlowTable` (0 when used alone); ``stream`` its tcp.stream number in the
    capture it was first seen in (``capture``), ``numbers`` the ``(capture, tcp.stream)`` of every capture it
    is in. ``max_buffer`` bounds the out-of-order bytes buffered per direction (then a gap is declared),
    ``max_segments`` the number of buffered segments per direction.
    """

    __slots__ = (
        "_acks",
        "_c",
        "_held",
        "_caddr",
        "_cport",
        "_s",
        "buffered",
        "capture",
        "client",
        "fin_seen",
        "first_frame",
        "handshake",
        "handshake_ttl",
        "first_ts",
        "index",
        "key",
        "last_frame",
        "last_ts",
        "max_buffer",
        "max_segments",
        "max_window",
        "numbers",
        "packets",
        "quiet",
        "retired",
        "rst",
        "rst_seen",
        "server",
        "stream",
        "table",
        "user",
    )

    def __init__(
        self,
        index: int = 0,
        *,
        max_buffer: int = 4 << 20,
        max_segments: int = 16384,
        max_window: int = 1 << 30,
    ) -> None:
        self.index = index
        self._acks = False  # a direction has an `_Half.acked` pending
        # events of a direction whose packets acknowledged the other's bytes not seen yet: given once those come (or
        # are a gap) — an answer is not read before the request it answers
        self._held: list = []
        self.capture = 0  # the capture (0-based, as FlowTable.new_capture counts) it was first seen in
        self.stream = index  # its tcp.stream number in that capture
        self.numbers = [(0, index)]  # (capture, tcp.stream) in every capture it has packets in
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.max_buffer = max_buffer
        self.max_segments = max_segments
        self.max_window = max_window  # segments further ahead than this are ignored as bogus
        self._c = _Half(C2S)
        self._s = _Half(S2C)
        self._caddr: str | None = None
        self._cport: int | None = None
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.first_frame = 0
        self.last_frame = 0
        self.packets = 0
        self.quiet: list | None = None  # long pauses (`note_quiet`)
        self.fin_seen = False
        self.rst_seen = False
        #: the connection's SYN and SYN-ACK segments as (direction, time, frame), the first `MAX_HANDSHAKE` (a
        #: client's SYN retries, the server's answer): what a connection that never carried data shows
        self.handshake: list[tuple[str, float, int]] = []
        self.rst: tuple[str, float, int, int] | None = None  # the first RST: (direction, time, frame, TTL)
        #: the IP TTL (IPv6: hop limit) of the client's first SYN ("c2s") and the server's first SYN-ACK ("s2c") as
        #: captured: what each side's packets arrive with at the capture point
        self.handshake_ttl: dict[str, int] = {}
        self.buffered = 0  # out-of-order bytes buffered, both directions
        self.user = None  # free slot for the consumer (e.g. a TLS connection)
        self.key: tuple | None = None  # its key in the FlowTable (None when used alone)
        self.table: FlowTable | None = None  # the FlowTable it is in (None when used alone)
        self.retired = False  # the FlowTable dropped it (evicted, or its tuple reused by a new connection)

    # --- informative properties ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after a RST, or once both directions sent a FIN."""
        return self.rst_seen or (self._c.fin is not None and self._s.fin is not None)

    @property
    def after_reset(self) -> dict[str, int]:
        """Segments with data each direction sent after its own reset, where there are any (they are not
        delivered: a peer that reset its connection sends nothing more on it, unless the reset was not its own)."""
        return {h.name: h.after_rst for h in (self._c, self._s) if h.after_rst}

    @property
    def syn_seen(self) -> bool:
        return self._c.syn_seq is not None

    @property
    def bytes_c2s(self) -> int:
        return self._c.bytes

    @property
    def bytes_s2c(self) -> int:
        return self._s.bytes

    def direction_of(self, packet: Packet) -> str:
        if self._caddr is None:
            return C2S
        return C2S if (packet.sport == self._cport and packet.src == self._caddr) else S2C

    def sides(self) -> tuple:
        """The directions' pause records (`_Half`: first_ts, first_frame, seen_ts, seen_frame, quiet, as `Side`):
        from the client ("c2s"), from the server."""
        return self._c, self._s

    def starts_new_connection(self, packet: Packet) -> bool:
        """Would this packet (a SYN without ACK) open a new connection on the same 4-tuple?"""
        if ((packet.flags or 0) & (_SYN | _ACK)) != _SYN or self._caddr is None:
            return False
        h = self._c if (packet.sport == self._cport and packet.src == self._caddr) else self._s
        if h.first_seq is None:
            return False  # this side never sent anything: a SYN from it belongs here
        if self.rst_seen or self.fin_seen:
            return True
        return packet.seq != h.first_seq  # the same ISN: a retransmitted SYN

    # --- feeding ---------------------------------------------------------------------------------------

    def feed(self, packet: Packet, ts: float, frame: int) -> list:
        """Process one TCP packet of this connection; returns the events it produces."""
        out: list = []
        if packet.seq is None:
            return out  # TCP header cut by the snaplen: nothing usable
        if self._caddr is None:
            self.client = guess_client(packet)
            self.server = (packet.dst, packet.dport) if self.client == (packet.src, packet.sport) else (
                packet.src, packet.sport)
            self._caddr, self._cport = self.client
            self.first_ts = ts
            self.first_frame = frame
        elif ts - self.last_ts >= QUIET_MIN:
            note_quiet(self, ts, frame)
        self.last_ts = ts
        self.last_frame = frame
        self.packets += 1
        if packet.sport == self._cport and packet.src == self._caddr:
            h, o = self._c, self._s
        else:
            h, o = self._s, self._c
        if ts - h.seen_ts >= QUIET_MIN:
            side_pause(h, ts, frame)
        h.seen_ts = ts
        h.seen_frame = frame
        flags = packet.flags
        seq = packet.seq
        if self._acks:
            self._due_acks(ts, out)
        held = len(out)  # (this packet's own events from here on)
        if flags & _SYN:
            seq = (seq + 1) & _M32  # the SYN consumes one sequence number
            if len(self.handshake) < MAX_HANDSHAKE:
                self.handshake.append((h.name, ts, frame))
            if h.name not in self.handshake_ttl:
                self.handshake_ttl[h.name] = packet.ttl
            if h.isn is None or (h.syn_seq is None and h.next == 0 and not h.buf and h.fin is None):
                h.isn = seq
                h.syn_seq = packet.seq
                h.first_seq = packet.seq
        if h.isn is None:
            h.isn = seq
            h.first_seq = seq
        if h.closed == "rst":
            if packet.payload_len > 0 and not flags & _RST:
                h.after_rst += 1  # (a reset its sender did not make goes on: a device in between forged it)
            return out  # the sender aborted: later segments carry nothing we can trust
        plen = packet.payload_len
        if plen < 0:  # noqa: PLR1730 (hot path: no call)
            plen = 0
        if plen or flags & _FIN:
            d = (seq - h.isn - h.next) & _M32
            if d >= _HALF:
                d -= _WRAP
            start = h.next + d
            if h.acked is not None and start > h.next:
                self._ack_gap(h, out)  # a later segment of the direction: the acknowledged bytes are missing
            if start - h.next <= self.max_window:
                if plen:
                    if start == h.next and not h.buf and h.fin is None and not packet.truncated:
                        # fast path: the next in-order segment, nothing buffered
                        out.append(_new_stream_data(h.name, packet.payload, ts, frame, start))
                        h.next = h.last_end = start + plen
                        h.last_len = plen
                        h.last_ts = ts
                        h.bytes += plen
                    else:
                        self._data(h, start, plen, packet.payload, packet.truncated, ts, frame, out)
                if flags & _FIN:
                    self.fin_seen = True
                    if h.fin is None and not h.closed:
                        fin = start + plen
                        fin = max(fin, h.next)
                        h.fin = fin
                        h.fin_ts = ts
                        h.fin_frame = frame
                        self._trim_after_fin(h)
                        if h.next >= fin:
                            h.closed = "fin"
                            out.append(StreamClosed(h.name, "fin", ts, frame))
        if flags & _RST:
            if not self.rst_seen:
                self.rst = (h.name, ts, frame, packet.ttl)
            self.rst_seen = True
            if h.acked is not None:
                self._ack_gap(h, out)
            if not h.closed:
                self._release(h, ts, frame, out)
                if not h.closed:  # (releasing may have reached a pending FIN)
                    h.closed = "rst"
                    out.append(StreamClosed(h.name, "rst", ts, frame, packet.ttl))
        elif flags & _ACK and o.isn is not None and not o.closed:
            d = (packet.ack - o.isn - o.next) & _M32
            if 0 < d < _HALF:
                target = o.next + d
                if o.fin is not None and target > o.fin:
                    target = o.fin  # the ACK of a FIN covers one sequence number that is not data
                if o.next < target and d <= self.max_window:
                    if o.acked is None:
                        o.acked = [target, ts, frame, REORDER_PACKETS]
                        self._acks = True
                    elif target > o.acked[0]:
                        o.acked[0] = target
        if self._acks:
            for x in (h, o):
                if x.acked is not None and x.next >= x.acked[0]:
                    x.acked = None  # (the bytes came)
            self._acks = self._c.acked is not None or self._s.acked is not None
            if o.acked is not None:
                # this packet acknowledged the other direction's bytes not seen yet: its own events wait for them
                mine = [e for e in out[held:] if e.direction == h.name]
                if mine:
                    self._held.extend(mine)
                    out[held:] = [e for e in out[held:] if e.direction != h.name]
        if self._held and not self._acks:
            self._release_held(out)
        return out

    def _due_acks(self, ts: float, out: list) -> None:
        """Declare the pending `_Half.acked` gaps whose time is up (packets or seconds)."""
        for x in (self._c, self._s):
            a = x.acked
            if a is not None:
                a[3] -= 1
                if a[3] < 0 or ts - a[1] > REORDER_WINDOW:
                    self._ack_gap(x, out)

    def _ack_gap(self, x: _Half, out: list) -> None:
        """The bytes of ``x`` its peer acknowledged are missing: a gap (at the ACK's time and frame); then the
        events held for them, when nothing else waits (their order: the gap, what came after it)."""
        target, ats, afr, _left = x.acked
        x.acked = None
        if x.next < target and not x.closed:
            self._skip_to(x, target, ats, afr, out)
        self._acks = self._c.acked is not None or self._s.acked is not None
        if self._held and not self._acks:
            self._release_held(out)

    def _release_held(self, out: list) -> None:
        out.extend(self._held)
        self._held.clear()

    def feed_next(self, direction: str, seq: int, ack: int, flags: int, length: int, ts: float, frame: int) -> bool:
        """`feed` for the common segment of an established connection, from its header fields: from ``direction``,
        flags ACK or PSH|ACK, either the next in-order ``length`` bytes (nothing buffered out of order, no FIN
        pending) or a pure ACK, acknowledging nothing that was not seen. Leaves the stream, and the FlowTable it
        is in (its order, `last_flow`), as `FlowTable.feed` would and returns True; the ``length`` payload bytes
        are the caller's to deliver, in place of the one StreamData event `feed` would return. False for any other
        segment (or a stream the table dropped): nothing changed, `feed` it."""
        if flags != _ACK_PSH and flags != _ACK:
            return False
        if direction == C2S:
            h = self._c
            o = self._s
        else:
            h = self._s
            o = self._c
        isn = h.isn
        if isn is None or h.closed or h.fin is not None or h.buf or self.retired or self._acks:
            return False
        oisn = o.isn
        if oisn is not None and not o.closed:
            d = (ack - oisn - o.next) & _M32
            if d and d < _HALF:  # acknowledges bytes never seen: `feed` declares a gap
                return False
        if length:
            nxt = h.next
            if (seq - isn - nxt) & _M32:
                return False  # not the next in-order segment
            # (nothing declines past this point)
            h.next = h.last_end = nxt + length
            h.last_len = length
            h.last_ts = ts
            h.bytes += length
        if ts - self.last_ts >= QUIET_MIN:
            note_quiet(self, ts, frame)
        if ts - h.seen_ts >= QUIET_MIN:
            side_pause(h, ts, frame)
        h.seen_ts = ts
        h.seen_frame = frame
        self.last_ts = ts
        self.last_frame = frame
        self.packets += 1
        table = self.table
        if table is not None:  # what FlowTable.feed leaves in the table: its order, last_flow
            table._tcp.move_to_end(self.key)
            table.last_flow = self
        return True

    def flush(self) -> list:
        """End of capture: give up on missing data; deliver everything buffered (after ``Gap``\\ s).

        A direction whose FIN was seen is then reported closed. Events carry the time and frame of the
        last packet of the stream.
        """
        out: list = []
        ts, frame = self.last_ts, self.last_frame
        for h in (self._c, self._s):
            if h.acked is not None:
                self._ack_gap(h, out)
        self._release_held(out)
        for h in (self._c, self._s):
            if h.closed:
                continue
            self._release(h, ts, frame, out)
            if h.fin is not None and not h.closed:
                self._skip_to(h, h.fin, ts, frame, out)
        return out

    def release_buffers(self, ts: float | None = None, frame: int | None = None) -> list:
        """Declare the holes before buffered data missing and deliver it (memory pressure)."""
        out: list = []
        ts = self.last_ts if ts is None else ts
        frame = self.last_frame if frame is None else frame
        self._release(self._c, ts, frame, out)
        self._release(self._s, ts, frame, out)
        return out

    # --- internals -------------------------------------------------------------------------------------

    def _data(self, h: _Half, start: int, plen: int, payload: bytes, truncated: bool, ts: float,
              frame: int, out: list) -> None:
        end = start + plen
        if h.fin is not None and end > h.fin:
            end = h.fin  # bytes after the FIN do not exist
            if end <= start:
                return
        nxt = h.next
        if end <= nxt:
            if end == h.last_end and plen == h.last_len and abs(ts - h.last_ts) <= DUPLICATE_WINDOW:
                out.append(Duplicate(h.name, ts, frame, start, plen))
            else:
                out.append(Retransmission(h.name, ts, frame, start, plen))
            return
        h.last_end, h.last_len, h.last_ts = end, plen, ts
        cap_end = start + len(payload)
        if cap_end > end:
            cap_end = end
            payload = payload[: end - start]
        if start < nxt:  # overlaps bytes already delivered: first seen wins
            payload = payload[nxt - start :] if cap_end > nxt else b""
            start = nxt
        if payload:
            if start == nxt and not h.buf:
                # fast path: in-order segment, nothing buffered
                out.append(_new_stream_data(h.name, payload, ts, frame, start))
                h.next = cap_end
                h.bytes += cap_end - start
            else:
                if not self._insert(h, start, payload, ts, frame):
                    if not truncated:
                        out.append(Retransmission(h.name, ts, frame, start, plen))
                    return
                if h.buf[0][0] <= h.next:
                    self._drain(h, out)
                while h.buf and not h.closed and (
                    h.buffered > self.max_buffer or len(h.buf) > self.max_segments
                ):
                    self._advance(h, ts, frame, out)
        if truncated and h.next >= cap_end and h.next < end:
            # the rest of this segment was cut by the snaplen: it will not be captured
            self._skip_to(h, end, ts, frame, out)
        if h.fin is not None and h.next >= h.fin and not h.closed:  # this segment filled up to the FIN
            h.closed = "fin"
            out.append(StreamClosed(h.name, "fin", h.fin_ts, h.fin_frame))

    def _insert(self, h: _Half, start: int, data: bytes, ts: float, frame: int) -> bool:
        """Buffer the bytes of [start, start+len) not already buffered. Returns False if none were new."""
        end = start + len(data)
        buf = h.buf
        i = bisect_right(buf, start, key=_first) - 1
        i = max(i, 0)
        pieces = []
        cur = start
        j = i
        n = len(buf)
        while j < n and buf[j][0] < end:
            s, e = buf[j][0], buf[j][1]
            if e > cur:
                if s > cur:
                    pieces.append((cur, s))
                cur = e
            j += 1
        if cur < end:
            pieces.append((cur, end))
        if not pieces:
            return False
        added = 0
        for ps, pe in pieces:
            k = bisect_right(buf, ps, key=_first)
            buf.insert(k, [ps, pe, data[ps - start : pe - start], ts, frame])
            added += pe - ps
        h.buffered += added
        self.buffered += added
        return True

    def _drain(self, h: _Half, out: list) -> None:
        """Deliver buffered segments that are now contiguous with ``h.next``."""
        buf = h.buf
        nxt = h.next
        k = 0
        n = len(buf)
        freed = 0
        name = h.name
        while k < n and buf[k][0] <= nxt:
            s, e, data, ts, frame = buf[k]
            freed += e - s
            if e > nxt:
                if s < nxt:
                    data = data[nxt - s :]
                    s = nxt
                out.append(_new_stream_data(name, data, ts, frame, s))
                h.bytes += e - s
                nxt = e
            k += 1
        if k:
            del buf[:k]
            h.buffered -= freed
            self.buffered -= freed
        h.next = nxt
        if h.fin is not None and nxt >= h.fin and not h.closed:
            h.closed = "fin"
            out.append(StreamClosed(name, "fin", h.fin_ts, h.fin_frame))

    def _skip_to(self, h: _Half, target: int, ts: float, frame: int, out: list) -> None:
        """Declare everything missing before ``target`` a gap, delivering buffered data in between."""
        while h.next < target and not h.closed:
            if h.buf and h.buf[0][0] <= h.next:
                self._drain(h, out)
                continue
            gap_end = target
            if h.buf and h.buf[0][0] < gap_end:
                gap_end = h.buf[0][0]
            out.append(Gap(h.name, h.next, gap_end - h.next, ts, frame))
            h.next = gap_end
            self._drain(h, out)

    def _advance(self, h: _Half, ts: float, frame: int, out: list) -> None:
        """Deliver the first buffered segment, declaring the hole before it (if any) a gap."""
        s0 = h.buf[0][0]
        if s0 <= h.next:
            self._drain(h, out)
        else:
            self._skip_to(h, s0, ts, frame, out)

    def _release(self, h: _Half, ts: float, frame: int, out: list) -> None:
        while h.buf and not h.closed:
            self._advance(h, ts, frame, out)

    def _trim_after_fin(self, h: _Half) -> None:
        fin = h.fin
        buf = h.buf
        freed = 0
        while buf and buf[-1][1] > fin:
            s, e, data, ts, frame = buf[-1]
            if s >= fin:
                buf.pop()
                freed += e - s
            else:
                buf[-1] = [s, fin, data[: fin - s], ts, frame]
                freed += e - fin
                break
        h.buffered -= freed
        self.buffered -= freed


# --- UDP -----------------------------------------------------------------------------------------------


class UDPFlow:
    """A UDP 4-tuple; ``a`` is the first sender (direction "c2s"), ``b`` the other end."""

    __slots__ = ("a", "b", "capture", "first_frame", "first_ts", "index", "key", "last_frame", "last_ts", "numbers",
                 "packets", "quiet", "side_a", "side_b", "stream", "user")

    def __init__(self, index: int, a: tuple[str, int], b: tuple[str, int], ts: float, frame: int) -> None:
        self.index = index  # unique in its FlowTable; `stream`: the udp.stream number in capture `capture`
        self.capture = 0
        self.stream = index
        self.numbers = [(0, index)]
        self.a = a
        self.b = b
        self.key = flow_key(a[0], a[1], b[0], b[1])  # its key in the FlowTable
        self.first_ts = self.last_ts = ts
        self.first_frame = self.last_frame = frame
        self.packets = 0
        self.quiet: list | None = None  # long pauses (`note_quiet`)
        self.side_a = Side()  # the packets from a ("c2s"), from b
        self.side_b = Side()
        self.user = None

    @property
    def client(self) -> tuple[str, int]:
        return self.a

    def sides(self) -> tuple[Side, Side]:
        """The flow's directions' pause records: from a ("c2s"), from b."""
        return self.side_a, self.side_b

    @property
    def server(self) -> tuple[str, int]:
        return self.b

    def flush(self) -> list:
        return []


# --- flow table ----------------------------------------------------------------------------------------


class FlowTable:
    """Maps packets to :class:`TCPStream` / :class:`UDPFlow` objects.

    ``feed(packet, ts, frame)`` returns a list of ``(flow, event)`` pairs (the flow tells which
    connection an event belongs to; its ``stream`` is the tcp.stream / udp.stream number in the capture it
    was first seen in, ``index`` a number unique in the table). ``new_capture()`` starts the next capture
    file: flows are numbered from 0 again, and a flow that runs on into the new file takes the next number
    there at its first packet (as ``tshark -r`` of that file alone would number it).
    ``flush()`` at end of capture flushes every TCP stream. Limits: ``max_flows`` per protocol (the
    least recently active flow is flushed and evicted, with a :class:`FlowEvicted` event), and
    ``max_total_buffer`` bytes of out-of-order TCP data across all streams (beyond it, the stream
    buffering the most gives up on its holes).
    """

    __slots__ = (
        "_buffered",
        "_tcp",
        "_tcp_next",
        "_udp",
        "_udp_next",
        "capture",
        "evicted",
        "last_flow",
        "max_flows",
        "max_total_buffer",
        "on_number",
        "stream_kwargs",
        "tcp_streams",
        "udp_flows",
    )

    def __init__(self, max_flows: int = 1 << 16, max_total_buffer: int = 256 << 20, **stream_kwargs) -> None:
        self.max_flows = max_flows
        self.max_total_buffer = max_total_buffer
        self.stream_kwargs = stream_kwargs
        self._tcp: OrderedDict[tuple, TCPStream] = OrderedDict()
        self._udp: OrderedDict[tuple, UDPFlow] = OrderedDict()
        self.tcp_streams = 0  # next TCP flow index (unique in the table)
        self.udp_flows = 0  # next UDP flow index
        self.capture = 0  # the capture being fed (0-based; new_capture() counts)
        self._tcp_next = 0  # next tcp.stream number in this capture
        self._udp_next = 0  # next udp.stream number in this capture
        self.evicted = 0
        self._buffered = 0
        self.last_flow: TCPStream | UDPFlow | None = None  # flow of the last packet fed (None if none)
        # called as on_number(flow, udp, capture, stream) each time a flow is given a tcp.stream / udp.stream
        # number (analyzer/parallel.py: the numbers of the whole file from those of its shards)
        self.on_number = None

    def __len__(self) -> int:
        return len(self._tcp) + len(self._udp)

    def new_capture(self) -> None:
        """The frames that follow come from the next capture file: number flows from 0 again (tcp.stream and
        udp.stream are per file in Wireshark). Flows stay: a connection may run on into the next file."""
        self.capture += 1
        self._tcp_next = 0
        self._udp_next = 0

    def _number(self, flow, udp: bool, new: bool) -> None:
        """Give ``flow`` the next tcp.stream / udp.stream number of the current capture (``new``: a flow just
        created; else a flow from an earlier capture, at its first packet in this one)."""
        if udp:
            n = self._udp_next
            self._udp_next = n + 1
        else:
            n = self._tcp_next
            self._tcp_next = n + 1
        cap = self.capture
        if new:
            flow.capture = cap
            flow.stream = n
            flow.numbers = [(cap, n)]
        else:
            flow.numbers.append((cap, n))
        if self.on_number is not None:
            self.on_number(flow, udp, cap, n)

    def holds(self, flow: TCPStream | UDPFlow) -> bool:
        """Is ``flow`` the table's live flow for its key (not evicted, not replaced by a new connection)?"""
        table = self._udp if flow.__class__ is UDPFlow else self._tcp
        return flow.key is not None and table.get(flow.key) is flow

    def touch(self, flow: UDPFlow, ts: float, frame: int, side: Side) -> None:
        """A datagram of UDP ``flow`` (one the table `holds`) was handled without `feed` (a fast lane, on the
        caller's own reading of the datagram): what `feed` leaves in the table for it besides the event — the
        least-recently-used order, `last_flow`, the flow's packet count and time, the pauses of it and of ``side``
        (the `Side` of the datagram's sender). (TCP: `TCPStream.feed_next` does this itself.)"""
        self._udp.move_to_end(flow.key)
        flow.packets += 1
        if ts - flow.last_ts >= QUIET_MIN:
            note_quiet(flow, ts, frame)
        if ts - side.seen_ts >= QUIET_MIN:
            side_pause(side, ts, frame)
        side.seen_ts = ts
        side.seen_frame = frame
        flow.last_ts = ts
        flow.last_frame = frame
        self.last_flow = flow

    def streams(self) -> list[TCPStream]:
        """Live TCP streams (not evicted nor superseded), least recently active first."""
        return list(self._tcp.values())

    def udp(self) -> list[UDPFlow]:
        return list(self._udp.values())

    def feed(self, packet: Packet, ts: float, frame: int) -> list:
        encap = packet.encap
        if encap is not None and encap[4] is not None:
            # inside VXLAN or GENEVE: its UDP carrier is numbered first (`note_carrier`)
            evicted = self.note_carrier(encap[1], encap[4], encap[2], encap[5], ts, frame)
            if evicted:  # (rare) a flow made way for the carrier: its events first
                return evicted + self.feed(dataclasses.replace(packet, encap=(*encap[:4], None, None)), ts, frame)
        proto = packet.proto
        sport = packet.sport
        self.last_flow = None
        if sport is None:
            if packet.icmp_inner is not None:
                return self._register_quoted(packet.icmp_inner, ts, frame)
            return []
        src, dst, dport = packet.src, packet.dst, packet.dport
        key = flow_key(src, sport, dst, dport)
        if proto == 6:
            if packet.seq is None:
                return []  # TCP header cut by the snaplen: Wireshark does not number such a stream either
            tcp = self._tcp
            st = tcp.get(key)
            out: list = []
            if st is None:
                st = self._new_stream(key, ts, frame, out)
            elif (packet.flags or 0) & _SYN and st.starts_new_connection(packet):
                del tcp[key]
                self._retire(st, out)
                st = self._new_stream(key, ts, frame, out)
            else:
                tcp.move_to_end(key)
                if self.capture and st.numbers[-1][0] != self.capture:
                    self._number(st, False, False)  # a connection running on from the previous file
            self.last_flow = st
            b0 = st.buffered
            evs = st.feed(packet, ts, frame)
            if st.buffered != b0:
                self._buffered += st.buffered - b0
                if self._buffered > self.max_total_buffer:
                    self._relieve(ts, frame, evs, st, out)
            if out:
                out.extend([(st, e) for e in evs])
                return out
            if len(evs) == 1:  # the common case, without a comprehension
                return [(st, evs[0])]
            return [(st, e) for e in evs] if evs else evs
        if proto == 17:
            udp = self._udp
            fl = udp.get(key)
            out = []
            if fl is None:
                fl = self._new_udp_flow(key, (src, sport), (dst, dport), ts, frame, out)
            else:
                udp.move_to_end(key)
                if self.capture and fl.numbers[-1][0] != self.capture:
                    self._number(fl, True, False)
            self.last_flow = fl
            fl.packets += 1
            if ts - fl.last_ts >= QUIET_MIN:
                note_quiet(fl, ts, frame)
            fl.last_ts = ts
            fl.last_frame = frame
            direction = C2S if (sport == fl.a[1] and src == fl.a[0]) else S2C
            side = fl.side_a if direction == C2S else fl.side_b
            if ts - side.seen_ts >= QUIET_MIN:
                side_pause(side, ts, frame)
            side.seen_ts = ts
            side.seen_frame = frame
            out.append((fl, _new_datagram(fl.index, direction, packet.payload, ts, frame, src, sport, dst, dport)))
            return out
        return []

    def flush(self) -> list:
        """End of capture: flush every TCP stream (gaps, buffered data, pending FIN closes)."""
        out: list = []
        for st in self._tcp.values():
            b0 = st.buffered
            out.extend([(st, e) for e in st.flush()])
            self._buffered += st.buffered - b0
        return out

    # --- internals -------------------------------------------------------------------------------------

    def _register_quoted(self, inner: Packet, ts: float, frame: int) -> list:
        """An ICMP error quoting a packet of an unknown flow: allocate the flow index, as Wireshark does.

        Wireshark numbers UDP flows seen only inside ICMP errors, and TCP flows when the quoted TCP
        header is complete (20 bytes); no data events are produced.
        """
        if inner.sport is None or inner.dport is None:
            return []
        src, sport, dst, dport = inner.src, inner.sport, inner.dst, inner.dport
        key = flow_key(src, sport, dst, dport)
        out: list = []
        known = (self._tcp.get(key) if inner.proto == 6 and inner.seq is not None
                 else self._udp.get(key) if inner.proto == 17 else None)
        if known is not None and self.capture and known.numbers[-1][0] != self.capture:
            self._number(known, inner.proto == 17, False)
        if inner.proto == 6 and inner.seq is not None and key not in self._tcp:
            st = self._new_stream(key, ts, frame, out)
            st.client = guess_client(inner)
            st.server = (dst, dport) if st.client == (src, sport) else (src, sport)
            st._caddr, st._cport = st.client
            st.first_ts = st.last_ts = ts
            st.first_frame = st.last_frame = frame
        elif inner.proto == 17 and key not in self._udp:
            self._new_udp_flow(key, (src, sport), (dst, dport), ts, frame, out)
        return out

    def note_carrier(self, src: str, sport: int, dst: str, dport: int, ts: float, frame: int) -> list:
        """The UDP flow that carried a packet inside it (VXLAN, GENEVE: `Packet.encap`) is numbered as Wireshark
        numbers it — a udp.stream of its own, before the packet inside gets its number — and gives no events of
        its own (eviction aside)."""
        key = flow_key(src, sport, dst, dport)
        fl = self._udp.get(key)
        out: list = []
        if fl is None:
            self._new_udp_flow(key, (src, sport), (dst, dport), ts, frame, out)
        elif self.capture and fl.numbers[-1][0] != self.capture:
            self._number(fl, True, False)
        return out

    def _new_udp_flow(self, key: tuple, a: tuple, b: tuple, ts: float, frame: int, out: list) -> UDPFlow:
        """A new UDP flow (``a`` its first sender), evicting the least recently active one at the bound."""
        udp = self._udp
        if len(udp) >= self.max_flows:
            _k, old = udp.popitem(last=False)
            self.evicted += 1
            out.append((old, FlowEvicted("udp", old.index, ts, frame)))
        fl = udp[key] = UDPFlow(self.udp_flows, a, b, ts, frame)
        self.udp_flows += 1
        self._number(fl, True, True)
        return fl

    def _new_stream(self, key: tuple, ts: float, frame: int, out: list) -> TCPStream:
        tcp = self._tcp
        if len(tcp) >= self.max_flows:
            _k, old = tcp.popitem(last=False)
            self._retire(old, out)
            self.evicted += 1
            out.append((old, FlowEvicted("tcp", old.index, ts, frame)))
        st = tcp[key] = TCPStream(self.tcp_streams, **self.stream_kwargs)
        st.key = key
        st.table = self
        self.tcp_streams += 1
        self._number(st, False, True)
        return st

    def _retire(self, st: TCPStream, out: list) -> None:
        st.retired = True
        b0 = st.buffered
        out.extend([(st, e) for e in st.flush()])
        self._buffered -= b0 - st.buffered

    def _relieve(self, ts: float, frame: int, evs: list, current: TCPStream, out: list) -> None:
        """Too much out-of-order data overall: release the biggest buffers."""
        while self._buffered > self.max_total_buffer:
            victim = max(self._tcp.values(), key=lambda s: s.buffered, default=None)
            if victim is None or victim.buffered == 0:
                break
            b0 = victim.buffered
            released = victim.release_buffers(ts, frame)
            self._buffered -= b0 - victim.buffered
            if victim is current:
                evs.extend(released)
            else:
                out.extend([(victim, e) for e in released])
