"""Phase 2, group-selection: the aggregate-auth `type="init"` POSTs and the group list the gateway answered."""
from __future__ import annotations

from dataclasses import field

from ..model import Phase
from ..wording import plural
from .grouping import Group, any_undecrypted, headers_view, posts, redirect_of
from .record import UNSET, HeaderList, Record, record
from .user_auth import FormInput, form_inputs


@record
class OpaqueInfo(Record):
    tunnel_group: str | None
    group_alias: str | None
    aggauth_handle: str | None
    config_hash: str | None


@record
class InitPost(Record):
    """One `type="init"` POST and the gateway's answer (the response keys only when there was an answer)."""
    time: float
    frame: int
    target: str
    group_select: str | None
    aggregate_auth_version: str | None
    group_access: str | None
    client_version: str | None
    device_id: str | None
    headers: HeaderList  # [[name, value], …], secrets redacted
    status: int = UNSET
    response_time: float = UNSET
    response_frame: int = UNSET
    response_type: str | None = UNSET
    response_headers: HeaderList = UNSET
    group_list: list[str] = UNSET
    opaque: OpaqueInfo = UNSET
    error: str = UNSET
    server_version: str | None = UNSET
    auth_id: str | None = UNSET  # the answer's <auth id=…>, when it had an <auth>
    message: str | None = UNSET  # its <message>
    form: list[FormInput] = UNSET  # its form as sent (fields with type, label, options; the group list included)
    #: the host a 3xx answer sent the client to (a load-balancing director's member), when it named another host
    redirect: str = UNSET


@record
class FallbackPost(Record):
    """A legacy urlencoded login POST after an init the gateway did not answer with config-auth XML."""
    time: float
    frame: int
    target: str
    status: int | None


@record
class FallbackGet(Record):
    """A GET of the URL the client POSTed to (openconnect's fallback when its POST is refused)."""
    time: float
    frame: int
    target: str
    status: int | None
    response_frame: int | None


@record
class GroupOption(Record):
    value: str | None
    label: str | None
    selected: bool


@record
class GroupSelectionDetails(Record):
    posts: list[InitPost] = field(default_factory=list)
    aggregate_auth_version_offered: str | None = None
    aggregate_auth_version_answered: str | None = None
    group_access: str | None = None
    version_fallback: bool = False
    fallback_to_form: bool = False
    fallback_posts: list[FallbackPost] = UNSET
    group_list: list[GroupOption] = field(default_factory=list)
    default_group: str | None = None
    group_selected: str | None = None
    fallback_gets: list[FallbackGet] = field(default_factory=list)
    reselected: bool = False


