"""SESSION_TIMEOUT and IDLE_TIMEOUT (warning): the gateway ended the session at a timeout it had announced.

Facts: a gateway's answer to the CONNECT announces its timers — X-CSTP-Session-Timeout (the longest a session may
stay connected; ASA/FTD group policy vpn-session-timeout, ocserv session-timeout, "none" when unlimited),
X-CSTP-Session-Timeout-Remaining (what is left of it when this CONNECT was answered: a reconnect's answer gives
what the gateway counts from — ocserv 1.1 counts from each connection's start, lab scenario session-timeout-reconnect)
and X-CSTP-Idle-Timeout (how long the tunnel may carry no packet inside it; ASA/FTD vpn-idle-timeout, ocserv
idle-timeout; DPDs and keepalives do not count). When one runs out the gateway sends DISCONNECT (ocserv 1.1: on the
TLS channel, no reason text; openconnect logs "Received server disconnect … Session terminated by server" and
exits) or TERMINATE; after a session timeout the cookie is gone with the session (ocserv invalidates it; ASA's
maximum connect time ends the login): the user has to log in again. ocserv checks its timers every 30 s, so the
end comes up to that much after the timeout (lab scenarios session-timeout: 30 s announced, the end 40 s after the
CONNECT; idle-timeout: 30 s announced, the end after 40.5 s without a packet inside).

How: the session's last tunnel end (`Session.tunnel.end`) was sent by the gateway; the last CONNECT answered 2xx
before it announced the timer; the time from that answer to the end (session timeout) or from the last packet inside
the tunnel on any channel, either way (`Session.tunnel.last_inner_packet`; the answer when none came after it) to
the end (idle timeout) reached the timer, less EARLY s, and did not pass it by more than `_late_by` — a gateway
that ends the session much later than its timer says ended it for another reason. With both timers run out, the one
that ran out first is told.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import answered
from ..phases.grouping import to_int
from ..wording import timer

RULE_IDS = ("SESSION_TIMEOUT", "IDLE_TIMEOUT")
#: seconds a timer's end may come before the timer as the capture measures it (the gateway counts from its own
#: start of the connection, a little before the CONNECT answer leaves it)
EARLY = 2.0
#: a gateway checks its timers periodically (ocserv every 30 s): how late after the timer the end still counts
PERIODIC_CHECK = 60.0


def _late_by(timer: int) -> float:
    """Seconds past `timer` within which an end is still that timer's (a periodic check, or 5 % of long timers)."""
    return max(PERIODIC_CHECK, 0.05 * timer)


def _secs(x: float) -> str:
    if x >= 7200:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def check(session, ctx):
    t = session.tunnel
    end = t.end if t is not None else None
    if end is None or end.direction != "s2c":
        return []
    done = answered(session, end.ts)
    if not done:
        return []
    cx = done[-1]
    p = cx.parameters
    found = []  # (deadline, finding id, evidence)
    session_timer = to_int(p.session_timeout)
    remaining = to_int(p.session_timeout_remaining or None)
    limit = remaining if remaining is not None else session_timer
    if limit:
        elapsed = end.ts - cx.response_time
        if limit - EARLY <= elapsed <= limit + _late_by(limit):
            found.append((cx.response_time + limit, "SESSION_TIMEOUT", {
                "session_timeout": session_timer, "remaining": remaining, "elapsed": round(elapsed, 3)}))
    idle_timer = to_int(p.idle_timeout)
    if idle_timer:
        inner = [ts for ts in (t.last_inner_packet or {}).values() if ts is not None and ts <= end.ts]
        since = max([cx.response_time] + inner)
        idle = end.ts - since
        if idle_timer - EARLY <= idle <= idle_timer + _late_by(idle_timer):
            found.append((since + idle_timer, "IDLE_TIMEOUT", {
                "idle_timeout": idle_timer, "idle": round(idle, 3), "last_inner_packet": since if inner else None}))
    if not found:
        return []
    _deadline, fid, ev = min(found, key=lambda x: x[0])
    ev.update({"connect_frame": cx.response_frame, "connected": cx.response_time, "end_frame": end.frame,
               "end_type": end.type, "channel": end.channel, "reason": end.reason, "connection": cx.connection,
               "reconnects": len(done) - 1})
    how = f"{end.type} over {end.channel.upper()}" + (f", reason {end.reason!r}" if end.reason else "")
    if fid == "SESSION_TIMEOUT":
        left = (f", {remaining} s of it remaining" if remaining is not None and remaining != session_timer
                else "")
        again = " (a reconnect's: the gateway counted from it)" if len(done) > 1 else ""
        msg = (f"The gateway ended the session ({how}) {_secs(ev['elapsed'])} after its CONNECT answer (frame "
               f"{cx.response_frame}){again}, at the session timeout it announced there: X-CSTP-Session-Timeout "
               f"{timer(session_timer) if session_timer else 'not given'}{left}. That is the longest a session "
               "may stay connected; the user has to log in again.")
        remedy = ("Expected if the policy limits sessions to that time. If it is too short, raise the maximum "
                  "connect time: ASA/FTD group policy vpn-session-timeout, ocserv session-timeout.")
    else:
        last = ev["last_inner_packet"]
        after = (f"the last at {_secs(last - session.start)} into the session"
                 if last is not None and session.start is not None else "none after the CONNECT answer")
        msg = (f"The gateway ended the session ({how}) after {_secs(ev['idle'])} without a packet inside the "
               f"tunnel ({after}; DPDs and keepalives do not count), at the idle timeout it announced in its "
               f"CONNECT answer (frame {cx.response_frame}): X-CSTP-Idle-Timeout {timer(idle_timer)}.")
        remedy = ("Expected for a tunnel nobody used. If users lose sessions they still want, raise the idle "
                  "timeout (ASA/FTD group policy vpn-idle-timeout, ocserv idle-timeout).")
    return [Finding(id=fid, severity="warning", phase="cstp-connect", time=end.ts,
                    frames=[f for f in (cx.response_frame, end.frame) if f is not None], message=msg, remedy=remedy,
                    evidence=ev)]
