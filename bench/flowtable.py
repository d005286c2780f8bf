"""Micro-benchmark of the packet decoder and the flow table alone: ``python -m bench.flowtable``.

Prints packets/s for `dissectors.packet.decode` + `FlowTable.feed` on a synthetic in-order TCP stream (20 000
segments of 1000 bytes, built with scapy once). A reading, not a test: timings are never asserted (they were a
printing test in the flow-table tests before).
"""
from __future__ import annotations

import time

from dissectors.flows import FlowTable
from dissectors.packet import decode


def segments(count: int = 2000, repeat: int = 10) -> list[bytes]:
    from scapy.all import IP, TCP, Ether  # noqa: PLC0415 - scapy builds the input, never in the measured loop

    frames, isn = [], 1000
    for _ in range(count):
        frames.append(bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") /
                            TCP(sport=40000, dport=443, seq=isn, flags="PA") / (b"x" * 1000)))
        isn += 1000
    return frames * repeat


def measure(frames: list[bytes], rounds: int = 3) -> float:
    """Best packets/s over ``rounds`` runs."""
    best = 0.0
    for _ in range(rounds):
        ft = FlowTable()
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            ft.feed(decode(1, f), 0.0, i + 1)
        best = max(best, len(frames) / (time.perf_counter() - t0))
    return best


def main() -> None:
    print(f"decode + FlowTable: {measure(segments()):,.0f} packets/s (best of 3, 20 000 in-order segments)")


if __name__ == "__main__":
    main()
