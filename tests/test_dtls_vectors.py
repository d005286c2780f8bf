"""DTLS dissector on small real DTLS sessions recorded from OpenSSL 3.0 (``openssl s_server`` /
``openssl s_client`` over loopback, captured with tcpdump), embedded below as zlib+base64 blobs of
``direction(1: "c"/"s") + uint16 length + datagram`` entries.

They exercise what the ocserv/openconnect samples do not: HelloVerifyRequest + cookie, extended master
secret (RFC 7627), encrypt-then-MAC (RFC 7366), ChaCha20-Poly1305 (RFC 7905; tshark 4.0 cannot decrypt
it), AES-CCM, CBC with SHA-384, DTLS 1.0, fragmented handshake messages (``-mtu 400``), a NewSessionTicket,
session-id resumption (the legacy key mode), encrypted close_notify alerts.

PSK vectors: ``-psk 00112233…eeff (x2) -psk_identity psk``; the client sent "client data one\n" and
"client data two\n", the server "server says hello\n" (known plaintext, checked with tshark at recording
time for all but ChaCha20).  ``frag``: ECDHE-RSA with a certificate, decryptable through the client's key
log line.  ``res12``/``res10``: the second (resumed) connection of a session, keys = Session-ID +
Master-Key printed by s_client (legacy mode), client sent "resumed data\n".
"""
from __future__ import annotations

import random

import pytest

from dissectors.dtls import (
    DTLSAlert,
    DTLSApplicationData,
    DTLSChangeCipherSpec,
    DTLSClientHello,
    DTLSConnection,
    DTLSFinished,
    DTLSHandshakeMessage,
    DTLSHelloVerifyRequest,
    DTLSKeys,
    DTLSRecordError,
    DTLSServerHello,
    DTLSUndecrypted,
    dtls_mode_from_connect,
    keys_from_connect,
)

from .dtls_vectors import (
    CLIENT_TEXT,
    FRAG_CLIENT_RANDOM,
    FRAG_MASTER,
    PSK,
    PSK_VECTORS,
    RESUMED,
    SERVER_TEXT,
    VECTORS,
    datagrams,
)


def feed_all(conn: DTLSConnection, dgs, start_frame: int = 1, t0: float = 1000.0) -> list:
    """Feed ``dgs`` one second apart from ``t0`` (a later session: a later ``t0``, as on the wire: a record number
    seen again within a millisecond is a copy the capture made, `DTLSDuplicate`)."""
    events = []
    for i, (direction, payload) in enumerate(dgs):
        events += conn.feed(direction, payload, t0 + i, start_frame + i)
    return events


def app(events, direction=None) -> list[bytes]:
    return [e.data for e in events if isinstance(e, DTLSApplicationData) and direction in (None, e.direction)]


def of(events, cls) -> list:
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.parametrize("name", sorted(PSK_VECTORS))
def test_openssl_psk_vectors(name):
    version, suite, ems, etm = PSK_VECTORS[name]
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    events = feed_all(conn, datagrams(name))
    assert not of(events, DTLSUndecrypted) and not of(events, DTLSRecordError)
    assert app(events, "c2s") == CLIENT_TEXT
    assert app(events, "s2c") == SERVER_TEXT
    assert conn.version == version and conn.cipher_suite_name == suite
    assert conn.extended_master_secret is ems and conn.encrypt_then_mac is etm
    assert conn.handshake_complete and conn.resumed is False and not conn.full_handshake
    assert conn.finished_verified == {"c2s": True, "s2c": True}
    assert conn.psk_identity == b"psk"
    # cookie exchange: hello, HelloVerifyRequest, the same hello again with the cookie (not a retransmission)
    hellos = of(events, DTLSClientHello)
    hvr = of(events, DTLSHelloVerifyRequest)
    assert len(hellos) == 2 and len(hvr) == 1
    assert hellos[0].cookie == b"" and hellos[1].cookie == hvr[0].cookie != b""
    assert hellos[0].random == hellos[1].random
    assert [h.message_seq for h in hellos] == [0, 1]
    assert [h.new_session for h in hellos] == [True, False]
    assert not any(h.retransmission for h in hellos)
    assert [m.name for m in of(events, DTLSHandshakeMessage)] == [
        "server_hello_done", "client_key_exchange", "new_session_ticket"]
    assert [(f.direction, f.verified) for f in of(events, DTLSFinished)] == [("c2s", True), ("s2c", True)]
    alerts = of(events, DTLSAlert)
    assert [(a.name, a.level, a.encrypted) for a in alerts] == [("close_notify", 1, True)] * 2
    assert len(of(events, DTLSChangeCipherSpec)) == 2


