"""TLS handshake message reassembly and parsing (RFC 8446 §4, RFC 5246 §7.4).

:class:`HandshakeReassembler` turns the handshake-content byte stream of one direction (messages may
span records, several may share one) into whole messages.  The ``parse_*`` functions decode message
bodies; they raise :class:`ParseError` on malformed input (callers turn that into events).  ClientHello
and ServerHello parsing take ``dtls=True`` for the DTLS forms (cookie / different version numbers) so
the DTLS dissector can reuse them.
"""

from __future__ import annotations

import struct

from .events import CertificateMsg, CertificateRequestMsg, ClientHello, ServerHello
from .keyschedule import digest

__all__ = [
    "HELLO_RETRY_REQUEST_RANDOM",
    "MAX_HANDSHAKE_MESSAGE",
    "HandshakeReassembler",
    "ParseError",
    "Reader",
    "parse_certificate",
    "parse_certificate_request",
    "parse_client_hello",
    "parse_encrypted_extensions",
    "parse_extensions",
    "parse_key_update",
    "parse_new_session_ticket",
    "parse_server_hello",
    "parse_server_key_exchange",
    "rsa_encrypted_premaster",
]

# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST_RANDOM = digest("sha256", b"HelloRetryRequest")
# Handshake messages may be up to 2^24-1 bytes; real ones (certificate chains) stay far below this bound.
MAX_HANDSHAKE_MESSAGE = 1 << 18

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_ENCRYPT_THEN_MAC = 22
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_EARLY_DATA = 42
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_CERTIFICATE_AUTHORITIES = 47
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xFF01


class ParseError(ValueError):
    pass


