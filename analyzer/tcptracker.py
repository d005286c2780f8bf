"""The TCP tracker (`TCPTracker`): what one TCP connection (TLS → HTTP → CSTP) carried; and `ChannelStats`, the
statistics of a CSTP or DTLS channel (the UDP flow's tracker is analyzer/dtlsflow.py `DTLSFlow`).

A tracker is fed the flow layer's events (dissectors/flows.py) and drives the sans-I/O dissectors stacked on top
(TLS, HTTP, CSTP). It keeps a bounded summary — never the whole byte stream — so memory stays flat however long
the capture. Trackers are the input of the session model (analyzer/phases/). The name says tracker, not
connection: "connection" is the TLS and DTLS layers' word (dissectors/tls/connection.py TLSConnection,
dissectors/dtls/connection.py DTLSConnection).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dissectors import cstp as cstp_mod
from dissectors import flows as flows_mod
from dissectors.dtls.psk import PSK_LABEL, PSK_LENGTH
from dissectors.http import (
    NO_HEADERS,
    HTTPError,
    HTTPStream,
    Request,
    Response,
    TunnelEstablished,
    hands_out_tunnel,
)
from dissectors.tls import events as tls_ev
from dissectors.tls.names import cipher_suite_name

from .inner import InnerAttempts
from .keyless import CSTP_HEADER, TunnelEstimate, guess_protection, protection, tls13_finished_length
from .plainhttp import PlainHTTP, starts_http

if TYPE_CHECKING:
    from .host import TrackerHost

MAX_EXCHANGES = 200
MAX_PROBLEMS = 50
MAX_SAMPLES = 200
GUESS_EVERY = 32  # application-data records between two guesses of a protection (`TCPTracker._guess_estimate`)
MAX_CONTROLS = 2000
#: timeline buckets held per channel (both directions): past it they are made twice as wide (ChannelStats._widen)
MAX_TIMELINE = 4096
_WIDEST = 1 << 64  # seconds: the widest timeline bucket (every time of a capture in two per direction)


_TYPE_NAMES = {int(t): t.name for t in cstp_mod.CSTPType}
# CSTP frame types as plain ints: IntEnum comparisons cost a Python-level call each on the per-frame path
_DATA, _COMPRESSED = int(cstp_mod.DATA), int(cstp_mod.CSTPType.COMPRESSED_DATA)
_DPD_REQ, _DPD_RESP, _KEEPALIVE = int(cstp_mod.DPD_REQ), int(cstp_mod.DPD_RESP), int(cstp_mod.KEEPALIVE)
_DISCONNECT, _TERMINATE = int(cstp_mod.DISCONNECT), int(cstp_mod.CSTPType.TERMINATE)
_CSTP_HEADER_LEN = cstp_mod.CSTP_HEADER_LEN  # where a CSTP frame's payload starts


# an inner packet's first 8 bytes: version/IHL, IPv4 total length, IPv6 payload length (= IPv4 id), IPv4 flags and
# fragment offset
_INNER_IP = struct.Struct("!BxHHH").unpack_from


def _new_dir_counts() -> dict:
    return {"c2s": {}, "s2c": {}}


def capture_missed(c, direction: str | None = None, since: float | None = None) -> list[dict]:
    """The TCP data a connection's capture itself missed (`TCPTracker.gaps` but a snapshot length's cuts): of
    ``direction`` only, and given up on at ``since`` or later, when given."""
    return [g for g in getattr(c, "gaps", ()) if not g.get("snapped")
            and (direction is None or g["direction"] == direction) and (since is None or g["ts"] >= since)]


@dataclass
class Exchange:
    """One HTTP request and its response (response None if never seen)."""

    request: Request
    response: Response | None = None


@dataclass
class ChannelStats:
    """CSTP or DTLS channel statistics: frames and bytes per type and direction, DPD, keepalives, inner data."""

    frames: dict = field(default_factory=_new_dir_counts)  # dir -> type name -> [count, bytes]
    first_data: dict = field(default_factory=dict)  # dir -> (ts, frame)
    last_data: dict = field(default_factory=dict)
    dpd: list = field(default_factory=list)  # [{"direction", "ts", "frame", "answered_ts", "answer_frame", "rtt"}]
    dpd_total: dict = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    dpd_unanswered: int = 0
    keepalives: dict = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    keepalive_times: dict = field(default_factory=lambda: {"c2s": [], "s2c": []})
    disconnect: dict | None = None  # {"direction", "type", "reason", "ts", "frame"}
    inner: dict = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    inner_bytes: dict = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    inner_max: dict = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    inner_v6: int = 0
    oversize: list = field(default_factory=list)  # inner packets larger than the tunnel MTU (bounded)
    oversize_total: int = 0
    fragments: int = 0  # inner IPv4 fragments
    truncated_total: int = 0  # inner packets shorter than their IP header says (cut by the sender)
    mtu_probes: list = field(default_factory=list)  # DTLS: padded DPD-REQs (bounded)
    #: inner traffic over time, for plots: (direction, [start second, bytes, packets, end second]) per bucket in the
    #: order they began; one-second buckets, twice as wide each time MAX_TIMELINE of them are held (`_widen`)
    timeline: list = field(default_factory=list)
    last_any: dict = field(default_factory=dict)  # dir -> ts of the last frame of any type
    first_any: dict = field(default_factory=dict)
    max_gap: dict = field(default_factory=dict)  # dir -> (seconds, from_ts, to_ts, frame): longest silence
    #: (direction, frame, type name, payload length) of every frame that is not DATA (the first MAX_CONTROLS):
    #: the frame class per record, which the keyless agreement measurement compares (analyzer/agreement.py)
    controls: list = field(default_factory=list)
    #: the client's TCP connects and DNS lookups inside the tunnel and their answers (analyzer/inner.py), made on
    #: the first packet that is one
    inner_attempts: InnerAttempts | None = None
    _pending_dpd: dict = field(default_factory=dict)
    _bucket: dict = field(default_factory=dict)  # direction -> its latest timeline bucket
    _width: int = 1  # seconds per timeline bucket

    def add(self, direction: str, ftype, payload_len: int, ts: float, frame: int, packet: bytes | None,
            mtu: int | None, payload: bytes = b"", sink=None, channel: str = "cstp") -> None:
        t = int(ftype)  # plain int comparisons: IntEnum ones cost a Python-level call each
        name = _TYPE_NAMES.get(t) or f"0x{t:02x}"
        if t == _DATA or t == _COMPRESSED:  # the hot path
            self.data(direction, ts, frame, packet, 0, mtu, sink, channel, name, payload_len)
            return
        last = self.last_any.get(direction)
        if last is not None:
            gap = ts - last
            best = self.max_gap.get(direction)
            if best is None or gap > best[0]:
                self.max_gap[direction] = (gap, last, ts, frame)
        self.last_any[direction] = ts
        self.first_any.setdefault(direction, ts)
        c = self.frames[direction].setdefault(name, [0, 0])
        c[0] += 1
        c[1] += payload_len
        if len(self.controls) < MAX_CONTROLS:
            self.controls.append((direction, frame, name, payload_len))
        other = "s2c" if direction == "c2s" else "c2s"
        if t == _DPD_REQ:
            self.dpd_total[direction] += 1
            entry = {"direction": direction, "ts": ts, "frame": frame, "size": payload_len, "answered_ts": None,
                     "answer_frame": None, "rtt": None}
            if channel == "dtls" and payload_len > 100:
                if len(self.mtu_probes) < MAX_SAMPLES:
                    self.mtu_probes.append(entry)
            elif len(self.dpd) < MAX_SAMPLES:
                self.dpd.append(entry)
            prev = self._pending_dpd.get(direction)
            if prev is not None:
                self.dpd_unanswered += 1
            self._pending_dpd[direction] = entry
        elif t == _DPD_RESP:
            req = self._pending_dpd.pop(other, None)
            if req is not None:
                req["answered_ts"] = ts
                req["answer_frame"] = frame
                req["rtt"] = round(ts - req["ts"], 6)
        elif t == _KEEPALIVE:
            self.keepalives[direction] += 1
            if len(self.keepalive_times[direction]) < MAX_SAMPLES:
                self.keepalive_times[direction].append(ts)
        elif t == _DISCONNECT or t == _TERMINATE:
            if self.disconnect is None:
                self.disconnect = {"direction": direction, "type": name, "ts": ts, "frame": frame,
                                   "reason": cstp_mod.parse_disconnect_reason(payload)}

    def data(self, direction: str, ts: float, frame: int, packet: bytes | None, start: int, mtu: int | None,
             sink=None, channel: str = "cstp", name: str = "DATA", wire_len: int | None = None) -> None:
        """One DATA frame carrying the inner packet ``packet[start:]`` (the fast lanes' entry, which pass the
        decrypted record and where the packet starts in it rather than copy the packet out; `add` of a DATA or
        COMPRESSED DATA frame comes here too: ``name`` its type, ``wire_len`` its payload length when ``packet``
        is not the payload, e.g. expanded, or None when it could not be)."""
        last_any = self.last_any
        last = last_any.get(direction)
        if last is not None:
            gap = ts - last
            best = self.max_gap.get(direction)
            if best is None or gap > best[0]:
                self.max_gap[direction] = (gap, last, ts, frame)
        else:
            self.first_any.setdefault(direction, ts)
        last_any[direction] = ts
        n = 0 if packet is None else len(packet) - start
        c = self.frames[direction].get(name)
        if c is None:
            c = self.frames[direction][name] = [0, 0]
        c[0] += 1
        c[1] += n if wire_len is None else wire_len
        self.inner[direction] += 1
        if direction not in self.first_data:
            self.first_data[direction] = (ts, frame)
        self.last_data[direction] = (ts, frame)
        if packet is not None:
            self.inner_bytes[direction] += n
            # the length the IP header claims: a packet cut to the tunnel MTU by the sender shows here
            claimed = n
            if n >= 20:  # one unpack for the IPv4 and IPv6 fields below (speed)
                vihl, total, plen6, fragw = _INNER_IP(packet, start)
                ver = vihl >> 4
                proto, at, icmp = -1, 0, -2  # (no protocol read: nothing matches below)
                if ver == 4:
                    claimed = total
                    if fragw & 0x3FFF:  # more fragments, or a fragment offset
                        self.fragments += 1
                    else:
                        proto, at, icmp = packet[start + 9], start + ((vihl & 0x0F) << 2), 1
                elif ver == 6 and n >= 40:
                    claimed = plen6 + 40
                    self.inner_v6 += 1
                    proto, at, icmp = packet[start + 6], start + 40, 58
                # what the client tried to reach (analyzer/inner.py): only TCP SYNs and resets, UDP port 53 and ICMP
                # are read further — bulk traffic costs these byte reads
                if proto == 6:
                    if at + 13 < start + n and packet[at + 13] & 0x06:
                        self._attempt(direction, packet, start, ts, frame)
                elif proto == 17:
                    if at + 4 <= start + n and ((packet[at + 2] == 0 and packet[at + 3] == 53) or
                                                (packet[at] == 0 and packet[at + 1] == 53)):
                        self._attempt(direction, packet, start, ts, frame)
                elif proto == icmp or (icmp == 58 and proto in (0, 43, 44, 60)):
                    # (IPv6 extension headers before the transport's: InnerAttempts walks them; rare, read whole)
                    self._attempt(direction, packet, start, ts, frame)
            else:
                ver = packet[start] >> 4 if n else 0
            size = n if n > claimed else claimed
            if size > self.inner_max[direction]:
                self.inner_max[direction] = size
            if claimed > n:
                self.truncated_total += 1
            if mtu and size > mtu:
                self.oversize_total += 1
                if len(self.oversize) < MAX_SAMPLES:
                    df = bool(ver == 6 or (n > 6 and packet[start + 6] & 0x40))
                    self.oversize.append({"direction": direction, "ts": ts, "frame": frame, "length": size,
                                          "carried": n, "df": df})
            b = self._bucket.get(direction)
            if b is not None and b[0] <= ts < b[3]:
                b[1] += n
                b[2] += 1
            else:
                self._new_bucket(direction, ts, n)
            if sink is not None:
                sink(channel, direction, ts, frame, packet[start:] if start else packet)

    def _attempt(self, direction: str, packet, start: int, ts: float, frame: int) -> None:
        a = self.inner_attempts
        if a is None:
            a = self.inner_attempts = InnerAttempts()
        a.note(direction, packet, start, ts, frame)

    def _new_bucket(self, direction: str, ts: float, n: int) -> None:
        """A packet of ``n`` inner bytes outside the direction's latest timeline bucket: a new bucket (the timeline
        widened first when it is full; kept out of it when even the widest buckets do not fit: times scattered
        over billions of years, a damaged or hostile capture)."""
        if len(self.timeline) >= MAX_TIMELINE and self._width < _WIDEST:
            self._widen()
            b = self._bucket.get(direction)
            if b is not None and b[0] <= ts < b[3]:
                b[1] += n
                b[2] += 1
                return
        w = self._width
        sec = int(ts // w) * w  # (floor: a time before 1970 too)
        b = [sec, n, 1, sec + w]
        self._bucket[direction] = b
        if len(self.timeline) < MAX_TIMELINE:
            self.timeline.append((direction, b))

    def _widen(self) -> None:
        """Twice as wide buckets, as often as needed to hold half of MAX_TIMELINE (up to _WIDEST): each merged into
        the bucket of its direction and wider span, in the order they began. Widths are powers of two, buckets start
        at multiples of theirs: each wider bucket holds exactly the packets whose second falls in it. Memory per
        channel stays bounded however long the capture, and a plot still spans the whole of it."""
        timeline = self.timeline
        while len(timeline) > MAX_TIMELINE // 2 and self._width < _WIDEST:
            w = self._width = self._width * 2
            merged: dict = {}
            out: list = []
            for d, b in timeline:
                start = b[0] // w * w
                m = merged.get((d, start))
                if m is None:
                    m = merged[(d, start)] = [start, b[1], b[2], start + w]
                    out.append((d, m))
                else:
                    m[1] += b[1]
                    m[2] += b[2]
            timeline = out
            self._bucket = {d: merged.get((d, b[0] // w * w), b) for d, b in self._bucket.items()}
        self.timeline = timeline

    def summary(self) -> dict:
        def _frames(d):
            return {k: {"count": v[0], "bytes": v[1]} for k, v in sorted(d.items())}

        rtts = [d["rtt"] for d in self.dpd if d["rtt"] is not None]
        return {
            "frames": {"c2s": _frames(self.frames["c2s"]), "s2c": _frames(self.frames["s2c"])},
            "inner_packets": dict(self.inner), "inner_bytes": dict(self.inner_bytes),
            "inner_max_length": dict(self.inner_max), "inner_ipv6_packets": self.inner_v6,
            "inner_ipv4_fragments": self.fragments,
            "first_data": {k: v[0] for k, v in self.first_data.items()},
            "last_data": {k: v[0] for k, v in self.last_data.items()},
            "dpd": {"requests": dict(self.dpd_total), "answered": len(rtts),
                    "rtt_max": max(rtts) if rtts else None,
                    "rtt_median": sorted(rtts)[len(rtts) // 2] if rtts else None,
                    "exchanges": self.dpd[:50]},
            "keepalives": dict(self.keepalives),
            "keepalive_times": {k: v[:50] for k, v in self.keepalive_times.items()},
            "disconnect": self.disconnect,
            "oversize_packets": {"count": self.oversize_total, "samples": self.oversize[:20]},
            "truncated_packets": self.truncated_total,
            "first_frame_ts": min(self.first_any.values()) if self.first_any else None,
            "last_frame_ts": max(self.last_any.values()) if self.last_any else None,
            "silent_gaps": {k: {"seconds": round(v[0], 3), "from": v[1], "to": v[2], "frame": v[3]}
                            for k, v in self.max_gap.items()},
            "mtu_probes": self.mtu_probes[:50],
        }

    def series(self) -> list[tuple[str, int, int, int]]:
        """(direction, second, bytes, packets) buckets of inner traffic, for plots: one second each, or (long
        channels) `_width` seconds from that second."""
        return [(d, b[0], b[1], b[2]) for d, b in self.timeline]


def find_tls_record_boundary(data: bytes) -> int | None:
    """Where the first whole TLS record starts in ``data``, a piece of a stream joined in the middle.

    A candidate offset must hold a record header (content type 20–23, version 3.1–3.3, length ≤ 2^14 + 2048)
    followed either by the end of ``data`` or by another valid header: two headers in a row, or one ending
    exactly at the end of the segment, are what a capture cut inside a TLS stream shows (a segment usually ends
    on a record boundary). None when no such offset exists in the first 16 KiB + 5 bytes.
    """
    n = len(data)
    limit = min(n - 5, (1 << 14) + 2048 + 5)
    for off in range(0, max(limit + 1, 0)):
        if data[off] not in (20, 21, 22, 23) or data[off + 1] != 3 or data[off + 2] not in (1, 2, 3):
            continue
        length = (data[off + 3] << 8) | data[off + 4]
        if length == 0 or length > (1 << 14) + 2048:
            continue
        nxt = off + 5 + length
        if nxt == n:
            return off
        if nxt + 5 <= n and data[nxt] in (20, 21, 22, 23) and data[nxt + 1] == 3 and data[nxt + 2] in (1, 2, 3):
            return off
    return None


def side_record(side) -> tuple:
    """(first ts, first frame, last ts, last frame, pauses) of a direction (dissectors.flows.Side / a TCP stream's
    half, or such a tuple already); first frame 0: it sent nothing."""
    if isinstance(side, tuple):
        return side
    return side.first_ts, side.first_frame, side.seen_ts, side.seen_frame, list(side.quiet or ())


class FlowTracker:
    """What every flow's tracker (`TCPTracker`, analyzer/dtlsflow.py `DTLSFlow`) knows of its flow: ``index``, its
    tcp.stream / udp.stream number in ``capture`` (the capture file it was first seen in, None when the frames
    were not named); ``numbers``, the (capture ordinal, stream number) of every capture it has packets in (the
    flow table's list, which grows when the flow runs on into the next file); the client and server (address,
    port); first and last packet (time, frame); ``quiet``, the flow's long pauses (the flow table's list,
    dissectors.flows.note_quiet: (from, to, frame before, frame after) of every pause of QUIET_MIN seconds or more
    between two of its packets, either way; the MAX_QUIET longest) and ``sides`` those of each direction."""

    def __init__(self, index: int, client: tuple[str, int], server: tuple[str, int], ts: float, frame: int, *,
                 capture: str | None = None, numbers: list | None = None, quiet: list | None = None,
                 sides: tuple | None = None) -> None:
        self.index = index
        self.capture = capture
        self.numbers = numbers if numbers is not None else [(0, index)]
        self.quiet = quiet if quiet is not None else []
        #: the flow's directions ("c2s": from the flow's first sender / the TCP client; dissectors.flows.Side): each
        #: one's first and last packet and its pauses of QUIET_MIN s or more between two of its own packets — the flow
        #: table's objects until `keep_sides` makes plain tuples of them (end of capture)
        self.sides = sides
        self.client = client
        self.server = server
        self.first_ts = ts
        self.first_frame = frame
        self.last_ts = ts
        self.last_frame = frame
        self.duplicates = 0  # segments or records the capture holds twice (dissectors.flows.Duplicate, DTLSDuplicate)
        #: frames of this flow the capture cut short (its snaplen: a packet's end not captured), the first of them
        #: and the most bytes captured of one
        self.snapped = 0
        self.snapped_frame: int | None = None
        self.snaplen = 0
        self._snap_last: int | None = None

    def keep_sides(self) -> None:
        """Its directions' pause records as plain tuples (first ts, first frame, last ts, last frame, pauses), no
        longer the flow table's objects (end of capture: a tracker goes to another process or a store alone)."""
        if self.sides is not None and not isinstance(self.sides[0], tuple):
            self.sides = tuple(side_record(s) for s in self.sides)

    def note_snapped(self, frame: int, caplen: int) -> None:
        """Frame ``frame`` of this flow was captured short, ``caplen`` bytes of it (counted once per frame)."""
        if frame == self._snap_last:
            return
        self._snap_last = frame
        self.snapped += 1
        if self.snapped_frame is None:
            self.snapped_frame = frame
        if caplen > self.snaplen:
            self.snaplen = caplen


