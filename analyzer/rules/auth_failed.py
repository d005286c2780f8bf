"""AUTH_FAILED (error) and AUTH_MULTI_ROUND (info): phase 3, user authentication.

Fact (seed document, "POST - User Authentication"; protocol-notes "Phases on the wire"): success is a
`type="complete"` answer with `<auth id="success">`; failure is HTTP 401, or an `<error>` / the auth form sent
again with a message (ocserv: a new auth-request asking the same field again, "Login failed."). Every rejected
round is reported: an error when the login finally failed, a warning when a later round succeeded. Several
auth-reply rounds are normal for multi-factor logins (ocserv asks for the username and the password in two rounds).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("AUTH_FAILED", "AUTH_MULTI_ROUND")


def check(session, ctx):
    p = session.phase("user-auth")
    d = p.details if isinstance(p.details, UserAuthDetails) else None
    out = []
    rounds = d.rounds if d is not None else []
    sso = opt(d.sso) if d is not None else None
    if sso is not None and sso.outcome != "token-returned":
        return []  # no credentials were ever sent: AUTH_SSO_INCOMPLETE (rules/auth_sso.py) tells it
    scan = opt(d.host_scan) if d is not None else None
    if scan is not None and scan.outcome != "completed" and not rounds:
        return []  # the login never began: HOSTSCAN_INCOMPLETE (rules/hostscan.py)
    if p.status == "failed" and (d is None or opt(d.unanswered) is None):  # (unanswered: rules/auth_slow.py)
        last = rounds[-1] if rounds else None
        msg = " ".join(((d.failure_message if d is not None else None)
                        or "the gateway did not accept the credentials").split())
        msg = msg.rstrip(".")
        out.append(Finding(
            id="AUTH_FAILED", severity="error", phase="user-auth",
            time=(last.response_time or last.time) if last is not None else None,
            frames=[f for f in (last.frame, last.response_frame) if f] if last is not None else [],
            message=f"User authentication failed: {msg}.",
            remedy="Check the username/password (or the second factor) and the connection profile's "
                   "authentication server; on the gateway, look at the AAA log for this user at that time.",
            evidence={"rounds": len(rounds), "gateway_message": msg}))
    elif p.status == "ok" and any(r.rejected for r in rounds):
        # a rejected attempt stays a finding even when a later one succeeded (a mistyped password, a wrong
        # second factor, an AAA server that failed once): each rejected round, with the gateway's words
        for r in rounds:
            if not r.rejected:
                continue
            why = " ".join((r.rejection or "rejected").split()).rstrip(".")
            out.append(Finding(
                id="AUTH_FAILED", severity="warning", phase="user-auth",
                time=r.response_time or r.time,
                frames=[f for f in (r.frame, r.response_frame) if f],
                message=f"The gateway rejected an authentication round ({why}; fields sent: "
                        f"{', '.join(r.fields) or 'none'}); a later round succeeded.",
                remedy="Nothing to fix if the user mistyped; repeated rejections before success point at the "
                       "credentials the client fills in automatically, a second factor, or an AAA server that "
                       "fails intermittently (look at the gateway's AAA log at this time).",
                evidence={"round_frame": opt(r.frame), "gateway_message": why, "final_result": "success"}))
    if p.status == "ok" and len(rounds) > 1:
        out.append(Finding(
            id="AUTH_MULTI_ROUND", severity="info", phase="user-auth", time=rounds[0].time,
            frames=[r.frame for r in rounds if r.frame],
            message=f"Authentication took {len(rounds)} rounds (fields asked: "
                    f"{', '.join('/'.join(r.fields or ['?']) for r in rounds)}).",
            remedy="Nothing to do if the gateway is set up for multi-step or multi-factor login.",
            evidence={"rounds": len(rounds)}))
    inf = p.inferred
    if p.status == "undecrypted" and inf is not None and inf.status == "ok" and (inf.auth_rounds or 0) > 1:
        out.append(Finding(
            id="AUTH_MULTI_ROUND", severity="info", phase="user-auth", time=inf.rounds[0].time,
            frames=[r.frame for r in inf.rounds], inferred=True,
            message=f"Authentication took {inf.auth_rounds} rounds after the first request (inferred from the "
                    "request/response records, no keys).",
            remedy="Nothing to do if the gateway is set up for multi-step or multi-factor login.",
            evidence={"rounds": inf.auth_rounds, "inferred": True}))
    return out
