"""SESSION_DISCONNECT (info) and SESSION_TERMINATED (warning): how the tunnel ended.

Fact (protocol-notes "CSTP framing"): a CSTP/DTLS DISCONNECT (0x05) carries a reason (openconnect: 0xb0 +
text, e.g. "Aborted by caller" on a clean exit); TERMINATE (0x09) is sent by the gateway to end the session.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("SESSION_DISCONNECT", "SESSION_TERMINATED")


def check(session, ctx):
    end = session.tunnel.end if session.tunnel is not None else None
    if not end:
        return _inferred(session)
    who = "client" if end.direction == "c2s" else "gateway"
    if end.type == "TERMINATE":
        return [Finding(id="SESSION_TERMINATED", severity="warning", phase="cstp-connect", time=end.ts,
                        frames=[end.frame],
                        message=f"The {who} sent TERMINATE over {end.channel.upper()}"
                                + (f": {end.reason!r}" if end.reason else "") + ".",
                        remedy="The gateway ended the session: check its log for the reason (idle or session "
                               "timeout, administrator logoff, license).",
                        evidence=end.to_json())]
    return [Finding(id="SESSION_DISCONNECT", severity="info", phase="cstp-connect", time=end.ts,
                    frames=[end.frame],
                    message=f"The {who} disconnected over {end.channel.upper()}"
                            + (f" (reason {end.reason!r})" if end.reason else "") + ".",
                    remedy="Nothing to do for a user-initiated disconnect.", evidence=end.to_json())]


def _inferred(session):
    """Without keys: the last tunnel connection ended with a record of a DISCONNECT's size from the client (a
    payload too short for an IP packet: analyzer/keyless.py). A TERMINATE is not inferred (a bare control frame
    from the gateway could be a keepalive)."""
    ts = inferred_tunnels(session)
    if not ts or ts[-1].ended_by != "DISCONNECT":
        return []
    t = ts[-1]
    est = t.estimate
    who = "client" if est is not None and est.c2s.disconnect else "gateway"
    return [Finding(id="SESSION_DISCONNECT", severity="info", phase="cstp-connect", time=t.end_time,
                    frames=[t.end_frame] if t.end_frame else [], inferred=True,
                    message=f"The {who} disconnected over CSTP (a DISCONNECT-sized record on {t.connection}; "
                            "inferred from record sizes, no keys).",
                    remedy="Nothing to do for a user-initiated disconnect.",
                    evidence={"connection": t.connection, "ts": t.end_time, "frame": t.end_frame, "inferred": True})]
