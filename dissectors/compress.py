"""Stateless decompressors for the CSTP/DTLS payload encodings (sans-I/O, pure functions).

The AnyConnect protocol negotiates per-packet compression with ``X-CSTP-Accept-Encoding`` /
``X-DTLS-Accept-Encoding`` (client) and ``X-CSTP-Content-Encoding`` / ``X-DTLS-Content-Encoding``
(gateway).  A packet sent as type 0x08 (COMPRESSED DATA) is then compressed on its own; there is no
history shared between packets.  Two algorithms are seen:

``lzs``
    Stac LZS, ANSI X3.241-1994, described in RFC 1974 §2 and RFC 1967.  A bit stream, most significant
    bit first, of tokens::

        0 bbbbbbbb                  literal byte
        1 1 ooooooo <length>        copy, offset 1..127 back
        1 0 ooooooooooo <length>    copy, offset 1..2047 back
        1 1 0000000                 end marker (then zero bits up to the next byte boundary)

    ``<length>``: ``00``=2, ``01``=3, ``10``=4, ``1100``=5, ``1101``=6, ``1110``=7, then ``1111``
    followed by 4-bit groups: each ``1111`` adds 15, the first other group ends the length,
    length = 8 + 15 * (number of 1111 groups) + last group.

``oc-lz4`` (also spelled ``lz4``)
    One LZ4 *block* (not a frame): sequences of ``token, [literal length bytes], literals,
    offset (2 bytes little endian), [match length bytes]``; token high nibble = literal length,
    low nibble = match length - 4, a nibble of 15 continues with bytes added until one is not 255.
    The last sequence has literals only.

Both decoders are written from those format descriptions; they bound their output (``max_output``)
and raise :class:`DecompressionError` (a ``ValueError``) on corrupt input.  They never read past the
input and never allocate more than ``max_output`` bytes.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DecompressionError",
    "decompress",
    "lz4_block_decompress",
    "lzs_decompress",
    "normalize_encoding",
]

#: A tunnelled packet is an IP packet: 64 KiB is the most an IPv4/IPv6 (non-jumbo) packet can be.
DEFAULT_MAX_OUTPUT = 65536

_LZS_MAX_OFFSET = 2047


class DecompressionError(ValueError):
    """Corrupt or over-long compressed data."""


class _BitReader:
    """Reads an MSB-first bit stream from bytes."""

    __slots__ = ("_data", "_nbits", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0  # bit position
        self._nbits = len(data) * 8

    def remaining(self) -> int:
        return self._nbits - self._pos

    def read(self, n: int) -> int:
        if self._pos + n > self._nbits:
            raise DecompressionError("LZS: truncated input (no end marker)")
        value = 0
        pos = self._pos
        data = self._data
        for _ in range(n):
            value = (value << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1)
            pos += 1
        self._pos = pos
        return value


def _lzs_length(bits: _BitReader) -> int:
    two = bits.read(2)
    if two < 3:
        return two + 2  # 00=2, 01=3, 10=4
    two = bits.read(2)
    if two < 3:
        return two + 5  # 1100=5, 1101=6, 1110=7
    length = 8
    while True:
        nibble = bits.read(4)
        length += nibble
        if nibble != 15:
            return length


def lzs_decompress(data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress one LZS-compressed packet; raise :class:`DecompressionError` if corrupt.

    The stream must end with an end marker; bytes after the end marker's byte are an error, as is a
    copy reaching before the start of the output or an output longer than ``max_output``.
    """
    bits = _BitReader(bytes(data))
    out = bytearray()
    while True:
        if bits.read(1) == 0:
            out.append(bits.read(8))
            if len(out) > max_output:
                raise DecompressionError(f"LZS: output exceeds {max_output} bytes")
            continue
        if bits.read(1) == 1:
            offset = bits.read(7)
            if offset == 0:  # end marker
                break
        else:
            offset = bits.read(11)
            if offset == 0:
                raise DecompressionError("LZS: zero 11-bit offset")
        length = _lzs_length(bits)
        if offset > len(out):
            raise DecompressionError(f"LZS: offset {offset} before start of output ({len(out)} bytes)")
        if len(out) + length > max_output:
            raise DecompressionError(f"LZS: output exceeds {max_output} bytes")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # overlapping copy repeats the last `offset` bytes
            for i in range(length):
                out.append(out[start + i])
    # After the end marker: padding to the byte boundary only.
    if bits.remaining() >= 8:
        raise DecompressionError(f"LZS: {bits.remaining() // 8} byte(s) after the end marker")
    return bytes(out)


def lz4_block_decompress(data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress one LZ4 block; raise :class:`DecompressionError` if corrupt or too long."""
    src = bytes(data)
    n = len(src)
    out = bytearray()
    i = 0
    if n == 0:
        raise DecompressionError("LZ4: empty block")
    while True:
        if i >= n:
            raise DecompressionError("LZ4: truncated block (missing token)")
        token = src[i]
        i += 1
        lit_len = token >> 4
        if lit_len == 15:
            while True:
                if i >= n:
                    raise DecompressionError("LZ4: truncated literal length")
                b = src[i]
                i += 1
                lit_len += b
                if b != 255:
                    break
                if lit_len > max_output:
                    raise DecompressionError(f"LZ4: output exceeds {max_output} bytes")
        if i + lit_len > n:
            raise DecompressionError("LZ4: literals run past end of block")
        if len(out) + lit_len > max_output:
            raise DecompressionError(f"LZ4: output exceeds {max_output} bytes")
        out += src[i:i + lit_len]
        i += lit_len
        if i == n:
            return bytes(out)  # last sequence: literals only
        if i + 2 > n:
            raise DecompressionError("LZ4: truncated match offset")
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        if offset == 0 or offset > len(out):
            raise DecompressionError(f"LZ4: bad match offset {offset} (output has {len(out)} bytes)")
        match_len = token & 15
        if match_len == 15:
            while True:
                if i >= n:
                    raise DecompressionError("LZ4: truncated match length")
                b = src[i]
                i += 1
                match_len += b
                if b != 255:
                    break
                if match_len > max_output:
                    raise DecompressionError(f"LZ4: output exceeds {max_output} bytes")
        match_len += 4
        if len(out) + match_len > max_output:
            raise DecompressionError(f"LZ4: output exceeds {max_output} bytes")
        start = len(out) - offset
        if offset >= match_len:
            out += out[start:start + match_len]
        else:
            # Overlap: the copy repeats the pattern of the last `offset` bytes.
            pattern = bytes(out[start:])
            reps, rest = divmod(match_len, offset)
            out += pattern * reps + pattern[:rest]


_ALIASES = {
    "lzs": "lzs",
    "oc-lz4": "lz4",
    "lz4": "lz4",
}


def normalize_encoding(name: str | None) -> str | None:
    """Map an ``X-*-Content-Encoding`` value to ``"lzs"``, ``"lz4"`` or None (identity/unknown)."""
    if not name:
        return None
    return _ALIASES.get(name.strip().lower())


def decompress(encoding: str, data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress ``data`` sent with the negotiated ``encoding`` (``lzs``, ``oc-lz4``, ``lz4``).

    Raises :class:`DecompressionError` for corrupt data or an unknown encoding.
    """
    algo = normalize_encoding(encoding)
    if algo == "lzs":
        return lzs_decompress(data, max_output)
    if algo == "lz4":
        return lz4_block_decompress(data, max_output)
    raise DecompressionError(f"unknown content encoding {encoding!r}")