class Reader:
    """Bounds-checked big-endian reader over bytes."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ParseError(f"truncated: need {n} bytes at {self.pos}, have {self.end - self.pos}")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def vec8(self) -> bytes:
        return self.take(self.u8())

    def vec16(self) -> bytes:
        return self.take(self.u16())

    def vec24(self) -> bytes:
        return self.take(self.u24())

    def sub16(self) -> Reader:
        n = self.u16()
        if self.pos + n > self.end:
            raise ParseError("truncated vector")
        r = Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return r

    def done(self) -> bool:
        return self.pos >= self.end


class HandshakeReassembler:
    """Collects handshake bytes of one direction and yields whole messages ``(msg_type, raw)`` where raw
    is the complete message including its 4-byte header (what the transcript hashes)."""

    __slots__ = ("_buf", "max_len")

    def __init__(self, max_len: int = MAX_HANDSHAKE_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_len = max_len

    def reset(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data) -> list[tuple[int, bytes] | str]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes] | str] = []
        off = 0
        while len(buf) - off >= 4:
            msg_type = buf[off]
            length = int.from_bytes(buf[off + 1:off + 4], "big")
            if length > self.max_len:
                out.append(f"handshake message type {msg_type} claims {length} bytes (limit {self.max_len}); "
                           "dropping buffered handshake data")
                off = len(buf)
                break
            if len(buf) - off < 4 + length:
                break
            out.append((msg_type, bytes(buf[off:off + 4 + length])))
            off += 4 + length
        if off:
            del buf[:off]
        return out


def parse_extensions(r: Reader) -> tuple[tuple[int, bytes], ...]:
    """extensions<0..2^16-1> (absent entirely in old hellos)."""
    if r.done():
        return ()
    ext = r.sub16()
    out = []
    while not ext.done():
        etype = ext.u16()
        out.append((etype, ext.vec16()))
    return tuple(out)


def _u16_list(data: bytes) -> tuple[int, ...]:
    return tuple(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))


def _sni(data: bytes) -> str | None:
    # RFC 6066 §3: ServerNameList { NameType name_type; HostName host_name<1..2^16-1> }
    r = Reader(data).sub16()
    while not r.done():
        name_type = r.u8()
        name = r.vec16()
        if name_type == 0:
            return name.decode("ascii", "replace")
    return None


def _alpn(data: bytes) -> tuple[str, ...]:
    # RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1> of opaque ProtocolName<1..2^8-1>
    r = Reader(data).sub16()
    out = []
    while not r.done():
        out.append(r.vec8().decode("ascii", "replace"))
    return tuple(out)


def parse_client_hello(body, *, dtls: bool = False, direction: str = "c2s", ts: float = 0.0,
                       frame: int = 0) -> ClientHello:
    r = Reader(body)
    legacy_version = r.u16()
    random = r.take(32)
    session_id = r.vec8()
    cookie = r.vec8() if dtls else b""  # RFC 6347 §4.2.1
    suites = r.vec16()
    compression = r.vec8()
    exts = parse_extensions(r)
    f: dict = {}
    for etype, data in exts:
        try:
            if etype == EXT_SERVER_NAME:
                f["sni"] = _sni(data)
            elif etype == EXT_ALPN:
                f["alpn"] = _alpn(data)
            elif etype == EXT_SUPPORTED_VERSIONS:  # RFC 8446 §4.2.1: versions<2..254>
                f["supported_versions"] = _u16_list(Reader(data).vec8())
            elif etype == EXT_SUPPORTED_GROUPS:
                f["supported_groups"] = _u16_list(Reader(data).vec16())
            elif etype == EXT_SIGNATURE_ALGORITHMS:
                f["signature_algorithms"] = _u16_list(Reader(data).vec16())
            elif etype == EXT_KEY_SHARE:  # RFC 8446 §4.2.8: KeyShareEntry client_shares<0..2^16-1>
                ks = Reader(data).sub16()
                groups = []
                while not ks.done():
                    groups.append(ks.u16())
                    ks.vec16()
                f["key_share_groups"] = tuple(groups)
            elif etype == EXT_EXTENDED_MASTER_SECRET:
                f["extended_master_secret"] = True
            elif etype == EXT_ENCRYPT_THEN_MAC:
                f["encrypt_then_mac"] = True
            elif etype == EXT_SESSION_TICKET:
                f["session_ticket"] = bytes(data)
            elif etype == EXT_PRE_SHARED_KEY:  # RFC 8446 §4.2.11: identities<7..2^16-1>, binders
                ids = Reader(data).sub16()
                idents = []
                while not ids.done():
                    idents.append(ids.vec16())
                    ids.u32()  # obfuscated_ticket_age
                f["psk_identities"] = tuple(idents)
            elif etype == EXT_PSK_KEY_EXCHANGE_MODES:
                f["psk_key_exchange_modes"] = tuple(Reader(data).vec8())
            elif etype == EXT_EARLY_DATA:
                f["early_data"] = True
            elif etype == EXT_RENEGOTIATION_INFO:
                f["secure_renegotiation"] = True
        except ParseError:
            continue  # one malformed extension does not spoil the hello
    if 0x00FF in _u16_list(suites):  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3)
        f["secure_renegotiation"] = True
    return ClientHello(legacy_version=legacy_version, random=random, session_id=session_id,
                       cipher_suites=_u16_list(suites), compression_methods=tuple(compression), extensions=exts,
                       cookie=cookie, direction=direction, ts=ts, frame=frame, **f)


#: extensions whose presence changes from one connection of a program to the next: padding (its length follows the
#: hello's), session ticket, pre-shared key, early data, cookie
VARYING_EXTENSIONS = frozenset({21, 35, 41, 42, 44})


def client_fingerprint(ch: ClientHello) -> tuple:
    """What every ClientHello of one TLS client program has, whatever the connection (GREASE values, RFC 8701
    0x?A?A, and `VARYING_EXTENSIONS` left out): its cipher suites, extensions, ALPN, groups and signature
    algorithms — one for a VPN client's own connections, another for a browser or a TLS-inspecting firewall."""
    def real(values) -> frozenset:
        return frozenset(v for v in values if v & 0x0F0F != 0x0A0A)

    return (real(ch.cipher_suites), real(e for e, _ in ch.extensions) - VARYING_EXTENSIONS, tuple(ch.alpn),
            real(ch.supported_groups), real(ch.signature_algorithms))


