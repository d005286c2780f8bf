"""From connection trackers to VPN sessions, phase by phase.

Grouping (one session per connection attempt of a client to a gateway):
* a TLS connection whose first aggregate-auth POST is `type="init"` starts a new session;
* a connection carrying `CONNECT /CSCOSSLC/tunnel` joins the session whose webvpn cookie it presents (a second
  CONNECT in a session is a reconnect); without a known cookie it joins the latest open session of that
  client↔gateway pair, or starts one;
* a downloader connection (GETs only) joins the session whose cookie it presents, else the latest one;
* an undecrypted connection joins the latest session of the pair if it started within `JOIN_WINDOW` seconds of
  that session's last activity, else starts a new one;
* a DTLS flow joins the session whose CONNECT gave out its ClientHello session id (X-DTLS-Session-ID or
  X-DTLS-App-ID), else the latest session of the same client and gateway address.

Each phase builder below reads trackers only, and fills a `Phase` of the session model.
"""
from __future__ import annotations

import hashlib
from urllib.parse import urlparse

from dissectors import aggauth
from dissectors.redact import redact_headers, redact_xml
from dissectors.tls.names import cipher_suite_name, version_name

from . import certs
from .connection import TCPConnection
from .dtlsflow import DTLS_VERSIONS, DTLSFlow
from .evidence import fmt_endpoint, judge, other_traffic
from .model import PHASES, Phase, Redactable, Secret, Session

JOIN_WINDOW = 120.0
DOWNLOADER_PATHS = ("/profiles/", "/CACHE/", "/+CSCOT+/", "/1/VPNManifest", "/1/binaries", "/+CSCOE+/")


# -- small helpers ----------------------------------------------------------------------------------------

def _cookie(headers, name: str = "webvpn") -> str | None:
    for value in headers.get_all("Cookie"):
        for part in value.split(";"):
            k, _, v = part.strip().partition("=")
            if k == name and v:
                return v
    return None


def _set_cookie(headers, name: str = "webvpn") -> str | None:
    for value in headers.get_all("Set-Cookie"):
        k, _, rest = value.partition("=")
        if k.strip() == name:
            v = rest.split(";", 1)[0].strip()
            if v:
                return v
    return None


def _config_auth(body: bytes, refused: list | None = None):
    if not body or b"config-auth" not in body[:4096] and b"<auth" not in body[:4096]:
        return None
    ca = aggauth.parse_config_auth(body)
    if isinstance(ca, aggauth.AggAuthError):
        if refused is not None:
            refused.append(ca)
        return None
    return ca


def _headers_view(headers) -> Redactable:
    raw = [[k, v] for k, v in headers]
    red = [[k, v] for k, v in redact_headers(headers)]
    return Redactable(raw, red)


def _xml_view(body: bytes, secret_fields=()) -> Redactable:
    text = body.decode("utf-8", "replace")
    return Redactable(text, redact_xml(body, secret_fields))


def _int(v) -> int | None:
    try:
        return int(str(v).strip()) if v is not None else None
    except ValueError:
        return None


def _is_form(req) -> bool:
    """A legacy urlencoded login POST (never an XML document that failed to parse: its text is not field names)."""
    ctype = (req.headers.get("Content-Type") or "").lower()
    body = req.body.lstrip()
    if body.startswith(b"<") or "xml" in ctype:
        return False
    return "x-www-form-urlencoded" in ctype or b"=" in body[:200]


def _form_fields(body: bytes) -> list[str]:
    from urllib.parse import parse_qsl  # noqa: PLC0415

    try:
        return [k for k, _ in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)][:50]
    except ValueError:
        return []


class _Conn:
    """A TCP connection seen by the session builder, with what it carried at the HTTP level."""

    def __init__(self, c: TCPConnection):
        self.c = c
        self.kind = "unknown"
        self.posts: list = []  # (Exchange, ConfigAuth request, ConfigAuth response)
        self.form_posts: list = []  # legacy (pre-aggregate-auth) urlencoded login POSTs
        self.gets: list = []
        self.connects: list = []
        self.cookies_presented: set[str] = set()
        self.cookies_issued: set[str] = set()
        for ex in c.exchanges:
            req = ex.request
            ck = _cookie(req.headers)
            if ck:
                self.cookies_presented.add(ck)
            if ex.response is not None:
                sc = _set_cookie(ex.response.headers)
                if sc:
                    self.cookies_issued.add(sc)
            if req.method == "POST":
                refused: list = []
                rq = _config_auth(req.body, refused)
                rs = _config_auth(ex.response.body, refused) if ex.response is not None else None
                for err in refused:  # hostile or oversized aggregate-auth XML: say so in the report
                    c.add_problem("limit", f"aggregate-auth XML refused ({err.kind}): {err.message}",
                               req.ts, req.frame)
                if rs is not None and rs.session_token:
                    self.cookies_issued.add(rs.session_token)
                if rq is None and _is_form(req):
                    self.form_posts.append(ex)
                self.posts.append((ex, rq, rs))
            elif req.method == "CONNECT":
                self.connects.append(ex)
            elif req.method in ("GET", "HEAD"):
                self.gets.append(ex)
        if self.connects:
            self.kind = "tunnel"
        elif self.posts:
            self.kind = "auth"
        elif self.gets:
            self.kind = "downloader"
        elif not c.decrypted:
            self.kind = "undecrypted"

    @property
    def starts_with_init(self) -> bool:
        return bool(self.posts) and self.posts[0][1] is not None and self.posts[0][1].type == "init"


class _Group:
    def __init__(self, key):
        self.key = key
        self.conns: list[_Conn] = []
        self.dtls: list[DTLSFlow] = []
        self.cookies: set[str] = set()
        self.has_tunnel = False
        self.last_ts = 0.0

    def add(self, conn: _Conn) -> None:
        self.conns.append(conn)
        self.cookies |= conn.cookies_issued | conn.cookies_presented
        self.has_tunnel = self.has_tunnel or conn.kind == "tunnel"
        self.last_ts = max(self.last_ts, conn.c.last_ts)


