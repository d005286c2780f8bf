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
"""
from __future__ import annotations


def open_dtls_lane(tracker, flow, flows, direction: str):
    """The lane ``(method, (flows, flow, direction))`` of ``direction`` of UDP ``flow`` (in FlowTable ``flows``)
    whose DTLSFlow is ``tracker``, or None."""
    return (tracker.on_lane_datagram, (flows, flow, direction)) if flows.holds(flow) else None
