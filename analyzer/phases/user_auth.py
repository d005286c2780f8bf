"""Phase 3, user-auth: the aggregate-auth `auth-reply` rounds (or a legacy urlencoded login form) up to the
gateway's `type="complete"` answer (session token, server-cert-hash, manifests) or its refusal."""
from __future__ import annotations

from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from ..model import Phase, Secret
from ..wording import plural
from .grouping import (
    Group,
    any_undecrypted,
    form_fields,
    is_hostscan_path,
    is_sso_path,
    missed_after,
    posts,
    redact_sso_location,
    set_cookie,
    tunnel_seen_after,
    xml_view,
)
from .record import UNSET, Record, XMLText, record
from .sign_in import SignInPath


@record
class FormOption(Record):
    """An `<option>` of a form's `<select>`, as the gateway sent it."""
    value: str | None
    label: str | None
    selected: bool


@record
class FormInput(Record):
    """A field of a form the gateway sent (`<input>` or `<select>`), as sent: its name, type (`text`, `password`,
    `hidden`…, `select` for a `<select>`) and label; a `<select>`'s options. Never a value."""
    name: str | None
    type: str | None
    label: str | None
    options: list[FormOption] = UNSET  # a <select>'s only


def form_inputs(form) -> list[FormInput]:
    """The fields of a parsed aggregate-auth `<form>` (dissectors/aggauth.py `Form`) as the session model keeps
    them."""
    out = []
    for f in form.fields if form is not None else ():
        item = FormInput(name=f.name, type=f.type, label=f.label)
        if f.type == "select" or f.options:
            item.options = [FormOption(value=o.value, label=o.label, selected=o.selected) for o in f.options]
        out.append(item)
    return out


@record
class AuthRound(Record):
    """One POST of the login (aggregate-auth `auth-reply`, or `form` for a legacy urlencoded login)."""
    time: float
    frame: int
    target: str
    type: str
    fields: list[str]  # names only, never values
    group_select: str | None
    xml: XMLText | None  # the request document, credentials redacted
    status: int = UNSET
    response_time: float = UNSET
    response_frame: int = UNSET
    response_type: str | None = UNSET
    auth_id: str | None = UNSET
    message: str | None = UNSET
    error: str | None = UNSET
    form_fields: list[str] = UNSET
    rejected: bool = UNSET  # aggregate-auth rounds with an answer
    rejection: str | None = UNSET
    form: list[FormInput] = UNSET  # the answer's form as sent (fields with type, label, options), when it had one


@record
class ManifestEntry(Record):
    type: str | None
    uri: str | None
    hash_type: str | None
    hash: str | None
    version: str | None


@record
class SsoBrowserRequest(Record):
    """A request of the user's browser to the gateway during a SAML single sign-on (its own TLS connection)."""
    time: float
    frame: int
    connection: str
    target: str
    status: int = UNSET
    response_frame: int = UNSET
    #: where the answer sent the browser: the identity provider, the client's http://localhost:29786/api/sso/
    #: (the token handed over: its sealed copy is always redacted), the final page
    location: str | None = UNSET
    method: str = UNSET  # present when not GET: POST of the SAML response to the assertion consumer service


@record
class SingleSignOn(Record):
    """SAML single sign-on (aggregate-auth v2 `sso-v2-*`): the gateway answered with a sign-in URL instead of a
    credentials form; the user signs in with the identity provider in a browser, which brings a token back to the
    client (embedded browser: the client reads the token cookie; external browser: the gateway sends the browser
    to the client's http://localhost:29786/api/sso/…), and the client posts it as `<sso-token>`."""
    login_url: str | None
    final_url: str | None
    browser_mode: str  # "external" (sso-v2-browser-mode) or "embedded"
    token_cookie_name: str | None
    offered_time: float
    offered_frame: int
    #: "token-returned" (an auth-reply carried <sso-token>), "gave-up" (the client closed its connection without
    #: one), "capture-ended" (still waiting when the capture ends)
    outcome: str
    browser: list[SsoBrowserRequest] = field(default_factory=list)
    token_time: float = UNSET
    token_frame: int = UNSET
    waited: float = UNSET  # seconds from the sign-in URL to the token (the user in the browser), or to the give-up
    identity_provider: str | None = UNSET  # the host the browser was sent to sign in at, when the capture shows it
    #: the `<auth-method>`s the client announced in its init (`single-sign-on-v2`, `single-sign-on-external-browser`…)
    client_auth_methods: list[str] = UNSET
    #: the browser's way to the identity provider, from the client's other traffic meanwhile (DNS, connections:
    #: analyzer/phases/sign_in.py; set by analyzer/phases/session.py)
    path: SignInPath = UNSET
    #: the browser's connections to the gateway told by their TLS ClientHello (not the client's), when the key log
    #: did not decrypt them (the browser's own secrets not in it): `browser` is then empty
    browser_undecrypted: list[str] = UNSET