def group_connections(pipe) -> list[_Group]:
    conns = [_Conn(c) for c in sorted(pipe.tcp.values(), key=lambda c: (c.first_ts, c.index)) if c.is_tls]
    groups: list[_Group] = []
    latest: dict = {}
    for cn in conns:
        key = (cn.c.client[0], cn.c.server[0], cn.c.server[1])
        last = latest.get(key)
        target = None
        if cn.kind == "auth" and cn.starts_with_init:
            target = None  # a new attempt
        elif cn.kind in ("tunnel", "downloader", "auth"):
            presented = cn.cookies_presented
            target = next((g for g in reversed(groups) if g.key == key and presented & g.cookies), None)
            if target is None and last is not None and (cn.kind != "tunnel" or not last.has_tunnel):
                target = last
        elif last is not None and cn.c.first_ts - last.last_ts <= JOIN_WINDOW:
            target = last
        if target is None:
            target = _Group(key)
            groups.append(target)
        target.add(cn)
        latest[key] = target
    # DTLS flows
    by_conn = {id(cn.c): g for g in groups for cn in g.conns}
    for flow in sorted(pipe.udp.values(), key=lambda f: f.first_ts):
        g = None
        info = pipe.dtls_keys.get(flow.session_id) if flow.session_id else None
        if info is not None:
            g = by_conn.get(id(info.connection))
        if g is None:
            cands = [g2 for g2 in groups if g2.key[0] == flow.client[0] and g2.key[1] == flow.server[0]]
            if not cands and _anyconnect_hello(flow):
                # a resuming hello to another address than the gateway: same client, a tunnel up
                cands = [g2 for g2 in groups if g2.key[0] == flow.client[0] and g2.has_tunnel]
            before = [g2 for g2 in cands if (g2.conns[0].c.first_ts if g2.conns else g2.dtls[0].first_ts) <= flow.first_ts]
            g = before[-1] if before else (cands[0] if cands else None)
        if g is None:
            g = _Group((flow.client[0], flow.server[0], flow.server[1]))
            groups.append(g)
        g.dtls.append(flow)
    groups.sort(key=lambda g: min([c.c.first_ts for c in g.conns] + [f.first_ts for f in g.dtls]))
    return groups


def _anyconnect_hello(flow: DTLSFlow) -> bool:
    """A DTLS ClientHello as AnyConnect-protocol clients send it: resuming a 32-byte session id, or 0x0100."""
    return any(len(h.get("session_id") or "") == 64 or h.get("version") == 0x0100 for h in flow.hellos[:4])


# -- phase builders ------------------------------------------------------------------------------------

def _phase_tls(g: _Group) -> Phase:
    p = Phase("tls-handshake")
    if not g.conns:
        return p
    c = g.conns[0].c
    ch, sh = c.client_hello, c.server_hello
    d: dict = {"connection": f"tcp.stream {c.index}", "client": fmt_endpoint(*c.client),
               "gateway": fmt_endpoint(*c.server)}
    p.touch(c.first_ts, c.first_frame)
    for f in c.handshake_frames[:32]:
        p.frames.append(f)
    if ch is not None:
        d["client_hello"] = {
            "frame": ch.frame, "time": ch.ts, "sni": ch.sni, "alpn": list(ch.alpn),
            "max_version": version_name(ch.max_version), "cipher_suites": list(ch.cipher_suite_names),
            "session_id": ch.session_id.hex(), "session_ticket": ch.session_ticket is not None and len(ch.session_ticket) > 0,
            "extended_master_secret": ch.extended_master_secret}
        p.touch(ch.ts, ch.frame)
    if sh is not None:
        resumed = bool(ch is not None and ch.session_id and sh.session_id == ch.session_id and sh.version < 0x0304) \
            or sh.selected_psk is not None
        d["server_hello"] = {"frame": sh.frame, "time": sh.ts, "version": version_name(sh.version),
                             "cipher_suite": cipher_suite_name(sh.cipher_suite), "alpn": sh.alpn,
                             "session_id": sh.session_id.hex(), "resumed": resumed,
                             "extended_master_secret": sh.extended_master_secret}
        p.touch(sh.ts, sh.frame)
    chain: list[dict] = []
    if c.certificates is not None:
        chain = [certs.describe(der) for der in c.certificates.certificates[:10]]
        p.touch(c.certificates.ts, c.certificates.frame)
    host = ch.sni if ch is not None and ch.sni else None
    if host is None:
        for cn in g.conns:
            for _, rq, _ in cn.posts:
                if rq is not None and rq.group_access:
                    host = urlparse(rq.group_access).hostname
                    break
            if host:
                break
    d["certificates"] = chain
    d["certificate_host"] = host
    d["certificate_verdicts"] = certs.verdicts(chain, c.first_ts, host)
    d["chain_includes_issuer"] = (len(chain) > 1 and chain[0].get("issuer") in {x.get("subject") for x in chain[1:]}) \
        if chain else None
    if c.certificates is None and sh is not None and sh.version >= 0x0304 and not c.decrypted:
        d["certificates_note"] = "TLS 1.3 encrypts the certificate: supply the key log to see it"
    if c.certificate_request is not None:
        cr = c.certificate_request
        d["certificate_request"] = {"frame": cr.frame, "time": cr.ts, "ca_names": [_dn(n) for n in cr.ca_names[:50]]}
    if c.client_certificate is not None:
        d["client_certificate"] = {"frame": c.client_certificate.frame,
                                   "count": len(c.client_certificate.certificates),
                                   "certificates": [certs.describe(x) for x in c.client_certificate.certificates[:3]]}
    # client certificates: requested and sent on every TLS connection of the session (auth, tunnel, downloader)
    d["client_certificates"] = [x for x in (_client_cert(cn.c) for cn in g.conns) if x is not None]
    d["alerts"] = [{"direction": a.direction, "level": a.level, "name": a.name, "encrypted": a.encrypted,
                    "time": a.ts, "frame": a.frame} for a in c.alerts]
    d["decryption"] = {k: v for k, v in c.decryption.items()}
    d["connections"] = [_conn_summary(cn.c) for cn in g.conns]
    if sh is None:
        p.status = "failed"
        p.summary = "no ServerHello" + (f"; alert {c.alerts[0].name}" if c.alerts else "")
    elif c.handshake_done_ts is None and any(a.level == 2 for a in c.alerts):
        p.status = "failed"
        p.summary = f"handshake failed: alert {next(a.name for a in c.alerts if a.level == 2)}"
    else:
        p.status = "ok"
        if c.handshake_done_ts:
            p.touch(c.handshake_done_ts, None)
        p.summary = f"{version_name(sh.version)} {cipher_suite_name(sh.cipher_suite)}" + (f", SNI {ch.sni}" if ch and ch.sni else "")
    p.details = d
    return p


