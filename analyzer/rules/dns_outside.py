"""DNS_OUTSIDE_TUNNEL (warning; info when every such lookup resolved): while the tunnel was up, the client looked up
names in the VPN's own domains at a DNS server outside the tunnel — "connected, but internal names do not resolve".

Facts: the gateway's CONNECT answer gives the client its DNS servers (X-CSTP-DNS), its default domain
(X-CSTP-Default-Domain) and, for split tunnels, the domains to resolve through the tunnel (X-CSTP-Split-DNS); the
client is to send lookups of those names to those servers, inside the tunnel. A lookup of such a name seen in the
capture *outside* the tunnel (the capture's own DNS traffic: analyzer/dns_lookups.py), to another server, means the
client's resolver did not take the VPN's settings (the client did not apply them, another adapter's DNS server won,
a DNS proxy or security software answered first). Its answer tells the consequence: NXDOMAIN or no answer — the
name does not resolve for the user; resolved — the public answer, possibly not the internal one. Lab scenario
`dns-outside-tunnel` (real openconnect and ocserv; the client namespace's resolver left at an outside server).
Read from `Session.tunnel.outside_lookups` (analyzer/phases/session.py `outside_lookups`); needs the CONNECT
decrypted (the domains are in its answer).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import granted
from ..phases.record import opt

RULE_IDS = ("DNS_OUTSIDE_TUNNEL",)


def check(session, ctx):
    t = session.tunnel
    got = opt(t.outside_lookups) if t is not None else None
    if not got:
        return []
    params = granted(session)
    ours = ", ".join(params.dns) if params is not None and params.dns else "none given"
    domains = [d for d in ([params.default_domain] if params and params.default_domain else [])
               + (list(params.split_dns) if params else [])]
    failed = [x for x in got if x.answer != "resolved"]
    parts = [f"{x.name} at {x.server} ({x.answer}, frames {', '.join(str(f) for f in x.frames[:4])})"
             for x in (failed or got)[:5]]
    more = len(failed or got) - len(parts)
    what = "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    frames = sorted({f for x in (failed or got)[:5] for f in x.frames[:4]})
    evidence = {"lookups": [x.to_json() for x in got[:10]], "tunnel_dns": list(params.dns) if params else [],
                "domains": domains}
    if failed:
        return [Finding(
            id="DNS_OUTSIDE_TUNNEL", severity="warning", phase="cstp-connect", time=failed[0].time, frames=frames,
            message=f"While the tunnel was up, the client looked up names of the VPN's domains ({', '.join(domains)}) "
                    f"outside the tunnel, at a DNS server that is not the tunnel's ({ours}), and got no address: "
                    f"{what}. Those names do not resolve for the user.",
            remedy="Make the client resolve the VPN's domains through the tunnel: check that it applies the DNS "
                   "servers and domains the gateway gives it (X-CSTP-DNS, X-CSTP-Default-Domain, X-CSTP-Split-DNS; "
                   "on an ASA the group policy's dns-server, default-domain and split-dns), and what else on the "
                   "machine answers DNS first (another adapter's server, a DNS proxy, security software).",
            evidence=evidence)]
    return [Finding(
        id="DNS_OUTSIDE_TUNNEL", severity="info", phase="cstp-connect", time=got[0].time, frames=frames,
        message=f"While the tunnel was up, the client looked up names of the VPN's domains ({', '.join(domains)}) "
                f"outside the tunnel, at a DNS server that is not the tunnel's ({ours}): {what}. They resolved there — "
                "to the outside answer, which may not be the internal one.",
        remedy="If users reach the wrong address for internal names, make the client resolve the VPN's domains "
               "through the tunnel (split DNS).",
        evidence=evidence)]