@record
class HostScanRequest(Record):
    """A request of the host scan: the client's CSD script (its own TLS connections) or the client waiting."""
    time: float
    frame: int
    connection: str
    method: str
    target: str
    status: int = UNSET
    response_frame: int = UNSET
    refresh: bool = UNSET  # the answer was a refresh page (the gateway still evaluating)


@record
class HostScan(Record):
    """Host scan (Cisco Secure Desktop, posture) before the login: the init answer's `<host-scan>` asks the client to
    run its CSD script, which fetches a token (`…/sdesktop/token.xml?ticket=…`) and posts the endpoint description
    (`…/sdesktop/scan.xml`); the client then GETs the wait URI until the answer is no refresh page and posts init
    again with the `sdesktop` cookie."""
    offered_time: float
    offered_frame: int
    wait_uri: str | None
    #: "completed" (init posted again after the scan), "gave-up" (the client closed without it), "capture-ended"
    outcome: str
    requests: list[HostScanRequest] = field(default_factory=list)
    token_fetched: bool = False
    results_status: int | None = None  # the answer to the scan results' POST (None: not posted, or not answered)
    waits: int = 0  # GETs of the wait URI
    refreshes: int = 0  # of which answered with a refresh page
    completed_time: float = UNSET
    completed_frame: int = UNSET
    waited: float = UNSET  # seconds from <host-scan> to the init after the scan (or to the give-up / capture end)


@record
class UserAuthDetails(Record):
    rounds: list[AuthRound] = field(default_factory=list)
    mode: str = "aggregate-auth"  # or "legacy-form"
    result: str | None = None  # "success" / "failure"
    session_id: str | None = UNSET
    session_token: Secret | None = UNSET
    server_cert_hash: str | None = UNSET
    server_cert_hash_matches: bool = UNSET
    core_manifest: list[ManifestEntry] = UNSET
    profile_manifest: list[ManifestEntry] = UNSET
    complete_xml: XMLText = UNSET
    rejected_rounds: int = UNSET
    failure_message: str | None = UNSET
    sso: SingleSignOn = UNSET  # SAML single sign-on, when the gateway asked for it
    host_scan: HostScan = UNSET  # the host scan (posture), when the gateway asked for one
    unanswered: dict[str, Any] = field(default=UNSET, metadata={
        "description": "the last round got no answer: {waited (seconds from the request to the end), ended_by "
                       "(`client`: it closed the connection — it gave up; `gateway`: it closed without answering; "
                       "`capture`: the capture ended first), frame, time (of that end)}; present only then "
                       "(AUTH_NO_ANSWER)"})

    def to_json(self, show_secrets: bool = False) -> dict:
        out = super().to_json(show_secrets)
        if self.mode == "legacy-form":  # the document's key order for a legacy form login (JSON text unchanged)
            first = {k: out[k] for k in _LEGACY_ORDER if k in out}
            out = first | {k: v for k, v in out.items() if k not in _LEGACY_ORDER}
        return out


_LEGACY_ORDER = ("rounds", "result", "session_token", "mode")


