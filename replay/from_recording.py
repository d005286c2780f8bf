"""A gateway script (replay/script.py) from a recorded session: the recorded gateway, played again for a client.

`load_recorded(capture, keylogs, session)` runs `acflow analyze`'s own analysis (the session model through its
public JSON document with secrets shown, docs/json-schema.md, and the decapsulated inner packets through the
analysis' inner-packet sink: no second parser). `build_script(recorded)` turns the session into a `Script`:

* each aggregate-auth POST becomes a step matched by what the request is — `type="init"` (with its
  `<group-select>` when the recorded one had it), `type="auth-reply"` carrying the recorded fields
  (`<username>`, `<password>`…) — answered as the recorded gateway answered: the recorded status and headers, an
  `auth-request` rebuilt from what the session model keeps of it (auth id, message, error, the form's fields with
  their recorded types, labels and select options, the opaque block, the gateway's version) or the recorded
  `complete` document with a fresh session token (`${cookie}`) and the served certificate's hash;
* each downloader GET answered with its recorded status, headers and body (the body from the HTTP exchange the
  analysis' TCP tracker holds, `downloader_bodies`; bounded by MAX_DOWNLOAD_BODY / MAX_DOWNLOAD_TOTAL, beyond
  which it is answered empty, with a note);
* each `CONNECT` answered with the recorded status and every recorded X-CSTP-/X-DTLS- header, fresh secrets
  (`${dtls_session_id}` for X-DTLS-Session-ID / X-DTLS-App-ID, the new cookie);
* an answer (aggregate-auth POST or CONNECT) the recorded gateway gave a second or more after the request is given
  as late again (the step's `delay`, divided by `speed`): a slow authentication server, a multi-factor push, a slow
  DHCP server replay as such;
* DTLS as recorded: PSK-NEGOTIATE established → a GnuTLS DTLS PSK server on the recorded X-DTLS-Port (with
  HelloVerifyRequests if the recorded gateway sent them); answered with HelloVerifyRequests from another port →
  the same from that port; legacy DTLS established (openconnect's pre-RFC mode: DTLS 0x0100/1.0/1.2 resuming a
  session from the client's X-DTLS-Master-Secret) → a GnuTLS server resuming it in the recorded version and suite
  (AES-CBC-SHA1 or AES-GCM, RSA); offered but never answered → the port swallows every datagram;
* the recorded gateway→client inner packets as CSTP `data` actions at their recorded times after the CONNECT
  answer (divided by `speed`), over DTLS when they were recorded there and the DTLS channel is up, their
  destination rewritten to the address the script hands out (scapy, checksums recomputed) when it differs from
  the recorded one; the DPD requests and keepalives the gateway sent, at their recorded times, on the channel
  (CSTP or DTLS) they were recorded on (`gateway_controls`); the recorded end (DISCONNECT or TERMINATE from the
  gateway, or its TCP close) at the recorded time.

An unexpected request gets the answer of the recorded exchange with its method and path that comes next (else the
closest before: `unmatched_nearest`), or 404; the gateway logs it as such. What could not be reproduced is listed in
`BuildResult.notes` and in the script's description.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from dissectors.http import DEFAULT_MAX_DOWNLOAD_BODY

from .script import LEGACY_DTLS_SUITES, LEGACY_DTLS_VERSIONS, Script

CONNECT_VOLATILE = {  # recorded CONNECT answer headers replaced by fresh values (lower case → template)
    "x-dtls-session-id": "${dtls_session_id}",
    "x-dtls-app-id": "${dtls_session_id}",
}
DROPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "date"}


#: a recorded answer this many seconds or more after its request is answered as late again (the recorded gateway's
#: authentication server, a multi-factor push, a slow DHCP server for the tunnel's address: AUTH_SLOW, CONNECT_SLOW)
REPLAYED_WAIT = 1.0


def _waited(item: dict, speed: float) -> float | None:
    """How long the recorded gateway took to answer ``item`` (divided by ``speed``), when `REPLAYED_WAIT` or more."""
    t, answered = item.get("time"), item.get("response_time")
    if not isinstance(t, (int, float)) or not isinstance(answered, (int, float)) or answered - t < REPLAYED_WAIT:
        return None
    return round((answered - t) / speed, 3)


def _hold(step: dict, item: dict, speed: float) -> dict:
    """``step`` answering as late as the recorded gateway did (its `delay`), when that was late."""
    wait = _waited(item, speed)
    if wait is not None:
        step["delay"] = wait
        step["note"] = step.get("note", "") + f"; answered {wait:g} s after the request, as recorded"
    return step


class RecordingUnusable(Exception):
    """The capture holds no session whose gateway side can be replayed (the message says why)."""


#: recorded downloader bodies kept for the replay: per body (what the HTTP dissector keeps of an answer to a GET, of
#: which the analysis holds every one) and in all (what the replay copies and serves)
MAX_DOWNLOAD_BODY = DEFAULT_MAX_DOWNLOAD_BODY
MAX_DOWNLOAD_TOTAL = 8 << 20


@dataclass
class RecordedBody:
    headers: list[list[str]]  # the recorded response headers, as sent
    body: bytes
    reason: str = ""


@dataclass
class Recorded:
    session: dict  # the session of the report document, secrets shown
    inner: list[tuple[float, str, str, bytes]]  # (ts, direction, channel, IP packet) of this session
    capture: str = ""
    #: (connection, request frame) of a downloader GET of the session → its recorded answer's headers and body
    #: (decrypted, complete, within MAX_DOWNLOAD_BODY / MAX_DOWNLOAD_TOTAL); why the others are not here: notes
    downloads: dict[tuple[str, int], RecordedBody] = field(default_factory=dict)
    download_notes: dict[tuple[str, int], str] = field(default_factory=dict)


@dataclass
class BuildResult:
    script: Script
    notes: list[str] = field(default_factory=list)
    dtls: str = "none"  # "psk-negotiate", "dropped", "none"
    packets: int = 0  # gateway→client inner packets re-driven


def load_recorded(capture: Path, keylogs, session_id: str | None = None) -> Recorded:
    """Analyse ``capture`` and return the session to replay (default: the first that reached a CSTP CONNECT, else
    the first). Raises analyzer.analyze.InputError (unreadable input) or RecordingUnusable."""
    from analyzer import __version__  # noqa: PLC0415
    from analyzer.analyze import analyze_paths, load_keys  # noqa: PLC0415
    from analyzer.report.json_report import to_document  # noqa: PLC0415

    keys, info = load_keys(list(keylogs), [])
    packets: list[tuple[float, str, str, bytes]] = []

    def sink(channel, direction, ts, frame, packet):
        packets.append((ts, direction, channel, bytes(packet)))

    pipes: list = []
    analysis = analyze_paths([Path(capture)], keys, key_info=info, inner_sink=sink, on_pipeline=pipes.append)
    doc = to_document(analysis, version=__version__, show_secrets=True)
    s = choose_session(doc, session_id)
    start, end = s.get("start") or 0.0, s.get("end") or float("inf")
    inner = [p for p in packets if start <= p[0] <= end + 1.0]
    rec = Recorded(session=s, inner=inner, capture=str(capture))
    if pipes:
        rec.downloads, rec.download_notes = downloader_bodies(pipes[0], _details(s, "downloader").get("gets") or ())
    return rec


def downloader_bodies(pipeline, gets) -> tuple[dict[tuple[str, int], RecordedBody], dict[tuple[str, int], str]]:
    """The recorded answers to the session's downloader GETs (``gets``: the session model's rows) from the HTTP
    exchanges the analysis' TCP trackers hold (analyzer/tcptracker.py: the dissector's Response, body included):
    {(connection, request frame): RecordedBody}, and why a GET's body is not there."""
    trackers = {f"tcp.stream {t.index}": t for t in getattr(pipeline, "tcp", {}).values()}
    out: dict[tuple[str, int], RecordedBody] = {}
    why: dict[tuple[str, int], str] = {}
    total = 0
    for g in gets:
        if not isinstance(g, dict) or g.get("status") is None:
            continue
        key = (str(g.get("connection")), int(g.get("frame") or 0))
        t = trackers.get(key[0])
        ex = next((e for e in getattr(t, "exchanges", ()) if e.request.frame == key[1]), None)
        resp = ex.response if ex is not None else None
        if resp is None:
            why[key] = "its answer is not among the decrypted exchanges"
            continue
        # (the analysis keeps the first MiB of an answer to a GET: body_length is the whole one's)
        if resp.body_length > MAX_DOWNLOAD_BODY or total + resp.body_length > MAX_DOWNLOAD_TOTAL:
            why[key] = (f"its body ({resp.body_length} bytes) is beyond the replay's bounds ({MAX_DOWNLOAD_BODY} "
                        f"bytes a body, {MAX_DOWNLOAD_TOTAL} in all)")
            continue
        if resp.body_truncated:
            why[key] = "its recorded body is incomplete"
            continue
        total += len(resp.body)
        out[key] = RecordedBody(headers=[[str(k), str(v)] for k, v in resp.headers], body=bytes(resp.body),
                                reason=str(resp.reason or ""))
    return out, why


