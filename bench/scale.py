"""Make an N× capture out of a 1× capture: N copies of the session, one after the other, each a distinct flow.

Why not plain `editcap -t` + `mergecap -a`: the copies would reuse the same 5-tuples. A second TCP SYN on a
finished 4-tuple is handled by tshark (port reuse → a new tcp.stream), but UDP has no such boundary: the copies'
DTLS datagrams would join one UDP conversation in which a second ClientHello, repeated epochs and repeated record
sequence numbers appear, which neither tool should be asked to untangle in a benchmark. So every copy k gets its
own client ports instead (a bijection of the client's ephemeral ports, TCP/UDP checksums updated incrementally,
RFC 1624) and its timestamps shifted by k × (capture span + gap). Everything else is byte-identical: the same
ClientHello randoms, so the one key log (and the one PSK-NEGOTIATE key) decrypts every copy, for tshark and for
acflow alike; the bench checks that the decrypted inner packet counts scale with N.

One pass, in pure Python, over a pcapng (SHB, IDBs, EPBs; other blocks of the first section kept once; ISBs and
further sections dropped) or a classic pcap. Link types: Ethernet (optionally 802.1Q), raw IP, Linux SLL.
"""
from __future__ import annotations

import heapq
import itertools
import mmap
import struct
from collections import Counter
from pathlib import Path

STRIDE = 7919  # port shift per copy (a prime: with few client ports, collisions between copies are unlikely)
PORT_BASE, PORT_SPAN = 1024, 65536 - 1024

_LINK_ETHERNET, _LINK_RAW, _LINK_RAW4, _LINK_RAW_OLD, _LINK_SLL = 1, 101, 228, 12, 113


class ScaleError(ValueError):
    pass


def map_port(port: int, k: int, stride: int = STRIDE) -> int:
    if k == 0 or port < PORT_BASE:
        return port
    return PORT_BASE + (port - PORT_BASE + k * stride) % PORT_SPAN


def _csum_adjust(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    s = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _l3_offset(linktype: int, pkt) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) or None."""
    if linktype == _LINK_ETHERNET:
        off, etype = 14, (pkt[12] << 8 | pkt[13]) if len(pkt) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(pkt) >= off + 4:
            etype = pkt[off + 2] << 8 | pkt[off + 3]
            off += 4
    elif linktype == _LINK_SLL:
        off, etype = 16, (pkt[14] << 8 | pkt[15]) if len(pkt) >= 16 else 0
    elif linktype in (_LINK_RAW, _LINK_RAW4, _LINK_RAW_OLD):
        if not pkt:
            return None
        return 0, pkt[0] >> 4
    else:
        return None
    if etype == 0x0800:
        return off, 4
    if etype == 0x86DD:
        return off, 6
    return None


def _l4(linktype: int, pkt, clients):
    """(l4 offset, proto, source is a client, destination is a client) for TCP/UDP packets to/from one of
    ``clients`` (a set of packed addresses of one length)."""
    width = len(next(iter(clients)))
    l3 = _l3_offset(linktype, pkt)
    if l3 is None:
        return None
    off, ver = l3
    if ver == 4 and width == 4:
        if len(pkt) < off + 20:
            return None
        ihl = (pkt[off] & 0x0F) * 4
        proto = pkt[off + 9]
        if (pkt[off + 6] & 0x1F) or pkt[off + 7]:  # not the first fragment: no L4 header here
            return None
        src, dst = pkt[off + 12:off + 16], pkt[off + 16:off + 20]
        l4 = off + ihl
    elif ver == 6 and width == 16:
        if len(pkt) < off + 40:
            return None
        proto = pkt[off + 6]
        src, dst = pkt[off + 8:off + 24], pkt[off + 24:off + 40]
        l4 = off + 40
    else:
        return None
    if proto not in (6, 17) or len(pkt) < l4 + 8:
        return None
    return l4, proto, bytes(src) in clients, bytes(dst) in clients


def client_address(client: bytes, k: int) -> bytes:
    """Copy ``k``'s client address with distinct clients: the original plus k × 256 (198.18.0.2 → 198.18.k.2),
    away from the lab's other addresses (198.18.0.x)."""
    if k == 0:
        return client
    n = int.from_bytes(client, "big") + k * 256
    return (n % (1 << (8 * len(client)))).to_bytes(len(client), "big")


