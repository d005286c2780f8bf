"""Session-wide tunnel statistics (`Session.tunnel`): every tunnel connection (reconnects included) and every DTLS
flow, how the tunnel ended, what the client could not reach inside it (`unreachable`: analyzer/inner.py), and the
inner-traffic buckets the HTML plots read (`series`, not in the JSON)."""
from __future__ import annotations

from dataclasses import field
from typing import Any

from ..evidence import split_endpoint
from ..inner import InnerAttempts, failed_connects, failed_lookups
from . import cstp_connect
from .dtls import DTLSDetails
from .grouping import Group
from .inferred import ANSWERS_GATEWAY_END, reading
from .outside import OutsideTraffic
from .record import UNSET, Record, record


@record
class TunnelEnd(Record):
    """A DISCONNECT or TERMINATE frame and the channel it came over."""
    direction: str
    type: str  # "DISCONNECT" / "TERMINATE"
    ts: float
    frame: int
    reason: str | None
    channel: str  # "cstp" / "dtls"


@record
class CSTPTotals(Record):
    """Sums over every tunnel connection of the session."""
    inner_packets: dict[str, int]
    inner_bytes: dict[str, int]
    dpd: dict[str, int]  # DPD requests per direction
    keepalives: dict[str, int]
    connections: int
    disconnect: TunnelEnd | None = None


@record
class DTLSTotals(Record):
    inner_packets: dict[str, int]
    inner_bytes: dict[str, int]
    undecrypted_records: dict[str, int]


@record
class UndecryptedTLS(Record):
    """No key and no tunnel seen: the TLS connection with the most records, as the wire shows it."""
    connection: str
    records: dict[str, int]
    bytes: dict[str, int]


@record
class InnerConnectFailure(Record):
    """A destination inside the tunnel the client's TCP connects did not reach."""
    dst: str
    port: int
    attempts: int  # connects (client ports) to it
    syn_frames: list[int]  # the SYNs' frames (the first 8)
    answer: str  # none (no answer to a SYN sent again), reset, icmp
    answer_frame: int | None
    icmp: dict[str, Any] | None  # {from, code, text, frame, time}: the ICMP destination unreachable that came back
    time: float


@record
class InnerLookupFailure(Record):
    """A DNS lookup through the tunnel that got no address."""
    server: str
    name: str
    type: str
    answer: str  # NXDOMAIN, SERVFAIL, REFUSED, no answer, or the ICMP error ("ICMP port unreachable from …")
    frames: list[int]
    time: float


@record
class InnerUnreachable(Record):
    """What the client tried inside the tunnel and did not reach (decrypted tunnels only)."""
    connects: list[InnerConnectFailure]  # the first 20 destinations
    lookups: list[InnerLookupFailure]  # the first 20 names
    connects_tried: int  # the client's TCP connects seen (their SYNs), reached or not
    lookups_tried: int  # its DNS lookups seen
    #: where they were read when not from the decrypted tunnel: "tunnel device <interface>" (the capture of the
    #: VPN's adapter, `Tunnel.device`); absent when read from the tunnel itself
    read_from: str = UNSET


@record
class TunnelDeviceSeen(Record):
    """The capture also holds the VPN's adapter (analyzer/tunnel_device.py): its packets are this tunnel's inside."""
    interface: str  # its name (and description), as the capture names it
    capture: str | None  # the capture file it is in
    address: str  # the address nearly all its packets have: the tunnel address
    packets: int
    first: float | None
    last: float | None
    first_frame: int
    last_frame: int
    #: how it was tied to this session: "tunnel-address" (the CONNECT answer gave that address) or "time" (a
    #: session whose tunnel was up while the adapter carried packets)
    matched_by: str
    #: the sessions the adapter's packets span, this one included, when more than one (without keys, each reads
    #: the packets of its own time); the counts above are the adapter's whole
    shared_by: int = UNSET


@record
class OutsideLookup(Record):
    """A lookup of a name in the VPN's domains (X-CSTP-Default-Domain, X-CSTP-Split-DNS) that the client sent
    outside the tunnel, to a server not among the tunnel's (X-CSTP-DNS), while the tunnel was up."""
    name: str
    server: str
    types: list[str]
    answer: str  # resolved, or NXDOMAIN / SERVFAIL / REFUSED / no record / no answer
    frames: list[int]
    time: float


@record
class Tunnel(Record):
    cstp: CSTPTotals = UNSET
    dtls: DTLSTotals = UNSET
    tls_undecrypted: UndecryptedTLS = UNSET
    inner_packets: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    end: TunnelEnd | None = None  # the last DISCONNECT/TERMINATE on any channel
    #: (channel, direction, second, bytes, packets) buckets of inner traffic, for plots; dropped from the JSON
    #: document by analyzer/report/json_report.py
    series: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    unreachable: InnerUnreachable = UNSET  # present when the client's attempts inside the tunnel failed
    #: lookups of the VPN's own names sent outside the tunnel while it was up (analyzer/phases/session.py
    #: `outside_lookups`); present when there are some
    outside_lookups: list[OutsideLookup] = UNSET
    #: traffic from the client's own address, outside the tunnel, to destinations the tunnel was for
    #: (analyzer/phases/outside.py); present when there is some
    outside_traffic: list[OutsideTraffic] = UNSET
    device: TunnelDeviceSeen = UNSET  # the VPN's adapter's capture, when the inputs hold it
    #: direction → time of the last packet inside the tunnel, over every channel (CSTP connections and DTLS flows;
    #: DPDs, keepalives and other control frames are not packets inside it); present when there was one
    last_inner_packet: dict[str, float] = UNSET


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("c2s", "s2c")}


