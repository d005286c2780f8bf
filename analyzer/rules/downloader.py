"""PROFILE_MISSING, PROFILE_HASH_MISMATCH, DOWNLOADER_FAILED: phase 4, the VPN downloader.

Facts: the seed document ("POST - User Authentication", "AnyConnect Downloader") — the auth `complete` answer
lists the client profile in vpn-profile-manifest with its SHA-1; the downloader fetches it in a new TLS session
when the client's copy is missing or differs. A client profile uploaded on the gateway is mandatory: if it is
not downloaded the whole connection attempt is terminated. openconnect runs no downloader (absent by design).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.downloader import DownloaderDetails
from ..phases.record import opt

RULE_IDS = ("PROFILE_MISSING", "PROFILE_HASH_MISMATCH", "DOWNLOADER_FAILED")


def check(session, ctx):
    p = session.phase("downloader")
    d = p.details
    if not isinstance(d, DownloaderDetails):
        return []
    out = []
    cstp_ok = session.phase("cstp-connect").status == "ok"
    gets = d.gets
    for c in d.profile_checks or []:
        if c.fetched and c.hash_matches is False:
            row = next(g for g in gets if g.target == c.uri)
            out.append(Finding(
                id="PROFILE_HASH_MISMATCH", severity="warning", phase="downloader", time=row.time,
                frames=[f for f in (row.frame, row.response_frame) if f],
                message=f"The profile {c.uri} served by the gateway (SHA-1 {opt(row.sha1)}) does not match the "
                        "hash announced in the vpn-profile-manifest.",
                remedy="Re-upload the profile on the gateway (the manifest hash is computed when the profile is "
                       "assigned); clients download it on every connection while they differ.",
                evidence={"uri": c.uri, "served_sha1": opt(row.sha1)}))
    missing = d.missing_profiles
    if missing and gets:
        out.append(Finding(
            id="PROFILE_MISSING", severity="error" if not cstp_ok else "warning", phase="downloader",
            time=p.start, frames=[g.frame for g in gets][:5],
            message=f"The downloader ran but did not fetch the profile(s) the gateway announced: {', '.join(missing)}"
                    + ("; the connection was not established." if not cstp_ok else "."),
            remedy="A profile uploaded on the gateway is mandatory for AnyConnect: check the profile file exists on "
                   "the gateway and is readable by the client's downloader (proxy, TLS inspection).",
            evidence={"missing": missing}))
    bad = [g for g in gets if g.status != 200 and g.answer_missed is not True]
    if bad:
        out.append(Finding(
            id="DOWNLOADER_FAILED", severity="error" if not cstp_ok else "warning", phase="downloader",
            time=bad[0].time, frames=[f for g in bad for f in (g.frame, g.response_frame) if f][:10],
            message="Downloader request(s) failed: " + ", ".join(f"GET {g.target} → {g.status or 'no answer'}"
                                                           for g in bad[:5]) + ".",
            remedy="Check the files exist on the gateway and the downloader's TLS session is not blocked or "
                   "intercepted (it is a separate TLS session: a second certificate warning is possible).",
            evidence={"failed": [{"target": g.target, "status": opt(g.status)} for g in bad]}))
    return out
