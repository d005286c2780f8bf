"""Failed TCP connects: connections a client opened that never carried a byte — its SYNs unanswered, refused by a
reset, or rejected by an ICMP error.

The commonest support case, "the client cannot reach the gateway", holds nothing else: no TLS, nothing the protocol
shows, so the flow table's streams without data would otherwise leave no trace. The pipeline keeps one
`FailedConnect` per such stream (`from_stream`, at the end of the pass and when the flow table evicts a stream), the
session builder (analyzer/phases/session.py) gives each to the session of its client and gateway, or makes it a
session of its own when --gateway names its server, and rule `tcp_connect` (TCP_CONNECT_FAILED) says what happened.

A connection the server accepted (SYN-ACK) and that then ended without data is no failed connect unless the server
reset it (a client may open and close a connection without a request: a port check), or the client never
acknowledged the SYN-ACK and sent its SYN again (the server's answers do not reach it: a broken way back, seen on the
gateway's side).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dissectors.flows import MAX_HANDSHAKE

#: failed connects kept (the first by capture and frame): a scan or a flood of SYNs stays bounded
MAX_FAILED_CONNECTS = 1000

#: ICMP destination unreachable codes (IPv4 type 3, RFC 792/1122/1812; IPv6 type 1, RFC 4443) as words
ICMP4_CODES = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
               4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
               7: "destination host unknown", 9: "network administratively prohibited",
               10: "host administratively prohibited", 11: "network unreachable for the type of service",
               12: "host unreachable for the type of service", 13: "communication administratively prohibited",
               14: "host precedence violation", 15: "precedence cutoff in effect"}
ICMP6_CODES = {0: "no route to destination", 1: "communication administratively prohibited",
               2: "beyond scope of source address", 3: "address unreachable", 4: "port unreachable",
               5: "source address failed ingress/egress policy", 6: "reject route to destination"}


@dataclass(slots=True)
class FailedConnect:
    """One TCP connection that never carried data. ``answer``: "none" (no SYN-ACK, no reset), "reset" (the server
    side reset it: a RST, with or without a SYN-ACK before it), "unacknowledged" (the server's SYN-ACK never
    acknowledged while the client sent its SYN again: the answers do not reach it), "icmp" (an ICMP destination
    unreachable quoting it, set by `match_icmp`). ``index``/``numbers``/``capture`` as a tracker's
    (analyzer/tcptracker.py FlowTracker)."""
    index: int
    client: tuple
    server: tuple
    numbers: list
    capture: str | None
    syns: list  # the client's SYNs: [(time, frame)]
    answer: str = "none"
    answer_ts: float | None = None
    answer_frame: int | None = None
    accepted: bool = False  # the server answered SYN-ACK (then reset it)
    first_ts: float = 0.0
    first_frame: int = 0
    last_ts: float = 0.0
    last_frame: int = 0
    icmp: dict | None = field(default=None)  # {"from", "code", "text", "frame", "time"}
    answer_ttl: int | None = None  # the reset's IP TTL (hop limit) as captured

    @property
    def end(self) -> float:
        """Its last packet or its answer, whichever came later (an ICMP error is no packet of the stream)."""
        return max(self.last_ts, self.answer_ts or self.last_ts)

    @property
    def end_frame(self) -> int:
        return max(self.last_frame, self.answer_frame or 0)

    @property
    def order(self) -> tuple:
        """Where it began: (capture ordinal, frame)."""
        return (self.numbers[0][0] if self.numbers else 0, self.first_frame)


def from_stream(st, capture: str | None) -> FailedConnect | None:
    """The failed connect a flow-table TCP stream (dissectors/flows.py TCPStream) is, or None: a client SYN, no
    data either way, and no SYN-ACK unless the server reset the connection."""
    if st.bytes_c2s or st.bytes_s2c or st.client is None:
        return None
    syns = [(ts, frame) for d, ts, frame in st.handshake if d == "c2s"]
    if not syns:
        return None
    answers = [(ts, frame) for d, ts, frame in st.handshake if d == "s2c"]
    rst = st.rst
    if rst is not None and rst[0] == "s2c":  # refused (also: a SYN-ACK, then a reset)
        answer, (answer_ts, answer_frame), ttl = "reset", rst[1:3], rst[3]
    elif not answers:
        answer, answer_ts, answer_frame, ttl = "none", None, None, None
    elif len(syns) >= 2 and st.packets <= len(st.handshake) < MAX_HANDSHAKE:
        # the server answered SYN-ACK, the client never acknowledged it and sent its SYN again (a real client's
        # stack does; a flood's spoofed SYNs are not sent again): the answers do not reach it — seen on the
        # gateway's side of a broken way back (every packet of the connection a SYN or a SYN-ACK)
        answer, (answer_ts, answer_frame), ttl = "unacknowledged", answers[0], None
    else:
        return None  # accepted, then closed without data: a port check, no failure
    return FailedConnect(index=st.stream, client=tuple(st.client), server=tuple(st.server), numbers=st.numbers,
                         capture=capture, syns=syns, answer=answer, answer_ts=answer_ts, answer_frame=answer_frame,
                         accepted=bool(answers), first_ts=st.first_ts, first_frame=st.first_frame,
                         last_ts=st.last_ts, last_frame=st.last_frame, answer_ttl=ttl)


def bounded(found: list[FailedConnect]) -> list[FailedConnect]:
    """The first `MAX_FAILED_CONNECTS` of ``found`` by where they began (the same whatever order they came in: the
    parallel run's shards each keep theirs, the merge the first of all)."""
    found.sort(key=lambda f: f.order)
    del found[MAX_FAILED_CONNECTS:]
    return found


def match_icmp(found: list[FailedConnect], icmp_unreachable: list[dict]) -> None:
    """An unanswered connect that an ICMP destination unreachable quotes (a router's or firewall's rejection) has
    that as its answer."""
    if not found or not icmp_unreachable:
        return
    by_pair = {}
    for u in icmp_unreachable:
        inner = u.get("inner") or {}
        if inner.get("proto") == 6:
            pair = (inner.get("src"), inner.get("sport"), inner.get("dst"), inner.get("dport"))
            by_pair.setdefault(pair, []).append(u)
    for f in found:
        if f.answer != "none":
            continue
        us = by_pair.get((f.client[0], f.client[1], f.server[0], f.server[1]))
        if not us:
            continue
        u = us[0]
        v6 = ":" in str(u.get("from", ""))
        code = u.get("code")
        text = (ICMP6_CODES if v6 else ICMP4_CODES).get(code, f"code {code}")
        f.answer = "icmp"
        f.answer_ts, f.answer_frame = u.get("ts"), u.get("frame")
        f.icmp = {"from": u.get("from"), "code": code, "text": text, "frame": u.get("frame"), "time": u.get("ts")}


def describe(f: FailedConnect, t0: float | None = None) -> str:
    """"tcp.stream 1 at +10.8 s: 3 SYNs unanswered (frames 68, 70, 71)" — what happened to one connect (``t0``: the
    time "+" counts from; None: no time)."""
    return describe_parts(f.index, None if t0 is None else f.first_ts - t0, [fr for _t, fr in f.syns], f.answer,
                          f.answer_frame, f.accepted, f.icmp)


def describe_parts(stream: int, at: float | None, syn_frames: list[int], answer: str, answer_frame: int | None,
                   accepted: bool, icmp: dict | None) -> str:
    """`describe` from the parts a report keeps (analyzer/phases/tls_handshake.py FailedConnectSummary)."""
    head = f"tcp.stream {stream}" + (f" at +{at:.1f} s" if at is not None else "")
    if answer == "reset":
        return head + (f": accepted (SYN-ACK), then reset (RST frame {answer_frame})" if accepted else
                       f": SYN answered by a reset (RST frame {answer_frame})")
    if answer == "unacknowledged":
        n = len(syn_frames)
        return head + (f": SYN-ACK (frame {answer_frame}) never acknowledged, the client sent its SYN {n} time"
                       f"{'s' if n != 1 else ''}")
    if answer == "icmp" and icmp:
        return head + f": ICMP destination unreachable ({icmp.get('text')}) from {icmp.get('from')} (frame " \
            f"{icmp.get('frame')})"
    n = len(syn_frames)
    frames = ", ".join(str(fr) for fr in syn_frames[:5]) + (", …" if n > 5 else "")
    return head + f": {n} SYN{'s' if n != 1 else ''} unanswered (frame{'s' if n != 1 else ''} {frames})"