def _phase(s: dict, name: str) -> dict:
    for p in s.get("phases") or ():
        if p.get("phase") == name:
            return p
    return {"phase": name, "status": "absent", "details": {}}


def _details(s: dict, name: str) -> dict:
    d = _phase(s, name).get("details")
    return d if isinstance(d, dict) else {}


def choose_session(doc: dict, session_id: str | None) -> dict:
    sessions = [s for s in doc.get("sessions") or () if isinstance(s, dict)]
    if not sessions:
        raise RecordingUnusable("the capture holds no VPN session (see `acflow analyze`)")
    if session_id is not None:
        for s in sessions:
            if s.get("id") == session_id:
                break
        else:
            raise RecordingUnusable(f"no session {session_id!r}; the capture has "
                                    + ", ".join(str(s.get("id")) for s in sessions))
    else:
        ok = [s for s in sessions if _phase(s, "cstp-connect").get("status") == "ok"]
        s = (ok or sessions)[0]
    if not (_details(s, "group-selection").get("posts") or _details(s, "user-auth").get("rounds")
            or _details(s, "cstp-connect").get("connects")):
        raise RecordingUnusable(f"session {s.get('id')}: nothing of its HTTP exchange was decrypted (keys "
                                "missing?): there is no gateway answer to replay")
    return s