def _rewrite_address(linktype: int, pkt: bytearray, client: bytes, new: bytes) -> None:
    """Replace the client address by ``new`` in the IP header (and the checksums that cover it)."""
    l3 = _l3_offset(linktype, pkt)
    if l3 is None:
        return
    off, ver = l3
    if ver == 4 and len(client) == 4 and len(pkt) >= off + 20:
        fields, ihl, proto = (off + 12, off + 16), (pkt[off] & 0x0F) * 4, pkt[off + 9]
        first_fragment = not ((pkt[off + 6] & 0x1F) or pkt[off + 7])
    elif ver == 6 and len(client) == 16 and len(pkt) >= off + 40:
        fields, ihl, proto, first_fragment = (off + 8, off + 24), 40, pkt[off + 6], True
    else:
        return
    l4 = off + ihl
    for a in fields:
        if pkt[a:a + len(client)] != client:
            continue
        for i in range(0, len(client), 2):
            old_w = pkt[a + i] << 8 | pkt[a + i + 1]
            new_w = new[i] << 8 | new[i + 1]
            if ver == 4:
                c = pkt[off + 10] << 8 | pkt[off + 11]
                c = _csum_adjust(c, old_w, new_w)
                pkt[off + 10], pkt[off + 11] = c >> 8, c & 0xFF
            if first_fragment and proto in (6, 17):
                co = l4 + (16 if proto == 6 else 6)
                if len(pkt) >= co + 2:
                    c = pkt[co] << 8 | pkt[co + 1]
                    if not (proto == 17 and c == 0):
                        c = _csum_adjust(c, old_w, new_w)
                        if proto == 17 and c == 0:
                            c = 0xFFFF
                        pkt[co], pkt[co + 1] = c >> 8, c & 0xFF
            pkt[a + i], pkt[a + i + 1] = new[i], new[i + 1]


def _rewrite(linktype: int, pkt: bytearray, clients, k: int, stride: int) -> None:
    hit = _l4(linktype, pkt, clients)
    if hit is None:
        return
    l4, proto, is_src, is_dst = hit
    csum_off = l4 + (16 if proto == 6 else 6)
    for flag, poff in ((is_src, l4), (is_dst, l4 + 2)):
        if not flag:
            continue
        old = pkt[poff] << 8 | pkt[poff + 1]
        new = map_port(old, k, stride)
        if new == old:
            continue
        pkt[poff], pkt[poff + 1] = new >> 8, new & 0xFF
        if len(pkt) >= csum_off + 2:
            csum = pkt[csum_off] << 8 | pkt[csum_off + 1]
            if proto == 17 and csum == 0:
                continue  # no UDP checksum
            csum = _csum_adjust(csum, old, new)
            if proto == 17 and csum == 0:
                csum = 0xFFFF
            pkt[csum_off], pkt[csum_off + 1] = csum >> 8, csum & 0xFF


# -- container parsing ---------------------------------------------------------------------------------------

