"""CONNECT_REJECTED (error): phase 5, the gateway refused the tunnel.

Facts (protocol-notes "Phases on the wire"): `CONNECT /CSCOSSLC/tunnel` is answered `200 CONNECTED` on success;
`401 Cookie is not acceptable` means a bad or expired webvpn cookie; `503` with `X-Reason:` a service problem
(e.g. no addresses left, license limit).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.record import opt

RULE_IDS = ("CONNECT_REJECTED",)


def check(session, ctx):
    p = session.phase("cstp-connect")
    out = []
    d = connect_details(p)
    for c in d.connects if d is not None else []:
        status = opt(c.status)
        if status is None or 200 <= status < 300:
            continue
        reason = c.x_reason or c.reason or ""
        if status == 401:
            remedy = ("The webvpn cookie was refused: it expired (cookie timeout), was already used, or the session "
                      "was removed on the gateway. Authenticate again; check the gateway's session/cookie timeouts.")
        elif status == 503:
            remedy = ("The gateway could not serve the tunnel (" + (reason or "no reason given") + "): check its "
                      "address pools, license limits and logs at that time.")
        else:
            remedy = "Check the gateway's log for this CONNECT; the status says why it refused."
        out.append(Finding(id="CONNECT_REJECTED", severity="error", phase="cstp-connect", time=opt(c.response_time),
                           frames=[f for f in (c.frame, c.response_frame) if f],
                           message=f"The gateway answered the CONNECT with {status} {reason}".rstrip() + ".",
                           remedy=remedy, evidence={"status": status, "reason": reason}))
    return out
