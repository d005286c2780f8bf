"""The fast lane of one direction of a TCP connection that carries an established CSTP tunnel.

`Pipeline.feed` hands the lane a raw frame that `dissectors.packet.plain_ipv4` found to be a plain IPv4 packet of
this connection (see docs/architecture.md). The lane is a short sequence of public calls, each the common case of
the layer it belongs to, each declining (None / False, having changed nothing) when the frame is anything else:

* `dissectors.packet.tcp_segment`: the TCP header fields;
* `TCPStream.feed_next`: the next in-order segment or a pure ACK (else False: the frame takes the general path);
* `FlowTable.touch`: the flow table's order;
* `TCPConnection.on_segment_data` with the segment's bytes: there `TLSConnection.feed_application_data` (the
  bytes continue a direction that is in step and decrypting, and every record they complete is application data
  that decrypts: their contents; else the real TLS code, `TLSConnection.feed`, takes the bytes), then for each
  content `TCPConnection.on_application_data`, as on the general path (where one whole CSTP frame takes
  `HTTPStream.feed_tunnel_frame` → `CSTPFramer.take_frame` to the channel statistics, without events).

Past the TCP layer nothing is declined any more: a state that a layer's fast method does not take is handed to
that layer's general method with the same bytes, exactly as the general path would.
"""
from __future__ import annotations

from dissectors.packet import tcp_segment


class TCPLane:
    """One direction ("c2s" / "s2c") of one TCP connection in CSTP tunnel mode."""

    __slots__ = ("conn", "direction", "flow_index", "flows", "stream")

    def __init__(self, stream, conn, flows, direction: str) -> None:
        self.stream, self.flow_index, self.flows = stream, stream.index, flows
        self.conn, self.direction = conn, direction

    @classmethod
    def open(cls, stream, conn, flows, direction: str) -> TCPLane | None:
        """The lane of ``direction`` of TCP ``stream`` (in FlowTable ``flows``) whose TCPConnection is ``conn``."""
        if conn.is_tls is not True or not conn.http.tunnel or stream.client is None:
            return None
        if stream.client == stream.server:  # both directions look alike on the wire: TCPStream calls every packet c2s
            return None
        return cls(stream, conn, flows, direction) if flows.holds(stream) else None

    def __call__(self, data, off: int, total: int, ts: float, frame: int) -> bool:
        segment = tcp_segment(data, off, total)
        if segment is None:
            return False
        seq, ack, flags, start, length = segment
        stream = self.stream
        if not stream.feed_next(self.direction, seq, ack, flags, length, ts, frame):
            return False
        self.flows.touch(stream, ts, frame)
        if not length:
            return True
        self.conn.on_segment_data(self.direction, data[start:start + length], ts, frame)
        return True