class _Pcapng:
    def __init__(self, data) -> None:
        self.data = data
        if len(data) < 28 or data[:4] != b"\x0a\x0d\x0d\x0a":
            raise ScaleError("not a pcapng file")
        bom = data[8:12]
        self.e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
        if self.e is None:
            raise ScaleError("pcapng: bad byte-order magic")
        self.interfaces: list[tuple[int, int]] = []  # (linktype, ticks per second)

    def blocks(self):
        """(offset, type, length) of every block of the first section."""
        data, e, off = self.data, self.e, 0
        first = True
        while off + 12 <= len(data):
            btype, blen = struct.unpack_from(e + "II", data, off)
            if blen < 12 or off + blen > len(data):
                raise ScaleError(f"pcapng: truncated or corrupt block at byte {off}")
            if btype == 0x0A0D0D0A and not first:
                return  # a second section: not supported, stop here
            first = False
            if btype == 1:
                self._idb(off, blen)
            yield off, btype, blen
            off += blen

    def _idb(self, off: int, blen: int) -> None:
        e, data = self.e, self.data
        linktype = struct.unpack_from(e + "H", data, off + 8)[0]
        tps = 1_000_000
        p, end = off + 16, off + blen - 4
        while p + 4 <= end:
            code, olen = struct.unpack_from(e + "HH", data, p)
            if code == 0:
                break
            if code == 9 and olen >= 1:
                r = data[p + 4]
                tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            p += 4 + ((olen + 3) & ~3)
        self.interfaces.append((linktype, tps))


def _sources(frames):
    """(source address, source port, destination port) of every TCP/UDP packet among ``frames``."""
    for linktype, pkt in frames:
        l3 = _l3_offset(linktype, pkt)
        if l3 is None:
            continue
        off, ver = l3
        if ver == 4 and len(pkt) >= off + 24:
            ihl = (pkt[off] & 0x0F) * 4
            if pkt[off + 9] in (6, 17) and len(pkt) >= off + ihl + 4:
                yield (bytes(pkt[off + 12:off + 16]), pkt[off + ihl] << 8 | pkt[off + ihl + 1],
                       pkt[off + ihl + 2] << 8 | pkt[off + ihl + 3])
        elif ver == 6 and len(pkt) >= off + 44 and pkt[off + 6] in (6, 17):
            yield bytes(pkt[off + 8:off + 24]), pkt[off + 40] << 8 | pkt[off + 41], pkt[off + 42] << 8 | pkt[off + 43]


def _client_address(frames) -> bytes:
    """The address that sends to port 443 most often (the VPN client), as packed bytes."""
    votes: Counter = Counter()
    for src, _sport, dport in _sources(frames):
        if dport == 443:
            votes[src] += 1
            if sum(votes.values()) >= 200:
                break
    if not votes:
        raise ScaleError("no TCP/UDP traffic to port 443: cannot tell the VPN client")
    return votes.most_common(1)[0][0]


def _all_clients(frames) -> frozenset:
    """Every address that sends TCP/UDP to port 443 and never from it (the clients of a gateway-side capture)."""
    to_443: set[bytes] = set()
    from_443: set[bytes] = set()
    for src, sport, dport in _sources(frames):
        if dport == 443:
            to_443.add(src)
        if sport == 443:
            from_443.add(src)
    clients = frozenset(to_443 - from_443)
    if not clients or len({len(a) for a in clients}) != 1:
        raise ScaleError("no clients of one address family sending to port 443")
    return clients


def _client_ports(frames, clients) -> set[int]:
    """The ports ``clients`` use (a port shared by two of them counts once: mapped alike for both, no collision
    within a copy)."""
    ports: set[int] = set()
    for linktype, pkt in frames:
        hit = _l4(linktype, pkt, clients)
        if hit is None:
            continue
        l4, _proto, is_src, is_dst = hit
        if is_src:
            ports.add(pkt[l4] << 8 | pkt[l4 + 1])
        if is_dst:
            ports.add(pkt[l4 + 2] << 8 | pkt[l4 + 3])
    return ports


def _choose_stride(ports: set[int], copies: int) -> int:
    for stride in (STRIDE, 7907, 7901, 6007, 5003, 4099, 3001, 1009):
        mapped = [{map_port(p, k, stride) for p in ports} for k in range(copies)]
        if all(not (mapped[a] & mapped[b]) for a in range(copies) for b in range(a + 1, copies)):
            return stride
    raise ScaleError("could not find a port mapping without collisions between the copies")


