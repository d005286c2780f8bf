"""TLSConnection against real TLS bytes: Python's ssl module (OpenSSL) client and server talk over
ssl.MemoryBIO pairs in this process; we record exactly what each side writes, the key log OpenSSL writes
(SSLContext.keylog_filename), and check that TLSConnection recovers the same plaintext.

OpenSSL's own SSL_export_keying_material / SSL_key_update / SSL_set_ciphersuites are reached through ctypes
(the SSL* behind an SSLObject, validated against SSL_get_SSL_CTX before use) to pick TLS 1.3 suites, force
KeyUpdates and provide an independent exporter oracle; tests needing them skip if that is not possible.
"""

from __future__ import annotations

import ctypes
import os
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.keylog import KeyStore, parse_keylog
from dissectors.tls import (
    Alert,
    ApplicationData,
    CertificateMsg,
    CertificateRequestMsg,
    ChangeCipherSpec,
    ClientHello,
    DecryptionStatus,
    EncryptedRecord,
    HandshakeMessage,
    RecordError,
    ServerHello,
    SessionCache,
    TLSConnection,
)

from .tls_sessions import (
    OP_NO_ENCRYPT_THEN_MAC,
    OP_NO_EXTENDED_MASTER_SECRET,
    OPENSSL,
    PSK_LABEL,
    Session,
    _Pair,
    generate,
    make_contexts,
    needs_openssl,
    pki,  # noqa: F401 - a pytest fixture
)


def run(conn: TLSConnection, chunks, split: int | None = None) -> list:
    """Feed chunks in capture order (optionally re-split into pieces of ``split`` bytes)."""
    events = []
    frame = 0
    for direction, data in chunks:
        pieces = [data] if not split else [data[i:i + split] for i in range(0, len(data), split)]
        for piece in pieces:
            frame += 1
            events += conn.feed(direction, piece, 1000.0 + frame / 100, frame)
    return events


def app_data(events, direction: str) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ApplicationData) and e.direction == direction)


def statuses(events, direction: str | None = None) -> list[DecryptionStatus]:
    return [e for e in events if isinstance(e, DecryptionStatus) and (direction is None or e.direction == direction)]


def no_internal_errors(events) -> None:
    bad = [e for e in events if isinstance(e, RecordError) and "internal error" in e.message]
    assert not bad, bad


def check_decrypts(s: Session, events) -> None:
    no_internal_errors(events)
    for direction in ("c2s", "s2c"):
        assert app_data(events, direction) == b"".join(s.sent[direction]), direction
    assert not [e for e in statuses(events) if not e.ok], statuses(events)
    assert not [e for e in events if isinstance(e, (EncryptedRecord, RecordError))]


def keystore(s: Session) -> KeyStore:
    entries, errors = parse_keylog(s.keylog)
    assert not errors
    return KeyStore(entries)


# --- TLS 1.3 -----------------------------------------------------------------------------------------

TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]


@needs_openssl
@pytest.mark.parametrize("suite", TLS13_SUITES)
def test_tls13_decrypts(pki, tmp_path, suite):
    s = generate(pki, tmp_path, tls13_suite=suite)
    assert s.version == "TLSv1.3" and s.cipher == suite
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks)
    check_decrypts(s, events)
    assert conn.version == 0x0304 and conn.tls13
    assert conn.cipher_suite.name == suite and conn.cipher_suite.id in (0x1301, 0x1302, 0x1303)
    assert conn.sni == "vpn.example"
    assert conn.decrypting == {"c2s": True, "s2c": True}
    certs = [e for e in events if isinstance(e, CertificateMsg)]
    assert len(certs) == 1 and certs[0].encrypted and certs[0].direction == "s2c"
    assert certs[0].certificates[0] == pki.server_cert.public_bytes(serialization.Encoding.DER)
    names = [e.name for e in events if isinstance(e, HandshakeMessage)]
    assert names[:3] == ["encrypted_extensions", "certificate_verify", "finished"]
    assert "new_session_ticket" in names
    closes = [e for e in events if isinstance(e, Alert)]
    assert [(a.direction, a.name, a.encrypted) for a in closes][:1] == [("c2s", "close_notify", True)]
    # RFC 8446 §7.5 exporter against OpenSSL's SSL_export_keying_material
    assert conn.export_keying_material(PSK_LABEL, None, 32) == s.exporter
    assert conn.export_keying_material(b"EXPERIMENTAL-acflow", b"ctx", 20) == s.exporter_ctx


