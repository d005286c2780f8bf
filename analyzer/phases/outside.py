"""Traffic for the VPN's networks that left outside the tunnel while it was up — the client-side facts of
"connected, but I cannot reach the internal server" when nothing inside the tunnel even tried.

Facts: the gateway's CONNECT answer tells the client which destinations go through the tunnel: the networks of
X-CSTP-Split-Include (IPv4, as "address/netmask" or "address/length") and X-CSTP-Split-Include-IP6 (a prefix),
less those of X-CSTP-Split-Exclude(-IP6); without any include, everything (a full tunnel). The client also reaches its
tunnel's own network (X-CSTP-Address with X-CSTP-Netmask) and its DNS servers (X-CSTP-DNS) through it. A packet from
the client's own address to such a destination, in the capture's plain traffic, did not take the tunnel: a route of
the client's machine more specific than the tunnel's (a home or hotel network using the same addresses, another VPN
or virtual adapter), or the tunnel's routes not installed.

A second case needs the tunnel decrypted: the VPN's DNS answered a name inside the tunnel (analyzer/inner.py reads the
client's lookups there, with their answers' addresses) with an address that the tunnel's routes do *not* cover, and
the client then connected to that address outside the tunnel — the split-include list lacks the server's network.

`read` looks at the client's TCP connections (with data, and the failed connects) and its DNS queries, first
packet from ``GRACE`` seconds after the CONNECT answer (a client installs its routes after that answer) to the
session's end; the gateway itself, multicast, broadcast, link-local and loopback destinations are left out. For a
full tunnel only the tunnel's network, its DNS servers and names resolved inside count (a full tunnel's client may
keep its local network outside it, by design: "local LAN access"). Rules: analyzer/rules/outside_tunnel.py
(TRAFFIC_OUTSIDE_TUNNEL, SPLIT_TUNNEL_ROUTE_MISSING). Needs the CONNECT decrypted; a capture taken at the gateway
never sees such traffic.
"""
from __future__ import annotations

import ipaddress

from ..phases import cstp_connect
from .grouping import Group
from .record import UNSET, Record, record

GRACE = 1.0  # seconds after the CONNECT answer before outside traffic counts (the client's routes go in meanwhile)
MAX_ITEMS = 20


@record
class OutsideTraffic(Record):
    """Traffic from the client's own address, outside the tunnel, to a destination the tunnel was for."""
    protocol: str  # tcp, or dns (a lookup over UDP or TCP port 53)
    dst: str
    port: int
    #: why the destination belongs in the tunnel: split-include (X-CSTP-Split-Include(-IP6) covers it),
    #: full-tunnel, tunnel-network (X-CSTP-Address/X-CSTP-Netmask), tunnel-dns (an X-CSTP-DNS server),
    #: resolved-inside (the VPN's DNS gave this address, inside the tunnel; the routes do not cover it)
    why: str
    covered: bool  # the tunnel's routes cover the destination
    route: str | None  # the split-include network (or the tunnel's network) that covers it
    name: str | None  # the name the VPN's DNS answered with this address, inside the tunnel
    name_frame: int | None  # that answer's frame
    connections: int  # TCP connections (client ports) or lookups to it
    answer: str  # connected, no answer, reset, unacknowledged, ICMP … from …; for DNS: resolved, NXDOMAIN, …
    frames: list[int]  # the first packets (SYNs, queries), the first 8
    time: float
    #: read without keys (`read_inferred`: the routes unknown, the name's answer read from the VPN adapter's capture)
    inferred: bool = UNSET


def _network(value: str):
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def _nets(values) -> list:
    return [n for v in values or () if (n := _network(v)) is not None]