def _latest(into: dict[str, float], times: dict[str, float]) -> None:
    for k, ts in times.items():
        if ts is not None and ts > into.get(k, float("-inf")):
            into[k] = ts


def build(g: Group, dtls_details: DTLSDetails | None) -> Tunnel:
    t = Tunnel()
    zero = {"c2s": 0, "s2c": 0}
    ends: list[TunnelEnd] = []
    tunnels = [cn.c for cn in g.conns if cn.c.tunnel is not None]
    last: dict[str, float] = {}
    if tunnels:
        agg = CSTPTotals(inner_packets=dict(zero), inner_bytes=dict(zero), dpd=dict(zero), keepalives=dict(zero),
                         connections=len(tunnels))
        for c in tunnels:
            sm = c.tunnel.summary()
            agg.inner_packets = _add(agg.inner_packets, sm["inner_packets"])
            agg.inner_bytes = _add(agg.inner_bytes, sm["inner_bytes"])
            agg.dpd = _add(agg.dpd, sm["dpd"]["requests"])
            agg.keepalives = _add(agg.keepalives, sm["keepalives"])
            if sm["disconnect"]:
                ends.append(TunnelEnd(**sm["disconnect"], channel="cstp"))
            _latest(last, sm["last_data"])
        agg.disconnect = ends[-1] if ends else None
        t.cstp = agg
    flows = dtls_details.flow_list if dtls_details is not None else []
    if flows:
        pk, by, und = dict(zero), dict(zero), dict(zero)
        for e in flows:
            pk = _add(pk, e.channel.inner_packets)
            by = _add(by, e.channel.inner_bytes)
            und = _add(und, e.undecrypted_records_by_direction or {})
            if e.channel.disconnect:
                ends.append(TunnelEnd(**e.channel.disconnect.to_json(), channel="dtls"))
            _latest(last, e.channel.last_data or {})
        t.dtls = DTLSTotals(inner_packets=pk, inner_bytes=by, undecrypted_records=und)
    hidden = [cn.c for cn in g.conns if cn.c.tunnel is None and not cn.c.decrypted and cn.c.is_tls]
    if hidden and not tunnels:
        # the tunnel (or what may be it) not decrypted: what the wire shows of it
        longest = max(hidden, key=lambda c: sum(c.encrypted_records.values()))
        t.tls_undecrypted = UndecryptedTLS(connection=f"tcp.stream {longest.index}",
                                           records=dict(longest.encrypted_records),
                                           bytes=dict(longest.encrypted_bytes))
    total = dict(zero)
    for ch in (t.cstp, t.dtls):
        if ch:
            total = _add(total, ch.inner_packets)
    t.inner_packets = total
    if last:
        t.last_inner_packet = {k: last[k] for k in ("c2s", "s2c") if k in last}
    # the session ended with the last DISCONNECT/TERMINATE seen on any channel — but the gateway's, when the client's
    # is its answer on another channel (openconnect's "Server request" within ANSWERS_GATEWAY_END s, the bound the
    # keyless reading uses for the same answer): the gateway ended it
    t.end = max(ends, key=lambda e: e.ts) if ends else None
    if t.end is not None and t.end.direction == "c2s":
        first = [e for e in ends if e.direction == "s2c" and 0 <= t.end.ts - e.ts <= ANSWERS_GATEWAY_END]
        if first:
            t.end = max(first, key=lambda e: e.ts)
    t.series = _series(g)
    unreachable = _unreachable(g)
    if unreachable is not None:
        t.unreachable = unreachable
    return t


def inner_attempts(g: Group) -> InnerAttempts | None:
    """The client's attempts inside the tunnel, over every channel of the session (analyzer/inner.py); None when no
    channel was decrypted or none held any."""
    chans = [cn.c.tunnel for cn in g.conns if cn.c.tunnel is not None] + [f.channel for f in g.dtls]
    got = [ch.inner_attempts for ch in chans if ch.inner_attempts is not None]
    if not got:
        return None
    if len(got) == 1:
        return got[0]
    a = InnerAttempts()
    for x in got:
        a.merge(x)
    return a


def _unreachable(g: Group) -> InnerUnreachable | None:
    """The client's failed attempts inside the tunnel, over every channel of the session (analyzer/inner.py)."""
    a = inner_attempts(g)
    return unreachable_of(a) if a is not None else None