def build(g: Group, tls_phase: Phase) -> Phase:
    p = Phase("user-auth")
    rounds: list[AuthRound] = []
    complete = None
    failure: AuthRound | None = None
    # the fields the gateway's latest form declared type="password": secret in the reply that answers it, besides
    # the names that are secret anyway (dissectors/redact.py); a username is not a secret (support needs it)
    password_fields: list[str] = []
    last_cn = None  # the connection of the last auth round
    for _cn, ex, rq, rs in posts(g):
        req, resp = ex.request, ex.response
        asked = password_fields
        form = rs.auth.form if rs is not None and rs.auth is not None else None
        if form is not None:
            password_fields = [f.name for f in form.fields if (f.type or "").lower() == "password" and f.name]
        if rq is None or rq.type == "init":
            # an init answered "complete" (certificate-only auth) still counts
            if rs is not None and rs.type == "complete":
                complete = (ex, rs)
            continue
        p.touch(req.ts, req.frame)
        fields = [k for k, _ in (rq.auth.values if rq.auth else ())]
        r = AuthRound(time=req.ts, frame=req.frame, target=req.target, type=rq.type, fields=fields,
                      group_select=rq.group_select, xml=xml_view(req.body, asked))
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            auth = rs.auth if rs else None
            r.status = resp.status
            r.response_time = resp.ts
            r.response_frame = resp.frame
            r.response_type = rs.type if rs else None
            r.auth_id = auth.id if auth else None
            r.message = auth.message.formatted if auth and auth.message else None
            r.error = auth.error.formatted if auth and auth.error else None
            r.form_fields = [f.name for f in auth.form.fields] if auth and auth.form else []
            if auth and auth.form:
                r.form = form_inputs(auth.form)
            r.rejected, r.rejection = _rejected(r, fields)
            if r.rejected:
                failure = r
            if rs is not None and rs.type == "complete":
                complete = (ex, rs)
        rounds.append(r)
        last_cn = _cn
    form_success = None
    for cn in g.conns:
        for ex in cn.form_posts:
            req, resp = ex.request, ex.response
            p.touch(req.ts, req.frame)
            r = AuthRound(time=req.ts, frame=req.frame, target=req.target, type="form", fields=form_fields(req.body),
                          group_select=None, xml=None)
            if resp is not None:
                p.touch(resp.ts, resp.frame)
                cookie = set_cookie(resp.headers)
                r.status = resp.status
                r.response_time = resp.ts
                r.response_frame = resp.frame
                r.response_type = "cookie" if cookie else None
                r.auth_id = r.message = r.error = None
                r.form_fields = []
                if cookie:
                    form_success = (ex, cookie)
                elif resp.status in (401, 403):
                    failure = r
            rounds.append(r)
    if form_success is not None and complete is None:
        ex, cookie = form_success
        p.details = UserAuthDetails(rounds=rounds, mode="legacy-form", result="success", session_token=Secret(cookie),
                                    core_manifest=[], profile_manifest=[])
        p.status = "ok"
        p.summary = f"success (legacy form login, {plural(len(rounds), 'POST')})"
        return p
    scan = _host_scan(g)
    if scan is not None and scan.outcome != "completed" and complete is None and not rounds:
        d = UserAuthDetails(rounds=rounds, mode="aggregate-auth", host_scan=scan, rejected_rounds=0)
        p.touch(scan.offered_time, scan.offered_frame)
        for r in scan.requests:
            p.touch(r.time, r.frame)
        what = (f"results posted (HTTP {scan.results_status}), " if scan.results_status is not None else
                "no scan results posted, ")
        what += f"{plural(scan.waits, 'wait page')} ({scan.refreshes} still refreshing)"
        return _unfinished(p, d, scan.outcome == "gave-up", "host scan not completed",
                           f"host scan (posture) not completed: {what}; the client gave up after {scan.waited:.1f} s",
                           f"host scan (posture) still in progress when the capture ended, {scan.waited:.1f} s after "
                           f"it was asked: {what}")
    sso = _single_sign_on(g, rounds)
    if (sso is not None and sso.outcome != "token-returned" and complete is None
            and (gap := missed_after(g, sso.offered_time)) is not None
            and (up := tunnel_seen_after(g, sso.offered_time)) is not None):
        # the token's round fell in bytes the capture missed, and the tunnel came up after it: the token came back
        sso.outcome = "token-returned"
        p.touch(sso.offered_time, sso.offered_frame)
        for b in sso.browser:
            p.touch(b.time, b.frame)
        p.details = UserAuthDetails(rounds=rounds, mode="aggregate-auth", sso=sso, result="success",
                                    rejected_rounds=0)
        p.status = "ok"
        p.summary = (f"SAML single sign-on ({sso.browser_mode} browser): the token came back, told by the tunnel "
                     f"that came up ({up}): the capture misses its round ({gap['length']} bytes of tcp.stream "
                     f"{gap['conn']} at frame {gap['frame']})")
        return p
    if sso is not None and sso.outcome != "token-returned" and complete is None:
        d = UserAuthDetails(rounds=rounds, mode="aggregate-auth", sso=sso, rejected_rounds=0)
        p.touch(sso.offered_time, sso.offered_frame)
        for b in sso.browser:
            p.touch(b.time, b.frame)
        methods = [b.method or "GET" for b in sso.browser]
        seen = ("the browser's requests: " + ", ".join(plural(methods.count(m), m) for m in dict.fromkeys(methods))
                if sso.browser else "no request of the browser in the capture")
        idp = f", sent to sign in at {sso.identity_provider}" if sso.identity_provider is not UNSET else ""
        return _unfinished(p, d, sso.outcome == "gave-up", "SAML single sign-on not completed",
                           f"SAML single sign-on ({sso.browser_mode} browser) not completed: no token came back; the "
                           f"client gave up after {sso.waited:.1f} s ({seen}{idp})",
                           f"SAML single sign-on ({sso.browser_mode} browser) still waiting for the token when the "
                           f"capture ended, {sso.waited:.1f} s after the sign-in URL ({seen}{idp})")
    if not rounds and complete is None:
        p.status = "undecrypted" if any_undecrypted(g) else "absent"
        p.summary = "TLS not decrypted" if p.status == "undecrypted" else "no auth-reply POST"
        p.details = None
        return p
    d = UserAuthDetails(rounds=rounds, mode="aggregate-auth")
    if scan is not None:
        d.host_scan = scan
        p.touch(scan.offered_time, scan.offered_frame)
        for r in scan.requests:
            p.touch(r.time, r.frame)
    if sso is not None:
        if complete is not None and sso.outcome != "token-returned":
            sso.outcome = "token-returned"  # (the login completed: the token came back, its round not captured)
        d.sso = sso
        p.touch(sso.offered_time, sso.offered_frame)
        for b in sso.browser:
            p.touch(b.time, b.frame)
    if complete is not None:
        ex, rs = complete
        d.result = "success"
        d.session_id = rs.session_id
        d.session_token = Secret(rs.session_token) if rs.session_token else None
        cfg = rs.config
        if cfg is not None:
            d.server_cert_hash = cfg.server_cert_hash
            chain = tls_phase.details.certificates if tls_phase.details is not None else []
            if cfg.server_cert_hash and chain:
                h = cfg.server_cert_hash.replace(":", "").upper()
                d.server_cert_hash_matches = h in (chain[0].get("sha1"), chain[0].get("sha256"))
            d.core_manifest = [_manifest(f) for f in cfg.core_manifest]
            d.profile_manifest = [_manifest(f) for f in cfg.profile_manifest]
        else:
            d.core_manifest = []
            d.profile_manifest = []
        d.complete_xml = xml_view(ex.response.body)
        p.status = "ok"
        rejected = [r for r in rounds if r.rejected]
        d.rejected_rounds = len(rejected)
        p.summary = f"success after {plural(len(rounds), 'round')}" + (
            f"; {len(rejected)} rejected first ({rejected[0].rejection})" if rejected else "")
        if sso is not None:
            p.summary = (f"SAML single sign-on ({sso.browser_mode} browser), token after {sso.waited:.1f} s; "
                         + p.summary)
        if scan is not None and scan.outcome == "completed":
            p.summary = (f"host scan (posture) done in {scan.waited:.1f} s ({plural(scan.waits, 'wait page')}); "
                         + p.summary)
        p.touch(ex.response.ts, ex.response.frame)
    elif failure is None and rounds and (gap := missed_after(g, rounds[-1].time)) is not None:
        # no completion seen, no round rejected, and the capture misses bytes of the session's connections after
        # the last round: the answer may be in them — a tunnel that came up later says it was a success
        up = tunnel_seen_after(g, rounds[-1].time)
        where = f"{gap['length']} bytes of tcp.stream {gap['conn']} at frame {gap['frame']}"
        d.rejected_rounds = 0
        if up is not None:
            d.result = "success"
            p.status = "ok"
            p.summary = (f"success after {plural(len(rounds), 'round')} or more, told by the tunnel that came up "
                         f"({up}): the capture misses the login's last answer ({where})")
        else:
            d.result = None
            p.status = "incomplete"
            p.summary = (f"outcome not captured: {plural(len(rounds), 'round')} seen, then the capture misses "
                         f"{where} — no answer to the last one in what remains")
    elif (failure is None and rounds and rounds[-1].response_type == "auth-request" and last_cn is not None
          and not last_cn.c.closed and not tunnel_seen_after(g, rounds[-1].time)):
        # the gateway's last answer asked for more (the next field of the login) and the capture ends with the
        # connection still open: the login was under way, its outcome is after the capture
        last = rounds[-1]
        d.result = None
        d.rejected_rounds = 0
        p.status = "incomplete"
        asked = ", ".join(last.form_fields or ()) or "more"
        p.summary = (f"under way when the capture ended: {plural(len(rounds), 'round')}, the gateway's last answer "
                     f"asked for {asked}" + (f" ({last.message.splitlines()[0]})" if last.message else ""))
    elif failure is None and rounds and rounds[-1].status is UNSET and last_cn is not None \
            and not tunnel_seen_after(g, rounds[-1].time):
        # the last credentials never got an answer: the client gave up waiting (the gateway's authentication server,
        # or a multi-factor push nobody approved, took longer than it waits), the gateway closed without one, or
        # the capture ended while it waited — no rejection (AUTH_NO_ANSWER, rules/auth_slow.py)
        last = rounds[-1]
        d.result = None
        d.rejected_rounds = 0
        d.unanswered = unanswered_end(last_cn.c.closed, last.time, last_cn.c.last_ts, last_cn.c.last_frame)
        by, at = d.unanswered["ended_by"], d.unanswered["time"]
        waited = f"{at - last.time:.1f} s"
        p.touch(at, d.unanswered["frame"])
        if by == "capture":
            p.status = "incomplete"
            p.summary = (f"under way when the capture ended: the gateway had not answered the credentials after "
                         f"{waited}")
        else:
            p.status = "failed"
            p.summary = ("not answered: " + (f"the client gave up after {waited} without the gateway's answer to "
                                             "its credentials" if by == "client" else
                                             f"the gateway closed the connection {waited} after the credentials "
                                             "without answering them"))
    else:
        d.result = "failure" if failure is not None or rounds else None
        d.rejected_rounds = len([r for r in rounds if r.rejected])
        msg = None
        if failure is not None:
            msg = failure.rejection or failure.error or failure.message or f"HTTP {_opt(failure.status)}"
        elif rounds:
            last = rounds[-1]
            msg = last.error or last.message or (f"HTTP {last.status}" if last.status else "no answer")
        d.failure_message = msg
        p.status = "failed"
        p.summary = f"failed: {msg}" if msg else "failed"
    p.details = d
    return p