def build(g: Group) -> Phase:
    p = Phase("group-selection")
    inits = [(cn, ex, rq, rs) for cn, ex, rq, rs in posts(g) if rq is not None and rq.type == "init"]
    if not inits:
        p.status = "undecrypted" if any_undecrypted(g) else "absent"
        p.summary = "TLS not decrypted" if p.status == "undecrypted" else "no aggregate-auth init POST"
        lost = next((ex for _cn, ex, rq, rs in posts(g) if rq is None and ex.request.method == ""), None)
        if p.status == "absent" and lost is not None:
            p.summary += (f" in the capture: it misses a request whose answer, frame {lost.response.frame}, is an "
                          "aggregate-auth one")
        p.details = None
        return p
    d = GroupSelectionDetails()
    group_list = None
    answered_version = None
    for _cn, ex, rq, rs in inits:
        req, resp = ex.request, ex.response
        p.touch(req.ts, req.frame)
        entry = InitPost(time=req.ts, frame=req.frame, target=req.target, group_select=rq.group_select,
                         aggregate_auth_version=rq.aggregate_auth_version, group_access=rq.group_access,
                         client_version=rq.version("vpn"),
                         device_id=rq.device_id.platform if rq.device_id else None,
                         headers=headers_view(req.headers))
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            entry.status = resp.status
            entry.response_time = resp.ts
            entry.response_frame = resp.frame
            entry.response_type = rs.type if rs else None
            entry.response_headers = headers_view(resp.headers)
            host = redirect_of(ex)
            if host is not None:
                entry.redirect = host
            if rs is not None:
                answered_version = rs.aggregate_auth_version or answered_version
                if rs.group_list is not None:
                    entry.group_list = [o.value for o in rs.group_list.options]
                    if group_list is None:  # the list first offered (a re-POST may reorder it)
                        group_list = rs.group_list
                if rs.opaque is not None:
                    entry.opaque = OpaqueInfo(tunnel_group=rs.opaque.tunnel_group, group_alias=rs.opaque.group_alias,
                                              aggauth_handle=rs.opaque.aggauth_handle,
                                              config_hash=rs.opaque.config_hash)
                if rs.auth and rs.auth.error:
                    entry.error = rs.auth.error.formatted
                if rs.auth is not None:
                    entry.auth_id = rs.auth.id
                    entry.message = rs.auth.message.formatted if rs.auth.message else None
                    if rs.auth.form is not None:
                        entry.form = form_inputs(rs.auth.form)
                entry.server_version = rs.version("sg")
        d.posts.append(entry)
    first = inits[0][2]
    d.aggregate_auth_version_offered = first.aggregate_auth_version
    d.aggregate_auth_version_answered = answered_version
    d.group_access = first.group_access
    versions = [e.aggregate_auth_version for e in d.posts]
    d.version_fallback = bool(len(versions) > 1 and versions[0] == "2" and any(v in (None, "1") for v in versions[1:]))
    # an XML init answered by something that is not config-auth XML, then the legacy urlencoded login form
    forms = [ex for cn in g.conns for ex in cn.form_posts]
    non_xml = [e for e in d.posts if e.response_type in (UNSET, None) and e.status not in (UNSET, None)]
    d.fallback_to_form = bool(non_xml and forms)
    if d.fallback_to_form:
        d.version_fallback = True
        d.fallback_posts = [FallbackPost(time=ex.request.ts, frame=ex.request.frame, target=ex.request.target,
                                         status=ex.response.status if ex.response else None) for ex in forms]
    if group_list is not None:
        d.group_list = [GroupOption(value=o.value, label=o.label, selected=o.selected) for o in group_list.options]
        sel = group_list.selected  # the option marked selected="true", else the first (what a client shows)
        d.default_group = sel.value if sel else None
    else:
        d.group_list = []
        d.default_group = None
    chosen = [e.group_select for e in d.posts if e.group_select]
    # group-select also travels in the auth-reply
    for _, _, rq, _ in posts(g):
        if rq is not None and rq.type == "auth-reply" and rq.group_select:
            chosen.append(rq.group_select)
    d.group_selected = chosen[-1] if chosen else d.default_group
    # GETs of the URL the client POSTed to (openconnect's fallback when its POST is refused)
    posted = {e.target for e in d.posts}
    d.fallback_gets = [FallbackGet(time=ex.request.ts, frame=ex.request.frame, target=ex.request.target,
                                   status=ex.response.status if ex.response else None,
                                   response_frame=ex.response.frame if ex.response else None)
                       for cn in g.conns for ex in cn.gets if ex.request.target in posted][:10]
    d.reselected = bool(len(d.posts) > 1 and any(e.group_select and e.group_select != d.default_group
                                                 for e in d.posts))
    # a redirect to another host that the client followed is no failure (a load-balancing director)
    moved = [e for e in d.posts if e.redirect is not UNSET]
    followed = [e for e in moved if e is not d.posts[-1]]
    bad = [e for e in d.posts if e.status not in (UNSET, None, 200) and e not in followed]
    p.status = "failed" if bad else "ok"
    labels = ", ".join(o.label or o.value for o in d.group_list) if d.group_list else "no group list"
    p.summary = (", ".join(f"redirected to {e.redirect} (HTTP {e.status})" for e in followed) + "; "
                 if followed else "") + f"{plural(len(inits), 'POST')}; groups: {labels}" + (
        f"; chosen {d.group_selected}" if d.group_selected else "")
    p.details = d
    return p