def unreachable_of(a: InnerAttempts) -> InnerUnreachable | None:
    """The failed attempts among ``a``, or None."""
    connects, lookups = failed_connects(a), failed_lookups(a)
    if not connects and not lookups:
        return None
    return InnerUnreachable(
        connects=[InnerConnectFailure(dst=d["dst"], port=d["port"], attempts=d["attempts"], syn_frames=d["syns"],
                                      answer=d["answer"], answer_frame=d["answer_frame"], icmp=d["icmp"],
                                      time=d["time"]) for d in connects[:20]],
        lookups=[InnerLookupFailure(**d) for d in lookups[:20]],
        connects_tried=sum(1 for e in a.connects.values() if e["direction"] == "c2s"),
        lookups_tried=sum(1 for e in a.lookups.values() if e["direction"] == "c2s"))


def _series(g: Group) -> list:
    out = []
    for cn in g.conns:
        if cn.c.tunnel is not None:
            out += [("cstp",) + s for s in cn.c.tunnel.series()]
    for f in g.dtls:
        out += [("dtls",) + s for s in f.channel.series()]
    return out[:20000]


def _tunnel_up(s) -> bool:
    """The session's CONNECT was answered (read, or inferred without keys), or its tunnel began before the capture."""
    return reading(s.phase("cstp-connect"), confident=False) in ("ok", "before-capture", "not-captured")


def attach_devices(pipe, sessions: list, captures: list[str]) -> tuple[set[str], dict]:
    """Give each capture of the VPN's adapter (``pipe.tunnel_devices``: analyzer/tunnel_device.py) to the session it
    belongs to: the one whose CONNECT answer gave the adapter's address (of several, the one its packets span most),
    else the sessions whose tunnels were up while the adapter carried packets, one after the other, each with the
    adapter's packets of its own time (sessions at the same time: none; never one whose client address is the
    adapter's). Its failed attempts become
    the session's `unreachable` where the tunnel itself was not read. Returns the addresses of the adapters given
    (their traffic is the sessions' now, not other traffic's) and, by id of a session whose tunnel was not read,
    what its adapter showed the client try (an InnerAttempts)."""
    given: set[str] = set()
    tried: dict = {}
    for dev in sorted(getattr(pipe, "tunnel_devices", {}).values(), key=lambda d: (d.capture, d.interface)):
        own = dev.address
        if own is None or not dev.packets:
            continue
        cap = captures[dev.capture] if dev.capture < len(captures) else None
        if any(own in (s.client, split_endpoint(s.gateway)[0]) for s in sessions):
            continue  # (packets between a session's own ends: no adapter's — a pcap of raw IP packets of the session)
        by_address = []
        for s in sessions:
            cd = cstp_connect.connect_details(s.phase("cstp-connect"))
            pr = cd.parameters if cd is not None and cd.parameters else None
            if pr is not None and own in (pr.address, (pr.address_ip6 or "").split("/")[0]):
                by_address.append(s)
        if by_address:  # (sessions given the same address one after the other: the one the adapter's packets span most)
            chosen = [max(by_address, key=lambda s: min(s.end or 0.0, dev.last_ts or 0.0) - max(s.start or 0.0,
                                                                                                 dev.first_ts or 0.0))]
            how = "tunnel-address"
        else:
            # without keys: the sessions whose tunnel was up while the adapter carried packets — one after the other
            # (a user who connected again), each reads the adapter's packets of its own time
            chosen = [s for s in sessions if s.client != own and _tunnel_up(s) and s.start is not None
                      and s.end is not None and dev.first_ts is not None and s.start <= dev.last_ts
                      and dev.first_ts <= s.end]
            if any(a.start <= b.end and b.start <= a.end for a, b in zip(chosen, chosen[1:])):
                continue  # (at the same time: which one's inside these packets are is not known)
            how = "time"
        chosen = [s for s in chosen if s.tunnel is not None and s.tunnel.device is UNSET
                  and (dev.named or cap not in (s.captures or []))]
        for s in chosen:
            s.tunnel.device = TunnelDeviceSeen(
                interface=dev.label, capture=cap,
                address=own, packets=dev.packets, first=dev.first_ts, last=dev.last_ts, first_frame=dev.first_frame,
                last_frame=dev.last_frame, matched_by=how)
            if len(chosen) > 1:
                s.tunnel.device.shared_by = len(chosen)
            given.add(own)
            if s.tunnel.unreachable is UNSET and not _decrypted(s):
                a = dev.attempts(s.start, s.end) if len(chosen) > 1 else dev.attempts()
                if a is not None:
                    tried[id(s)] = a
                u = unreachable_of(a) if a is not None else None
                if u is not None:
                    u.read_from = f"tunnel device {dev.label}"
                    s.tunnel.unreachable = u
    return given, tried


def _decrypted(s) -> bool:
    """Whether the session's tunnel itself was read (a decrypted CSTP or DTLS channel)."""
    t = s.tunnel
    return bool(t.cstp) or bool(t.dtls and sum((t.dtls.inner_packets or {}).values()))