def _special(a) -> bool:
    return a.is_multicast or a.is_link_local or a.is_loopback or a.is_unspecified or (
        a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255"))


class Routes:
    """What the CONNECT answer sends through the tunnel (`TunnelParameters`)."""

    def __init__(self, params) -> None:
        self.include = _nets(params.split_include) + _nets(getattr(params, "split_include_ip6", None) or [])
        self.exclude = _nets(params.split_exclude) + _nets(getattr(params, "split_exclude_ip6", None) or [])
        self.full4 = not any(n.version == 4 for n in self.include)
        self.full6 = bool(params.address_ip6) and not any(n.version == 6 for n in self.include)
        self.dns = {str(a) for a in params.dns or ()}
        self.own = []
        if params.address and params.netmask:
            n = _network(f"{params.address}/{params.netmask}")
            if n is not None and n.prefixlen > 0:
                self.own.append(n)
        if params.address_ip6:
            n = _network(params.address_ip6 if "/" in params.address_ip6 else params.address_ip6 + "/128")
            if n is not None and n.prefixlen > 0:
                self.own.append(n)

    def excluded(self, a) -> bool:
        """X-CSTP-Split-Exclude(-IP6) keeps ``a`` out of the tunnel: outside is where it belongs."""
        return any(a in n for n in self.exclude if n.version == a.version)

    def why(self, a) -> tuple[str, str | None] | None:
        """(why, route) when the tunnel's routes are for ``a`` (an address not excluded), else None."""
        if str(a) in self.dns:
            return "tunnel-dns", None
        net = next((n for n in sorted(self.include, key=lambda n: -n.prefixlen) if n.version == a.version
                    and a in n), None)
        if net is not None:
            return "split-include", str(net)
        net = next((n for n in self.own if n.version == a.version and a in n), None)
        if net is not None:
            return "tunnel-network", str(net)
        return None

    def full(self, a) -> bool:
        return self.full4 if a.version == 4 else self.full6


def _answer_of_failed(f) -> str:
    if f.answer == "icmp" and f.icmp:
        return f"ICMP {f.icmp.get('text')} from {f.icmp.get('from')}"
    return {"none": "no answer"}.get(f.answer, f.answer)


def read(index, g: Group, cstp, end: float | None, inner) -> list[OutsideTraffic]:
    """The session's traffic outside the tunnel to destinations the tunnel was for (module docstring), by
    (protocol, destination, port) in the order of their first packet; the first `MAX_ITEMS`. ``index``:
    sign_in.ClientIndex; ``cstp``: the cstp-connect phase; ``inner``: the session's merged InnerAttempts or None."""
    cd = cstp_connect.connect_details(cstp)
    params = cd.parameters if cd is not None and cd.parameters else None
    if params is None or end is None:
        return []
    start = min((c.response_time for c in cd.connects if c.response_time and c.status == 200), default=None)
    if start is None:
        return []
    return _read(index, g, start + GRACE, end, _resolved(inner), Routes(params))


def read_inferred(index, g: Group, up: float | None, end: float | None, inner) -> list[OutsideTraffic]:
    """Without keys, the routes unknown: the client's connections outside the tunnel, while it was up (``up``: its
    CONNECT answer read from record sizes), to addresses the VPN's DNS gave inside it (``inner``: read from the VPN
    adapter's packets, analyzer/tunnel_device.py). Items `why` resolved-inside, `inferred`: the tunnel's routes did not
    cover them, most likely (or a local route won: the CONNECT answer would tell)."""
    if up is None or end is None or inner is None:
        return []
    resolved = _resolved(inner)
    if not resolved:
        return []
    out = _read(index, g, up + GRACE, end, resolved, None)
    for x in out:
        x.inferred = True
    return out


def _resolved(inner) -> dict[str, tuple[str, int | None]]:
    """Address -> (name, answer frame): the client's lookups answered inside the tunnel (an InnerAttempts)."""
    resolved: dict[str, tuple[str, int | None]] = {}
    if inner is not None:
        for e in inner.lookups.values():
            if e["direction"] == "c2s" and e["rcode"] == 0:
                for a in e["addresses"]:
                    resolved.setdefault(a, (e["name"], e["answer_frame"]))
    return resolved


def _read(index, g: Group, since: float, end: float, resolved: dict, routes: Routes | None) -> list[OutsideTraffic]:
    """`read`'s work: ``routes`` None — no CONNECT answer read — only the addresses of ``resolved`` count."""
    client, gateway = g.key[0], g.key[1]
    ours = {id(cn.c) for cn in g.conns}
    inside = index.on_device  # (connects the VPN adapter's capture shows going into the tunnel)
    seen: list[tuple] = []  # (time, protocol, dst, port, frames, answer)
    for c in index.tcp.get(client, ()):
        if id(c) not in ours and since <= c.first_ts <= end and (*c.client, *c.server) not in inside:
            seen.append((c.first_ts, "tcp", c.server[0], c.server[1], [c.first_frame], "connected"))
    for f in index.failed.get(client, ()):
        if since <= f.first_ts <= end and (*f.client, *f.server) not in inside:
            seen.append((f.first_ts, "tcp", f.server[0], f.server[1], [fr for _t, fr in f.syns] or [f.first_frame],
                         _answer_of_failed(f)))
    for e in (index.dns.get(client) or {}).values():
        if e["queries"] and since <= e["queries"][0][0] <= end:
            ans = ("no answer" if e["rcode"] is None else "resolved" if e["rcode"] == 0 else
                   "NXDOMAIN" if e["rcode"] == 3 else f"RCODE {e['rcode']}")
            seen.append((e["queries"][0][0], "dns", e["server"], 53, [fr for _t, fr in e["queries"]], ans))
    by: dict[tuple, OutsideTraffic] = {}
    for ts, proto, dst, port, frames, answer in sorted(seen, key=lambda x: x[0]):
        if dst == gateway:
            continue
        try:
            a = ipaddress.ip_address(dst)
        except ValueError:
            continue
        if _special(a) or (routes is not None and routes.excluded(a)):
            continue
        why = routes.why(a) if routes is not None else None
        name = resolved.get(dst)
        covered = why is not None
        if why is None:
            if name is None:
                continue  # (in a full tunnel too: its client may keep its local network outside, "local LAN access")
            covered = routes is not None and routes.full(a)
            why = ("full-tunnel", None) if covered else ("resolved-inside", None)
        key = (proto, dst, port)
        x = by.get(key)
        if x is None:
            if len(by) >= MAX_ITEMS:
                continue
            x = by[key] = OutsideTraffic(protocol=proto, dst=dst, port=port, why=why[0], covered=covered,
                                         route=why[1], name=name[0] if name else None,
                                         name_frame=name[1] if name else None, connections=0, answer=answer,
                                         frames=[], time=ts)
        x.connections += 1
        if x.answer != answer and answer in ("connected", "resolved"):
            x.answer = answer  # (one connection through: the destination answered)
        x.frames = (x.frames + [fr for fr in frames if fr not in x.frames])[:8]
    return list(by.values())
