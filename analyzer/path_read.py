"""The edge of `analyzer.path`: one capture file read into a `SideCapture` (its TCP and UDP packets, IP fragments
reassembled, the packets inside a mirror's or an overlay's encapsulation)."""
from __future__ import annotations

import os

from dissectors import packet as packet_mod
from dissectors.packet import TCP_SYN
from dissectors.pcapfile import CaptureError, Frame

from .capture import read_capture
from .path import Observed, SideCapture, payload_hint, payload_key, syn_mss

MAX_PACKETS = 4_000_000  # per capture: what a comparison holds in memory (about 200 bytes a packet)


def read_side(path: str | os.PathLike, name: str | None = None, limit: int = MAX_PACKETS) -> SideCapture:
    """Every TCP and UDP packet of the capture at ``path`` (a damaged file: what comes before the damage, the error
    in ``errors``; past ``limit`` packets the rest is left out, and ``errors`` says so)."""
    side = SideCapture(name or str(path))
    defrag = packet_mod.IPv4Defragmenter()
    decode = packet_mod.decode
    out = side.packets
    for ev in read_capture(path):
        if type(ev) is Frame:
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
            if len(out) >= limit:
                side.errors.append(f"compared the first {limit} TCP/UDP packets only (from frame {ev.number} on, "
                                   "the capture is left out)")
                break
            plen = pkt.payload_len
            pl = pkt.payload
            flags = pkt.flags or 0
            out.append(Observed(ev.ts, ev.number, pkt.src, pkt.sport, pkt.dst, pkt.dport, proto, pkt.ttl,
                                flags, pkt.seq or 0, plen, payload_key(pl, plen), payload_hint(proto, pl),
                                syn_mss(ev.data, pkt.sport, pkt.dport, pkt.seq) if flags & TCP_SYN else None))
        elif type(ev) is CaptureError:
            side.errors.append(f"{ev.message} (offset {ev.offset})")
    return side
