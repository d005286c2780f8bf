"""The fast lane of one direction of an established DTLS flow (see `Pipeline.feed` and docs/architecture.md).

`Pipeline.feed` hands the lane a raw frame and its `dissectors.packet.plain_ipv4` view (a plain IPv4 packet of
this flow whose UDP and IP lengths agree, and where the datagram is). A lane is a pair ``(method, where)`` that
the pipeline calls as ``method(where, data, view, ts, frame) -> bool`` (analyzer/tcplane.py says why not a
`functools.partial`): `DTLSFlow.on_lane_datagram`, bound to its tracker, and ``(flow table, UDP flow,
direction)``. The method is a short sequence of public calls, each the common case of the layer it belongs to,
each declining (None / False, having changed nothing) when the frame is anything else:

* `DTLSConnection.feed_application_record`: exactly one application-data record of an epoch one handshake
  protects, and it decrypts — its content;
* then what the general path leaves behind, which cannot fail: `FlowTable.touch` (flow table order, the flow's
  packet count), the flow's datagram count and `DTLSFlow.on_application_data` (channel statistics, inner packet).

A frame the lane declines takes the general path (FlowTable → DTLSFlow → DTLSConnection → ChannelStats).

A flow without keys (a capture read without its key log: a gateway's clients) has a lane of its own while its
keys cannot come (files: nothing waits for keys), `DTLSFlow.on_keyless_lane_datagram`:

* `DTLSConnection.feed_undecryptable_record`: exactly one application-data record of a protected epoch with no
  keys to try, the backlog of records waiting for keys full — its epoch and why it is not decrypted;
* then `FlowTable.touch`, the flow's datagram count, its undecrypted counts and the channel's estimate by record
  size (analyzer/keyless.py `TunnelEstimate.add`), as the general path does with the DTLSUndecrypted event.

Keys installed later (a CONNECT parsed after the first records) give the flow's records keys to try: the keyless
lane declines them, the general path decrypts and opens the other lane.
"""
from __future__ import annotations


def open_dtls_lane(tracker, flow, flows, direction: str, method, side):
    """The lane ``(method, (flows, flow, direction, side))`` of ``direction`` (the session's: c2s from the client) of
    UDP ``flow`` (in FlowTable ``flows``) whose DTLSFlow is ``tracker`` (``method``: its `on_lane_datagram` unless
    None; ``side``: the flow's `dissectors.flows.Side` of that direction — ``flow.side_a`` when the flow's first
    sender sends it — for `FlowTable.touch`), or None."""
    if not flows.holds(flow):
        return None
    return (method if method is not None else tracker.on_lane_datagram), (flows, flow, direction, side)