def test_tls13_default_suite_and_small_pieces(pki, tmp_path):
    s = generate(pki, tmp_path)
    assert s.version == "TLSv1.3"
    for split in (1, 7, 1000):
        events = run(TLSConnection(keystore(s)), s.chunks, split=split)
        check_decrypts(s, events)


def test_tls13_frames_and_timestamps(pki, tmp_path):
    s = generate(pki, tmp_path)
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks, split=50)
    for e in events:
        assert e.frame >= 1 and e.ts > 1000.0
    ads = [e for e in events if isinstance(e, ApplicationData)]
    assert any(a.first_frame < a.frame for a in ads)  # records spanning several pieces
    assert all(a.first_frame <= a.frame for a in ads)


@needs_openssl
def test_tls13_key_update(pki, tmp_path):
    msgs = [("c2s", b"a" * 100), ("s2c", b"b" * 100), ("c2s", b"c" * 200), ("s2c", b"d" * 300),
            ("c2s", b"e" * 10), ("s2c", b"f" * 10)]
    s = generate(pki, tmp_path, messages=msgs, key_update_after=2)
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks)
    check_decrypts(s, events)
    kus = [e for e in events if isinstance(e, HandshakeMessage) and e.name == "key_update"]
    assert [(k.direction, k.info["update_requested"]) for k in kus] == [("c2s", True), ("s2c", False)]
    oks = [e.reason for e in statuses(events) if e.ok]
    assert any("generation 1" in r for r in oks)


def test_tls13_client_certificate_request(pki, tmp_path):
    s = generate(pki, tmp_path, client_cert=True)
    events = run(TLSConnection(keystore(s)), s.chunks)
    check_decrypts(s, events)
    crs = [e for e in events if isinstance(e, CertificateRequestMsg)]
    assert len(crs) == 1 and crs[0].encrypted and crs[0].signature_algorithms
    certs = [e for e in events if isinstance(e, CertificateMsg)]
    assert [c.direction for c in certs] == ["s2c", "c2s"]
    client_cert = x509.load_der_x509_certificate(certs[1].certificates[0])
    assert client_cert.subject.rfc4514_string() == "CN=user1"


def test_tls13_partial_keylog_app_secrets_only(pki, tmp_path):
    s = generate(pki, tmp_path)
    lines = [ln for ln in s.keylog.splitlines() if "HANDSHAKE" not in ln]
    conn = TLSConnection(KeyStore(parse_keylog("\n".join(lines))[0]))
    events = run(conn, s.chunks)
    no_internal_errors(events)
    # handshake records are lost, application data is not
    assert app_data(events, "c2s") == b"".join(s.sent["c2s"])
    assert app_data(events, "s2c") == b"".join(s.sent["s2c"])
    bad = [e for e in statuses(events) if not e.ok]
    assert bad and "SERVER_HANDSHAKE_TRAFFIC_SECRET" in bad[0].reason
    assert any(isinstance(e, EncryptedRecord) for e in events)
    assert not any(isinstance(e, CertificateMsg) for e in events)
    assert conn.decrypting == {"c2s": True, "s2c": True}


def test_tls13_partial_keylog_handshake_secrets_only(pki, tmp_path):
    s = generate(pki, tmp_path)
    lines = [ln for ln in s.keylog.splitlines() if "HANDSHAKE" in ln]
    conn = TLSConnection(KeyStore(parse_keylog("\n".join(lines))[0]))
    events = run(conn, s.chunks)
    no_internal_errors(events)
    assert any(isinstance(e, CertificateMsg) for e in events)  # handshake still visible
    assert app_data(events, "c2s") == b"" and app_data(events, "s2c") == b""
    bad = [e for e in statuses(events) if not e.ok]
    assert {e.direction for e in bad} == {"c2s", "s2c"}
    assert any("CLIENT_TRAFFIC_SECRET_0" in e.reason for e in bad)
    assert conn.export_keying_material(PSK_LABEL, None, 32) is None  # no EXPORTER_SECRET