def _client_cert(c: TCPConnection) -> dict | None:
    """What one connection shows of client-certificate authentication: the request and the client's answer."""
    cr, cc = c.certificate_request, c.client_certificate
    if cr is None and cc is None:
        return None
    sent = cc.certificates if cc is not None else None
    return {"connection": f"tcp.stream {c.index}", "requested": cr is not None,
            "request_frame": cr.frame if cr is not None else None, "request_time": cr.ts if cr is not None else None,
            "ca_names": [_dn(n) for n in cr.ca_names[:50]] if cr is not None else [],
            "certificate_message": cc is not None, "certificate_frame": cc.frame if cc is not None else None,
            "certificates_sent": len(sent) if sent is not None else None,
            "chain": [certs.describe(x) for x in sent[:4]] if sent else [],
            "certificate_verify_frame": (c.certificate_verify or {}).get("frame"),
            "encrypted_handshake": c.certificate_request is None and c.client_certificate is None}


def _dn(der: bytes) -> str:
    return certs.dn_from_der(bytes(der))


def _conn_summary(c: TCPConnection) -> dict:
    sh = c.server_hello
    return {"connection": f"tcp.stream {c.index}", "capture": c.capture, "client": fmt_endpoint(*c.client),
            "start": c.first_ts, "end": c.last_ts, "first_frame": c.first_frame, "last_frame": c.last_frame,
            "version": version_name(sh.version) if sh else None,
            "cipher_suite": cipher_suite_name(sh.cipher_suite) if sh else None,
            "decrypted": c.decrypted, "requests": [f"{ex.request.method} {ex.request.target}" for ex in c.exchanges][:20],
            "retransmissions": dict(c.retransmissions), "segments": dict(c.segments),
            "retransmission_frames": c.retransmission_frames[:20], "gaps": c.gaps[:10],
            "closed": c.closed[:2], "problems": c.problems[:10],
            "alerts": [{"direction": a.direction, "level": a.level, "name": a.name, "encrypted": a.encrypted,
                        "time": a.ts, "frame": a.frame} for a in c.alerts[:10]],
            "decryption": {k: v for k, v in c.decryption.items()}}


def _any_undecrypted(g: _Group) -> bool:
    return any(cn.kind == "undecrypted" for cn in g.conns)


def _posts(g: _Group):
    for cn in g.conns:
        for ex, rq, rs in cn.posts:
            yield cn, ex, rq, rs


def _phase_group_selection(g: _Group) -> Phase:
    p = Phase("group-selection")
    posts = [(cn, ex, rq, rs) for cn, ex, rq, rs in _posts(g) if rq is not None and rq.type == "init"]
    if not posts:
        p.status = "undecrypted" if _any_undecrypted(g) else "absent"
        p.summary = "TLS not decrypted" if p.status == "undecrypted" else "no aggregate-auth init POST"
        return p
    d: dict = {"posts": []}
    group_list = None
    answered_version = None
    for cn, ex, rq, rs in posts:
        req, resp = ex.request, ex.response
        p.touch(req.ts, req.frame)
        entry = {"time": req.ts, "frame": req.frame, "target": req.target, "group_select": rq.group_select,
                 "aggregate_auth_version": rq.aggregate_auth_version, "group_access": rq.group_access,
                 "client_version": rq.version("vpn"), "device_id": rq.device_id.platform if rq.device_id else None,
                 "headers": _headers_view(req.headers)}
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            entry.update({"status": resp.status, "response_time": resp.ts, "response_frame": resp.frame,
                          "response_type": rs.type if rs else None,
                          "response_headers": _headers_view(resp.headers)})
            if rs is not None:
                answered_version = rs.aggregate_auth_version or answered_version
                if rs.group_list is not None:
                    entry["group_list"] = [o.value for o in rs.group_list.options]
                    if group_list is None:  # the list first offered (a re-POST may reorder it)
                        group_list = rs.group_list
                if rs.opaque is not None:
                    entry["opaque"] = {"tunnel_group": rs.opaque.tunnel_group, "group_alias": rs.opaque.group_alias,
                                       "aggauth_handle": rs.opaque.aggauth_handle,
                                       "config_hash": rs.opaque.config_hash}
                if rs.auth and rs.auth.error:
                    entry["error"] = rs.auth.error.formatted
                entry["server_version"] = rs.version("sg")
        d["posts"].append(entry)
    first = posts[0][2]
    d["aggregate_auth_version_offered"] = first.aggregate_auth_version
    d["aggregate_auth_version_answered"] = answered_version
    d["group_access"] = first.group_access
    versions = [e["aggregate_auth_version"] for e in d["posts"]]
    d["version_fallback"] = bool(len(versions) > 1 and versions[0] == "2" and any(v in (None, "1") for v in versions[1:]))
    # an XML init answered by something that is not config-auth XML, then the legacy urlencoded login form
    forms = [ex for cn in g.conns for ex in cn.form_posts]
    non_xml = [e for e in d["posts"] if e.get("response_type") is None and e.get("status") is not None]
    d["fallback_to_form"] = bool(non_xml and forms)
    if d["fallback_to_form"]:
        d["version_fallback"] = True
        d["fallback_posts"] = [{"time": ex.request.ts, "frame": ex.request.frame, "target": ex.request.target,
                                "status": ex.response.status if ex.response else None} for ex in forms]
    if group_list is not None:
        d["group_list"] = [{"value": o.value, "label": o.label, "selected": o.selected} for o in group_list.options]
        sel = group_list.selected  # the option marked selected="true", else the first (what a client shows)
        d["default_group"] = sel.value if sel else None
    else:
        d["group_list"] = []
        d["default_group"] = None
    chosen = [e["group_select"] for e in d["posts"] if e["group_select"]]
    # group-select also travels in the auth-reply
    for _, _, rq, _ in _posts(g):
        if rq is not None and rq.type == "auth-reply" and rq.group_select:
            chosen.append(rq.group_select)
    d["group_selected"] = chosen[-1] if chosen else d["default_group"]
    # GETs of the URL the client POSTed to (openconnect's fallback when its POST is refused)
    posted = {e["target"] for e in d["posts"]}
    d["fallback_gets"] = [{"time": ex.request.ts, "frame": ex.request.frame, "target": ex.request.target,
                           "status": ex.response.status if ex.response else None,
                           "response_frame": ex.response.frame if ex.response else None}
                          for cn in g.conns for ex in cn.gets if ex.request.target in posted][:10]
    d["reselected"] = bool(len(d["posts"]) > 1 and any(e["group_select"] and e["group_select"] != d["default_group"]
                                                       for e in d["posts"]))
    bad = [e for e in d["posts"] if e.get("status") not in (None, 200)]
    p.status = "failed" if bad else "ok"
    labels = ", ".join(o["label"] or o["value"] for o in d["group_list"]) if d["group_list"] else "no group list"
    p.summary = f"{len(posts)} POST(s); groups: {labels}" + (f"; chosen {d['group_selected']}" if d["group_selected"] else "")
    p.details = d
    return p


