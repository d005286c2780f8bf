"""TCP_RETRANSMISSIONS (warning): loss on the TCP connection that carries the CSTP tunnel.

Fact: when DTLS is not used the tunnel is TCP-over-TCP; inner TCP and the outer TLS connection both retransmit
on loss, which collapses throughput ("TCP meltdown"). When DTLS carries the data, loss on the TLS connection is
loss on the path all the same, but not TCP-over-TCP. Threshold: at least RETRANS_MIN retransmitted segments and
a rate of at least RETRANS_RATE of the data segments in the CSTP connection. Timed at the first retransmission.
Without keys the TCP counts are the same facts; which connection carries the tunnel is the keyless reading's
(cstp-connect `inferred.tunnels`), so the finding is marked inferred. Not told when every retransmission is the
gateway's data sent again while the client was silent on every flow (TUNNEL_SILENT: a laptop asleep or offline),
nor for the gateway sending to an address the client left (CLIENT_ADDRESS_CHANGED).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails
from ..phases.inferred import reading
from .reconnect import moved_away
from .tunnel_silent import told as silences_told

RULE_IDS = ("TCP_RETRANSMISSIONS",)
RETRANS_MIN = 3
RETRANS_RATE = 0.01


def check(session, ctx):
    out = []
    cstp = session.phase("cstp-connect")
    d = connect_details(cstp)
    dtls = session.phase("dtls").details
    dtls_up = isinstance(dtls, DTLSDetails) and bool(dtls.established)
    names = [c.connection for c in d.connects] if d is not None else []
    inferred = False
    if d is None and reading(cstp, confident=False) == "ok":
        names = [t.connection for t in cstp.inferred.tunnels or []]  # (without keys: the connections read as tunnels)
        inferred = True
    # the client gone silent while the gateway sent (TUNNEL_SILENT): its data sent again into the silence is no loss
    away = [(x.frames[0], x.frames[-1]) for x in silences_told(session, ctx)
            if x.gateway_sent and len(x.frames) == 2]
    for name in names:
        conn = next((x for x in session.connections if x.connection == name), None)
        if not conn:
            continue
        left = moved_away(session, conn)
        if left is not None and conn.first_retransmission is not None and conn.first_retransmission >= left:
            continue  # the gateway sending to an address the client left (CLIENT_ADDRESS_CHANGED), not loss
        r = conn.retransmissions
        seg = conn.segments
        total_r = sum(r.values())
        listed = conn.retransmission_frames
        if away and total_r <= len(listed) and all(any(f0 < f <= f1 for f0, f1 in away) for f in listed):
            continue
        total_s = max(sum(seg.values()), 1)
        if total_r >= RETRANS_MIN and total_r / total_s >= RETRANS_RATE:
            out.append(Finding(
                id="TCP_RETRANSMISSIONS", severity="warning", phase="cstp-connect",
                time=conn.first_retransmission if conn.first_retransmission is not None else conn.start,
                frames=conn.retransmission_frames[:10],
                message=f"{total_r} retransmitted TCP segments on the tunnel's TLS connection {name} "
                        f"({100 * total_r / total_s:.1f} % of {total_s} data segments)"
                        + (" (the tunnel's connection read without keys)." if inferred else "."),
                remedy=("Loss on the path between client and gateway. DTLS was up, so the tunnel's data was not "
                        "TCP-over-TCP, but the TLS connection carries the control traffic (DPD, keepalives, "
                        "reconnects): find where packets were lost at that time (see the DPD findings)."
                        if dtls_up else
                        "Loss on the path; with the tunnel over TCP (no DTLS) this hurts much more than loss on "
                        "UDP: fix the loss and make DTLS work."),
                evidence={"retransmissions": r, "segments": seg, "dtls_established": dtls_up,
                          "first_retransmission": conn.first_retransmission} | ({"inferred": True} if inferred else {}),
                inferred=inferred))
            break
    return out
