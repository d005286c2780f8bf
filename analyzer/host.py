"""`TrackerHost`: what a per-connection tracker may ask of the code that drives it (typed, three calls).

A tracker (`analyzer.tcptracker.TCPTracker`, `analyzer.dtlsflow.DTLSFlow`) summarises one flow from the flow
layer's events. Three things it sees concern more than its own flow; it reports them to its host, which the
tracker receives when it is made (one attribute, two calls):

* `inner_packet` — where a decapsulated inner IP packet (a CSTP or DTLS DATA frame) goes, for `--export-inner`:
  a callable, or None when nobody takes them (the trackers then skip the call on their per-packet path);
* `on_connect` — a CONNECT answered 2xx on a TCP connection: the host derives the DTLS keys the exchange carries
  (X-DTLS-Session-ID + X-DTLS-Master-Secret, or PSK-NEGOTIATE) and hands them to the DTLS flows they unlock;
* `on_dtls_hello` — a DTLS flow learnt its session id from a ClientHello: the host gives it the keys of that
  session if a CONNECT already announced them (`DTLSFlow.set_keys`).

`analyzer.pipeline.Pipeline` is the host of every tracker it creates. Nothing else of the host is reachable
from a tracker; a test or a tool can drive trackers with any object that has these three methods.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .dtlsflow import DTLSFlow
    from .tcptracker import Exchange, TCPTracker


class TrackerHost(Protocol):
    #: ``inner_packet(channel, direction, ts, frame, packet)`` for one inner IP packet (``channel`` "cstp" or
    #: "dtls", ``direction`` "c2s" or "s2c"), or None: inner packets are not wanted.
    inner_packet: Callable[[str, str, float, int, bytes], None] | None

    def on_connect(self, conn: TCPTracker, ex: Exchange) -> None:
        """``conn``'s CONNECT exchange ``ex`` was answered 2xx (the tunnel is up on this connection)."""

    def on_dtls_hello(self, flow: DTLSFlow) -> None:
        """``flow``'s first ClientHello with a session id was seen (``flow.session_id`` is set)."""
