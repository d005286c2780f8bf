"""What the client tried to reach inside the tunnel, and what came back: the facts of "connected, but I cannot reach
the server" — the commonest complaint once the tunnel is up.

A decrypted tunnel carries the client's own IP packets. `InnerAttempts` keeps, per channel (analyzer/tcptracker.py
ChannelStats calls `note` only for the few packets that matter, so that bulk traffic costs one or two byte reads):

* TCP connection attempts: the client's SYNs (RFC 9293 §3.5), by (client address, client port, server address,
  server port), and their answer — a SYN-ACK, a reset, or an ICMP destination unreachable quoting them (RFC 792, RFC
  4443 §3.1: the quoted header names the attempt);
* DNS lookups over UDP port 53 (dissectors/dns.py): the query, and the answer's RCODE and addresses, or an ICMP error;
* ICMP destination unreachable (IPv4 type 3, IPv6 type 1) coming back through the tunnel, matched to the attempt
  it quotes: its code in words and the router that sent it.

Bounded (`MAX_ATTEMPTS` each); IPv4, and IPv6 past its hop-by-hop, routing, destination-options and (first)
fragment headers. `failed` gives the attempts that got no
answer (a TCP connect sent at least twice: retransmitted, so not a single lost packet), a reset, an ICMP error, or
(DNS) an error RCODE. The rule is analyzer/rules/inner.py (INNER_UNREACHABLE).
"""
from __future__ import annotations

import ipaddress

from dissectors.dns import RCODES, read_dns

from .attempts import ICMP4_CODES, ICMP6_CODES  # (their words, shared with the failed connects)

MAX_ATTEMPTS = 512  # TCP connects and DNS lookups kept per channel (the first ones)

def _addr(b: bytes) -> str:
    if len(b) == 4:
        return ".".join(str(x) for x in b)
    return str(ipaddress.IPv6Address(bytes(b)))


def _pton(a: str) -> bytes:
    """The address bytes of a decoded packet's address text (as `_header` gives them)."""
    return ipaddress.ip_address(a).packed


def _header(pkt, start: int):
    """(version, protocol, where its transport header starts, source, destination) of the IP packet at ``start``,
    or None."""
    n = len(pkt) - start
    if n < 20:
        return None
    ver = pkt[start] >> 4
    if ver == 4:
        ihl = (pkt[start] & 0x0F) * 4
        if ihl < 20 or n < ihl:
            return None
        return 4, pkt[start + 9], start + ihl, bytes(pkt[start + 12:start + 16]), bytes(pkt[start + 16:start + 20])
    if ver == 6 and n >= 40:
        nxt, off = pkt[start + 6], start + 40
        # extension headers before the transport's (RFC 8200 §4): hop-by-hop options, routing, destination
        # options — their length in 8-octet units after the first 8 —, and a fragment header (8 octets; a fragment
        # other than the first has no transport header to read)
        for _ in range(8):
            if nxt in (0, 43, 60) and len(pkt) >= off + 2:
                nxt, off = pkt[off], off + (pkt[off + 1] + 1) * 8
            elif nxt == 44 and len(pkt) >= off + 8:
                if ((pkt[off + 2] << 8) | pkt[off + 3]) & 0xFFF8:
                    return None
                nxt, off = pkt[off], off + 8
            else:
                break
        if nxt in (0, 43, 44, 60) or off > len(pkt):
            return None
        return 6, nxt, off, bytes(pkt[start + 8:start + 24]), bytes(pkt[start + 24:start + 40])
    return None


