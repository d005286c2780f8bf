"""RECONNECT (info), RECONNECT_ADDRESS_CHANGED (warning) and CLIENT_ADDRESS_CHANGED (info): more than one CONNECT
in a session.

A new tunnel connection at the rekey time of the previous CONNECT answer, when that answer asked for
X-CSTP-Rekey-Method new-tunnel (ASA/FTD, ocserv rekey-method = new-tunnel), is the rekey — the client discards its
connection and sets the tunnel up again with its cookie (lab scenario rekey-new-tunnel) —: RECONNECT says so
(evidence `rekey`), and the verdict does not read it as a dropped tunnel.

Facts (protocol-notes "Timers"): after a dead peer the client reconnects (every 10 s, +10 s per try, up to
100 s) with a new TLS session whose CONNECT presents the same webvpn cookie, without a new authentication; a
reconnect that returns a different address makes openconnect abort the session. A client that moved to another
network (Wi-Fi to a mobile network, a new network at home) or whose NAT changed its public address reconnects from
its new address with the same cookie (lab scenario client-roams: its old connections go silent, its DPD declares the
gateway dead, it reconnects at once from the new address; the gateway keeps sending to the old address, whose TCP
retransmissions are no loss on the path).
"""
from __future__ import annotations

from ..evidence import split_endpoint
from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("RECONNECT", "RECONNECT_ADDRESS_CHANGED", "CLIENT_ADDRESS_CHANGED")


def client_host(conn) -> str | None:
    """The client address of a flow summary (`client` is ADDRESS:PORT)."""
    return split_endpoint(conn.client)[0] if conn is not None and conn.client else None


def moved_away(session, conn) -> float | None:
    """When the session's client reconnected from another address than ``conn``'s (the start of the first later
    tunnel connection from another address), or None."""
    host = client_host(conn)
    later = [c.start for c in session.connections if c.start is not None and conn.start is not None
             and c.start > conn.start and c.connection.startswith("tcp.") and client_host(c) != host]
    return min(later) if later else None


def check(session, ctx):
    d = connect_details(session.phase("cstp-connect"))
    connects = [c for c in (d.connects if d is not None else []) if c.status and 200 <= c.status < 300]
    out = []
    conns = {c.connection: c for c in session.connections}
    for prev, cur in zip(connects, connects[1:]):
        prev_conn = conns.get(prev.connection)
        gap = cur.time - ((prev_conn.end if prev_conn is not None else None) or prev.time)
        when = (f"{gap:.1f} s after the previous tunnel connection ({prev.connection}) ended" if gap >= 0.05 else
                # its end came with the reconnect: the gateway closed it when the cookie came back on a new one
                f"while the previous tunnel connection ({prev.connection}) was still open (it ended with the "
                "reconnect)")
        rekey = _rekey(prev, cur)
        if rekey is not None:
            out.append(Finding(
                id="RECONNECT", severity="info", phase="cstp-connect", time=cur.time,
                frames=[prev.frame, cur.frame],
                message=f"The client set the tunnel up again on a new connection ({cur.connection}) "
                        f"{cur.time - prev.response_time:.1f} s after the previous CONNECT answer, at the rekey time "
                        f"the gateway announced there (X-CSTP-Rekey-Time {rekey} s, X-CSTP-Rekey-Method new-tunnel): "
                        "a scheduled rekey, not a lost connection.",
                remedy="Nothing to do: the gateway asks for a new tunnel at each rekey (ASA/FTD: anyconnect ssl "
                       "rekey method new-tunnel; ocserv rekey-method = new-tunnel); 'ssl' renews the keys in place.",
                evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection,
                          "rekey": True, "rekey_time": rekey}))
            continue
        out.append(Finding(
            id="RECONNECT", severity="info", phase="cstp-connect", time=cur.time,
            frames=[prev.frame, cur.frame],
            message=f"The client reconnected the tunnel ({cur.connection}), {when}.",
            remedy="A reconnect follows a lost connection (DPD timeout, reset); look at the findings just before it.",
            evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection}))
        moved = _moved(session, prev_conn, conns.get(cur.connection), cur.time, [cur.frame], prev.connection,
                       cur.connection, "with its cookie")
        if moved is not None:
            out.append(moved)
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


#: seconds from the client's FIN on a tunnel connection to its next tunnel connection's first packet within which
#: that connection is the client's own replacement (a new-tunnel rekey: 7 ms in lab scenario rekey-new-tunnel)
REPLACED_WITHIN = 1.0


def _client_closed(prev_conn, cur_conn) -> dict | None:
    """{frame, after} when the client closed ``prev_conn`` first — its FIN before anything of the gateway's, the
    gateway's FIN after it, no reset — and ``cur_conn`` began within REPLACED_WITHIN s of it (without keys: a client
    that chose to set the tunnel up again, as a new-tunnel rekey does; a lost connection ends with the gateway's
    reset or close, or in silence), else None."""
    closed = list(getattr(prev_conn, "closed", None) or [])
    if not closed or cur_conn is None or cur_conn.start is None:
        return None
    c0 = min(closed, key=lambda c: c["ts"])
    if c0.get("direction") != "c2s" or c0.get("reason") != "fin":
        return None
    # and the gateway closed its side in kind: a live connection ended by agreement (a client that gives up a dead
    # one — its DPD timed out, a laptop waking — gets a reset back, or nothing: lab scenario laptop-sleeps)
    if any(c.get("reason") == "rst" for c in closed) or not any(
            c.get("direction") == "s2c" and c.get("reason") == "fin" for c in closed):
        return None
    after = cur_conn.start - c0["ts"]
    return {"frame": c0.get("frame"), "after": after} if 0 <= after <= REPLACED_WITHIN else None


