"""Packets captured on the VPN's own adapter, read as the inside of the tunnel.

Support asks for captures on both the client's network interface and its VPN adapter (a Wireshark capture of two
interfaces, or two files). The adapter's capture holds the client's packets inside the tunnel in the clear —
addressed from the tunnel address the gateway gave — which, without keys, nothing else in the capture shows.

A capture interface is the VPN's adapter by its pcapng name or description (analyzer/capture_point.py: tun0,
cscotun0, utun3, "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter", Wintun, TAP-Windows); in a
Linux "any" capture (tcpdump -i any: Linux cooked capture, SLL or SLL2) each packet names its device's type, and a
tun device's is ARPHRD_NONE (65534: no link-layer header) — its packets are such a device's (by interface index in
SLL2); a pcap file of raw IP packets (no interface names) may be one (`named` False: `attach` asks more). The
pipeline hands each packet of such an interface to its `TunnelDevice` (`note`), which counts the packets and their
addresses and keeps, bounded, the few that tell what the client tried and what came back: TCP SYNs and resets, DNS
over UDP port 53, ICMP destination unreachable. `attempts()` reads those in capture order into an analyzer/inner.py
`InnerAttempts`, the client's side told by the device's own address (`address`: the one address nearly every packet
of the device has — the tunnel address; link-local and multicast packets, which the system sends on any interface,
not counted; when the client's traffic is all with one server, both addresses are in every packet, and the one that
began the exchanges — TCP SYNs, DNS queries, echo requests — is the client's). Shards of `--jobs` keep their own and
`merge` (the kept packets re-sorted, so that an ICMP error and the SYN it quotes meet whichever shard each was in).

`attach` (called by analyzer/phases/session.py) gives a device to the session it belongs to: the session whose
CONNECT answer gave the device's address (keys), else the only session whose tunnel was up while the device carried
packets, on the same capture side (a session whose client address is the device's own is not one: that capture is
no adapter's). The session's `Tunnel.device` says so, and its `unreachable` reads the device's attempts where the
tunnel itself was not decrypted.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from .inner import InnerAttempts

MAX_KEPT = 4096  # packets kept per device for `attempts` (SYNs, resets, DNS, ICMP errors), the first ones
MAX_ADDRESSES = 256  # distinct addresses counted per device (the rest are not counted)
OWN_SHARE = 0.8  # the device's address is in at least this share of its counted packets
#: link types of raw IP packets (LINKTYPE_RAW and its BSD numbers, IPV4, IPV6, NULL and LOOP: a BSD or macOS utun):
#: what a tun device gives a pcap file, which names no interface
RAW_IP_LINKTYPES = frozenset((101, 12, 14, 228, 229, 0, 108))


def _counted(a: str) -> bool:
    try:
        x = ipaddress.ip_address(a)
    except ValueError:
        return False
    return not (x.is_link_local or x.is_multicast or x.is_unspecified or x.is_loopback)


class TunnelDevice:
    """One capture interface that is the VPN's adapter, and what its packets showed."""

    __slots__ = ("capture", "interface", "label", "named", "packets", "counted", "first_ts", "last_ts", "first_frame",
                 "last_frame", "addresses", "starts", "kept", "dropped")

    def __init__(self, capture: int, interface: int, label: str, named: bool = True) -> None:
        self.capture = capture  # the capture's ordinal among the inputs
        self.interface = interface  # its pcapng interface id
        self.label = label  # "tun0", "\\Device\\NPF_{…} (Cisco AnyConnect … Adapter)"
        #: the adapter by its pcapng name; False: a pcap file of raw IP packets (no name: `attach` asks more of it)
        self.named = named
        self.packets = 0
        self.counted = 0  # packets whose addresses count (not link-local, multicast…)
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.first_frame = 0
        self.last_frame = 0
        self.addresses: dict[str, int] = {}
        #: per address, the packets it sent that begin an exchange (a TCP SYN, a DNS query, an ICMP echo request):
        #: the client's, when its traffic is all with one server and both addresses are in every packet
        self.starts: dict[str, int] = {}
        self.kept: list[tuple] = []  # (capture, frame, ts, packet)
        self.dropped = 0

    def note(self, pkt, ts: float, frame: int) -> None:
        """One decoded packet of the device (dissectors/packet.py `Packet`)."""
        self.packets += 1
        if self.first_ts is None:
            self.first_ts, self.first_frame = ts, frame
        self.last_ts, self.last_frame = ts, frame
        src, dst = pkt.src, pkt.dst
        if _counted(src) and _counted(dst):
            self.counted += 1
            adr = self.addresses
            for a in (src, dst):
                if a in adr:
                    adr[a] += 1
                elif len(adr) < MAX_ADDRESSES:
                    adr[a] = 1
        proto = pkt.proto
        if (proto == 6 and pkt.flags is not None and pkt.flags & 0x12 == 0x02) or (proto == 17 and pkt.dport == 53) \
                or (proto == 1 and pkt.icmp_type == 8) or (proto == 58 and pkt.icmp_type == 128):
            if src in self.starts or len(self.starts) < MAX_ADDRESSES:
                self.starts[src] = self.starts.get(src, 0) + 1
        if (proto == 6 and pkt.flags is not None and pkt.flags & 0x06) or (
                proto == 17 and (pkt.sport == 53 or pkt.dport == 53)) or proto in (1, 58):
            if len(self.kept) < MAX_KEPT:
                self.kept.append((self.capture, frame, ts, pkt))
            else:
                self.dropped += 1

    def merge(self, other: TunnelDevice) -> None:
        """Another shard's packets of the same device (analyzer/parallel.py)."""
        self.packets += other.packets
        self.counted += other.counted
        if other.first_ts is not None and (self.first_ts is None or (other.capture, other.first_frame) <
                                           (self.capture, self.first_frame)):
            self.first_ts, self.first_frame = other.first_ts, other.first_frame
        if other.last_ts is not None and (self.last_ts is None or other.last_frame > self.last_frame):
            self.last_ts, self.last_frame = other.last_ts, other.last_frame
        for mine, theirs in ((self.addresses, other.addresses), (self.starts, other.starts)):
            for a, n in theirs.items():
                if a in mine or len(mine) < MAX_ADDRESSES:
                    mine[a] = mine.get(a, 0) + n
        self.kept = sorted(self.kept + other.kept, key=lambda k: k[:2])
        self.dropped += other.dropped + max(len(self.kept) - MAX_KEPT, 0)
        del self.kept[MAX_KEPT:]

    @property
    def address(self) -> str | None:
        """The device's own address (the tunnel address): the one in at least `OWN_SHARE` of its counted packets,
        the highest count first (a tie — the client's traffic all with one server — broken by the exchanges each
        began, then by address order); None when no address is."""
        if not self.counted:
            return None
        a, n = min(self.addresses.items(), key=lambda kv: (-kv[1], -self.starts.get(kv[0], 0), kv[0]),
                   default=(None, 0))
        return a if n >= OWN_SHARE * self.counted else None

    def attempts(self, since: float | None = None, until: float | None = None) -> InnerAttempts | None:
        """What the client tried through the tunnel, as the device saw it (analyzer/inner.py) — between ``since``
        and ``until`` when given (one session's time, of several the device's packets span) —, or None without an
        own address."""
        own = self.address
        if own is None:
            return None
        a = InnerAttempts()
        for _c, frame, ts, pkt in self.kept:
            if (since is None or ts >= since) and (until is None or ts <= until):
                a.note_packet("c2s" if pkt.src == own else "s2c", pkt, ts, frame)
        return a

    def summary(self) -> dict[str, Any]:
        return {"interface": self.label, "capture": self.capture, "address": self.address, "packets": self.packets,
                "first": self.first_ts, "last": self.last_ts, "first_frame": self.first_frame,
                "last_frame": self.last_frame}
