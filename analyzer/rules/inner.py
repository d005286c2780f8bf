"""INNER_UNREACHABLE (warning): the tunnel is up and carries the client's traffic, but destinations inside it did not
answer — "connected, but I cannot reach the server", the commonest complaint once the VPN connects.

Read from the decrypted tunnel (analyzer/inner.py; `Session.tunnel.unreachable`): the client's TCP connects whose SYN
was sent again and never answered, answered by a reset, or by an ICMP destination unreachable that came back through
the tunnel; its DNS lookups that got an error (NXDOMAIN, SERVFAIL, REFUSED), no answer to a query sent again, or an
ICMP error. Facts: a SYN sent again means the first got no answer (RFC 6298 §5, the retransmission timer); an ICMP
destination unreachable quotes the packet it answers (RFC 792, RFC 4443) and names the router or host that sent it —
"administratively prohibited" is a filter's reject (an ACL: on an ASA, the group policy's VPN filter or an interface
ACL), "port unreachable" from the DNS server's address means nothing listens on port 53 there. The tunnel itself
works (its frames pass both ways): the failure is beyond the gateway — its routes, its filters, the servers. Lab
scenario `inner-unreachable` (real openconnect and ocserv; a blackhole and a prohibit route in the gateway's
namespace, no DNS server at the tunnel's DNS address).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt

RULE_IDS = ("INNER_UNREACHABLE",)


def _frames(fr: list[int]) -> str:
    return f"frame{'s' if len(fr) != 1 else ''} {', '.join(str(f) for f in fr[:5])}{', …' if len(fr) > 5 else ''}"


def describe_connect(c) -> str:
    """"198.19.0.77:8080 (no answer to 4 SYNs, frames …)"."""
    n = len(c.syn_frames)
    if c.answer == "icmp" and c.icmp:
        how = f"{c.icmp.get('from')} answered ICMP {c.icmp.get('text')}, frame {c.answer_frame}"
    elif c.answer == "reset":
        how = f"refused with a reset, frame {c.answer_frame}"
    else:
        how = f"no answer to {n} SYN{'s' if n != 1 else ''}, {_frames(c.syn_frames)}"
    many = f"; {c.attempts} connections" if c.attempts > 1 else ""
    return f"{c.dst}:{c.port} ({how}{many})"


def describe_lookup(x) -> str:
    return f"{x.name} at the DNS server {x.server} ({x.answer}, {_frames(x.frames)})"


def check(session, ctx):
    t = session.tunnel
    u = opt(t.unreachable) if t is not None else None
    if u is None:
        return []
    parts = [describe_connect(c) for c in u.connects[:5]] + [describe_lookup(x) for x in u.lookups[:5]]
    more = len(u.connects) + len(u.lookups) - len(parts)
    frames = sorted({f for c in u.connects[:5] for f in c.syn_frames[:3] + ([c.answer_frame] if c.answer_frame
                                                                             else [])}
                    | {f for x in u.lookups[:5] for f in x.frames[:3]})
    times = [c.time for c in u.connects] + [x.time for x in u.lookups]
    remedies = []
    if any(c.answer == "icmp" and c.icmp and "prohibited" in (c.icmp.get("text") or "") for c in u.connects):
        remedies.append("a filter refuses some of it: look at the ACL of the device that sent the ICMP "
                        "'administratively prohibited' (on the gateway: the group policy's VPN filter, its interface "
                        "ACLs) for the client's tunnel address")
    if any(c.answer == "none" or (c.answer == "icmp" and c.icmp and "prohibited" not in (c.icmp.get("text") or ""))
           for c in u.connects):
        remedies.append("for the destinations that did not answer, check the gateway's route to them (and theirs "
                        "back to the client's tunnel address pool), the firewalls between, and that the servers are "
                        "up")
    if any(c.answer == "reset" for c in u.connects):
        remedies.append("a reset: the server (or a firewall for it) refused the port")
    if u.lookups:
        remedies.append("check the DNS servers the gateway gives the client (X-CSTP-DNS) answer through the tunnel, "
                        "and that the internal names exist there (split DNS: X-CSTP-Split-DNS / the default domain)")
    dev = opt(t.device)
    where = ""
    if u.read_from and dev is not None:
        where = (f" Read without the tunnel's keys from the VPN adapter's packets ({dev.interface}"
                 + (f"; the frames are those of {dev.capture}" if dev.capture else "") + ").")
    return [Finding(
        id="INNER_UNREACHABLE", severity="warning", phase="cstp-connect", time=min(times), frames=frames[:20],
        message="The tunnel is up, but inside it the client could not reach " + "; ".join(parts)
                + (f"; and {more} more" if more > 0 else "") + f" ({u.connects_tried} TCP connect(s) and "
                f"{u.lookups_tried} DNS lookup(s) seen in the tunnel). The tunnel itself carries the traffic: the "
                "failure is beyond the gateway." + where,
        remedy=remedies[0][0].upper() + "; ".join(remedies)[1:] + ".",
        evidence={"connects": [c.to_json() for c in u.connects[:10]],
                  "lookups": [x.to_json() for x in u.lookups[:10]],
                  "connects_tried": u.connects_tried, "lookups_tried": u.lookups_tried}
        | ({"read_from": u.read_from, "capture": dev.capture} if where else {}))]
