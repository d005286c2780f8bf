"""Two captures of the same traffic, taken at two points of its path: what happened between them.

Support asks for captures on both sides (the laptop and the gateway, or either side of a firewall) because one side
alone cannot tell a packet the path lost from one never sent, nor a reset a firewall forged from one the gateway
sent. This module pairs the packets of the two captures and says, flow by flow and direction by direction, which
packets passed the first point and never reached the second (lost between), which reached the second point without
having passed the first (added between: a forged reset, a middlebox's own packets), and what the path changed (the
addresses and ports of a NAT, the TTL of each router in between).

Pairing rests on what a path leaves alone:

* the transport payload: TLS records and DTLS datagrams are the same bytes at both points (unless something in
  between ends the TLS). A payload is known by its length and its first `PAYLOAD_PREFIX` bytes — enough to tell
  encrypted records apart, and what two captures with different snap lengths both hold (when one kept less, by its
  first `SHORT_PREFIX` bytes);
* for TCP, sequence numbers relative to each direction's own start: a firewall that randomises initial sequence
  numbers shifts a direction's numbers by a constant, found from the segments paired by payload. Data is compared
  as byte ranges, so a capture point that saw segments merged or split (offloads, a proxy) loses nothing;
* SYN, FIN and RST segments by their flags and relative sequence number.

Flows are paired by the payloads they share that no other connection sends (`distinctive`: encrypted records,
hellos; so across a NAT), or, when they carry none (a connect that failed), by the same addresses and ports. Which
capture is nearer the client follows from the routers' TTL, else from the pairs' times without trusting either
clock: a packet from the client reaches the nearer point first, one from the gateway the farther point first. The
same times give the offset between the two clocks and the path's one-way delay between the points.

A TLS connection something in between ended (TLS inspection) crosses neither point unchanged: the client's
connection and the device's are paired by which TLS client program made them (a device speaks TLS with its own
stack: another ClientHello fingerprint) and by their timing — each request and answer the device relays goes by at
both points at a constant shift each way (`_pair_relayed`), which also gives the clocks' offset when nothing else
crossed — or, without enough turns, by the one such connection that began at the same time (`_pair_intercepted`).

Pure: `compare` takes two `SideCapture` (packets already read: `read_side` is the edge that reads a file) and
returns a `PathReport`; no I/O, no clock.
"""
from __future__ import annotations

import bisect
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dissectors.flows import DUPLICATE_WINDOW
from dissectors.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

__all__ = ["PAYLOAD_PREFIX", "FlowPair", "Observed", "PathReport", "SideCapture", "compare", "merged",
           "payload_hint", "payload_key", "SHORT_PREFIX", "distinctive", "syn_mss"]

PAYLOAD_PREFIX = 32  # bytes of a payload that identify it (with its length)
#: bytes compared instead when a capture kept less than PAYLOAD_PREFIX of some payloads (a snap length of 96: tcpdump's
#: old default; Windows pktmon keeps 128 bytes of a frame by default, PAYLOAD_PREFIX and more)
SHORT_PREFIX = 16
SEQ_MOD = 1 << 32
EDGE_MARGIN = 0.1  # seconds (and twice the path's delay): a packet this near a capture's end may have been in flight
SLACK = 0.002  # seconds: clock offset error and jitter allowed around the path's least transfer time
MAX_SEGMENT = 1 << 17  # bytes: no TCP segment spans more (a TSO frame of 64 KiB at most)
#: bytes: a payload shorter than this does not pair two flows — the same few bytes recur in unrelated connections
#: (TLS 1.3's compatibility ChangeCipherSpec record, 6 bytes; a TCP keepalive's one byte)
MIN_VOTING_PAYLOAD = 20


@dataclass(slots=True)
class Observed:
    """One TCP or UDP packet as a capture point saw it."""

    ts: float
    frame: int
    src: str
    sport: int
    dst: str
    dport: int
    proto: int  # 6 TCP, 17 UDP
    ttl: int
    flags: int = 0  # TCP flags
    seq: int = 0  # TCP sequence number
    length: int = 0  # payload length the headers claim
    key: tuple | None = None  # (length, hash of the first PAYLOAD_PREFIX bytes), None: no payload or not enough of it
    short_key: tuple | None = None  # the same of the first SHORT_PREFIX bytes
    # a UDP payload's first byte and its fourteenth (a DTLS record's content type and handshake message type)
    hint: tuple = ()
    mss: int | None = None  # a SYN's MSS option
    # a TLS ClientHello's program (dissectors.tls.handshake.client_fingerprint), when the segment holds all of it
    hello_fp: tuple | None = None


