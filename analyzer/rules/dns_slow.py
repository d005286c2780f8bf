"""DNS_SLOW: looking up the gateway's name held the client back before it connected.

A client resolves the gateway's name (the host of its profile's URL, the SNI of its ClientHello) before its first
TCP connection; a resolver on the LAN answers in milliseconds. When a query goes unanswered the client's resolver
waits and asks again (glibc: 5 s by default, `options timeout:N attempts:N`; Windows: 1 s, then more), and the
connection starts only once it has an address. The classic cause: a DNS server or firewall that drops the queries for
IPv6 addresses (AAAA) — the A query is answered at once, the AAAA query never, and the resolver waits for it until it
gives up. Read from the capture's DNS lookups (analyzer/dns_lookups.py: plain DNS, the same with keys or without) of
the session's client for the name its first TLS connection names (SNI), in the minute before that connection: info
when the client's first query came `WAITED` seconds or more before its first SYN, a query went unanswered or was
answered late, and the SYN followed the lookup's last query or answer (within `RESOLVER_GIVES_UP`: an answer at once
and a SYN much later is a user's wait, not the lookup's). Lab scenario `dns-slow-aaaa`.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.tls_handshake import TLSHandshakeDetails

RULE_IDS = ("DNS_SLOW",)

WAITED = 1.0  # s from the client's first query for the name to its first SYN to the gateway
BEFORE = 60.0  # s: lookups this long before the session's first connection are its own
#: s from the lookup's last query or answer to the first SYN: a resolver waits this long at most before it gives up on
#: a query (glibc's default timeout, 5 s, and some room); a SYN later than that followed something else
RESOLVER_GIVES_UP = 10.0

REMEDY = ("Make the client's DNS server answer every query for the gateway's name at once — an AAAA query too (an "
          "answer without an address is fine) — or let those queries through the firewall that drops them. On Linux, "
          "glibc's resolv.conf option single-request (or single-request-reopen) avoids a device that loses the "
          "second of two queries sent together.")


def _gateway_name(session) -> str | None:
    d = session.phase("tls-handshake").details
    ch = opt(d.client_hello) if isinstance(d, TLSHandshakeDetails) else None
    return ch.sni.rstrip(".").lower() if ch is not None and ch.sni else None


def _told(e: dict) -> str:
    """How one lookup (one type) went, in words."""
    sent = len(e["queries"])
    frames = ", ".join(str(f) for _t, f in e["queries"][:4])
    if e["rcode"] is None:
        return (f"its {e['type']} query never got an answer (sent {sent} time{'s' if sent != 1 else ''}: frames "
                f"{frames})")
    late = e["answer_time"] - e["queries"][0][0]
    if late >= WAITED:
        return (f"its {e['type']} query was answered only {late:.1f} s after it was first sent (sent {sent} "
                f"time{'s' if sent != 1 else ''}; answer frame {e['answer_frame']})")
    return f"its {e['type']} query was answered at once (frame {e['answer_frame']})"


def check(session, ctx):
    name = _gateway_name(session)
    start = session.start
    if not name or start is None:
        return []
    mine = [e for e in ctx.dns_lookups if e["client"] == session.client and e["queries"]
            and e["name"].rstrip(".").lower() == name and start - BEFORE <= e["queries"][0][0] <= start]
    if not mine:
        return []
    mine.sort(key=lambda e: e["queries"][0])
    first = mine[0]["queries"][0]
    waited = start - first[0]
    if waited < WAITED:
        return []
    # (one item per query type: its retries are in its `queries`; a lookup a new socket sent again is another entry)
    by_type: dict[str, dict] = {}
    for e in mine:
        t = by_type.get(e["type"])
        if t is None:
            by_type[e["type"]] = {**e, "queries": list(e["queries"])}
        else:
            t["queries"] += e["queries"]
            if t["rcode"] is None and e["rcode"] is not None:
                t.update(rcode=e["rcode"], answer_time=e["answer_time"], answer_frame=e["answer_frame"])
    unanswered = [t for t, e in by_type.items() if e["rcode"] is None]
    late = [t for t, e in by_type.items() if e["rcode"] is not None
            and e["answer_time"] - e["queries"][0][0] >= WAITED]
    if not unanswered and not late:
        return []  # every answer came at once: the wait before the SYN was not the lookup's (a user's click)
    last = max([q[0] for e in by_type.values() for q in e["queries"]]
               + [e["answer_time"] for e in by_type.values() if e["rcode"] is not None])
    if start - last > RESOLVER_GIVES_UP:
        return []  # the connection did not follow the lookup: something else held the client
    how = "; ".join(_told(e) for e in by_type.values())
    why = (f" The resolver waited for the {' and '.join(unanswered)} answer until it gave up: a DNS server or firewall "
           f"that drops such queries delays every connection so." if unanswered and len(unanswered) < len(by_type)
           else "")
    frames = sorted({f for e in by_type.values() for _t, f in e["queries"][:3]}
                    | {e["answer_frame"] for e in by_type.values() if e.get("answer_frame") is not None})[:10]
    return [Finding(
        id="DNS_SLOW", severity="info", phase="tls-handshake", time=first[0], frames=frames,
        message=f"Looking up the gateway's name {name} took {waited:.1f} s before the client connected (its first "
                f"query frame {first[1]}, its first SYN {waited:.1f} s later): {how}.{why}",
        remedy=REMEDY,
        evidence={"name": name, "waited": round(waited, 3), "unanswered": unanswered,
                  "lookups": [{"type": e["type"], "queries": len(e["queries"]), "answered": e["rcode"] is not None,
                               "answer_frame": e.get("answer_frame")} for e in by_type.values()]})]