# -- XML the recorded gateway answered ----------------------------------------------------------------------------

def _field_type(name: str) -> str:
    low = name.lower()
    return "password" if "pass" in low or low in ("secondary_password", "answer") else "text"


def _form_xml(form: list[dict]) -> list[str]:
    """The `<input>`/`<select>` elements of a recorded form (the session model's `form`: name, type, label,
    options), in the recorded order."""
    out = []
    for f in form:
        if not isinstance(f, dict):
            continue
        name, kind, label = f.get("name"), f.get("type"), f.get("label")
        attrs = "".join(f" {k}={quoteattr(str(v))}" for k, v in (("name", name), ("label", label)) if v is not None)
        if kind == "select" or f.get("options") is not None:
            out.append(f"<select{attrs}>")
            for o in f.get("options") or ():
                if not isinstance(o, dict):
                    continue
                value = "" if o.get("value") is None else str(o["value"])
                sel = ' selected="true"' if o.get("selected") else ""
                out.append(f"<option value={quoteattr(value)}{sel}>{escape(str(o.get('label') or ''))}</option>")
            out.append("</select>")
        else:
            typ = f" type={quoteattr(str(kind))}" if kind is not None else ""
            out.append(f"<input{typ}{attrs}></input>")
    return out


def auth_request_xml(*, auth_id: str | None, message: str | None, error: str | None, fields: list[str],
                     groups: list[dict] | None = None, opaque: dict | None = None, server_version: str | None = None,
                     aggregate_auth_version: str | None = "2", action: str | None = None,
                     form: list[dict] | None = None) -> str:
    """An aggregate-auth `auth-request` with what the session model keeps of a recorded one; ``action``: where the
    form is to be posted (the target of the recorded client's next POST). ``form``: the recorded form (the session
    model's `form`: each field's name, type, label and options, as the gateway sent them) — served as recorded;
    without it (a document of an older acflow) the form is made from the field names (``fields``, ``groups``)."""
    ver = f" aggregate-auth-version={quoteattr(aggregate_auth_version)}" if aggregate_auth_version else ""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<config-auth client="vpn" type="auth-request"{ver}>']
    if server_version:
        out.append(f'<version who="sg">{escape(server_version)}</version>')
    if opaque:
        out.append('<opaque is-for="sg">')
        for key, tag in (("tunnel_group", "tunnel-group"), ("aggauth_handle", "aggauth-handle"),
                         ("group_alias", "group-alias"), ("config_hash", "config-hash")):
            if opaque.get(key):
                out.append(f"<{tag}>{escape(str(opaque[key]))}</{tag}>")
        out.append("</opaque>")
    out.append(f"<auth id={quoteattr(auth_id or 'main')}>")
    if message:
        out.append(f"<message>{escape(message)}</message>")
    if error:
        out.append(f'<error id="1" param1="" param2="">{escape(error)}</error>')
    out.append(f'<form method="post" action={quoteattr(action)}>' if action else "<form>")
    if form is not None:
        out += _form_xml(form)
        fields, groups = [], None
    for name in fields:
        if name == "group_list":
            continue
        kind = _field_type(name)
        out.append(f"<input type={quoteattr(kind)} name={quoteattr(name)} "
                   f"label={quoteattr(name.replace('_', ' ').capitalize() + ':')}></input>")
    if groups:
        out.append('<select name="group_list" label="GROUP:">')
        for g in groups:
            value = g.get("value") or g.get("label") or ""
            sel = ' selected="true"' if g.get("selected") else ""
            out.append(f"<option value={quoteattr(str(value))}{sel}>{escape(str(g.get('label') or value))}</option>")
        out.append("</select>")
    out.append("</form>")
    out.append("</auth>")
    out.append("</config-auth>")
    return "\n".join(out) + "\n"