@pytest.mark.parametrize("name", sorted(PSK_VECTORS))
def test_keys_arrive_late(name):
    """Everything (including the Finished check with EMS) works when the keys come after the datagrams."""
    conn = DTLSConnection(None)
    events = feed_all(conn, datagrams(name))
    assert not app(events)
    und = of(events, DTLSUndecrypted)
    assert len(und) == 7 and {e.reason for e in und} == {"no keys"}
    assert {e.content_type for e in und} == {21, 22, 23}
    assert conn.handshake_complete  # seen from the records, although encrypted
    late = conn.set_keys(DTLSKeys.psk(PSK))
    assert app(late, "c2s") == CLIENT_TEXT and app(late, "s2c") == SERVER_TEXT
    assert [(f.direction, f.verified) for f in of(late, DTLSFinished)] == [("c2s", True), ("s2c", True)]
    assert conn.backlog_size == 0
    # events keep their original position
    assert [e.frame for e in late] == sorted(e.frame for e in late)


@pytest.mark.parametrize("name", sorted(PSK_VECTORS))
def test_wrong_psk(name):
    conn = DTLSConnection(DTLSKeys.psk(b"\xaa" * 32))
    events = feed_all(conn, datagrams(name))
    assert not app(events) and not of(events, DTLSFinished)
    und = of(events, DTLSUndecrypted)
    assert len(und) == 7 and all("wrong keys" in e.reason for e in und)


@pytest.mark.parametrize("name", sorted(RESUMED))
def test_openssl_resumption_legacy_keys(name):
    sid, master = RESUMED[name]
    conn = DTLSConnection(DTLSKeys.legacy(sid, master))
    events = feed_all(conn, datagrams(name))
    assert not of(events, DTLSUndecrypted) and not of(events, DTLSRecordError)
    assert app(events) == [b"resumed data\n"]
    assert conn.resumed is True and not conn.full_handshake and conn.handshake_complete
    assert conn.finished_verified == {"c2s": True, "s2c": True}
    assert conn.encrypt_then_mac  # OpenSSL negotiates ETM for CBC suites, also when resuming
    assert conn.version == (0xFEFD if name == "res12" else 0xFEFF)
    sh = of(events, DTLSServerHello)[0]
    assert sh.resumed and sh.session_id.hex().upper() == sid
    # the resumed handshake: server Finished first
    assert [f.direction for f in of(events, DTLSFinished)] == ["s2c", "c2s"]


def test_resumption_not_resumed_with_other_session_id():
    """Legacy keys whose master secret is wrong: records stay undecrypted, the handshake is still followed."""
    sid, _ = RESUMED["res12"]
    conn = DTLSConnection(DTLSKeys.legacy(sid, b"\x11" * 48))
    events = feed_all(conn, datagrams("res12"))
    assert not app(events) and conn.resumed is True
    assert of(events, DTLSUndecrypted)


def test_fragmented_full_handshake():
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    dgs = datagrams("frag")
    events = feed_all(conn, dgs)
    msgs = {m.name: m for m in of(events, DTLSHandshakeMessage)}
    assert msgs["certificate"].frames == (4, 5, 6) and msgs["certificate"].length == 813
    assert msgs["server_key_exchange"].frames == (6, 7)
    assert conn.full_handshake  # certificate + ECDHE key exchange instead of a resumption / PSK
    assert conn.cipher_suite_name == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    und = of(events, DTLSUndecrypted)
    assert und and all("server chose" in e.reason for e in und)
    # the client's key log line decrypts it
    conn2 = DTLSConnection(DTLSKeys.from_keylog({FRAG_CLIENT_RANDOM: FRAG_MASTER}))
    events2 = feed_all(conn2, dgs)
    assert not of(events2, DTLSUndecrypted)
    assert app(events2, "c2s") == CLIENT_TEXT and app(events2, "s2c") == SERVER_TEXT
    assert conn2.finished_verified == {"c2s": True, "s2c": True}
    # fragments out of order and duplicated are reassembled the same
    shuffled = dgs[:3] + [dgs[5], dgs[4], dgs[3], dgs[5], dgs[6]] + dgs[7:]
    conn3 = DTLSConnection(DTLSKeys.from_keylog({FRAG_CLIENT_RANDOM: FRAG_MASTER}))
    events3 = feed_all(conn3, shuffled)
    cert = [m for m in of(events3, DTLSHandshakeMessage) if m.name == "certificate"]
    assert len(cert) == 1 and cert[0].body == msgs["certificate"].body
    assert conn3.finished_verified == {"c2s": True, "s2c": True}
    assert app(events3) == app(events2)