def count_frames(path: Path) -> int:
    """Number of packet blocks in a pcapng (block headers only: fast)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return sum(1 for _off, btype, _len in _Pcapng(data).blocks() if btype in (2, 3, 6))


def scale_capture(src: Path, dst: Path, copies: int, *, gap: float = 1.0, client_ip: str | None = None,
                  distinct_clients: bool = False, stagger: float | None = None, all_clients: bool = False) -> dict:
    """Write `copies` time-shifted, port-shifted copies of `src` into `dst` (pcapng); return a summary.

    ``distinct_clients``: copy k also comes from its own client address (`client_address`), as the clients of a
    gateway-side capture do. ``stagger``: copy k starts k × stagger seconds after the first instead of after the
    previous copy's end, the copies' frames interleaved in time order (concurrent sessions). ``all_clients``: the
    ports of every client (every address sending to port 443, never from it) are shifted, not only the busiest
    client's: a gateway-side capture of many clients (not with ``distinct_clients``)."""
    import ipaddress

    if copies < 1:
        raise ValueError("copies must be >= 1")
    with open(src, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] == b"\x0a\x0d\x0d\x0a":
            if all_clients and (distinct_clients or client_ip):
                raise ValueError("all_clients shifts every client's ports: not with distinct_clients or client_ip")
            return _scale_pcapng(data, Path(dst), copies, gap, client_ip and ipaddress.ip_address(client_ip).packed,
                                 distinct_clients, stagger, all_clients)
        raise ScaleError(f"{src}: only pcapng is supported (convert with: editcap -F pcapng IN OUT)")


def _scale_pcapng(data, dst: Path, copies: int, gap: float, client: bytes | None, distinct_clients: bool = False,
                  stagger: float | None = None, all_clients: bool = False) -> dict:
    pf = _Pcapng(data)
    e = pf.e
    layout = list(pf.blocks())
    epbs = [(off, blen) for off, btype, blen in layout if btype == 6]
    if not epbs:
        raise ScaleError("no Enhanced Packet Blocks")

    def frames():
        for off, _blen in epbs:
            ifid, _th, _tl, caplen = struct.unpack_from(e + "IIII", data, off + 8)
            yield pf.interfaces[ifid][0], data[off + 28:off + 28 + caplen]

    if all_clients:
        clients = _all_clients(frames())
        client = min(clients)  # named in the summary; `clients` are rewritten
    else:
        if client is None:
            client = _client_address(frames())
        clients = frozenset((bytes(client),))
    ports = _client_ports(frames(), clients)
    stride = _choose_stride(ports, copies)
    # span of the capture, in seconds (first and last EPB timestamps, any interface)
    tmin = tmax = None
    for off, _blen in epbs:
        ifid, th, tl = struct.unpack_from(e + "III", data, off + 8)
        t = ((th << 32) | tl) / pf.interfaces[ifid][1]
        tmin = t if tmin is None or t < tmin else tmin
        tmax = t if tmax is None or t > tmax else tmax
    shift_s = (tmax - tmin) + gap if stagger is None else stagger
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    written = 0

    def copy_blocks(k: int):
        """(time in seconds, block bytes) of copy k's packets, in capture order."""
        shifts = [round(k * shift_s * tps) for _lt, tps in pf.interfaces]
        new_client = client_address(client, k) if distinct_clients else client
        for off, btype, blen in layout:
            if btype != 6:
                continue
            blk = bytearray(data[off:off + blen])
            ifid, th, tl, caplen = struct.unpack_from(e + "IIII", blk, 8)
            if k:
                ts = ((th << 32) | tl) + shifts[ifid]
                struct.pack_into(e + "II", blk, 12, ts >> 32, ts & 0xFFFFFFFF)
                pkt = blk[28:28 + caplen]
                _rewrite(pf.interfaces[ifid][0], pkt, clients, k, stride)
                if new_client != client:
                    _rewrite_address(pf.interfaces[ifid][0], pkt, client, new_client)
                blk[28:28 + caplen] = pkt
            else:
                ts = (th << 32) | tl
            yield ts / pf.interfaces[ifid][1], bytes(blk)

    with open(tmp, "wb", buffering=1 << 20) as out:
        for off, btype, blen in layout:
            if btype not in (5, 6):  # SHB, IDBs, NRB, DSB… once; no interface statistics
                out.write(data[off:off + blen])
        if stagger is None:
            streams = itertools.chain.from_iterable(copy_blocks(k) for k in range(copies))
        else:  # concurrent copies: merged in time order (ties: the lower copy first)
            streams = heapq.merge(*(copy_blocks(k) for k in range(copies)), key=lambda tb: tb[0])
        for _ts, blk in streams:
            out.write(blk)
            written += 1
    tmp.replace(dst)
    return {"copies": copies, "frames": written, "frames_per_copy": len(epbs), "client": _fmt_addr(client),
            "clients": len(clients),
            "client_ports": sorted(ports), "port_stride": stride, "time_shift_s": round(shift_s, 6),
            "distinct_clients": distinct_clients, "bytes": dst.stat().st_size}


