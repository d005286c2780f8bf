"""Link, network and transport decoding of captured frames (sans-I/O, hot path).

``decode(linktype, data)`` turns the bytes of one captured frame into a :class:`Packet` (or ``None``
when the frame is not IP or is garbage). It is written for speed: ``struct`` on the frame bytes,
one object per packet, cached address strings, no scapy.

Link types (LINKTYPE_* values, https://www.tcpdump.org/linktypes.html):

* 1 Ethernet, with up to 8 tags (802.1Q / 802.1ad VLAN, Cisco VN-Tag, Cisco MetaData, 802.1BR E-Tag), an MPLS
  label stack with IP under it, and PPPoE session frames;
* 101 raw IP, 228 raw IPv4, 229 raw IPv6, 12 and 14 (DLT_RAW as written by some platforms);
* 113 Linux cooked capture (SLL) and 276 (SLL2);
* 0 BSD null/loopback (4-byte address family in either byte order) and 108 OpenBSD loop;
* 258 Apple PKTAP (macOS `tcpdump -k`, `-i pktap`): its header (length, DLT of the frame), then an Ethernet,
  null or raw IP frame.

Network layer: IPv4 (RFC 791; options skipped, checksum not verified, TSO frames with total length 0
are accepted), IPv6 (RFC 8200; hop-by-hop, routing, destination options, fragment and AH extension
headers skipped). Transport: TCP (RFC 9293; options skipped), UDP (RFC 768), ICMP (RFC 792) and ICMPv6
(RFC 4443) with the quoted packet of error messages decoded into ``icmp_inner`` (so that "port
unreachable" can be matched to the flow that caused it).

Encapsulations (`decapsulate`): a packet carrying another — VXLAN (UDP 4789, 8472), GENEVE (UDP 6081), ERSPAN
types I-III and GRE (IP protocol 47), IPv4/IPv6 in IP (4, 41) — decodes as the packet inside, ``encap`` naming
the outermost carrier (a traffic mirror's or an overlay's: the capture of an ERSPAN session or a cloud mirror).

Fragments (IPv4, and IPv6 with a fragment header) are not decoded past the IP layer: ``payload`` is
the raw fragment data and ``sport``/``dport`` are ``None``; :class:`IPv4Defragmenter` reassembles
them (it also handles IPv6 fragments) into a fully decoded :class:`Packet`.

Frames cut by the snaplen decode as far as possible with ``truncated=True``; ``payload_len`` always
gives the length the headers claim, so TCP reassembly can account for bytes that were not captured.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_aton, inet_ntop

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_PKTAP",
    "LINKTYPE_RAW",
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "TCP_ACK",
    "TCP_CWR",
    "TCP_ECE",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "Defragmenter",
    "IPv4Defragmenter",
    "Packet",
    "decapsulate",
    "decode",
    "internet_checksum",
    "ipv4_addresses",
    "plain_ipv4",
]


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum (IPv4 header, ICMP, TCP/UDP with their pseudo-header)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_PKTAP = 258


@dataclass(slots=True, eq=True)
class Packet:
    """A decoded IP packet. Treat as immutable (not frozen only for construction speed).

    ``sport``/``dport`` are set for TCP and UDP; ``seq``/``ack``/``flags``/``window`` for TCP;
    ``icmp_type``/``icmp_code``/``icmp_inner`` for ICMP and ICMPv6. Fields that do not apply are
    ``None``. For IPv6, ``ttl`` is the hop limit, ``df`` is ``None`` and ``ip_id``/``frag_offset``/
    ``more_fragments`` come from the fragment header when there is one. ``payload`` is the transport
    payload (TCP/UDP data, ICMP body after the 8-byte header, raw IP payload for other protocols and
    for fragments); ``payload_len`` is its length according to the headers (larger than
    ``len(payload)`` when the frame was truncated).
    """

    ip_version: int = 4
    src: str = ""
    dst: str = ""
    proto: int = 0
    sport: int | None = None
    dport: int | None = None
    seq: int | None = None
    ack: int | None = None
    flags: int | None = None
    window: int | None = None
    payload: bytes = b""
    ttl: int = 64
    df: bool | None = None
    ip_id: int = 0
    frag_offset: int = 0
    more_fragments: bool = False
    ip_total_len: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_inner: Packet | None = None
    truncated: bool = False
    payload_len: int = 0
    # the packet came out of an encapsulation (a mirror's or an overlay's, see `decapsulate`): (kind, outer source,
    # outer destination, identifier, outer source port, outer destination port) of the outermost one; kind
    # "vxlan", "geneve", "erspan", "gre", "ip-in-ip"; identifier the VNI, ERSPAN session or GRE key (None without
    # one); the ports those of a UDP carrier (VXLAN, GENEVE), else None
    encap: tuple | None = None

    @property
    def is_fragment(self) -> bool:
        """True for an IP fragment that needs reassembly before transport decoding."""
        return self.more_fragments or self.frag_offset != 0


# --- address caching ---------------------------------------------------------------------------------

_CACHE_MAX = 1 << 16
_addr4_cache: dict[int, str] = {}
_addr6_cache: dict[bytes, str] = {}


def _addr4(a: int) -> str:
    """Printable form of an IPv4 address given as a 32-bit integer (cached)."""
    s = _addr4_cache.get(a)
    if s is None:
        if len(_addr4_cache) >= _CACHE_MAX:
            _addr4_cache.clear()
        s = _addr4_cache[a] = inet_ntop(AF_INET, a.to_bytes(4, "big"))
    return s


def _addr6(b: bytes) -> str:
    s = _addr6_cache.get(b)
    if s is None:
        if len(_addr6_cache) >= _CACHE_MAX:
            _addr6_cache.clear()
        s = _addr6_cache[b] = inet_ntop(AF_INET6, b)
    return s


# --- structs -----------------------------------------------------------------------------------------

_u_ip4 = struct.Struct("!BBHHHBBHII").unpack_from  # vihl tos total id frag ttl proto cksum src dst
# plain_ipv4: an IPv4 header without options and the 14 bytes after it in one call (vihl total frag proto, the 12
# `addresses` bytes: addresses and ports, then TCP seq ack offflags; UDP: length << 16 | checksum, …)
_u_ip4_plain = struct.Struct("!BxHxxHxBxx12sIIH").unpack_from
_u_ip6 = struct.Struct("!IHBB").unpack_from  # vtcfl plen nh hlim
_u_tcp = struct.Struct("!HHIIHH").unpack_from  # sport dport seq ack offflags window
_u_HH = struct.Struct("!HH").unpack_from
_u_HHH = struct.Struct("!HHH").unpack_from
_u_H = struct.Struct("!H").unpack_from
_u_I_le = struct.Struct("<I").unpack_from
_u_I_be = struct.Struct(">I").unpack_from
_u_frag6 = struct.Struct("!BxHI").unpack_from  # nh, offset/flags, id
# PKTAP: header length, next type, the frame's DLT (host byte order: little-endian on every Mac)
_u_pktap = struct.Struct("<III").unpack_from
_PKTAP_DLTS = {1: 1, 0: 0, 12: 12, 14: 14}  # DLT_EN10MB, DLT_NULL, DLT_RAW (both of Apple's values)

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_PPPOE_SESSION = 0x8864
_ETH_MPLS = frozenset((0x8847, 0x8848))  # unicast, multicast: a label stack, then (here) an IP packet
# tags between the MAC addresses and the EtherType of the frame they carry, and the bytes each takes before that
# next EtherType: 802.1Q/802.1ad VLAN tags 2, Cisco VN-Tag (FEX, Firepower chassis ports) 4, Cisco MetaData (CMD,
# TrustSec SGT) 6, 802.1BR E-Tag 6
_ETH_TAGS = {0x8100: 2, 0x88A8: 2, 0x9100: 2, 0x9200: 2, 0x8926: 4, 0x8909: 6, 0x893F: 6}

_AF_INET6_VALUES = frozenset((10, 24, 28, 30))  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin

_IP6_EXT_LEN8 = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options: (len+1)*8
_IP6_FRAG = 44
_IP6_AH = 51

_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))

# --- transport ---------------------------------------------------------------------------------------


def _l4(
    version: int,
    src: str,
    dst: str,
    proto: int,
    data: bytes,
    l4: int,
    end: int,
    l4len: int,
    truncated: bool,
    ttl: int,
    df: bool | None,
    ipid: int,
    fo: int,
    mf: bool,
    total: int,
    depth: int,
) -> Packet | None:
    """Decode the transport header at ``data[l4:end]`` (``l4len`` = length claimed by the IP layer)."""
    avail = end - l4
    if proto == 6:
        if avail < 20:
            if l4len < 20 or not truncated:
                return None  # a TCP header that cannot fit the datagram: garbage
            sport = dport = None
            if avail >= 4:
                sport, dport = _u_HH(data, l4)
            return Packet(
                version, src, dst, 6, sport, dport, None, None, None, None, b"", ttl, df, ipid, fo, mf,
                total, None, None, None, True, l4len - 20,
            )
        sport, dport, seq, ack, offflags, win = _u_tcp(data, l4)
        doff = (offflags >> 12) << 2
        if doff < 20 or doff > l4len:
            return None
        if doff > avail:  # options cut by the snaplen
            return Packet(
                version, src, dst, 6, sport, dport, seq, ack, offflags & 0x1FF, win, b"", ttl, df, ipid,
                fo, mf, total, None, None, None, True, l4len - doff,
            )
        return Packet(
            version, src, dst, 6, sport, dport, seq, ack, offflags & 0x1FF, win, data[l4 + doff : end],
            ttl, df, ipid, fo, mf, total, None, None, None, truncated, l4len - doff,
        )
    if proto == 17:
        if avail < 8:
            if l4len < 8 or not truncated:
                return None
            sport = dport = None
            if avail >= 4:
                sport, dport = _u_HH(data, l4)
            return Packet(
                version, src, dst, 17, sport, dport, None, None, None, None, b"", ttl, df, ipid, fo, mf,
                total, None, None, None, True, l4len - 8,
            )
        sport, dport, ulen = _u_HHH(data, l4)
        if 8 <= ulen <= l4len:
            plen = ulen - 8
            uend = l4 + ulen
            end = min(end, uend)
        else:  # 0 (jumbogram) or inconsistent: trust the IP layer
            plen = l4len - 8
        return Packet(
            version, src, dst, 17, sport, dport, None, None, None, None, data[l4 + 8 : end], ttl, df,
            ipid, fo, mf, total, None, None, None, truncated or (end - l4 - 8) < plen, plen,
        )
    if proto == 1 or proto == 58:
        if avail < 4:
            if l4len < 4 or not truncated:
                return None
            return Packet(
                version, src, dst, proto, None, None, None, None, None, None, b"", ttl, df, ipid, fo, mf,
                total, None, None, None, True, max(l4len - 8, 0),
            )
        itype = data[l4]
        icode = data[l4 + 1]
        inner = None
        if depth == 0 and avail > 8:
            if proto == 1 and itype in _ICMP4_ERRORS:
                inner = _ipv4(data[l4 + 8 : end], 0, 1)
            elif proto == 58 and itype in _ICMP6_ERRORS:
                inner = _ipv6(data[l4 + 8 : end], 0, 1)
        return Packet(
            version, src, dst, proto, None, None, None, None, None, None, data[l4 + 8 : end], ttl, df,
            ipid, fo, mf, total, itype, icode, inner, truncated or avail < 8, max(l4len - 8, 0),
        )
    return Packet(
        version, src, dst, proto, None, None, None, None, None, None, data[l4:end], ttl, df, ipid, fo, mf,
        total, None, None, None, truncated, l4len,
    )


# --- network -----------------------------------------------------------------------------------------


def _ipv4(data: bytes, off: int, depth: int = 0) -> Packet | None:
    n = len(data) - off
    if n < 20:
        return None
    vihl, _tos, total, ipid, fragw, ttl, proto, _ck, isrc, idst = _u_ip4(data, off)
    if vihl >> 4 != 4:
        return None
    ihl = (vihl & 15) << 2
    if ihl < 20:
        return None
    if total == 0:  # TSO / segmentation offload: length not filled in
        total = n
    if total < ihl:
        return None
    src = _addr4_cache.get(isrc) or _addr4(isrc)
    dst = _addr4_cache.get(idst) or _addr4(idst)
    df = (fragw & 0x4000) != 0
    mf = (fragw & 0x2000) != 0
    fo = (fragw & 0x1FFF) << 3
    truncated = False
    if total > n:
        truncated = True
        end = len(data)
    else:
        end = off + total
    l4len = total - ihl
    if ihl > n:  # options cut by the snaplen
        return Packet(
            4, src, dst, proto, None, None, None, None, None, None, b"", ttl, df, ipid, fo, mf, total,
            None, None, None, True, l4len,
        )
    l4 = off + ihl
    if mf or fo:
        return Packet(
            4, src, dst, proto, None, None, None, None, None, None, data[l4:end], ttl, df, ipid, fo, mf,
            total, None, None, None, truncated, l4len,
        )
    if proto == 6 and end - l4 >= 20:
        # fast path for the common case (complete TCP header); anything unusual goes through _l4
        sport, dport, seq, ack, offflags, win = _u_tcp(data, l4)
        doff = (offflags >> 12) << 2
        if 20 <= doff <= end - l4 and doff <= l4len:
            return Packet(
                4, src, dst, 6, sport, dport, seq, ack, offflags & 0x1FF, win, data[l4 + doff : end], ttl, df,
                ipid, 0, False, total, None, None, None, truncated, l4len - doff,
            )
    return _l4(4, src, dst, proto, data, l4, end, l4len, truncated, ttl, df, ipid, 0, False, total, depth)


def _ipv6(data: bytes, off: int, depth: int = 0) -> Packet | None:
    n = len(data) - off
    if n < 40:
        return None
    vtcfl, plen, nh, hlim = _u_ip6(data, off)
    if vtcfl >> 28 != 6:
        return None
    b = data[off + 8 : off + 24]
    src = _addr6_cache.get(b) or _addr6(b)
    b = data[off + 24 : off + 40]
    dst = _addr6_cache.get(b) or _addr6(b)
    if plen == 0:  # jumbogram or TSO: use what was captured
        plen = n - 40
    total = 40 + plen
    truncated = False
    if total > n:
        truncated = True
        end = len(data)
    else:
        end = off + total
    p = off + 40
    ipid = 0
    fo = 0
    mf = False
    # extension header chain (RFC 8200 section 4)
    for _ in range(16):
        if nh in _IP6_EXT_LEN8:
            if end - p < 2:
                break
            hl = (data[p + 1] + 1) << 3
        elif nh == _IP6_FRAG:
            if end - p < 8:
                break
            nnh, offw, ipid = _u_frag6(data, p)
            fo = offw & 0xFFF8
            mf = (offw & 1) != 0
            p += 8
            nh = nnh
            if fo or mf:
                return Packet(
                    6, src, dst, nh, None, None, None, None, None, None, data[p:end], hlim, None, ipid,
                    fo, mf, total, None, None, None, truncated, off + total - p,
                )
            continue
        elif nh == _IP6_AH:
            if end - p < 2:
                break
            hl = (data[p + 1] + 2) << 2
        else:
            break
        if p + hl > off + total:
            return None  # extension header overruns the datagram: garbage
        if p + hl > end:  # cut by the snaplen
            return Packet(
                6, src, dst, nh, None, None, None, None, None, None, b"", hlim, None, ipid, fo, mf,
                total, None, None, None, True, 0,
            )
        nh = data[p]
        p += hl
    return _l4(6, src, dst, nh, data, p, end, off + total - p, truncated, hlim, None, ipid, fo, mf, total, depth)


def _ip_any(data: bytes, off: int) -> Packet | None:
    if len(data) <= off:
        return None
    v = data[off] >> 4
    if v == 4:
        return _ipv4(data, off)
    if v == 6:
        return _ipv6(data, off)
    return None


def _by_ethertype(data: bytes, off: int, et: int) -> Packet | None:
    for _ in range(8):  # tags: VLAN (QinQ), VN-Tag, CMD, E-Tag, in any order, at most 8
        skip = _ETH_TAGS.get(et)
        if skip is None:
            break
        off += skip
        et = (data[off] << 8) | data[off + 1]
        off += 2
    if et in _ETH_MPLS:  # RFC 3032 label stack entries (4 bytes) up to the bottom of stack, then IPv4 or IPv6
        for _ in range(16):
            bottom = data[off + 2] & 1
            off += 4
            if bottom:
                return _ip_any(data, off)
        return None
    if et == _ETH_IPV4:
        return _ipv4(data, off)
    if et == _ETH_IPV6:
        return _ipv6(data, off)
    if et == _ETH_PPPOE_SESSION:  # RFC 2516: 6-byte PPPoE header, then the PPP protocol
        ppp = (data[off + 6] << 8) | data[off + 7]
        if ppp == 0x0021:
            return _ipv4(data, off + 8)
        if ppp == 0x0057:
            return _ipv6(data, off + 8)
    return None


def _null_family(data: bytes, swap_first: bool) -> Packet | None:
    if len(data) < 4:
        return None
    fam = _u_I_be(data, 0)[0] if swap_first else _u_I_le(data, 0)[0]
    if fam > 0xFFFF:
        fam = _u_I_le(data, 0)[0] if swap_first else _u_I_be(data, 0)[0]
    if fam == 2:
        return _ipv4(data, 4)
    if fam in _AF_INET6_VALUES:
        return _ipv6(data, 4)
    return None


def decode(linktype: int, data: bytes) -> Packet | None:
    """Decode one captured frame; ``None`` if it is not an IP packet or cannot be parsed. A packet that carries
    another (VXLAN, GENEVE, ERSPAN, GRE, IP in IP: a mirror's or an overlay's encapsulation) is the packet inside
    (`decapsulate`), with ``encap`` set.

    Never raises on malformed input.
    """
    try:
        if linktype == 1:
            if len(data) < 14:
                return None
            if data[12] == 8 and data[13] == 0:  # IPv4, the common case
                p = _ipv4(data, 14)
            else:
                p = _by_ethertype(data, 14, (data[12] << 8) | data[13])
        elif linktype == 113:
            if len(data) < 16:
                return None
            p = _by_ethertype(data, 16, (data[14] << 8) | data[15])
        elif linktype == 276:
            if len(data) < 20:
                return None
            p = _by_ethertype(data, 20, (data[0] << 8) | data[1])
        elif linktype == 101 or linktype == 12 or linktype == 14:
            p = _ip_any(data, 0)
        elif linktype == 228:
            p = _ipv4(data, 0)
        elif linktype == 229:
            p = _ipv6(data, 0)
        elif linktype == 0:
            p = _null_family(data, False)
        elif linktype == 108:
            p = _null_family(data, True)
        elif linktype == 258:  # Apple PKTAP (macOS tcpdump -k / -i pktap): a header, then the interface's frame
            if len(data) < 12:
                return None
            hlen, _next, dlt = _u_pktap(data, 0)
            if hlen < 12 or hlen > len(data) or dlt not in _PKTAP_DLTS:
                return None
            return decode(_PKTAP_DLTS[dlt], data[hlen:])
        else:
            return None
    except (IndexError, struct.error, ValueError):
        return None
    if p is not None and p.proto != 6 and (p.proto in _ENCAP_PROTOS or (p.proto == 17 and p.dport in _ENCAP_PORTS)):
        return decapsulate(p)
    return p


# --- encapsulations: mirrored (ERSPAN, VXLAN from cloud traffic mirroring) or overlaid traffic ------------------

_ENCAP_PROTOS = frozenset((4, 41, 47))  # IPv4 in IP, IPv6 in IP, GRE
VXLAN_PORTS = frozenset((4789, 8472))  # RFC 7348's, and Linux's default before it
GENEVE_PORT = 6081  # RFC 8926
_ENCAP_PORTS = VXLAN_PORTS | {GENEVE_PORT}
_GRE_ERSPAN2 = 0x88BE  # ERSPAN type I (no GRE sequence number) and II
_GRE_ERSPAN3 = 0x22EB
_GRE_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame
_GPE_NEXT = {1: _ETH_IPV4, 2: _ETH_IPV6, 3: _GRE_TEB}  # VXLAN-GPE's next protocol


def _inner_frame(data: bytes, off: int, kind: int) -> Packet | None:
    """The packet at ``data[off:]``: an Ethernet frame (``kind`` 0x6558) or an IP packet (0x0800, 0x86DD)."""
    if kind == _GRE_TEB:
        if len(data) - off < 14:
            return None
        return _by_ethertype(data, off + 14, (data[off + 12] << 8) | data[off + 13])
    if kind == _ETH_IPV4:
        return _ipv4(data, off)
    if kind == _ETH_IPV6:
        return _ipv6(data, off)
    return None


def _unwrap(p: Packet) -> tuple[str, int | None, Packet | None]:
    """(kind, identifier, the packet inside ``p`` or None when ``p`` does not hold one by that encapsulation)."""
    d = p.payload
    n = len(d)
    if p.proto == 17:
        if p.dport == GENEVE_PORT:
            # RFC 8926: version (2 bits, 0) and options length (6 bits, 4-byte words), flags, protocol type, VNI
            if n < 8 or d[0] >> 6:
                return "geneve", None, None
            return "geneve", (d[4] << 16) | (d[5] << 8) | d[6], \
                _inner_frame(d, 8 + ((d[0] & 0x3F) << 2), (d[2] << 8) | d[3])
        # RFC 7348: flags with the I bit (a valid VNI; the other bits and the reserved bytes are ignored on
        # receipt), the VNI, then an Ethernet frame; with the P bit (VXLAN-GPE) byte 3 names what follows: 1 IPv4,
        # 2 IPv6, 3 Ethernet
        if n < 8 or not d[0] & 0x08:
            return "vxlan", None, None
        kind = _GRE_TEB
        if d[0] & 0x04:
            kind = _GPE_NEXT.get(d[3])
            if kind is None:
                return "vxlan", None, None
        return "vxlan", (d[4] << 16) | (d[5] << 8) | d[6], _inner_frame(d, 8, kind)
    if p.proto == 47:
        # RFC 2784/2890: flags (checksum present, routing, key present, sequence number present) and version 0,
        # protocol type; then checksum and reserved, key, sequence number, each 4 bytes when present
        if n < 4:
            return "gre", None, None
        flags = (d[0] << 8) | d[1]
        if flags & 0x4007:  # source routing (obsolete) or another version (1: PPTP's): not read
            return "gre", None, None
        kind = (d[2] << 8) | d[3]
        off = 4
        key = None
        if flags & 0x8000:
            off += 4
        if flags & 0x2000:
            if n < off + 4:
                return "gre", None, None
            key = int.from_bytes(d[off:off + 4], "big")
            off += 4
        if flags & 0x1000:
            off += 4
        if kind == _GRE_ERSPAN2:
            if not flags & 0x1000:  # type I: the mirrored frame right after GRE
                return "erspan", None, _inner_frame(d, off, _GRE_TEB)
            # type II: version 1 (4 bits), VLAN, COS/encapsulation/truncated, session id (10 bits), index
            if n < off + 8 or d[off] >> 4 != 1:
                return "erspan", None, None
            return "erspan", ((d[off + 2] & 3) << 8) | d[off + 3], _inner_frame(d, off + 8, _GRE_TEB)
        if kind == _GRE_ERSPAN3:
            # type III: version 2, VLAN, COS/BSO/truncated, session id, timestamp, SGT, then P, frame type (5 bits),
            # hardware id, direction, granularity and O (an 8-byte platform-specific subheader follows)
            if n < off + 12 or d[off] >> 4 != 2:
                return "erspan", None, None
            session = ((d[off + 2] & 3) << 8) | d[off + 3]
            ftype = (d[off + 10] >> 2) & 0x1F
            inner = off + 12 + (8 if d[off + 11] & 1 else 0)
            if ftype == 0:
                return "erspan", session, _inner_frame(d, inner, _GRE_TEB)
            if ftype == 2 and n > inner:  # an IP packet
                return "erspan", session, _ip_any(d, inner)
            return "erspan", session, None
        return "gre", key, _inner_frame(d, off, kind)
    if p.proto == 4:
        return "ip-in-ip", None, _ipv4(d, 0)
    return "ip-in-ip", None, _ipv6(d, 0)  # 41


def decapsulate(p: Packet) -> Packet:
    """The packet inside ``p`` when ``p`` carries one (VXLAN on UDP 4789 or 8472, GENEVE on 6081, ERSPAN types I,
    II and III, GRE with IP or Ethernet inside, IPv4/IPv6 in IP), repeatedly (at most 4 levels), with ``encap``
    naming the outermost; else ``p`` itself. A fragment is not read inside (the pipeline reassembles it, then
    calls this on the whole packet); nor is what does not have the encapsulation's header or holds no IP packet."""
    outer = p.encap
    for _ in range(4):
        if p.is_fragment:
            return p
        if not (p.proto in _ENCAP_PROTOS or (p.proto == 17 and p.dport in _ENCAP_PORTS)):
            return p
        try:
            kind, ident, inner = _unwrap(p)
        except (IndexError, struct.error, ValueError):
            return p
        if inner is None:
            return p
        outer = outer or (kind, p.src, p.dst, ident, p.sport, p.dport)
        inner.encap = outer
        p = inner
    return p


