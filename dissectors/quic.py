"""QUIC, told apart from DTLS on UDP 443 (sans-I/O): browsers' HTTP/3 is most of the UDP/443 traffic on a laptop.

acflow does not analyse QUIC; the "other traffic" summary names it. A QUIC long header (RFC 8999, the
version-independent properties; RFC 9000 section 17.2): the first byte's high bit set (a long header) and, for the
versions below, its second bit (the fixed bit; arbitrary in a Version Negotiation packet); a 32-bit version; a
Destination and a Source Connection ID, each behind its length byte (at most 20 bytes in QUIC v1 and v2). Known
versions: 1 (RFC 9000), 0x6b3343cf (QUIC v2, RFC 9369), the IETF drafts 0xff0000xx, and 0 (a server's Version
Negotiation). A DTLS record begins with its content type (20–25), so no DTLS datagram has a long header's first
byte. Short-header packets (after the handshake) carry no version: a flow first seen mid-connection stays "UDP".
"""
from __future__ import annotations

__all__ = ["is_quic_long_header"]

_V1, _V2 = 0x00000001, 0x6B3343CF
_MAX_CID = 20


def is_quic_long_header(data: bytes) -> bool:
    """``data`` (one UDP payload) starts with a QUIC long header of a known version."""
    if len(data) < 7 or not data[0] & 0x80:
        return False
    version = int.from_bytes(data[1:5], "big")
    if version not in (_V1, _V2, 0) and version >> 8 != 0xFF0000:
        return False
    if version and not data[0] & 0x40:  # the fixed bit (a Version Negotiation packet's is arbitrary)
        return False
    dcid = data[5]
    if dcid > _MAX_CID or len(data) < 7 + dcid:
        return False
    return data[6 + dcid] <= _MAX_CID
