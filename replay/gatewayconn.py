"""The replay client's connection to the gateway: TLS with Python's ssl (pinned by CA file or certificate hash, as
openconnect's --cafile/--servercert), HTTP/1.1 requests whose answers are parsed by acflow's own sans-I/O
`dissectors.http.HTTPStream` (the parser `analyze` uses), and after `CONNECT` the CSTP frames of the same stream.
"""
from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from dissectors.cstp import CSTPError, CSTPFrame, build_cstp_frame
from dissectors.http import HTTPError, HTTPStream, Response, TunnelEstablished


class GatewayError(Exception):
    """The gateway could not be reached or spoke something else (the message says what)."""


@dataclass(frozen=True)
class GatewayURL:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> GatewayURL:
        if "://" not in url:
            url = "https://" + url
        u = urlsplit(url)
        if u.scheme != "https" or not u.hostname:
            raise ValueError(f"not an https:// gateway URL: {url!r}")
        return cls(u.hostname, u.port or 443, u.path or "/")

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}" + ("" if self.port == 443 else f":{self.port}")


def parse_servercert(text: str) -> tuple[str, str]:
    """openconnect-style --servercert: ``sha256:HEX``, ``sha1:HEX`` or bare HEX (40 digits SHA-1, 64 SHA-256),
    colons allowed. Returns (algorithm, lower-case hex)."""
    t = text.strip()
    algo = None
    for prefix in ("sha256:", "sha1:"):
        if t.lower().startswith(prefix):
            algo, t = prefix[:-1], t[len(prefix):]
    digits = t.replace(":", "").lower()
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"--servercert {text!r}: expected sha256:HEX, sha1:HEX or a hex fingerprint")
    if algo is None:
        algo = {40: "sha1", 64: "sha256"}.get(len(digits))
    want = {"sha1": 40, "sha256": 64}.get(algo or "")
    if want is None or len(digits) != want:
        raise ValueError(f"--servercert {text!r}: a SHA-1 has 40 hex digits, a SHA-256 64")
    return algo, digits