#: seconds around the announced rekey time within which a new tunnel connection is the rekey (the client's timer
#: counts from its own connect, a little before the CONNECT answer; some gateways add a margin to the header)
REKEY_EARLY, REKEY_LATE = 30.0, 30.0


def _rekey(prev, cur) -> int | None:
    """The rekey time of ``prev``'s CONNECT answer when ``cur`` is the new tunnel its 'new-tunnel' rekey asks for
    (made within REKEY_EARLY/REKEY_LATE of that time after the answer, the same address granted), else None."""
    p = prev.parameters or None
    if p is None or (p.rekey_method or "").strip().lower() != "new-tunnel" or not p.rekey_time:
        return None
    if prev.response_time is None:
        return None
    after = cur.time - prev.response_time
    if not p.rekey_time - REKEY_EARLY <= after <= p.rekey_time + REKEY_LATE:
        return None
    q = cur.parameters or None
    if q is not None and p.address and q.address and p.address != q.address:
        return None
    return p.rekey_time


def _moved(session, prev_conn, cur_conn, when, frames, prev_name, cur_name, how, inferred=False):
    """CLIENT_ADDRESS_CHANGED when the tunnel connection ``cur_conn`` came from another client address than
    ``prev_conn``, else None."""
    old_host, new_host = client_host(prev_conn), client_host(cur_conn)
    if not old_host or not new_host or old_host == new_host:
        return None
    # the last packet of any flow of the old address: when the client left it
    left = max((c.end for c in session.connections if client_host(c) == old_host and c.end is not None
                and c.end <= when), default=None)
    return Finding(
        id="CLIENT_ADDRESS_CHANGED", severity="info", phase="cstp-connect", time=when, frames=frames,
        inferred=inferred,
        message=f"The client reconnected from another address ({old_host} → {new_host}) {how}: it moved to another "
                "network (Wi-Fi to a mobile network, another Wi-Fi), or a NAT between it and the gateway gave it "
                "another public address."
                + (f" The last packet of its flows from {old_host} was {when - left:.1f} s before the reconnect: "
                   "the tunnel was interrupted about that long." if left is not None else "")
                + " The gateway's packets to the old address after it are not loss on the path.",
        remedy="Nothing to fix in the VPN if the client moved. Reconnects after every move are expected; frequent "
               "ones without a move point at a NAT with short UDP/TCP timeouts on the way.",
        evidence={"before": old_host, "after": new_host, "previous": prev_name, "new": cur_name,
                  "interrupted": round(when - left, 3) if left is not None else None}
        | ({"inferred": True} if inferred else {}))


def _inferred(session):
    """Without keys: more than one tunnel connection found by the keyless reading (analyzer/phases/inferred.py).
    One from another client address is in the session because the client resumed the session's DTLS session id
    from that address (analyzer/phases/grouping.py `_join_moved_clients`)."""
    ts = inferred_tunnels(session)
    conns = {c.connection: c for c in session.connections}
    out = []
    for prev, cur in zip(ts, ts[1:]):
        if cur.connect_time is None:  # up before the capture started too: not seen being made
            continue
        gap = cur.connect_time - (prev.end_time or prev.connect_time or cur.connect_time)
        chose = _client_closed(conns.get(prev.connection), conns.get(cur.connection)) if prev.ended_by == "close" \
            else None
        if chose is not None:
            out.append(Finding(
                id="RECONNECT", severity="info", phase="cstp-connect", time=cur.connect_time,
                frames=[x for x in (prev.connect_frame, chose["frame"], cur.connect_frame) if x is not None],
                inferred=True,
                message=f"The client closed the previous tunnel connection ({prev.connection}) itself — its FIN "
                        f"(frame {chose['frame']}), no DISCONNECT, no reset — and set the tunnel up again on "
                        f"{cur.connection} {chose['after']:.1f} s later: what a rekey the gateway asks for with "
                        "X-CSTP-Rekey-Method new-tunnel looks like (inferred from record sizes and TCP flags, no "
                        "keys; the key log shows the rekey time).",
                remedy="Nothing to do if the gateway asks for new-tunnel rekeys (reconnects at a steady interval); "
                       "otherwise the client's log says why it reconnected.",
                evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection, "inferred": True,
                          "rekey": True, "closed_frame": chose["frame"]}))
            continue
        out.append(Finding(
            id="RECONNECT", severity="info", phase="cstp-connect", time=cur.connect_time,
            frames=[x for x in (prev.connect_frame, cur.connect_frame) if x is not None], inferred=True,
            message=f"The client reconnected the tunnel ({cur.connection}), {gap:.1f} s after the previous tunnel "
                    f"connection ({prev.connection}) ended (inferred from record sizes, no keys).",
            remedy="A reconnect follows a lost connection (DPD timeout, reset); look at the findings just before it.",
            evidence={"gap": round(gap, 3), "previous": prev.connection, "new": cur.connection, "inferred": True}))
        moved = _moved(session, conns.get(prev.connection), conns.get(cur.connection), cur.connect_time,
                       [x for x in (cur.connect_frame,) if x is not None], prev.connection, cur.connection,
                       "(inferred without keys: from its new address it resumed the session's DTLS session id, "
                       "which is sent in the clear, then connected again)", inferred=True)
        if moved is not None:
            out.append(moved)
    return out
