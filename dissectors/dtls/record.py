"""DTLS record layer framing (RFC 6347 §4.1; RFC 4347 for DTLS 1.0; Cisco's pre-standard 0x0100).

A UDP datagram holds one or more records, each with a 13-byte header::

    type(1) version(2) epoch(2) sequence_number(6) length(2)   fragment[length]

Versions understood: 0x0100 ("DTLS 1.0 (OpenSSL pre 0.9.8f)", used by Cisco AnyConnect and
openconnect's legacy mode), 0xFEFF (DTLS 1.0), 0xFEFD (DTLS 1.2).  DTLS 1.3's unified header
(RFC 9147 §4) and connection-id records (RFC 9146, type 25) are recognised and reported as unsupported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "CT_ALERT",
    "CT_APPLICATION_DATA",
    "CT_CHANGE_CIPHER_SPEC",
    "CT_HANDSHAKE",
    "CT_HEARTBEAT",
    "DTLS10",
    "DTLS12",
    "DTLS13",
    "DTLS_BAD_VER",
    "HEADER_LEN",
    "KNOWN_VERSIONS",
    "MAX_FRAGMENT",
    "RECORD_HEADER",
    "RECORD_HEADER_SEQ64",
    "RawRecord",
    "split_datagram",
]

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_HEARTBEAT = 24
CT_TLS12_CID = 25

HEADER_LEN = 13
#: the record header: type, version, epoch, sequence number (high 16 and low 32 bits), length
RECORD_HEADER = struct.Struct("!BHHHIH")
#: the same header with epoch and sequence number as one 64-bit field (epoch << 48 | sequence number, the record's
#: seq_num in the additional data and MAC input)
RECORD_HEADER_SEQ64 = struct.Struct("!BHQH")
# RFC 6347 §4.1 / RFC 5246 §6.2.3: at most 2^14 + 2048 bytes of ciphertext.
MAX_FRAGMENT = 2**14 + 2048

DTLS_BAD_VER = 0x0100
DTLS10 = 0xFEFF
DTLS12 = 0xFEFD
DTLS13 = 0xFEFC
KNOWN_VERSIONS = (DTLS_BAD_VER, DTLS10, DTLS12)

CONTENT_TYPE_NAMES = {
    CT_CHANGE_CIPHER_SPEC: "change_cipher_spec",
    CT_ALERT: "alert",
    CT_HANDSHAKE: "handshake",
    CT_APPLICATION_DATA: "application_data",
    CT_HEARTBEAT: "heartbeat",
}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as framed from a datagram (not an event)."""

    content_type: int
    version: int
    epoch: int
    seq: int  # 48-bit sequence number
    fragment: bytes
    offset: int  # offset of the header in the datagram

    @property
    def seq64(self) -> int:
        """epoch(2) || sequence_number(6): the 8-byte value DTLS uses in place of TLS's seq_num
        (RFC 6347 §4.1.2.1) in the MAC / AEAD additional data and the ChaCha20 nonce."""
        return (self.epoch << 48) | self.seq


def split_datagram(datagram: bytes) -> tuple[list[RawRecord], str | None]:
    """Frame the records of one datagram.  Returns (records, error): the error, if any, describes the
    first malformed header; records before it are returned, nothing after it (the rest of the datagram
    cannot be framed)."""
    out: list[RawRecord] = []
    pos = 0
    n = len(datagram)
    while pos < n:
        remaining = n - pos
        first = datagram[pos]
        if remaining < HEADER_LEN:
            if 0x20 <= first <= 0x3F:
                return out, f"DTLS 1.3 unified-header record at offset {pos} (unsupported)"
            return out, f"truncated record header at offset {pos} ({remaining} bytes)"
        ct, version, epoch, seq_hi, seq_lo, length = RECORD_HEADER.unpack_from(datagram, pos)
        if ct < CT_CHANGE_CIPHER_SPEC or ct > CT_TLS12_CID:
            if 0x20 <= ct <= 0x3F:
                return out, f"DTLS 1.3 unified-header record at offset {pos} (unsupported)"
            return out, f"not a DTLS record at offset {pos} (content type {ct})"
        if version not in KNOWN_VERSIONS:
            if version == DTLS13:
                what = "DTLS 1.3 record version"
            elif (version >> 8) in (0x03,):
                what = f"TLS version 0x{version:04x} (TLS over UDP?)"
            else:
                what = f"unknown record version 0x{version:04x}"
            return out, f"{what} at offset {pos}"
        if ct == CT_TLS12_CID:
            return out, f"connection-id record (RFC 9146) at offset {pos} (unsupported)"
        seq = (seq_hi << 32) | seq_lo
        if length > MAX_FRAGMENT:
            return out, f"record length {length} exceeds the maximum {MAX_FRAGMENT} at offset {pos}"
        end = pos + HEADER_LEN + length
        if end > n:
            return out, (f"truncated record at offset {pos}: header says {length} bytes, "
                         f"{n - pos - HEADER_LEN} present (epoch {epoch}, seq {seq})")
        out.append(RawRecord(ct, version, epoch, seq, bytes(datagram[pos + HEADER_LEN:end]), pos))
        pos = end
    return out, None
