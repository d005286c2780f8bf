"""Session-wide tunnel statistics (`Session.tunnel`): every tunnel connection (reconnects included) and every DTLS
flow, how the tunnel ended, and the inner-traffic buckets the HTML plots read (`series`, not in the JSON)."""
from __future__ import annotations

from dataclasses import field

from .dtls import DTLSDetails
from .grouping import Group
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
class Tunnel(Record):
    cstp: CSTPTotals = UNSET
    dtls: DTLSTotals = UNSET
    tls_undecrypted: UndecryptedTLS = UNSET
    inner_packets: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    end: TunnelEnd | None = None  # the last DISCONNECT/TERMINATE on any channel
    #: (channel, direction, second, bytes, packets) buckets of inner traffic, for plots; dropped from the JSON
    #: document by analyzer/report/json_report.py
    series: list[tuple[str, str, int, int, int]] = field(default_factory=list)


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("c2s", "s2c")}


def build(g: Group, dtls_details: DTLSDetails | None) -> Tunnel:
    t = Tunnel()
    zero = {"c2s": 0, "s2c": 0}
    ends: list[TunnelEnd] = []
    tunnels = [cn.c for cn in g.conns if cn.c.tunnel is not None]
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
    # the session ended with the last DISCONNECT/TERMINATE seen on any channel
    t.end = max(ends, key=lambda e: e.ts) if ends else None
    t.series = _series(g)
    return t


def _series(g: Group) -> list:
    out = []
    for cn in g.conns:
        if cn.c.tunnel is not None:
            out += [("cstp",) + s for s in cn.c.tunnel.series()]
    for f in g.dtls:
        out += [("dtls",) + s for s in f.channel.series()]
    return out[:20000]