def syn_mss(frame: bytes, sport: int, dport: int, seq: int) -> int | None:
    """The MSS option of a TCP SYN in the bytes of its frame (the header found by its ports and sequence number, the
    only 8 bytes of the frame they make up, most likely), None without one."""
    at = frame.find(struct.pack("!HHI", sport, dport, seq))
    if at < 0 or at + 20 > len(frame):
        return None
    end = min(len(frame), at + (frame[at + 12] >> 4) * 4)
    i = at + 20
    while i < end:
        kind = frame[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or frame[i + 1] < 2:
            break
        if kind == 2 and frame[i + 1] == 4 and i + 4 <= end:
            return int.from_bytes(frame[i + 2:i + 4], "big")
        i += frame[i + 1]
    return None


@dataclass
class SideCapture:
    """The packets of one capture point, in capture order, with the capture's name and time span."""

    name: str
    packets: list[Observed] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    errors: list[str] = field(default_factory=list)
    frames: int = 0  # every frame read (TCP/UDP or not): the next file's numbers go on from here (`merged`)
    files: list[str] = field(default_factory=list)  # the files of a capture point read as one (`merged`)


def merged(sides: list[SideCapture], name: str) -> SideCapture:
    """The pieces of one capture point (a ring buffer's files, in the order they were written) as one: frames
    numbered on through the files (as `mergecap -a` concatenates them), errors named by file."""
    out = SideCapture(name)
    base = 0
    for side in sides:
        for p in side.packets:
            p.frame += base
        out.packets += side.packets
        out.errors += [f"{side.name}: {e}" for e in side.errors]
        if side.first_ts is not None:
            out.first_ts = side.first_ts if out.first_ts is None else min(out.first_ts, side.first_ts)
            out.last_ts = side.last_ts if out.last_ts is None else max(out.last_ts, side.last_ts)
        base += side.frames
    out.frames = base
    return out


CLIENT_HELLO_TLS = ("tls", 22, 1)  # `Observed.hint` of a TCP segment that starts a TLS ClientHello
_TLS_CONTENT = (20, 21, 22, 23)


def payload_hint(proto: int, payload: bytes) -> tuple:
    """What `Observed.hint` keeps of a payload that starts a TLS or DTLS record: UDP, the record's content type, its
    handshake message type (or None) and its epoch (DTLS); TCP, ("tls", content type, handshake type or None) when
    the segment starts a TLS record; () for anything else (a record's continuation, another protocol)."""
    if not payload:
        return ()
    if proto == 17:
        if len(payload) >= 13 and payload[0] in _TLS_CONTENT and payload[1] == 0xFE:
            return (payload[0], payload[13] if len(payload) > 13 else None, (payload[3] << 8) | payload[4])
        return (payload[0], payload[13] if len(payload) > 13 else None, None)
    if len(payload) >= 5 and payload[0] in _TLS_CONTENT and payload[1] == 3:
        return ("tls", payload[0], payload[5] if payload[0] == 22 and len(payload) > 5 else None)
    return ()


def distinctive(p: Observed) -> bool:
    """A payload no other connection sends (so that two flows sharing it are one flow): encrypted records
    (application data; DTLS records of epoch 1 or later) and hellos (their randoms), any payload of another protocol
    over UDP — not a TLS or DTLS record whose bytes recur from session to session (a gateway's certificate, a PSK
    identity, ServerHelloDone, ChangeCipherSpec), nor a TCP segment that continues a record (its record unknown)."""
    h = p.hint
    if p.proto == 17:
        if not h or h[0] not in _TLS_CONTENT or h[2] is None:
            return True  # not DTLS
        return h[0] == 23 or h[2] >= 1 or (h[0] == 22 and h[1] in (1, 2, 3))
    if not h:
        return False
    return h[1] == 23 or (h[1] == 22 and h[2] in (1, 2))


def payload_key(payload: bytes, length: int, prefix: int = PAYLOAD_PREFIX) -> tuple | None:
    """What identifies a payload at both capture points: its length and its first ``prefix`` bytes; None when there
    is none, or too little of it was captured to tell (a snap length under the headers + ``prefix``)."""
    if length <= 0:
        return None
    head = payload[:prefix]
    if len(head) < min(prefix, length):
        return None
    return (length, hash(head))


class _Flow:
    """One TCP or UDP flow at one capture point: its client and server (the SYN's sender and receiver; without a
    SYN, the server is the end with the lower port: 443), and its packets split by direction — a copy the capture
    made of the packet before (within DUPLICATE_WINDOW) left out and counted."""

    __slots__ = ("c2s", "client", "copies", "first_frame", "first_ts", "index", "last_ts", "proto", "s2c", "server")

    def __init__(self, index: int, pkt: Observed) -> None:
        self.index = index
        self.proto = pkt.proto
        a, b = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
        if pkt.proto == 6 and pkt.flags & TCP_SYN:
            toward_server = not pkt.flags & TCP_ACK
        else:
            toward_server = pkt.dport <= pkt.sport
        self.client, self.server = (a, b) if toward_server else (b, a)
        self.c2s: list[Observed] = []
        self.s2c: list[Observed] = []
        self.first_ts = self.last_ts = pkt.ts
        self.first_frame = pkt.frame
        self.copies = 0

    def add(self, pkt: Observed) -> None:
        q = self.c2s if (pkt.src, pkt.sport) == self.client else self.s2c
        if q:
            last = q[-1]
            if (pkt.ts - last.ts <= DUPLICATE_WINDOW and pkt.key == last.key and pkt.seq == last.seq
                    and pkt.flags == last.flags and pkt.length == last.length):
                self.copies += 1
                return
        q.append(pkt)
        self.last_ts = pkt.ts

    def turn(self) -> None:
        """Swap client and server (the other capture shows the flow's start, this one did not)."""
        self.client, self.server = self.server, self.client
        self.c2s, self.s2c = self.s2c, self.c2s

    def label(self) -> dict:
        return {"protocol": "tcp" if self.proto == 6 else "udp", "client": _ep(self.client),
                "server": _ep(self.server), "first_frame": self.first_frame}


def _ep(ep: tuple) -> str:
    addr, port = ep
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _flows(side: SideCapture) -> list[_Flow]:
    flows: dict[tuple, _Flow] = {}
    out = []
    for p in side.packets:
        a, b = (p.src, p.sport), (p.dst, p.dport)
        k = (p.proto, a, b) if a <= b else (p.proto, b, a)
        f = flows.get(k)
        if f is None or (p.proto == 6 and p.flags & (TCP_SYN | TCP_ACK) == TCP_SYN and f.c2s
                         and f.last_ts + 1 < p.ts and not (f.c2s[-1].flags & TCP_SYN)):
            # a new SYN on a used address pair after the old flow's traffic: a new connection (port reuse)
            f = flows[k] = _Flow(len(out), p)
            out.append(f)
        f.add(p)
    return out


# -- the report ------------------------------------------------------------------------------------------------

@dataclass
class DirectionResult:
    """One direction of a paired flow: `sent` packets compared at the point they passed first, how many `arrived`
    at the other, the frames (of the first point) of those `lost` between, the frames (of the second point) of
    those `added` between."""

    upstream: str  # "a" or "b": the capture nearer the sender
    sent: int = 0
    arrived: int = 0
    lost: list[dict] = field(default_factory=list)  # {"frame", "ts", "kind"}
    added: list[dict] = field(default_factory=list)  # {"frame", "ts", "kind"}
    ttl_change: int | None = None  # the TTL the second point saw less the first's (routers in between: negative)
    mss: dict | None = None  # the SYN's MSS at each point ({"upstream", "downstream"}) when they differ
    largest_arrived: int = 0  # the longest payload that arrived
    syn_frame: int | None = None  # (the upstream SYN of `mss`)

    def to_json(self) -> dict:
        return {"upstream": self.upstream, "compared": self.sent, "arrived": self.arrived,
                "lost": len(self.lost), "lost_packets": self.lost[:50], "added": len(self.added),
                "added_packets": self.added[:50], "ttl_change": self.ttl_change, "mss": self.mss,
                "largest_arrived": self.largest_arrived}


@dataclass
class FlowPair:
    a: _Flow | None
    b: _Flow | None
    # "payload", "addresses", "tls-intercepted" (a TLS connection at each point, each with its own ClientHello: a
    # device in between ended the first and began the second), "" (seen at one point only)
    paired_by: str
    c2s: DirectionResult | None = None
    s2c: DirectionResult | None = None
    # filled by the caller: what the flow is in a VPN session ({"session", "connection", "role"} per side)
    roles: dict = field(default_factory=dict)
    # "tls-intercepted" told by the two connections' timing (`_pair_relayed`): {"lined_up", "turns"} — the turns of
    # both that line up, of those both could
    relay: dict | None = None

    @property
    def proto(self) -> int:
        return (self.a or self.b).proto

    def seen_between(self) -> bool:
        """Paired, or seen at one point only while the other captured (its packets lost or added between)."""
        return (self.a is not None and self.b is not None) or any(
            r is not None and (r.lost or r.added) for r in (self.c2s, self.s2c))

    def translated(self) -> dict | None:
        """The client's or the server's address or port as the other point saw it, when they differ (NAT)."""
        if self.a is None or self.b is None or self.paired_by == "tls-intercepted":
            return None
        out = {}
        if self.a.client != self.b.client:
            out["client"] = {"a": _ep(self.a.client), "b": _ep(self.b.client)}
        if self.a.server != self.b.server:
            out["server"] = {"a": _ep(self.a.server), "b": _ep(self.b.server)}
        return out or None

    def to_json(self) -> dict:
        return {"protocol": "tcp" if self.proto == 6 else "udp",
                "a": self.a.label() if self.a else None, "b": self.b.label() if self.b else None,
                "paired_by": self.paired_by or None, "translated": self.translated(),
                "client_to_server": self.c2s.to_json() if self.c2s else None,
                "server_to_client": self.s2c.to_json() if self.s2c else None,
                **({"roles": self.roles} if self.roles else {})}


@dataclass
class PathReport:
    a: SideCapture
    b: SideCapture
    pairs: list[FlowPair]
    nearer_client: str | None  # "a", "b", or None (not told: no pairs both ways, or no delay between the points)
    clock_offset: float | None  # b's clock less a's (seconds)
    one_way_delay: float | None  # the least time a packet took between the points (seconds)
    matched: int  # packets paired across the captures
    only_a: int  # flows seen at one point only
    only_b: int
    payload_bytes: int = PAYLOAD_PREFIX  # the bytes of each payload compared (SHORT_PREFIX: a capture kept fewer)
    # what gave clock_offset: "packets" (seen at both points), "timing" (nothing crossed both points unchanged: the
    # turns of connections a device relayed, `_pair_relayed`), None (not told)
    offset_from: str | None = None

    def summary(self) -> str:
        """One sentence for the reports: the other capture, which capture is nearer the client, what was paired,
        lost and added, the clocks."""
        nearer = {"a": "this capture", "b": "the other"}.get(self.nearer_client, "not told")
        lost = sum(len(r.lost) for p in self.pairs for r in (p.c2s, p.s2c) if r is not None)
        added = sum(len(r.added) for p in self.pairs for r in (p.c2s, p.s2c) if r is not None)
        n = len(self.b.packets)
        line = (f"other side: {self.b.name}, {n} TCP/UDP packet{'s' if n != 1 else ''}; nearer the client: {nearer}; "
                f"{self.matched} packet{'s' if self.matched != 1 else ''} seen at both points, {lost} lost and "
                f"{added} added between")
        if self.clock_offset is not None:
            line += (f"; its clock {self.clock_offset:+.3f} s from this one's, "
                     f"{(self.one_way_delay or 0.0) * 1000:.1f} ms between the points")
            if self.offset_from == "timing":
                line += " (told from the timing of the connections a device relayed)"
        return line

    def to_json(self) -> dict:
        return {"a": _side_json(self.a), "b": _side_json(self.b), "nearer_client": self.nearer_client,
                "clock_offset": self.clock_offset, "clock_offset_from": self.offset_from,
                "one_way_delay": self.one_way_delay,
                "packets_paired": self.matched, "flows_only_in_a": self.only_a, "flows_only_in_b": self.only_b,
                "payload_bytes_compared": self.payload_bytes,
                "flows": [p.to_json() for p in self.pairs if p.seen_between()]}


def _side_json(side: SideCapture) -> dict:
    return {"capture": ", ".join(side.files) if side.files else side.name, "packets": len(side.packets),
            "first": side.first_ts, "last": side.last_ts,
            "errors": side.errors[:10]}


# -- comparison ------------------------------------------------------------------------------------------------

def compare(a: SideCapture, b: SideCapture) -> PathReport:
    """Pair the flows and packets of two captures of the same traffic and tell, direction by direction, what was
    lost, added and changed between the two points."""
    prefix = PAYLOAD_PREFIX
    if any(p.key is None and p.short_key is not None for side in (a, b) for p in side.packets):
        # a capture kept less than PAYLOAD_PREFIX of some payloads: both are compared by their first SHORT_PREFIX
        # bytes (in place)
        prefix = SHORT_PREFIX
        for side in (a, b):
            for p in side.packets:
                p.key = p.short_key
    fa, fb = _flows(a), _flows(b)
    pairs = _pair_flows(fa, fb)
    for pr in pairs:
        if pr.a is not None and pr.b is not None and _turned(pr.a, pr.b):
            (pr.a if _started(pr.b) and not _started(pr.a) else pr.b).turn()
    # first pass: exact payload pairs, to learn the order of the points, the clocks' offset, the path's delay
    deltas = {"c2s": [], "s2c": []}
    ttls = {"c2s": Counter(), "s2c": Counter()}
    syns = {"c2s": [], "s2c": []}  # (when no payload pairs one way: segments split differently at the two points)
    for pr in pairs:
        if pr.a is None or pr.b is None or pr.paired_by == "tls-intercepted":
            continue
        for d in ("c2s", "s2c"):
            xs, ys = getattr(pr.a, d), getattr(pr.b, d)
            for pa, pb in _exact_pairs(xs, ys):
                deltas[d].append(pb.ts - pa.ts)
                ttls[d][pb.ttl - pa.ttl] += 1
            sa = _first_syn(xs)
            sb = _first_syn(ys)
            if sa is not None and sb is not None:
                syns[d].append((sb.ts - sa.ts, sb.ttl - sa.ttl))
    for d in ("c2s", "s2c"):
        if not deltas[d]:  # the connections' first SYNs at both points stand in
            deltas[d] = [t for t, _ in syns[d]]
            ttls[d].update(ttl for _, ttl in syns[d])
    nearer, offset, delay = _orientation(deltas["c2s"], deltas["s2c"], ttls["c2s"], ttls["s2c"])
    offset_from = "packets" if offset is not None else None
    relayed = _pair_relayed(pairs, offset)
    if offset is None and relayed:
        # nothing crossed both points unchanged: the relayed connections' timing gives the clocks (a device's relay
        # time counts as delay between the points)
        c2s = [d for r in relayed for d in r["c2s"]]
        s2c = [d for r in relayed for d in r["s2c"]]
        nearer, offset, delay = _orientation(c2s, s2c, Counter({0: 1}), Counter({0: 1}))
        offset_from = "timing"
    _pair_intercepted(pairs, offset or 0.0)
    matched = 0
    for pr in pairs:
        if pr.paired_by == "tls-intercepted":
            continue  # two connections, not one: nothing to compare packet by packet
        for d in ("c2s", "s2c"):
            up_is_a = (nearer != "b") if d == "c2s" else (nearer == "b")
            ups, downs = (pr.a, pr.b) if up_is_a else (pr.b, pr.a)
            if ups is None and downs is None:
                continue
            up_side, down_side = (a, b) if up_is_a else (b, a)
            # the least time from the upstream point to the downstream one, in the two clocks
            dl = deltas[d]
            if dl:
                least = min(dl) if up_is_a else -max(dl)
            elif offset is not None:
                least = (offset if up_is_a else -offset) + (delay or 0.0)
            else:
                least = None
            res = _compare_direction(getattr(ups, d) if ups else [], getattr(downs, d) if downs else [], least,
                                     up_side, down_side, pr.proto, EDGE_MARGIN + 2 * (delay or 0.0))
            res.upstream = "a" if up_is_a else "b"
            setattr(pr, d, res)
            matched += res.arrived
    only_a = sum(1 for p in pairs if p.b is None)
    only_b = sum(1 for p in pairs if p.a is None)
    return PathReport(a, b, pairs, nearer, offset, delay, matched, only_a, only_b, prefix, offset_from)


def _pair_flows(fa: list[_Flow], fb: list[_Flow]) -> list[FlowPair]:
    """Flows of `fa` and `fb` paired: by the payloads they share (most shared wins), then those without payload
    by the same addresses and ports; the rest alone."""
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for f in fb:
        for key in _voting_keys(f):
            by_key[key].append(f.index)
    votes: list[tuple[int, int, int]] = []
    for f in fa:
        c = Counter()
        for key in _voting_keys(f):
            for j in set(by_key.get(key, ())):
                c[j] += 1
        votes.extend((n, f.index, j) for j, n in c.items())
    votes.sort(key=lambda v: (-v[0], v[1], v[2]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _n, i, j in votes:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append(FlowPair(fa[i], fb[j], "payload"))
    by_addr: dict[tuple, list[_Flow]] = defaultdict(list)
    for f in fb:
        if f.index not in used_b:
            by_addr[(f.proto, f.client, f.server)].append(f)
    for f in fa:
        if f.index in used_a:
            continue
        cands = by_addr.get((f.proto, f.client, f.server))
        if cands:
            g = cands.pop(0)
            used_a.add(f.index)
            used_b.add(g.index)
            pairs.append(FlowPair(f, g, "addresses"))
    pairs.extend(FlowPair(f, None, "") for f in fa if f.index not in used_a)
    pairs.extend(FlowPair(None, g, "") for g in fb if g.index not in used_b)
    pairs.sort(key=lambda p: min(x.first_ts for x in (p.a, p.b) if x is not None))
    return pairs


def _voting_keys(f: _Flow):
    """(protocol, payload key) of the flow's first packets each way whose payload only this connection sends."""
    for p in (*f.c2s[:64], *f.s2c[:64]):
        if p.key is not None and p.length >= MIN_VOTING_PAYLOAD and distinctive(p):
            yield (f.proto, p.key)


INTERCEPT_WINDOW = 2.0  # seconds: the middlebox's own connection starts this soon after the client's
#: seconds: a relayed turn (see `_turns`) shows up at the other point this near the time the clocks' offset and the
#: path's delay give
RELAY_TOLERANCE = 0.02
RELAY_TURNS = 64  # turns of each direction compared
RELAY_CANDIDATES = 8  # the first turns each way whose time differences are tried as the shift between the points
RELAY_MIN_TURNS = 4  # turns lined up each way, at least, for two connections to be one relayed by a device
#: seconds: a device's forwarding time plus the path's delay between the points, one way, at most
MAX_RELAY_DELAY = 1.0
#: two connections relayed by a device last about as long: within this many seconds (or a fifth of the longer)
RELAY_DURATION_GAP = 3.0
#: seconds: the two clocks differ by this much at most for connections to be paired by their timing alone (a clock
#: set by hand, or not synchronised for weeks; beyond it sessions of one shape line up by chance too easily)
MAX_CLOCK_SKEW = 600.0
RELAY_SHARE = 0.8  # of the turns both connections could line up (each way), at least


def _has_hello(f: _Flow | None) -> bool:
    return f is not None and f.proto == 6 and any(p.hint == CLIENT_HELLO_TLS for p in f.c2s[:4])


def _same_program(fa: _Flow, fb: _Flow) -> bool:
    """The two connections' ClientHellos are of one TLS client program: another client like the first, not a
    device that relays it (which speaks TLS with its own stack); False when either is not known."""
    pa = next((p.hello_fp for p in fa.c2s[:4] if p.hint == CLIENT_HELLO_TLS), None)
    pb = next((p.hello_fp for p in fb.c2s[:4] if p.hint == CLIENT_HELLO_TLS), None)
    return pa is not None and pa == pb


def _turns(f: _Flow) -> tuple[list[float], list[float]]:
    """When each side of a TCP connection starts to speak again after the other did: the time of the first payload
    packet of each run of one direction's payload, client's and server's. A device that relays a connection
    forwards each request after it arrived and each answer after the gateway sent it, however it re-cuts the
    records, so the turns of the two connections line up."""
    events = sorted([(p.ts, 0) for p in f.c2s if p.length] + [(p.ts, 1) for p in f.s2c if p.length])
    out: tuple[list[float], list[float]] = ([], [])
    last = None
    for ts, d in events:
        if d != last:
            out[d].append(ts)
            last = d
    return out[0][:RELAY_TURNS], out[1][:RELAY_TURNS]


def _lined_up(xs: list[float], ys: list[float], shift: float) -> list[float]:
    """The differences y - x of the times of `xs` and `ys` (both sorted) that line up, one to one, at ``shift``
    within RELAY_TOLERANCE."""
    out = []
    j, n = 0, len(ys)
    for x in xs:
        t = x + shift
        while j < n and ys[j] < t - RELAY_TOLERANCE:
            j += 1
        if j < n and ys[j] <= t + RELAY_TOLERANCE:
            out.append(ys[j] - x)
            j += 1
    return out


def _best_shift(xs: list[float], ys: list[float], lo: float, hi: float) -> list[float]:
    """The differences of the most times of `xs` and `ys` that line up at one shift in [lo, hi] (`_lined_up`), the
    shift tried from the differences of their first RELAY_CANDIDATES times and centred on what lines up."""
    best: list[float] = []
    spread = 0.0
    for x in xs[:RELAY_CANDIDATES]:
        for y in ys[:RELAY_CANDIDATES]:
            s = y - x
            if not lo <= s <= hi:
                continue
            ds = _lined_up(xs, ys, s)
            if len(ds) >= RELAY_MIN_TURNS:
                ds = _lined_up(xs, ys, _median(ds)) or ds
            if len(ds) > len(best) or (ds and len(ds) == len(best) and max(ds) - min(ds) < spread):
                best, spread = ds, max(ds) - min(ds)
    return best


def _pair_relayed(pairs: list[FlowPair], offset: float | None) -> list[dict]:
    """TLS connections seen at one point only whose turns (`_turns`) line up, both ways, with those of one TLS
    connection seen at the other point only: one connection ended by a device in between and relayed over another
    it began (TLS inspection), told without either clock — the shift that lines up the client's turns (b less a:
    the clocks' offset plus the delay from a to b) and the one that lines up the gateway's (the offset less it) differ
    by the delays between the points, at most 2 MAX_RELAY_DELAY. ``offset`` (b's clock less a's), when known from
    packets, bounds both. Each such two become one pair (`paired_by` "tls-intercepted", their `relay`); a
    connection that lines up about as well with two others is left alone. Returns each pair's differences: "c2s",
    "s2c" (b's times less a's of the turns lined up)."""
    only_a = [p for p in pairs if p.b is None and _has_hello(p.a)]
    only_b = [p for p in pairs if p.a is None and _has_hello(p.b)]
    if not only_a or not only_b:
        return []
    turns_b = [_turns(p.b) for p in only_b]
    lo, hi = (-MAX_CLOCK_SKEW, MAX_CLOCK_SKEW) if offset is None else (offset - MAX_RELAY_DELAY,
                                                                       offset + MAX_RELAY_DELAY)
    found = []
    for pa in only_a:
        ca, sa = _turns(pa.a)
        if len(ca) < RELAY_MIN_TURNS or len(sa) < RELAY_MIN_TURNS:
            continue
        dur_a = pa.a.last_ts - pa.a.first_ts
        scored = []
        for k, pb in enumerate(only_b):
            cb, sb = turns_b[k]
            dur_b = pb.b.last_ts - pb.b.first_ts
            if (pb.b.server[1] != pa.a.server[1] or len(cb) < RELAY_MIN_TURNS or len(sb) < RELAY_MIN_TURNS
                    or abs(dur_a - dur_b) > max(RELAY_DURATION_GAP, 0.2 * max(dur_a, dur_b))
                    or _same_program(pa.a, pb.b)):
                continue
            dc = _best_shift(ca, cb, lo, hi)
            if len(dc) < RELAY_MIN_TURNS:
                continue
            mid = _median(dc)
            ds = _best_shift(sa, sb, max(lo, mid - 2 * MAX_RELAY_DELAY), min(hi, mid + 2 * MAX_RELAY_DELAY))
            if len(ds) < RELAY_MIN_TURNS:
                continue
            if (len(dc) < RELAY_SHARE * min(len(ca), len(cb)) or len(ds) < RELAY_SHARE * min(len(sa), len(sb))
                    or not -INTERCEPT_WINDOW <= pb.b.first_ts - pa.a.first_ts - _median(dc + ds) <= INTERCEPT_WINDOW):
                continue
            scored.append((len(dc) + len(ds), k, dc, ds, min(len(ca), len(cb)) + min(len(sa), len(sb))))
        scored.sort(key=lambda x: (-x[0], x[1]))
        if scored and (len(scored) == 1 or 4 * scored[1][0] < 3 * scored[0][0]):
            n, k, dc, ds, of = scored[0]
            found.append((n, pa, only_b[k], {"c2s": dc, "s2c": ds, "lined_up": n, "turns": of}))
    out = []
    found.sort(key=lambda x: -x[0])
    for _n, pa, pb, relay in found:
        if pa.b is not None or pb not in pairs:
            continue  # (each connection in one pair: the best first)
        pa.b, pa.paired_by, pa.relay = pb.b, "tls-intercepted", {"lined_up": relay["lined_up"],
                                                                  "turns": relay["turns"]}
        pairs.remove(pb)
        out.append(relay)
    return out


def _pair_intercepted(pairs: list[FlowPair], offset: float) -> None:
    """A TLS connection seen at one point only, and at the other point only one TLS connection to the same server
    port that began about then (within INTERCEPT_WINDOW), by another TLS client program, with a ClientHello of its
    own: one connection ended by a device in between and another begun by it (TLS inspection, a TLS-terminating
    proxy or load balancer). Such two become one pair, `paired_by` "tls-intercepted". Two or more such connections
    at the other point (a gateway's capture, busy with other clients) tell nothing: the first is left alone.
    ``offset``: b's clock less a's (0 when not known: the two clocks are then taken as one)."""
    only_a = [p for p in pairs if p.b is None and _has_hello(p.a)]
    only_b = [p for p in pairs if p.a is None and _has_hello(p.b)]
    taken: set[int] = set()
    for pa in only_a:
        near = [j for j, pb in enumerate(only_b)
                if j not in taken and pb.b.server[1] == pa.a.server[1] and not _same_program(pa.a, pb.b)
                and abs(pb.b.first_ts - offset - pa.a.first_ts) <= INTERCEPT_WINDOW]
        if len(near) == 1:
            taken.add(near[0])
            pb = only_b[near[0]]
            pa.b, pa.paired_by = pb.b, "tls-intercepted"
            pairs.remove(pb)


def _turned(fa: _Flow, fb: _Flow) -> bool:
    """The two captures took the flow's ends the other way round (each started mid-flow, or one did): more of a's
    client packets pair with b's server packets than with b's client packets."""
    same = sum(1 for _ in _exact_pairs(fa.c2s, fb.c2s)) + sum(1 for _ in _exact_pairs(fa.s2c, fb.s2c))
    crossed = sum(1 for _ in _exact_pairs(fa.c2s, fb.s2c)) + sum(1 for _ in _exact_pairs(fa.s2c, fb.c2s))
    return crossed > same


def _started(f: _Flow) -> bool:
    """The capture holds the flow's SYN (its client and server are known, not guessed)."""
    return f.proto == 6 and any(p.flags & TCP_SYN for p in (f.c2s[:1] + f.s2c[:1]))


def _exact_pairs(xs: list[Observed], ys: list[Observed]):
    """(x, y) pairs of packets with the same payload key, each used once, in order."""
    pending: dict[tuple, list[Observed]] = defaultdict(list)
    for y in ys:
        if y.key is not None:
            pending[y.key].append(y)
    for x in xs:
        if x.key is not None:
            q = pending.get(x.key)
            if q:
                yield x, q.pop(0)


def _orientation(c2s: list[float], s2c: list[float], ttl_c2s: Counter, ttl_s2c: Counter
                 ) -> tuple[str | None, float | None, float | None]:
    """From the packets paired each way — their time differences (b's time less a's) and TTL differences — which
    capture is nearer the client, b's clock less a's, and the least one-way delay between the points.

    The routers in between lower the TTL on the way: a client packet arrives at the farther point with less, a
    gateway packet at the nearer one. Without a router (a bridge, a tap) the times tell: a packet from the client
    passes the nearer point first, so seen from a, client packets take longer to show up at b than gateway packets
    (they travel a -> b, the gateway's b -> a)."""
    if not c2s or not s2c:
        return None, None, None
    tc, ts_ = ttl_c2s.most_common(1)[0][0], ttl_s2c.most_common(1)[0][0]
    c_med, s_med = _median(c2s), _median(s2c)
    if tc < 0 < ts_:
        nearer = "a"
    elif ts_ < 0 < tc:
        nearer = "b"
    elif abs(c_med - s_med) < 20e-6:  # both points as good as one (the same host): no order, no delay
        return None, (c_med + s_med) / 2, 0.0
    else:
        nearer = "a" if c_med > s_med else "b"
    if nearer == "a":  # c2s = offset + delay, s2c = offset - delay
        lo, hi = min(c2s), max(s2c)
    else:  # s2c = offset + delay, c2s = offset - delay
        lo, hi = min(s2c), max(c2s)
    return nearer, (lo + hi) / 2, max(0.0, (lo - hi) / 2)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _kind(p: Observed) -> str:
    if p.proto == 17:
        return _dtls_kind(p)
    names = [n for bit, n in ((TCP_SYN, "SYN"), (TCP_FIN, "FIN"), (TCP_RST, "RST")) if p.flags & bit]
    if p.length:
        names.append(f"{p.length} bytes")
    return " ".join(names) or "ACK"


_DTLS_CONTENT = {20: "ChangeCipherSpec", 21: "alert", 23: "application data"}
_DTLS_HANDSHAKE = {1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest", 11: "Certificate",
                   12: "ServerKeyExchange", 14: "ServerHelloDone", 16: "ClientKeyExchange"}


def _dtls_kind(p: Observed) -> str:
    """A datagram's kind as a DTLS record names it (a port-443 datagram that is not DTLS: its length)."""
    ct, hs, epoch = (p.hint + (None, None, None))[:3]
    if epoch is None:
        return f"UDP {p.length} bytes"
    if ct == 22:
        return "DTLS Finished (protected)" if epoch else f"DTLS {_DTLS_HANDSHAKE.get(hs, 'handshake')}"
    if ct in _DTLS_CONTENT:
        return f"DTLS {_DTLS_CONTENT[ct]}"
    return f"UDP {p.length} bytes"


_CONTROL = TCP_SYN | TCP_FIN | TCP_RST  # the TCP flags compared on segments without payload


def _entry(p: Observed) -> dict:
    """A packet as `DirectionResult.lost` / `added` list it."""
    return {"frame": p.frame, "ts": p.ts, "kind": _kind(p), "length": p.length}


def _first_syn(pkts: list[Observed]) -> Observed | None:
    return next((p for p in pkts if p.flags & TCP_SYN), None)


def _overlapping(starts: list[int], ranges: list[tuple], s: int, e: int):
    """The entries of ``ranges`` (sorted by their start, ``starts`` their starts; each (start, end, …)) that overlap
    the byte range [s, e), nearest start first."""
    j = bisect.bisect_left(starts, e)
    while j > 0 and starts[j - 1] > s - MAX_SEGMENT:
        j -= 1
        if ranges[j][1] > s and ranges[j][0] < e:
            yield ranges[j]


def _in_span(ts: float | None, side: SideCapture, tail: float = 0.0, head: float = 0.0) -> bool:
    """`ts` (in `side`'s clock) lies within the capture's time, ``head`` seconds after its start and ``tail``
    before its end."""
    if ts is None or side.first_ts is None or side.last_ts is None:
        return False
    return side.first_ts + head <= ts <= side.last_ts - tail


def _compare_direction(ups: list[Observed], downs: list[Observed], least: float | None, up_side: SideCapture,
                       down_side: SideCapture, proto: int, margin: float) -> DirectionResult:
    """One direction of a flow: `ups` its packets at the point they pass first, `downs` at the other; `least` the
    least time between the points (in the two clocks: the downstream time less the upstream one); `margin` the time
    at a capture's edge where a packet may have been in flight when it started or stopped."""
    res = DirectionResult(upstream="a")
    ttl = Counter()
    if proto == 17:
        _compare_datagrams(ups, downs, least, up_side, down_side, res, ttl, margin)
    else:
        _compare_segments(ups, downs, least, up_side, down_side, res, ttl, margin)
    if ttl:
        res.ttl_change = ttl.most_common(1)[0][0]
    su = _first_syn(ups)
    sd = _first_syn(downs)
    if su is not None and sd is not None and su.mss != sd.mss:
        res.mss = {"upstream": su.mss, "downstream": sd.mss}
        res.syn_frame = su.frame
    return res


def _compare_datagrams(ups, downs, least, up_side, down_side, res, ttl, margin) -> None:
    pending: dict[tuple, list[Observed]] = defaultdict(list)
    for y in downs:
        if y.key is not None:
            pending[y.key].append(y)
    seen_down: set[int] = set()
    for x in ups:
        if x.key is None:
            continue
        q = pending.get(x.key)
        if q:
            y = q.pop(0)
            seen_down.add(id(y))
            res.sent += 1
            res.arrived += 1
            res.largest_arrived = max(res.largest_arrived, x.length)
            ttl[y.ttl - x.ttl] += 1
        elif least is not None and _in_span(x.ts + least, down_side, tail=margin):
            res.sent += 1
            res.lost.append(_entry(x))
    for y in downs:
        if y.key is not None and id(y) not in seen_down and least is not None \
                and _in_span(y.ts - least, up_side, head=margin):
            res.added.append(_entry(y))


def _seq_shift(ups: list[Observed], downs: list[Observed]) -> int | None:
    """The constant the path adds to this direction's sequence numbers (0 without ISN randomisation): from the
    segments paired by payload, else from the SYNs."""
    shifts = Counter((y.seq - x.seq) % SEQ_MOD for x, y in _exact_pairs(ups, downs))
    if shifts:
        return shifts.most_common(1)[0][0]
    sx = _first_syn(ups)
    sy = _first_syn(downs)
    if sx is not None and sy is not None:
        return (sy.seq - sx.seq) % SEQ_MOD
    return None


def _compare_segments(ups, downs, least, up_side, down_side, res, ttl, margin) -> None:
    if least is None:
        return
    if not ups or not downs:  # the direction seen at one point only: all of it lost or added between
        for x in ups:
            if (x.length or x.flags & _CONTROL) and _in_span(x.ts + least, down_side, tail=margin):
                res.sent += 1
                res.lost.append(_entry(x))
        for y in downs:
            if (y.length or y.flags & _CONTROL) and _in_span(y.ts - least, up_side, head=margin):
                res.added.append(_entry(y))
        return
    shift = _seq_shift(ups, downs)
    if shift is None:
        return
    base = ups[0].seq if ups else 0

    def rel(seq: int, from_down: bool) -> int:
        # a sequence number as an offset from the upstream's first one (wrapping handled modulo 2^32)
        return ((seq - shift if from_down else seq) - base) % SEQ_MOD

    # downstream data as (start, end, ts), sorted by start; control segments by (flags, rel seq)
    data = sorted((rel(p.seq, True), rel(p.seq, True) + p.length, p.ts, i) for i, p in enumerate(downs) if p.length)
    starts = [d[0] for d in data]
    ctl = defaultdict(list)
    for i, p in enumerate(downs):
        f = p.flags & _CONTROL
        if f:
            ctl[(f, rel(p.seq, True))].append((p.ts, i))
    used_down: set[int] = set()
    # the next upstream transmission of the same bytes (a retransmission) bounds when the first may arrive
    later: dict[int, float] = {}
    last_by_start: dict[int, float] = {}
    for i in range(len(ups) - 1, -1, -1):
        p = ups[i]
        if p.length:
            r = rel(p.seq, False)
            later[i] = last_by_start.get(r, float("inf"))
            last_by_start[r] = p.ts
    for i, x in enumerate(ups):
        f = x.flags & _CONTROL
        if not x.length and not f:
            continue  # a bare ACK: not told apart
        expect = x.ts + least
        if not _in_span(expect, down_side, tail=margin):
            continue
        res.sent += 1
        hit = None
        if x.length:
            s, e = rel(x.seq, False), rel(x.seq, False) + x.length
            until = later.get(i, float("inf")) + least
            hit = next((di for _ds, _de, dts, di in _overlapping(starts, data, s, e)
                        if expect - SLACK <= dts < until - SLACK), None)
        else:
            for dts, di in ctl.get((f, rel(x.seq, False)), ()):
                if di not in used_down and dts >= expect - SLACK:
                    hit = di
                    break
        if hit is None:
            res.lost.append(_entry(x))
            continue
        used_down.add(hit)
        res.arrived += 1
        res.largest_arrived = max(res.largest_arrived, x.length)
        ttl[downs[hit].ttl - x.ttl] += 1
    # added: control segments (a reset above all) the upstream point never saw; data bytes it never sent
    up_ctl = defaultdict(list)
    up_data = sorted((rel(p.seq, False), rel(p.seq, False) + p.length, p.ts) for p in ups if p.length)
    up_starts = [d[0] for d in up_data]
    for p in ups:
        f = p.flags & _CONTROL
        if f:
            up_ctl[(f, rel(p.seq, False))].append(p.ts)
    for i, y in enumerate(downs):
        f = y.flags & _CONTROL
        if not y.length and not f:
            continue
        if i in used_down or not _in_span(y.ts - least, up_side, head=margin):
            continue
        sent_before = y.ts - least + SLACK
        if f and not y.length:
            if not any(t <= sent_before for t in up_ctl.get((f, rel(y.seq, True)), ())):
                res.added.append(_entry(y))
            continue
        s, e = rel(y.seq, True), rel(y.seq, True) + y.length
        if not any(uts <= sent_before for _us, _ue, uts in _overlapping(up_starts, up_data, s, e)):
            res.added.append(_entry(y))
