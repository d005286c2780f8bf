"""`Analyzer`: the one analysis driver (sans-I/O). Every way of running an analysis goes through it.

    an = Analyzer(keys, key_info=info, inner_sink=sink)
    an.add_keylog_text(text)            # more keys, at any time (live: a key log that grows)
    an.start_capture("a.pcapng")        # frames that follow come from this capture (frame numbers from 1)
    an.feed_events(batch)               # Frame / Secrets / CaptureError events as dissectors.pcapfile gives them
    an.feed(frame)                      # or one Frame at a time
    an.end_capture()
    analysis = an.finish()              # pipeline.finish → sessions → rules: the `Analysis`

Live (`analyzer/live.py`): ``Analyzer(keys, key_wait=KeyWait(limit))`` makes TLS connections whose key the key log
does not hold yet park their records (and new DTLS flows hold their datagrams) until `add_keylog_text` brings it;
`snapshot()` builds the session model of what was fed so far without ending the analysis.

It reads no file, socket or clock: the I/O edges (`analyzer/analyze.py` for files, `analyzer/live.py` for a
capture pipe, `analyzer/keys_export.py`, bench/ and fuzz/) read bytes, parse them with `PcapParser` /
`read_capture_batches` and hand the events here. Several captures go through one pipeline, one after the other,
so that a session cut across a ring buffer's files holds together; flows are numbered per capture, as tshark
numbers tcp.stream / udp.stream in each file, and every session names the captures its flows were seen in.
"""
from __future__ import annotations

from dissectors.keylog import KeyStore, parse_keylog
from dissectors.pcapfile import CaptureError, Frame, Interface, InterfaceStatistics, Secrets
from dissectors.tls.connection import KeyWait

from .capture_point import describe_interface, is_tunnel_device
from .evidence import resolve_gateways
from .model import Analysis, CaptureInfo
from .pipeline import Pipeline
from .rules import apply_rules
from .sessions import reconstruct
from .verdict import apply_verdicts

#: interfaces a capture summary lists at most (a pcapng file may describe thousands)
MAX_INTERFACES_LISTED = 64
#: pcapng Decryption Secrets Block type of an NSS key log
TLS_KEYLOG_DSB = 0x544C534B


def _note_statistics(ci: CaptureInfo, ev: InterfaceStatistics) -> None:
    """The capturing program's counters for an interface of the capture (a pcapng Interface Statistics Block):
    kept on the interface's entry (the latest block's, as the counters run from the capture's start), the
    interface of that id most recently described (ids are per section)."""
    itf = next((i for i in reversed(ci.interfaces) if i.get("id") == ev.interface), None)
    if itf is None:
        return
    for key, value in (("received", ev.received), ("dropped", ev.dropped), ("os_dropped", ev.os_dropped)):
        if value is not None:
            itf[key] = value


