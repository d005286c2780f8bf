"""A scripted AnyConnect-protocol gateway: a small TLS server that answers a real client from a script.

The gateway speaks just enough of the protocol for `openconnect` (or curl, or a Cisco client) to go through the
HTTP phases — aggregate-auth POSTs, profile GETs, `CONNECT /CSCOSSLC/tunnel` — and then keeps a CSTP channel
alive (DPD-REQ answered with DPD-RESP, KEEPALIVE/DATA accepted, DISCONNECT honoured, optional ICMP echo replies
inside DATA packets, scripted frames or a close at given times, per tunnel). On UDP it can swallow datagrams (a DTLS
black hole) or answer DTLS ClientHellos from another port than the one they were sent to. Every answer comes from a
`replay.script.Script`
(plain data: "expect request matching X -> send response Y"), so behaviours that ocserv cannot produce and only
Cisco gateways show can be recorded as real captures; the same machinery will replay a recorded exchange.

Serving a script::

    python -m replay.gateway --serve script.json --cert server-cert.pem --key server-key.pem \\
        [--listen 198.18.0.1] [--port 443] [--keylog keys.log] [--events events.jsonl]

The lab runs it against a real openconnect in network namespaces: `python -m lab.scripted --case NAME|all`
(lab/scripted/, part of the source tree, not of the installed package).

`--serve` writes one human-readable line per event on stdout and, with `--events`, one JSON object per line
(`{"t": epoch, "type": ..., ...}`): the ground truth of what the gateway received and sent. TLS secrets go to
`--keylog` in NSS key log format (`SSLContext.keylog_filename`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import queue
import re
import secrets
import shutil
import signal
import socket
import ssl
import string
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from dissectors.packet import internet_checksum

from .script import (
    CSTP_NAMES,
    CSTP_TYPES,
    TLS_ALERTS,
    Response,
    Script,
    ScriptError,
    Step,
    UdpResponder,
    render,
)

MAX_HEADER = 64 * 1024
MAX_BODY = 1024 * 1024
CSTP_MAGIC = b"STF\x01"


# --------------------------------------------------------------------------------------------------------------
# small wire helpers (pure functions; unit-tested)
# --------------------------------------------------------------------------------------------------------------

def cstp_frame(ptype: int, payload: bytes = b"") -> bytes:
    """One CSTP frame: "STF", 1, 16-bit length, type, 0, payload."""
    return CSTP_MAGIC + struct.pack("!HBB", len(payload), ptype, 0) + payload


def split_cstp(buf: bytearray) -> list[tuple[int, bytes]] | None:
    """Take complete CSTP frames off the front of `buf`; None if the data is not CSTP."""
    out = []
    while len(buf) >= 8:
        if bytes(buf[:4]) != CSTP_MAGIC:
            return None
        length, ptype = struct.unpack("!HB", bytes(buf[4:7]))
        if len(buf) < 8 + length:
            break
        out.append((ptype, bytes(buf[8:8 + length])))
        del buf[:8 + length]
    return out


def icmp_echo_reply(packet: bytes) -> bytes | None:
    """The echo reply to an IPv4 ICMP or IPv6 ICMPv6 echo request (None for anything else)."""
    if len(packet) >= 28 and packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        if packet[9] != 1 or len(packet) < total or total < ihl + 8 or packet[ihl] != 8:
            return None
        if struct.unpack("!H", packet[6:8])[0] & 0x3FFF:  # fragment
            return None
        icmp = bytearray(packet[ihl:total])
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("!H", internet_checksum(bytes(icmp)))
        hdr = bytearray(packet[:ihl])
        hdr[8] = 64
        hdr[12:16], hdr[16:20] = packet[16:20], packet[12:16]
        hdr[10:12] = b"\0\0"
        hdr[10:12] = struct.pack("!H", internet_checksum(bytes(hdr)))
        return bytes(hdr) + bytes(icmp)
    if len(packet) >= 48 and packet[0] >> 4 == 6:
        plen = struct.unpack("!H", packet[4:6])[0]
        if packet[6] != 58 or len(packet) < 40 + plen or plen < 8 or packet[40] != 128:
            return None
        src, dst = packet[8:24], packet[24:40]
        icmp = bytearray(packet[40:40 + plen])
        icmp[0] = 129
        icmp[2:4] = b"\0\0"
        pseudo = dst + src + struct.pack("!I3xB", plen, 58)
        icmp[2:4] = struct.pack("!H", internet_checksum(pseudo + bytes(icmp)))
        return packet[:6] + b"\x3a\x40" + dst + src + bytes(icmp)
    return None


def parse_dtls_client_hello(datagram: bytes) -> dict | None:
    """Record version, handshake type and (for a ClientHello) the session id of a DTLS datagram's first record."""
    if len(datagram) < 13 + 12 or datagram[0] != 22:
        return None
    version = datagram[1:3].hex()
    if datagram[13] != 1:
        return {"record_version": version, "handshake_type": datagram[13]}
    body = datagram[25:]
    if len(body) < 35:
        return {"record_version": version, "handshake_type": 1}
    sid_len = body[34]
    sid = body[35:35 + sid_len]
    return {"record_version": version, "handshake_type": 1, "client_version": body[:2].hex(),
            "session_id": sid.hex().upper()}


