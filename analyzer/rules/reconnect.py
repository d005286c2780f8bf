"""RECONNECT (info) and RECONNECT_ADDRESS_CHANGED (warning): more than one CONNECT in a session.

Facts (protocol-notes "Timers"): after a dead peer the client reconnects (every 10 s, +10 s per try, up to
100 s) with a new TLS session whose CONNECT presents the same webvpn cookie, without a new authentication; a
reconnect that returns a different address makes openconnect abort the session.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("RECONNECT", "RECONNECT_ADDRESS_CHANGED")


def check(session, ctx):
    d = connect_details(session.phase("cstp-connect"))
    connects = [c for c in (d.connects if d is not None else []) if c.status and 200 <= c.status < 300]
    out = []
    conns = {c.connection: c for c in session.connections}
    for prev, cur in zip(connects, connects[1:]):
        prev_conn = conns.get(prev.connection)
        gap = cur.time - ((prev_conn.end if prev_conn is not None else None) or prev.time)
        out.append(Finding(
            id="RECONNECT", severity="info", phase="cstp-connect", time=cur.time,
            frames=[prev.frame, cur.frame],
            message=f"The client reconnected the tunnel ({cur.connection}), {gap:.1f} s after the previous "
                    f"tunnel connection ({prev.connection}) ended.",
            remedy="A reconnect follows a lost connection (DPD timeout, reset); look at the findings just before it.",
            evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection}))
        a = prev.parameters.address if prev.parameters else None
        b = cur.parameters.address if cur.parameters else None
        if a and b and a != b:
            out.append(Finding(
                id="RECONNECT_ADDRESS_CHANGED", severity="warning", phase="cstp-connect", time=cur.time,
                frames=[cur.response_frame or cur.frame],
                message=f"The reconnect got another tunnel address ({a} → {b}); openconnect aborts the session then, "
                        "applications lose their connections.",
                remedy="Make the gateway keep the address across reconnects (address pool sticky to the session / "
                       "user).",
                evidence={"before": a, "after": b}))
    if d is None:
        out += _inferred(session)
    return out


def _inferred(session):
    """Without keys: more than one tunnel connection found by the keyless reading (analyzer/phases/inferred.py)."""
    ts = inferred_tunnels(session)
    out = []
    for prev, cur in zip(ts, ts[1:]):
        if cur.connect_time is None:  # up before the capture started too: not seen being made
            continue
        gap = cur.connect_time - (prev.end_time or prev.connect_time or cur.connect_time)
        out.append(Finding(
            id="RECONNECT", severity="info", phase="cstp-connect", time=cur.connect_time,
            frames=[x for x in (prev.connect_frame, cur.connect_frame) if x is not None], inferred=True,
            message=f"The client reconnected the tunnel ({cur.connection}), {gap:.1f} s after the previous tunnel "
                    f"connection ({prev.connection}) ended (inferred from record sizes, no keys).",
            remedy="A reconnect follows a lost connection (DPD timeout, reset); look at the findings just before it.",
            evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection, "inferred": True}))
    return out