def _phase_user_auth(g: _Group, tls_phase: Phase) -> Phase:
    p = Phase("user-auth")
    rounds = []
    complete = None
    failure = None
    for cn, ex, rq, rs in _posts(g):
        req, resp = ex.request, ex.response
        if rq is None or rq.type == "init":
            # an init answered "complete" (certificate-only auth) still counts
            if rs is not None and rs.type == "complete":
                complete = (ex, rs)
            continue
        p.touch(req.ts, req.frame)
        fields = [k for k, _ in (rq.auth.values if rq.auth else ())]
        r = {"time": req.ts, "frame": req.frame, "target": req.target, "type": rq.type, "fields": fields,
             "group_select": rq.group_select, "xml": _xml_view(req.body, fields)}
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            r.update({"status": resp.status, "response_time": resp.ts, "response_frame": resp.frame,
                      "response_type": rs.type if rs else None,
                      "auth_id": rs.auth.id if rs and rs.auth else None,
                      "message": rs.auth.message.formatted if rs and rs.auth and rs.auth.message else None,
                      "error": rs.auth.error.formatted if rs and rs.auth and rs.auth.error else None,
                      "form_fields": [f.name for f in rs.auth.form.fields] if rs and rs.auth and rs.auth.form else []})
            r["rejected"], r["rejection"] = _rejected(r, fields)
            if r["rejected"]:
                failure = r
            if rs is not None and rs.type == "complete":
                complete = (ex, rs)
        rounds.append(r)
    form_success = None
    for cn in g.conns:
        for ex in cn.form_posts:
            req, resp = ex.request, ex.response
            p.touch(req.ts, req.frame)
            fields = _form_fields(req.body)
            r = {"time": req.ts, "frame": req.frame, "target": req.target, "type": "form", "fields": fields,
                 "group_select": None, "xml": None}
            if resp is not None:
                p.touch(resp.ts, resp.frame)
                cookie = _set_cookie(resp.headers)
                r.update({"status": resp.status, "response_time": resp.ts, "response_frame": resp.frame,
                          "response_type": "cookie" if cookie else None, "auth_id": None, "message": None,
                          "error": None, "form_fields": []})
                if cookie:
                    form_success = (ex, cookie)
                elif resp.status in (401, 403):
                    failure = r
            rounds.append(r)
    if form_success is not None and complete is None:
        ex, cookie = form_success
        d = {"rounds": rounds, "result": "success", "session_token": Secret(cookie), "mode": "legacy-form",
             "core_manifest": [], "profile_manifest": []}
        p.status = "ok"
        p.summary = f"success (legacy form login, {len(rounds)} POST(s))"
        p.details = d
        return p
    if not rounds and complete is None:
        p.status = "undecrypted" if _any_undecrypted(g) else "absent"
        p.summary = "TLS not decrypted" if p.status == "undecrypted" else "no auth-reply POST"
        return p
    d: dict = {"rounds": rounds, "mode": "aggregate-auth"}
    if complete is not None:
        ex, rs = complete
        d["result"] = "success"
        d["session_id"] = rs.session_id
        d["session_token"] = Secret(rs.session_token) if rs.session_token else None
        cfg = rs.config
        if cfg is not None:
            d["server_cert_hash"] = cfg.server_cert_hash
            chain = tls_phase.details.get("certificates") or []
            if cfg.server_cert_hash and chain:
                h = cfg.server_cert_hash.replace(":", "").upper()
                d["server_cert_hash_matches"] = h in (chain[0].get("sha1"), chain[0].get("sha256"))
            d["core_manifest"] = [_manifest(f) for f in cfg.core_manifest]
            d["profile_manifest"] = [_manifest(f) for f in cfg.profile_manifest]
        else:
            d["core_manifest"] = []
            d["profile_manifest"] = []
        d["complete_xml"] = _xml_view(ex.response.body)
        p.status = "ok"
        rejected = [r for r in rounds if r.get("rejected")]
        d["rejected_rounds"] = len(rejected)
        p.summary = f"success after {len(rounds)} round(s)" + (
            f"; {len(rejected)} rejected first ({rejected[0].get('rejection')})" if rejected else "")
        p.touch(ex.response.ts, ex.response.frame)
    else:
        d["result"] = "failure" if failure is not None or rounds else None
        d["rejected_rounds"] = len([r for r in rounds if r.get("rejected")])
        msg = None
        if failure is not None:
            msg = failure.get("rejection") or failure.get("error") or failure.get("message") or \
                f"HTTP {failure.get('status')}"
        elif rounds:
            last = rounds[-1]
            msg = last.get("error") or last.get("message") or (f"HTTP {last.get('status')}" if last.get("status") else
                                                               "no answer")
        d["failure_message"] = msg
        p.status = "failed"
        p.summary = f"failed: {msg}" if msg else "failed"
    p.details = d
    return p


_REJECTION_WORDS = ("fail", "invalid", "incorrect", "denied", "wrong", "rejected", "expired", "locked")