_TOKEN = re.compile(r"(<session-token>)(.*?)(</session-token>)", re.S)
_CERT_HASH = re.compile(r"(<server-cert-hash>)(.*?)(</server-cert-hash>)", re.S)
_PLACEHOLDER_LIKE = re.compile(r"\$\{")


def _no_placeholders(text: str) -> str:
    """Recorded text never holds script placeholders: a literal "${" is written as "$&#123;" in XML."""
    return _PLACEHOLDER_LIKE.sub("$&#123;", text)


def complete_xml(recorded: str) -> str:
    """The recorded `complete` document with the new session token and the served certificate's SHA-1."""
    text = _no_placeholders(recorded)
    text = _TOKEN.sub(lambda m: m.group(1) + "${cookie}" + m.group(3), text)
    return _CERT_HASH.sub(lambda m: m.group(1) + "${server_cert_sha1}" + m.group(3), text)


def _response_headers(recorded, *, connect: bool = False) -> list[list[str]]:
    out = []
    for item in recorded or ():
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        name, value = str(item[0]), _no_placeholders(str(item[1]))
        low = name.lower()
        if low in DROPPED_RESPONSE_HEADERS:
            continue
        if connect and low in CONNECT_VOLATILE:
            value = CONNECT_VOLATILE[low]
        elif low == "set-cookie" and value.startswith("webvpn="):
            value = "webvpn=${cookie}" + value[value.find(";"):] if ";" in value else "webvpn=${cookie}"
        elif low == "x-cstp-post-auth-xml":
            value = _TOKEN.sub(lambda m: m.group(1) + "${cookie}" + m.group(3), value)
        out.append([name, value])
    return out


# -- inner packets ------------------------------------------------------------------------------------------------