def test_tls13_no_keys(pki, tmp_path):
    s = generate(pki, tmp_path)
    conn = TLSConnection(KeyStore())
    events = run(conn, s.chunks)
    no_internal_errors(events)
    assert isinstance(events[0], ClientHello) and any(isinstance(e, ServerHello) for e in events)
    bad = statuses(events)
    assert bad and not any(e.ok for e in bad)
    assert conn.client_random.hex() in bad[0].reason
    assert "no SERVER_HANDSHAKE_TRAFFIC_SECRET and SERVER_TRAFFIC_SECRET_0" in bad[0].reason
    enc = [e for e in events if isinstance(e, EncryptedRecord)]
    assert enc and all(e.content_type == 23 for e in enc)
    assert conn.export_keying_material(PSK_LABEL, None, 32) is None


def test_tls13_wrong_key(pki, tmp_path):
    s = generate(pki, tmp_path)
    bad_log = [f"{e.label} {e.key_id.hex()} {os.urandom(len(e.secret)).hex()}" for e in parse_keylog(s.keylog)[0]]
    conn = TLSConnection(KeyStore(parse_keylog("\n".join(bad_log))[0]))
    events = run(conn, s.chunks)
    no_internal_errors(events)
    bad = [e for e in statuses(events) if not e.ok]
    assert bad and all("wrong key for client random" in e.reason for e in bad)
    assert app_data(events, "c2s") == b""
    assert any(isinstance(e, ServerHello) for e in events)


def test_tls13_truncated_mid_record(pki, tmp_path):
    s = generate(pki, tmp_path)
    chunks = list(s.chunks)
    # drop the tail of the last server application-data record
    last = max(i for i, (d, _) in enumerate(chunks) if d == "s2c")
    chunks[last] = ("s2c", chunks[last][1][:-7])
    conn = TLSConnection(keystore(s))
    events = run(conn, chunks[:last + 1])
    no_internal_errors(events)
    assert app_data(events, "c2s") == b"".join(s.sent["c2s"])
    tail = conn.close(2000.0, 999)
    assert tail and isinstance(tail[0], RecordError) and "stream ended inside a record" in tail[0].message


# --- TLS 1.2 -----------------------------------------------------------------------------------------

