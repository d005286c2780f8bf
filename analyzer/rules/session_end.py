"""SESSION_DISCONNECT (info) and SESSION_TERMINATED (warning): how the tunnel ended.

Fact (protocol-notes "CSTP framing"): a CSTP/DTLS DISCONNECT (0x05) carries a reason (openconnect: 0xb0 +
text, e.g. "Aborted by caller" on a clean exit); TERMINATE (0x09) is sent by the gateway to end the session. A gateway
ends a session with DISCONNECT too (ocserv 1.1 at its session or idle timeout, without a reason text; openconnect
then sends its own, "Server request", and exits): the session's end is the first of the two.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("SESSION_DISCONNECT", "SESSION_TERMINATED")
#: seconds without a data record before the gateway ended a tunnel (keyless) worth saying in the finding
IDLE_WORTH_SAYING = 10.0
#: the remedy of a DISCONNECT the gateway sent
GATEWAY_ENDED = ("Unless SESSION_TIMEOUT or IDLE_TIMEOUT tells the timer that ran out, the gateway's log says why "
                 "it ended the session (an administrator's logoff, a policy or licence change, its restart); the "
                 "user has to connect again.")


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
    if who == "gateway":
        # the gateway ended the session (its timers: analyzer/rules/gateway_timeout.py; an administrator's logoff;
        # its restart): the client answers with its own DISCONNECT, which is not the user's
        return [Finding(id="SESSION_DISCONNECT", severity="info", phase="cstp-connect", time=end.ts,
                        frames=[end.frame],
                        message=f"The gateway ended the session: DISCONNECT over {end.channel.upper()}"
                                + (f" (reason {end.reason!r})" if end.reason else "") + ".",
                        remedy=GATEWAY_ENDED, evidence=end.to_json())]
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
    if t.gateway_ended:
        g = t.gateway_ended
        idle = _idle_before(session, t, g["time"])
        quiet = (f" The tunnel had carried no data record either way for {idle:.1f} s before it (estimated from "
                 "record sizes)." if idle is not None and idle >= IDLE_WORTH_SAYING else "")
        return [Finding(id="SESSION_DISCONNECT", severity="info", phase="cstp-connect", time=g["time"],
                        frames=[g["frame"]] + ([t.end_frame] if t.end_frame else []), inferred=True,
                        message=f"The gateway ended the session: a control record from it on {t.connection} (frame "
                                f"{g['frame']}) answered {(t.end_time - g['time']) * 1000:.1f} ms later by the "
                                "client's DISCONNECT-sized record (inferred from record sizes, no keys)." + quiet,
                        remedy="Without keys the gateway's timers are not visible: the key log shows whether a "
                               "session or idle timeout ran out (SESSION_TIMEOUT, IDLE_TIMEOUT); else the gateway's "
                               "log says why it ended the session.",
                        evidence={"connection": t.connection, "ts": g["time"], "frame": g["frame"],
                                  "direction": "s2c", "answer_frame": t.end_frame, "inferred": True,
                                  "idle": round(idle, 3) if idle is not None else None})]
    who = "client" if est is not None and est.c2s.disconnect else "gateway"
    return [Finding(id="SESSION_DISCONNECT", severity="info", phase="cstp-connect", time=t.end_time,
                    frames=[t.end_frame] if t.end_frame else [], inferred=True,
                    message=f"The {who} disconnected over CSTP (a DISCONNECT-sized record on {t.connection}; "
                            "inferred from record sizes, no keys).",
                    remedy="Nothing to do for a user-initiated disconnect.",
                    evidence={"connection": t.connection, "ts": t.end_time, "frame": t.end_frame, "inferred": True})]


def _idle_before(session, t, at: float) -> float | None:
    """Seconds before ``at`` without a data record either way, estimated from record sizes over the tunnel
    connection ``t`` and the session's undecrypted DTLS flows (from the tunnel's start when none had one); None when
    nothing says."""
    times = []
    est = t.estimate
    if est is not None:
        times += [ts for ts in (est.last_data or {}).values() if ts is not None and ts <= at]
    dtls = session.phase("dtls").details
    for f in dtls.flow_list if isinstance(dtls, DTLSDetails) else []:
        e = f.estimate or None
        times += [ts for ts in ((e.last_data or {}) if e is not None else {}).values() if ts is not None and ts <= at]
    last = max(times, default=t.established_time)
    return at - last if last is not None else None