def test_keylog_entry_for_another_handshake():
    conn = DTLSConnection(DTLSKeys.from_keylog({bytes(32): bytes(48)}))
    events = feed_all(conn, datagrams("gcm_ems"))
    assert not app(events)
    assert "no key log entry" in of(events, DTLSUndecrypted)[0].reason
    # legacy/PSK keys plus key log entries: the entry wins when it matches
    keys = DTLSKeys.psk(b"\x00" * 32).with_keylog({FRAG_CLIENT_RANDOM: FRAG_MASTER})
    conn2 = DTLSConnection(keys)
    events2 = feed_all(conn2, datagrams("frag"))
    assert app(events2, "c2s") == CLIENT_TEXT and app(events2, "s2c") == SERVER_TEXT
    assert conn2.finished_verified == {"c2s": True, "s2c": True}


def test_retransmitted_flight():
    """The client's last flight (ClientKeyExchange, CCS, Finished) retransmitted: marked, no new state."""
    dgs = datagrams("gcm_ems")
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    events = feed_all(conn, dgs[:5] + [dgs[4]] + dgs[5:])
    cke = [m for m in of(events, DTLSHandshakeMessage) if m.name == "client_key_exchange"]
    assert [m.retransmission for m in cke] == [False, True]
    fins = [f for f in of(events, DTLSFinished) if f.direction == "c2s"]
    assert [f.retransmission for f in fins] == [False, True]
    assert conn.finished_verified == {"c2s": True, "s2c": True}
    assert app(events, "c2s") == CLIENT_TEXT
    # a retransmitted first ClientHello
    conn2 = DTLSConnection(None)
    ev2 = feed_all(conn2, [dgs[0], dgs[0], dgs[0]])
    assert [h.retransmission for h in of(ev2, DTLSClientHello)] == [False, True, True]
    assert conn2.handshake_count == 1


def test_reconnect_on_same_five_tuple():
    """A second DTLS session on the same 5-tuple (new ClientHello at epoch 0): new handshake state; late
    records of the first session still decrypt with its keys."""
    first, second = datagrams("gcm_ems"), datagrams("ccm")
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    events = feed_all(conn, first[:-2])  # without the close_notify alerts
    assert conn.cipher_suite_name == "TLS_PSK_WITH_AES_128_GCM_SHA256"
    events += feed_all(conn, second, start_frame=100, t0=2000.0)
    assert conn.cipher_suite_name == "TLS_PSK_WITH_AES_128_CCM"
    assert conn.handshake_count == 2 and conn.handshake_complete
    hellos = of(events, DTLSClientHello)
    assert [h.new_session for h in hellos] == [True, False, True, False]
    late = feed_all(conn, first[-2:], start_frame=200, t0=3000.0)  # the old session's alerts, after the new one
    assert [(a.name, a.frame) for a in of(late, DTLSAlert)] == [("close_notify", 200), ("close_notify", 201)]
    assert app(events, "c2s") == CLIENT_TEXT * 2
    assert conn.finished_verified == {"c2s": True, "s2c": True}


def test_reconnect_with_new_keys():
    """set_keys with the keys of a later CONNECT: the established session keeps its keys."""
    first, second = datagrams("res12"), datagrams("gcm_ems")
    sid, master = RESUMED["res12"]
    conn = DTLSConnection(DTLSKeys.legacy(sid, master))
    events = feed_all(conn, first[:6])
    assert app(events) == [b"resumed data\n"]
    assert conn.set_keys(DTLSKeys.psk(PSK)) == []
    events = feed_all(conn, second + first[6:], start_frame=50, t0=2000.0)
    assert app(events, "c2s") == CLIENT_TEXT and app(events, "s2c") == SERVER_TEXT
    assert len(of(events, DTLSAlert)) == 4  # both sessions' close_notify