def _rejected(r: dict, fields_sent: list[str]) -> tuple[bool, str | None]:
    """Did the gateway reject this auth-reply round? HTTP 401/403, an `<error>` in its answer (Cisco), or the
    same credential field asked again with a message saying why (ocserv: a new auth-request "Login failed.")."""
    if r.get("status") in (401, 403):
        return True, f"HTTP {r['status']}"
    if r.get("error"):
        return True, r["error"]
    if r.get("response_type") != "auth-request":
        return False, None
    asked_again = set(r.get("form_fields") or ()) & set(fields_sent)
    msg = (r.get("message") or "").strip()
    if asked_again and any(w in msg.lower() for w in _REJECTION_WORDS):
        return True, msg.splitlines()[0] if msg else None
    return False, None


def _manifest(f) -> dict:
    return {"type": f.type, "uri": f.uri, "hash_type": f.hash_type, "hash": f.hash, "version": f.version}


def _phase_downloader(g: _Group, auth: Phase, client_sw: dict | None = None) -> Phase:
    p = Phase("downloader")
    gets = []
    conns = set()
    for cn in g.conns:
        for ex in cn.gets:
            # the downloader GETs its files with the session cookie; a cookie-less GET elsewhere is the client's
            # own fallback (openconnect GETs the URL it was given when its POST fails), not the downloader
            if any(ex.request.target.startswith(x) for x in DOWNLOADER_PATHS) or \
                    (cn.kind == "downloader" and _cookie(ex.request.headers)):
                gets.append((cn, ex))
                conns.add(cn.c.index)
    manifest = (auth.details or {}).get("profile_manifest") or []
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
        p.details = {"gets": [], "profile_manifest": manifest,
                     "missing_profiles": [m["uri"] for m in manifest]}
        return p
    rows = []
    for cn, ex in gets:
        req, resp = ex.request, ex.response
        p.touch(req.ts, req.frame)
        row = {"time": req.ts, "frame": req.frame, "connection": f"tcp.stream {cn.c.index}", "target": req.target,
               "cookie": Secret(_cookie(req.headers)) if _cookie(req.headers) else None}
        if resp is not None:
            p.touch(resp.ts, resp.frame)
            row.update({"status": resp.status, "size": len(resp.body), "sha1": hashlib.sha1(resp.body).hexdigest().upper(),
                        "response_frame": resp.frame})
        rows.append(row)
    fetched = {r["target"]: r for r in rows if r.get("status") == 200}  # a 404 is not a fetch
    checks = []
    for m in manifest:
        r = fetched.get(m["uri"])
        if r is None:
            asked = next((x for x in rows if x["target"] == m["uri"]), None)
            checks.append({"uri": m["uri"], "fetched": False, "status": asked.get("status") if asked else None})
        else:
            checks.append({"uri": m["uri"], "fetched": True, "status": r.get("status"),
                           "hash_matches": (m["hash"] or "").upper() == r.get("sha1") if r.get("status") == 200 else None})
    p.details = {"gets": rows, "connections": sorted(conns), "profile_manifest": manifest, "profile_checks": checks,
                 "missing_profiles": [c["uri"] for c in checks if not c["fetched"]]}
    bad = [r for r in rows if r.get("status") != 200]
    p.status = "failed" if bad else "ok"
    p.summary = f"{len(rows)} GET(s) on {len(conns)} TLS session(s)" + (f"; {len(bad)} failed" if bad else "")
    return p


def _tunnel_params(h) -> dict:
    def ints(name):
        return _int(h.get(name))

    return {
        "address": h.get("X-CSTP-Address"), "netmask": h.get("X-CSTP-Netmask"),
        "address_ip6": h.get("X-CSTP-Address-IP6"), "dns": list(h.get_all("X-CSTP-DNS")),
        "split_include": list(h.get_all("X-CSTP-Split-Include")),
        "split_exclude": list(h.get_all("X-CSTP-Split-Exclude")),
        "default_domain": h.get("X-CSTP-Default-Domain"),
        "dpd": ints("X-CSTP-DPD"), "keepalive": ints("X-CSTP-Keepalive"), "mtu": ints("X-CSTP-MTU"),
        "base_mtu": ints("X-CSTP-Base-MTU"), "rekey_time": ints("X-CSTP-Rekey-Time"),
        "rekey_method": h.get("X-CSTP-Rekey-Method"), "idle_timeout": h.get("X-CSTP-Idle-Timeout"),
        "session_timeout": h.get("X-CSTP-Session-Timeout"),
        "disconnected_timeout": h.get("X-CSTP-Disconnected-Timeout"),
        "content_encoding": h.get("X-CSTP-Content-Encoding"), "banner": h.get("X-CSTP-Banner"),
        "dtls_port": ints("X-DTLS-Port"), "dtls_dpd": ints("X-DTLS-DPD"), "dtls_keepalive": ints("X-DTLS-Keepalive"),
        "dtls_mtu": ints("X-DTLS-MTU"), "dtls_ciphersuite": h.get("X-DTLS-CipherSuite") or h.get("X-DTLS12-CipherSuite"),
        "dtls_session_id": h.get("X-DTLS-Session-ID"), "dtls_app_id": h.get("X-DTLS-App-ID"),
        "dtls_content_encoding": h.get("X-DTLS-Content-Encoding"),
    }


