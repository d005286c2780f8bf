"""TLSConnection waiting for keys that arrive late (dissectors/tls/connection.py KeyWait, retry_keys): real TLS 1.2
and 1.3 sessions (Python's ssl / OpenSSL in this process, tests/tls_sessions.py) fed with an empty key store; the
key log comes at some point of the stream. The events, in order, are exactly those of the same stream fed with the
key log known from the start."""
from __future__ import annotations

import pytest

from dissectors.keylog import KeyStore, parse_keylog
from dissectors.tls import ApplicationData, DecryptionStatus, EncryptedRecord
from dissectors.tls.connection import KeyWait, TLSConnection

from .tls_sessions import generate, needs_openssl, pki  # noqa: F401 - pki is a pytest fixture

TLS12 = __import__("ssl").TLSVersion.TLSv1_2


def _stream(s):
    """(direction, bytes, ts, frame) per chunk, as a capture would give them."""
    return [(d, data, 500.0 + i / 10, i + 1) for i, (d, data) in enumerate(s.chunks)]


def _upfront(s) -> list:
    conn = TLSConnection(KeyStore(parse_keylog(s.keylog)[0]))
    return [ev for d, data, ts, fr in _stream(s) for ev in conn.feed(d, data, ts, fr)] + conn.close()


def _late(s, at: int, parts: tuple = (None,), limit: int = 1 << 20):
    """Feed with no keys; after chunk ``at`` the key log lines matching each of ``parts`` (None: all) arrive, one
    part per following chunk. Returns (events, connection, key_wait)."""
    keys, kw = KeyStore(), KeyWait(limit)
    conn = TLSConnection(keys)
    conn.key_wait = kw
    lines = s.keylog.splitlines()
    todo = list(parts)
    out = []
    for i, (d, data, ts, fr) in enumerate(_stream(s)):
        out += conn.feed(d, data, ts, fr)
        if i >= at and todo:
            part = todo.pop(0)
            keys.add_entries(parse_keylog("\n".join(ln for ln in lines if part is None or part in ln))[0])
            out += conn.retry_keys(ts, fr)
    while todo:
        part = todo.pop(0)
        keys.add_entries(parse_keylog("\n".join(ln for ln in lines if part is None or part in ln))[0])
        out += conn.retry_keys()
    return out + conn.close(), conn, kw


def _plain(events, direction):
    return b"".join(e.data for e in events if isinstance(e, ApplicationData) and e.direction == direction)


@needs_openssl
@pytest.mark.parametrize("at", [3, 6, 1000])
def test_tls13_late_keys_same_events(pki, tmp_path, at):  # noqa: F811
    msgs = [("c2s", b"a" * 100), ("s2c", b"b" * 100), ("c2s", b"c" * 200), ("s2c", b"d" * 300), ("c2s", b"e" * 9)]
    s = generate(pki, tmp_path, messages=msgs, key_update_after=2)
    got, conn, kw = _late(s, at)
    want = _upfront(s)
    assert got == want
    assert _plain(got, "c2s") == b"".join(s.sent["c2s"]) and _plain(got, "s2c") == b"".join(s.sent["s2c"])
    assert not conn.waiting_for_keys and kw.used == 0 and not kw.waiting


@needs_openssl
def test_tls13_handshake_secrets_then_application_secrets(pki, tmp_path):  # noqa: F811
    """The key log grows in two steps (handshake secrets, then the rest): both halves wait, both decrypt."""
    s = generate(pki, tmp_path)
    got, _, _ = _late(s, 2, parts=("HANDSHAKE", "TRAFFIC_SECRET_0"))
    assert got == _upfront(s)


@needs_openssl
@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384",
                                    "ECDHE-RSA-CHACHA20-POLY1305"])
@pytest.mark.parametrize("at", [4, 1000])
def test_tls12_late_keys_same_events(pki, tmp_path, cipher, at):  # noqa: F811
    s = generate(pki, tmp_path, max_version=TLS12, ciphers=cipher)
    got, conn, _ = _late(s, at)
    assert got == _upfront(s)
    assert conn.key_source == "key log CLIENT_RANDOM"