def test_several_records_per_datagram_and_trailing_garbage():
    dgs = datagrams("gcm_ems")
    client_flight = dgs[4][1]  # ClientKeyExchange + CCS + Finished in one datagram
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    feed_all(conn, dgs[:4])
    events = conn.feed("c2s", client_flight + b"\x17\xfe", 1.0, 5)
    assert [type(e).__name__ for e in events] == [
        "DTLSHandshakeMessage", "DTLSChangeCipherSpec", "DTLSFinished", "DTLSRecordError"]
    assert "truncated record header" in events[-1].message


def test_truncated_records_never_raise():
    for name in VECTORS:
        conn = DTLSConnection(DTLSKeys.psk(PSK))
        for i, (direction, payload) in enumerate(datagrams(name)):
            for cut in range(0, len(payload), 7):
                for e in conn.feed(direction, payload[:cut], float(i), i + 1):
                    assert not isinstance(e, DTLSApplicationData) or e.data in CLIENT_TEXT + SERVER_TEXT
            conn.feed(direction, payload, float(i), i + 1)


def test_bit_flips_are_reported_not_raised():
    rng = random.Random(1234)
    for name in VECTORS:
        dgs = datagrams(name)
        for _ in range(40):
            conn = DTLSConnection(DTLSKeys.psk(PSK))
            for i, (direction, payload) in enumerate(dgs):
                data = bytearray(payload)
                if data and rng.random() < 0.5:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                for e in conn.feed(direction, bytes(data), float(i), i + 1):
                    assert e.frame == i + 1
                    if isinstance(e, DTLSApplicationData):  # AEAD/MAC: tampered data never decrypts
                        assert e.data in CLIENT_TEXT + SERVER_TEXT


def test_unsupported_record_kinds():
    conn = DTLSConnection(None)
    (e,) = conn.feed("c2s", bytes([0x2C]) + bytes(20), 1.0, 1)
    assert isinstance(e, DTLSRecordError) and "DTLS 1.3" in e.message
    (e,) = conn.feed("c2s", bytes([0x16, 0x03, 0x03]) + bytes(10), 1.0, 2)
    assert isinstance(e, DTLSRecordError) and "TLS version" in e.message
    (e,) = conn.feed("c2s", bytes([25, 0xFE, 0xFD]) + bytes(10), 1.0, 3)
    assert isinstance(e, DTLSRecordError) and "connection-id" in e.message
    (e,) = conn.feed("c2s", b"GET / HTTP/1.1\r\n", 1.0, 4)
    assert isinstance(e, DTLSRecordError)
    (e,) = conn.feed("up", b"", 1.0, 5)
    assert isinstance(e, DTLSRecordError)
    assert conn.feed("c2s", b"", 1.0, 6) == []
    # plaintext application data at epoch 0 and a malformed CCS
    (e,) = conn.feed("c2s", bytes([23, 0xFE, 0xFD, 0, 0]) + bytes(6) + b"\x00\x02hi", 1.0, 7)
    assert isinstance(e, DTLSRecordError) and "epoch 0" in e.message
    (e,) = conn.feed("c2s", bytes([20, 0xFE, 0xFD, 0, 0]) + bytes(6) + b"\x00\x02\x01\x01", 1.0, 8)
    assert isinstance(e, DTLSRecordError) and "ChangeCipherSpec" in e.message
    # an encrypted record before any handshake
    (e,) = conn.feed("s2c", bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(6) + b"\x00\x20" + bytes(32), 1.0, 9)
    assert isinstance(e, DTLSUndecrypted) and "no handshake" in e.reason


def test_backlog_is_bounded():
    dgs = datagrams("gcm_ems")
    conn = DTLSConnection(None, max_backlog=3)
    feed_all(conn, dgs)
    assert conn.backlog_size == 3 and conn.backlog_dropped == 4
    late = conn.set_keys(DTLSKeys.psk(PSK))
    assert len(app(late)) + len(of(late, DTLSAlert)) == 3


