"""Redaction of secrets in HTTP headers, aggregate-auth XML and parsed config-auth (pure functions).

What is secret here (the house rule: no secret reaches a report unless ``--show-secrets``):

* the webvpn cookie in every form: ``Cookie``/``Set-Cookie`` values of ``webvpn``,
  ``webvpncontext`` and any other cookie except a few harmless ones (``webvpnc``, ``webvpnlang``,
  ``webvpnlogin``), and ``<session-token>`` in XML;
* credentials: ``<auth>`` password-like fields of an auth-reply (``password``, ``*_password``,
  ``answer``, ``passcode``, ``pin``…, plus any names the caller learnt were ``type="password"``
  inputs), ``Authorization``/``Proxy-Authorization`` credentials, the value of a password input;
* DTLS keys: ``X-DTLS-Master-Secret`` (and any ``*-Master-Secret``); ``X-CSTP-Post-Auth-XML``
  is a config-auth document whose session token is redacted in turn;
* host-scan tokens and tickets.

Kept on purpose: ``<session-id>`` (not a credential), ``<opaque>`` with ``config-hash`` and
``aggauth-handle``, usernames, ``X-DTLS-Session-ID``, certificate and profile hashes.
Empty values stay empty (a cookie being deleted is evidence too).  Redacted text is ``«redacted»``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote_plus

from lxml import etree

from dissectors.aggauth import (
    DEFAULT_MAX_XML_BYTES,
    AggAuthError,
    Auth,
    ConfigAuth,
    looks_like_config_auth,
    safe_parse,
)
from dissectors.http import Headers, Request, Response

__all__ = [
    "REDACTED",
    "is_secret_field",
    "redact",
    "redact_body",
    "redact_config_auth",
    "redact_cookie_header",
    "redact_headers",
    "redact_message",
    "redact_set_cookie",
    "redact_url",
    "redact_xml",
]

REDACTED = "«redacted»"

#: Cookies whose values are not secrets; every other cookie value is redacted.
HARMLESS_COOKIES = frozenset({"webvpnc", "webvpnlang", "webvpnlogin"})

_SECRET_ELEMENTS = frozenset({
    "password", "answer", "passcode", "pin", "whichpin", "verify_pin", "otp", "tokencode",
    "session-token", "host-scan-token", "host-scan-ticket", "sso-token", "secret",
})


def is_secret_field(name: str, extra: Iterable[str] = ()) -> bool:
    """Is an XML element / form field of this name a secret?"""
    n = name.lower()
    return n in _SECRET_ELEMENTS or n.endswith(("password", "passcode")) or n in {e.lower() for e in extra}


#: query parameters of a URL whose values are session secrets (a captive portal's redirect carries its own:
#: `?token=…&sessionid=…`), besides the secret field names above
_SECRET_QUERY = re.compile(r"(token|session|sid|ticket|auth|key|secret|sig|signature|code|password|passwd|pwd)",
                           re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the values of its query parameters that look like secrets replaced (the rest as it was)."""
    base, sep, rest = url.partition("?")
    if not sep or not rest:
        return url
    query, hsep, frag = rest.partition("#")
    out = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        secret = eq and value and (is_secret_field(name) or _SECRET_QUERY.search(name))
        out.append(f"{name}={REDACTED}" if secret else part)
    return base + "?" + "&".join(out) + (hsep + frag)


# -- headers ----------------------------------------------------------------------------------------

def _redact_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if not sep or not value.strip() or name.strip().lower() in HARMLESS_COOKIES:
        return pair
    return f"{name}={REDACTED}"


def redact_cookie_header(value: str) -> str:
    """``Cookie: a=1; webvpn=…`` with secret cookie values replaced."""
    return ";".join(_redact_pair(p) for p in value.split(";"))


def redact_set_cookie(value: str) -> str:
    """``Set-Cookie: webvpn=…; Secure``: the value is redacted, the attributes kept."""
    first, sep, attrs = value.partition(";")
    return _redact_pair(first) + sep + attrs


def _redact_authorization(value: str) -> str:
    scheme, sep, cred = value.strip().partition(" ")
    if not sep or not cred.strip():
        return REDACTED if value.strip() else value
    return f"{scheme} {REDACTED}"


def redact_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """A copy of ``headers`` with the secret values redacted (order and names kept)."""
    out = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            value = redact_cookie_header(value)
        elif key == "set-cookie":
            value = redact_set_cookie(value)
        elif key in ("authorization", "proxy-authorization"):
            value = _redact_authorization(value)
        elif key.endswith(("master-secret", "-password")):
            value = REDACTED if value else value
        elif key == "x-cstp-post-auth-xml":
            value = redact_xml(value, keep_declaration=False) if value.strip() else value
        out.append((name, value))
    return Headers(out)


# -- XML ------------------------------------------------------------------------------------------