def rewrite_destination(packet: bytes, address: str) -> bytes:
    """``packet`` (IPv4) with its destination set to ``address``, IP and transport checksums recomputed (scapy);
    anything else unchanged."""
    if not packet or packet[0] >> 4 != 4 or len(packet) < 20:
        return packet
    if str(ipaddress.IPv4Address(packet[16:20])) == address:
        return packet
    from scapy.layers.inet import IP  # noqa: PLC0415 - scapy only when a packet is rewritten (never per packet sent)

    ip = IP(packet)
    ip.dst = address
    del ip.chksum
    for layer in ("TCP", "UDP", "ICMP"):
        if ip.haslayer(layer):
            del ip[layer].chksum
    return bytes(ip)


# -- the script ---------------------------------------------------------------------------------------------------

def _exchanges(s: dict) -> list[tuple[float, str, dict]]:
    out = []
    for p in _details(s, "group-selection").get("posts") or ():
        out.append((p.get("time") or 0.0, "init", p))
    for r in _details(s, "user-auth").get("rounds") or ():
        out.append((r.get("time") or 0.0, "auth", r))
    for g in _details(s, "downloader").get("gets") or ():
        out.append((g.get("time") or 0.0, "get", g))
    for c in _details(s, "cstp-connect").get("connects") or ():
        out.append((c.get("time") or 0.0, "connect", c))
    return sorted(out, key=lambda x: x[0])