def unanswered_end(closed: list[dict], since: float, last_ts: float, last_frame: int | None) -> dict:
    """How a request sent at ``since`` and never answered ended, from its connection's closes (``closed``: {direction,
    ts, frame}, in order): {waited, ended_by — `client` (it closed first: it gave up), `gateway` (closed without an
    answer), `capture` (nothing closed: the capture ended, at ``last_ts``) —, frame, time}. The keyed user-auth phase
    and the keyless reading of its rounds (rules/auth_slow.py) both tell it so."""
    end = next((x for x in closed if x["ts"] >= since), None)
    at = end["ts"] if end is not None else last_ts
    return {"waited": round(max(0.0, at - since), 3),
            "ended_by": "capture" if end is None else "client" if end["direction"] == "c2s" else "gateway",
            "frame": end["frame"] if end is not None else last_frame, "time": at}


def _opt(v):
    return None if v is UNSET else v


def _unfinished(p: Phase, d: UserAuthDetails, gave_up: bool, failure: str, gave_up_summary: str,
                waiting_summary: str) -> Phase:
    """Phase user-auth ended before any credentials by a step the client waited for (a single sign-on token, a host
    scan's evaluation): failed when the client gave up, incomplete when the capture ended first."""
    if gave_up:
        d.result, d.failure_message = "failure", failure
        p.status, p.summary = "failed", gave_up_summary
    else:
        p.status, p.summary = "incomplete", waiting_summary
    p.details = d
    return p


