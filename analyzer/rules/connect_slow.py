"""CONNECT_SLOW: phase 5, the gateway took long to answer the CONNECT.

Before it answers the CONNECT a gateway gives the tunnel its address and applies the group policy: an address from
a DHCP server (ASA: dhcp-network-scope) that answers slowly, RADIUS authorization or accounting, dynamic access
policies. None of it takes more than a fraction of a second when it works; meanwhile the user sees "Establishing VPN
session…". Keyed from the CONNECT and its answer (cstp-connect `connects`), without keys from the CONNECT round and
the first record of its answer (the inferred tunnels). Info from `SLOW` (5) s, warning from `LONG` (10) s. Scripted
case `connect-slow` (the CONNECT answered 8 s late). The CONNECT never answered is cstp-connect's own reading.
"""
from __future__ import annotations

from ..model import Finding
from ..phases import cstp_connect, inferred
from ..phases.record import opt
from .auth_slow import SLOW

RULE_IDS = ("CONNECT_SLOW",)

LONG = 10.0

REMEDY = ("Look at what the gateway does before it answers the CONNECT, at that time: its address assignment (ASA: a "
          "DHCP server for the pool — dhcp-network-scope — slow or unreachable; a local pool answers at once), "
          "RADIUS authorization or accounting, dynamic access policies (DAP); the gateway's log (ASA: debug webvpn "
          "anyconnect, debug dhcpc) shows which waited.")


def _connects(session) -> list[tuple[float, int, float, int, bool]]:
    """(request time, frame, answer time, answer frame, inferred) of every CONNECT the gateway answered."""
    cd = cstp_connect.connect_details(session.phase("cstp-connect"))
    rows = [(x.time, x.frame, x.response_time, x.response_frame, False)
            for x in (cd.connects if cd is not None else []) if opt(x.response_time) is not None]
    rows += [(t.connect_time, t.connect_frame, t.established_time, t.established_frame, True)
             for t in inferred.tunnels(session) if t.connect_time is not None and t.established_time is not None]
    return rows


def check(session, ctx):
    slow = [r for r in _connects(session) if r[2] - r[0] >= SLOW]
    if not slow:
        return []
    t, frame, answered, answer_frame, guessed = max(slow, key=lambda r: r[2] - r[0])
    waited = answered - t
    t0 = session.start if session.start is not None else t
    said = " (read from record timing: the CONNECT round and its answer's first record)" if guessed else ""
    return [Finding(
        id="CONNECT_SLOW", severity="warning" if waited >= LONG else "info", phase="cstp-connect", time=t,
        frames=[frame, answer_frame],
        message=f"The gateway took {waited:.1f} s to answer the CONNECT (sent at +{t - t0:.1f} s, frame {frame}; "
                f"answered frame {answer_frame}){said}: the time it spent giving the tunnel its address and applying "
                "the group policy — a DHCP server for the address pool, RADIUS authorization or accounting, dynamic "
                "access policies — which take a fraction of a second when they work; the user saw 'Establishing "
                "VPN session' meanwhile." + (f" {len(slow)} CONNECTs were this slow." if len(slow) > 1 else ""),
        remedy=REMEDY, inferred=guessed,
        evidence={"waited": round(waited, 3), "connects": len(slow), "request_frame": frame,
                  "answer_frame": answer_frame})]
