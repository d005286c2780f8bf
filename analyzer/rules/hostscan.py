"""HOSTSCAN_INCOMPLETE (error; info while the capture ends waiting): phase 3, a host scan (posture) that never let
the login go on.

Fact (what openconnect and its CSD script do, recorded in the lab: samples/scripted/hostscan*): a gateway that
requires a host scan answers the client's init with `<host-scan>` (ticket, token, base URI, wait URI) beside the
login form. The client runs its CSD script, which GETs `/+CSCOE+/sdesktop/token.xml?ticket=…` for a token and POSTs
the endpoint description to `/+CSCOE+/sdesktop/scan.xml` (cookie `sdesktop`); the client then GETs the wait URI,
again every second while the answer is a refresh page (the gateway still evaluating), and posts init again once it
is not. No init after the scan: the script did not run or could not post (no token, an error answer), or the gateway
never finished evaluating (the wait page refreshing until the user gave up).

Without keys (`inferred`, analyzer/phases/inferred.py `_polling`): after the gateway answered the client's first
request, another program on the client's machine (its TLS ClientHello not the client's) connected to the gateway
and went nowhere else (no identity provider: not a browser's sign-in), then the client asked for one page again and
again at a steady pace, each answer alike, and went no further — the wait page refreshing while the gateway never
finished evaluating the scan.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("HOSTSCAN_INCOMPLETE",)


REMEDY = ("Look at the gateway's host scan / posture evaluation for this client at this time (ASA: the HostScan and "
          "DAP debug logs); on the client, the posture module's log.")


def check(session, ctx):
    p = session.phase("user-auth")
    d = p.details if isinstance(p.details, UserAuthDetails) else None
    scan = opt(d.host_scan) if d is not None else None
    if scan is None and p.status == "undecrypted":
        return _inferred(p)
    if scan is None or scan.outcome == "completed":
        return []
    reqs = scan.requests
    if not reqs:
        where = "no request of the host scan reached the gateway (the client did not run its CSD script)"
    elif not scan.token_fetched:
        where = "the CSD script got no token from the gateway (token.xml not answered 200)"
    elif scan.results_status is None:
        where = "the CSD script fetched its token but posted no scan results"
    elif scan.results_status != 200:
        where = f"the gateway answered the scan results with HTTP {scan.results_status}"
    elif scan.waits and scan.refreshes == scan.waits:
        where = (f"the scan results were posted, and the gateway answered all {scan.waits} requests for the wait "
                 "page with a refresh page: it never finished evaluating the scan")
    else:
        where = f"the scan results were posted; {scan.waits} wait page request(s), {scan.refreshes} refreshing"
    frames = [scan.offered_frame] + [r.frame for r in reqs[:6]]
    evidence = {"outcome": scan.outcome, "waited": opt(scan.waited), "token_fetched": scan.token_fetched,
                "results_status": scan.results_status, "waits": scan.waits, "refreshes": scan.refreshes}
    if scan.outcome == "capture-ended":
        return [Finding(
            id="HOSTSCAN_INCOMPLETE", severity="info", phase="user-auth", time=scan.offered_time, frames=frames,
            message=f"The host scan (posture) was still in progress when the capture ended, "
                    f"{opt(scan.waited) or 0:.1f} s after the gateway asked for it: {where}.",
            remedy="Capture until the login ends.", evidence=evidence)]
    return [Finding(
        id="HOSTSCAN_INCOMPLETE", severity="error", phase="user-auth", time=scan.offered_time, frames=frames,
        message=f"The host scan (posture) the gateway asked for was not completed: {where}; the client gave up after "
                f"{opt(scan.waited) or 0:.1f} s, before any login.",
        remedy=REMEDY, evidence=evidence)]


def _inferred(p) -> list[Finding]:
    """Without keys: another program's connections, then the client polling one page until it gave up (or the
    capture ended) — the module's docstring."""
    inf = p.inferred
    si = opt(inf.sign_in) if inf is not None else None
    if si is None or si.single_sign_on or not opt(si.polls) or inf.status == "ok":
        return []  # (ok: the wait page's polls, then the login went on — a host scan that finished)
    frames = [si.since_frame] + list(si.poll_frames[:6])
    what = (f"after the gateway answered the client's first request, another program on the client's machine (the "
            f"host scan's script, most likely) connected to the gateway ({', '.join(si.connections[:4])}), then the "
            f"client asked for one page {si.polls} times, every {si.poll_interval:.1f} s, each answered alike — the "
            "wait page refreshing while the gateway evaluates the scan")
    evidence = {"inferred": True, "outcome": "gave-up" if inf.status == "failed" else "capture-ended",
                "polls": si.polls, "poll_interval": si.poll_interval, "script_connections": si.connections}
    if inf.status != "failed":
        return [Finding(
            id="HOSTSCAN_INCOMPLETE", severity="info", phase="user-auth", time=si.since, frames=frames,
            message=f"A host scan (posture), most likely, was still being evaluated when the capture ended: {what} "
                    "(read without keys from record sizes and TLS fingerprints).",
            remedy="Capture until the login ends.", evidence=evidence, inferred=True)]
    return [Finding(
        id="HOSTSCAN_INCOMPLETE", severity="error", phase="user-auth", time=si.since, frames=frames,
        message=f"A host scan (posture), most likely, did not let the login go on: {what}; then the client closed its "
                "connection (read without keys from record sizes and TLS fingerprints).",
        remedy=REMEDY, evidence=evidence, inferred=True)]
