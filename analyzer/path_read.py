"""The edge of `analyzer.path`: one capture file read into a `SideCapture` (its TCP and UDP packets, IP fragments
reassembled, the packets inside a mirror's or an overlay's encapsulation) — or into one per pcapng interface, when
one file holds the traffic of several interfaces (a firewall captured on its inside and its outside)."""
from __future__ import annotations

import os

from dissectors import packet as packet_mod
from dissectors.packet import TCP_SYN
from dissectors.pcapfile import CaptureError, Frame, Interface
from dissectors.tls.handshake import record_client_fingerprint

from .capture import read_capture
from .path import SHORT_PREFIX, Observed, SideCapture, payload_hint, payload_key, syn_mss

MAX_PACKETS = 1_000_000  # per capture: what a comparison holds in memory (some 400 bytes a packet in CPython)


def read_side(path: str | os.PathLike, name: str | None = None, limit: int = MAX_PACKETS) -> SideCapture:
    """Every TCP and UDP packet of the capture at ``path`` (a damaged file: what comes before the damage, the error
    in ``errors``; past ``limit`` packets the rest is left out, and ``errors`` says so)."""
    return read_sides(path, lambda _itf: name or str(path), limit, by_interface=False)[0]


def read_sides(path: str | os.PathLike, name_of=None, limit: int = MAX_PACKETS,
               by_interface: bool = True) -> dict[int, SideCapture]:
    """The capture's TCP and UDP packets, one `SideCapture` per pcapng interface id (``by_interface``; a pcap file
    has one, 0), named ``name_of(interface)`` (an `Interface`, or None for a pcap file). ``limit``: packets in all;
    past it the rest is left out (every side's ``errors`` says so). Errors of the file go to every side."""
    sides: dict[int, SideCapture] = {}
    interfaces: dict[int, Interface] = {}
    defrag = packet_mod.IPv4Defragmenter()
    decode = packet_mod.decode
    errors: list[str] = []
    total = 0

    def side_of(itf: int) -> SideCapture:
        s = sides.get(itf)
        if s is None:
            s = sides[itf] = SideCapture(name_of(interfaces.get(itf)) if name_of else str(path))
            s.errors = errors  # (shared: the file's)
        return s

    if not by_interface:
        side_of(0)  # (there even without a packet: the file's errors are said)
    for ev in read_capture(path):
        if type(ev) is Frame:
            side = side_of(ev.interface if by_interface else 0)
            side.frames = ev.number
            if side.first_ts is None:
                side.first_ts = ev.ts
            side.last_ts = ev.ts
            pkt = decode(ev.linktype, ev.data)
            if pkt is None:
                continue
            if pkt.frag_offset or pkt.more_fragments:
                pkt = defrag.feed(pkt, ev.ts, ev.number)
                if pkt is None:
                    continue
            proto = pkt.proto
            if (proto != 6 and proto != 17) or pkt.sport is None:
                continue
            if total >= limit:
                errors.append(f"compared the first {limit} TCP/UDP packets only (from frame {ev.number} on, the "
                              "capture is left out)")
                break
            total += 1
            plen = pkt.payload_len
            pl = pkt.payload
            flags = pkt.flags or 0
            side.packets.append(Observed(ev.ts, ev.number, pkt.src, pkt.sport, pkt.dst, pkt.dport, proto, pkt.ttl,
                                         flags, pkt.seq or 0, plen, payload_key(pl, plen),
                                         payload_key(pl, plen, SHORT_PREFIX), payload_hint(proto, pl),
                                         syn_mss(ev.data, pkt.sport, pkt.dport, pkt.seq) if flags & TCP_SYN
                                         else None,
                                         record_client_fingerprint(pl) if proto == 6 and pl[:1] == b"\x16" else None))
        elif type(ev) is Interface:
            interfaces[ev.id] = ev
        elif type(ev) is CaptureError:
            errors.append(f"{ev.message} (offset {ev.offset})")
    return sides