class TCPTracker(FlowTracker):
    """One TCP connection: TLS handshake and records, HTTP exchanges, and the CSTP tunnel after CONNECT.

    ``index``, ``numbers``… as for every `FlowTracker` (``index`` is a tcp.stream number); ``host``
    (analyzer/host.py) is told of inner packets and of an accepted CONNECT.
    """

    def __init__(self, index: int, client: tuple[str, int], server: tuple[str, int], ts: float, frame: int,
                 keys, session_cache, host: TrackerHost, *, capture: str | None = None,
                 numbers: list | None = None, quiet: list | None = None,
                 sides: tuple | None = None) -> None:
        from dissectors.tls.connection import TLSConnection  # noqa: PLC0415

        super().__init__(index, client, server, ts, frame, capture=capture, numbers=numbers, quiet=quiet,
                         sides=sides)
        self.is_tls: bool | None = None  # decided on the first payload byte
        self.tls = TLSConnection(keys, session_cache=session_cache)
        self.http = HTTPStream()
        self.host = host
        self.client_hello: tls_ev.ClientHello | None = None
        self.server_hello: tls_ev.ServerHello | None = None
        self.certificates: tls_ev.CertificateMsg | None = None
        self.client_certificate: tls_ev.CertificateMsg | None = None
        self.certificate_request: tls_ev.CertificateRequestMsg | None = None
        self.handshake_frames: list[int] = []
        self.handshake_done_ts: float | None = None
        self.alerts: list[tls_ev.Alert] = []
        self.decryption: dict = {"c2s": None, "s2c": None}  # last DecryptionStatus per direction
        self.app_records = {"c2s": 0, "s2c": 0}
        self.app_bytes = {"c2s": 0, "s2c": 0}
        self.encrypted_records = {"c2s": 0, "s2c": 0}
        self.encrypted_bytes = {"c2s": 0, "s2c": 0}
        self.exchanges: list[Exchange] = []
        self.problems: list[dict] = []
        self.gaps: list[dict] = []
        self._fin_or_gap: dict[str, dict] = {}  # direction -> a one-byte gap not yet followed by data
        self._lost_answers = False  # the server's decrypted side lost bytes since its last answer
        self._lost_requests = False  # the client's decrypted side lost bytes since its last request
        self.retransmissions = {"c2s": 0, "s2c": 0}
        self.retransmission_frames: list[int] = []
        self.first_retransmission_ts: float | None = None
        self.segments = {"c2s": 0, "s2c": 0}
        self.closed: list[dict] = []
        self.tunnel_ts: float | None = None
        self.tunnel_frame: int | None = None
        self.tunnel: ChannelStats | None = None
        self.tunnel_mtu: int | None = None
        self.first_app_ts: float | None = None
        # keyless reading and captures cut in the middle of a connection
        self.syn_seen: bool | None = None  # set by the pipeline from the TCP stream (None: unknown)
        #: the TTL (hop limit) of the client's SYN ("c2s") and the server's SYN-ACK ("s2c") as captured, set by the
        #: pipeline from the TCP stream: what a reset from that side should arrive with
        self.handshake_ttl: dict[str, int] = {}
        #: segments with data a side sent after its own reset (set by the pipeline at the end: a reset that side
        #: did not make — a device in between forged it)
        self.after_reset: dict[str, int] = {}
        self.started_before_capture = False  # no SYN and the first bytes were not a ClientHello
        self.first_record_type: int | None = None  # TLS content type of the first record seen
        self.resync_skipped = {"c2s": 0, "s2c": 0}  # bytes skipped to find a record boundary (mid-stream start)
        self._resync = {"c2s": False, "s2c": False}
        self.record_sizes: dict = {"c2s": [], "s2c": []}  # encrypted application-data records: (ts, length, frame)
        #: every encrypted application-data record read as a CSTP frame by its size (analyzer/keyless.py); the
        #: records before the tunnel (HTTP) are taken back once the keyless reading finds the CONNECT
        self.cstp_estimate: TunnelEstimate | None = None
        self._estimate_tried = False
        self._hs13: list | None = None  # TLS 1.3: [client records seen, Finished record length, held records]
        #: TLS 1.3 handshake records the estimate did not take (`_handshake13`): (direction, ts, length, frame)
        self.estimate_withheld: list = []
        #: a connection whose handshake was before the capture: the protection its records' sizes fit
        #: (`keyless.guess_protection`; the name of a `keyless.GUESS_CANDIDATES` entry), which sizes its estimate
        self.guessed_protection: str | None = None
        self._unsampled = False  # an application-data record did not fit in record_sizes (no guess then)
        self.other_bytes = 0  # payload bytes of a connection that is not TLS
        #: a connection in the clear whose client spoke HTTP first: its first exchanges (analyzer/plainhttp.py)
        self.plain_http: PlainHTTP | None = None
        self.certificate_verify: dict | None = None  # the client's CertificateVerify (frame, ts), when seen
        #: a connection through an HTTP proxy: {frame, time, request (CONNECT line), target, response (status line),
        #: status}; the TLS connection runs inside it, after both HTTP headers (`_proxy_header`)
        self.proxy: dict | None = None
        self._proxy_head: dict | None = None
        self._proxy_skip = 0  # bytes of a refusal's body (407) still to come from the proxy
        self.lane_flow = None  # the TCP stream whose fast lanes (analyzer/tcplane.py) are open
        self.tunnel_framers: dict[str, object] = {}  # direction -> HTTPStream.tunnel_framer, once there is one

    # -- helpers ---------------------------------------------------------------------------------------
    def add_problem(self, kind: str, message: str, ts: float, frame: int) -> None:
        """Note a problem of this connection (bounded: the first MAX_PROBLEMS)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"kind": kind, "message": message, "ts": ts, "frame": frame})

    @property
    def key(self) -> str:
        return f"tcp:{self.index}"

    # -- input -----------------------------------------------------------------------------------------
    def _late_gap(self, direction: str) -> None:
        """Data after a one-byte gap of ``direction``: the byte was data, the gap a gap."""
        gap = self._fin_or_gap.pop(direction, None)
        if gap is not None:
            self.gaps.append(gap)

    def on_flow_event(self, ev) -> None:
        t = type(ev)
        if t is flows_mod.StreamData:
            self.segments[ev.direction] += 1
            if self._fin_or_gap:
                self._late_gap(ev.direction)
            self.last_ts = ev.ts
            self.last_frame = ev.frame
            data = ev.data
            if self.is_tls is None and self.proxy is None and ev.direction == "c2s" and data[:8] == b"CONNECT ":
                # a client behind an HTTP proxy: CONNECT host:port and the proxy's answer in the clear, then TLS
                self.proxy = {"frame": ev.frame, "time": ev.ts}
                self._proxy_head = {"c2s": bytearray(), "s2c": bytearray()}
            if self._proxy_head is not None and self._proxy_head.get(ev.direction) is not None:
                data = self._proxy_header(ev.direction, data, ev.ts, ev.frame)
                if not data:
                    return
            if self.is_tls is None:
                self.is_tls = len(data) >= 3 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 3
                if not self.is_tls and self.syn_seen is False:
                    off = find_tls_record_boundary(data)
                    if off is not None:  # a capture started in the middle of this connection
                        self.is_tls = True
                if not self.is_tls:
                    self.add_problem("not-tls", "stream does not start with a TLS record", ev.ts, ev.frame)
                    self.other_bytes += len(data)
                    if ev.direction == "c2s" and starts_http(data, self.server[1]):
                        self.plain_http = PlainHTTP()
                        self.plain_http.feed(ev.direction, data, ev.ts, ev.frame)
                    return
                self.first_record_type = data[0] if data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 3 else 0x17
                if self.syn_seen is False and self.first_record_type != 0x16:
                    self.started_before_capture = True
                    self._resync = {"c2s": True, "s2c": True}
            if self.is_tls:
                if self._resync[ev.direction]:
                    # mid-stream start: the first bytes of each direction may begin inside a record
                    self._resync[ev.direction] = False
                    off = find_tls_record_boundary(data)
                    if off is None:
                        self.resync_skipped[ev.direction] += len(data)
                        self._resync[ev.direction] = True
                        return
                    if off:
                        self.resync_skipped[ev.direction] += off
                        data = data[off:]
                for tev in self.tls.feed(ev.direction, data, ev.ts, ev.frame):
                    self.on_tls_event(tev)
        elif t is flows_mod.Gap:
            snapped = ev.frame == self._snap_last  # the end of a segment the capture cut short, not a lost packet
            if len(self.gaps) < MAX_PROBLEMS:
                gap = {"direction": ev.direction, "seq": ev.seq, "length": ev.length, "ts": ev.ts, "frame": ev.frame}
                if snapped:
                    gap["snapped"] = True
                if ev.length == 1 and not snapped:
                    # one sequence number: most likely a FIN the capture missed (the peer's ACK counts it), unless
                    # data follows in this direction (then it was a byte of data: `_late_gap`)
                    self._fin_or_gap[ev.direction] = gap
                else:
                    self.gaps.append(gap)
            if self.is_tls:
                for tev in self.tls.gap(ev.direction, ev.length, ev.ts, ev.frame, snapped) or ():
                    self.on_tls_event(tev)
                # the plaintext has a hole too (or will have, once keys open the records): HTTP looks for its next
                # message
                if self.http.gap(ev.direction):
                    if ev.direction == "s2c":
                        self._lost_answers = True
                    else:
                        self._lost_requests = True
        elif t is flows_mod.Duplicate:
            self.duplicates += 1  # a copy the capture made, not a retransmission
        elif t is flows_mod.Retransmission:
            self.retransmissions[ev.direction] += 1
            if self.first_retransmission_ts is None:
                self.first_retransmission_ts = ev.ts
            if len(self.retransmission_frames) < MAX_PROBLEMS:
                self.retransmission_frames.append(ev.frame)
        elif t is flows_mod.StreamClosed:
            self.closed.append({"direction": ev.direction, "reason": ev.reason, "ts": ev.ts, "frame": ev.frame}
                               | ({"ttl": ev.ttl} if ev.ttl is not None else {}))
            self.last_ts = ev.ts
            self.last_frame = ev.frame

    @property
    def in_proxy_header(self) -> bool:
        """An HTTP proxy's CONNECT or answer (or a refusal's body) still being read in a direction: its bytes are no
        TLS yet (no fast lane may take them: analyzer/pipeline.py `_offer_tcp_lane`)."""
        head = self._proxy_head
        return bool(self._proxy_skip) or (head is not None and any(v is not None for v in head.values()))

    def _proxy_header(self, direction: str, data, ts: float, frame: int) -> bytes:
        """The bytes of ``direction`` after its proxy header (the CONNECT request or the proxy's answer, RFC 9110
        §9.3.6), b"" while the header goes on. A header past 16 KiB is no proxy's: the bytes go on as they are.
        An answer other than 2xx (407 Proxy Authentication Required: the client asks again with credentials, on
        the same connection) is noted in ``proxy["refused"]`` (the first 10), its body (Content-Length) skipped,
        and both directions expect another CONNECT and answer."""
        while True:
            if direction == "s2c" and self._proxy_skip:  # the body of a refusal
                k = min(self._proxy_skip, len(data))
                self._proxy_skip -= k
                data = data[k:]
                if not data:
                    return b""
            buf = self._proxy_head[direction]
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) <= 16384:
                    return b""
                self._proxy_head[direction] = None
                return bytes(buf)
            self._proxy_head[direction] = None
            head = bytes(buf[:end]).decode("latin-1", "replace").split("\r\n")
            line = head[0][:300]
            rest = bytes(buf[end + 4:])
            if direction == "c2s":
                parts = line.split(" ")
                self.proxy.update(request=line, target=parts[1] if len(parts) > 1 else None)
                return rest
            parts = line.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            self.proxy.update(response=line, status=status, response_frame=frame, response_time=ts)
            if status is None or 200 <= status < 300:
                return rest
            refused = self.proxy.setdefault("refused", [])
            if len(refused) < 10:
                refused.append({"status": status, "response": line, "frame": frame, "time": ts})
            length = next((v.strip() for k, _, v in (h.partition(":") for h in head[1:])
                           if k.strip().lower() == "content-length"), "0")
            self._proxy_skip = int(length) if length.isdigit() else 0
            self._proxy_head = {"c2s": bytearray(), "s2c": bytearray()}  # the next CONNECT and its answer
            data = rest  # (the refusal's body, then perhaps the next answer)
            if not data:
                return b""

    def on_lane_segment(self, where: tuple, data, view: tuple, ts: float, frame: int) -> bool:
        """The fast lane of ``direction`` of this connection's TCP ``stream`` (``where``: the pair; see
        analyzer/tcplane.py): ``data`` a raw frame of it and ``view`` its `dissectors.packet.plain_ipv4` view.
        Takes the segment when the TCP layer's common case does (`TCPStream.feed_next`, else False: nothing
        changed, the frame takes the general path) and does what `on_flow_event` does with the StreamData it would
        have made, the TLS layer's common case first (`TLSConnection.feed_application_data`). Only for a
        connection known to be TLS, past any search for a record boundary (the lanes open once the CSTP tunnel is
        up)."""
        stream, direction = where
        _proto, _addresses, seq, ack, flags, start, end = view
        if not stream.feed_next(direction, seq, ack, flags, end - start, ts, frame):
            return False
        if start == end:
            return True
        data = data[start:end]
        self.segments[direction] += 1
        self.last_ts = ts
        self.last_frame = frame
        contents = self.tls.feed_application_data(direction, data, frame)
        if contents is None:
            for tev in self.tls.feed(direction, data, ts, frame):
                self.on_tls_event(tev)
        elif contents:
            self.on_application_data(direction, contents, ts, frame)
        return True

    def on_tls_event(self, ev) -> None:
        """An event of the TLS layer (dissectors/tls) of this connection."""
        t = type(ev)
        if t is tls_ev.ApplicationData:
            self.on_application_data(ev.direction, (ev.data,), ev.ts, ev.frame)
        elif t is tls_ev.EncryptedRecord:
            self.encrypted_records[ev.direction] += 1
            self.encrypted_bytes[ev.direction] += ev.length
            if ev.content_type == 23:
                sizes = self.record_sizes[ev.direction]
                if len(sizes) < MAX_SAMPLES:
                    sizes.append((ev.ts, ev.length, ev.frame))
                else:
                    self._unsampled = True
                est = self.cstp_estimate
                if est is None and not self._estimate_tried:
                    est = self._start_estimate()
                if est is not None:
                    if self._hs13 is None:
                        est.add(ev.direction, ev.length, ev.ts, ev.frame)
                    else:
                        self._handshake13(est, ev.direction, ev.length, ev.ts, ev.frame)
            if ev.content_type == 23 and self.handshake_done_ts is None:
                self.handshake_done_ts = ev.ts
        elif t is tls_ev.ClientHello:
            if self.client_hello is None:
                self.client_hello = ev
            self.handshake_frames.append(ev.frame)
        elif t is tls_ev.ServerHello:
            if self.server_hello is None or self.server_hello.is_hello_retry_request:
                self.server_hello = ev
            self.handshake_frames.append(ev.frame)
        elif t is tls_ev.CertificateMsg:
            if ev.direction == "s2c":
                self.certificates = ev
            else:
                self.client_certificate = ev
            self.handshake_frames.append(ev.frame)
        elif t is tls_ev.CertificateRequestMsg:
            self.certificate_request = ev
            self.handshake_frames.append(ev.frame)
        elif t is tls_ev.HandshakeMessage:
            if len(self.handshake_frames) < 64:
                self.handshake_frames.append(ev.frame)
            if ev.name == "finished" and ev.direction == "c2s" and self.handshake_done_ts is None:
                self.handshake_done_ts = ev.ts
            elif ev.name == "certificate_verify" and ev.direction == "c2s" and self.certificate_verify is None:
                self.certificate_verify = {"frame": ev.frame, "time": ev.ts}
        elif t is tls_ev.Alert:
            if len(self.alerts) < MAX_PROBLEMS:
                self.alerts.append(ev)
        elif t is tls_ev.DecryptionStatus:
            self.decryption[ev.direction] = {"ok": ev.ok, "reason": ev.reason, "ts": ev.ts, "frame": ev.frame}
        elif t is tls_ev.RecordError:
            self.add_problem("tls-record", ev.message, ev.ts, ev.frame)

    def on_application_data(self, direction: str, contents, ts: float, frame: int) -> None:
        """The contents of the decrypted application-data records a segment completed (an ApplicationData event's
        one, or a fast lane's), in order, for the HTTP layer; once the tunnel is up, a content that is one whole
        CSTP frame takes the framer's common case (`CSTPFramer.take_frame` of `HTTPStream.tunnel_framer`)
        without events."""
        app_bytes = self.app_bytes
        self.app_records[direction] += len(contents)
        if self.first_app_ts is None:
            self.first_app_ts = ts
        if self.handshake_done_ts is None:
            self.handshake_done_ts = ts
        http = self.http
        framer = self.tunnel_framers.get(direction)
        if framer is None and http.tunnel:
            framer = http.tunnel_framer(direction)
            if framer is not None:  # it reads this direction from now on (HTTPStream.tunnel_framer)
                self.tunnel_framers[direction] = framer
        for data in contents:
            app_bytes[direction] += len(data)
            if framer is not None:
                ptype = framer.take_frame(direction, data, ts, frame)
                if ptype is not None:
                    stats = self.tunnel
                    if ptype == 0 and stats is not None:  # DATA (on_tunnel_frame, without the call: the bulk)
                        # the inner packet is data[CSTP_HEADER_LEN:], given as an offset: no copy
                        stats.data(direction, ts, frame, data, _CSTP_HEADER_LEN, self.tunnel_mtu,
                                   self.host.inner_packet, "cstp")
                    else:
                        payload = data[_CSTP_HEADER_LEN:]
                        self.on_tunnel_frame(direction, ptype, payload, None if ptype else payload, ts, frame)
                    continue
            for hev in http.feed(direction, data, ts, frame):
                self.on_http_event(hev)

    def on_tunnel_frame(self, direction: str, ptype: int, payload: bytes, packet: bytes | None, ts: float,
                        frame: int) -> None:
        """A CSTP frame of the tunnel: ``packet`` is the inner packet it carries (DATA: its payload; COMPRESSED
        DATA: the payload expanded, or None)."""
        stats = self.tunnel
        if stats is None:
            stats = self.tunnel = ChannelStats()
        if ptype == 0:
            stats.data(direction, ts, frame, payload, 0, self.tunnel_mtu, self.host.inner_packet, "cstp")
        else:
            stats.add(direction, ptype, len(payload), ts, frame, packet, self.tunnel_mtu, payload,
                      self.host.inner_packet, "cstp")

    def on_http_event(self, ev) -> None:
        """An event of the HTTP layer (dissectors/http) of this connection, CSTP frames included."""
        t = type(ev)
        if t is cstp_mod.CSTPFrame:
            self.on_tunnel_frame(ev.direction, ev.type, ev.payload, ev.packet, ev.ts, ev.frame)
        elif t is Request:
            self._lost_requests = False
            if len(self.exchanges) < MAX_EXCHANGES:
                self.exchanges.append(Exchange(ev))
        elif t is Response:
            waiting = [ex for ex in self.exchanges if ex.response is None]
            if not waiting and self._lost_requests and ev.status >= 200 and len(self.exchanges) < MAX_EXCHANGES:
                # an answer whose request was in bytes the capture missed: kept, its request unknown (method "")
                self._lost_requests = False
                ex = Exchange(Request("", "", "", NO_HEADERS, b"", ev.ts, ev.frame, ev.frame), ev)
                self.exchanges.append(ex)
                if 200 <= ev.status < 300 and hands_out_tunnel(ev.headers):
                    self._on_connect(ex)  # (a tunnel handed out: the answer of a CONNECT the capture missed)
                return
            if waiting and self._lost_answers and ev.status >= 200:
                # the server's bytes had a hole since: the answers before the last request's were in it
                # (HTTPStream.gap); a 1xx is no final answer, the next one will tell
                self._lost_answers = False
                waiting = waiting[-1:]
            for ex in waiting[:1]:
                ex.response = ev
                if ex.request.method == "CONNECT" and 200 <= ev.status < 300:
                    self._on_connect(ex)
        elif t is TunnelEstablished:
            self.tunnel_ts = ev.ts
            self.tunnel_frame = ev.frame
            if self.tunnel is None:
                self.tunnel = ChannelStats()
        elif t is HTTPError or t is cstp_mod.CSTPError:
            self.add_problem("http" if t is HTTPError else "cstp", ev.message, ev.ts, ev.frame)

    def _on_connect(self, ex: Exchange) -> None:
        h = ex.response.headers
        mtu = h.get("X-CSTP-MTU")
        try:
            self.tunnel_mtu = int(mtu) if mtu else None
        except ValueError:
            self.tunnel_mtu = None
        self.host.on_connect(self, ex)

    def _start_estimate(self) -> TunnelEstimate | None:
        """The CSTP-by-size reading of the undecrypted records, once the ServerHello named the suite."""
        sh = self.server_hello
        if sh is None:
            if self.started_before_capture or self.snapped:  # the ServerHello before the capture, or cut by it
                self._guess_estimate(final=False)
            return None
        self._estimate_tried = True
        suite = cipher_suite_name(sh.cipher_suite)
        prot = protection(suite, sh.version, dtls=False, etm=sh.encrypt_then_mac)
        if prot is not None:
            self.cstp_estimate = TunnelEstimate(CSTP_HEADER, prot)
            if sh.version >= 0x0304 and self.client_hello is not None and not self.started_before_capture:
                self._hs13 = [0, tls13_finished_length(prot, suite or ""), []]
        return self.cstp_estimate

    def _handshake13(self, est: TunnelEstimate, direction: str, length: int, ts: float, frame: int) -> None:
        """TLS 1.3 hides the rest of the handshake in application-data records: the gateway's encrypted flight
        (before the client's first record) and the client's Finished flight (up to the record of a Finished
        message's size among its first four, else its first record) are no tunnel frames — a browser's small
        EncryptedExtensions has a DISCONNECT's size. The records after the client's first are held until that is
        known (`analyzer.inference.records` leaves the same records out of its reading); those left out are in
        `estimate_withheld`."""
        hs = self._hs13
        rec = (direction, ts, length, frame)
        if direction == "s2c" and hs[0] == 0:
            self.estimate_withheld.append(rec)
            return
        if direction == "c2s":
            hs[0] += 1
            if length == hs[1]:  # the Finished: what was held was the client's flight
                self.estimate_withheld.extend(hs[2])
                self.estimate_withheld.append(rec)
                self._hs13 = None
                return
            if hs[0] == 1:
                self.estimate_withheld.append(rec)
                return
            if hs[0] > 4:
                self._release13(est)
                est.add(direction, length, ts, frame)
                return
        hs[2].append(rec)

    def _release13(self, est: TunnelEstimate) -> None:
        """No Finished-sized record in the client's first four: its first was the flight; the held records count."""
        held, self._hs13 = self._hs13[2], None
        for direction, ts, length, frame in held:
            est.add(direction, length, ts, frame)

    def _guess_estimate(self, final: bool) -> None:
        """A connection that was up before the capture started (no ServerHello names its suite): once every
        `GUESS_EVERY` application-data records, and at the end (``final``), while every record so far is in
        `record_sizes`, try the protection they fit (`keyless.guess_protection`); found, the estimate starts with
        every record so far (the one being counted included) and takes the later ones as they come."""
        sizes = self.record_sizes
        n = len(sizes["c2s"]) + len(sizes["s2c"])
        if self._unsampled:
            self._estimate_tried = True  # records were not kept: the estimate could not hold them all
            return
        if not n or (not final and n % GUESS_EVERY):
            return
        guess = guess_protection(sizes)
        if guess is None:
            return
        self._estimate_tried = True
        self.guessed_protection, prot = guess
        self.cstp_estimate = TunnelEstimate.from_sizes(CSTP_HEADER, prot, sizes)

    def finish(self, until: float | None = None) -> None:
        """The connection's end (the flows flushed); ``until``: when the capture ends (its last frame)."""
        if self.is_tls:
            for tev in self.tls.close(self.last_ts, self.last_frame):
                self.on_tls_event(tev)
        for hev in self.http.close():
            self.on_http_event(hev)
        if self.plain_http is not None:
            self.plain_http.finish()
        if (self.cstp_estimate is None and not self._estimate_tried and (self.started_before_capture or self.snapped)
                and self.server_hello is None and not self.decrypted):
            self._guess_estimate(final=True)
        if self.cstp_estimate is not None:
            if self._hs13 is not None:
                self._release13(self.cstp_estimate)
            self.cstp_estimate.finish(until)

    # -- queries ---------------------------------------------------------------------------------------
    @property
    def decrypted(self) -> bool:
        return self.app_records["c2s"] + self.app_records["s2c"] > 0

    @property
    def undecryptable(self) -> bool:
        """A TLS connection whose protected records were seen and none decrypted, both directions in step (no
        record boundary still searched for): what the keyless TCP lane takes (analyzer/tcplane.py)."""
        return (self.is_tls is True and not self.decrypted and not self._resync["c2s"] and not self._resync["s2c"]
                and self.encrypted_records["c2s"] + self.encrypted_records["s2c"] > 0)

    def export_psk(self) -> bytes | None:
        try:
            return self.tls.export_keying_material(PSK_LABEL, None, PSK_LENGTH)
        except Exception:  # noqa: BLE001 - no keys / unsupported: the caller reports "undecrypted"
            return None
