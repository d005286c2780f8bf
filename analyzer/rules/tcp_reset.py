"""TCP_RESET_INJECTED (warning): a TCP reset that claims to come from the gateway (or the client) arrived with
another IP TTL than that side's packets do, or that side went on sending data on the connection after it — a
device between them sent it (a firewall, an IPS, a load balancer resetting the connection), not the peer (a peer
that resets its connection sends nothing more on it).

Facts (RFC 791 §3.2, RFC 8200 §3): every router on the path lowers a packet's TTL (IPv6: hop limit) by one, and a
host starts its packets at one value (Linux and macOS 64, Windows 128, network devices often 255). Packets of one
sender over one path therefore arrive with one TTL; a reset that arrives with another (two or more apart) was made
by a host at another distance or with another initial value. The baseline is the side's SYN or SYN-ACK, captured
with the connection (its `handshake_ttl`); for a connection refused by a reset, the gateway's SYN-ACKs on the
session's other connections. Lab scenario `middlebox-reset` (the reset made by nftables with TTL 64, the gateway's
own packets leaving with TTL 200).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import UNSET
from ..phases.tls_handshake import ConnectionSummary, FailedConnectSummary

RULE_IDS = ("TCP_RESET_INJECTED",)

MIN_TTL_GAP = 2  # a reset's TTL this far from its side's handshake TTL was made elsewhere


def _ttl(c, direction: str) -> int | None:
    t = c.handshake_ttl if c.handshake_ttl is not UNSET else {}
    return t.get(direction)


def check(session, ctx):
    tcp = [c for c in session.connections if isinstance(c, ConnectionSummary)]
    gw_ttls = {t for c in tcp if (t := _ttl(c, "s2c")) is not None}
    forged = []  # (connection, direction, reset frame, reset ttl, expected ttl, baseline text)
    went_on = {}  # connection -> (direction, segments that side sent after its reset)
    for c in tcp:
        after = c.after_reset if c.after_reset is not UNSET else {}
        for x in c.closed or []:
            if x.get("reason") != "rst":
                continue
            base = _ttl(c, x["direction"])
            gap = x.get("ttl") is not None and base is not None and abs(x["ttl"] - base) >= MIN_TTL_GAP
            if gap or after.get(x["direction"]):
                forged.append((c.connection, x["direction"], x["frame"], x.get("ttl"), base, x.get("ts"),
                               "its SYN-ACK" if x["direction"] == "s2c" else "its SYN"))
                if after.get(x["direction"]):
                    went_on[c.connection] = (x["direction"], after[x["direction"]])
    if len(gw_ttls) == 1:  # connections refused by a reset: the gateway's SYN-ACKs elsewhere in the session
        (base,) = gw_ttls
        for f in session.connections:
            if isinstance(f, FailedConnectSummary) and f.answer == "reset" and f.answer_ttl is not UNSET \
                    and abs(f.answer_ttl - base) >= MIN_TTL_GAP:
                forged.append((f.connection, "s2c", f.answer_frame, f.answer_ttl, base, f.answer_time,
                               "its SYN-ACKs on the session's other connections"))
    if not forged:
        return []
    forged.sort(key=lambda x: x[2] or 0)
    def part(conn, d, frame, ttl, base, how) -> str:
        side = "gateway" if d == "s2c" else "client"
        text = f"the reset of {conn} (frame {frame}) came from the {side}'s address"
        if ttl is not None and base is not None and abs(ttl - base) >= MIN_TTL_GAP:
            text += f" with TTL {ttl}, where that side's packets arrive with TTL {base} ({how})"
        if conn in went_on:
            n = went_on[conn][1]
            text += f"{',' if ' TTL ' in text else ''} and the {side} sent {n} more segment{'s' if n != 1 else ''} " \
                    "with data on the connection after it"
        return text

    parts = [part(conn, d, frame, ttl, base, how) for conn, d, frame, ttl, base, _ts, how in forged[:4]]
    first = forged[0]
    who = "gateway" if first[1] == "s2c" else "client"
    return [Finding(
        id="TCP_RESET_INJECTED", severity="warning", phase="cstp-connect", time=first[5],
        frames=sorted({x[2] for x in forged if x[2]})[:10],
        message="A device between client and gateway reset the connection: " + "; ".join(parts)
                + (" …" if len(forged) > 4 else "") + f". The {who} did not send "
                + ("them." if len(forged) > 1 else "it."),
        remedy="Look at the firewalls, IPS and load balancers between client and gateway for why they reset the "
               "VPN's TCP connection at that time (an idle or session timeout, a TCP state check, an IPS "
               "signature); the gateway's log shows no reason for it.",
        evidence={"resets": [{"connection": conn, "direction": d, "frame": frame, "ttl": ttl, "expected_ttl": base}
                             | ({"sent_after": went_on[conn][1]} if conn in went_on else {})
                             for conn, d, frame, ttl, base, _ts, _how in forged[:20]]})]
