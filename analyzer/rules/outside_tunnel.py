"""TRAFFIC_OUTSIDE_TUNNEL and SPLIT_TUNNEL_ROUTE_MISSING (warnings): while the tunnel was up, the client sent
traffic meant for the VPN outside the tunnel — "connected, but I cannot reach the server", when the tunnel itself
never saw the attempt.

TRAFFIC_OUTSIDE_TUNNEL: the destination is one the tunnel's routes cover (X-CSTP-Split-Include(-IP6), the tunnel's
own network, its DNS servers; or a full tunnel and a name the VPN's DNS resolved), yet its packets left from the
client's own address on its own interface: a route of the client's machine won over the tunnel's (a local network
using the VPN's addresses, another VPN or virtual adapter), or the tunnel's routes were not installed. A matter of
the client's machine.

SPLIT_TUNNEL_ROUTE_MISSING: the VPN's DNS answered a name, inside the tunnel, with an address the tunnel's routes do
not cover, and the client's connection to it went outside: the split-tunnel list lacks that server's network. A
matter of the gateway's configuration.

Read from `Session.tunnel.outside_traffic` (analyzer/phases/outside.py); needs the CONNECT decrypted (the routes
are in its answer) and, for the second, the tunnel (the lookup is inside it). Lab scenario `route-outside-tunnel`.
Without keys, with the VPN adapter's capture (analyzer/tunnel_device.py: the lookup's answer read there), the second
is inferred: the routes unknown, a missing split-tunnel route is the likelier cause — a local route would be the
other (lab scenario `route-outside-tunnel-adapter`).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import granted
from ..phases.record import opt

RULE_IDS = ("TRAFFIC_OUTSIDE_TUNNEL", "SPLIT_TUNNEL_ROUTE_MISSING")
LISTED = 5  # destinations named in a message


def _frames(xs) -> list[int]:
    return sorted({f for x in xs[:LISTED] for f in x.frames[:4]})


def _what(x, name_in: str = "") -> str:
    proto = "DNS queries" if x.protocol == "dns" else "TCP"
    n = f"{x.connections} connections" if x.protocol == "tcp" and x.connections > 1 else ""
    frames = ", ".join(str(f) for f in x.frames[:4])
    return (f"{proto} to {x.dst}:{x.port} ({'; '.join(p for p in (_why(x, name_in), n, x.answer) if p)}, frames "
            f"{frames})")


def _why(x, name_in: str = "") -> str:
    """Why ``x``'s destination was the tunnel's; ``name_in``: " of <file>" when the name's answer is in another
    capture file than the connection (the VPN adapter's)."""
    if x.why == "split-include":
        base = f"X-CSTP-Split-Include {x.route}"
    elif x.why == "tunnel-network":
        base = f"the tunnel's own network {x.route}"
    elif x.why == "tunnel-dns":
        base = "the tunnel's DNS server (X-CSTP-DNS)"
    elif x.why == "full-tunnel":
        base = "a full tunnel"
    else:
        base = ""
    if x.name:
        said = f"the VPN's DNS gave it for {x.name}" + (f" (frame {x.name_frame}{name_in})" if x.name_frame else "")
        base = f"{base}, {said}" if base else said
    return base


def _listed(xs, name_in: str = "") -> str:
    more = len(xs) - LISTED
    return "; ".join(_what(x, name_in) for x in xs[:LISTED]) + (f"; and {more} more" if more > 0 else "")


def check(session, ctx):
    t = session.tunnel
    got = opt(t.outside_traffic) if t is not None else None
    if not got:
        return []
    params = granted(session)
    includes = list(params.split_include) + list(params.split_include_ip6) if params is not None else []
    routes = ("X-CSTP-Split-Include " + ", ".join(includes)) if includes else "a full tunnel"
    if all(opt(x.inferred) for x in got):
        return [_inferred(session, got)]
    out = []
    covered = [x for x in got if x.covered]
    if covered:
        out.append(Finding(
            id="TRAFFIC_OUTSIDE_TUNNEL", severity="warning", phase="cstp-connect", time=covered[0].time,
            frames=_frames(covered),
            message=f"While the tunnel was up, the client sent traffic meant for the VPN outside the tunnel, from its "
                    f"own address {session.client}: {_listed(covered)}. The tunnel's routes cover these "
                    "destinations, so a route on the client's machine took them elsewhere — one more specific than "
                    "the tunnel's (a home, hotel or office network using the VPN's addresses, another VPN or virtual "
                    "adapter) — or the client did not install the tunnel's routes.",
            remedy="Compare the client's routing table (route print, netstat -rn, ip route) with the tunnel's routes: "
                   "a local network that overlaps the VPN's addresses has to move to another range (or the client "
                   "join another network); remove routes other software added for those addresses; check that the "
                   "client installs the routes the gateway gives (its log) and its local LAN access setting.",
            evidence={"outside": [x.to_json() for x in covered[:10]], "client": session.client,
                      "split_include": includes}))
    missing = [x for x in got if not x.covered]
    if missing:
        out.append(Finding(
            id="SPLIT_TUNNEL_ROUTE_MISSING", severity="warning", phase="cstp-connect", time=missing[0].time,
            frames=_frames(missing) + sorted({x.name_frame for x in missing[:LISTED] if x.name_frame}),
            message=f"The VPN's DNS answered names inside the tunnel with addresses its routes ({routes}) do not "
                    f"cover, so the client's traffic to them went outside the tunnel: {_listed(missing)}. The "
                    "split-tunnel list lacks those servers' networks.",
            remedy="Add the servers' networks to the tunnel's routes: on an ASA or FTD the group policy's split-tunnel "
                   "network list (or, for names whose addresses change, dynamic split include domains); on ocserv a "
                   "route line. Or answer those names with addresses the tunnel already routes.",
            evidence={"outside": [x.to_json() for x in missing[:10]], "client": session.client,
                      "split_include": includes}))
    return out


def _inferred(session, got) -> Finding:
    """Without keys (`read_inferred`): what the VPN's DNS gave inside the tunnel, reached outside it."""
    dev = opt(session.tunnel.device)
    name_in = f" of {dev.capture}" if dev is not None and dev.capture and dev.capture not in (session.captures or []) \
        else ""
    return Finding(
        id="SPLIT_TUNNEL_ROUTE_MISSING", severity="warning", phase="cstp-connect", time=got[0].time,
        frames=_frames(got), inferred=True,
        message="The VPN's DNS answered names inside the tunnel (read from the VPN adapter's packets), but the "
                f"client's traffic to those addresses went outside the tunnel, from its own address {session.client}: "
                f"{_listed(got, name_in)}. Most likely the tunnel's routes (its split-tunnel list) do not cover them; "
                "else a route on the client's machine took them elsewhere (read without keys: the CONNECT answer's "
                "X-CSTP-Split-Include tells which).",
        remedy="Add the servers' networks to the tunnel's routes (on an ASA or FTD the group policy's split-tunnel "
               "network list; on ocserv a route line) — or, if they are there, look for a local route on the "
               "client's machine that is more specific than the tunnel's. With the key log acflow tells which.",
        evidence={"outside": [x.to_json() for x in got[:10]], "client": session.client, "inferred": True})

