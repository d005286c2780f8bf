"""Property tests: no input makes the DTLS dissector raise, and the last-resort exception handler in
``DTLSConnection.feed`` never fires (every malformed input is reported by the parsers themselves)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.dtls import DTLSConnection, DTLSKeys, DTLSRecordError
from dissectors.dtls.handshake import Fragment, Reassembler, parse_client_hello, parse_server_hello
from dissectors.dtls.record import split_datagram
from tests.dtls_vectors import PSK, VECTORS, datagrams

KEYS = [None, DTLSKeys.psk(PSK), DTLSKeys.legacy(b"\x01" * 32, b"\x02" * 48)]
VERSIONS = [0x0100, 0xFEFF, 0xFEFD]
REAL = [d for name in sorted(VECTORS) for d in datagrams(name)]


def check(events) -> None:
    for e in events:
        assert e.frame >= 0
        if isinstance(e, DTLSRecordError):
            assert "internal error" not in e.message, e.message


@st.composite
def records(draw):
    """Datagrams of well-formed record headers with random bodies (reaching the handshake parsers)."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        ct = draw(st.sampled_from([20, 21, 22, 23, 24]))
        version = draw(st.sampled_from(VERSIONS))
        epoch = draw(st.sampled_from([0, 0, 1, 2]))
        seq = draw(st.integers(0, 2**48 - 1))
        if ct == 22 and draw(st.booleans()):
            msg_type = draw(st.sampled_from([0, 1, 2, 3, 4, 11, 12, 13, 14, 16, 20]))
            body = draw(st.binary(max_size=120))
            length = draw(st.sampled_from([len(body), len(body) + draw(st.integers(0, 300))]))
            off = draw(st.integers(0, 8)) if length > len(body) else 0
            body = (bytes([msg_type]) + length.to_bytes(3, "big") + draw(st.integers(0, 3)).to_bytes(2, "big")
                    + off.to_bytes(3, "big") + len(body).to_bytes(3, "big") + body)
        else:
            body = draw(st.binary(max_size=200))
        hdr = bytes([ct]) + version.to_bytes(2, "big") + epoch.to_bytes(2, "big") + seq.to_bytes(6, "big")
        out += hdr + len(body).to_bytes(2, "big") + body
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=300)), max_size=12),
       st.sampled_from(KEYS))
def test_random_datagrams_never_raise(datagram_list, keys):
    conn = DTLSConnection(keys)
    for i, (direction, data) in enumerate(datagram_list):
        check(conn.feed(direction, data, float(i), i + 1))
    check(conn.set_keys(DTLSKeys.psk(PSK)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), records()), max_size=12), st.sampled_from(KEYS))
def test_structured_records_never_raise(datagram_list, keys):
    conn = DTLSConnection(keys)
    for i, (direction, data) in enumerate(datagram_list):
        check(conn.feed(direction, data, float(i), i + 1))
    check(conn.set_keys(KEYS[1]))
    _ = (conn.version, conn.cipher_suite, conn.resumed, conn.full_handshake, conn.handshake_complete,
         conn.key_error, conn.finished_verified)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 400), st.integers(0, 255)),
                min_size=1, max_size=16))
def test_mutated_real_datagrams_never_raise(edits):
    """Real datagrams, replayed in random order with one byte changed and random truncation."""
    conn = DTLSConnection(DTLSKeys.psk(PSK))
    for i, (idx, pos, value) in enumerate(edits):
        direction, data = REAL[idx]
        data = bytearray(data)
        if data:
            data[pos % len(data)] = value
        if pos % 3 == 0:
            data = data[: pos % (len(data) + 1)]
        check(conn.feed(direction, bytes(data), float(i), i + 1))


@given(st.binary(max_size=400))
def test_parsers_raise_only_their_error(data):
    split_datagram(data)
    for parse in (parse_client_hello, parse_server_hello):
        try:
            parse(data)
        except ValueError:
            pass


@given(st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=100)), max_size=30))
def test_reassembler_bounded(frags):
    r = Reassembler(max_pending=4)
    for i, (off, body) in enumerate(frags):
        length = 300
        body = body[: max(0, length - off)]
        res = r.add(Fragment(11, length, i % 7, min(off, length), body), i)
        assert res is None or isinstance(res, str) or len(res.body) == length
    assert len(r._pending) <= 4