def test_keys_validation():
    with pytest.raises(ValueError):
        DTLSKeys.legacy("00" * 32, "00" * 47)
    with pytest.raises(ValueError):
        DTLSKeys.psk(b"")
    k = DTLSKeys.legacy("AB" * 32, "CD" * 48)
    assert k.session_id == b"\xab" * 32 and k.master_secret == b"\xcd" * 48 and k.is_legacy
    p = DTLSKeys.psk("ef" * 32, identity="other")
    assert p.psk_secret == b"\xef" * 32 and p.identity == b"other" and p.is_psk
    assert ("ef" * 32) not in repr(p) and ("cd" * 48) not in repr(k).lower()


def test_keys_from_connect_headers():
    req = [("X-DTLS-Master-Secret", "AB" * 48), ("X-DTLS-CipherSuite", "PSK-NEGOTIATE:AES128-SHA")]
    legacy = [("X-DTLS-Session-ID", "01" * 32), ("X-DTLS-CipherSuite", "AES128-SHA")]
    psk = {"X-DTLS-App-ID": "02" * 32, "X-DTLS-CipherSuite": "PSK-NEGOTIATE"}
    assert dtls_mode_from_connect(legacy) == "legacy" and dtls_mode_from_connect(psk) == "psk"
    assert dtls_mode_from_connect([("X-CSTP-MTU", "1400")]) is None
    k = keys_from_connect(req, legacy)
    assert k.is_legacy and k.session_id == b"\x01" * 32 and k.master_secret == b"\xab" * 48
    assert keys_from_connect(req, psk) is None
    assert keys_from_connect(req, psk, b"\x05" * 32).psk_secret == b"\x05" * 32
    assert keys_from_connect([("X-DTLS-Master-Secret", "zz")], legacy) is None
    assert keys_from_connect([], legacy) is None
    assert keys_from_connect(req, [("X-CSTP-MTU", "1400")]) is None


def test_backlog_bytes_bound_keeps_the_first_records_and_the_handshake():
    """max_backlog_bytes: application-data records stop joining the backlog once their bytes would pass the bound
    (a flow whose keys never come holds no more); handshake records still join; late keys decrypt what was kept."""
    dgs = datagrams("gcm_ems")
    whole = DTLSConnection(None)
    feed_all(whole, dgs)
    sizes = [len(p.record.fragment) for p in whole._backlog if p.record.content_type == 23]
    assert len(sizes) >= 2
    bound = sizes[0]  # room for the first application-data record only
    conn = DTLSConnection(None, max_backlog_bytes=bound)
    events = feed_all(conn, dgs)
    kept = [p.record for p in conn._backlog]
    assert [r.content_type for r in kept if r.content_type == 23] == [23]
    assert [r.content_type for r in kept if r.content_type != 23] == \
        [p.record.content_type for p in whole._backlog if p.record.content_type != 23]
    assert conn.backlog_dropped == len(sizes) - 1
    # every record is still reported, kept or not
    assert len(of(events, DTLSUndecrypted)) == len(whole._backlog)
    late = conn.set_keys(DTLSKeys.psk(PSK))
    assert len(app(late)) == 1 and conn.backlog_size == 0 and conn._backlog_bytes == 0


def test_a_record_seen_again_within_a_millisecond_is_a_duplicate():
    """A copy the capture made (the same record number again right after): DTLSDuplicate, not read again — the
    latest record, or an older one (copies interleaved); the same record a second later is read as before."""
    from dissectors.dtls.events import DTLSDuplicate

    dgs = datagrams("gcm_ems")
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    events = []
    for i, (direction, payload) in enumerate(dgs[:-2]):
        events += conn.feed(direction, payload, 1000.0 + i * 0.0001, i + 1)
    t = 1000.0 + len(dgs) * 0.0001
    assert app(events, "c2s") == CLIENT_TEXT and not of(events, DTLSDuplicate)
    last_c2s = max(i for i, (d, _p) in enumerate(dgs[:-2]) if d == "c2s")
    older = [i for i, (d, _p) in enumerate(dgs[:-2]) if d == "c2s"][-2]
    for i in (last_c2s, older):  # the latest record of the direction, then an older one
        (e,) = conn.feed(*dgs[i], t, 100 + i)
        assert isinstance(e, DTLSDuplicate) and e.direction == "c2s", e
    assert conn.duplicates == 2
    again = conn.feed(*dgs[last_c2s], t + 1.0, 200)
    assert not of(again, DTLSDuplicate)
