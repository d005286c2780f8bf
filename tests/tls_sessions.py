"""Real TLS sessions made in-process for the tests: Python's ssl (OpenSSL) client and server over MemoryBIO
pairs, recorded byte for byte with their key log (shared by tests/test_tls_connection.py and
tests/test_tcp_lane.py; not a test module). OpenSSL's exporter / KeyUpdate / TLS 1.3 suite selection are
reached through ctypes where possible."""

from __future__ import annotations

import ctypes
import datetime
import os
import ssl
import warnings
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

OP_NO_EXTENDED_MASTER_SECRET = 0x1  # OpenSSL 3: SSL_OP_BIT(0)
OP_NO_ENCRYPT_THEN_MAC = 0x80000  # SSL_OP_BIT(19)
PSK_LABEL = b"EXPORTER-openconnect-psk"

# --- certificates ------------------------------------------------------------------------------------


def _cert(key, subject: str, issuer_key=None, issuer: str | None = None, ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@dataclass
class PKI:
    dir: str
    server_key: rsa.RSAPrivateKey
    server_cert: x509.Certificate
    other_key: rsa.RSAPrivateKey
    ca_cert_path: str
    server_pem: str
    server_key_pem: str
    client_pem: str
    client_key_pem: str
    ecdsa_pem: str
    ecdsa_key_pem: str


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = str(tmp_path_factory.mktemp("pki"))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, "acflow test CA", ca=True)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = _cert(server_key, "vpn.example", ca_key, "acflow test CA")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _cert(client_key, "user1", ca_key, "acflow test CA")
    ecdsa_key = ec.generate_private_key(ec.SECP256R1())
    ecdsa_cert = _cert(ecdsa_key, "vpn.example", ca_key, "acflow test CA")
    pem = serialization.Encoding.PEM
    return PKI(
        dir=d, server_key=server_key, server_cert=server_cert,
        other_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ca_cert_path=_write(f"{d}/ca.pem", ca.public_bytes(pem)),
        server_pem=_write(f"{d}/server.pem", server_cert.public_bytes(pem)),
        server_key_pem=_write(f"{d}/server.key", _key_pem(server_key)),
        client_pem=_write(f"{d}/client.pem", client_cert.public_bytes(pem)),
        client_key_pem=_write(f"{d}/client.key", _key_pem(client_key)),
        ecdsa_pem=_write(f"{d}/ecdsa.pem", ecdsa_cert.public_bytes(pem)),
        ecdsa_key_pem=_write(f"{d}/ecdsa.key", _key_pem(ecdsa_key)),
    )


# --- OpenSSL through ctypes ---------------------------------------------------------------------------


class _OpenSSL:
    def __init__(self) -> None:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # resolves libssl symbols through _ssl's dependencies
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        lib.SSL_get_SSL_CTX.restype = vp
        lib.SSL_get_SSL_CTX.argtypes = [vp]
        lib.SSL_export_keying_material.argtypes = [vp, cp, sz, cp, sz, cp, sz, ctypes.c_int]
        lib.SSL_key_update.argtypes = [vp, ctypes.c_int]
        lib.SSL_set_ciphersuites.argtypes = [vp, cp]
        lib.SSL_get_client_random.argtypes = [vp, cp, sz]
        lib.SSL_get_client_random.restype = sz
        self.lib = lib

    @staticmethod
    def _ptr_after_head(obj) -> int:
        # CPython: PySSLContext = {PyObject_HEAD; SSL_CTX *ctx; …}; PySSLSocket = {PyObject_HEAD; PyObject
        # *Socket; SSL *ssl; …}
        head = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
        return id(obj) + head

    def ssl_ptr(self, sslobj: ssl.SSLObject, ctx: ssl.SSLContext) -> int:
        ctx_ptr = ctypes.c_void_p.from_address(self._ptr_after_head(ctx)).value
        p = ctypes.c_void_p.from_address(self._ptr_after_head(sslobj._sslobj) + ctypes.sizeof(ctypes.c_void_p)).value
        if not p or self.lib.SSL_get_SSL_CTX(p) != ctx_ptr:
            raise RuntimeError("cannot locate SSL* in this CPython build")
        return p

    def export(self, p: int, label: bytes, context: bytes | None, length: int) -> bytes:
        out = ctypes.create_string_buffer(length)
        rc = self.lib.SSL_export_keying_material(p, out, length, label, len(label), context,
                                                 len(context or b""), 0 if context is None else 1)
        assert rc == 1
        return out.raw


def _openssl() -> _OpenSSL | None:
    try:
        o = _OpenSSL()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="x")
        o.ssl_ptr(obj, ctx)
        return o
    except Exception:  # noqa: BLE001
        return None


OPENSSL = _openssl()
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="OpenSSL SSL* not reachable through ctypes")


# --- session generator ------------------------------------------------------------------------------


@dataclass
class Session:
    chunks: list[tuple[str, bytes]]  # (direction, bytes) in the order they were written
    keylog: str
    sent: dict[str, list[bytes]]  # application data written per direction
    version: str
    cipher: str
    exporter: bytes | None = None  # OpenSSL's SSL_export_keying_material(PSK_LABEL, no context, 32)
    exporter_ctx: bytes | None = None  # … with context b"ctx"
    app_chunks: dict[str, list[bytes]] = field(default_factory=dict)  # one chunk per record after handshake
    session: object = None
    client_random: bytes = b""

    def stream(self, direction: str) -> bytes:
        return b"".join(d for dr, d in self.chunks if dr == direction)


