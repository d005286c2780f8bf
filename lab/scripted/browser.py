"""The lab's "external browser" for SAML single sign-on cases (openconnect --external-browser=THIS).

openconnect runs it with the gateway's `sso-v2-login` URL once it listens on http://localhost:29786/. It does what
a browser does with the scripted gateway's pages: GETs the URL over TLS (the lab CA trusted, the gateway's name
resolved to its lab address, other names by the namespace's resolver, IPv4 only; TLS secrets in
$ACFLOW_BROWSER_KEYLOG), follows the redirects — to an identity provider, to the client's
http://localhost:29786/api/sso/<blob> (which openconnect answers with a redirect to the `return` page) and back to
the gateway — and the forms a page holds as a browser and its user would (a sign-in form is filled with
$ACFLOW_BROWSER_USER / $ACFLOW_BROWSER_PASSWORD, a form of hidden fields — SAML's HTTP-POST binding, submitted by
the page's script in a real browser — is posted as it is), at most 12 pages, and logs every request and answer
to $ACFLOW_BROWSER_LOG (epoch seconds, a tab, the line). $ACFLOW_BROWSER_MODE "stall": it GETs the first URL
and then stops, as a user who closed the browser window or an identity provider that never answers would
(openconnect then waits on port 29786). $ACFLOW_BROWSER_CA may name several CA files (colon-separated).
"""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

from lab.netns import GW_OUTER

HOSTNAME = "vpn.acflow.test"


def _log(line: str) -> None:
    path = os.environ.get("ACFLOW_BROWSER_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f}\t{line}\n")


class _TLS(http.client.HTTPSConnection):
    """HTTPS to ``name`` (SNI, Host, certificate check) at the address ``addr``."""

    def __init__(self, name: str, addr: str, port: int, ctx: ssl.SSLContext) -> None:
        super().__init__(name, port, context=ctx, timeout=10)
        self._addr = addr

    def connect(self) -> None:
        addr = self._addr
        if addr != GW_OUTER:  # a name: the namespace's resolver, an A query only (as the lab's DNS answers)
            addr = socket.getaddrinfo(addr, self.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        raw = socket.create_connection((addr, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


#: what a desktop browser says it is (the portal visit: `portal`)
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class _Forms(HTMLParser):
    """The first form of a page: its action, method and fields (name -> value; the input types apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict | None = None
        self._in = False

    def handle_starttag(self, tag, attrs) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = {"action": a.get("action", ""), "method": a.get("method", "get").upper(), "fields": {},
                         "types": {}}
            self._in = True
        elif tag == "input" and self._in and a.get("name"):
            self.form["fields"][a["name"]] = a.get("value", "")
            self.form["types"][a["name"]] = a.get("type", "text").lower()

    def handle_endtag(self, tag) -> None:
        if tag == "form":
            self._in = False


def _form(page: str) -> dict | None:
    f = _Forms()
    f.feed(page)
    return f.form


def _get(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None,
         user_agent: str = "acflow-lab-browser/1") -> tuple[int, str | None, str]:
    u = urlsplit(url)
    host = u.hostname or ""
    path = u.path + (f"?{u.query}" if u.query else "")
    if u.scheme == "https":
        cas = [ca for ca in os.environ.get("ACFLOW_BROWSER_CA", "").split(":") if ca]
        ctx = ssl.create_default_context(cafile=cas[0] if cas else None)  # (only these CAs trusted)
        for ca in cas[1:]:
            ctx.load_verify_locations(cafile=ca)
        keylog = os.environ.get("ACFLOW_BROWSER_KEYLOG")
        if keylog:
            ctx.keylog_filename = keylog
        conn: http.client.HTTPConnection = _TLS(host, GW_OUTER if host == HOSTNAME else host, u.port or 443, ctx)
    else:  # the client's listener: openconnect binds the IPv6 loopback only
        conn = http.client.HTTPConnection("::1" if host in ("localhost", "127.0.0.1") else host, u.port or 80,
                                          timeout=10)
    conn.request(method, path or "/", body=body, headers={"User-Agent": user_agent, **(headers or {})})
    resp = conn.getresponse()
    page = resp.read()
    location = resp.getheader("Location")
    _COOKIES.extend(c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or [])
    conn.close()
    return resp.status, location, page.decode("utf-8", "replace")


_COOKIES: list[str] = []  # name=value of the cookies the gateway set (the portal visit sends them back)


def portal(url: str, user: str, password: str) -> int:
    """A user's visit to the gateway's web portal in a desktop browser before the client connects (to download the
    client, or for the clientless portal): GET the gateway's address, follow its redirect to the logon page, post
    the logon form (urlencoded), GET the portal page; each request on a TLS connection of its own, a browser's
    User-Agent."""
    status, location, _ = _get(url, user_agent=BROWSER_UA)
    _log(f"GET {url} -> {status}" + (f" Location: {location}" if location else ""))
    logon = urljoin(url, location or "/+CSCOE+/logon.html")
    status, _, _ = _get(logon, user_agent=BROWSER_UA)
    _log(f"GET {logon} -> {status}")
    form = urlencode({"username": user, "password": password, "Login": "Logon"}).encode()
    post = urljoin(url, "/+webvpn+/index.html")
    status, location, _ = _get(post, "POST", form, {"Content-Type": "application/x-www-form-urlencoded"},
                            user_agent=BROWSER_UA)
    _log(f"POST {post} -> {status}" + (f" Location: {location}" if location else ""))
    page = urljoin(url, location or "/+CSCOE+/portal.html")
    status, _, _ = _get(page, headers={"Cookie": "; ".join(_COOKIES)} if _COOKIES else None, user_agent=BROWSER_UA)
    _log(f"GET {page} -> {status}")
    return 0 if status == 200 else 1


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--portal":  # the portal visit: --portal URL USER PASSWORD
        return portal(argv[2], argv[3], argv[4])
    url = argv[1] if len(argv) > 1 else ""
    _log(f"opened {url}")
    method, body, headers = "GET", None, None
    for _ in range(12):
        try:
            status, location, page = _get(url, method, body, headers)
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            _log(f"{method} {url} failed: {e}")
            return 1
        _log(f"{method} {url} -> {status}" + (f" Location: {location}" if location else ""))
        if os.environ.get("ACFLOW_BROWSER_MODE") == "stall":
            _log("stalled (the user closed the window)")
            return 0
        if status in (301, 302, 303, 307, 308) and location:
            url, method, body, headers = urljoin(url, location), "GET", None, None
            continue
        form = _form(page) if status == 200 else None
        if form is None:
            return 0
        fields = dict(form["fields"])
        for name, kind in form["types"].items():  # the user signs in
            if kind == "password":
                fields[name] = os.environ.get("ACFLOW_BROWSER_PASSWORD", "")
            elif kind in ("text", "email") and not fields[name]:
                fields[name] = os.environ.get("ACFLOW_BROWSER_USER", "")
        url = urljoin(url, form["action"] or url)
        if form["method"] == "POST":
            method, body = "POST", urlencode(fields).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            url, method, body, headers = f"{url.split('?')[0]}?{urlencode(fields)}", "GET", None, None
    _log("too many pages")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