@needs_openssl
def test_keys_that_never_come(pki, tmp_path):  # noqa: F811
    """At close the parked records are reported as without waiting: the same events as with no key log at all."""
    s = generate(pki, tmp_path)
    got, conn, kw = _late(s, 0, parts=())
    plain = TLSConnection(KeyStore())
    want = [ev for d, data, ts, fr in _stream(s) for ev in plain.feed(d, data, ts, fr)] + plain.close()
    assert got == want and any(isinstance(e, EncryptedRecord) for e in got)
    assert kw.used == 0 and not kw.waiting


@needs_openssl
def test_waiting_is_bounded(pki, tmp_path):  # noqa: F811
    """Past KeyWait.limit the connection stops waiting: what it held is reported undecrypted, saying why."""
    s = generate(pki, tmp_path, messages=[("c2s", b"x" * 3000), ("s2c", b"y" * 3000)])
    got, conn, kw = _late(s, 1000, limit=2000)
    assert conn.key_wait_overflow and kw.overflows == 1 and kw.used == 0
    bad = [e for e in got if isinstance(e, DecryptionStatus) and not e.ok]
    assert bad and "past its limit of 2000 bytes" in bad[0].reason
    assert _plain(got, "c2s") == b""


@needs_openssl
def test_gap_while_waiting(pki, tmp_path):  # noqa: F811
    """A gap in a direction while its records are parked is applied in its place when they are replayed."""
    s = generate(pki, tmp_path, messages=[("c2s", b"a" * 50), ("s2c", b"b" * 50), ("c2s", b"c" * 50)], close=False)
    stream = _stream(s)
    last_c2s = max(i for i, (d, *_rest) in enumerate(stream) if d == "c2s")
    results = []
    for late in (False, True):
        keys = KeyStore() if late else KeyStore(parse_keylog(s.keylog)[0])
        conn = TLSConnection(keys)
        conn.key_wait = KeyWait() if late else None
        out = []
        for i, (d, data, ts, fr) in enumerate(stream):
            if i == last_c2s:
                out += conn.gap("c2s", len(data), ts, fr)  # the last client record is lost
                continue
            out += conn.feed(d, data, ts, fr)
        if late:
            keys.add_entries(parse_keylog(s.keylog)[0])
            out += conn.retry_keys()
        results.append(out + conn.close())
    assert results[0] == results[1]
    assert _plain(results[1], "c2s") == b"a" * 50


@needs_openssl
def test_no_wait_without_the_client_hello(pki, tmp_path):  # noqa: F811
    """Keys are found by the ClientHello's random: a connection whose ClientHello was not captured does not wait
    (no key log line can ever match it)."""
    s = generate(pki, tmp_path)
    conn = TLSConnection(KeyStore())
    conn.key_wait = KeyWait()
    stream = _stream(s)[1:]  # the ClientHello is lost
    out = [ev for d, data, ts, fr in stream for ev in conn.feed(d, data, ts, fr)]
    assert not conn.waiting_for_keys and conn.client_random is None
    assert any(isinstance(e, EncryptedRecord) for e in out)


@needs_openssl
def test_waiting_is_bounded_in_time(pki, tmp_path):  # noqa: F811
    """A connection whose keys have not come KeyWait.max_wait seconds (capture time) after it began to wait stops
    waiting: keys given later decrypt nothing of what it held."""
    s = generate(pki, tmp_path, messages=[("c2s", b"x" * 30)] * 5)
    keys, kw = KeyStore(), KeyWait(max_wait=0.25)  # the chunks are 0.1 s apart (_stream)
    conn = TLSConnection(keys)
    conn.key_wait = kw
    out = [ev for d, data, ts, fr in _stream(s) for ev in conn.feed(d, data, ts, fr)]
    assert conn.key_wait_overflow and not conn.waiting_for_keys and not kw.waiting
    keys.add_entries(parse_keylog(s.keylog)[0])
    assert conn.retry_keys() == []
    bad = [e for e in out if isinstance(e, DecryptionStatus) and not e.ok]
    assert bad and "past its limit of 0.25 s" in bad[0].reason
