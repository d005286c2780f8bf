"""The fast lane of one direction of a TCP connection that carries an established CSTP tunnel.

`Pipeline.feed` hands the lane a raw frame and its `dissectors.packet.plain_ipv4` view (a plain IPv4 packet of
this connection: TCP sequence and acknowledgement numbers, flags, where the payload is; docs/architecture.md).
A lane is a pair ``(method, where)`` that the pipeline calls as ``method(where, data, view, ts, frame) -> bool``:
`TCPTracker.on_lane_segment`, bound to its tracker, and ``(stream, direction)`` (a bound method called from
Python code costs no more than any Python call; a `functools.partial` binding the same arguments would cost a
call from C, about 650 instructions a frame more). The method is a short sequence of public calls, each the common
case of the layer it belongs to, each declining (False / None, having changed nothing) when the frame is anything
else:

* `TCPStream.feed_next`: the next in-order segment or a pure ACK, the flow table's order kept as its `feed` would
  (else False: the frame takes the general path);
* `TLSConnection.feed_application_data` with the segment's bytes (the bytes continue a direction that is in step
  and decrypting, and every record they complete is application data that decrypts: their contents; else the real
  TLS code, `TLSConnection.feed`, takes the bytes), then `TCPTracker.on_application_data`, as on the general
  path (where one whole CSTP frame takes `CSTPFramer.take_frame` of the framer `HTTPStream.tunnel_framer` hands
  out for a tunnelled direction, to the channel statistics, without events).

Past the TCP layer nothing is declined any more: a state that a layer's fast method does not take is handed to
that layer's general method with the same bytes, exactly as the general path would.

The same lane serves a TLS connection without keys (a capture read without its key log, or a connection the key
log has no secret for), in a file, once its protected records are seen not to decrypt and both directions are in
step (`TCPTracker.undecryptable`): `TLSConnection.feed_application_data` then declines every time and
`TLSConnection.feed` counts the records (their sizes feed the keyless reading, analyzer/keyless.py); what the lane
saves is the packet decoding, the flow table's general entry and the dispatch.
"""
from __future__ import annotations


def open_tcp_lane(stream, conn, flows, direction: str, keyless: bool = False):
    """The lane ``(method, (stream, direction))`` of ``direction`` of TCP ``stream`` (in FlowTable ``flows``)
    whose TCPTracker is ``conn``, or None when the connection is not one a lane takes: one carrying a CSTP tunnel,
    or (``keyless``) a TLS connection in step whose protected records do not decrypt (`TCPTracker.undecryptable`)."""
    if conn.is_tls is not True or stream.client is None:
        return None
    if not (conn.undecryptable if keyless else conn.http.tunnel):
        return None
    if stream.client == stream.server:  # both directions look alike on the wire: TCPStream calls every packet c2s
        return None
    return (conn.on_lane_segment, (stream, direction)) if flows.holds(stream) else None
