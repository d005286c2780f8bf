"""TUNNEL_SILENT (info): nothing crossed an established tunnel, either way, on any of the session's flows, for
longer than a living client allows — the client's computer slept, lost its network, or its VPN client hung.

Facts (protocol-notes "Timers"): a client sends a DPD request after `dpd` seconds without receiving anything
(X-CSTP-DPD / X-DTLS-DPD) and a KEEPALIVE after `keepalive` seconds without sending; a gateway gives a silent
client up after its own DPD or idle timeout (ocserv: no DPD from the client for a while, then it tears the
connection down; ASA: DPD, vpn-idle-timeout). So with a DPD interval set, a pause of 2 × dpd + 5 s without one
packet either way cannot come from two running peers that reach each other: the client was not running (a laptop
asleep or hibernated), its network was gone (Wi-Fi lost, the cable out — a capture on that interface then sees
nothing either), or its VPN client hung. A capture on the laptop shows nothing in that time; after it, the client's
old connections are typically dead (the gateway answers them with a reset) and it reconnects with its cookie (lab
scenario laptop-sleeps: openconnect stopped and its network cut for 45 s; ocserv dpd = 5 tore the connection down
after 40 s).

How: every flow keeps its pauses of 10 s or more (dissectors.flows.note_quiet, `Session.connections[].silences`);
the session's silence is where none of its flows had a packet, while a tunnel connection was open across it. Without
the DPD interval (no keys, or dpd 0) only a silence that a reconnect ends is told (one of UNKNOWN_DPD_SILENCE s or
more; a longer one, DEFAULT_DPD_SILENCE, on its own): a reconnect shows the tunnel was lost.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("TUNNEL_SILENT",)
#: seconds of silence that a reconnect ends, when the DPD interval is not known
UNKNOWN_DPD_SILENCE = 20.0
#: seconds of silence without a reconnect, when the DPD interval is not known: 2 × 30 s + 5 (30 s: the DPD
#: interval Cisco's and openconnect's defaults give)
DEFAULT_DPD_SILENCE = 65.0
#: seconds after a silence within which a reconnect is its consequence
RECONNECT_WITHIN = 60.0


def busy_spans(session) -> list[tuple[float, float, int | None, int | None]]:
    """(from, to, first frame, last frame) of every stretch in which a flow of the session had packets with no
    pause of QUIET_MIN s (dissectors.flows) between them."""
    spans = []
    for c in session.connections:
        if c.start is None or c.end is None:
            continue
        at, frame = c.start, c.first_frame
        for q in getattr(c, "silences", None) or ():
            spans.append((at, q["from"], frame, q["frames"][0]))
            at, frame = q["to"], q["frames"][1]
        spans.append((at, c.end, frame, c.last_frame))
    return sorted(spans, key=lambda s: (s[0], s[1]))


def session_silences(session, minimum: float) -> list[tuple[float, float, int | None, int | None]]:
    """(from, to, frame before, frame after) of the session's pauses of ``minimum`` s or more in which none of its
    flows had a packet."""
    out = []
    end = end_frame = None
    for a, b, fa, fb in busy_spans(session):
        if end is not None and a - end >= minimum:
            out.append((end, a, end_frame, fa))
        if end is None or b > end:
            end, end_frame = b, fb
    return out


def _tunnels(session) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """The session's tunnel connections: {connection: when it came up} of those a CONNECT 2xx (keyless: the
    reading) or a DTLS handshake brought up, and (connection, time) of every CONNECT, in time order."""
    d = connect_details(session.phase("cstp-connect"))
    up: dict[str, float] = {}
    connects: list[tuple[str, float]] = []
    if d is not None:
        for c in d.connects:
            if c.status and 200 <= c.status < 300:
                up.setdefault(c.connection, c.response_time or c.time)
                connects.append((c.connection, c.time))
    else:
        for t in inferred_tunnels(session):
            when = t.established_time or t.connect_time
            up.setdefault(t.connection, when if when is not None else float("-inf"))
            if t.connect_time is not None:
                connects.append((t.connection, t.connect_time))
    for c in session.connections:
        if getattr(c, "dtls", False) and c.start is not None and up:
            up.setdefault(c.connection, c.start)
    return up, sorted(connects, key=lambda x: x[1])


def _dpd(session) -> int | None:
    d = connect_details(session.phase("cstp-connect"))
    p = d.parameters if d is not None else None
    values = [v for v in ((p.dpd, p.dtls_dpd) if p is not None else ()) if v]
    return min(values) if values else None


def _rel(t: float, start: float | None) -> str:
    return f"+{t - start:.1f} s" if start is not None else f"{t:.3f}"


def check(session, ctx):
    up, connects = _tunnels(session)
    if not up:
        return []
    dpd = _dpd(session)
    alone = 2 * dpd + 5 if dpd else DEFAULT_DPD_SILENCE  # a silence that tells on its own
    conns = {c.connection: c for c in session.connections}
    out = []
    # a silence a reconnect ends tells sooner: the tunnel was lost in it
    ended = max(UNKNOWN_DPD_SILENCE, dpd + 5) if dpd else UNKNOWN_DPD_SILENCE
    for a, b, fa, fb in session_silences(session, min(alone, ended)):
        # a tunnel connection open across it: up before it began, with a packet after it
        across = [n for n, t in up.items() if t <= a and n in conns and (conns[n].end or 0) >= b]
        if not across:
            continue
        later = [(n, t) for n, t in connects if b <= t <= b + RECONNECT_WITHIN]
        if b - a < (ended if later else alone):
            continue
        reset = next((x for n in across for x in (conns[n].closed or ())
                      if x.get("reason") == "rst" and x.get("direction") == "s2c" and b <= x["ts"] <= b + 5), None)
        after = []
        if reset is not None:
            after.append(f"the gateway answered the client's next packet on the old connection with a reset (frame "
                         f"{reset['frame']}): it had ended the connection meanwhile")
        if later:
            n, t = later[0]
            after.append(f"the client reconnected {t - b:.1f} s after the silence ({n})")
        else:
            after.append("the tunnel carried on after it on the same connections")
        limit = (f"although the DPD interval is {dpd} s (a running client asks after {dpd} s without a packet)"
                 if dpd else "and a reconnect followed" if later else
                 "(longer than 2 × the usual 30 s DPD interval + 5 s)")
        out.append(Finding(
            id="TUNNEL_SILENT", severity="info", phase="cstp-connect", time=a,
            frames=[f for f in (fa, fb) if f is not None],
            inferred=connect_details(session.phase("cstp-connect")) is None,
            message=(f"Nothing crossed the tunnel either way for {b - a:.0f} s ({_rel(a, session.start)} to "
                     f"{_rel(b, session.start)}) {limit}: the client's computer slept, lost its network, or its VPN "
                     "client stopped; " + "; ".join(after) + "."),
            remedy="Nothing to fix in the VPN if the computer slept or went offline; otherwise look at the client's "
                   "network link and its VPN client's log at that time (a capture on the client that stopped "
                   "would look the same).",
            evidence={"from": a, "to": b, "seconds": round(b - a, 3), "dpd": dpd, "connections": sorted(across),
                      "reset_frame": reset["frame"] if reset is not None else None,
                      "reconnect": later[0][0] if later else None}))
    return out