def _auth_value(ca, name: str) -> str | None:
    for k, v in (ca.auth.values if ca is not None and ca.auth is not None else ()):
        if k == name:
            return v.strip() or None
    return None


def _single_sign_on(g: Group, rounds: list[AuthRound]) -> SingleSignOn | None:
    """The SAML single sign-on of a group: the last answer offering `sso-v2-login`, the browser's requests to the
    gateway, the auth-reply that brought the token back (or how the wait ended)."""
    offer = None
    methods: list[str] | None = None
    for cn, ex, rq, rs in posts(g):
        if rq is not None and rq.type == "init" and rq.capabilities:
            methods = [v for k, v in rq.capabilities if k == "auth-method" and v]
        if ex.response is not None and _auth_value(rs, "sso-v2-login"):
            offer = (cn, ex, rs)
    if offer is None:
        return None
    cn, ex, rs = offer
    resp = ex.response
    login, final = _auth_value(rs, "sso-v2-login"), _auth_value(rs, "sso-v2-login-final")
    mode = (_auth_value(rs, "sso-v2-browser-mode") or "").lower()
    sso = SingleSignOn(login_url=login, final_url=final, browser_mode="external" if mode == "external" else "embedded",
                       token_cookie_name=_auth_value(rs, "sso-v2-token-cookie-name"),
                       offered_time=resp.ts, offered_frame=resp.frame, outcome="capture-ended")
    if methods is not None:
        sso.client_auth_methods = methods
    paths = {_path(u) for u in (login, final, _auth_value(rs, "sso-v2-logout")) if u}
    for other in g.conns:
        for bx in other.gets:
            if bx.request.ts < resp.ts or not is_sso_path(bx.request.target, paths):
                continue
            b = SsoBrowserRequest(time=bx.request.ts, frame=bx.request.frame, connection=f"tcp.stream {other.c.index}",
                                  target=bx.request.target)
            if bx.request.method != "GET":  # the identity provider's SAML response, posted back
                b.method = bx.request.method
            if bx.response is not None:
                b.status, b.response_frame = bx.response.status, bx.response.frame
                where = bx.response.headers.get("Location")
                if where:
                    b.location = redact_sso_location(where)
                    host = urlsplit(where).hostname
                    if host and host not in ("localhost", "127.0.0.1", "::1") and \
                            sso.identity_provider is UNSET and _path(where) not in paths and \
                            not is_sso_path(_path(where), paths):
                        sso.identity_provider = host
            sso.browser.append(b)
    sso.browser.sort(key=lambda b: b.frame)
    token = next((r for r in rounds if "sso-token" in r.fields and r.time >= resp.ts), None)
    if token is not None:
        sso.outcome, sso.token_time, sso.token_frame = "token-returned", token.time, token.frame
        sso.waited = round(token.time - resp.ts, 3)
        return sso
    sso.outcome, sso.waited = _wait_end(cn, resp.ts, [b.time for b in sso.browser])
    return sso