def build_script(rec: Recorded, *, speed: float = 1.0, address: str | None = None) -> BuildResult:
    """The gateway script that replays ``rec``. ``address``: hand out this tunnel address instead of the recorded
    one (the re-driven packets follow)."""
    s = rec.session
    notes: list[str] = []
    g = _details(s, "group-selection")
    a = _details(s, "user-auth")
    c = _details(s, "cstp-connect")
    groups = [x for x in g.get("group_list") or () if isinstance(x, dict)]
    ex = _exchanges(s)
    xml_headers: list[list[str]] = [["Content-Type", "text/xml"]]
    for _, kind, item in ex:
        if kind == "init" and item.get("response_headers"):
            keep = [h for h in _response_headers(item["response_headers"])
                    if h[0].lower() in ("content-type", "x-transcend-version")]
            xml_headers = keep or xml_headers
            break
    steps: list[dict] = []
    connect_times: list[float] = []
    for i, (_, kind, item) in enumerate(ex):
        nxt = next((it for _, k, it in ex[i + 1:] if k == "auth"), None)
        nxt_post = next((it for _, k, it in ex[i + 1:] if k in ("init", "auth")), None)
        if kind in ("init", "auth"):
            contains = ['type="init"'] if kind == "init" else [f'type="{item.get("type") or "auth-reply"}"']
            if item.get("group_select"):
                contains.append(f"<group-select>{item['group_select']}<")
            if kind == "auth":
                contains += [f"<{f}>" for f in item.get("fields") or () if f != "group_list"]
            expect = {"method": "POST", "path": item.get("target") or "/", "body_contains": contains}
            status = item.get("status")
            if status is None:
                notes.append(f"POST {item.get('target')} at frame {item.get('frame')} got no recorded answer: the "
                             "replay closes the connection there")
                steps.append({"id": f"{kind}-{i + 1}", "expect": expect, "close": True,
                              "respond": {"status": 503, "reason": "Service Unavailable"},
                              "note": "no recorded answer"})
                continue
            rtype = item.get("response_type")
            headers = (_response_headers(item.get("response_headers")) if kind == "init" and
                       item.get("response_headers") else [list(h) for h in xml_headers])
            if rtype == "complete":
                body = complete_xml(a.get("complete_xml") or "")
                if not any(h[0].lower() == "set-cookie" and h[1].startswith("webvpn=") for h in headers):
                    headers.append(["Set-Cookie", "webvpn=${cookie}; path=/; Secure; HttpOnly"])
                if not body:
                    notes.append("the recorded complete document was not decrypted: the replay answers a minimal one")
                    body = complete_xml('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" '
                                        'type="complete" aggregate-auth-version="2"><session-token></session-token>'
                                        '<auth id="success"></auth></config-auth>\n')
            elif rtype == "auth-request":
                form = item.get("form") if isinstance(item.get("form"), list) else None
                if kind == "init":
                    fields = list(nxt.get("fields") or []) if nxt else []
                    body = auth_request_xml(auth_id=item.get("auth_id") or "main", message=item.get("message"),
                                            error=item.get("error"), fields=fields,
                                            groups=groups if item.get("group_list") or groups else None,
                                            opaque=item.get("opaque"), server_version=item.get("server_version"),
                                            aggregate_auth_version=g.get("aggregate_auth_version_answered"),
                                            action=nxt_post.get("target") if nxt_post else None, form=form)
                else:
                    body = auth_request_xml(auth_id=item.get("auth_id"), message=item.get("message"),
                                            error=item.get("error"), fields=list(item.get("form_fields") or []),
                                            aggregate_auth_version=g.get("aggregate_auth_version_answered"),
                                            action=nxt_post.get("target") if nxt_post else item.get("target"),
                                            form=form)
                if form is None:
                    notes.append(f"the form answered to frame {item.get('frame')} is rebuilt from its field names "
                                 "(the recording's document has no form types and labels)")
            else:
                body = ""
                if rtype:
                    notes.append(f"a recorded answer of type {rtype!r} is replayed without its document")
            steps.append(_hold({"id": f"{kind}-{i + 1}", "expect": expect,
                                "respond": {"status": int(status), "reason": "OK" if status == 200 else "",
                                            "headers": headers, "body": body},
                                "note": f"recorded answer to frame {item.get('frame')}"}, item, speed))
        elif kind == "get":
            status = item.get("status") or 404
            key = (str(item.get("connection")), int(item.get("frame") or 0))
            got = rec.downloads.get(key)
            respond: dict = {"status": int(status), "reason": "OK" if status == 200 else "Not Found",
                             "headers": [["Content-Type", "application/octet-stream"]]}
            if got is not None:
                respond["headers"] = [h for h in _response_headers(got.headers)
                                      if h[0].lower() != "set-cookie"] or respond["headers"]
                if got.body:
                    respond["body_hex"] = got.body.hex()
                if got.reason:
                    respond["reason"] = _no_placeholders(got.reason)
                note = f"recorded GET (frame {item.get('frame')}): the recorded answer, {len(got.body)} bytes"
            else:
                why = rec.download_notes.get(key, "it was not decrypted")
                note = f"recorded GET (frame {item.get('frame')}); its body is not replayed: {why}"
                if item.get("size"):
                    notes.append(f"GET {item.get('target')}: answered {status} with an empty body ({why})")
            steps.append({"id": f"get-{i + 1}", "expect": {"method": "GET", "path": item.get("target") or "/"},
                          "respond": respond, "note": note})
        else:  # connect
            status = item.get("status")
            if status is None:
                notes.append("the recorded CONNECT got no answer: the replay closes the connection")
                steps.append({"id": f"connect-{i + 1}", "close": True, "tunnel": False,
                              "expect": {"method": "CONNECT", "path": item.get("target") or "/CSCOSSLC/tunnel"},
                              "respond": {"status": 503, "reason": "Service Unavailable"}})
                continue
            headers = _response_headers(item.get("response_headers"), connect=True)
            if address:
                headers = [[k, address if k.lower() == "x-cstp-address" else v] for k, v in headers]
            step = {"id": f"connect-{i + 1}",
                    "expect": {"method": "CONNECT", "path": item.get("target") or "/CSCOSSLC/tunnel",
                               "cookie": "${cookie}"},
                    "respond": {"status": int(status), "reason": item.get("reason") or "", "headers": headers},
                    "note": f"recorded CONNECT answer (frame {item.get('response_frame')})"}
            if not 200 <= int(status) < 300:
                step["close"] = True
            else:
                connect_times.append(item.get("response_time") or item.get("time") or 0.0)
            steps.append(_hold(step, item, speed))
    if not steps:
        raise RecordingUnusable("the recorded session has no decrypted request to answer")
    steps = _dedupe_ids(steps)

    # DTLS
    d = _details(s, "dtls")
    params = c.get("parameters") or {}
    dtls_port = params.get("dtls_port")
    flows = [f for f in d.get("flows") or () if isinstance(f, dict)]
    dtls_cfg = None
    sinks: list[int] = []
    responders: list[dict] = []
    how = "none"
    if d.get("offered") and dtls_port:
        suite = _legacy_suite(c)
        if d.get("established") and d.get("mode") in ("legacy", "legacy-0x0100") \
                and d.get("version") in LEGACY_DTLS_VERSIONS and suite in LEGACY_DTLS_SUITES:
            dtls_cfg = {"mode": "legacy", "port": int(dtls_port), "version": d["version"], "suite": suite,
                        "hello_verify": any((f.get("hello_verify_requests") or 0) > 0 for f in flows)}
            how = f"legacy {d['version']} {suite}"
        elif d.get("established") and d.get("mode") == "psk-negotiate":
            dtls_cfg = {"mode": "psk-negotiate", "port": int(dtls_port),
                        "hello_verify": any((f.get("hello_verify_requests") or 0) > 0 for f in flows)}
            how = "psk-negotiate"
        elif other := _answered_from_another_port(flows, int(dtls_port)):
            # the recorded gateway answered the ClientHellos sent to X-DTLS-Port from another port
            responders = [{"port": int(dtls_port), "reply_from": other, "reply": "hello-verify-request"}]
            how = f"answered from port {other}"
        else:
            sinks = [int(dtls_port)]
            how = "dropped"
            if d.get("established"):
                notes.append(f"DTLS was established in {d.get('mode')} mode ({d.get('version')}, {suite}), which "
                             "the replay does not serve: its datagrams are dropped (the client stays on CSTP)")
    # inner packets, DPD and the end, per tunnel
    actions: list[dict] = []
    packets = 0
    recorded_addr = params.get("address")
    new_addr = address or recorded_addr
    for k, t0 in enumerate(connect_times):
        t1 = connect_times[k + 1] if k + 1 < len(connect_times) else float("inf")
        tunnels = [k + 1] if len(connect_times) > 1 else []
        for ts, direction, channel, data in rec.inner:
            if direction != "s2c" or not t0 <= ts < t1:
                continue
            if data[:1] and data[0] >> 4 == 4 and len(data) >= 20 and recorded_addr and new_addr:
                dst = str(ipaddress.IPv4Address(data[16:20]))
                if dst == recorded_addr and new_addr != recorded_addr:
                    data = rewrite_destination(data, new_addr)
            act = {"at": round((ts - t0) / speed, 6), "send": "data", "payload_hex": data.hex()}
            if channel == "dtls":
                act["channel"] = "dtls"
            if tunnels:
                act["tunnels"] = tunnels
            actions.append(act)
            packets += 1
        for channel, ch in [("", c.get("channel"))] + [("dtls", f.get("channel")) for f in flows]:
            for kind, ts in gateway_controls(ch if isinstance(ch, dict) else {}, t0, t1):
                act = {"at": round((ts - t0) / speed, 6), "send": kind}
                if channel:
                    act["channel"] = channel
                if tunnels:
                    act["tunnels"] = tunnels
                actions.append(act)
    end = (s.get("tunnel") or {}).get("end") or {}
    if connect_times and isinstance(end, dict) and end.get("direction") == "s2c" and end.get("ts"):
        t0 = connect_times[-1]
        kind = {"DISCONNECT": "disconnect", "TERMINATE": "terminate"}.get(str(end.get("type")).upper())
        if kind:
            act = {"at": round(max(0.0, end["ts"] - t0) / speed, 6), "send": kind}
            if kind == "disconnect":
                act["reason"] = _no_placeholders(str(end.get("reason") or ""))
            actions.append(act)
    elif connect_times:
        closed = _gateway_close(s, end)
        if closed is not None:
            actions.append({"at": round(max(0.0, closed - connect_times[-1]) / speed, 6), "send": "close"})
    script = {
        "name": f"replay of {Path(rec.capture).name or 'a recording'} session {s.get('id')}",
        "description": "built by acflow replay gateway from the recorded session"
                       + ("; " + "; ".join(notes) if notes else ""),
        "steps": steps,
        "cstp": {"answer_dpd": True, "icmp_echo": False, "actions": actions},
        "unmatched_nearest": True,
    }
    if sinks:
        script["udp_sinks"] = sinks
    if responders:
        script["udp_responders"] = responders
    if dtls_cfg:
        script["dtls"] = dtls_cfg
    return BuildResult(script=Script.from_dict(script), notes=notes, dtls=how, packets=packets)