def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _regex_redact(text: str, extra: Iterable[str]) -> str:
    """Fallback for XML that cannot be parsed: blank the content of secret elements by pattern."""
    extra = tuple(extra)

    def repl(m: re.Match[str]) -> str:
        if is_secret_field(m.group(2), extra) and m.group(3).strip():
            return m.group(1) + REDACTED + m.group(4)
        return m.group(0)

    # leaf elements only: secrets are plain text, and an outer match would hide the inner ones
    text = re.sub(r"(<([A-Za-z_][\w.\-]*)\b[^>]*>)([^<]*)(</\2\s*>)", repl, text)
    return re.sub(r'(<input\b[^>]*type="password"[^>]*value=")([^"]*)(")',
                  lambda m: m.group(1) + (REDACTED if m.group(2) else "") + m.group(3), text, flags=re.IGNORECASE)


def redact_xml(xml: bytes | str, secret_fields: Iterable[str] = (), *, keep_declaration: bool = True,
               max_bytes: int = DEFAULT_MAX_XML_BYTES) -> str:
    """A rendering of a config-auth document with its secrets replaced by ``«redacted»``.

    ``secret_fields`` adds field names to treat as secret (e.g. the names of the
    ``type="password"`` inputs of the auth-request this document answers).  XML that cannot be
    parsed safely (malformed, DOCTYPE…) is redacted by pattern instead; it is never resolved.
    """
    extra = tuple(secret_fields)
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, (bytes, bytearray)) else str(xml)
    root = safe_parse(xml, max_bytes)
    if isinstance(root, AggAuthError):
        return _regex_redact(text, extra)
    # a snapshot: removing the children of a secret element while iterating the live tree would end the
    # iteration there and leave later secrets in place (found by the fuzzer)
    for el in list(root.iter()):
        name = _local(el.tag)
        if not name:
            continue
        if is_secret_field(name, extra) and (len(el) or (el.text or "").strip()):
            for child in list(el):
                el.remove(child)
            el.text = REDACTED
        if name == "input" and (el.get("type") or "").lower() == "password" and el.get("value"):
            el.set("value", REDACTED)
    body = etree.tostring(root, encoding="unicode")
    if keep_declaration and text.lstrip().startswith("<?xml"):
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    return body


def _redact_auth(auth: Auth | None, extra: Iterable[str]) -> Auth | None:
    if auth is None:
        return None
    extra = tuple(extra)
    values = tuple((k, REDACTED if is_secret_field(k, extra) and v else v) for k, v in auth.values)
    form = auth.form
    if form is not None:
        fields = tuple(
            dataclasses.replace(f, value=REDACTED) if (f.type or "").lower() == "password" and f.value else f
            for f in form.fields)
        form = dataclasses.replace(form, fields=fields)
    return dataclasses.replace(auth, values=values, form=form)


def redact_config_auth(ca: ConfigAuth, secret_fields: Iterable[str] = ()) -> ConfigAuth:
    """A copy of a parsed config-auth with session token, typed secrets and host-scan tokens redacted."""
    extra = tuple(secret_fields)
    return dataclasses.replace(
        ca,
        session_token=REDACTED if ca.session_token else ca.session_token,
        host_scan_token=REDACTED if ca.host_scan_token else ca.host_scan_token,
        host_scan=tuple((k, REDACTED if is_secret_field(k, extra) and v else v) for k, v in ca.host_scan),
        auth=_redact_auth(ca.auth, extra),
    )


# -- bodies and messages ----------------------------------------------------------------------------

def _redact_form_urlencoded(body: bytes, extra: Iterable[str]) -> bytes:
    text = body.decode("latin-1")
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        return body
    out = []
    for k, v in pairs:
        out.append(f"{quote_plus(k)}={REDACTED if is_secret_field(k, extra) and v else quote_plus(v)}")
    return "&".join(out).encode("utf-8")


def redact_body(body: bytes, content_type: str | None = None, secret_fields: Iterable[str] = ()) -> bytes:
    """Redact an HTTP body: config-auth XML and url-encoded forms are understood, others kept."""
    if not body:
        return body
    ctype = (content_type or "").lower()
    if looks_like_config_auth(body) or "xml" in ctype:
        return redact_xml(body, secret_fields).encode("utf-8")
    if "x-www-form-urlencoded" in ctype:
        return _redact_form_urlencoded(body, tuple(secret_fields))
    return body


def redact_message(msg: Request | Response, secret_fields: Iterable[str] = ()) -> Request | Response:
    """A copy of a Request/Response with headers, trailers and body redacted."""
    return dataclasses.replace(
        msg,
        headers=redact_headers(msg.headers),
        trailers=redact_headers(msg.trailers),
        body=redact_body(msg.body, msg.headers.get("content-type"), secret_fields),
    )


def redact(obj, secret_fields: Iterable[str] = ()):
    """Redact whatever is given: XML text/bytes, a ConfigAuth, a Request/Response, or headers."""
    if isinstance(obj, ConfigAuth):
        return redact_config_auth(obj, secret_fields)
    if isinstance(obj, (Request, Response)):
        return redact_message(obj, secret_fields)
    if isinstance(obj, (str, bytes, bytearray)):
        return redact_xml(obj, secret_fields)
    return redact_headers(obj)
