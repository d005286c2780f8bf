"""The fast lane of one direction of a TCP connection that carries an established CSTP tunnel.

`Pipeline.feed` hands the lane a raw frame and its `dissectors.packet.plain_ipv4` view (a plain IPv4 packet of
this connection: TCP sequence and acknowledgement numbers, flags, where the payload is; docs/architecture.md).
The lane is a short sequence of public calls, each the common case of the layer it belongs to, each declining
(None / False, having changed nothing) when the frame is anything else:

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

    def __call__(self, data, view: tuple, ts: float, frame: int) -> bool:
        _proto, _addresses, seq, ack, flags, start, end = view
        stream = self.stream
        if not stream.feed_next(self.direction, seq, ack, flags, end - start, ts, frame):
            return False
        self.flows.touch(stream, ts, frame)
        if start != end:
            self.conn.on_segment_data(self.direction, data[start:end], ts, frame)
        return True
