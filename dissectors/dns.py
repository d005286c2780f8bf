"""DNS over UDP (RFC 1035 §4.1): the header and the first question of a message — enough to tell which name a client
looked up and how the server answered (NXDOMAIN, SERVFAIL, an empty answer), the facts of a "cannot resolve the
gateway" case — and the addresses of the answer's A and AAAA records (RFC 1035 §3.4.1, RFC 3596), which tie a later
connection to the name (the identity provider a browser went to). Pure: bytes in, a `DNSMessage` or None out (None
for anything that is not a well-formed message)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: RCODE names (RFC 1035 §4.1.1, RFC 6895)
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
#: QTYPE names of the questions a client asks for an address (others are named by number)
QTYPES = {1: "A", 28: "AAAA", 5: "CNAME", 33: "SRV", 65: "HTTPS", 64: "SVCB", 12: "PTR", 16: "TXT", 15: "MX",
          2: "NS", 6: "SOA"}
DNS_PORTS = frozenset({53, 5353})  # DNS and multicast DNS
MAX_ADDRESSES = 8


@dataclass(frozen=True, slots=True)
class DNSMessage:
    id: int
    response: bool  # QR
    rcode: int
    name: str  # the first question's name, lower case, without the final dot ("" for the root)
    qtype: int
    answers: int  # ANCOUNT
    #: the A and AAAA records' addresses in the answer section, in order (the first MAX_ADDRESSES; a CNAME's target
    #: records included)
    addresses: tuple[str, ...] = ()

    @property
    def rcode_name(self) -> str:
        return RCODES.get(self.rcode, f"RCODE {self.rcode}")

    @property
    def qtype_name(self) -> str:
        return QTYPES.get(self.qtype, f"TYPE{self.qtype}")


def _name(data: bytes, off: int) -> tuple[str, int] | None:
    """The name at ``off`` (labels, without compression: a question's name is written out) and the offset after it."""
    labels = []
    n = len(data)
    while off < n:
        ln = data[off]
        if ln == 0:
            return ".".join(labels).lower(), off + 1
        if ln & 0xC0 or off + 1 + ln > n or len(labels) >= 127:
            return None  # (a pointer in a question, or past the end: not a message we read)
        try:
            labels.append(data[off + 1:off + 1 + ln].decode("ascii"))
        except UnicodeDecodeError:
            return None
        off += 1 + ln
    return None


def _skip_name(data: bytes, off: int) -> int | None:
    """The offset after the (possibly compressed) name at ``off``, or None."""
    n = len(data)
    for _ in range(128):
        if off >= n:
            return None
        ln = data[off]
        if ln == 0:
            return off + 1
        if ln & 0xC0 == 0xC0:
            return off + 2 if off + 2 <= n else None
        if ln & 0xC0:
            return None
        off += 1 + ln
    return None


def _addresses(data: bytes, off: int, count: int) -> tuple[str, ...]:
    """The A and AAAA addresses of ``count`` resource records from ``off`` (stops at the first it cannot read)."""
    out: list[str] = []
    n = len(data)
    for _ in range(min(count, 64)):
        off = _skip_name(data, off)
        if off is None or off + 10 > n:
            break
        rtype = (data[off] << 8) | data[off + 1]
        rclass = (data[off + 2] << 8) | data[off + 3]
        rdlen = (data[off + 8] << 8) | data[off + 9]
        rdata = data[off + 10:off + 10 + rdlen]
        if len(rdata) < rdlen:
            break
        if rclass == 1 and rtype == 1 and rdlen == 4:
            out.append(".".join(str(b) for b in rdata))
        elif rclass == 1 and rtype == 28 and rdlen == 16:
            out.append(str(ipaddress.IPv6Address(bytes(rdata))))
        if len(out) >= MAX_ADDRESSES:
            break
        off += 10 + rdlen
    return tuple(out)


def read_dns(data: bytes) -> DNSMessage | None:
    """The header and first question of a DNS message, or None (too short, no question, a bad name)."""
    if len(data) < 17:
        return None
    qid = (data[0] << 8) | data[1]
    flags = (data[2] << 8) | data[3]
    qdcount = (data[4] << 8) | data[5]
    if qdcount == 0 or (flags >> 11) & 0xF not in (0, 2):  # standard query or server status: a lookup
        return None
    got = _name(bytes(data[:512]), 12)
    if got is None:
        return None
    name, off = got
    if off + 4 > len(data):
        return None
    qtype = (data[off] << 8) | data[off + 1]
    answers = (data[6] << 8) | data[7]
    response = bool(flags & 0x8000)
    addresses = _addresses(bytes(data), off + 4, answers) if response and answers and qdcount == 1 else ()
    return DNSMessage(id=qid, response=response, rcode=flags & 0xF, name=name, qtype=qtype, answers=answers,
                      addresses=addresses)