def record_client_fingerprint(payload: bytes) -> tuple | None:
    """`client_fingerprint` of the ClientHello a TLS record starts (the bytes of a TCP segment), None when the
    record is not a ClientHello or the segment does not hold all of it."""
    if len(payload) < 9 or payload[0] != 22 or payload[5] != 1:
        return None
    n = int.from_bytes(payload[6:9], "big")
    if len(payload) < 9 + n:
        return None
    try:
        return client_fingerprint(parse_client_hello(bytes(payload[9:9 + n])))
    except (ParseError, ValueError, IndexError, struct.error):
        return None


def parse_server_hello(body, *, dtls: bool = False, direction: str = "s2c", ts: float = 0.0,
                       frame: int = 0) -> ServerHello:
    r = Reader(body)
    legacy_version = r.u16()
    random = r.take(32)
    session_id = r.vec8()
    suite = r.u16()
    compression = r.u8()
    exts = parse_extensions(r)
    version = legacy_version
    f: dict = {}
    for etype, data in exts:
        try:
            if etype == EXT_SUPPORTED_VERSIONS and len(data) == 2:  # RFC 8446 §4.2.1 selected_version
                version = int.from_bytes(data, "big")
            elif etype == EXT_ALPN:
                names = _alpn(data)
                f["alpn"] = names[0] if names else None
            elif etype == EXT_EXTENDED_MASTER_SECRET:
                f["extended_master_secret"] = True
            elif etype == EXT_ENCRYPT_THEN_MAC:
                f["encrypt_then_mac"] = True
            elif etype == EXT_SESSION_TICKET:
                f["session_ticket"] = True
            elif etype == EXT_PRE_SHARED_KEY and len(data) == 2:
                f["selected_psk"] = int.from_bytes(data, "big")
            elif etype == EXT_KEY_SHARE and len(data) >= 2:  # ServerHello: one entry; HRR: just the group
                f["key_share_group"] = int.from_bytes(data[:2], "big")
            elif etype == EXT_RENEGOTIATION_INFO:
                f["secure_renegotiation"] = True
        except ParseError:
            continue
    return ServerHello(legacy_version=legacy_version, random=random, session_id=session_id, cipher_suite=suite,
                       compression_method=compression, extensions=exts, version=version,
                       is_hello_retry_request=random == HELLO_RETRY_REQUEST_RANDOM, direction=direction, ts=ts,
                       frame=frame, **f)


def parse_certificate(body, *, tls13: bool, direction: str, encrypted: bool = False, ts: float = 0.0,
                      frame: int = 0) -> CertificateMsg:
    """RFC 5246 §7.4.2: ASN.1Cert certificate_list<0..2^24-1>;  RFC 8446 §4.4.2: opaque
    certificate_request_context<0..2^8-1>; CertificateEntry certificate_list<0..2^24-1> where an entry is
    cert_data<1..2^24-1> + extensions<0..2^16-1>."""
    r = Reader(body)
    context = r.vec8() if tls13 else b""
    n = r.u24()
    if r.pos + n > r.end:
        raise ParseError("certificate_list truncated")
    lst = Reader(r.data, r.pos, r.pos + n)
    certs = []
    while not lst.done():
        certs.append(lst.vec24())
        if tls13:
            lst.vec16()  # per-certificate extensions (OCSP, SCT)
    return CertificateMsg(direction=direction, certificates=tuple(certs), context=context, encrypted=encrypted,
                          ts=ts, frame=frame)


def _dn_list(r: Reader) -> tuple[bytes, ...]:
    # DistinguishedName certificate_authorities<0..2^16-1>, each opaque DistinguishedName<1..2^16-1> (DER)
    lst = r.sub16()
    out = []
    while not lst.done():
        out.append(lst.vec16())
    return tuple(out)


