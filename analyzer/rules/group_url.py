"""GROUP_URL_UNKNOWN (error): the client was pointed at a group URL the gateway does not have.

Facts (seed document "POST - Group Selection"; openconnect's behaviour): a client may be given a URL with a path
(`https://vpn.example.com/engineering`), the gateway's group-url for a connection profile. The client POSTs its
aggregate-auth `init` to that path; a gateway that has no such group URL answers 404 (ocserv) or a login page for
another profile. openconnect then tries a plain `GET` of the same URL — its fallback, not the downloader —, which
fails the same way.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.group_selection import GroupSelectionDetails
from ..phases.record import opt

RULE_IDS = ("GROUP_URL_UNKNOWN",)


def check(session, ctx):
    d = session.phase("group-selection").details
    if not isinstance(d, GroupSelectionDetails):
        return []
    refused = [e for e in d.posts if e.status == 404]
    if not refused:
        return []
    first = refused[0]
    target = first.target or "/"
    gets = [x for x in d.fallback_gets if x.target == target]
    frames = [first.frame, opt(first.response_frame)] + [x.frame for x in gets[:2]] + \
        [x.response_frame for x in gets[:2]]
    get_note = (f"; the client's fallback GET {target} was answered {gets[0].status}" if gets else "")
    return [Finding(
        id="GROUP_URL_UNKNOWN", severity="error", phase="group-selection", time=first.time,
        frames=[f for f in frames if f],
        message=f"The gateway does not know the URL {target}: the aggregate-auth POST to it was answered 404"
                + get_note + ".",
        remedy=f"Give the client the gateway's address without a path, or a group URL the gateway defines (ASA: "
               f"'group-url https://…{target} enable' under the tunnel-group's webvpn-attributes; ocserv: a "
               "select-group / config-per-group entry), or pick the group from the list instead.",
        evidence={"target": target, "post_status": 404, "fallback_gets": [x.status for x in gets]})]
