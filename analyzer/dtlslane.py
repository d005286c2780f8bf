"""The fast lane of one direction of an established DTLS flow (see `Pipeline.feed` and docs/architecture.md).

`Pipeline.feed` hands the lane a raw frame and its `dissectors.packet.plain_ipv4` view (a plain IPv4 packet of
this flow whose UDP and IP lengths agree, and where the datagram is). The lane is a short sequence of public
calls, each the common case of the layer it belongs to, each declining (None / False, having changed nothing)
when the frame is anything else:

* `DTLSConnection.feed_application_record`: exactly one application-data record of an epoch one handshake
  protects, and it decrypts — its content;
* then what the general path leaves behind, which cannot fail: `FlowTable.touch` (flow table order, the flow's
  packet count), `DTLSFlow.note_datagram` and `DTLSFlow.on_application_data` (channel statistics, inner packet).

A frame the lane declines takes the general path (FlowTable → DTLSFlow → DTLSConnection → ChannelStats).
"""
from __future__ import annotations


class DTLSLane:
    """One direction ("c2s" / "s2c" as the DTLS flow names them) of one UDP flow carrying DTLS."""

    __slots__ = ("direction", "dtls", "flow", "flow_index", "flows", "tracker")

    def __init__(self, tracker, flow, flows, direction: str) -> None:
        self.tracker, self.dtls, self.direction = tracker, tracker.dtls, direction
        self.flow, self.flow_index, self.flows = flow, flow.index, flows

    @classmethod
    def open(cls, tracker, flow, flows, direction: str) -> DTLSLane | None:
        """The lane of ``direction`` of UDP ``flow`` (in FlowTable ``flows``) whose DTLSFlow is ``tracker``."""
        return cls(tracker, flow, flows, direction) if flows.holds(flow) else None

    def __call__(self, data, view: tuple, ts: float, frame: int) -> bool:
        _proto, _addresses, start, end = view
        direction = self.direction
        content = self.dtls.feed_application_record(direction, data, start, end)
        if content is None:
            return False
        self.flows.touch(self.flow, ts, frame)
        tracker = self.tracker
        tracker.note_datagram(direction, end - start, ts, frame)
        tracker.on_application_data(direction, content, ts, frame)
        return True
