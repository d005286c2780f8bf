"""The replay client's DTLS channel: the system's GnuTLS (``libgnutls.so.30``) through ctypes, client side.

Why GnuTLS: the gateways acflow replays against in its lab are ocserv, whose DTLS is GnuTLS, and the two DTLS modes
of the AnyConnect protocol are both *not* ordinary handshakes:

* **PSK-NEGOTIATE** — a DTLS 1.2 PSK handshake whose key is the CSTP TLS session's exporter (label
  ``EXPORTER-openconnect-psk``, no context, 32 bytes; PSK identity ``psk``) and whose ClientHello carries the
  gateway's ``X-DTLS-App-ID`` as its session id (the gateway finds the user's session by it).
  GnuTLS: PSK client credentials and ``gnutls_session_set_id``.
* **legacy** — an abbreviated *resumption* of a session that never had a full handshake: its id is the gateway's
  ``X-DTLS-Session-ID``, its master secret the client's ``X-DTLS-Master-Secret``, its suite the gateway's
  ``X-DTLS-CipherSuite`` (Cisco's pre-standard DTLS 0x0100 for AES128-SHA/AES256-SHA) or ``X-DTLS12-CipherSuite``
  (DTLS 1.2). GnuTLS: ``gnutls_session_set_premaster``, which sets exactly that state, and ``VERS-DTLS0.9`` for the
  0x0100 wire format (its version bytes, the pre-RFC ChangeCipherSpec and handshake hash).

GnuTLS does both, interoperates with ocserv by construction, handles retransmission, fragmentation, cookies and
replay protection, and is already on every machine with ocserv/openconnect (replay/dtls_psk_server.py drives its
server side the same way). The alternatives were weighed: pyOpenSSL has no way to install an external master
secret and session id (no legacy mode) and OpenSSL 3 dropped DTLS 0x0100 from its public methods; python-mbedtls
has neither 0x0100 nor resumption from external state; acflow's own record layer and key schedule
(dissectors/dtls) decrypt but a client would need a whole handshake state machine with timers and
retransmissions — more code to get wrong than the ~200 lines of bindings here.

The channel is non-blocking and driven by the replay's single select loop: ``fileno()`` to watch,
``timeout()`` (GnuTLS's retransmission timer) to wake, ``handshake_step()`` until it says done or failed, then
``send(payload)`` / ``recv()`` of the AnyConnect DTLS payloads (first byte: 0x00 DATA, 0x03 DPD-REQ,
0x04 DPD-RESP, 0x05 DISCONNECT, 0x07 KEEPALIVE). ``keylog_lines()`` gives the session's ``CLIENT_RANDOM`` line
(its master secret by client random) for a capture's embedded keys.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import socket
from dataclasses import dataclass

GNUTLS_CLIENT = 1 << 1
GNUTLS_DATAGRAM = 1 << 2
GNUTLS_NONBLOCK = 1 << 3
GNUTLS_CRD_PSK = 4
GNUTLS_PSK_KEY_RAW = 0
GNUTLS_COMP_NULL = 1
GNUTLS_SHUT_WR = 1
E_AGAIN, E_INTERRUPTED, E_TIMEDOUT = -28, -52, -319

PSK_IDENTITY = b"psk"
PSK_PRIORITY = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK"
DEFAULT_MTU = 1472  # 1500 - IPv4 - UDP: GnuTLS's own default (1200) would refuse full-size tunnel packets
HANDSHAKE_TIMEOUT_MS = 12000  # openconnect abandons a DTLS attempt after 12 s
RETRANS_MS = 1000  # first ClientHello retransmission after 1 s, doubling


@dataclass(frozen=True)
class LegacySuite:
    """A legacy DTLS suite as GnuTLS names its parts (protocol, key exchange, cipher, MAC)."""

    version: str  # GnuTLS protocol name: DTLS0.9 (Cisco's 0x0100) or DTLS1.2
    kx: str
    cipher: str
    mac: str

    @property
    def label(self) -> str:
        return "DTLS 0x0100" if self.version == "DTLS0.9" else "DTLS 1.2"


# X-DTLS-CipherSuite names (answered in X-DTLS-CipherSuite) this client can resume
LEGACY_SUITES = {
    "AES128-SHA": LegacySuite("DTLS0.9", "RSA", "AES-128-CBC", "SHA1"),
    "AES256-SHA": LegacySuite("DTLS0.9", "RSA", "AES-256-CBC", "SHA1"),
    "OC-DTLS1_2-AES128-GCM": LegacySuite("DTLS1.2", "RSA", "AES-128-GCM", "AEAD"),
    "OC-DTLS1_2-AES256-GCM": LegacySuite("DTLS1.2", "RSA", "AES-256-GCM", "AEAD"),
}
# X-DTLS12-CipherSuite names (OpenSSL's names of DTLS 1.2 suites)
DTLS12_SUITES = {
    "AES128-GCM-SHA256": LegacySuite("DTLS1.2", "RSA", "AES-128-GCM", "AEAD"),
    "AES256-GCM-SHA384": LegacySuite("DTLS1.2", "RSA", "AES-256-GCM", "AEAD"),
    "ECDHE-RSA-AES128-GCM-SHA256": LegacySuite("DTLS1.2", "ECDHE-RSA", "AES-128-GCM", "AEAD"),
    "ECDHE-RSA-AES256-GCM-SHA384": LegacySuite("DTLS1.2", "ECDHE-RSA", "AES-256-GCM", "AEAD"),
    "DHE-RSA-AES128-SHA": LegacySuite("DTLS1.2", "DHE-RSA", "AES-128-CBC", "SHA1"),
    "DHE-RSA-AES256-SHA": LegacySuite("DTLS1.2", "DHE-RSA", "AES-256-CBC", "SHA1"),
    "AES128-SHA": LegacySuite("DTLS1.2", "RSA", "AES-128-CBC", "SHA1"),
    "AES256-SHA": LegacySuite("DTLS1.2", "RSA", "AES-256-CBC", "SHA1"),
}


def supported_offer(header: str, value: str) -> tuple[str, list[str]]:
    """A recorded X-DTLS-CipherSuite / X-DTLS12-CipherSuite offer reduced to what this client can complete:
    (the value to send, the names left out)."""
    table = DTLS12_SUITES if header.lower() == "x-dtls12-ciphersuite" else LEGACY_SUITES
    keep, dropped = [], []
    for name in (n.strip() for n in value.split(":")):
        if not name:
            continue
        if name in table or (name == "PSK-NEGOTIATE" and header.lower() == "x-dtls-ciphersuite"):
            keep.append(name)
        else:
            dropped.append(name)
    return ":".join(keep), dropped


def suite_for_answer(headers) -> tuple[str, LegacySuite | None, str | None]:
    """(mode, legacy suite, the gateway's suite name) of a CONNECT answer's DTLS headers: mode "psk-negotiate",
    "legacy", or "none" (no DTLS offered: no suite, or no port); "unsupported" for a suite this client cannot do."""
    if not headers.get("X-DTLS-Port"):
        return "none", None, None
    d12 = headers.get("X-DTLS12-CipherSuite")
    d = headers.get("X-DTLS-CipherSuite")
    if d12:
        s = DTLS12_SUITES.get(d12.strip())
        return ("legacy" if s else "unsupported"), s, d12.strip()
    if not d:
        return "none", None, None
    if d.strip() == "PSK-NEGOTIATE":
        return "psk-negotiate", None, "PSK-NEGOTIATE"
    s = LEGACY_SUITES.get(d.strip())
    return ("legacy" if s else "unsupported"), s, d.strip()


class Datum(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_uint)]


def _datum(b: bytes) -> tuple[Datum, object]:
    buf = ctypes.create_string_buffer(b, len(b))
    return Datum(ctypes.cast(buf, ctypes.c_void_p), len(b)), buf


_LIB = None


def gnutls():
    """The system GnuTLS with the signatures this client uses (OSError if it is not installed)."""
    global _LIB  # noqa: PLW0603 - loaded once per process
    if _LIB is not None:
        return _LIB
    lib = ctypes.CDLL(ctypes.util.find_library("gnutls") or "libgnutls.so.30")
    vp, ci, cu, dp = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Datum)
    sig = {
        "gnutls_init": ([ctypes.POINTER(vp), cu], ci),
        "gnutls_deinit": ([vp], None),
        "gnutls_priority_set_direct": ([vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)], ci),
        "gnutls_credentials_set": ([vp, ci, vp], ci),
        "gnutls_psk_allocate_client_credentials": ([ctypes.POINTER(vp)], ci),
        "gnutls_psk_free_client_credentials": ([vp], None),
        "gnutls_psk_set_client_credentials": ([vp, ctypes.c_char_p, dp, ci], ci),
        "gnutls_session_set_id": ([vp, dp], ci),
        "gnutls_session_set_premaster": ([vp, cu, ci, ci, ci, ci, ci, dp, dp], ci),
        "gnutls_transport_set_int2": ([vp, ci, ci], None),
        "gnutls_dtls_set_timeouts": ([vp, cu, cu], None),
        "gnutls_dtls_set_mtu": ([vp, cu], None),
        "gnutls_dtls_get_data_mtu": ([vp], cu),
        "gnutls_dtls_get_timeout": ([vp], cu),
        "gnutls_handshake": ([vp], ci),
        "gnutls_record_send": ([vp, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_ssize_t),
        "gnutls_record_recv": ([vp, vp, ctypes.c_size_t], ctypes.c_ssize_t),
        "gnutls_record_check_pending": ([vp], ctypes.c_size_t),
        "gnutls_bye": ([vp, ci], ci),
        "gnutls_error_is_fatal": ([ci], ci),
        "gnutls_strerror": ([ci], ctypes.c_char_p),
        "gnutls_check_version": ([ctypes.c_char_p], ctypes.c_char_p),
        "gnutls_session_get_desc": ([vp], vp),
        "gnutls_session_get_random": ([vp, dp, dp], None),
        "gnutls_session_get_master_secret": ([vp, dp], None),
        "gnutls_session_get_id2": ([vp, dp], ci),
        "gnutls_protocol_get_id": ([ctypes.c_char_p], ci),
        "gnutls_kx_get_id": ([ctypes.c_char_p], ci),
        "gnutls_cipher_get_id": ([ctypes.c_char_p], ci),
        "gnutls_mac_get_id": ([ctypes.c_char_p], ci),
        "gnutls_protocol_get_version": ([vp], ci),
        "gnutls_protocol_get_name": ([ci], ctypes.c_char_p),
        "gnutls_cipher_suite_get_name": ([ci, ci, ci], ctypes.c_char_p),
        "gnutls_kx_get": ([vp], ci),
        "gnutls_cipher_get": ([vp], ci),
        "gnutls_mac_get": ([vp], ci),
        "gnutls_session_is_resumed": ([vp], ci),
    }
    if hasattr(lib, "gnutls_ciphersuite_get"):  # GnuTLS >= 3.7.3: the suite's IANA name
        sig["gnutls_ciphersuite_get"] = ([vp], ctypes.c_char_p)
    for name, (args, res) in sig.items():
        fn = getattr(lib, name)
        if args is not None:
            fn.argtypes = args
        fn.restype = res
    _LIB = lib
    return lib


def gnutls_version() -> str | None:
    try:
        return gnutls().gnutls_check_version(None).decode()
    except OSError:
        return None


class DTLSError(Exception):
    """The DTLS channel cannot be set up (the message says why)."""


class DTLSChannel:
    """One DTLS client session over a connected UDP socket to the gateway (non-blocking)."""

    def __init__(self, gateway: tuple[str, int], mode: str, *, app_id: bytes | None = None, psk: bytes | None = None,
                 suite: LegacySuite | None = None, master_secret: bytes | None = None,
                 session_id: bytes | None = None, mtu: int = DEFAULT_MTU,
                 handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS):
        self.lib = lib = gnutls()
        self.mode = mode
        self.gateway = gateway
        self.sock = socket.socket(socket.AF_INET6 if ":" in gateway[0] else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sess = ctypes.c_void_p()
        self.cred = ctypes.c_void_p()
        self._keep: list = []  # buffers GnuTLS points into
        self.established = False
        self.failed: str | None = None
        self.hellos = 0
        self.closed = False
        self._buf = ctypes.create_string_buffer(65536)
        try:
            self.sock.connect(gateway)
            self._check(lib.gnutls_init(ctypes.byref(self.sess), GNUTLS_CLIENT | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK),
                        "init")
            err = ctypes.c_char_p()
            if mode == "psk-negotiate":
                if psk is None or app_id is None:
                    raise DTLSError("PSK-NEGOTIATE needs the PSK and the gateway's X-DTLS-App-ID")
                self._check(lib.gnutls_priority_set_direct(self.sess, PSK_PRIORITY.encode(), ctypes.byref(err)),
                            "priority")
                self._check(lib.gnutls_psk_allocate_client_credentials(ctypes.byref(self.cred)), "PSK credentials")
                key, kb = _datum(psk)
                self._keep.append(kb)
                self._check(lib.gnutls_psk_set_client_credentials(self.cred, PSK_IDENTITY, ctypes.byref(key),
                                                                  GNUTLS_PSK_KEY_RAW), "PSK key")
                self._check(lib.gnutls_credentials_set(self.sess, GNUTLS_CRD_PSK, self.cred), "credentials")
                sid, sb = _datum(app_id)
                self._keep.append(sb)
                self._check(lib.gnutls_session_set_id(self.sess, ctypes.byref(sid)), "session id (App-ID)")
            elif mode == "legacy":
                if suite is None or master_secret is None or session_id is None:
                    raise DTLSError("legacy DTLS needs the suite, the master secret and the gateway's session id")
                prio = (f"NONE:+VERS-{suite.version}:+COMP-NULL:+{suite.cipher}:+{suite.mac}:+{suite.kx}"
                        ":+SIGN-ALL:%COMPAT")
                self._check(lib.gnutls_priority_set_direct(self.sess, prio.encode(), ctypes.byref(err)),
                            f"priority {prio}")
                ids = [lib.gnutls_protocol_get_id(suite.version.encode()), lib.gnutls_kx_get_id(suite.kx.encode()),
                       lib.gnutls_cipher_get_id(suite.cipher.encode()), lib.gnutls_mac_get_id(suite.mac.encode())]
                if 0 in ids:
                    raise DTLSError(f"GnuTLS does not know {suite}")
                ms, mb = _datum(master_secret)
                sid, sb = _datum(session_id)
                self._keep += [mb, sb]
                self._check(lib.gnutls_session_set_premaster(self.sess, GNUTLS_CLIENT, *ids, GNUTLS_COMP_NULL,
                                                             ctypes.byref(ms), ctypes.byref(sid)),
                            "resumption state")
            else:
                raise DTLSError(f"no DTLS mode {mode!r}")
            lib.gnutls_transport_set_int2(self.sess, self.sock.fileno(), self.sock.fileno())
            lib.gnutls_dtls_set_timeouts(self.sess, RETRANS_MS, handshake_timeout_ms)
            lib.gnutls_dtls_set_mtu(self.sess, mtu)
        except BaseException:
            self.close()
            raise

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise DTLSError(f"GnuTLS {what}: {self.lib.gnutls_strerror(rc).decode()}")
        return rc

    def fileno(self) -> int:
        return self.sock.fileno()

    def timeout(self) -> float:
        """Seconds until GnuTLS wants handshake_step() called again (its retransmission timer)."""
        return self.lib.gnutls_dtls_get_timeout(self.sess) / 1000.0

    def handshake_step(self) -> bool:
        """Advance the handshake; True once established. Sets ``failed`` (and returns False) when it gave up."""
        if self.established or self.failed:
            return self.established
        rc = self.lib.gnutls_handshake(self.sess)
        if rc >= 0:
            self.established = True
            return True
        if rc in (E_AGAIN, E_INTERRUPTED):
            return False
        self.failed = ("no answer from the gateway" if rc == E_TIMEDOUT
                       else self.lib.gnutls_strerror(rc).decode())
        return False

    def description(self) -> dict:
        lib = self.lib
        desc_p = lib.gnutls_session_get_desc(self.sess)
        desc = ctypes.string_at(desc_p).decode() if desc_p else None
        if desc_p:
            free = ctypes.c_void_p.in_dll(lib, "gnutls_free").value  # a variable holding the deallocator
            if free:
                ctypes.CFUNCTYPE(None, ctypes.c_void_p)(free)(desc_p)
        ver = lib.gnutls_protocol_get_name(lib.gnutls_protocol_get_version(self.sess))
        suite = lib.gnutls_cipher_suite_get_name(lib.gnutls_kx_get(self.sess), lib.gnutls_cipher_get(self.sess),
                                                 lib.gnutls_mac_get(self.sess))
        ver_s = ver.decode() if ver else None
        if hasattr(lib, "gnutls_ciphersuite_get") and lib.gnutls_ciphersuite_get.restype is ctypes.c_char_p:
            iana = lib.gnutls_ciphersuite_get(self.sess)
            suite = iana[4:] if iana and iana.startswith(b"TLS_") else suite
        return {"description": desc, "version": {"DTLS0.9": "DTLS 0x0100", "DTLS1.0": "DTLS 1.0",
                                                 "DTLS1.2": "DTLS 1.2"}.get(ver_s or "", ver_s),
                "cipher_suite": ("TLS_" + suite.decode()) if suite else None,
                "resumed": bool(lib.gnutls_session_is_resumed(self.sess)),
                "data_mtu": lib.gnutls_dtls_get_data_mtu(self.sess)}

    def keylog_lines(self) -> list[str]:
        """``CLIENT_RANDOM <client random> <master secret>`` of the established session (NSS key log format)."""
        if not self.established:
            return []
        cr, sr, ms = Datum(), Datum(), Datum()
        self.lib.gnutls_session_get_random(self.sess, ctypes.byref(cr), ctypes.byref(sr))
        self.lib.gnutls_session_get_master_secret(self.sess, ctypes.byref(ms))
        c = ctypes.string_at(cr.data, cr.size).hex()
        m = ctypes.string_at(ms.data, ms.size).hex()
        return [f"CLIENT_RANDOM {c} {m}"] if c and m else []

    def send(self, payload: bytes) -> bool:
        """One AnyConnect DTLS payload as one record; False when it could not be sent now."""
        rc = self.lib.gnutls_record_send(self.sess, payload, len(payload))
        return rc >= 0

    def recv(self) -> tuple[list[bytes], bool]:
        """Every payload readable now, and whether the channel ended (close_notify or a fatal error)."""
        out: list[bytes] = []
        while True:
            n = self.lib.gnutls_record_recv(self.sess, self._buf, len(self._buf))
            if n > 0:
                out.append(self._buf.raw[:n])
                continue
            if n == 0:
                return out, True
            if n in (E_AGAIN, E_INTERRUPTED, E_TIMEDOUT):
                return out, False
            if self.lib.gnutls_error_is_fatal(n):
                self.failed = self.lib.gnutls_strerror(n).decode()
                return out, True
            # a non-fatal error (a bad record, a replayed one): skipped, as DTLS does

    def close(self, notify: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sess:
            if notify and self.established:
                self.lib.gnutls_bye(self.sess, GNUTLS_SHUT_WR)
            self.lib.gnutls_deinit(self.sess)
            self.sess = ctypes.c_void_p()
        if self.cred:
            self.lib.gnutls_psk_free_client_credentials(self.cred)
            self.cred = ctypes.c_void_p()
        try:
            self.sock.close()
        except OSError:
            pass