class InnerAttempts:
    """The client's TCP connects and DNS lookups inside one tunnel channel, with what answered them."""

    __slots__ = ("connects", "lookups", "icmp_errors", "overflow")

    def __init__(self) -> None:
        #: (src, sport, dst, dport) -> {src, dst, port, syns: [(ts, frame)], answer, answer_ts, answer_frame, icmp}
        self.connects: dict = {}
        #: (src, sport, dst, id) -> {src, server, name, type, queries: [(ts, frame)], rcode, addresses,
        #: answer_frame, icmp}
        self.lookups: dict = {}
        self.icmp_errors = 0
        self.overflow = 0

    def note(self, direction: str, pkt, start: int, ts: float, frame: int) -> None:
        """A packet that may matter (a TCP SYN or reset, UDP to or from port 53, ICMP): read and kept."""
        h = _header(pkt, start)
        if h is None:
            return
        ver, proto, off, src, dst = h
        end = len(pkt)
        if proto == 6 and end >= off + 14:
            self._tcp(direction, src, (pkt[off] << 8) | pkt[off + 1], dst, (pkt[off + 2] << 8) | pkt[off + 3],
                      pkt[off + 13], ts, frame)
        elif proto == 17 and end >= off + 8:
            sport, dport = (pkt[off] << 8) | pkt[off + 1], (pkt[off + 2] << 8) | pkt[off + 3]
            if dport == 53 or sport == 53:
                self._dns(direction, src, sport, dst, dport, bytes(pkt[off + 8:]), ts, frame)
        elif (proto == 1 and ver == 4) or (proto == 58 and ver == 6):
            if end >= off + 8 and pkt[off] == (3 if ver == 4 else 1):
                self._icmp(ver, src, pkt[off + 1], pkt, off + 8, ts, frame)

    def note_packet(self, direction: str, p, ts: float, frame: int) -> None:
        """`note` for a packet the capture holds in the clear, decoded (dissectors/packet.py `Packet`): one captured
        on the VPN's adapter, inside the tunnel (analyzer/tunnel_device.py)."""
        proto = p.proto
        if proto == 6:
            if p.flags is not None:
                self._tcp(direction, _pton(p.src), p.sport, _pton(p.dst), p.dport, p.flags, ts, frame)
        elif proto == 17:
            if p.dport == 53 or p.sport == 53:
                self._dns(direction, _pton(p.src), p.sport, _pton(p.dst), p.dport, bytes(p.payload), ts, frame)
        elif (proto == 1 and p.ip_version == 4 and p.icmp_type == 3) or (
                proto == 58 and p.ip_version == 6 and p.icmp_type == 1):
            # (the payload after the ICMP header is the packet it quotes)
            self._icmp(p.ip_version, _pton(p.src), p.icmp_code, p.payload, 0, ts, frame)

    def _tcp(self, direction: str, src: bytes, sport: int, dst: bytes, dport: int, flags: int, ts: float,
             frame: int) -> None:
        if flags & 0x02 and not flags & 0x10:  # SYN: a connection attempt
            e = self._entry(self.connects, (src, sport, dst, dport), lambda: {
                "direction": direction, "src": _addr(src), "dst": _addr(dst), "port": dport, "syns": [],
                "answer": None, "answer_ts": None, "answer_frame": None, "icmp": None})
            if e is not None and len(e["syns"]) < 16:
                e["syns"].append((ts, frame))
        elif flags & 0x12 == 0x12 or flags & 0x04:  # the SYN-ACK or a reset: the attempt's answer
            e = self.connects.get((dst, dport, src, sport))
            if e is not None and e["answer"] is None:
                e.update(answer="syn-ack" if flags & 0x12 == 0x12 else "reset", answer_ts=ts, answer_frame=frame)

    def _dns(self, direction: str, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, ts: float,
             frame: int) -> None:
        msg = read_dns(payload)
        if msg is None:
            return
        if not msg.response and dport == 53:
            e = self._entry(self.lookups, (src, sport, dst, msg.id), lambda: {
                "direction": direction, "src": _addr(src), "server": _addr(dst), "name": msg.name,
                "type": msg.qtype_name, "queries": [], "rcode": None, "addresses": [], "answer_frame": None,
                "icmp": None})
            if e is not None and len(e["queries"]) < 16:
                e["queries"].append((ts, frame))
        elif msg.response and sport == 53:
            e = self.lookups.get((dst, dport, src, msg.id))
            if e is not None and e["rcode"] is None:
                e.update(rcode=msg.rcode, addresses=list(msg.addresses), answer_frame=frame)

    def _icmp(self, ver: int, src: bytes, code: int, pkt, qstart: int, ts: float, frame: int) -> None:
        """An ICMP destination unreachable from ``src`` whose quoted packet starts at ``pkt[qstart]``."""
        self.icmp_errors += 1
        quoted = _header(pkt, qstart)
        if quoted is None or len(pkt) < quoted[2] + 4:
            return
        _qv, qproto, q, qsrc, qdst = quoted
        end = len(pkt)
        qsport, qdport = (pkt[q] << 8) | pkt[q + 1], (pkt[q + 2] << 8) | pkt[q + 3]
        icmp = {"from": _addr(src), "code": code, "frame": frame, "time": ts,
                "text": (ICMP4_CODES if ver == 4 else ICMP6_CODES).get(code, f"code {code}")}
        if qproto == 6:
            e = self.connects.get((qsrc, qsport, qdst, qdport))
            if e is not None and e["answer"] is None:
                e.update(answer="icmp", answer_ts=ts, answer_frame=frame, icmp=icmp)
        elif qproto == 17 and qdport == 53 and end >= q + 8 + 2:
            qid = (pkt[q + 8] << 8) | pkt[q + 9]  # the quoted DNS header's id (RFC 792 quotes 8 bytes at
            e = self.lookups.get((qsrc, qsport, qdst, qid))  # least; Linux quotes as much as fits)
            if e is None:  # (the quote cut before the id: the lookup of that client port and server)
                e = next((x for k, x in self.lookups.items() if k[:3] == (qsrc, qsport, qdst)), None)
            if e is not None and e["rcode"] is None and e["icmp"] is None:
                e["icmp"] = icmp
                e["answer_frame"] = frame

    def _entry(self, table: dict, key, make) -> dict | None:
        """The entry of ``key`` in ``table``, made by ``make()`` when new; None when the table is full (counted)."""
        e = table.get(key)
        if e is None:
            if len(table) >= MAX_ATTEMPTS:
                self.overflow += 1
                return None
            e = table[key] = make()
        return e

    def merge(self, other: InnerAttempts) -> None:
        """Another channel's attempts (the session's CSTP and DTLS channels, its reconnects)."""
        for k, e in other.connects.items():
            if k not in self.connects and len(self.connects) < MAX_ATTEMPTS:
                self.connects[k] = e
        for k, e in other.lookups.items():
            if k not in self.lookups and len(self.lookups) < MAX_ATTEMPTS:
                self.lookups[k] = e
        self.icmp_errors += other.icmp_errors
        self.overflow += other.overflow