# --- the raw view of a frame (fast lanes) ----------------------------------------------------------------
#
# A fast lane (docs/architecture.md) takes the frames of an established flow without building a Packet. These
# functions read the same headers as decode() does, for the plain case only: they return None for anything else,
# and the frame then goes through decode().


def plain_ipv4(linktype: int, data) -> tuple | None:
    """The transport view of a frame that holds a *plain* IPv4 packet: on Ethernet (no VLAN tag), Linux cooked
    (SLL, SLL2) or raw IP, a 20-byte IP header (no options), not a fragment, all of it captured, with a TCP header
    whose data offset fits or a UDP length that agrees with the IP length. For TCP
    ``(6, addresses, seq, ack, flags, payload start, payload end)`` (``flags``: the 9 flag bits), for UDP
    ``(17, addresses, payload start, payload end)``; positions are offsets in ``data``; ``addresses`` are the 12
    bytes source address, destination address, source port and destination port as they stand on the wire
    (`ipv4_addresses` makes the same bytes from printable values). None for any other frame: decode() reads
    every frame, this reads the same headers for the plain case only (the fast lanes' view)."""
    n = len(data)
    if linktype == 1:  # Ethernet, EtherType IPv4 (0x0800)
        off = 14
        if n < 54 or data[12] != 8 or data[13]:
            return None
    elif linktype == 113:  # SLL: protocol type at 14
        off = 16
        if n < 56 or data[14] != 8 or data[15]:
            return None
    elif linktype == 276:  # SLL2: protocol type first
        off = 20
        if n < 60 or data[0] != 8 or data[1]:
            return None
    elif linktype == 101 or linktype == 228 or linktype == 12 or linktype == 14:  # raw IP / raw IPv4
        off = 0
        if n < 40:
            return None
    else:
        return None
    # one unpack for IP and TCP (a UDP frame fits it too: the minimum sizes above are a TCP header's)
    vihl, total, fragw, proto, addresses, seq, ack, offflags = _u_ip4_plain(data, off)
    # version 4, 20-byte header; neither more fragments nor a fragment offset; all of it captured
    if vihl != 0x45 or fragw & 0x3FFF or total < 28 or total > n - off:
        return None
    if proto == 6:
        doff = (offflags >> 12) << 2
        if doff < 20 or doff > total - 20:
            return None
        return 6, addresses, seq, ack, offflags & 0x1FF, off + 20 + doff, off + total
    if proto == 17:
        if (seq >> 16) != total - 20:  # UDP length (seq: the UDP header's second half)
            return None
        return 17, addresses, off + 28, off + total
    return None


