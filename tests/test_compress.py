"""LZS and LZ4 block decompression: hand-made vectors, round trips, corrupt input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.compress import (
    DecompressionError,
    decompress,
    lz4_block_decompress,
    lzs_decompress,
    normalize_encoding,
)

try:  # test-only, optional: the reference LZ4 implementation
    import lz4.block as lz4_block
except ImportError:  # pragma: no cover - depends on the machine
    lz4_block = None


# -- a tiny LZS compressor, for tests only (greedy, written from the RFC 1974 token grammar) ------

class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> None:
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def _put_length(w: _BitWriter, length: int) -> None:
    if length <= 4:
        w.put(length - 2, 2)
    elif length <= 7:
        w.put(0b11, 2)
        w.put(length - 5, 2)
    else:
        w.put(0b1111, 4)
        n = length - 8
        while n >= 15:
            w.put(15, 4)
            n -= 15
        w.put(n, 4)


def lzs_compress(data: bytes, max_match: int = 400) -> bytes:
    w = _BitWriter()
    i = 0
    while i < len(data):
        best_len = best_off = 0
        for off in range(1, min(i, 2047) + 1):
            n = 0
            while i + n < len(data) and n < max_match and data[i + n - off] == data[i + n]:
                n += 1
            if n > best_len:
                best_len, best_off = n, off
        if best_len >= 2:
            w.put(1, 1)
            if best_off < 128:
                w.put(1, 1)
                w.put(best_off, 7)
            else:
                w.put(0, 1)
                w.put(best_off, 11)
            _put_length(w, best_len)
            i += best_len
        else:
            w.put(0, 1)
            w.put(data[i], 8)
            i += 1
    w.put(0b11, 2)
    w.put(0, 7)  # end marker
    return w.to_bytes()


def _bits(s: str) -> bytes:
    s = s.replace(" ", "")
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i:i + 8], 2) for i in range(0, len(s), 8))


# -- LZS -----------------------------------------------------------------------------------------

def test_lzs_hand_encoded_vector():
    # 'A' literal, 'B' literal, copy offset 2 length 4 (overlapping), end marker
    data = _bits("0 01000001" "0 01000010" "1 1 0000010 10" "1 1 0000000")
    assert lzs_decompress(data) == b"ABABAB"


def test_lzs_long_length_and_11_bit_offset():
    # 200 literal bytes, then a copy from offset 200 (11-bit form) of length 8+15+3 = 26
    lits = bytes(range(200))
    s = "".join("0" + format(b, "08b") for b in lits)
    s += "1 0" + format(200, "011b") + "1111 1111 0011" + "1 1 0000000"
    assert lzs_decompress(_bits(s)) == lits + lits[:26]


def test_lzs_empty_stream_is_just_an_end_marker():
    assert lzs_decompress(_bits("110000000")) == b""


@pytest.mark.parametrize("data", [
    b"",
    b"hello hello hello hello",
    b"\x00" * 1000,
    bytes(range(256)) * 12,
    b"abc" * 700 + b"xyz" + b"abc" * 50,
])
def test_lzs_round_trip_examples(data):
    assert lzs_decompress(lzs_compress(data)) == data


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.lists(st.sampled_from([b"ab", b"abc", b"x", b"\x00" * 20]),
                                          max_size=60).map(b"".join))
def test_lzs_round_trip(data):
    assert lzs_decompress(lzs_compress(data)) == data


def test_lzs_errors():
    with pytest.raises(DecompressionError, match="truncated"):
        lzs_decompress(_bits("0 01000001"))  # no end marker
    with pytest.raises(DecompressionError, match="before start"):
        lzs_decompress(_bits("1 1 0000101 00" "110000000"))  # copy from an empty history
    with pytest.raises(DecompressionError, match="after the end marker"):
        lzs_decompress(_bits("110000000") + b"\x00\x00")
    with pytest.raises(DecompressionError, match="exceeds"):
        lzs_decompress(lzs_compress(b"a" * 5000), max_output=4096)
    with pytest.raises(ValueError):  # DecompressionError is a ValueError
        lzs_decompress(b"\xff")


# -- LZ4 -----------------------------------------------------------------------------------------

def test_lz4_hand_made_blocks():
    assert lz4_block_decompress(b"\x00") == b""
    assert lz4_block_decompress(b"\x40abcd") == b"abcd"
    # 'a', then match offset 1 of length 4+6=10 (overlapping), then last literals 'b'
    assert lz4_block_decompress(b"\x16a\x01\x00\x10b") == b"a" * 11 + b"b"
    # literal length 15 + 5 = 20 via an extra byte
    assert lz4_block_decompress(b"\xf0\x05" + b"x" * 20) == b"x" * 20
    # match length 15 + 4 + 255 + 1 = 275 via extra bytes
    assert lz4_block_decompress(b"\x1fz\x01\x00\xff\x01\x00") == b"z" * 276


@pytest.mark.parametrize("block, message", [
    (b"", "empty"),
    (b"\x50abc", "past end"),
    (b"\x10a\x05\x00", "bad match offset"),
    (b"\x10a\x00\x00", "bad match offset"),
    (b"\x10a\x01", "truncated match offset"),
    (b"\xf0", "truncated literal length"),
    (b"\x1fa\x01\x00", "truncated match length"),
])
def test_lz4_corrupt(block, message):
    with pytest.raises(DecompressionError, match=message):
        lz4_block_decompress(block)


def test_lz4_output_bound():
    block = b"\x1fz\x01\x00" + b"\xff" * 40 + b"\x00" + b"\x00"
    with pytest.raises(DecompressionError, match="exceeds"):
        lz4_block_decompress(block, max_output=1000)


@pytest.mark.skipif(lz4_block is None, reason="the lz4 package is not installed (optional, tests only)")
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000) | st.lists(st.sampled_from([b"GET / ", b"\x00\x00", b"abcdefgh", b"E"]),
                                           max_size=400).map(b"".join))
def test_lz4_round_trip_with_reference_compressor(data):
    block = lz4_block.compress(data, store_size=False)
    assert lz4_block_decompress(block) == data
    hc = lz4_block.compress(data, store_size=False, mode="high_compression")
    assert lz4_block_decompress(hc) == data


# -- both: arbitrary input never escapes as anything but DecompressionError --------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["lzs", "oc-lz4"]))
def test_fuzz_never_crashes(data, encoding):
    try:
        out = decompress(encoding, data, max_output=2048)
    except DecompressionError:
        return
    assert len(out) <= 2048


def test_encoding_names():
    assert normalize_encoding("LZS") == "lzs"
    assert normalize_encoding("oc-lz4") == "lz4"
    assert normalize_encoding(" lz4 ") == "lz4"
    assert normalize_encoding("deflate") is None
    assert normalize_encoding(None) is None
    with pytest.raises(DecompressionError, match="unknown"):
        decompress("deflate", b"x")
    assert decompress("lzs", lzs_compress(b"packet")) == b"packet"
