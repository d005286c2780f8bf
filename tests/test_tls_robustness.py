"""Hostile input: nothing fed to TLSConnection may raise, and no "internal error" guard may fire."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.keylog import KeyStore
from dissectors.tls import RecordError, TLSConnection
from dissectors.tls.record import MAX_CIPHERTEXT

CR = b"\x11" * 32


def keys() -> KeyStore:
    ks = KeyStore()
    ks.add_secret("CLIENT_RANDOM", CR, b"\x22" * 48)
    for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                  "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET", "CLIENT_EARLY_TRAFFIC_SECRET"):
        ks.add_secret(label, CR, b"\x33" * 32)
    return ks


def check(events) -> None:
    assert isinstance(events, list)
    bad = [e for e in events if isinstance(e, RecordError) and "internal error" in e.message]
    assert not bad, bad


def v8(b):
    return bytes([len(b)]) + b


def v16(b):
    return struct.pack("!H", len(b)) + b


def hs(t, body):
    return bytes([t]) + len(body).to_bytes(3, "big") + body


def rec(ct, body, version=0x0303):
    return struct.pack("!BHH", ct, version, len(body)) + body


def client_hello(tls13: bool, early: bool) -> bytes:
    exts = b""
    if tls13:
        exts += struct.pack("!HH", 43, 3) + b"\x02\x03\x04"
    if early:
        exts += struct.pack("!HH", 42, 0)
    exts += struct.pack("!HH", 23, 0)
    body = b"\x03\x03" + CR + v8(b"") + v16(b"\x13\x01\xc0\x2f\xc0\x27\xcc\xa8\x00\x35") + v8(b"\x00") + v16(exts)
    return hs(1, body)


def server_hello(suite: int, tls13: bool) -> bytes:
    exts = (struct.pack("!HH", 43, 2) + b"\x03\x04") if tls13 else struct.pack("!HH", 23, 0)
    return hs(2, b"\x03\x03" + b"\x44" * 32 + v8(b"S" * 32) + struct.pack("!H", suite) + b"\x00" + v16(exts))


HS_TYPES = [0, 1, 2, 4, 5, 8, 11, 12, 13, 14, 15, 16, 20, 22, 24, 99]

chunk_sizes = st.integers(min_value=1, max_value=3000)
random_record = st.builds(
    lambda ct, ver, body: rec(ct, body, ver),
    st.sampled_from([20, 21, 22, 23, 24]),
    st.sampled_from([0x0301, 0x0303, 0x0303, 0x0304]),
    st.binary(max_size=300),
)
random_handshake_record = st.builds(
    lambda msgs: rec(22, b"".join(hs(t, b) for t, b in msgs)),
    st.lists(st.tuples(st.sampled_from(HS_TYPES), st.binary(max_size=120)), min_size=1, max_size=4),
)
action = st.one_of(
    st.tuples(st.just("feed"), st.sampled_from(["c2s", "s2c"]), st.binary(max_size=400)),
    st.tuples(st.just("feed"), st.sampled_from(["c2s", "s2c"]), random_record),
    st.tuples(st.just("feed"), st.sampled_from(["c2s", "s2c"]), random_handshake_record),
    st.tuples(st.just("gap"), st.sampled_from(["c2s", "s2c"]), st.one_of(st.none(), st.integers(0, 70000))),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=5000), st.lists(chunk_sizes, min_size=1, max_size=20), st.booleans())
def test_random_bytes_in_random_chunks(data, sizes, with_keys):
    conn = TLSConnection(keys() if with_keys else None)
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        check(conn.feed("c2s" if i % 3 else "s2c", data[pos:pos + n], float(i), i + 1))
        pos += n
        i += 1
    check(conn.close())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0x1301, 0x1302, 0x1303, 0x1305, 0xC02F, 0xC027, 0xCCA8, 0x0035, 0x0005, 0x1234]),
       st.booleans(), st.lists(action, max_size=25), st.integers(1, 700))
def test_valid_hellos_then_hostile_records(suite, early, actions, split):
    tls13 = suite >> 8 == 0x13
    conn = TLSConnection(keys())
    check(conn.feed("c2s", rec(22, client_hello(tls13, early), 0x0301)))
    check(conn.feed("s2c", rec(22, server_hello(suite, tls13))))
    if not tls13:
        check(conn.feed("c2s", rec(22, hs(16, v16(b"E" * 256))) + rec(20, b"\x01")))
        check(conn.feed("s2c", rec(20, b"\x01")))
    for kind, direction, arg in actions:
        if kind == "gap":
            check(conn.gap(direction, arg))
            continue
        for i in range(0, len(arg), split):
            check(conn.feed(direction, arg[i:i + split]))
    conn.export_keying_material(b"EXPORTER-openconnect-psk", None, 32)
    check(conn.close())


@settings(max_examples=50, deadline=None)
@given(st.integers(MAX_CIPHERTEXT + 1, 0xFFFF), st.binary(min_size=0, max_size=50))
def test_oversized_records_are_errors_not_buffers(length, tail):
    conn = TLSConnection()
    events = conn.feed("s2c", struct.pack("!BHH", 23, 0x0303, length) + tail)
    check(events)
    assert any(isinstance(e, RecordError) and "exceeds" in e.message for e in events)
