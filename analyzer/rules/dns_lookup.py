"""DNS_LOOKUP_FAILED (capture-wide): no VPN session in the capture, and names the client's DNS lookups could not
resolve (analyzer/dns_lookups.py: NXDOMAIN, SERVFAIL, REFUSED, no address record, or no answer at all) — the
client cannot connect to a gateway whose name it cannot resolve, and such a capture holds nothing else of it.

Fact (RFC 1035 §4.1.1): RCODE 3 (NXDOMAIN) means the name does not exist, 2 (SERVFAIL) the server could not
process the query, 5 (REFUSED) it would not; an answer with RCODE 0 and no answer record is a name without a record
of the asked type. Lab scenarios `gateway-name-unknown` (NXDOMAIN) and `dns-unanswered` (no answer)."""
from __future__ import annotations

from ..model import Finding

RULE_IDS = ("DNS_LOOKUP_FAILED",)

REMEDY = {
    "NXDOMAIN": "The DNS server says the name does not exist: check the gateway's name in the client's profile or "
                "the address the user typed (a typo, an internal name used from outside) and the gateway's DNS "
                "record.",
    "SERVFAIL": "The DNS server could not resolve the name: look at that server (its upstream servers, DNSSEC "
                "validation) or give the client another one.",
    "REFUSED": "The DNS server refused to answer: the client uses a server that does not serve it (a wrong DNS "
               "server setting, a resolver limited to other networks).",
    "no record": "The name exists but has no address record of the type asked: add the gateway's A (or AAAA) "
                 "record.",
    "no answer": "The DNS server never answered: check the client reaches it (UDP 53 through the firewalls, the "
                 "DNS server address it is given).",
}


def capture_wide(analysis) -> Finding | None:
    if analysis.sessions:
        return None
    bad = ((analysis.other_traffic or {}).get("dns") or {}).get("failed") or []
    if not bad:
        return None
    parts = [f"{b['name']} ({', '.join(b['types'])}): {b['answer']} from {', '.join(b['servers'])} (frame"
             f"{'s' if len(b['frames']) != 1 else ''} {', '.join(str(f) for f in b['frames'][:4])}"
             f"{', …' if len(b['frames']) > 4 else ''})" for b in bad[:5]]
    n = len(bad)
    first = bad[0]["answer"].split("/")[0]
    failed_names = {b["name"] for b in bad}
    # the client reached servers by name over TLS (SNI): the gateway may be among them, the failed name something
    # else the login needed (a SAML identity provider the gateway sent the browser to: scripted/saml-idp-unknown)
    reached = [t for t in (analysis.other_traffic or {}).get("tls_servers") or []
               if t.get("names") and not failed_names & set(t["names"])]
    also = ""
    if reached:
        named = ", ".join(f"{t['names'][0]} ({t['server']})" for t in reached[:3])
        also = (f" The client did reach {named} over TLS: if that is the gateway, the name that failed is something "
                f"else the login needed — a SAML identity provider, most likely, when the gateway sends the user's "
                f"browser to one — and --gateway {reached[0]['names'][0]} shows the session.")
    return Finding(
        id="DNS_LOOKUP_FAILED", severity="warning", time=bad[0]["time"],
        frames=sorted({f for b in bad[:5] for f in b["frames"][:4]}),
        message=f"No VPN session, and {'a' if n == 1 else n} name{'s' if n != 1 else ''} the client looked up "
                f"did not resolve: " + "; ".join(parts) + (" …" if n > 5 else "") + ". If "
                + ("that is" if n == 1 else "one of them is") + " the VPN gateway's name, the client could not "
                "resolve it and never tried to connect." + also,
        remedy=REMEDY.get(first, REMEDY["no answer"]),
        evidence={"names": [b["name"] for b in bad[:20]], "answers": [b["answer"] for b in bad[:20]],
                  "servers": sorted({s for b in bad for s in b["servers"]})[:10], "failed_names": n}
        | ({"tls_servers_reached": [t["names"][0] for t in reached[:10]]} if reached else {}))
