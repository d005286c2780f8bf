"""A DTLS 1.2 PSK server for openconnect's PSK-NEGOTIATE mode, with RFC 6347 cookies (HelloVerifyRequest).

ocserv never sends a HelloVerifyRequest; Cisco gateways and GnuTLS servers do. This server is the DTLS side of
the scripted gateway for such captures: the DTLS protocol is the system's GnuTLS (``libgnutls.so.30``, through
ctypes: ``gnutls_dtls_cookie_verify``/``gnutls_dtls_cookie_send`` before a session exists, then a server session
with PSK credentials), the application on top is the AnyConnect DTLS payload (first byte: 0x00 DATA,
0x03 DPD-REQ, 0x04 DPD-RESP, 0x05 DISCONNECT, 0x07 KEEPALIVE).

The PSK is what openconnect and the gateway both derive from the CSTP TLS session: the TLS exporter with label
``EXPORTER-openconnect-psk``, no context, 32 bytes; PSK identity ``psk``. The server computes it when a
ClientHello with a valid cookie arrives, from the scripted gateway's own NSS key log (the last
``EXPORTER_SECRET`` line: the TLS 1.3 session that carried the CONNECT) and the cipher suite the gateway logged
for that session (its events file), with :mod:`dissectors.dtls.psk`; it writes ``psk:<hex>`` to the PSK file that
GnuTLS reads during the handshake.

    python -m replay.dtls_psk_server --listen 198.18.0.1 --port 4443 --gateway-keylog gw-keys.log \\
        --gateway-events gateway-events.jsonl --psk-file psk.txt [--events dtls-events.jsonl] [--nocookie]

One line per event on stdout (``[dtls] type: text``) and, with ``--events``, one JSON object per line. GnuTLS
writes the DTLS session's own secrets to ``SSLKEYLOGFILE`` when that is set. One client at a time; SIGTERM ends
the session (without a close_notify, as ocserv) and the server.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

from dissectors.dtls.psk import psk_from_tls13_exporter_secret

from .gateway import icmp_echo_reply

GNUTLS_SERVER = 1
GNUTLS_DATAGRAM = 1 << 2
GNUTLS_NONBLOCK = 1 << 3
GNUTLS_CRD_PSK = 4
GNUTLS_SHUT_WR = 1
E_AGAIN, E_INTERRUPTED, E_TIMEDOUT = -28, -52, -319
PRIORITY = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK"
GNUTLS_CRD_CERTIFICATE = 1

# legacy DTLS (openconnect's pre-RFC mode, as ocserv serves it): the client picks the master secret
# (X-DTLS-Master-Secret in its CONNECT), the gateway the session id (X-DTLS-Session-ID) and the suite
# (X-DTLS-CipherSuite / X-DTLS12-CipherSuite); the DTLS handshake is then an abbreviated one, resuming a session
# that both set up with gnutls_session_set_premaster (GnuTLS enum values, gnutls.h)
LEGACY_VERSIONS = {"DTLS 0x0100": (200, "VERS-DTLS0.9"), "DTLS 1.0": (201, "VERS-DTLS1.0"),
                   "DTLS 1.2": (202, "VERS-DTLS1.2")}
LEGACY_SUITES = {  # OpenSSL name -> (cipher, mac, priority items); key exchange RSA (1), compression NULL (1)
    "AES128-SHA": (4, 3, "+AES-128-CBC:+SHA1"), "AES256-SHA": (5, 3, "+AES-256-CBC:+SHA1"),
    "AES128-GCM-SHA256": (10, 200, "+AES-128-GCM:+AEAD"), "AES256-GCM-SHA384": (11, 200, "+AES-256-GCM:+AEAD"),
}
DATA, DPD_REQ, DPD_RESP, DISCONNECT, KEEPALIVE = 0x00, 0x03, 0x04, 0x05, 0x07
NAMES = {DATA: "data", DPD_REQ: "dpd-req", DPD_RESP: "dpd-resp", DISCONNECT: "disconnect", KEEPALIVE: "keepalive",
         0x08: "compressed"}


class Datum(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_uint)]


class Prestate(ctypes.Structure):
    _fields_ = [("record_seq", ctypes.c_uint), ("hsk_read_seq", ctypes.c_uint), ("hsk_write_seq", ctypes.c_uint)]


PUSH = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _lib():
    lib = ctypes.CDLL(ctypes.util.find_library("gnutls") or "libgnutls.so.30")
    lib.gnutls_strerror.restype = ctypes.c_char_p
    lib.gnutls_check_version.restype = ctypes.c_char_p
    lib.gnutls_session_get_desc.restype = ctypes.c_void_p
    lib.gnutls_psk_server_get_username.restype = ctypes.c_char_p
    lib.gnutls_record_recv.restype = ctypes.c_ssize_t
    lib.gnutls_record_recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.gnutls_record_send.restype = ctypes.c_ssize_t
    lib.gnutls_record_send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.gnutls_dtls_cookie_send.argtypes = [ctypes.POINTER(Datum), ctypes.c_void_p, ctypes.c_size_t,
                                            ctypes.POINTER(Prestate), ctypes.c_void_p, PUSH]
    lib.gnutls_dtls_cookie_verify.argtypes = [ctypes.POINTER(Datum), ctypes.c_void_p, ctypes.c_size_t,
                                              ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(Prestate)]
    for fn in ("gnutls_init", "gnutls_priority_set_direct", "gnutls_credentials_set", "gnutls_handshake",
               "gnutls_bye", "gnutls_deinit", "gnutls_dtls_prestate_set", "gnutls_transport_set_int2",
               "gnutls_dtls_set_timeouts", "gnutls_record_set_timeout", "gnutls_error_is_fatal",
               "gnutls_dtls_get_timeout"):
        getattr(lib, fn)  # fail early if the library lacks one
    return lib


def tls13_psk_from_keylog(keylog: Path, events: Path | None) -> tuple[bytes, dict]:
    """openconnect's PSK from the gateway's key log (last EXPORTER_SECRET) and its events (the suite's hash)."""
    exp = [line.split() for line in keylog.read_text().splitlines() if line.startswith("EXPORTER_SECRET ")]
    if not exp:
        raise RuntimeError(f"no EXPORTER_SECRET in {keylog}: the CSTP session must be TLS 1.3")
    _, client_random, secret = exp[-1]
    cipher = None
    if events and events.exists():
        for line in events.read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("type") == "tls-established" and str(ev.get("version", "")).startswith("TLSv1.3"):
                cipher = ev.get("cipher")
    hash_name = "sha384" if cipher and cipher.endswith("SHA384") else "sha256"
    psk = psk_from_tls13_exporter_secret(bytes.fromhex(secret), hash_name)
    return psk, {"tls_client_random": client_random, "tls_cipher": cipher, "hash": hash_name}


class Server:
    """One DTLS client at a time. Used in-process by the scripted gateway (replay/gateway.py, a script's `dtls`)
    with hooks: ``psk_source()`` gives (psk, how) instead of reading the key log and events files, ``emit`` replaces
    the stdout/events lines, and ``outbox`` (a queue.Queue of DTLS payloads, first byte the AnyConnect type) is
    sent to the client while a session is up (``established``)."""

    def __init__(self, args, *, psk_source=None, emit=None, outbox=None, legacy_source=None):
        self.args = args
        self.lib = _lib()
        self.stop = False
        self.established = False
        self.handshaking = False  # a ClientHello was accepted, the handshake is under way
        self.outbox = outbox
        self._psk_source = psk_source
        # legacy mode: legacy_source() gives (master secret, session id, version name, suite name) of the
        # current CSTP session (the gateway knows them once the CONNECT was answered), or None
        self._legacy_source = legacy_source
        if emit is not None:
            self.emit = emit
        self._events = open(args.events, "a", encoding="utf-8") if getattr(args, "events", None) else None  # noqa: SIM115
        key = (ctypes.c_ubyte * 32)(*os.urandom(32))
        self._cookie_key_buf = key
        self.cookie_key = Datum(ctypes.cast(key, ctypes.c_void_p), 32)
        cred = ctypes.c_void_p()
        self._check(self.lib.gnutls_psk_allocate_server_credentials(ctypes.byref(cred)), "psk credentials")
        args.psk_file.write_text("")
        self._check(self.lib.gnutls_psk_set_server_credentials_file(cred, str(args.psk_file).encode()),
                    "psk file")
        self.cred = cred

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise RuntimeError(f"{what}: {self.lib.gnutls_strerror(rc).decode()}")
        return rc

    def emit(self, etype: str, text: str = "", **data) -> None:
        ev = {"t": time.time(), "type": etype, **data}
        if self._events:
            self._events.write(json.dumps(ev, sort_keys=True) + "\n")
            self._events.flush()
        print(f"[dtls] {etype}: {text}".rstrip(": "), flush=True)

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.args.listen, self.args.port))
        return s

    def serve(self) -> None:
        self.emit("listening", f"UDP {self.args.listen}:{self.args.port} GnuTLS "
                  f"{self.lib.gnutls_check_version(None).decode()} cookies "
                  f"{'off' if self.args.nocookie else 'on'}", port=self.args.port,
                  gnutls=self.lib.gnutls_check_version(None).decode(), cookies=not self.args.nocookie,
                  priority=PRIORITY)
        sock = self._socket()
        while not self.stop:
            r, _, _ = select.select([sock], [], [], 0.3)
            if not r:
                continue
            data, addr = sock.recvfrom(65536, socket.MSG_PEEK)
            peer = f"{addr[0]}:{addr[1]}"
            if len(data) < 14 or data[0] != 22 or data[13] != 1:
                sock.recv(65536)
                self.emit("udp-ignored", f"{len(data)} bytes from {peer} (not a ClientHello)", peer=peer,
                          length=len(data))
                continue
            client_data = socket.inet_aton(addr[0]) + addr[1].to_bytes(2, "big")
            cd = ctypes.create_string_buffer(client_data, len(client_data))
            prestate = Prestate()
            if not self.args.nocookie:
                msg = ctypes.create_string_buffer(data, len(data))
                rc = self.lib.gnutls_dtls_cookie_verify(ctypes.byref(self.cookie_key), cd, len(client_data), msg,
                                                        len(data), ctypes.byref(prestate))
                if rc < 0:
                    sock.recv(65536)
                    sent = []

                    def push(_ptr, buf, size, _sent=sent, _addr=addr, _sock=sock):
                        raw = ctypes.string_at(buf, size)
                        _sent.append(raw)
                        return _sock.sendto(raw, _addr)

                    cb = PUSH(push)
                    self._check(self.lib.gnutls_dtls_cookie_send(ctypes.byref(self.cookie_key), cd,
                                                                 len(client_data), ctypes.byref(prestate), None, cb),
                                "cookie send")
                    self.emit("hello-verify-request", f"ClientHello from {peer} without a valid cookie "
                              f"({self.lib.gnutls_strerror(rc).decode()}): HelloVerifyRequest sent", peer=peer,
                              hello_length=len(data), hello_record_seq=int.from_bytes(data[5:11], "big"),
                              reason=self.lib.gnutls_strerror(rc).decode(),
                              sent_hex=[s.hex() for s in sent])
                    continue
                self.emit("cookie-valid", f"ClientHello from {peer} with a valid cookie", peer=peer,
                          hello_length=len(data), hello_record_seq=int.from_bytes(data[5:11], "big"))
            else:
                self.emit("client-hello", f"ClientHello from {peer} (cookies off)", peer=peer,
                          hello_length=len(data))
            legacy = None
            if self._legacy_source is not None:
                legacy = self._legacy_source()
                if legacy is None:
                    sock.recv(65536)
                    self.emit("legacy-unavailable", f"ClientHello from {peer} before any CONNECT gave a master "
                              "secret: dropped", peer=peer)
                    continue
                self.emit("legacy-resume", f"resuming session {legacy[1].hex()[:16]}… ({legacy[2]}, {legacy[3]}) "
                          "with the master secret of the client's CONNECT", session_id=legacy[1].hex(),
                          version=legacy[2], suite=legacy[3])
            else:
                try:
                    psk, how = (self._psk_source() if self._psk_source is not None
                                else tls13_psk_from_keylog(self.args.gateway_keylog, self.args.gateway_events))
                except (OSError, RuntimeError) as e:
                    sock.recv(65536)
                    self.emit("psk-unavailable", str(e), error=str(e))
                    continue
                self.args.psk_file.write_text(f"psk:{psk.hex()}\n")
                self.emit("psk-derived", f"PSK from the gateway's TLS session {how['tls_client_random'][:16]}… "
                          f"({how['tls_cipher']}, {how['hash']})", **how)
            sock.connect(addr)
            self.handshaking = True
            try:
                self._session(sock, peer, prestate, legacy)
            finally:
                self.established = self.handshaking = False
                sock.close()
                self.args.psk_file.write_text("")
            if not self.stop:
                sock = self._socket()
        self.emit("stopped")

    def _legacy_setup(self, sess, legacy) -> None:
        master, session_id, version_name, suite_name = legacy
        version, vers_item = LEGACY_VERSIONS[version_name]
        cipher, mac, items = LEGACY_SUITES[suite_name]
        priority = f"NONE:+{vers_item}:+COMP-NULL:{items}:+RSA:+SIGN-ALL:%COMPAT"
        err = ctypes.c_char_p()
        self._check(self.lib.gnutls_priority_set_direct(sess, priority.encode(), ctypes.byref(err)), "priority")
        if not hasattr(self, "_cert_cred"):
            cred = ctypes.c_void_p()
            self._check(self.lib.gnutls_certificate_allocate_credentials(ctypes.byref(cred)), "certificate creds")
            self._cert_cred = cred
        self._check(self.lib.gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, self._cert_cred), "credentials")
        mbuf = ctypes.create_string_buffer(master, len(master))
        sbuf = ctypes.create_string_buffer(session_id, len(session_id))
        m, sid = Datum(ctypes.cast(mbuf, ctypes.c_void_p), len(master)), Datum(ctypes.cast(sbuf, ctypes.c_void_p),
                                                                               len(session_id))
        self._check(self.lib.gnutls_session_set_premaster(sess, GNUTLS_SERVER, version, 1, cipher, mac, 1,
                                                          ctypes.byref(m), ctypes.byref(sid)), "set premaster")

    def _session(self, sock: socket.socket, peer: str, prestate: Prestate, legacy=None) -> None:
        lib = self.lib
        sess = ctypes.c_void_p()
        # non-blocking: GnuTLS returns E_AGAIN instead of waiting inside (a blocking DTLS handshake lingers
        # ~50 ms per flight, so the client's first DTLS packets, its MTU probes, were answered late); the waits
        # are this loop's select() calls, the retransmissions GnuTLS's timers (gnutls_dtls_get_timeout)
        self._check(lib.gnutls_init(ctypes.byref(sess), GNUTLS_SERVER | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK), "init")
        sock.setblocking(False)
        try:
            if legacy is not None:
                self._legacy_setup(sess, legacy)
            else:
                err = ctypes.c_char_p()
                self._check(lib.gnutls_priority_set_direct(sess, PRIORITY.encode(), ctypes.byref(err)), "priority")
                self._check(lib.gnutls_credentials_set(sess, GNUTLS_CRD_PSK, self.cred), "credentials")
            if not self.args.nocookie:
                lib.gnutls_dtls_prestate_set(sess, ctypes.byref(prestate))
            lib.gnutls_transport_set_int2(sess, sock.fileno(), sock.fileno())
            lib.gnutls_dtls_set_timeouts(sess, 1000, 30000)
            # GnuTLS's default DTLS MTU is 1200 bytes, which would refuse bigger records (openconnect's MTU
            # probes, full-size tunnel packets): the outer link's, 1500 - IPv4 - UDP headers
            lib.gnutls_dtls_set_mtu(sess, self.args.mtu)
            while True:
                rc = lib.gnutls_handshake(sess)
                if rc >= 0:
                    break
                if rc in (E_AGAIN, E_INTERRUPTED) and not self.stop:
                    wait = lib.gnutls_dtls_get_timeout(sess)
                    select.select([sock], [], [], min(max(wait, 1), 300) / 1000)
                    continue
                self.emit("handshake-failed", f"{peer}: {lib.gnutls_strerror(rc).decode()}", peer=peer,
                          error=lib.gnutls_strerror(rc).decode())
                return
            desc_p = lib.gnutls_session_get_desc(sess)
            desc = ctypes.string_at(desc_p).decode() if desc_p else None
            user = lib.gnutls_psk_server_get_username(sess)
            self.emit("handshake-done", f"{peer}: {desc}, PSK identity {user.decode() if user else None!r}",
                      peer=peer, description=desc, psk_identity=user.decode() if user else None)
            self.established, self.handshaking = True, False
            self._records(sess, peer, sock)
        finally:
            lib.gnutls_deinit(sess)

    def _records(self, sess, peer: str, sock: socket.socket) -> None:
        lib = self.lib
        # with an outbox, wake often enough to send its packets close to their time
        lib.gnutls_record_set_timeout(sess, 300 if self.outbox is None else 10)
        buf = ctypes.create_string_buffer(65536)
        counts: dict[str, int] = {}

        def send(payload: bytes, why: str) -> None:
            rc = lib.gnutls_record_send(sess, payload, len(payload))
            name = NAMES.get(payload[0], hex(payload[0]))
            if rc < 0:
                self.emit("tx-failed", f"{name} ({len(payload)} bytes) {why}: {lib.gnutls_strerror(rc).decode()}",
                          name=name, length=len(payload), why=why, error=lib.gnutls_strerror(rc).decode())
                return
            counts["tx-" + name] = counts.get("tx-" + name, 0) + 1
            self.emit("tx", f"{name} ({len(payload)} bytes) {why}", name=name, length=len(payload), why=why)

        while True:
            while self.outbox is not None and not self.outbox.empty() and not self.stop:
                payload, why = self.outbox.get_nowait()
                send(payload, why)
            if self.stop:
                # as ocserv: the DTLS channel ends with the session, without a close_notify (the client is gone
                # by then; an alert would only draw an ICMP port unreachable)
                self.emit("session-end", f"{peer}: server stopping (no close_notify sent)", peer=peer, how="stop",
                          counts=counts)
                return
            n = lib.gnutls_record_recv(sess, buf, len(buf))
            if n == E_AGAIN:
                select.select([sock], [], [], 0.3 if self.outbox is None else 0.01)
                continue
            if n in (E_TIMEDOUT, E_INTERRUPTED):
                continue
            if n == 0:
                self.emit("session-end", f"{peer}: close_notify received", peer=peer, how="close_notify",
                          counts=counts)
                return
            if n < 0:
                if lib.gnutls_error_is_fatal(n):
                    self.emit("session-end", f"{peer}: {lib.gnutls_strerror(n).decode()}", peer=peer, how="error",
                              error=lib.gnutls_strerror(n).decode(), counts=counts)
                    return
                continue
            payload = buf.raw[:n]
            name = NAMES.get(payload[0], hex(payload[0]))
            counts["rx-" + name] = counts.get("rx-" + name, 0) + 1
            self.emit("rx", f"{name} ({n} bytes)", name=name, length=n)
            if payload[0] == DPD_REQ:
                send(bytes([DPD_RESP]) + payload[1:], "answer to DPD-REQ")
            elif payload[0] == DATA and getattr(self.args, "icmp_echo", True):
                reply = icmp_echo_reply(payload[1:])
                if reply is not None:
                    send(b"\x00" + reply, "ICMP echo reply")
            elif payload[0] == DISCONNECT:
                self.emit("session-end", f"{peer}: DISCONNECT received", peer=peer, how="disconnect",
                          counts=counts)
                return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.dtls_psk_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=4443)
    ap.add_argument("--gateway-keylog", type=Path, required=True)
    ap.add_argument("--gateway-events", type=Path)
    ap.add_argument("--psk-file", type=Path, required=True)
    ap.add_argument("--events", type=Path)
    ap.add_argument("--nocookie", action="store_true", help="no HelloVerifyRequest (as ocserv)")
    ap.add_argument("--mtu", type=int, default=1472, help="DTLS MTU (UDP payload; default 1500 - 28)")
    args = ap.parse_args(argv)
    srv = Server(args)

    def on_term(signum, frame):
        srv.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    srv.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