def failed_connects(a: InnerAttempts) -> list[dict]:
    """The client's TCP connects that failed, by destination (address, port), in the order of their first SYN:
    {dst, port, attempts, syns (frames), answer ("none", "reset", "icmp"), answer_frame, icmp, time}. A connect
    sent once and unanswered is left out (one lost packet, or the capture ended)."""
    by: dict = {}
    for e in sorted(a.connects.values(), key=lambda e: e["syns"][0] if e["syns"] else (0.0, 0)):
        if e["direction"] != "c2s" or not e["syns"] or e["answer"] == "syn-ack":
            continue
        if e["answer"] is None and len(e["syns"]) < 2:
            continue
        d = by.setdefault((e["dst"], e["port"]), {"dst": e["dst"], "port": e["port"], "attempts": 0, "syns": [],
                                                   "answer": e["answer"] or "none",
                                                   "answer_frame": e["answer_frame"], "icmp": e["icmp"],
                                                   "time": e["syns"][0][0]})
        d["attempts"] += 1
        d["syns"] += [fr for _t, fr in e["syns"]][:8 - len(d["syns"])] if len(d["syns"]) < 8 else []
    # a destination some connect to reached is not unreachable
    ok = {(e["dst"], e["port"]) for e in a.connects.values() if e["answer"] == "syn-ack"}
    return [d for k, d in by.items() if k not in ok]


def failed_lookups(a: InnerAttempts) -> list[dict]:
    """The client's DNS lookups through the tunnel that got no address: an error RCODE (NXDOMAIN, SERVFAIL,
    REFUSED), an ICMP error (nothing listens on the server's port 53, or it is unreachable), or no answer to a query
    sent twice or more; by (server, name): {server, name, type, answer, frames, time}."""
    by: dict = {}
    for e in sorted(a.lookups.values(), key=lambda e: e["queries"][0] if e["queries"] else (0.0, 0)):
        if e["direction"] != "c2s" or not e["queries"]:
            continue
        if e["rcode"] == 0:
            continue
        if e["icmp"] is not None:
            answer = f"ICMP {e['icmp']['text']} from {e['icmp']['from']}"
        elif e["rcode"] is not None:
            answer = RCODES.get(e["rcode"], f"RCODE {e['rcode']}")
        elif len(e["queries"]) >= 2:
            answer = "no answer"
        else:
            continue
        d = by.setdefault((e["server"], e["name"]), {"server": e["server"], "name": e["name"], "type": e["type"],
                                                     "answer": answer, "frames": [], "time": e["queries"][0][0]})
        d["frames"] = sorted(set(d["frames"] + [fr for _t, fr in e["queries"]] +
                                 ([e["answer_frame"]] if e["answer_frame"] else [])))[:10]
    resolved = {(e["server"], e["name"]) for e in a.lookups.values() if e["rcode"] == 0}
    return [d for k, d in by.items() if k not in resolved]