def dtls_hello_verify_request(client_hello: bytes, cookie: bytes) -> bytes | None:
    """A DTLS HelloVerifyRequest answering `client_hello` (RFC 6347 §4.2.1), or None if it is no ClientHello.

    Record: content type 22, the ClientHello's record version, epoch 0, the ClientHello's record sequence number;
    handshake: type 3, message_seq 0, one fragment; body: server_version = the ClientHello's client_version,
    then the cookie.
    """
    info = parse_dtls_client_hello(client_hello)
    if not info or info.get("handshake_type") != 1 or "client_version" not in info:
        return None
    body = bytes.fromhex(info["client_version"]) + bytes([len(cookie)]) + cookie
    hs = b"\x03" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big") + body
    return b"\x16" + client_hello[1:3] + b"\x00\x00" + client_hello[5:11] + len(hs).to_bytes(2, "big") + hs


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def cookies(self) -> dict[str, str]:
        out = {}
        for k, v in self.headers:
            if k.lower() == "cookie":
                for part in v.split(";"):
                    n, _, val = part.strip().partition("=")
                    if n:
                        out[n] = val
        return out


def parse_request_head(head: bytes) -> Request:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"bad request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((k.strip(), v.strip()))
    return Request(parts[0], parts[1], parts[2], headers, b"")


def build_response(resp: Response, values: dict[str, str], *, tunnel: bool, close: bool) -> tuple[bytes, dict]:
    """Bytes of an HTTP/1.1 answer and a description of it (rendered status, headers, body)."""
    reason = render(resp.reason, values)
    headers = [(render(k, values), render(v, values)) for k, v in resp.headers]
    body = bytes.fromhex(resp.body_hex) if resp.body_hex else render(resp.body, values).encode("utf-8")
    names = {k.lower() for k, _ in headers}
    if not tunnel and "content-length" not in names:
        headers.append(("Content-Length", str(len(body))))
    if close and "connection" not in names:
        headers.append(("Connection", "close"))
    head = f"HTTP/1.1 {resp.status} {reason}".rstrip() + "\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    desc = {"status": resp.status, "reason": reason, "status_line": f"HTTP/1.1 {resp.status} {reason}".rstrip(),
            "headers": [[k, v] for k, v in headers], "body": body.decode("utf-8", "replace")}
    if resp.body_hex:  # a recorded file: its size and SHA-1 in the events, not its bytes
        desc["body"] = ""
        desc["body_size"], desc["body_sha1"] = len(body), hashlib.sha1(body).hexdigest().upper()
    return head.encode("iso-8859-1") + (b"" if tunnel else body), desc


#: the script actions a `"channel": "dtls"` action sends over DTLS when it is up (else over CSTP)
DTLS_SENDABLE = ("data", "dpd-req", "dpd-resp", "keepalive")


# --------------------------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Cursor:
    pos: int = 0
    used: dict[int, int] = field(default_factory=dict)