class GatewayConnection:
    """One TLS connection to the gateway carrying the whole exchange (auth POSTs, CONNECT, CSTP), as the
    recorded client did."""

    def __init__(self, url: GatewayURL, *, cafile=None, servercert: str | None = None, address: str | None = None,
                 timeout: float = 10.0, ciphers: list[str] | None = None):
        self.url = url
        self.cafile = cafile
        self.pin = parse_servercert(servercert) if servercert else None
        self.address = address or url.host  # where to connect (--resolve); SNI and Host stay url.host
        self.timeout = timeout
        self.sock: ssl.SSLSocket | None = None
        self.http = HTTPStream()
        self._frame = 0
        self._pending: list = []  # CSTP events that arrived with the CONNECT answer
        self.tls: dict = {}
        self.closed_by_gateway = False
        self.closing = False  # the gateway said Connection: close
        self.connections = 0
        # the TLS sessions' secrets (NSS key log, written by OpenSSL through Python's ssl): the PSK-NEGOTIATE
        # key is the CSTP session's exporter, and `--write` embeds them in the replay's capture. A private file
        # (0600, in a 0700 directory), removed by close_keylog().
        self._keydir = tempfile.mkdtemp(prefix="acflow-rp-keys-")
        self.keylog_path = os.path.join(self._keydir, "tls-keys.log")
        os.close(os.open(self.keylog_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        self.randoms: tuple[bytes, bytes] | None = None  # (client, server) hello randoms of the last connection
        # the recorded ClientHello's TLS 1.2 suites (IANA names, its order) as OpenSSL's cipher list; TLS 1.3
        # suites are OpenSSL's defaults (Python's ssl cannot set them)
        self.cipher_list, self.ciphers_left_out = openssl_cipher_list(ciphers or [])
        self._hello: dict = {}

    # -- TLS ----------------------------------------------------------------------------------------------------
    def connect(self) -> dict:
        if self.pin:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # verified below against the pinned hash
        else:
            ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.cipher_list:
            try:
                ctx.set_ciphers(self.cipher_list)
            except ssl.SSLError:
                self.ciphers_left_out.append("(the recorded TLS 1.2 suites: OpenSSL refused the list)")
        ctx.keylog_filename = self.keylog_path
        self._hello = {}
        if hasattr(ctx, "_msg_callback"):  # the hello randoms (the TLS 1.2 exporter needs the server's)
            ctx._msg_callback = self._on_msg  # noqa: SLF001 - Python's ssl has no public access to them
        t0 = time.time()
        try:
            raw = socket.create_connection((self.address, self.url.port), timeout=self.timeout)
        except OSError as e:
            raise GatewayError(f"cannot reach {self.address}:{self.url.port}: {e.strerror or e}") from e
        server_hostname = None if _is_ip(self.url.host) and self.pin else self.url.host
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as e:
            raw.close()
            raise GatewayError(f"TLS: the gateway's certificate was not accepted: {e.verify_message or e}") from e
        except (ssl.SSLError, OSError) as e:
            raw.close()
            raise GatewayError(f"TLS handshake failed: {e}") from e
        der = self.sock.getpeercert(binary_form=True) or b""
        sha256 = hashlib.sha256(der).hexdigest().upper()
        sha1 = hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - a certificate fingerprint, as openconnect shows
        if self.pin:
            algo, want = self.pin
            got = sha256 if algo == "sha256" else sha1
            if got.lower() != want:
                self.sock.close()
                raise GatewayError(f"TLS: the gateway's certificate {algo} {got} is not the pinned one")
        self.connections += 1
        self.randoms = (self._hello["c"], self._hello["s"]) if {"c", "s"} <= set(self._hello) else None
        cipher = self.sock.cipher()
        self.tls = {"version": _tls_version_name(self.sock.version()), "cipher_suite": _iana_name(cipher[0] if cipher
                                                                                                   else None),
                    "cert_sha256": sha256, "cert_sha1": sha1, "sni": server_hostname,
                    "duration": time.time() - t0}
        return self.tls

    def _on_msg(self, conn, direction, version, content_type, msg_type, data) -> None:
        # handshake messages with their 4-byte header: ClientHello (1) / ServerHello (2), random after the version
        if content_type == ssl._TLSContentType.HANDSHAKE and len(data) >= 38:  # noqa: SLF001
            if msg_type == ssl._TLSMessageType.CLIENT_HELLO and direction == "write":  # noqa: SLF001
                self._hello["c"] = bytes(data[6:38])
            elif msg_type == ssl._TLSMessageType.SERVER_HELLO and direction == "read":  # noqa: SLF001
                self._hello.setdefault("s", bytes(data[6:38]))

    def keylog_text(self) -> str:
        """Every TLS secret logged so far (NSS key log lines)."""
        try:
            with open(self.keylog_path, encoding="ascii", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def exporter_psk(self) -> bytes | None:
        """openconnect's PSK-NEGOTIATE key of the current connection (its TLS exporter, label
        EXPORTER-openconnect-psk, 32 bytes), from the logged secrets; None when they are not there."""
        from dissectors.dtls.psk import psk_from_tls12_master_secret, psk_from_tls13_exporter_secret  # noqa: PLC0415

        if self.randoms is None or self.sock is None:
            return None
        cr, sr = self.randoms
        cipher = (self.sock.cipher() or ("", "", 0))[0] or ""
        hash_name = "sha384" if cipher.endswith("SHA384") else "sha256"
        for line in reversed(self.keylog_text().splitlines()):
            parts = line.split()
            if len(parts) != 3 or parts[1].lower() != cr.hex():
                continue
            if parts[0] == "EXPORTER_SECRET":
                return psk_from_tls13_exporter_secret(bytes.fromhex(parts[2]), hash_name)
            if parts[0] == "CLIENT_RANDOM" and self.sock.version() != "TLSv1.3":
                return psk_from_tls12_master_secret(bytes.fromhex(parts[2]), cr, sr, hash_name)
        return None

    def close_keylog(self) -> None:
        import shutil  # noqa: PLC0415

        shutil.rmtree(self._keydir, ignore_errors=True)

    def reconnect(self) -> dict:
        """A new TLS connection (and HTTP stream) to the same gateway, as a client does for CONNECT after the
        gateway closed the authentication connection."""
        self.close()
        self.http = HTTPStream()
        self._pending = []
        self.closed_by_gateway = self.closing = False
        return self.connect()

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> Response:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.url.host}"]
        head += [f"{k}: {v}" for k, v in headers]
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self._frame += 1
        self.http.feed("c2s", data, time.time(), self._frame)
        self.sock.sendall(data)
        deadline = time.monotonic() + self.timeout
        while True:
            if time.monotonic() > deadline:
                raise GatewayError(f"no answer to {method} {target} within {self.timeout:.0f} s")
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError) as e:
                raise GatewayError(f"reading the answer to {method} {target}: {e}") from e
            self._frame += 1
            if not chunk:
                self.closed_by_gateway = True
                raise GatewayError(f"the gateway closed the connection before answering {method} {target}")
            events = self.http.feed("s2c", chunk, time.time(), self._frame)
            resp = None
            for ev in events:
                if isinstance(ev, Response) and resp is None:
                    resp = ev
                elif isinstance(ev, (CSTPFrame, CSTPError)):
                    self._pending.append(ev)
                elif isinstance(ev, HTTPError):
                    raise GatewayError(f"malformed HTTP from the gateway: {ev.message}")
                elif isinstance(ev, TunnelEstablished):
                    pass
            if resp is not None:
                if "close" in (resp.headers.get("Connection") or "").lower():
                    self.closing = True
                return resp

    # -- CSTP ---------------------------------------------------------------------------------------------------
    def start_tunnel(self) -> list:
        """After a 2xx CONNECT: the socket becomes non-blocking; returns CSTP events already received."""
        self.sock.setblocking(False)
        pending, self._pending = self._pending, []
        return pending

    def read_frames(self) -> list:
        """Every CSTP event readable now (non-blocking); sets closed_by_gateway at EOF."""
        out: list = []
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except ssl.SSLWantWriteError:
                break
            except (ssl.SSLError, OSError):
                self.closed_by_gateway = True
                break
            if not chunk:
                self.closed_by_gateway = True
                break
            self._frame += 1
            out.extend(ev for ev in self.http.feed("s2c", chunk, time.time(), self._frame)
                       if isinstance(ev, (CSTPFrame, CSTPError)))
            if not self.sock.pending():
                # more may be in the kernel's buffer; loop once more unless it would block
                r, _, _ = select.select([self.sock], [], [], 0)
                if not r:
                    break
        return out

    def send_frame(self, ptype: int, payload: bytes = b"") -> None:
        data = build_cstp_frame(ptype, payload)
        self.sock.setblocking(True)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def openssl_cipher_list(iana_names: list[str]) -> tuple[str, list[str]]:
    """OpenSSL's cipher-list string for these TLS <= 1.2 suites (IANA names, order kept) and the names left out
    (unknown to this OpenSSL). TLS 1.3 suites (TLS_AES_*, TLS_CHACHA20_*) are skipped: OpenSSL sets them apart."""
    from dissectors.tls.names import CIPHER_SUITE_NAMES  # noqa: PLC0415

    by_iana = {v: k for k, v in CIPHER_SUITE_NAMES.items()}
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        return "", []
    by_id = {c["id"] & 0xFFFF: c["name"] for c in probe.get_ciphers() if c.get("protocol") != "TLSv1.3"}
    names, left = [], []
    for iana in iana_names:
        if "_WITH_" not in iana:
            continue  # TLS 1.3, SCSVs
        ossl = by_id.get(by_iana.get(iana, -1))
        if ossl is None:
            left.append(iana)
        elif ossl not in names:
            names.append(ossl)
    return ":".join(names), left


def _is_ip(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _tls_version_name(v: str | None) -> str | None:
    return {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2", "TLSv1.1": "TLS 1.1", "TLSv1": "TLS 1.0"}.get(v or "", v)


_OPENSSL_TO_IANA = {
    "TLS_AES_256_GCM_SHA384": "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256": "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256": "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
}


def _iana_name(openssl_name: str | None) -> str | None:
    """The IANA name acflow's reports use for an OpenSSL cipher name (unknown names pass through)."""
    if openssl_name is None:
        return None
    if openssl_name in _OPENSSL_TO_IANA:
        return _OPENSSL_TO_IANA[openssl_name]
    from dissectors.tls.names import CIPHER_SUITE_NAMES  # noqa: PLC0415

    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        return openssl_name
    for c in probe.get_ciphers():
        if c["name"] == openssl_name:
            return CIPHER_SUITE_NAMES.get(c["id"] & 0xFFFF, openssl_name)
    return openssl_name
