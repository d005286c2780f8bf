"""IKE and ESP-in-UDP datagrams, as far as the clear header tells (sans-I/O).

A capture support receives as "the AnyConnect problem" may hold IPsec instead: Cisco's client can run its tunnel
over IKEv2/IPsec (a connection profile whose primary protocol is IPsec), and other VPNs use it too. acflow does not
analyse IPsec; it names it, so that "no AnyConnect-protocol session" does not leave the engineer guessing.

Facts (RFC 7296 §3.1, RFC 2408 §3.1, RFC 3948 §2): the IKE header is 28 bytes — initiator SPI (8), responder SPI
(8), next payload (1), version (major and minor nibbles: 2.0 for IKEv2, 1.0 for IKEv1), exchange type (1), flags
(1: IKEv2 0x08 initiator, 0x20 response), message ID (4), length of the whole message (4). IKEv2 exchanges: 34
IKE_SA_INIT, 35 IKE_AUTH, 36 CREATE_CHILD_SA, 37 INFORMATIONAL; IKEv1: 2 Identity Protection (Main Mode), 4
Aggressive, 5 Informational, 32 Quick Mode. On UDP 4500 (NAT traversal) an IKE message follows four zero bytes (the
non-ESP marker), anything else is ESP (SPI, sequence number). The payloads of an IKE_SA_INIT (and of IKEv1's
first messages) are in the clear: Vendor ID payloads (type 43 in IKEv2, 13 in IKEv1; generic payload header: next
payload, flags, 16-bit length) name the implementations. Never raises.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["IKE_PORTS", "NOTIFY_ERRORS", "Esp", "IkeMessage", "read_ike"]

IKE_PORTS = frozenset((500, 4500))
IKEV2_EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
IKEV1_EXCHANGES = {2: "Main Mode", 4: "Aggressive Mode", 5: "Informational", 32: "Quick Mode"}
#: IKEv2 Notify error types (RFC 7296 §3.10.1) a gateway answers an IKE_SA_INIT with, in the clear
NOTIFY_ERRORS = {4: "INVALID_MAJOR_VERSION", 7: "INVALID_SYNTAX", 14: "NO_PROPOSAL_CHOSEN", 17: "INVALID_KE_PAYLOAD",
                 24: "AUTHENTICATION_FAILED", 34: "SINGLE_PAIR_REQUIRED", 35: "NO_ADDITIONAL_SAS",
                 36: "INTERNAL_ADDRESS_FAILURE", 37: "FAILED_CP_REQUIRED", 38: "TS_UNACCEPTABLE"}
_VID = {2: 43, 1: 13}
_HDR = struct.Struct("!8s8sBBBBII")


@dataclass(frozen=True)
class IkeMessage:
    version: int  # 1 or 2
    exchange: str
    initiator: bool  # sent by the initiator (IKEv2's I flag; IKEv1: the responder SPI still zero in its first)
    response: bool
    message_id: int
    spi_i: str
    spi_r: str
    nat_t: bool  # on UDP 4500, after the non-ESP marker
    vendor_ids: tuple[str, ...] = ()
    notifies: tuple[int, ...] = ()  # Notify message types in the clear (IKEv2 IKE_SA_INIT): below 16384 errors


@dataclass(frozen=True)
class Esp:
    spi: int
    sequence: int


def read_ike(data: bytes, sport: int | None, dport: int | None) -> IkeMessage | Esp | None:
    """The IKE message or ESP packet a UDP datagram between ``sport`` and ``dport`` carries, else None."""
    try:
        nat_t = 4500 in (sport, dport)
        if nat_t:
            if len(data) >= 8 and data[:4] != b"\0\0\0\0":
                spi, seq = struct.unpack_from("!II", data)
                return Esp(spi, seq) if spi > 255 else None  # SPIs 1-255 are reserved (RFC 4303 §2.1)
            if len(data) == 1 and data == b"\xff":  # NAT-keepalive
                return None
            data = data[4:]
        elif 500 not in (sport, dport):
            return None
        if len(data) < 28:
            return None
        spi_i, spi_r, first, version, exchange, flags, msg_id, length = _HDR.unpack_from(data)
        major = version >> 4
        if length != len(data) or spi_i == b"\0" * 8 or major not in (1, 2):
            return None
        names = IKEV2_EXCHANGES if major == 2 else IKEV1_EXCHANGES
        if exchange not in names:
            return None
        if major == 2:
            initiator, response = bool(flags & 0x08), bool(flags & 0x20)
        else:
            initiator, response = spi_r == b"\0" * 8, False
        vids, notes = _clear_payloads(data, first, major) if exchange in (34, 2, 4) else ((), ())
        return IkeMessage(major, names[exchange], initiator, response, msg_id, spi_i.hex(), spi_r.hex(), nat_t,
                          vids, notes)
    except (struct.error, IndexError, ValueError):
        return None


def _clear_payloads(data: bytes, first: int, major: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The Vendor IDs (printable ones as text, others as hex) and IKEv2 Notify types of a message in the clear."""
    vids, notes = [], []
    pos, kind = 28, first
    for _ in range(32):
        if kind == 0 or pos + 4 > len(data):
            break
        nxt, plen = data[pos], struct.unpack_from("!H", data, pos + 2)[0]
        if plen < 4 or pos + plen > len(data):
            break
        if kind == _VID[major]:
            body = data[pos + 4:pos + plen]
            vids.append(body.decode("ascii") if body and all(32 <= b < 127 for b in body) else body.hex())
        elif kind == 41 and major == 2 and plen >= 8:  # Notify: protocol, SPI size, type
            notes.append(struct.unpack_from("!H", data, pos + 6)[0])
        elif kind == 46 and major == 2:  # Encrypted: nothing in the clear after it
            break
        pos, kind = pos + plen, nxt
    return tuple(vids[:8]), tuple(notes[:16])