def parse_certificate_request(body, *, version: int, direction: str = "s2c", encrypted: bool = False,
                              ts: float = 0.0, frame: int = 0) -> CertificateRequestMsg:
    r = Reader(body)
    if version == 0x0304:
        # RFC 8446 §4.3.2: certificate_request_context<0..2^8-1>; Extension extensions<2..2^16-1>
        context = r.vec8()
        sig_algs: tuple[int, ...] = ()
        cas: tuple[bytes, ...] = ()
        for etype, data in parse_extensions(r):
            if etype == EXT_SIGNATURE_ALGORITHMS:
                sig_algs = _u16_list(Reader(data).vec16())
            elif etype == EXT_CERTIFICATE_AUTHORITIES:
                cas = _dn_list(Reader(data))
        return CertificateRequestMsg(direction=direction, signature_algorithms=sig_algs, ca_names=cas,
                                     context=context, encrypted=encrypted, ts=ts, frame=frame)
    # RFC 5246 §7.4.4: ClientCertificateType certificate_types<1..2^8-1>;
    # SignatureAndHashAlgorithm supported_signature_algorithms<2..2^16-2> (TLS 1.2 only);
    # DistinguishedName certificate_authorities<0..2^16-1>
    types = tuple(r.vec8())
    sig_algs = _u16_list(r.vec16()) if version in (0x0303, 0xFEFD) else ()
    cas = _dn_list(r)
    return CertificateRequestMsg(direction=direction, certificate_types=types, signature_algorithms=sig_algs,
                                 ca_names=cas, encrypted=encrypted, ts=ts, frame=frame)


def parse_server_key_exchange(body, kex: str) -> dict:
    """Summary of a ServerKeyExchange (RFC 8422 §5.4 ECDHE, RFC 5246 §7.4.3 DHE, RFC 4279 PSK hint)."""
    r = Reader(body)
    info: dict = {}
    if "PSK" in kex:
        hint = r.vec16()
        info["psk_identity_hint"] = hint.decode("utf-8", "replace")
    if kex.startswith("ECDHE"):
        curve_type = r.u8()
        info["curve_type"] = curve_type
        if curve_type == 3:  # named_curve
            info["named_group"] = r.u16()
            info["public_len"] = len(r.vec8())
    elif kex.startswith("DHE"):
        p = r.vec16()
        r.vec16()  # g
        r.vec16()  # Ys
        info["dh_bits"] = len(p.lstrip(b"\x00")) * 8
    if not r.done() and "PSK" not in kex and r.remaining() >= 4:
        # TLS 1.2 DigitallySigned: SignatureAndHashAlgorithm + signature<0..2^16-1>; older: just the signature
        info["signature_algorithm"] = int.from_bytes(body[r.pos:r.pos + 2], "big")
    return info


def rsa_encrypted_premaster(body) -> bytes:
    """RFC 5246 §7.4.7.1: EncryptedPreMasterSecret is a public-key-encrypted vector with a 2-byte length
    (TLS 1.0+); SSL 3.0 implementations omit the length."""
    if len(body) >= 2 and int.from_bytes(body[:2], "big") == len(body) - 2:
        return bytes(body[2:])
    return bytes(body)


def parse_new_session_ticket(body, *, tls13: bool) -> dict:
    """RFC 5077 §3.3 (lifetime hint + ticket) / RFC 8446 §4.6.1."""
    r = Reader(body)
    if tls13:
        lifetime = r.u32()
        age_add = r.u32()
        nonce = r.vec8()
        ticket = r.vec16()
        exts = parse_extensions(r)
        info = {"lifetime": lifetime, "age_add": age_add, "nonce": nonce, "ticket": ticket}
        for etype, data in exts:
            if etype == EXT_EARLY_DATA and len(data) == 4:
                info["max_early_data_size"] = int.from_bytes(data, "big")
        return info
    return {"lifetime": r.u32(), "ticket": r.vec16()}


def parse_key_update(body) -> dict:
    """RFC 8446 §4.6.3: KeyUpdateRequest request_update (0 not requested, 1 requested)."""
    r = Reader(body)
    return {"update_requested": r.u8() == 1}


def parse_encrypted_extensions(body) -> dict:
    r = Reader(body)
    exts = parse_extensions(r)
    info: dict = {"extensions": tuple(t for t, _ in exts)}
    for etype, data in exts:
        try:
            if etype == EXT_ALPN:
                names = _alpn(data)
                info["alpn"] = names[0] if names else None
            elif etype == EXT_EARLY_DATA:
                info["early_data"] = True
            elif etype == EXT_SERVER_NAME:
                info["server_name_ack"] = True
        except ParseError:
            continue
    return info
