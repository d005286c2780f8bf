"""`--export-inner`: write the decapsulated inner IP packets to a pcapng file (I/O edge).

One Section Header Block, one Interface Description Block (LINKTYPE_RAW = 101, microsecond timestamps), then
an Enhanced Packet Block per inner packet with the original capture timestamp and an `opt_comment` naming the
channel and direction, e.g. "CSTP client→gateway (outer frame 42)". Layout per the pcapng specification
(draft-ietf-opsawg-pcapng): blocks padded to 32 bits, block total length repeated at the end.
"""
from __future__ import annotations

import struct

LINKTYPE_RAW = 101
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class InnerPcapWriter:
    """``target``: a path (opened here, closed by `close`) or a binary file object with ``write`` (e.g. an
    `analyzer.outputs.AtomicFile`, which its owner commits or aborts)."""

    def __init__(self, target) -> None:
        self._owned = not hasattr(target, "write")
        self._f = open(target, "wb") if self._owned else target  # noqa: SIM115 - closed by close()
        shb_opts = _option(4, b"acflow --export-inner") + _option(0, b"")
        self._f.write(_block(_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts))
        idb_opts = _option(2, b"vpn-inner") + _option(0, b"")
        self._f.write(_block(_IDB, struct.pack("<HHI", LINKTYPE_RAW, 0, 0) + idb_opts))
        self.count = 0

    def write(self, channel: str, direction: str, ts: float, frame: int, packet: bytes) -> None:
        us = min(max(int(round(ts * 1_000_000)), 0), (1 << 64) - 1)  # pcapng: unsigned 64-bit timestamp
        arrow = "client→gateway" if direction == "c2s" else "gateway→client"
        comment = f"{channel.upper()} {arrow} (outer frame {frame})".encode()
        body = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(packet), len(packet)) + _pad(bytes(packet))
        body += _option(1, comment) + _option(0, b"")
        self._f.write(_block(_EPB, body))
        self.count += 1

    def close(self) -> None:
        if self._owned and not self._f.closed:
            self._f.close()
