"""The typed form of a tunnel channel's statistics (`analyzer.tcptracker.ChannelStats.summary()`), as the
cstp-connect phase (`channel`) and each DTLS flow (`channel`) carry them.

The records are made from the tracker's dicts by keyword (`ChannelSummary(**summary)`), so a key added to
`ChannelStats.summary()` (or to a DTLS hello, ServerHello or disconnect dict: analyzer/phases/dtls.py) fails
loudly (TypeError) until it gets its field here — and with it its place in the JSON schema."""
from __future__ import annotations

from typing import Any

from .record import Record, record


@record
class Disconnect(Record):
    """A CSTP/DTLS DISCONNECT or TERMINATE frame."""
    direction: str
    type: str  # "DISCONNECT" / "TERMINATE"
    ts: float
    frame: int
    reason: str | None


@record
class DPDSummary(Record):
    requests: dict[str, int]  # per direction
    answered: int
    rtt_max: float | None
    rtt_median: float | None
    exchanges: list[dict[str, Any]]  # {direction, ts, frame, rtt, answer_frame, …}: the first 50


@record
class OversizePackets(Record):
    count: int
    samples: list[dict[str, Any]]  # {direction, ts, frame, length, carried, df}


@record
class ChannelSummary(Record):
    frames: dict[str, dict[str, dict[str, int]]]  # direction → CSTP frame type → {count, bytes}
    inner_packets: dict[str, int]
    inner_bytes: dict[str, int]
    inner_max_length: dict[str, int]
    inner_ipv6_packets: int
    inner_ipv4_fragments: int
    first_data: dict[str, float]
    last_data: dict[str, float]
    dpd: DPDSummary
    keepalives: dict[str, int]
    keepalive_times: dict[str, list[float]]  # direction → times of its KEEPALIVE frames: the first 50
    disconnect: Disconnect | None
    oversize_packets: OversizePackets
    truncated_packets: int
    first_frame_ts: float | None
    last_frame_ts: float | None
    silent_gaps: dict[str, dict[str, Any]]  # direction → {seconds, from, to, frame}: the longest silence
    mtu_probes: list[dict[str, Any]]

    @classmethod
    def from_stats(cls, stats) -> ChannelSummary:
        """From a `ChannelStats` (its `summary()`)."""
        d = stats.summary()
        d["dpd"] = DPDSummary(**d["dpd"])
        d["oversize_packets"] = OversizePackets(**d["oversize_packets"])
        d["disconnect"] = Disconnect(**d["disconnect"]) if d["disconnect"] is not None else None
        return cls(**d)