def _host_scan(g: Group) -> HostScan | None:
    """The host scan of a group: the first answer holding `<host-scan>`, the scan's requests, and whether the
    client posted init again after it."""
    offer = None
    for cn, ex, _rq, rs in posts(g):
        if ex.response is not None and rs is not None and rs.host_scan:
            offer = (cn, ex, dict(rs.host_scan))
            break
    if offer is None:
        return None
    cn, ex, hs = offer
    resp = ex.response
    wait = hs.get("host-scan-wait-uri") or None
    paths = {u for u in (wait, hs.get("host-scan-base-uri")) if u}
    scan = HostScan(offered_time=resp.ts, offered_frame=resp.frame, wait_uri=wait, outcome="capture-ended")
    for other in g.conns:
        for x in other.c.exchanges:
            req = x.request
            if req.ts < resp.ts or req.method not in ("GET", "POST") or not is_hostscan_path(req.target, paths):
                continue
            r = HostScanRequest(time=req.ts, frame=req.frame, connection=f"tcp.stream {other.c.index}",
                                method=req.method, target=req.target)
            if x.response is not None:
                r.status, r.response_frame = x.response.status, x.response.frame
                if wait and req.target.split("?")[0] == wait:
                    r.refresh = b"http-equiv=\"refresh\"" in x.response.body.lower()
            scan.requests.append(r)
    scan.requests.sort(key=lambda r: r.frame)
    for r in scan.requests:
        if r.method == "GET" and "token.xml" in r.target and r.status == 200:
            scan.token_fetched = True
        if r.method == "POST" and "scan.xml" in r.target and r.status is not UNSET:
            scan.results_status = r.status
        if wait and r.method == "GET" and r.target.split("?")[0] == wait:
            scan.waits += 1
            scan.refreshes += 1 if r.refresh is True else 0
    after = next((x for _c, x, rq, _rs in posts(g) if rq is not None and rq.type == "init"
                  and x.request.ts > resp.ts), None)
    if after is not None:
        scan.outcome = "completed"
        scan.completed_time, scan.completed_frame = after.request.ts, after.request.frame
        scan.waited = round(after.request.ts - resp.ts, 3)
        return scan
    scan.outcome, scan.waited = _wait_end(cn, resp.ts, [r.time for r in scan.requests])
    return scan