def _phase_cstp(g: _Group) -> Phase:
    p = Phase("cstp-connect")
    tunnels = [cn for cn in g.conns if cn.kind == "tunnel"]
    if not tunnels:
        if len(g.conns) and all(cn.kind == "undecrypted" for cn in g.conns):
            longest = max(g.conns, key=lambda cn: cn.c.encrypted_bytes["c2s"] + cn.c.encrypted_bytes["s2c"])
            c = longest.c
            p.status = "undecrypted"
            p.touch(c.first_ts, c.first_frame)
            p.touch(c.last_ts, c.last_frame)
            p.details = {"connection": f"tcp.stream {c.index}", "encrypted_records": dict(c.encrypted_records),
                         "encrypted_bytes": dict(c.encrypted_bytes),
                         "note": "the CONNECT and the CSTP data channel are inside TLS: supply the key log"}
            p.summary = f"TLS not decrypted; {sum(c.encrypted_bytes.values())} encrypted bytes on tcp.stream {c.index}"
        else:
            p.status = "absent"
            p.summary = "no CONNECT"
        return p
    connects = []
    primary = None
    for cn in tunnels:
        for ex in cn.connects:
            req, resp = ex.request, ex.response
            p.touch(req.ts, req.frame)
            entry = {"time": req.ts, "frame": req.frame, "connection": f"tcp.stream {cn.c.index}",
                     "target": req.target, "request_headers": _headers_view(req.headers),
                     "cookie_matches_session": None}
            if resp is not None:
                p.touch(resp.ts, resp.frame)
                entry.update({"status": resp.status, "reason": resp.reason, "response_time": resp.ts,
                              "response_frame": resp.frame, "response_headers": _headers_view(resp.headers),
                              "x_reason": resp.headers.get("X-Reason")})
                if 200 <= resp.status < 300:
                    entry["parameters"] = _tunnel_params(resp.headers)
                    entry["requested"] = {"mtu": _int(req.headers.get("X-CSTP-MTU")),
                                          "base_mtu": _int(req.headers.get("X-CSTP-Base-MTU")),
                                          "address_type": req.headers.get("X-CSTP-Address-Type"),
                                          "address": req.headers.get("X-CSTP-Address"),
                                          "dtls_ciphersuites": req.headers.get("X-DTLS-CipherSuite"),
                                          "dtls12_ciphersuites": req.headers.get("X-DTLS12-CipherSuite"),
                                          "accept_encoding": req.headers.get("X-CSTP-Accept-Encoding"),
                                          "hostname": req.headers.get("X-CSTP-Hostname")}
                    pax = resp.headers.get("X-CSTP-Post-Auth-XML")
                    if pax:
                        entry["post_auth_xml"] = Redactable(pax, redact_xml(pax, keep_declaration=False))
                    if primary is None:
                        primary = (cn, entry)
            connects.append(entry)
    d: dict = {"connects": connects}
    if primary is not None:
        cn, entry = primary
        c = cn.c
        d["parameters"] = entry["parameters"]
        d["requested"] = entry["requested"]
        d["tunnel_established"] = {"time": c.tunnel_ts, "frame": c.tunnel_frame}
        d["channel"] = c.tunnel.summary() if c.tunnel else None
        d["tcp_retransmissions"] = dict(c.retransmissions)
        d["tls_records"] = dict(c.app_records)
        if c.tunnel is not None:
            for k in ("c2s", "s2c"):
                if k in c.tunnel.last_data:
                    p.touch(c.tunnel.last_data[k][0], None)
            if c.tunnel.disconnect:
                p.touch(c.tunnel.disconnect["ts"], c.tunnel.disconnect["frame"])
        p.status = "ok"
        params = entry["parameters"]
        parts = [params["address"] or "no X-CSTP-Address"]
        for label, key in (("MTU", "mtu"), ("DPD", "dpd"), ("keepalive", "keepalive")):
            parts.append(f"{label} {params[key]}" if params[key] is not None else f"no {label}")
        p.summary = (f"{entry.get('status')} {entry.get('reason') or 'CONNECTED'}: " + ", ".join(parts) +
                     (f"; {len(connects)} CONNECTs" if len(connects) > 1 else ""))
    else:
        last = connects[-1]
        p.status = "failed"
        p.summary = (f"CONNECT answered {last.get('status')} {last.get('reason') or ''}".strip()
                     if last.get("status") is not None else "CONNECT sent, no answer in the capture")
    p.details = d
    return p


def _dtls_mode(flow: DTLSFlow, params: dict | None) -> str | None:
    if flow.keys_source == "psk-negotiate":
        return "psk-negotiate"
    if flow.keys_source == "legacy":
        return "legacy-0x0100" if flow.version == 0x0100 else "legacy"
    suite = (params or {}).get("dtls_ciphersuite")
    if suite == "PSK-NEGOTIATE":
        return "psk-negotiate"
    if flow.version == 0x0100 or (flow.hellos and flow.hellos[0]["version"] == 0x0100):
        return "legacy-0x0100"
    return "legacy" if suite else None


def _attempt_start(f: DTLSFlow) -> float | None:
    """When the handshake that succeeded (or the last one) began: its first ClientHello, before any cookie
    exchange or retransmission (a hello with a cookie or a retransmitted one continues the attempt)."""
    end = f.established_ts
    start = None
    for h in f.hellos:
        if end is not None and h["ts"] > end:
            break
        if start is None or not (h["retransmission"] or h["cookie"]):
            start = h["ts"]
    return start


INCOMPLETE_WAIT = 1.0  # seconds of capture after the last DTLS hello before "no answer" is a fact


