"""Phase 4, downloader: the VPN downloader's GETs (profiles, the CACHE, `/+CSCOT+/`…) with the webvpn cookie, and
the profiles of the auth reply's manifest checked against what was fetched."""
from __future__ import annotations

from dataclasses import field

from ..model import Phase, Secret
from ..tcptracker import capture_missed
from ..wording import plural
from .grouping import DOWNLOADER_PATHS, Group, cookie, is_hostscan_path, is_sso_path
from .record import UNSET, Record, record
from .user_auth import ManifestEntry


@record
class DownloaderGet(Record):
    time: float
    frame: int
    connection: str
    target: str
    cookie: Secret | None
    status: int = UNSET
    size: int = UNSET
    sha1: str = UNSET
    response_frame: int = UNSET
    #: the body is whole in the capture (False: the capture misses part of it, or the transfer was cut: size and
    #: sha1 are then those of the bytes seen)
    complete: bool = UNSET
    #: no answer in the capture, which misses the gateway's bytes after the request (CAPTURE_GAP): it may have
    #: been answered (session 16)
    answer_missed: bool = UNSET


@record
class ProfileCheck(Record):
    uri: str | None
    fetched: bool
    status: int | None
    hash_matches: bool | None = UNSET


@record
class DownloaderDetails(Record):
    gets: list[DownloaderGet] = field(default_factory=list)
    connections: list[int] = UNSET  # tcp.stream numbers of the downloader's TLS sessions
    profile_manifest: list[ManifestEntry] = field(default_factory=list)
    profile_checks: list[ProfileCheck] = UNSET
    missing_profiles: list[str | None] = field(default_factory=list)


def build(g: Group, auth: Phase, client_sw: dict | None = None) -> Phase:
    p = Phase("downloader")
    gets = []
    conns = set()
    for cn in g.conns:
        for ex in cn.gets:
            # the downloader GETs its files with the session cookie; a cookie-less GET elsewhere is the client's
            # own fallback (openconnect GETs the URL it was given when its POST fails), not the downloader
            # (the user's browser at the gateway's SAML pages during single sign-on is not the downloader: phase
            # user-auth has its requests)
            if is_sso_path(ex.request.target) or is_hostscan_path(ex.request.target):
                continue  # (the host scan's requests too: phase user-auth, details.host_scan)
            if any(ex.request.target.startswith(x) for x in DOWNLOADER_PATHS) or \
                    (cn.kind == "downloader" and cookie(ex.request.headers)):
                gets.append((cn, ex))
                conns.add(cn.c.index)
    manifest = (auth.details.profile_manifest or []) if auth.details is not None else []
    if not gets:
        undecrypted_extra = [cn for cn in g.conns[1:] if cn.kind == "undecrypted"]
        if undecrypted_extra and len(g.conns) > 2:
            p.status = "undecrypted"
            p.summary = "extra TLS sessions not decrypted (downloader?)"
        else:
            p.status = "absent"
            if manifest:
                p.summary = "no downloader GETs although the gateway offered a profile"
            elif (client_sw or {}).get("name") == "openconnect":
                p.summary = "no downloader (openconnect, per its User-Agent, runs none)"
            else:
                p.summary = "no downloader GETs"
        p.details = DownloaderDetails(gets=[], profile_manifest=manifest, missing_profiles=[m.uri for m in manifest])
        return p
    rows = []
    for cn, ex in gets:
        req, resp = ex.request, ex.response
        p.touch(req.ts, req.frame)
        ck = cookie(req.headers)
        row = DownloaderGet(time=req.ts, frame=req.frame, connection=f"tcp.stream {cn.c.index}", target=req.target,
                            cookie=Secret(ck) if ck else None)
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            row.status = resp.status
            # the whole body's (the dissector keeps only the first MiB of an answer to a GET)
            row.size = resp.body_length
            row.sha1 = resp.body_sha1.upper()
            row.response_frame = resp.frame
            # a TCP gap inside the answer (bytes the capture missed) leaves a body of the wrong bytes
            row.complete = resp.body_complete and not any(
                gp["direction"] == "s2c" and resp.frame < gp["frame"] <= resp.end_frame for gp in cn.c.gaps)
        elif capture_missed(cn.c, "s2c", req.ts):
            row.answer_missed = True
        rows.append(row)
    fetched = {r.target: r for r in rows if r.status == 200}  # a 404 is not a fetch
    missed = {r.target for r in rows if r.answer_missed is True}
    checks = []
    for m in manifest:
        r = fetched.get(m.uri)
        if r is None and m.uri in missed:
            continue  # asked, its answer in bytes the capture missed: fetched or not, it cannot tell
        if r is None:
            asked = next((x for x in rows if x.target == m.uri), None)
            checks.append(ProfileCheck(uri=m.uri, fetched=False,
                                       status=asked.status if asked and asked.status is not UNSET else None))
        else:
            # (a download the capture holds in part: its hash says nothing of the gateway's file)
            checks.append(ProfileCheck(uri=m.uri, fetched=True, status=r.status,
                                       hash_matches=(m.hash or "").upper() == r.sha1
                                       if r.status == 200 and r.complete else None))
    p.details = DownloaderDetails(gets=rows, connections=sorted(conns), profile_manifest=manifest,
                                  profile_checks=checks, missing_profiles=[c.uri for c in checks if not c.fetched])
    bad = [r for r in rows if r.status != 200 and r.answer_missed is not True]
    unknown = [r for r in rows if r.answer_missed is True]
    p.status = "failed" if bad else "incomplete" if unknown else "ok"
    partial = [r for r in rows if r.complete is False]
    p.summary = f"{plural(len(rows), 'GET')} on {plural(len(conns), 'TLS session')}" + (
        f"; {len(bad)} failed" if bad else "") + (f"; {len(partial)} incomplete in the capture" if partial else "") + (
        f"; {len(unknown)} answer(s) not in the capture (it misses the gateway's bytes after the request)"
        if unknown else "")
    return p
