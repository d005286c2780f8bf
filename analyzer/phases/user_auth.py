"""Phase 3, user-auth: the aggregate-auth `auth-reply` rounds (or a legacy urlencoded login form) up to the
gateway's `type="complete"` answer (session token, server-cert-hash, manifests) or its refusal."""
from __future__ import annotations

from dataclasses import field

from ..model import Phase, Secret
from ..wording import plural
from .grouping import Group, any_undecrypted, form_fields, posts, set_cookie, xml_view
from .record import UNSET, Record, XMLText, record


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
    if not rounds and complete is None:
        p.status = "undecrypted" if any_undecrypted(g) else "absent"
        p.summary = "TLS not decrypted" if p.status == "undecrypted" else "no auth-reply POST"
        p.details = None
        return p
    d = UserAuthDetails(rounds=rounds, mode="aggregate-auth")
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
        p.touch(ex.response.ts, ex.response.frame)
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


def _opt(v):
    return None if v is UNSET else v


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
