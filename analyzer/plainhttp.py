"""The first HTTP exchanges of a TCP connection in the clear (not TLS): what a captive portal, a proxy's error page or
a connectivity check says, readable without keys.

A connection to port 80 or 8080 whose client speaks first with an HTTP request line (`starts_http`) gets a
`PlainHTTP`, fed the connection's bytes in both directions by its tracker (analyzer/tcptracker.py) and parsed by the
project's HTTP reader (dissectors/http.py). It keeps the first `MAX_EXCHANGES` exchanges, each a small dict — the
request's method, target and Host, the answer's status, Location and page title, their frames and times — and stops
reading after `MAX_BYTES` per direction or once they are complete: a big download over plain HTTP costs nothing past
its head. Nothing else of the connection is kept.
"""
from __future__ import annotations

import re

from dissectors.http import HTTPStream, Request, Response

MAX_EXCHANGES = 4
MAX_BYTES = 64 * 1024  # per direction, fed to the parser
MAX_BODY = 4096  # of an answer's body, kept to read its title
_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ")
_TITLE = re.compile(rb"<title[^>]*>([^<]{1,200})</title>", re.IGNORECASE)


#: the server ports whose plain HTTP is read: where captive portals answer and connectivity checks go (a flow to
#: another port — an application's own protocol over HTTP — is left alone: nothing of it is kept)
PORTS = frozenset({80, 8080})


def starts_http(data, port: int) -> bool:
    """The client's first bytes to server port ``port`` are an HTTP/1.x request line's start, on a port read."""
    return port in PORTS and bytes(data[:8]).startswith(_METHODS)


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "…"


class PlainHTTP:
    """The first HTTP exchanges of one plain TCP connection (see the module's docstring)."""

    def __init__(self) -> None:
        self.exchanges: list[dict] = []
        self._stream: HTTPStream | None = HTTPStream(max_header_bytes=16 * 1024, max_headers=200, max_body=MAX_BODY,
                                                     max_download_body=MAX_BODY)
        self._fed = {"c2s": 0, "s2c": 0}
        self._waiting: list[dict] = []  # requests not answered yet, in order

    def feed(self, direction: str, data, ts: float, frame: int) -> None:
        if self._stream is None:
            return
        room = MAX_BYTES - self._fed[direction]
        if room <= 0:
            return
        chunk = bytes(data[:room])
        self._fed[direction] += len(chunk)
        self._events(self._stream.feed(direction, chunk, ts, frame))

    def close(self, direction: str, ts: float, frame: int) -> None:
        if self._stream is not None:
            self._events(self._stream.close(direction, ts, frame))

    def finish(self) -> None:
        """The connection ended (or the capture did): the parser is let go, the exchanges stay."""
        if self._stream is not None:
            self._events(self._stream.close())
            self._stream = None
        self._waiting = []

    def _events(self, events) -> None:
        for ev in events:
            if isinstance(ev, Request):
                if len(self.exchanges) >= MAX_EXCHANGES:
                    self._stream = None  # enough read: the rest of the connection is not looked at
                    return
                host = ev.headers.get("host")
                e = {"frame": ev.frame, "time": ev.ts, "method": ev.method, "target": _short(ev.target),
                     "host": _short(host, 255) if host else None}
                self.exchanges.append(e)
                self._waiting.append(e)
            elif isinstance(ev, Response) and ev.status >= 200:
                if not self._waiting:
                    continue
                e = self._waiting.pop(0)
                e.update(status=ev.status, reason=_short(ev.reason, 100), answer_frame=ev.frame, answer_time=ev.ts)
                location = ev.headers.get("location")
                if location:
                    e["location"] = _short(location)
                ctype = ev.headers.get("content-type") or ""
                if "html" in ctype.lower() and ev.body:
                    m = _TITLE.search(ev.body)
                    if m:
                        e["title"] = _short(m.group(1).decode("utf-8", "replace").strip(), 120)
                if ev.body_length:
                    e["body_length"] = ev.body_length