def ipv4_addresses(src: str, sport: int, dst: str, dport: int) -> bytes | None:
    """The 12 ``addresses`` bytes `plain_ipv4` gives for a packet from ``src:sport`` to ``dst:dport`` (None when
    they are not IPv4 addresses and ports)."""
    if ":" in src or ":" in dst:
        return None
    try:
        return inet_aton(src) + inet_aton(dst) + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    except (OSError, OverflowError, AttributeError, TypeError):
        return None


# --- reassembly of IP fragments ----------------------------------------------------------------------


class _Datagram:
    __slots__ = ("covered", "first_ts", "frames", "head", "pieces", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.pieces: list[tuple[int, bytes]] = []  # non-overlapping (offset, data), unsorted
        self.covered = 0
        self.total: int | None = None
        self.head: Packet | None = None  # fragment at offset 0 (carries the header fields)
        self.frames: list[int] = []


class IPv4Defragmenter:
    """Reassembles IP fragments (IPv4 per RFC 791; IPv6 fragment headers per RFC 8200 too).

    ``feed(packet, ts, frame=0)`` returns the packet itself when it is not a fragment, the reassembled
    and fully decoded :class:`Packet` when ``packet`` completes a datagram, else ``None``. After a
    completion, ``last_frames`` holds the frame numbers of the fragments (in arrival order).
    Overlapping fragment data: first-received bytes win. Memory is bounded: at most ``max_pending``
    incomplete datagrams (the oldest is dropped), ``max_fragments`` pieces per datagram, datagrams
    larger than 65535 bytes are discarded, and incomplete datagrams expire ``timeout`` seconds of
    *capture time* after their first fragment. Counters: ``completed``, ``dropped``.
    """

    __slots__ = ("_pending", "completed", "dropped", "last_frames", "max_fragments", "max_pending", "timeout")

    def __init__(self, max_pending: int = 1024, timeout: float = 30.0, max_fragments: int = 1024) -> None:
        self.max_pending = max_pending
        self.timeout = timeout
        self.max_fragments = max_fragments
        self.last_frames: tuple[int, ...] = ()
        self.completed = 0
        self.dropped = 0
        self._pending: dict[tuple, _Datagram] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def feed(self, packet: Packet, ts: float, frame: int = 0) -> Packet | None:
        if not packet.more_fragments and not packet.frag_offset:
            return packet
        pending = self._pending
        # expire by capture time (oldest first: dict keeps creation order)
        while pending:
            k = next(iter(pending))
            if pending[k].first_ts + self.timeout < ts:
                del pending[k]
                self.dropped += 1
            else:
                break
        key = (packet.ip_version, packet.src, packet.dst, packet.proto, packet.ip_id)
        d = pending.get(key)
        if d is None:
            if len(pending) >= self.max_pending:
                del pending[next(iter(pending))]
                self.dropped += 1
            d = pending[key] = _Datagram(ts)
        d.frames.append(frame)
        off = packet.frag_offset
        data = packet.payload
        if packet.truncated:
            data = b""  # only the captured part is known; it leaves a hole
        end = off + (packet.payload_len if packet.truncated else len(data))
        if end > 65535:
            del pending[key]
            self.dropped += 1
            return None
        if not packet.more_fragments:
            if d.total is not None and d.total != end:
                del pending[key]  # inconsistent last fragments
                self.dropped += 1
                return None
            d.total = end
        if off == 0 and d.head is None:
            d.head = packet
        if data:
            if len(d.pieces) >= self.max_fragments:
                del pending[key]
                self.dropped += 1
                return None
            self._insert(d, off, data)
        if d.total is None or d.head is None or d.covered < d.total:
            return None
        del pending[key]
        d.pieces.sort()
        whole = b"".join(p for _, p in d.pieces)
        if len(whole) != d.total:  # pragma: no cover - defensive
            self.dropped += 1
            return None
        self.completed += 1
        self.last_frames = tuple(d.frames)
        return self._rebuild(d.head, whole)

    @staticmethod
    def _insert(d: _Datagram, off: int, data: bytes) -> None:
        """Add ``data`` at ``off``, keeping only bytes not yet covered (first received wins)."""
        segs = [(off, off + len(data))]
        for po, pd in d.pieces:
            pe = po + len(pd)
            nsegs = []
            for s, e in segs:
                if pe <= s or po >= e:
                    nsegs.append((s, e))
                    continue
                if s < po:
                    nsegs.append((s, po))
                if pe < e:
                    nsegs.append((pe, e))
            segs = nsegs
            if not segs:
                return
        for s, e in segs:
            d.pieces.append((s, data[s - off : e - off]))
            d.covered += e - s

    @staticmethod
    def _rebuild(head: Packet, whole: bytes) -> Packet | None:
        total = head.ip_total_len - head.payload_len + len(whole)
        if head.ip_version == 6:
            total -= 8  # the reassembled datagram has no fragment header
            # the reassembled payload may still start with extension headers (e.g. destination options)
            nh = head.proto
            p = 0
            for _ in range(16):
                if nh in _IP6_EXT_LEN8 and len(whole) - p >= 2:
                    hl = (whole[p + 1] + 1) << 3
                elif nh == _IP6_AH and len(whole) - p >= 2:
                    hl = (whole[p + 1] + 2) << 2
                else:
                    break
                if p + hl > len(whole):
                    return None
                nh = whole[p]
                p += hl
            try:
                pkt = _l4(
                    6, head.src, head.dst, nh, whole, p, len(whole), len(whole) - p, False, head.ttl, None,
                    head.ip_id, 0, False, total, 0,
                )
            except (IndexError, struct.error):
                return None
        else:
            try:
                pkt = _l4(
                    4, head.src, head.dst, head.proto, whole, 0, len(whole), len(whole), False, head.ttl,
                    head.df, head.ip_id, 0, False, total, 0,
                )
            except (IndexError, struct.error):
                return None
        if pkt is None:
            return None
        pkt.encap = head.encap  # fragments of a packet that was inside another
        return decapsulate(pkt) if pkt.proto in _ENCAP_PROTOS or (pkt.proto == 17 and pkt.dport in _ENCAP_PORTS) \
            else pkt


#: Alias: the defragmenter handles both IP versions.
Defragmenter = IPv4Defragmenter