def _wait_end(cn, since: float, seen: list[float]) -> tuple[str, float]:
    """How a client's wait (for a single sign-on token, a host scan's evaluation) that never ended in the next
    step ended: ("gave-up", seconds) when it closed its connection ``cn`` after ``since``, else ("capture-ended",
    seconds to the last packet seen of it or of ``seen``)."""
    closed = [c for c in (cn.c.closed or []) if c.get("direction") == "c2s" and c.get("ts", 0) >= since]
    if closed:
        return "gave-up", round(closed[0]["ts"] - since, 3)
    return "capture-ended", round(max([since, cn.c.last_ts or since, *seen]) - since, 3)


def _path(url: str) -> str:
    u = urlsplit(url)
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


_REJECTION_WORDS = ("fail", "invalid", "incorrect", "denied", "wrong", "rejected", "expired", "locked")


def _rejected(r: AuthRound, fields_sent: list[str]) -> tuple[bool, str | None]:
    """Did the gateway reject this auth-reply round? HTTP 401/403, an `<error>` in its answer (Cisco), or the
    same credential field asked again with a message saying why (ocserv: a new auth-request "Login failed.")."""
    if r.status in (401, 403):
        return True, f"HTTP {r.status}"
    if r.error:
        return True, r.error
    if r.response_type != "auth-request":
        return False, None
    asked_again = set(r.form_fields or ()) & set(fields_sent)
    msg = (r.message or "").strip()
    if asked_again and any(w in msg.lower() for w in _REJECTION_WORDS):
        return True, msg.splitlines()[0] if msg else None
    return False, None


def _manifest(f) -> ManifestEntry:
    return ManifestEntry(type=f.type, uri=f.uri, hash_type=f.hash_type, hash=f.hash, version=f.version)
