"""AGGAUTH_VERSION_FALLBACK (warning) and GROUP_RESELECTED (info): phase 2, group selection.

Facts: the seed document ("POST - Group Selection") — the client offers aggregate-auth version 2; when the
gateway does not support it, an additional POST makes the client fall back to the earlier version. Choosing a
different connection profile from the group list causes another `init` POST with `<group-select>` updated.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.group_selection import GroupSelectionDetails

RULE_IDS = ("AGGAUTH_VERSION_FALLBACK", "GROUP_RESELECTED")


def check(session, ctx):
    p = session.phase("group-selection")
    d = p.details
    if not isinstance(d, GroupSelectionDetails):
        return []
    posts = d.posts
    out = []
    if d.version_fallback:
        versions = [x.aggregate_auth_version for x in posts]
        if d.fallback_to_form:
            fb = d.fallback_posts[0]
            out.append(Finding(
                id="AGGAUTH_VERSION_FALLBACK", severity="warning", phase="group-selection", time=fb.time,
                frames=[posts[0].frame, fb.frame],
                message=f"The gateway did not answer the aggregate-auth (v{versions[0] or '?'}) init POST with "
                        f"config-auth XML; the client fell back to the legacy login form (POST {fb.target}, "
                        f"frame {fb.frame}).",
                remedy="The gateway (or a proxy in front of it) does not support aggregate authentication: upgrade "
                       "it or remove the device answering with HTML; the fallback costs round trips and newer "
                       "clients may refuse it.",
                evidence={"versions": versions, "fallback": d.fallback_posts}))
        else:
            fb = next(i for i, v in enumerate(versions) if i > 0 and v in (None, "1"))
            out.append(Finding(
                id="AGGAUTH_VERSION_FALLBACK", severity="warning", phase="group-selection", time=posts[fb].time,
                frames=[posts[0].frame, posts[fb].frame],
                message=f"The client offered aggregate-auth version 2 and fell back to version {versions[fb] or '1'} "
                        f"with an extra POST (frame {posts[fb].frame}).",
                remedy="The gateway does not support aggregate authentication v2: upgrade the gateway software; the "
                       "fallback costs a round trip and some clients fail on it.",
                evidence={"versions": versions}))
    if d.reselected:
        sel = [x for x in posts if x.group_select]
        out.append(Finding(
            id="GROUP_RESELECTED", severity="info", phase="group-selection", time=sel[0].time,
            frames=[x.frame for x in sel],
            message=f"The client chose connection profile {sel[-1].group_select!r} instead of the default "
                    f"{d.default_group!r} (an extra group-select POST).",
            remedy="Nothing to do; set the profile's group-url so users land on it directly.",
            evidence={"default": d.default_group, "chosen": sel[-1].group_select}))
    return out