class ScriptedGateway:
    """Serves one `Script` on TCP (TLS) and its UDP sinks until `stop()`; thread per connection."""

    def __init__(self, script: Script, cert: Path, key: Path, *, host: str = "0.0.0.0", port: int = 443,
                 keylog: Path | None = None, events: Path | None = None, out=None):
        self.script = script
        self.host, self.port = host, port
        self._out = out if out is not None else sys.stdout
        self._events = open(events, "a", encoding="utf-8") if events else None  # noqa: SIM115 - closed in stop()
        self._lock = threading.Lock()
        self._cursor = _Cursor()
        self._sessions = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._udp: list[socket.socket] = []
        self._tunnels = 0
        self._sni: dict[int, str | None] = {}
        self._tmp: Path | None = None  # a private directory (DTLS PSK file, key log when none was asked for)
        self._dtls = None  # replay.dtls_psk_server.Server when the script has a `dtls` server
        self._tls13_cipher: str | None = None  # the cipher suite of the last TLS 1.3 session (the DTLS PSK's hash)
        self._legacy: tuple | None = None  # legacy DTLS: what the last tunnel's CONNECT set up (_dtls_legacy)
        if script.dtls and keylog is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="acflow-gw-"))
            keylog = self._tmp / "gateway-keys.log"
        self.keylog = Path(keylog) if keylog else None
        der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text())
        self.values = {
            "cookie": f"{secrets.randbelow(10**9)}@{secrets.randbelow(10**6)}@{int(time.time())}@"
                      f"{secrets.token_hex(20).upper()}",
            "server_cert_sha1": hashlib.sha1(der).hexdigest().upper(),
            "dtls_session_id": secrets.token_hex(32).upper(),
            "session_id": str(secrets.randbelow(10**6)),
            "sso_token": "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)),
            "sso_blob": "",  # set from the client's X-AnyConnect-STRAP-DH-Pubkey (`_note_sso_key`)
        }
        self._sso_key: str | None = None
        self.values.update(script.vars)
        self._ctx = self._context(cert, key, keylog, alert=None)
        self._alert_ctx = (self._context(cert, key, keylog, alert=TLS_ALERTS[script.tls.alert])
                           if script.tls.alert_sessions else None)

    # -- plumbing -----------------------------------------------------------------------------------------
    def _context(self, cert, key, keylog, alert: int | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        # A peer that drops TCP without close_notify (openconnect does, between its HTTPS connections) is an end
        # of stream, not an error: without this OpenSSL 3 answers it with a fatal decode_error alert.
        ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        if self.script.tls.min_version:
            ctx.minimum_version = ssl.TLSVersion[self.script.tls.min_version]
        if self.script.tls.max_version:
            ctx.maximum_version = ssl.TLSVersion[self.script.tls.max_version]
        if keylog:
            ctx.keylog_filename = str(keylog)

        def on_client_hello(sslobj, name, c):
            # Called while the ClientHello is processed: returning an alert description aborts the handshake
            # with that fatal alert (sent in clear, before any ServerHello).
            self._sni[id(sslobj)] = name
            return alert

        ctx.sni_callback = on_client_hello
        return ctx

    def emit(self, etype: str, text: str = "", **data) -> None:
        ev = {"t": time.time(), "type": etype, **data}
        with self._lock:
            if self._events:
                self._events.write(json.dumps(ev, sort_keys=True) + "\n")
                self._events.flush()
            print(f"[gw] {etype}: {text}".rstrip(": "), file=self._out, flush=True)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _dtls_psk(self) -> tuple[bytes, dict]:
        """openconnect's PSK-NEGOTIATE key: the exporter of the last TLS 1.3 session (this gateway's key log)."""
        from dissectors.dtls.psk import psk_from_tls13_exporter_secret  # noqa: PLC0415

        lines = [ln.split() for ln in self.keylog.read_text().splitlines() if ln.startswith("EXPORTER_SECRET ")]
        if not lines or len(lines[-1]) != 3:
            raise RuntimeError("no EXPORTER_SECRET in the gateway's key log: the CSTP session must be TLS 1.3")
        cipher = self._tls13_cipher
        hash_name = "sha384" if cipher and cipher.endswith("SHA384") else "sha256"
        psk = psk_from_tls13_exporter_secret(bytes.fromhex(lines[-1][2]), hash_name)
        return psk, {"tls_client_random": lines[-1][1], "tls_cipher": cipher, "hash": hash_name}

    def _dtls_legacy(self):
        """(master secret, session id, version, suite) for legacy DTLS: the last CONNECT's, or None."""
        return self._legacy

    def _start_dtls(self) -> None:
        from .dtls_psk_server import Server  # noqa: PLC0415 - GnuTLS (ctypes) only when a script asks for DTLS

        d = self.script.dtls
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="acflow-gw-"))
        args = SimpleNamespace(listen=self.host, port=d.port, psk_file=self._tmp / "dtls-psk.txt", events=None,
                               nocookie=not d.hello_verify, mtu=d.mtu, gateway_keylog=self.keylog,
                               gateway_events=None, icmp_echo=self.script.cstp.icmp_echo)

        def emit(etype, text="", **data):
            self.emit("dtls-" + etype, text, **data)

        legacy = self._dtls_legacy if d.mode == "legacy" else None
        self._dtls = Server(args, psk_source=self._dtls_psk, emit=emit, outbox=queue.Queue(), legacy_source=legacy)
        self._spawn(self._dtls.serve)

    def start(self) -> None:
        if self.script.dtls:
            self._start_dtls()
        for port in self.script.udp_sinks:
            u = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((self.host, port))
            u.settimeout(0.3)
            self._udp.append(u)
            self._spawn(self._udp_sink, u, port)
        for r in self.script.udp_responders:
            fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            rx, tx = socket.socket(fam, socket.SOCK_DGRAM), socket.socket(fam, socket.SOCK_DGRAM)
            rx.bind((self.host, r.port))
            tx.bind((self.host, r.reply_from))
            rx.settimeout(0.3)
            self._udp += [rx, tx]
            self._spawn(self._udp_responder, rx, tx, r)
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        s.settimeout(0.3)
        self._listener = s
        self.port = s.getsockname()[1]
        self.emit("listening", f"TCP {self.host}:{self.port} udp sinks {self.script.udp_sinks} udp responders "
                  f"{[(r.port, r.reply_from) for r in self.script.udp_responders]}",
                  host=self.host, port=self.port, udp_sinks=self.script.udp_sinks,
                  udp_responders=[[r.port, r.reply_from] for r in self.script.udp_responders], script=self.script.name,
                  server_cert_sha1=self.values["server_cert_sha1"])
        self._spawn(self._accept_loop)

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.is_set():
                self._stop.wait(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._stop.is_set() and self._listener is None:
            return
        self._stop.set()
        if self._dtls is not None:
            self._dtls.stop = True
        for t in self._threads:
            t.join(2)
        for u in self._udp:
            u.close()
        if self._listener:
            self._listener.close()
            self._listener = None
        self.emit("stopped", "", unused_steps=[s.id for i, s in enumerate(self.script.steps)
                                               if not self._cursor.used.get(i)])
        if self._events:
            self._events.close()
            self._events = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._sessions += 1
                n = self._sessions
            self._spawn(self._connection, n, sock, addr)

    # -- UDP ------------------------------------------------------------------------------------------------
    def _udp_sink(self, u: socket.socket, port: int) -> None:
        while not self._stop.is_set():
            try:
                data, src = u.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            info = parse_dtls_client_hello(data)
            what = f" (DTLS ClientHello, session id {info['session_id']})" if info and "session_id" in info else ""
            self.emit("udp-rx", f"port {port} from {src[0]}:{src[1]}, {len(data)} bytes, dropped{what}",
                      port=port, src=f"{src[0]}:{src[1]}", length=len(data), dtls=info)

    def _udp_responder(self, rx: socket.socket, tx: socket.socket, r: UdpResponder) -> None:
        sent = 0
        cookie = bytes.fromhex(r.cookie_hex)
        while not self._stop.is_set():
            try:
                data, src = rx.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            info = parse_dtls_client_hello(data)
            reply = dtls_hello_verify_request(data, cookie) if r.reply == "hello-verify-request" else None
            if reply is not None and r.max_replies and sent >= r.max_replies:
                reply = None
            what = f" (DTLS ClientHello, session id {info['session_id']})" if info and "session_id" in info else ""
            self.emit("udp-rx", f"port {r.port} from {src[0]}:{src[1]}, {len(data)} bytes{what}"
                      + (f", answering from port {r.reply_from}" if reply else ", not answered"),
                      port=r.port, src=f"{src[0]}:{src[1]}", length=len(data), dtls=info)
            if reply is None:
                continue
            try:
                tx.sendto(reply, src)
            except OSError as e:
                self.emit("udp-tx-failed", f"port {r.reply_from} to {src[0]}:{src[1]}: {e}", port=r.reply_from,
                          dst=f"{src[0]}:{src[1]}", error=str(e))
                continue
            sent += 1
            self.emit("udp-tx", f"port {r.reply_from} to {src[0]}:{src[1]}: {r.reply} ({len(reply)} bytes) answering "
                      f"a datagram to port {r.port}", port=r.reply_from, dst=f"{src[0]}:{src[1]}", answers_port=r.port,
                      reply=r.reply, length=len(reply), hex=reply.hex(),
                      record_version=reply[1:3].hex(), handshake_type=reply[13], cookie_hex=r.cookie_hex)

    # -- one TCP connection ---------------------------------------------------------------------------------
    def _connection(self, n: int, raw: socket.socket, addr) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        alert = n in self.script.tls.alert_sessions
        ctx = self._alert_ctx if alert else self._ctx
        raw.settimeout(15)
        sock = None
        try:
            sock = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            sock.do_handshake()
        except (ssl.SSLError, OSError) as e:
            if sock is not None:
                self._sni.pop(id(sock), None)
            self.emit("tls-failed", f"session {n} from {peer}: {e}", session=n, peer=peer, error=str(e),
                      alert_sent=self.script.tls.alert if alert else None,
                      alert_code=TLS_ALERTS[self.script.tls.alert] if alert else None)
            raw.close()
            return
        cipher = sock.cipher()
        if sock.version() == "TLSv1.3" and cipher:
            self._tls13_cipher = cipher[0]
        self.emit("tls-established", f"session {n} from {peer}: {sock.version()} {cipher[0] if cipher else ''}",
                  session=n, peer=peer, version=sock.version(), cipher=cipher[0] if cipher else None,
                  sni=self._sni.pop(id(sock), None))
        how = "closed"
        try:
            how = self._http_loop(n, sock)
        except (ssl.SSLError, OSError, ValueError) as e:
            how = f"error: {e}"
        finally:
            # Like ocserv, end with a plain TCP FIN and no TLS close_notify (openconnect sends none either),
            # then drain until the client's FIN so that unread bytes do not turn the close into a RST.
            try:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(1.0)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and sock.recv(65536):
                    pass
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
            self.emit("conn-closed", f"session {n}: {how}", session=n, how=how)

    def _read_request(self, sock: ssl.SSLSocket, buf: bytearray) -> Request | None:
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEADER:
                raise ValueError("request head too long")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if self._stop.is_set():
                    return None
                continue
            if not chunk:
                return None
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        buf[:] = rest
        req = parse_request_head(head)
        length = int(req.header("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too long")
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ValueError("connection closed inside a request body")
            buf += chunk
        req.body = bytes(buf[:length])
        del buf[:length]
        return req

    def _matches(self, step: Step, req: Request) -> bool:
        m = step.expect
        if m.method and m.method.upper() != req.method.upper():
            return False
        if m.path is not None and render(m.path, self.values) != req.target:
            return False
        if m.path_regex and not re.fullmatch(m.path_regex, req.target):
            return False
        body = req.body.decode("utf-8", "replace")
        if any(render(s, self.values) not in body for s in m.body_contains):
            return False
        for name, sub in m.headers.items():
            v = req.header(name)
            if v is None or render(sub, self.values) not in v:
                return False
        return m.cookie is None or req.cookies().get("webvpn") == render(m.cookie, self.values)

    def _choose(self, req: Request) -> tuple[Step | None, list[str] | None]:
        """The step answering ``req`` and the steps skipped to reach it; skipped is None when no step matched the
        request and the script's `unmatched_nearest` gave the step."""
        with self._lock:
            c = self._cursor
            steps = self.script.steps
            for i in range(c.pos, len(steps)):
                if c.used.get(i, 0) < steps[i].times and self._matches(steps[i], req):
                    skipped = [steps[j].id for j in range(c.pos, i) if not c.used.get(j)]
                    c.used[i] = c.used.get(i, 0) + 1
                    c.pos = i if c.used[i] < steps[i].times else i + 1
                    return steps[i], skipped
            if self.script.unmatched_nearest:
                step = self._nearest(req, c.pos)
                if step is not None:
                    return step, None
        return None, []

    def _nearest(self, req: Request, pos: int) -> Step | None:
        """The step with the request's method and path that comes next (else the closest before the cursor)."""
        same = [i for i, s in enumerate(self.script.steps)
                if (s.expect.method or "").upper() == req.method.upper()
                and (s.expect.path is None or render(s.expect.path, self.values) == req.target)
                and not s.starts_tunnel()]
        if not same:
            return None
        after = [i for i in same if i >= pos]
        return self.script.steps[after[0] if after else same[-1]]

    def _http_loop(self, n: int, sock: ssl.SSLSocket) -> str:
        sock.settimeout(0.5)
        buf = bytearray()
        while not self._stop.is_set():
            req = self._read_request(sock, buf)
            if req is None:
                return "client closed" if not self._stop.is_set() else "gateway stopping"
            self._note_sso_key(req)
            step, skipped = self._choose(req)
            nearest = skipped is None
            skipped = skipped or []
            body_text = req.body.decode("utf-8", "replace")
            self.emit("request", f"session {n}: {req.method} {req.target} -> step "
                      f"{step.id if step else '(unmatched)'}" + (f" (skipped {skipped})" if skipped else "")
                      + (" (unexpected request: answered as the nearest recorded one)" if nearest else ""),
                      session=n, method=req.method, target=req.target, headers=[list(h) for h in req.headers],
                      body=body_text, step=step.id if step else None, skipped=skipped, nearest=nearest,
                      webvpn_cookie_ok=(req.cookies().get("webvpn") == self.values["cookie"])
                      if "webvpn" in req.cookies() else None)
            resp = step.respond if step else self.script.unmatched
            tunnel = bool(step and step.starts_tunnel())
            close = bool(step and step.close) or (req.header("Connection") or "").lower() == "close"
            data, desc = build_response(resp, self.values, tunnel=tunnel, close=close)
            if tunnel:
                self._set_legacy_dtls(n, req)  # before the answer: the client's DTLS ClientHello follows it at once
            if step is not None and step.delay:  # the gateway's authentication server (or the user's phone) is slow
                self.emit("delay", f"session {n}: answering {step.id} in {step.delay:g} s", session=n, step=step.id,
                          seconds=step.delay)
                if self._stop.wait(step.delay):
                    return "gateway stopping"
            sock.sendall(data)
            self.emit("response", f"session {n}: {desc['status_line']}", session=n,
                      step=step.id if step else None, tunnel=tunnel, **desc)
            if tunnel:
                return self._cstp_loop(n, sock, buf)
            if close:
                return "closed by script"
        return "gateway stopping"

    def _note_sso_key(self, req: Request) -> None:
        """``${sso_blob}``: the SSO token sealed to the DH key the client sends with each request."""
        key = req.header("X-AnyConnect-STRAP-DH-Pubkey")
        if key and key != self._sso_key:
            from .sso import seal_token  # noqa: PLC0415 - only scripts with SAML need it

            try:
                # percent-encoded: it goes in a URL path (base64's '+' would read as a space)
                self.values["sso_blob"] = urllib.parse.quote(seal_token(key, self.values["sso_token"]), safe="")
                self._sso_key = key
            except ValueError as e:
                self.emit("note", f"X-AnyConnect-STRAP-DH-Pubkey not usable: {e}")

    def _set_legacy_dtls(self, n: int, req: Request) -> None:
        """Legacy DTLS: the session the client will resume (its X-DTLS-Master-Secret, our X-DTLS-Session-ID)."""
        d = self.script.dtls
        secret = req.header("X-DTLS-Master-Secret")
        if d is None or d.mode != "legacy" or not secret:
            return
        try:
            self._legacy = (bytes.fromhex(secret), bytes.fromhex(self.values["dtls_session_id"]), d.version, d.suite)
        except ValueError:
            self.emit("dtls-legacy-unusable", f"session {n}: X-DTLS-Master-Secret is not hex", session=n)

    # -- CSTP -----------------------------------------------------------------------------------------------
    def _send_frame(self, n: int, sock: ssl.SSLSocket, ptype: int, payload: bytes, why: str) -> None:
        sock.sendall(cstp_frame(ptype, payload))  # one frame per TLS record, as openconnect expects
        self.emit("cstp-tx", f"session {n}: {CSTP_NAMES.get(ptype, hex(ptype))} ({len(payload)} bytes) {why}",
                  session=n, ptype=ptype, name=CSTP_NAMES.get(ptype), length=len(payload), why=why)

    def _cstp_loop(self, n: int, sock: ssl.SSLSocket, buf: bytearray) -> str:
        cb = self.script.cstp
        t0 = time.monotonic()
        with self._lock:
            self._tunnels += 1
            tunnel = self._tunnels
        pending = [a for a in cb.actions if not a.tunnels or tunnel in a.tunnels]
        sock.settimeout(0.1)
        self.emit("tunnel-start", f"session {n}, tunnel {tunnel}", session=n, tunnel=tunnel)
        ended: tuple[float, str] | None = None  # after a scripted DISCONNECT/TERMINATE: (deadline, how)
        while not self._stop.is_set():
            now = time.monotonic() - t0
            if ended and time.monotonic() >= ended[0]:
                return ended[1]
            while pending and pending[0].at <= now and not ended:
                a = pending.pop(0)
                if a.send == "close":
                    self.emit("cstp-action", f"session {n}: closing the TLS connection (script action at {a.at:g} s)",
                              session=n, action="close", tunnel=tunnel)
                    return "closed by script"
                payload = bytes.fromhex(a.payload_hex)
                if a.send == "disconnect" and not payload:
                    payload = b"\xb0" + render(a.reason, self.values).encode()
                if a.send in DTLS_SENDABLE and a.channel == "dtls" and self._dtls is not None and (
                        self._dtls.established or self._dtls.handshaking):
                    # recorded over DTLS: over DTLS once its handshake (under way) is done
                    self._dtls.outbox.put((bytes([CSTP_TYPES[a.send]]) + payload, f"script action at {a.at:g} s"))
                    continue
                self._send_frame(n, sock, CSTP_TYPES[a.send], payload, f"script action at {a.at:g} s")
                if a.send in ("disconnect", "terminate"):
                    # the session is over: no more actions, but what the client still sends (its BYE) is read and
                    # recorded for up to 2 s before the gateway closes
                    ended = (time.monotonic() + 2.0, f"{a.send} sent by script")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return "client closed" + (f" after {ended[1]}" if ended else "")
            buf += chunk
            frames = split_cstp(buf)
            if frames is None:
                self.emit("cstp-error", f"session {n}: not CSTP: {bytes(buf[:16]).hex()}", session=n,
                          head=bytes(buf[:16]).hex())
                return "bad CSTP data"
            for ptype, payload in frames:
                name = CSTP_NAMES.get(ptype, hex(ptype))
                extra = {}
                if ptype == CSTP_TYPES["disconnect"]:
                    extra["reason"] = payload[1:].decode("utf-8", "replace") if payload else ""
                    extra["reason_code"] = payload[0] if payload else None
                if ptype == CSTP_TYPES["data"] and payload:
                    extra["ip_version"] = payload[0] >> 4
                self.emit("cstp-rx", f"session {n}: {name} ({len(payload)} bytes)"
                          + (f" reason {extra['reason']!r}" if "reason" in extra else ""),
                          session=n, ptype=ptype, name=CSTP_NAMES.get(ptype), length=len(payload), **extra)
                if ptype == CSTP_TYPES["disconnect"]:
                    return "client sent DISCONNECT" + (f" after {ended[1]}" if ended else "")
                if ended:
                    continue  # nothing more is answered once the gateway ended the session
                if ptype == CSTP_TYPES["dpd-req"] and cb.answer_dpd:
                    self._send_frame(n, sock, CSTP_TYPES["dpd-resp"], payload, "answer to DPD-REQ")
                elif ptype == CSTP_TYPES["data"] and cb.icmp_echo:
                    reply = icmp_echo_reply(payload)
                    if reply is not None:
                        self._send_frame(n, sock, CSTP_TYPES["data"], reply, "ICMP echo reply")
        return "gateway stopping"


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------

def serve(script_path: Path, cert: Path, key: Path, host: str, port: int, keylog: Path | None,
          events: Path | None) -> int:
    script = Script.load(script_path)
    gw = ScriptedGateway(script, cert, key, host=host, port=port, keylog=keylog, events=events)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        gw.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gw.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.gateway", description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=Path, metavar="SCRIPT.json", required=True, help="serve this script")
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--listen", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=443)
    ap.add_argument("--keylog", type=Path)
    ap.add_argument("--events", type=Path)
    args = ap.parse_args(argv)
    try:
        return serve(args.serve, args.cert, args.key, args.listen, args.port, args.keylog, args.events)
    except ScriptError as e:
        print(f"[gw] bad script: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