def _fmt_addr(b: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(b))


def merge_clients(sources, dst: Path, *, stagger: float = 0.25) -> dict:
    """A gateway-side capture of several clients at once from client-side captures of one client each (same
    interfaces): source i's client address becomes `client_address`(client, i), its frames shifted to start
    i × stagger seconds after the first source's, all frames merged in time order. Embedded secrets are dropped
    (give each source's key log)."""
    maps, layouts, pfs, handles = [], [], [], []
    try:
        for src in sources:
            f = open(src, "rb")  # noqa: SIM115 - closed below
            handles.append(f)
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            maps.append(data)
            pf = _Pcapng(data)
            layouts.append(list(pf.blocks()))
            pfs.append(pf)
        if any(pf.interfaces != pfs[0].interfaces or pf.e != pfs[0].e for pf in pfs):
            raise ScaleError("the sources' interfaces differ")

        def blocks(i: int):
            pf, data, e = pfs[i], maps[i], pfs[i].e
            epbs = [(off, blen) for off, btype, blen in layouts[i] if btype == 6]

            def frames():
                for off, _blen in epbs:
                    ifid, _th, _tl, caplen = struct.unpack_from(e + "IIII", data, off + 8)
                    yield pf.interfaces[ifid][0], data[off + 28:off + 28 + caplen]

            client = _client_address(frames())
            new = client_address(client, i)
            t0 = None
            for seq, (off, blen) in enumerate(epbs):
                ifid, th, tl, caplen = struct.unpack_from(e + "IIII", data, off + 8)
                tps = pf.interfaces[ifid][1]
                ts = (th << 32) | tl
                if t0 is None:
                    t0 = ts / tps
                    shift = round((base[0] + i * stagger - t0) * tps) if base else 0
                    if not base:
                        base.append(t0)
                ts += shift
                blk = bytearray(data[off:off + blen])
                struct.pack_into(e + "II", blk, 12, ts >> 32, ts & 0xFFFFFFFF)
                pkt = blk[28:28 + caplen]
                _rewrite_address(pf.interfaces[ifid][0], pkt, client, new)
                blk[28:28 + caplen] = pkt
                yield ts / tps, i, seq, bytes(blk)

        base: list[float] = []
        first = list(blocks(0))  # fixes the base time
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        written = 0
        with open(tmp, "wb", buffering=1 << 20) as out:
            for off, btype, blen in layouts[0]:
                if btype in (0x0A0D0D0A, 1):  # the section header and the interfaces, once
                    out.write(maps[0][off:off + blen])
            for _ts, _i, _seq, blk in heapq.merge(iter(first), *(blocks(i) for i in range(1, len(sources)))):
                out.write(blk)
                written += 1
        tmp.replace(dst)
        return {"sources": len(sources), "frames": written, "bytes": dst.stat().st_size}
    finally:
        for m in maps:
            m.close()
        for f in handles:
            f.close()