class _Pair:
    def __init__(self, cctx: ssl.SSLContext, sctx: ssl.SSLContext, session=None, tls13_suite: str | None = None):
        self.c_in, self.c_out, self.s_in, self.s_out = (ssl.MemoryBIO() for _ in range(4))
        self.cctx, self.sctx = cctx, sctx
        self.client = cctx.wrap_bio(self.c_in, self.c_out, server_hostname="vpn.example", session=session)
        self.server = sctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        if tls13_suite:
            p = OPENSSL.ssl_ptr(self.server, sctx)
            assert OPENSSL.lib.SSL_set_ciphersuites(p, tls13_suite.encode()) == 1
        self.chunks: list[tuple[str, bytes]] = []

    def pump(self) -> bool:
        moved = False
        data = self.c_out.read()
        if data:
            self.chunks.append(("c2s", data))
            self.s_in.write(data)
            moved = True
        data = self.s_out.read()
        if data:
            self.chunks.append(("s2c", data))
            self.c_in.write(data)
            moved = True
        return moved

    def handshake(self) -> None:
        for _ in range(50):
            done = 0
            for obj in (self.client, self.server):
                try:
                    obj.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            if not self.pump() and done == 2:
                return
        raise AssertionError("handshake did not complete")

    def send(self, direction: str, data: bytes) -> None:
        src, dst = (self.client, self.server) if direction == "c2s" else (self.server, self.client)
        src.write(data)
        self.pump()
        got = b""
        while len(got) < len(data):
            try:
                got += dst.read(len(data) - len(got))
            except ssl.SSLWantReadError:
                if not self.pump():
                    break
        assert got == data

    def close(self) -> None:
        for obj in (self.client, self.server):
            try:
                obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
            self.pump()


def make_contexts(pki: PKI, *, max_version=ssl.TLSVersion.TLSv1_3, min_version=None, ciphers: str | None = None,
                  options: int = 0, keylog: str | None = None, client_cert: bool = False, ecdsa: bool = False):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if ecdsa:
        sctx.load_cert_chain(pki.ecdsa_pem, pki.ecdsa_key_pem)
    else:
        sctx.load_cert_chain(pki.server_pem, pki.server_key_pem)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(pki.ca_cert_path)
    if client_cert:
        sctx.verify_mode = ssl.CERT_REQUIRED
        sctx.load_verify_locations(pki.ca_cert_path)
        cctx.load_cert_chain(pki.client_pem, pki.client_key_pem)
    warnings.filterwarnings("ignore", "ssl.TLSVersion.TLSv1", DeprecationWarning)
    for ctx in (sctx, cctx):
        if min_version is not None:
            ctx.minimum_version = min_version
        ctx.maximum_version = max_version
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.options |= options
    if keylog:
        cctx.keylog_filename = keylog
    return cctx, sctx


def generate(pki: PKI, tmp_path, *, messages=None, tls13_suite=None, key_update_after: int | None = None,
             session=None, contexts=None, close=True, **ctx_kw) -> Session:
    keylog = str(tmp_path / f"keys-{os.urandom(4).hex()}.log")
    cctx, sctx = contexts or make_contexts(pki, keylog=keylog, **ctx_kw)
    if contexts:
        cctx.keylog_filename = keylog
    pair = _Pair(cctx, sctx, session=session, tls13_suite=tls13_suite)
    pair.handshake()
    n_hs = len(pair.chunks)
    messages = messages if messages is not None else [
        ("c2s", b"POST / HTTP/1.1\r\nHost: vpn.example\r\n\r\n<config-auth/>"),
        ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        ("c2s", b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n"),
        ("s2c", b"HTTP/1.1 200 CONNECTED\r\n\r\n" + b"STF\x01\x00\x04\x00\x00" + b"\x45\x00\x00\x04"),
    ]
    sent: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
    for i, (direction, data) in enumerate(messages):
        if key_update_after is not None and i == key_update_after:
            p = OPENSSL.ssl_ptr(pair.client, cctx)
            assert OPENSSL.lib.SSL_key_update(p, 1) == 1  # update_requested: the server updates too
        pair.send(direction, data)
        sent[direction].append(data)
    app_chunks = {"c2s": [], "s2c": []}
    for direction, data in pair.chunks[n_hs:]:
        app_chunks[direction].append(data)
    exporter = exporter_ctx = None
    if OPENSSL is not None:
        p = OPENSSL.ssl_ptr(pair.client, cctx)
        exporter = OPENSSL.export(p, PSK_LABEL, None, 32)
        exporter_ctx = OPENSSL.export(p, b"EXPERIMENTAL-acflow", b"ctx", 20)
    version, cipher = pair.client.version(), pair.client.cipher()[0]
    sess = pair.client.session
    if close:
        pair.close()
    with open(keylog) as f:
        text = f.read()
    return Session(pair.chunks, text, sent, version, cipher, exporter, exporter_ctx, app_chunks, sess)


# --- driving TLSConnection ---------------------------------------------------------------------------
