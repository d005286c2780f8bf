"""A tiny DNS-over-UDP pair for the lab's unrelated traffic: a responder that answers every A query with one
address, and a client that sends a few queries (one at a time, each answered before the next).

    python -m lab.dnsish server LISTEN_ADDR ANSWER_ADDR
    python -m lab.dnsish nxserver LISTEN_ADDR          (answers every query NXDOMAIN)
    python -m lab.dnsish portal LISTEN_ADDR ANSWER_ADDR (a captive portal's: every A query answered with its own
                                                         address, any other type with no record)
    python -m lab.dnsish noaaaa LISTEN_ADDR ANSWER_ADDR (every A query answered, every AAAA query dropped: a server
                                                         or firewall that loses the queries for IPv6 addresses)
    python -m lab.dnsish client SERVER_ADDR NAME…

Plain RFC 1035 messages (header, question, one A answer with a compression pointer to the question), port 53.
"""
from __future__ import annotations

import socket
import struct
import sys
import time


def query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)


def answer(q: bytes, address: str) -> bytes:
    return (q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + q[12:]
            + struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address))


def nxdomain(q: bytes) -> bytes:
    """The answer to ``q`` that the name does not exist (RCODE 3, no record)."""
    return q[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + q[12:]


def no_record(q: bytes) -> bytes:
    """The answer to ``q`` that the name has no record of the type asked (NOERROR, no answer)."""
    return q[:2] + struct.pack(">HHHHH", 0x8180, 1, 0, 0, 0) + q[12:]


def hijack(q: bytes, address: str) -> bytes:
    """A captive portal's resolver: ``address`` for an A query (whatever the name), no record for other types."""
    return answer(q, address) if qtype(q) == 1 else no_record(q)


def qtype(q: bytes) -> int:
    """The query's type (1: A, 28: AAAA), 1 when it cannot be read."""
    end = q.find(b"\0", 12)
    return struct.unpack(">H", q[end + 1:end + 3])[0] if 12 <= end and len(q) >= end + 3 else 1


def serve(listen: str, respond, word: str) -> None:
    """Answer every query on ``listen``:53 with ``respond(query)`` (None: left unanswered), a line per query (never
    returns)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((listen, 53))
    print(f"listening on {listen}:53", flush=True)
    while True:
        q, peer = s.recvfrom(512)
        if len(q) >= 12:
            a = respond(q)
            if a is None:
                print(f"dropped {peer[0]}:{peer[1]} id {q[:2].hex()} type {qtype(q)}", flush=True)
                continue
            s.sendto(a, peer)
            print(f"{word} {peer[0]}:{peer[1]} id {q[:2].hex()} type {qtype(q)}", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["server"] and len(argv) == 3:
        serve(argv[1], lambda q: answer(q, argv[2]), "answered")
    if argv[:1] == ["portal"] and len(argv) == 3:
        serve(argv[1], lambda q: hijack(q, argv[2]), "answered")
    if argv[:1] == ["noaaaa"] and len(argv) == 3:
        serve(argv[1], lambda q: answer(q, argv[2]) if qtype(q) == 1 else None, "answered")
    if argv[:1] == ["nxserver"] and len(argv) == 2:
        serve(argv[1], nxdomain, "NXDOMAIN")
    if argv[:1] == ["client"] and len(argv) >= 3:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        for i, name in enumerate(argv[2:]):
            s.sendto(query(name, 0x1000 + i), (argv[1], 53))
            a, _ = s.recvfrom(512)
            print(f"{name} A {socket.inet_ntoa(a[-4:])} (id {a[:2].hex()}, port {s.getsockname()[1]})", flush=True)
            time.sleep(0.2)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