class Analyzer:
    """Frames and keys in, `Analysis` out. ``inner_sink(channel, direction, ts, frame, packet)`` receives the
    decapsulated inner IP packets (`--export-inner`); ``fast_lanes=False`` sends every frame down the general path
    (the differential tests compare both)."""

    def __init__(self, keys: KeyStore | None = None, *, key_info: dict | None = None, inner_sink=None,
                 fast_lanes: bool = True, max_flows: int = 1 << 16, gateways=None,
                 key_wait: KeyWait | None = None) -> None:
        self.keys = keys if keys is not None else KeyStore()
        self.gateways = list(gateways or [])  # analyzer.evidence.GatewaySpec: --gateway, forces the sessions
        self.key_info = dict(key_info or {})
        self.pipeline = Pipeline(self.keys, inner_sink=inner_sink, fast_lanes=fast_lanes, max_flows=max_flows,
                                 key_wait=key_wait)
        self.analysis = Analysis()
        self.capture: CaptureInfo | None = None  # the capture being fed
        self._finished = False

    # -- keys ------------------------------------------------------------------------------------------------
    def add_keylog_text(self, text: str) -> list[str]:
        """NSS key log lines (SSLKEYLOGFILE); returns the problems of the unusable lines. Connections waiting for
        keys (``key_wait``) try again."""
        return self.add_keylog(text)[1]

    def add_keylog(self, text: str) -> tuple[int, list[str]]:
        """`add_keylog_text`, also returning how many usable entries the text held."""
        entries, errors = parse_keylog(text)
        self.keys.add_entries(entries)
        if entries:
            self.pipeline.keys_added()
        return len(entries), errors

    def add_rsa_private_key(self, key) -> None:
        """A gateway's RSA private key (for TLS_RSA_* key exchange)."""
        self.keys.add_rsa_private_key(key)

    # -- captures --------------------------------------------------------------------------------------------
    def start_capture(self, name: str) -> CaptureInfo:
        """The frames that follow come from capture ``name`` (its path, or e.g. "live:eth0"); ends the one before."""
        self._check_open()
        self.end_capture()
        ci = CaptureInfo(path=str(name), keys=dict(self.key_info))
        self.analysis.captures.append(ci)
        self.capture = ci
        self.pipeline.start_capture(ci.path)
        return ci

    def end_capture(self) -> None:
        """The current capture is complete (its flows stay open: the next capture may continue them)."""
        self.capture = None

    def feed(self, frame: Frame) -> None:
        """One frame of the current capture (one is started, named "<frames>", if none was)."""
        ci = self.capture or self.start_capture("<frames>")
        ci.frames += 1
        if ci.first is None:
            ci.first = frame.ts
        ci.last = frame.ts
        self.pipeline.feed(frame)

    def feed_events(self, events: list) -> None:
        """A batch of `PcapParser` events of the current capture: frames, embedded key logs (Decryption Secrets
        Blocks), capture errors, in capture order."""
        ci = self.capture or self.start_capture("<frames>")
        pipe = self.pipeline
        before = pipe.frames

        def other(ev) -> None:
            t = type(ev)
            if t is Secrets:
                self._secrets(ci, ev)
            elif t is CaptureError:
                ci.errors.append(f"{ev.message} (at byte {ev.offset})")
            elif t is InterfaceStatistics:
                _note_statistics(ci, ev)
            elif t is Interface:
                itf = {"id": ev.id, "linktype": ev.linktype, "name": ev.name, "description": ev.description}
                if len(ci.interfaces) < MAX_INTERFACES_LISTED:
                    ci.interfaces.append(itf)
                # (the VPN's adapter: its packets are the tunnel's inside)
                pipe.note_interface(ev.id, describe_interface(itf), is_tunnel_device(itf))

        pipe.feed_events(events, other)  # the frames, in order with the rest
        n = pipe.frames - before
        if n:
            if ci.first is None:
                ci.first = next(ev.ts for ev in events if type(ev) is Frame)
            ci.frames += n
            ci.last = pipe.last_ts

    def _secrets(self, ci: CaptureInfo, ev: Secrets) -> None:
        if ev.kind != TLS_KEYLOG_DSB:
            return
        errs = self.add_keylog_text(ev.data.decode("utf-8", "replace"))
        ci.keys["embedded_secrets"] = ci.keys.get("embedded_secrets", 0) + 1
        if errs:
            ci.errors.append(f"embedded key log: {len(errs)} unusable line(s)")

    # -- result ----------------------------------------------------------------------------------------------
    def finish(self) -> Analysis:
        """End of input: flush the flows, build the sessions, apply the rules. Call once."""
        self._check_open()
        self.end_capture()
        self._finished = True
        pipe = self.pipeline
        pipe.finish()
        return build_sessions(self.analysis, pipe, self.gateways)

    def snapshot(self, now: float | None = None) -> Analysis:
        """The session model of what was fed so far (sessions, their phases and findings), without ending the
        analysis: flows stay open, nothing is flushed, more frames may follow. ``now``: the capture has run until
        then (a live capture with no packet since its last frame: "no answer within 5 s" counts from its last frame
        to ``now``). One session build per call: a live view calls it a few times a second at most."""
        self._check_open()
        pipe = self.pipeline
        last = pipe.last_ts
        if now is not None and last is not None and now > last:
            pipe.last_ts = now
        else:
            now = None
        kept = pipe.failed_connects
        # (the connections that never got an answer so far: the pass notes them only at its end)
        pipe.failed_connects = pipe.failed_connects_so_far(pipe.last_ts)
        try:
            snap = Analysis(captures=[CaptureInfo(c.path, c.frames, c.first, c.last if now is None or c.last is None
                                                  else max(c.last, now), list(c.errors), dict(c.keys))
                                      for c in self.analysis.captures])
            build_sessions(snap, pipe, self.gateways)
        finally:
            pipe.last_ts = last
            pipe.failed_connects = kept
        return snap

    def stats(self) -> dict:
        """Counters of the pipeline so far (progress lines, bench)."""
        pipe = self.pipeline
        return {"frames": pipe.frames, "undecodable": pipe.undecodable, "tcp_connections": len(pipe.tcp),
                "dtls_flows": len(pipe.udp), "evicted_flows": pipe.evicted, "fast_frames": pipe.fast_frames}

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("Analyzer.finish() was called: start a new Analyzer")


def build_sessions(analysis: Analysis, pipe, gateways) -> Analysis:
    """The session model of a finished pipeline (or of what `analyzer/parallel.py` merged from its shards, which has
    what these read of one): sessions and other traffic, then the findings (rules), then each session's verdict.
    The one place these steps are chained, so that every way of running an analysis gives the same document."""
    gateways = resolve_gateways(gateways, pipe)  # --gateway NAME: the addresses the capture ties to the name
    analysis.gateways = list(gateways or [])
    analysis.sessions, analysis.other_traffic, analysis.failed_connects = reconstruct(pipe, gateways)
    apply_rules(analysis, pipe)
    apply_verdicts(analysis)
    return analysis