def _phase_dtls(g: _Group, cstp: Phase, capture_end: float | None = None) -> Phase:
    p = Phase("dtls")
    params = (cstp.details or {}).get("parameters")
    if not g.dtls:
        if params and params.get("dtls_port"):
            p.status = "failed"
            p.summary = "gateway offered DTLS (X-DTLS-Port) but no DTLS packets were captured"
        else:
            p.status = "absent"
            p.summary = "no DTLS" + ("; gateway offered no DTLS" if params else "")
        p.details = {"offered": bool(params and params.get("dtls_port"))}
        return p
    flows = []
    for f in g.dtls:
        hello_times = [h["ts"] for h in f.hellos]
        attempt_start = _attempt_start(f)
        entry = {
            "connection": f"udp.stream {f.index}", "client": fmt_endpoint(*f.client),
            "gateway": fmt_endpoint(*f.server), "mode": _dtls_mode(f, params),
            "version": DTLS_VERSIONS.get(f.version, hex(f.version) if f.version else None),
            "cipher_suite": cipher_suite_name(f.cipher_suite) if f.cipher_suite is not None else None,
            "client_hellos": f.hellos, "client_hello_count": f.hello_total,
            "hello_intervals": [round(b - a, 3) for a, b in zip(hello_times, hello_times[1:])],
            "hello_verify_requests": len(f.hello_verify), "hello_verify_request_frames": [
                h["frame"] for h in f.hello_verify[:50]], "hello_verify_request_times": [h["ts"] for h in f.hello_verify[:50]],
            "server_hello": f.server_hello,
            "full_handshake": f.full_handshake, "established": f.established_ts is not None or f.up_before_capture,
            "established_time": f.established_ts, "established_frame": f.established_frame,
            "established_from": ("before-capture" if f.up_before_capture else "record-pattern" if f.established_keyless
                                 else "decryption" if f.established_ts is not None else None),
            "before_capture": f.before_capture,
            "handshake_start": attempt_start,
            "handshake_duration": round(f.established_ts - attempt_start, 6)
            if f.established_ts is not None and attempt_start is not None else None,
            "keys": f.keys_source, "undecrypted_records": f.undecrypted,
            "undecrypted_records_by_direction": dict(f.undecrypted_records),
            "undecrypted_reason": f.undecrypted_reason,
            "alerts": f.alerts, "problems": f.problems[:10], "datagrams": dict(f.datagrams), "bytes": dict(f.bytes),
            "channel": f.channel.summary(),
            "session_id": f.session_id.hex() if f.session_id else None,
            "first_record": f.first_record, "start": f.first_ts, "end": f.last_ts, "continues": f.continues,
            "first_frame": f.first_frame,
        }
        flows.append(entry)
        p.touch(f.first_ts, f.first_frame)
        p.touch(f.last_ts, f.last_frame)
        for h in f.hellos[:50]:
            p.frames.append(h["frame"])
        for h in f.hello_verify[:50]:
            p.frames.append(h["frame"])
        if f.server_hello:
            p.frames.append(f.server_hello["frame"])
        if f.established_frame:
            p.frames.append(f.established_frame)
    main = next((e for e in flows if e["established"]), flows[0])
    d = {"flows": flows, "mode": main["mode"], "version": main["version"], "cipher_suite": main["cipher_suite"],
         "established": main["established"], "client_hello_times": [h["ts"] for e in flows for h in e["client_hellos"]],
         "offered": bool(params and params.get("dtls_port")),
         "before_capture": bool(main.get("before_capture"))}
    est = [e for e in flows if e["established"]]
    if est:
        first_data = est[0]["channel"]["first_data"].get("c2s")
        d["data_moved_to_dtls"] = first_data
        undecrypted = sum(e["undecrypted_records"] for e in est if e["keys"] is None)
        hs = next((e["handshake_duration"] for e in est if e["handshake_duration"] is not None), None)
        what = " ".join(x for x in (main["mode"], main["version"], main["cipher_suite"]) if x) or "DTLS"
        timing = f", handshake {hs * 1000:.0f} ms" if hs is not None else ""
        if all(e["before_capture"] for e in est):
            p.status = "before-capture"
            done = next((e for e in est if e["established_frame"]), None)
            p.summary = (f"{what} up, " + ("established before the capture started" if done is None else
                                          f"handshake began before the capture, completed at frame "
                                          f"{done['established_frame']}") +
                         (f"; not decrypted: {undecrypted} records" if undecrypted else ""))
        elif undecrypted:
            p.status = "undecrypted"
            p.summary = f"{what} up{timing}; not decrypted: {undecrypted} records"
        else:
            p.status = "ok"
            p.summary = what + timing
    elif any(e["server_hello"] for e in flows):
        undecrypted = any(e["undecrypted_records"] for e in flows)
        p.status = "undecrypted" if undecrypted else "failed"
        p.summary = "DTLS handshake answered but not completed" if not undecrypted else "DTLS not decrypted"
    elif any(e["hello_verify_requests"] for e in flows):
        p.status = "failed"
        n = sum(e["client_hello_count"] for e in flows)
        v = sum(e["hello_verify_requests"] for e in flows)
        p.summary = f"{n} ClientHello(s), {v} HelloVerifyRequest(s), no ServerHello"
    else:
        n = sum(e["client_hello_count"] for e in flows)
        last = max((h["ts"] for e in flows for h in e["client_hellos"]), default=None)
        if capture_end is not None and last is not None and capture_end - last < INCOMPLETE_WAIT:
            # the capture stops right after the hello: whether it would have been answered is not in it
            p.status = "incomplete"
            p.summary = (f"{n} ClientHello(s), the capture ends {capture_end - last:.1f} s after the last one: "
                         "the answer, if any, is not in the capture")
        else:
            p.status = "failed"
            p.summary = f"{n} ClientHello(s) unanswered"
    p.details = d
    return p


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("c2s", "s2c")}


def _tunnel(g: _Group, cstp: Phase, dtls: Phase) -> dict:
    """Session-wide tunnel statistics: every tunnel connection (reconnects included) and every DTLS flow."""
    t: dict = {}
    zero = {"c2s": 0, "s2c": 0}
    ends = []
    tunnels = [cn.c for cn in g.conns if cn.c.tunnel is not None]
    if tunnels:
        agg = {"inner_packets": dict(zero), "inner_bytes": dict(zero), "dpd": dict(zero), "keepalives": dict(zero),
               "connections": len(tunnels)}
        for c in tunnels:
            sm = c.tunnel.summary()
            agg["inner_packets"] = _add(agg["inner_packets"], sm["inner_packets"])
            agg["inner_bytes"] = _add(agg["inner_bytes"], sm["inner_bytes"])
            agg["dpd"] = _add(agg["dpd"], sm["dpd"]["requests"])
            agg["keepalives"] = _add(agg["keepalives"], sm["keepalives"])
            if sm["disconnect"]:
                ends.append(dict(sm["disconnect"], channel="cstp"))
        agg["disconnect"] = ends[-1] if ends else None
        t["cstp"] = agg
    flows = (dtls.details or {}).get("flows") or []
    if flows:
        pk, by, und = dict(zero), dict(zero), dict(zero)
        for e in flows:
            pk = _add(pk, e["channel"]["inner_packets"])
            by = _add(by, e["channel"]["inner_bytes"])
            und = _add(und, e.get("undecrypted_records_by_direction") or {})
            if e["channel"].get("disconnect"):
                ends.append(dict(e["channel"]["disconnect"], channel="dtls"))
        t["dtls"] = {"inner_packets": pk, "inner_bytes": by, "undecrypted_records": und}
    hidden = [cn.c for cn in g.conns if cn.c.tunnel is None and not cn.c.decrypted and cn.c.is_tls]
    if hidden and not tunnels:
        # the tunnel (or what may be it) not decrypted: what the wire shows of it
        longest = max(hidden, key=lambda c: sum(c.encrypted_records.values()))
        t["tls_undecrypted"] = {"connection": f"tcp.stream {longest.index}",
                                "records": dict(longest.encrypted_records), "bytes": dict(longest.encrypted_bytes)}
    total = dict(zero)
    for ch_name in ("cstp", "dtls"):
        total = _add(total, (t.get(ch_name) or {}).get("inner_packets", {}))
    t["inner_packets"] = total
    # the session ended with the last DISCONNECT/TERMINATE seen on any channel
    t["end"] = max(ends, key=lambda e: e["ts"]) if ends else None
    t["series"] = _series(g)
    return t