def gateway_controls(ch: dict, t0: float, t1: float) -> list[tuple[str, float]]:
    """The DPD requests and keepalives the recorded gateway sent on a channel (the session model's `channel`:
    CSTP, or a DTLS flow's) between ``t0`` and ``t1``: [("dpd-req" | "keepalive", recorded time)]. The model lists
    the first 50 of each; when the gateway sent more, the rest follow at the median recorded interval up to the
    channel's last frame (as many as it sent)."""
    out: list[tuple[str, float]] = []
    last = ch.get("last_frame_ts")
    dpd = ch.get("dpd") or {}
    series = [("dpd-req", [e.get("ts") for e in dpd.get("exchanges") or ()
                           if isinstance(e, dict) and e.get("direction") == "s2c"],
               (dpd.get("requests") or {}).get("s2c") or 0),
              ("keepalive", list((ch.get("keepalive_times") or {}).get("s2c") or ()),
               (ch.get("keepalives") or {}).get("s2c") or 0)]
    for kind, times, total in series:
        times = sorted(t for t in times if isinstance(t, (int, float)))
        if total > len(times) >= 2 and isinstance(last, (int, float)):
            gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
            step = gaps[len(gaps) // 2]
            while step > 0 and len(times) < total and times[-1] + step <= last:
                times.append(times[-1] + step)
        out += [(kind, t) for t in times if t0 <= t < t1]
    return out


def _legacy_suite(connect_details: dict) -> str | None:
    """The legacy DTLS suite the recorded gateway chose (X-DTLS-CipherSuite, else X-DTLS12-CipherSuite)."""
    for con in connect_details.get("connects") or ():
        heads = {str(k).lower(): str(v) for k, v in con.get("response_headers") or ()}
        for name in ("x-dtls-ciphersuite", "x-dtls12-ciphersuite"):
            v = heads.get(name)
            if v and v != "PSK-NEGOTIATE":
                return v
    return None


def _answered_from_another_port(flows: list[dict], port: int) -> int | None:
    """The gateway port that sent HelloVerifyRequests on a flow other than the one to ``port``, if any."""
    for f in flows:
        gw = str(f.get("gateway") or "")
        other = gw.rsplit(":", 1)[-1]
        if other.isdigit() and int(other) != port and (f.get("hello_verify_requests") or 0) > 0:
            return int(other)
    return None


def _dedupe_ids(steps: list[dict]) -> list[dict]:
    seen: set[str] = set()
    for st in steps:
        base, n = st["id"], 1
        while st["id"] in seen:
            n += 1
            st["id"] = f"{base}-{n}"
        seen.add(st["id"])
    return steps


def _gateway_close(s: dict, end: dict) -> float | None:
    """When the gateway closed the tunnel's TCP connection first (FIN/RST before the client's, no DISCONNECT from
    the client before it): that time, else None."""
    if isinstance(end, dict) and end.get("direction") == "c2s":
        return None
    conns = [c for c in s.get("connections") or () if isinstance(c, dict) and not c.get("dtls")
             and not c.get("failed_connect")]  # (a TCP connection that never carried data: no tunnel's)
    if not conns:
        return None
    last = conns[-1]
    closed = [x for x in last.get("closed") or () if isinstance(x, dict) and x.get("ts") is not None]
    if not closed:
        return None
    first = min(closed, key=lambda x: x["ts"])
    return first["ts"] if first.get("direction") == "s2c" else None