TLS12 = ssl.TLSVersion.TLSv1_2
TLS12_CASES = [
    ("ECDHE-RSA-AES128-GCM-SHA256", 0, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", 0, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", 0, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-AES128-SHA256", 0, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),  # encrypt-then-MAC
    ("ECDHE-RSA-AES128-SHA256", OP_NO_ENCRYPT_THEN_MAC, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    ("ECDHE-RSA-AES256-SHA384", OP_NO_ENCRYPT_THEN_MAC, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    ("ECDHE-RSA-AES256-SHA", 0, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    ("AES128-CCM", 0, "TLS_RSA_WITH_AES_128_CCM"),
    ("AES256-GCM-SHA384", 0, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-AES128-GCM-SHA256", OP_NO_EXTENDED_MASTER_SECRET, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
]


@pytest.mark.parametrize("openssl_cipher,options,iana", TLS12_CASES)
def test_tls12_keylog(pki, tmp_path, openssl_cipher, options, iana):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers=openssl_cipher, options=options)
    assert s.version == "TLSv1.2"
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks, split=333)
    check_decrypts(s, events)
    assert conn.version == 0x0303 and conn.cipher_suite.name == iana
    assert conn.master_secret is not None and conn.key_source == "key log CLIENT_RANDOM"
    assert conn.extended_master_secret == (not options & OP_NO_EXTENDED_MASTER_SECRET)
    assert conn.encrypt_then_mac == ("CBC" in iana and not options & OP_NO_ENCRYPT_THEN_MAC)
    assert [e.direction for e in events if isinstance(e, ChangeCipherSpec)] == ["c2s", "s2c"]
    fins = [e for e in events if isinstance(e, HandshakeMessage) and e.name == "finished"]
    assert [(f.direction, f.encrypted, f.length) for f in fins] == [("c2s", True, 12), ("s2c", True, 12)]
    if s.exporter is not None:  # RFC 5705 against OpenSSL
        assert conn.export_keying_material(PSK_LABEL, None, 32) == s.exporter
        assert conn.export_keying_material(b"EXPERIMENTAL-acflow", b"ctx", 20) == s.exporter_ctx


@pytest.mark.parametrize("options", [0, OP_NO_EXTENDED_MASTER_SECRET, OP_NO_ENCRYPT_THEN_MAC])
def test_tls12_rsa_key_exchange_with_private_key_only(pki, tmp_path, options):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="AES256-SHA", options=options)
    keys = KeyStore()  # NO key log
    keys.add_rsa_private_key(pki.other_key)  # a non-matching key is ignored
    keys.add_rsa_private_key(pki.server_key)
    conn = TLSConnection(keys)
    events = run(conn, s.chunks)
    check_decrypts(s, events)
    assert conn.cipher_suite.name == "TLS_RSA_WITH_AES_256_CBC_SHA"
    assert conn.key_source == "RSA private key"
    assert conn.extended_master_secret == (not options & OP_NO_EXTENDED_MASTER_SECRET)
    # the derived master secret equals OpenSSL's and is now exportable for Wireshark
    want = keystore(s).master_secret(conn.client_random)
    assert conn.master_secret == want
    assert f"CLIENT_RANDOM {conn.client_random.hex()} {want.hex()}" in keys.to_keylog_lines()
    if s.exporter is not None:
        assert conn.export_keying_material(PSK_LABEL, None, 32) == s.exporter


def test_tls12_rsa_wrong_private_key(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="AES128-GCM-SHA256")
    keys = KeyStore()
    keys.add_rsa_private_key(pki.other_key)
    events = run(TLSConnection(keys), s.chunks)
    no_internal_errors(events)
    bad = statuses(events)
    assert bad and not any(e.ok for e in bad)
    assert "no RSA private key matches the server certificate" in bad[0].reason
    assert [e.name for e in events if isinstance(e, Alert)] == ["encrypted_alert", "encrypted_alert"]


def test_tls12_rsa_key_for_ecdhe_suite(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    keys = KeyStore()
    keys.add_rsa_private_key(pki.server_key)
    conn = TLSConnection(keys)
    events = run(conn, s.chunks)
    no_internal_errors(events)
    bad = statuses(events)
    assert {e.direction for e in bad} == {"c2s", "s2c"} and not any(e.ok for e in bad)
    assert "cannot help" in bad[0].reason and "ECDHE_RSA" in bad[0].reason
    assert conn.client_random.hex() in bad[0].reason
    # what is visible in clear is still reported
    assert any(isinstance(e, CertificateMsg) for e in events)
    assert [e.name for e in events if isinstance(e, HandshakeMessage) and e.msg_type == -1] == [
        "encrypted_handshake_message"] * 2
    assert app_data(events, "c2s") == b""
    assert sum(isinstance(e, EncryptedRecord) for e in events) == len(s.sent["c2s"]) + len(s.sent["s2c"])
    assert conn.export_keying_material(PSK_LABEL, None, 32) is None


def test_tls12_wrong_master_secret(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-RSA-AES256-GCM-SHA384")
    (entry,) = parse_keylog(s.keylog)[0]
    cr = entry.key_id.hex()
    conn = TLSConnection(KeyStore(parse_keylog(f"CLIENT_RANDOM {cr} {os.urandom(48).hex()}")[0]))
    events = run(conn, s.chunks)
    no_internal_errors(events)
    bad = statuses(events)
    assert {e.direction for e in bad} == {"c2s", "s2c"} and not any(e.ok for e in bad)
    assert all(f"wrong key for client random {cr}" in e.reason for e in bad)
    assert conn.decrypting == {"c2s": False, "s2c": False}
    assert any(isinstance(e, EncryptedRecord) for e in events)


def test_tls12_session_id_resumption_via_cache(pki, tmp_path):
    cctx, sctx = make_contexts(pki, max_version=TLS12, ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                               options=ssl.OP_NO_TICKET)
    first = generate(pki, tmp_path, contexts=(cctx, sctx))
    second = generate(pki, tmp_path, contexts=(cctx, sctx), session=first.session)
    cache = SessionCache()
    conn1 = TLSConnection(keystore(first), session_cache=cache)
    check_decrypts(first, run(conn1, first.chunks))
    assert conn1.session_id and len(cache) == 1
    # the key log of the second (resumed) connection is not available: the cache must do
    conn2 = TLSConnection(keystore(first), session_cache=cache)
    events = run(conn2, second.chunks)
    check_decrypts(second, events)
    assert conn2.resumed and conn2.session_id == conn1.session_id
    assert conn2.key_source.startswith("session cache (session id")
    assert not any(isinstance(e, CertificateMsg) for e in events)
    # … and without the cache it is reported as such
    conn3 = TLSConnection(keystore(first))
    bad = statuses(run(conn3, second.chunks))
    assert bad and "resumed session" in bad[0].reason


def test_tls12_ticket_resumption(pki, tmp_path):
    cctx, sctx = make_contexts(pki, max_version=TLS12, ciphers="ECDHE-RSA-AES256-GCM-SHA384")
    first = generate(pki, tmp_path, contexts=(cctx, sctx))
    second = generate(pki, tmp_path, contexts=(cctx, sctx), session=first.session)
    # key log lines for the resumed handshake's client random are enough on their own
    conn = TLSConnection(keystore(second))
    events = run(conn, second.chunks)
    check_decrypts(second, events)
    assert conn.resumed
    # with only the first connection's key log, the ticket cached by the first connection does it
    cache = SessionCache()
    run(TLSConnection(keystore(first), cache), first.chunks)
    conn = TLSConnection(keystore(first), cache)
    check_decrypts(second, run(conn, second.chunks))
    assert conn.key_source == "session cache (ticket)"


def test_tls12_key_source_rsa_session_id_line(pki, tmp_path):
    cctx, sctx = make_contexts(pki, max_version=TLS12, ciphers="AES128-SHA", options=ssl.OP_NO_TICKET)
    first = generate(pki, tmp_path, contexts=(cctx, sctx))
    second = generate(pki, tmp_path, contexts=(cctx, sctx), session=first.session)
    conn1 = TLSConnection(keystore(first))
    run(conn1, first.chunks)
    line = f"RSA Session-ID:{conn1.session_id.hex()} Master-Key:{conn1.master_secret.hex()}"
    conn2 = TLSConnection(KeyStore(parse_keylog(line)[0]))
    check_decrypts(second, run(conn2, second.chunks))
    assert conn2.key_source == "key log RSA Session-ID"


def test_tls12_pms_client_random_and_rsa_lines(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="AES128-GCM-SHA256",
                 options=OP_NO_EXTENDED_MASTER_SECRET)
    keys = KeyStore()
    keys.add_rsa_private_key(pki.server_key)
    conn = TLSConnection(keys)
    run(conn, s.chunks)
    from cryptography.hazmat.primitives.asymmetric import padding

    pms = pki.server_key.decrypt(conn._enc_pms, padding.PKCS1v15())
    for line, source in ((f"PMS_CLIENT_RANDOM {conn.client_random.hex()} {pms.hex()}", "key log PMS_CLIENT_RANDOM"),
                         (f"RSA {conn._enc_pms[:8].hex()} {pms.hex()}", "key log RSA premaster")):
        c2 = TLSConnection(KeyStore(parse_keylog(line)[0]))
        check_decrypts(s, run(c2, s.chunks))
        assert c2.key_source == source


def test_tls12_ecdsa_certificate_and_client_auth(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", ecdsa=True,
                 client_cert=True)
    events = run(TLSConnection(keystore(s)), s.chunks)
    check_decrypts(s, events)
    crs = [e for e in events if isinstance(e, CertificateRequestMsg)]
    assert len(crs) == 1 and not crs[0].encrypted and crs[0].certificate_types and crs[0].signature_algorithms
    ske = [e for e in events if isinstance(e, HandshakeMessage) and e.name == "server_key_exchange"]
    assert ske[0].info["named_group"] in (23, 29)


def test_tls10_cbc_implicit_iv(pki, tmp_path):
    try:
        s = generate(pki, tmp_path, max_version=ssl.TLSVersion.TLSv1, min_version=ssl.TLSVersion.TLSv1,
                     ciphers="ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    except (ssl.SSLError, ValueError, AssertionError) as exc:
        pytest.skip(f"this OpenSSL refuses TLS 1.0: {exc}")
    assert s.version == "TLSv1"
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks, split=100)
    check_decrypts(s, events)
    assert conn.version == 0x0301
    if s.exporter is not None:
        assert conn.export_keying_material(PSK_LABEL, None, 32) == s.exporter


def test_tls11(pki, tmp_path):
    try:
        s = generate(pki, tmp_path, max_version=ssl.TLSVersion.TLSv1_1, min_version=ssl.TLSVersion.TLSv1_1,
                     ciphers="AES256-SHA:@SECLEVEL=0")
    except (ssl.SSLError, ValueError, AssertionError) as exc:
        pytest.skip(f"this OpenSSL refuses TLS 1.1: {exc}")
    keys = KeyStore()
    keys.add_rsa_private_key(pki.server_key)
    conn = TLSConnection(keys)
    check_decrypts(s, run(conn, s.chunks))
    assert conn.version == 0x0302


# --- lost bytes ---------------------------------------------------------------------------------------


def _bulk_messages(n: int = 60) -> list[tuple[str, bytes]]:
    msgs = [("c2s", b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n")]
    for i in range(n):
        size = (97 * i * i + 13 * i) % 1400 + 20
        msgs.append(("s2c", bytes([i]) * size))
    return msgs


def _gap_case(s: Session, cut_record: int, cut_from: int, cut_to_record: int, cut_to: int):
    """Handshake chunks, then s2c application records with bytes [record a + off, record b + off) removed."""
    n_hs = len(s.chunks) - sum(len(v) for v in s.app_chunks.values())
    hs = s.chunks[:n_hs]
    recs = s.app_chunks["s2c"]
    c2s_app = s.app_chunks["c2s"]
    stream = b"".join(recs)
    starts = [sum(len(r) for r in recs[:i]) for i in range(len(recs))]
    a = starts[cut_record] + cut_from
    b = starts[cut_to_record] + cut_to
    return hs, c2s_app, stream[:a], stream[b:], b - a


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256",
                                    "ECDHE-RSA-CHACHA20-POLY1305", "TLS13"])
@pytest.mark.parametrize("known_length", [True, False])
def test_gap_recovery(pki, tmp_path, cipher, known_length):
    kw = {} if cipher == "TLS13" else {"max_version": TLS12, "ciphers": cipher}
    s = generate(pki, tmp_path, messages=_bulk_messages(), close=False, **kw)
    server_msgs = s.sent["s2c"]
    for cut in ((5, 10, 9, 3), (20, 0, 20, 2), (30, 200, 31, 0)):
        hs, c2s_app, before, after, lost = _gap_case(s, *cut)
        conn = TLSConnection(keystore(s))
        events = run(conn, hs)
        for d in c2s_app:
            events += conn.feed("c2s", d, 2.0, 500)
        for i in range(0, len(before), 1460):
            events += conn.feed("s2c", before[i:i + 1460], 3.0, 600 + i)
        events += conn.gap("s2c", lost if known_length else None)
        for i in range(0, len(after), 1460):
            events += conn.feed("s2c", after[i:i + 1460], 4.0, 900 + i)
        no_internal_errors(events)
        got = [e.data for e in events if isinstance(e, ApplicationData) and e.direction == "s2c"]
        first_lost, last_lost = cut[0], cut[2] if cut[3] else cut[2] - 1
        assert got[:first_lost] == server_msgs[:first_lost]
        tail = server_msgs[last_lost + 1:]
        # everything after the first whole record following the gap is back, in order
        assert got[-len(tail) + 1:] == tail[1:], (cut, len(got), len(tail))
        resync = [e for e in statuses(events, "s2c") if "resynchronised" in e.reason or "recovered" in e.reason]
        if cipher == "ECDHE-RSA-CHACHA20-POLY1305" or cipher == "TLS13" or known_length or "GCM" in cipher:
            assert resync, statuses(events, "s2c")


def test_garbage_between_records_resyncs(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-RSA-AES256-GCM-SHA384",
                 messages=_bulk_messages(10), close=False)
    n_hs = len(s.chunks) - sum(len(v) for v in s.app_chunks.values())
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks[:n_hs])
    for d in s.app_chunks["c2s"]:
        events += conn.feed("c2s", d)
    recs = s.app_chunks["s2c"]
    for i, r in enumerate(recs):
        if i == 4:
            events += conn.feed("s2c", b"\x99garbage\x00\x01" * 3)
        events += conn.feed("s2c", r)
    no_internal_errors(events)
    errs = [e for e in events if isinstance(e, RecordError)]
    assert len(errs) == 1 and "unknown content type 153" in errs[0].message
    assert app_data(events, "s2c") == b"".join(s.sent["s2c"])


def test_mid_session_capture_start(pki, tmp_path):
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    n_hs = len(s.chunks) - sum(len(v) for v in s.app_chunks.values())
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks[n_hs:])
    no_internal_errors(events)
    assert app_data(events, "c2s") == b"" and app_data(events, "s2c") == b""
    bad = statuses(events)
    assert bad and "capture started mid-session" in bad[0].reason
    assert any(isinstance(e, EncryptedRecord) for e in events)


def test_unknown_direction_and_garbage_never_raise():
    conn = TLSConnection(KeyStore())
    assert isinstance(conn.feed("up", b"x")[0], RecordError)
    assert isinstance(conn.gap("down")[0], RecordError)
    ev = conn.feed("c2s", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
    assert any(isinstance(e, RecordError) and "malformed client_hello" in e.message for e in ev)
    ev = conn.feed("s2c", b"\x80\x2e\x01\x00\x02" + b"\x00" * 40)
    assert any(isinstance(e, RecordError) for e in ev)
    no_internal_errors(ev)


def _feed_with_gap(conn, s: Session, cut, known_length=False):
    hs, c2s_app, before, after, lost = _gap_case(s, *cut)
    events = run(conn, hs)
    for d in c2s_app:
        events += conn.feed("c2s", d, 2.0, 500)
    events += conn.feed("s2c", before, 3.0, 600)
    events += conn.gap("s2c", lost if known_length else None)
    for i in range(0, len(after), 1460):
        events += conn.feed("s2c", after[i:i + 1460], 4.0, 900 + i)
    return events


def test_gap_fallback_cbc_unverified(pki, tmp_path):
    """Sequence number not found within the search window: CBC still decrypts (explicit IV), flagged as
    unverified, and returns to verified mode when the MAC search finds the sequence number again."""
    s = generate(pki, tmp_path, max_version=TLS12, ciphers="ECDHE-RSA-AES256-SHA384", options=OP_NO_ENCRYPT_THEN_MAC,
                 messages=_bulk_messages(), close=False)
    conn = TLSConnection(keystore(s), gap_search=2)
    conn.resync_budget = 1500
    conn.lost_seq_window = 0  # never find it again
    events = _feed_with_gap(conn, s, (5, 10, 9, 3))
    no_internal_errors(events)
    reasons = [e.reason for e in statuses(events, "s2c")]
    assert any("lost the record sequence number" in r for r in reasons)
    assert any("without integrity check" in r for r in reasons)
    got = [e.data for e in events if isinstance(e, ApplicationData) and e.direction == "s2c"]
    assert got[-20:] == s.sent["s2c"][-20:]
    conn = TLSConnection(keystore(s), gap_search=2)
    conn.resync_budget = 1500
    events = _feed_with_gap(conn, s, (5, 10, 9, 3))
    assert any("sequence number recovered" in e.reason for e in statuses(events, "s2c"))
    got = [e.data for e in events if isinstance(e, ApplicationData) and e.direction == "s2c"]
    assert got[-20:] == s.sent["s2c"][-20:]


def test_gap_fallback_tls13(pki, tmp_path):
    s = generate(pki, tmp_path, messages=_bulk_messages(), close=False)
    conn = TLSConnection(keystore(s), gap_search=2)
    conn.resync_budget = 1500
    events = _feed_with_gap(conn, s, (5, 10, 9, 3))
    no_internal_errors(events)
    assert any("sequence number recovered" in e.reason for e in statuses(events, "s2c"))
    got = [e.data for e in events if isinstance(e, ApplicationData) and e.direction == "s2c"]
    assert got[-20:] == s.sent["s2c"][-20:]
    conn = TLSConnection(keystore(s), gap_search=2)
    conn.resync_budget = 1500
    conn.lost_seq_window = 1
    events = _feed_with_gap(conn, s, (5, 10, 9, 3))
    no_internal_errors(events)
    assert any(not e.ok and "part of the nonce" in e.reason for e in statuses(events, "s2c"))
    assert any(isinstance(e, EncryptedRecord) for e in events)


@needs_openssl
def test_tls13_hello_retry_request(pki, tmp_path):
    cctx, sctx = make_contexts(pki)
    # the client sends an x25519 key share; a server accepting only P-384 must ask again (RFC 8446 §4.1.4)
    ctx_ptr = ctypes.c_void_p.from_address(OPENSSL._ptr_after_head(sctx)).value
    SSL_CTRL_SET_GROUPS_LIST = 92
    OPENSSL.lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    assert OPENSSL.lib.SSL_CTX_ctrl(ctx_ptr, SSL_CTRL_SET_GROUPS_LIST, 0, b"P-384") == 1
    s = generate(pki, tmp_path, contexts=(cctx, sctx))
    conn = TLSConnection(keystore(s))
    events = run(conn, s.chunks)
    check_decrypts(s, events)
    hellos = [e for e in events if isinstance(e, (ClientHello, ServerHello))]
    assert [type(e).__name__ for e in hellos] == ["ClientHello", "ServerHello", "ClientHello", "ServerHello"]
    assert hellos[1].is_hello_retry_request and hellos[1].key_share_group == 24
    assert hellos[0].random == hellos[2].random and hellos[3].key_share_group == 24
    assert conn.hello_retry_request and conn.tls13


@needs_openssl
def test_tls12_server_initiated_renegotiation(pki, tmp_path):
    keylog = str(tmp_path / "reneg.log")
    cctx, sctx = make_contexts(pki, max_version=TLS12, ciphers="ECDHE-RSA-AES256-GCM-SHA384", keylog=keylog)
    pair = _Pair(cctx, sctx)
    pair.handshake()
    pair.send("c2s", b"before renegotiation")
    OPENSSL.lib.SSL_renegotiate.argtypes = [ctypes.c_void_p]
    assert OPENSSL.lib.SSL_renegotiate(OPENSSL.ssl_ptr(pair.server, sctx)) == 1
    for _ in range(20):  # drive the new handshake through application reads on both sides
        for obj in (pair.server, pair.client):
            try:
                obj.do_handshake()
                obj.read(1)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        if not pair.pump():
            break
    pair.send("s2c", b"after renegotiation")
    pair.send("c2s", b"client after renegotiation")
    with open(keylog) as f:
        entries, errors = parse_keylog(f.read())
    assert len(entries) == 2 and not errors  # two handshakes, two client randoms
    conn = TLSConnection(KeyStore(entries))
    events = run(conn, pair.chunks)
    no_internal_errors(events)
    assert app_data(events, "c2s") == b"before renegotiationclient after renegotiation"
    assert app_data(events, "s2c") == b"after renegotiation"
    hellos = [e for e in events if isinstance(e, ClientHello)]
    assert len(hellos) == 2 and hellos[0].random != hellos[1].random
    assert any(isinstance(e, HandshakeMessage) and e.name == "hello_request" and e.encrypted for e in events)
    assert conn.client_random == hellos[1].random
    assert not [e for e in statuses(events) if not e.ok]


@pytest.fixture(scope="module")
def real_sessions(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    return [generate(pki, tmp), generate(pki, tmp, max_version=TLS12, ciphers="ECDHE-RSA-AES128-SHA256"),
            generate(pki, tmp, max_version=TLS12, ciphers="ECDHE-RSA-CHACHA20-POLY1305")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), sizes=st.lists(st.integers(1, 600), min_size=1, max_size=12))
def test_real_session_any_chunking(real_sessions, which, sizes):
    s = real_sessions[which]
    conn = TLSConnection(keystore(s))
    events, k = [], 0
    for direction, data in s.chunks:
        pos = 0
        while pos < len(data):
            n = sizes[k % len(sizes)]
            events += conn.feed(direction, data[pos:pos + n])
            pos += n
            k += 1
    check_decrypts(s, events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), data=st.data())
def test_real_session_corrupted_never_raises(real_sessions, which, data):
    s = real_sessions[which]
    chunks = [list(c) for c in s.chunks]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(chunks) - 1))
        buf = bytearray(chunks[i][1])
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "gap"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del buf[pos:pos + data.draw(st.integers(1, 64))]
        elif op == "dup":
            buf[pos:pos] = buf[pos:pos + 32]
        chunks[i] = [chunks[i][0], bytes(buf), op == "gap"]
    conn = TLSConnection(keystore(s))
    events = []
    for c in chunks:
        if len(c) == 3 and c[2]:
            events += conn.gap(c[0], None)
        events += conn.feed(c[0], c[1])
    events += conn.close()
    no_internal_errors(events)