def _series(g: _Group) -> list:
    out = []
    for cn in g.conns:
        if cn.c.tunnel is not None:
            out += [("cstp",) + s for s in cn.c.tunnel.series()]
    for f in g.dtls:
        out += [("dtls",) + s for s in f.channel.series()]
    return out[:20000]


def build_sessions(pipe, gateways=None) -> list[Session]:
    """The VPN sessions of the capture (see `reconstruct` for the other traffic too)."""
    return reconstruct(pipe, gateways)[0]


def reconstruct(pipe, gateways=None) -> tuple[list[Session], dict]:
    """(VPN sessions, "other traffic" summary): every group of flows with AnyConnect evidence is a session."""
    groups = group_connections(pipe)
    verdicts = judge(groups, gateways, DOWNLOADER_PATHS)
    sessions = []
    vpn_conns: set[int] = set()
    vpn_flows: set[int] = set()
    for g, verdict in zip(groups, verdicts):
        if not verdict.is_vpn:
            continue
        vpn_conns |= {id(cn.c) for cn in g.conns}
        vpn_flows |= {id(f) for f in g.dtls}
        i = len(sessions) + 1
        client_sw = _client_software(g)
        tls = _phase_tls(g)
        grp = _phase_group_selection(g)
        auth = _phase_user_auth(g, tls)
        dl = _phase_downloader(g, auth, client_sw)
        cstp = _phase_cstp(g)
        dtls = _phase_dtls(g, cstp, pipe.last_ts)
        phases = [tls, grp, auth, dl, cstp, dtls]
        assert tuple(p.phase for p in phases) == PHASES
        _mark_before_capture(g, phases)
        client, gw_ip, gw_port = g.key
        starts = [c.c.first_ts for c in g.conns] + [f.first_ts for f in g.dtls]
        ends = [c.c.last_ts for c in g.conns] + [f.last_ts for f in g.dtls]
        s = Session(id=f"s{i}", client=client, gateway=fmt_endpoint(gw_ip, gw_port),
                    start=min(starts) if starts else None, end=max(ends) if ends else None, phases=phases)
        s.tunnel = _tunnel(g, cstp, dtls)
        s.connections = [_conn_summary(cn.c) for cn in g.conns] + [
            {"connection": f"udp.stream {f.index}", "capture": f.capture, "client": fmt_endpoint(*f.client),
             "start": f.first_ts, "end": f.last_ts, "first_frame": f.first_frame, "last_frame": f.last_frame,
             "dtls": True}
            for f in g.dtls]
        # the capture files its flows were seen in (a connection may run on from one file into the next)
        caps = sorted({n for t in [cn.c for cn in g.conns] + g.dtls for n, _ in t.numbers})
        s.captures = [pipe.captures[n] for n in caps if n < len(pipe.captures)]
        s.evidence = verdict.evidence
        s.confidence = verdict.confidence
        s.client_software = client_sw
        sessions.append(s)
    return sessions, other_traffic(pipe, vpn_conns, vpn_flows)


_CLIENTS = (  # User-Agent prefix -> client name (AnyConnect-protocol clients as they announce themselves)
    ("Open AnyConnect VPN Agent", "openconnect"),
    ("OpenConnect", "openconnect"),
    ("Cisco AnyConnect", "Cisco AnyConnect"),
    ("AnyConnect", "Cisco AnyConnect"),
    ("Cisco Secure Client", "Cisco Secure Client"),
)


def _client_software(g: _Group) -> dict:
    """Which client this is, from what it said on the wire (User-Agent, aggregate-auth version); else unknown."""
    for cn in g.conns:
        for ex in cn.c.exchanges:
            ua = ex.request.headers.get("User-Agent")
            if not ua:
                continue
            name = next((n for prefix, n in _CLIENTS if ua.startswith(prefix)), None)
            version = None
            for _, rq, _ in cn.posts:
                if rq is not None and rq.version("vpn"):
                    version = rq.version("vpn")
                    break
            if version is None:
                version = ua.rsplit(" v", 1)[1] if " v" in ua else ua.rsplit(" ", 1)[-1] if name else None
            return {"name": name or "unknown", "version": version, "user_agent": ua,
                    "evidence": f"User-Agent frame {ex.request.frame}"}
    return {"name": "unknown", "version": None, "user_agent": None,
            "evidence": "no decrypted HTTP request (no User-Agent)"}


def _mark_before_capture(g: _Group, phases: list[Phase]) -> None:
    """A session whose first connection was already running when the capture started: phases before it did not
    happen in the capture, they happened before it ("before-capture", not "failed" or "undecrypted")."""
    if not g.conns:
        if g.dtls and all(f.before_capture for f in g.dtls):
            for p in phases[:5]:
                if p.status in ("absent", "undecrypted", "failed"):
                    p.status = "before-capture"
                    p.summary = "before the capture started (only the DTLS channel was captured)"
        return
    first = g.conns[0].c
    if not first.started_before_capture:
        return
    for p in phases[:4]:
        if p.status in ("absent", "undecrypted", "failed"):
            p.status = "before-capture"
            p.summary = f"before the capture started (tcp.stream {first.index} was already up at its first frame)"
    cstp = phases[4]
    if cstp.status in ("absent", "undecrypted") and not first.decrypted:
        records = sum(first.encrypted_records.values())
        cstp.status = "before-capture"
        cstp.summary = (f"CONNECT before the capture started; tcp.stream {first.index} carries the tunnel"
                        + (f" (not decrypted: {records} records)" if records else ""))
