"""Handshake message parsing, reassembly and record framing (synthetic messages built here)."""

from __future__ import annotations

import struct

import pytest

from dissectors.keylog import KeyStore
from dissectors.tls import (
    ApplicationData,
    CertificateRequestMsg,
    ClientHello,
    HandshakeMessage,
    RecordError,
    ServerHello,
    TLSConnection,
)
from dissectors.tls.handshake import (
    HELLO_RETRY_REQUEST_RANDOM,
    HandshakeReassembler,
    ParseError,
    parse_certificate,
    parse_certificate_request,
    parse_client_hello,
    parse_new_session_ticket,
    parse_server_hello,
    parse_server_key_exchange,
    rsa_encrypted_premaster,
)
from dissectors.tls.record import MAX_CIPHERTEXT, RecordReader


def v8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def v16(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def v24(b: bytes) -> bytes:
    return len(b).to_bytes(3, "big") + b


def ext(t: int, data: bytes) -> bytes:
    return struct.pack("!H", t) + v16(data)


def hs(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + v24(body)


def record(ct: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", ct, version, len(body)) + body


def client_hello(random=b"\x01" * 32, sid=b"", exts=b"", suites=(0x1301, 0xC02F, 0x00FF), dtls_cookie=None):
    body = struct.pack("!H", 0x0303) + random + v8(sid)
    if dtls_cookie is not None:
        body += v8(dtls_cookie)
    body += v16(b"".join(struct.pack("!H", s) for s in suites)) + v8(b"\x00") + v16(exts)
    return body


CH_EXTS = b"".join([
    ext(0, v16(b"\x00" + v16(b"vpn.example.com"))),
    ext(16, v16(v8(b"h2") + v8(b"http/1.1"))),
    ext(43, v8(b"\x7a\x7a\x03\x04\x03\x03")),
    ext(10, v16(b"\x00\x1d\x00\x17")),
    ext(51, v16(b"\x00\x1d" + v16(b"K" * 32) + b"\x00\x17" + v16(b"P" * 65))),
    ext(13, v16(b"\x04\x03\x08\x04")),
    ext(23, b""),
    ext(22, b""),
    ext(35, b"TICKET"),
    ext(45, v8(b"\x01")),
    ext(42, b""),
    ext(41, v16(v16(b"identity-1") + b"\x00\x00\x00\x01" + v16(b"id2") + b"\x00\x00\x00\x02") + v16(v8(b"B" * 32))),
    ext(0xFF01, b"\x00"),
    ext(0x4A4A, b""),  # GREASE
    ext(0, b"\x00"),  # malformed duplicate SNI: ignored, not fatal
])


def test_client_hello_extensions():
    ch = parse_client_hello(client_hello(sid=b"S" * 32, exts=CH_EXTS), ts=1.5, frame=7)
    assert ch.sni == "vpn.example.com" and ch.alpn == ("h2", "http/1.1")
    assert ch.supported_versions == (0x7A7A, 0x0304, 0x0303) and ch.offers_tls13 and ch.max_version == 0x0304
    assert ch.supported_groups == (29, 23) and ch.key_share_groups == (29, 23)
    assert ch.key_share_group_names == ("x25519", "secp256r1")
    assert ch.signature_algorithms == (0x0403, 0x0804)
    assert ch.extended_master_secret and ch.encrypt_then_mac and ch.session_ticket == b"TICKET"
    assert ch.psk_identities == (b"identity-1", b"id2") and ch.psk_key_exchange_modes == (1,) and ch.early_data
    assert ch.secure_renegotiation and ch.session_id == b"S" * 32
    assert ch.cipher_suite_names == ("TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                     "TLS_EMPTY_RENEGOTIATION_INFO_SCSV")
    assert "GREASE" in ch.extension_names and (ch.ts, ch.frame) == (1.5, 7)


def test_client_hello_minimal_and_dtls_cookie():
    ch = parse_client_hello(client_hello()[:-2])  # no extensions block at all (SSL 3.0 style)
    assert ch.extensions == () and ch.sni is None and not ch.offers_tls13
    ch = parse_client_hello(client_hello(dtls_cookie=b"COOKIE"), dtls=True)
    assert ch.cookie == b"COOKIE"
    with pytest.raises(ParseError):
        parse_client_hello(client_hello()[:40])


def test_server_hello_and_hrr():
    body = struct.pack("!H", 0x0303) + b"\x02" * 32 + v8(b"") + struct.pack("!H", 0x1302) + b"\x00" + v16(
        ext(43, b"\x03\x04") + ext(51, b"\x00\x1d" + v16(b"K" * 32)) + ext(41, b"\x00\x00"))
    sh = parse_server_hello(body)
    assert sh.version == 0x0304 and sh.version_name == "TLS 1.3" and sh.key_share_group == 29
    assert sh.selected_psk == 0 and not sh.is_hello_retry_request and sh.cipher_suite_name == "TLS_AES_256_GCM_SHA384"
    hrr = struct.pack("!H", 0x0303) + HELLO_RETRY_REQUEST_RANDOM + v8(b"") + struct.pack("!H", 0x1301) + b"\x00" + v16(
        ext(43, b"\x03\x04") + ext(51, b"\x00\x17"))
    sh = parse_server_hello(hrr)
    assert sh.is_hello_retry_request and sh.key_share_group == 23
    body12 = struct.pack("!H", 0x0303) + b"\x03" * 32 + v8(b"I" * 32) + struct.pack("!H", 0xC030) + b"\x00" + v16(
        ext(23, b"") + ext(22, b"") + ext(35, b"") + ext(16, v16(v8(b"http/1.1"))) + ext(0xFF01, b"\x00"))
    sh = parse_server_hello(body12)
    assert (sh.version, sh.extended_master_secret, sh.encrypt_then_mac, sh.session_ticket, sh.alpn,
            sh.secure_renegotiation) == (0x0303, True, True, True, "http/1.1", True)


def test_certificate_forms():
    c1, c2 = b"\x30\x03\x02\x01\x01", b"\x30\x03\x02\x01\x02"
    m = parse_certificate(v24(v24(c1) + v24(c2)), tls13=False, direction="s2c")
    assert m.certificates == (c1, c2) and m.context == b""
    m = parse_certificate(v8(b"ctx") + v24(v24(c1) + v16(b"") + v24(c2) + v16(ext(5, b"ocsp"))), tls13=True,
                          direction="c2s", encrypted=True)
    assert m.certificates == (c1, c2) and m.context == b"ctx" and m.encrypted and m.direction == "c2s"
    assert parse_certificate(v24(b""), tls13=False, direction="c2s").certificates == ()  # empty client cert
    with pytest.raises(ParseError):
        parse_certificate(v24(v24(c1))[:-1], tls13=False, direction="s2c")


def test_certificate_request_ca_names():
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    dn1 = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp Root CA")]).public_bytes()
    dn2 = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]).public_bytes()
    body12 = v8(b"\x01\x40") + v16(b"\x04\x01\x08\x04") + v16(v16(dn1) + v16(dn2))
    m = parse_certificate_request(body12, version=0x0303)
    assert m.certificate_types == (1, 64) and m.signature_algorithms == (0x0401, 0x0804)
    assert m.ca_names == (dn1, dn2)
    assert x509.Name.from_rfc4514_string("CN=Corp Root CA").public_bytes() == m.ca_names[0]
    m = parse_certificate_request(v8(b"\x01") + v16(v16(dn1)), version=0x0301)  # TLS 1.0: no sig algs
    assert m.signature_algorithms == () and m.ca_names == (dn1,)
    body13 = v8(b"") + v16(ext(13, v16(b"\x08\x04")) + ext(47, v16(v16(dn2))))
    m = parse_certificate_request(body13, version=0x0304, encrypted=True)
    assert m.ca_names == (dn2,) and m.signature_algorithms == (0x0804,) and m.encrypted


def test_other_messages():
    info = parse_server_key_exchange(b"\x03\x00\x1d" + v8(b"K" * 32) + b"\x08\x04" + v16(b"S" * 256), "ECDHE_RSA")
    assert info == {"curve_type": 3, "named_group": 29, "public_len": 32, "signature_algorithm": 0x0804}
    info = parse_server_key_exchange(v16(b"\x00" + b"\xff" * 256) + v16(b"\x02") + v16(b"Y" * 256), "DHE_RSA")
    assert info["dh_bits"] == 2048
    assert parse_server_key_exchange(v16(b"hint"), "PSK") == {"psk_identity_hint": "hint"}
    assert rsa_encrypted_premaster(v16(b"E" * 256)) == b"E" * 256
    assert rsa_encrypted_premaster(b"E" * 128) == b"E" * 128  # SSL 3.0: no length
    assert parse_new_session_ticket(b"\x00\x00\x1c\x20" + v16(b"T" * 100), tls13=False) == {
        "lifetime": 7200, "ticket": b"T" * 100}
    nst = parse_new_session_ticket(b"\x00\x00\x00\x1e\x01\x02\x03\x04" + v8(b"\x00") + v16(b"TT") + v16(
        ext(42, b"\x00\x00\x40\x00")), tls13=True)
    assert nst["max_early_data_size"] == 0x4000 and nst["ticket"] == b"TT" and nst["age_add"] == 0x01020304


def test_handshake_reassembly_across_records():
    r = HandshakeReassembler()
    m1, m2, m3 = hs(1, b"A" * 10), hs(14, b""), hs(11, b"C" * 70000)
    data = m1 + m2 + m3
    out = []
    for i in range(0, len(data), 999):
        out += r.feed(data[i:i + 999])
    assert out == [(1, m1), (14, m2), (11, m3)] and r.pending == 0
    r = HandshakeReassembler(max_len=100)
    out = r.feed(hs(11, b"x" * 101) + m2)
    assert len(out) == 1 and isinstance(out[0], str) and r.pending == 0


def test_record_reader_framing_and_resync():
    r = RecordReader()
    stream = record(22, b"hello") + record(23, b"x" * 300) + record(21, b"\x01\x00")
    for i in range(len(stream)):
        r.feed(stream[i:i + 1], frame=i + 1)
    recs = []
    while (x := r.next()) is not None:
        recs.append(x)
    assert [(x.content_type, bytes(x.fragment)) for x in recs] == [(22, b"hello"), (23, b"x" * 300),
                                                                    (21, b"\x01\x00")]
    assert [x.first_frame for x in recs] == [1, 11, 316] and [x.offset for x in recs] == [0, 10, 315]
    # a header claiming too much: error, then resync on the next plausible header chain
    r = RecordReader()
    r.set_expected_version(0x0303)
    r.feed(struct.pack("!BHH", 23, 0x0303, MAX_CIPHERTEXT + 1) + b"junk\x17\x03" + record(23, b"A" * 20)
           + record(23, b"B" * 20))
    err = r.next()
    assert isinstance(err, str) and "exceeds" in err
    r.require_chain = True
    rec = r.next()
    assert rec.resync and bytes(rec.fragment) == b"A" * 20 and rec.chain_ok
    rec = r.next()
    assert not rec.resync and bytes(rec.fragment) == b"B" * 20
    # gap: stream offsets keep counting the lost bytes
    r.feed(record(23, b"C" * 50)[:20])
    r.gap(1000)
    r.feed(b"zz" + record(23, b"D" * 10) + record(23, b"E" * 10))
    rec = r.next()
    assert rec.resync and bytes(rec.fragment) == b"D" * 10 and rec.offset == 61 + 20 + 1000 + 2
    assert r.pending_record() == (15, 15)  # E still buffered
    rec = r.next()
    assert not rec.resync and bytes(rec.fragment) == b"E" * 10
    assert r.pending_record() is None and r.next() is None
    r.feed(record(23, b"F" * 10)[:7])
    assert r.pending_record() == (7, 15)


def test_connection_handshake_flow_without_keys():
    """A synthetic TLS 1.2 handshake in clear: events, attributes, transcript-independent parts."""
    conn = TLSConnection(KeyStore())
    ch = hs(1, client_hello(exts=ext(0, v16(b"\x00" + v16(b"gw.example"))) + ext(23, b"")))
    sh_body = struct.pack("!H", 0x0303) + b"\x02" * 32 + v8(b"I" * 32) + struct.pack("!H", 0xC02F) + b"\x00" + v16(
        ext(23, b""))
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp Root CA")]).public_bytes()
    flight = (hs(2, sh_body) + hs(11, v24(v24(b"\x30\x00"))) + hs(12, b"\x03\x00\x17" + v8(b"P" * 65) + b"\x04\x01"
              + v16(b"S" * 256)) + hs(13, v8(b"\x01") + v16(b"\x04\x01") + v16(v16(dn))) + hs(14, b""))
    ev = conn.feed("c2s", record(22, ch, 0x0301), 1.0, 1)
    assert isinstance(ev[0], ClientHello) and conn.sni == "gw.example"
    ev = conn.feed("s2c", record(22, flight[:100]) + record(22, flight[100:]), 2.0, 2)
    kinds = [type(e).__name__ for e in ev]
    assert kinds == ["ServerHello", "CertificateMsg", "HandshakeMessage", "CertificateRequestMsg", "HandshakeMessage"]
    assert isinstance(ev[0], ServerHello) and conn.cipher_suite.name == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert isinstance(ev[3], CertificateRequestMsg) and ev[3].ca_names == (dn,)
    assert conn.server_certificates == (b"\x30\x00",) and conn.session_id == b"I" * 32
    ev = conn.feed("c2s", record(22, hs(11, v24(b"")) + hs(16, v8(b"Q" * 65))) + record(20, b"\x01")
                   + record(22, b"E" * 40), 3.0, 3)
    assert [type(e).__name__ for e in ev] == ["CertificateMsg", "HandshakeMessage", "ChangeCipherSpec",
                                              "DecryptionStatus", "HandshakeMessage"]
    assert not ev[3].ok and "no CLIENT_RANDOM line" in ev[3].reason and ev[3].direction == "c2s"
    assert isinstance(ev[4], HandshakeMessage) and ev[4].name == "encrypted_handshake_message"
    ev = conn.feed("s2c", record(21, b"\x02\x28"), 4.0, 4)  # plaintext alert... after CCS? no: s2c still clear
    assert ev[0].name == "handshake_failure" and ev[0].fatal and not ev[0].encrypted
    assert conn.extended_master_secret and not conn.tls13
    assert conn.export_keying_material(b"x", None, 8) is None


def test_application_data_in_clear_is_not_trusted():
    conn = TLSConnection()
    ev = conn.feed("s2c", record(23, b"GET / HTTP/1.1\r\n"))
    assert not any(isinstance(e, ApplicationData) for e in ev)
    assert "mid-session" in ev[0].reason


def test_heartbeat_and_bad_alert():
    conn = TLSConnection()
    ev = conn.feed("c2s", record(24, b"\x01\x00\x10" + b"x" * 16) + record(21, b"\x01"))
    assert ev[0].content_type == 24 and ev[0].length == 19
    # a 1-byte alert record before any handshake: treated as an encrypted one (capture began mid-session)
    assert [e.name for e in ev if hasattr(e, "name")] == ["encrypted_alert"]
    assert not any(isinstance(e, RecordError) for e in ev)


def _seal13(secret: bytes, seq: int, inner_type: int, content: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from dissectors.tls import keyschedule as ks

    key, iv = ks.traffic_key_iv("sha256", secret, 16)
    inner = content + bytes([inner_type]) + b"\x00" * 3  # with some padding (RFC 8446 §5.4)
    hdr = struct.pack("!BHH", 23, 0x0303, len(inner) + 16)
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
    return hdr + AESGCM(key).encrypt(nonce, inner, hdr)


def test_tls13_early_data_synthetic():
    cr = b"\x07" * 32
    sec = {name: bytes([i]) * 32 for i, name in enumerate(
        ["CLIENT_EARLY_TRAFFIC_SECRET", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
         "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"], 1)}
    keys = KeyStore()
    for label, value in sec.items():
        keys.add_secret(label, cr, value)
    conn = TLSConnection(keys)
    exts = ext(43, v8(b"\x03\x04")) + ext(42, b"") + ext(41, v16(v16(b"ticket") + b"\x00" * 4) + v16(v8(b"B" * 32)))
    ev = conn.feed("c2s", record(22, hs(1, client_hello(random=cr, suites=(0x1301, 0x1302), exts=exts)), 0x0301)
                   + _seal13(sec["CLIENT_EARLY_TRAFFIC_SECRET"], 0, 23, b"GET /early"))
    assert ev[0].early_data and [e.data for e in ev if isinstance(e, ApplicationData)] == [b"GET /early"]
    sh = struct.pack("!H", 0x0303) + b"\x02" * 32 + v8(b"") + struct.pack("!H", 0x1301) + b"\x00" + v16(
        ext(43, b"\x03\x04") + ext(41, b"\x00\x00"))
    ee = hs(8, v16(ext(42, b"")))
    ev = conn.feed("s2c", record(22, hs(2, sh)) + record(20, b"\x01")
                   + _seal13(sec["SERVER_HANDSHAKE_TRAFFIC_SECRET"], 0, 22, ee + hs(20, b"F" * 32))
                   + _seal13(sec["SERVER_TRAFFIC_SECRET_0"], 0, 23, b"HTTP/1.1 200 OK"))
    names = [getattr(e, "name", type(e).__name__) for e in ev]
    assert "encrypted_extensions" in names and "finished" in names
    assert [e.data for e in ev if isinstance(e, ApplicationData)] == [b"HTTP/1.1 200 OK"]
    # more 0-RTT data, EndOfEarlyData (early key), client Finished (handshake key), then application data
    ev = conn.feed("c2s", _seal13(sec["CLIENT_EARLY_TRAFFIC_SECRET"], 1, 23, b"more early")
                   + _seal13(sec["CLIENT_EARLY_TRAFFIC_SECRET"], 2, 22, hs(5, b""))
                   + record(20, b"\x01")
                   + _seal13(sec["CLIENT_HANDSHAKE_TRAFFIC_SECRET"], 0, 22, hs(20, b"C" * 32))
                   + _seal13(sec["CLIENT_TRAFFIC_SECRET_0"], 0, 23, b"after"))
    assert [e.data for e in ev if isinstance(e, ApplicationData)] == [b"more early", b"after"]
    assert [e.name for e in ev if isinstance(e, HandshakeMessage)] == ["end_of_early_data", "finished"]
    assert not any(isinstance(e, RecordError) for e in ev)
    assert not [e for e in ev if getattr(e, "ok", True) is False]


def test_tls12_deflate_compression_synthetic():
    import zlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from dissectors.tls import keyschedule as ks

    cr, sr, ms = b"\x05" * 32, b"\x06" * 32, b"\x09" * 48
    keys = KeyStore()
    keys.add_secret("CLIENT_RANDOM", cr, ms)
    block = ks.key_block(ks.TLS12, "sha256", ms, cr, sr, 40)
    skey, siv = block[16:32], block[36:40]
    conn = TLSConnection(keys)
    body = struct.pack("!H", 0x0303) + cr + v8(b"") + v16(b"\xc0\x2f") + v8(b"\x01\x00")
    conn.feed("c2s", record(22, hs(1, body)))
    sh = struct.pack("!H", 0x0303) + sr + v8(b"") + struct.pack("!H", 0xC02F) + b"\x01"  # DEFLATE (RFC 3749)
    conn.feed("s2c", record(22, hs(2, sh) + hs(14, b"")))
    conn.feed("c2s", record(22, hs(16, v8(b"P" * 65))) + record(20, b"\x01"))
    comp = zlib.compressobj()
    out = conn.feed("s2c", record(20, b"\x01"))
    for seq, (ct, plain) in enumerate([(22, hs(20, b"V" * 12)), (23, b"hello " * 50), (23, b"hello again")]):
        data = comp.compress(plain) + comp.flush(zlib.Z_SYNC_FLUSH)
        explicit = seq.to_bytes(8, "big")
        frag = explicit + AESGCM(skey).encrypt(siv + explicit, data, struct.pack("!QBHH", seq, ct, 0x0303, len(data)))
        out += conn.feed("s2c", record(ct, frag))
    assert [e.data for e in out if isinstance(e, ApplicationData)] == [b"hello " * 50, b"hello again"]
    assert any(isinstance(e, HandshakeMessage) and e.name == "finished" for e in out)
