"""Phase 6, dtls: every DTLS flow of the session (ClientHellos, HelloVerifyRequests, ServerHello, establishment —
decrypted or recognised from the record pattern — the channel statistics) and the phase's verdict."""
from __future__ import annotations

import itertools
from dataclasses import field
from typing import Any

from dissectors.tls.names import cipher_suite_name

from ..dtlsflow import DTLS_VERSIONS, DTLSFlow
from ..evidence import fmt_endpoint
from ..model import Phase
from ..wording import plural
from .channel import ChannelSummary
from .cstp_connect import TunnelParameters, connect_details
from .grouping import Group
from .record import UNSET, Record, opt, record

INCOMPLETE_WAIT = 1.0  # seconds of capture after the last DTLS hello before "no answer" is a fact


@record
class DTLSHello(Record):
    """One DTLS ClientHello."""
    ts: float
    frame: int
    retransmission: bool
    session_id: str  # hex
    version: int
    cookie: bool  # it carries a HelloVerifyRequest's cookie
    #: true for a hello the capture cut short (snapshot length): session_id holds the bytes it kept, cookie is not
    #: known (false), session_id_length is the length the hello gives (when kept)
    cut: bool = UNSET
    session_id_length: int = UNSET
    #: the record's sequence number (RFC 6347 §4.1: every record a new one, retransmissions included — a number
    #: skipped between two hellos of one handshake is a hello the capture missed); not known for a cut hello
    record_seq: int = UNSET


@record
class DTLSServerHello(Record):
    ts: float
    frame: int
    session_id: str  # hex (a ServerHello the capture cut short: the bytes it kept)
    cipher_suite: int | None  # None: cut by the capture before it
    version: int


@record
class DirectionEstimate(Record):
    """One direction of an undecrypted DTLS channel, read from record sizes (analyzer/keyless.py)."""
    records: int
    control: int  # records of a bare control packet (DPD request/response, keepalive)
    data: int  # DATA packets (MTU probes not answered and not in a run of shrinking probes included)
    inner_bytes_least: int  # inner bytes they carry: exact for AEAD suites, a range of one block each for CBC
    inner_bytes_most: int
    mtu_probes: int = UNSET  # DTLS: padded DPD requests and their answers (a big record echoed at its size)
    disconnect: int = UNSET  # records of a DISCONNECT's size (a payload too short for an IP packet)


@record
class ChannelEstimate(Record):
    """What an undecrypted DTLS channel carried, *estimated* from record sizes and the cipher suite's overhead."""
    estimated: bool  # always true: a reading of sizes, not of contents
    c2s: DirectionEstimate
    s2c: DirectionEstimate
    control_answered: int  # control packets answered in kind by the other side (DPD exchanges)
    control_unanswered: int  # keepalives, and DPD requests without an answer
    exact_sizes: bool  # AEAD suite: inner sizes exact; CBC: within one block
    #: records per direction and class read from their size and timing (analyzer/keyless.py): DATA, DPD_REQ,
    #: DPD_RESP, KEEPALIVE, DISCONNECT, TERMINATE, MTU_PROBE
    frame_classes: dict[str, dict[str, int]] = UNSET
    #: unanswered DPD requests that end one side's traffic: {direction, first, last, requests, frames}
    dead_peer: list[dict[str, Any]] = UNSET
    first_data: dict[str, float] = UNSET  # direction → time of its first DATA packet
    last_data: dict[str, float] = UNSET  # direction → time of its last DATA packet

    @classmethod
    def from_estimate(cls, e) -> ChannelEstimate:
        return cls(estimated=True, c2s=direction_estimate(e.dirs["c2s"]), s2c=direction_estimate(e.dirs["s2c"]),
                   control_answered=e.control_answered, control_unanswered=e.control_unanswered,
                   exact_sizes=not e.prot.block, frame_classes=e.classes(), dead_peer=list(e.dead_peer),
                   first_data=dict(e.first_data), last_data=dict(e.last_data))


def direction_estimate(d) -> DirectionEstimate:
    return DirectionEstimate(records=d.records, control=d.control, data=d.data,
                             inner_bytes_least=d.inner_bytes_least, inner_bytes_most=d.inner_bytes_most,
                             mtu_probes=d.mtu_probes, disconnect=d.disconnect)


@record
class DTLSFlowSummary(Record):
    """One UDP flow of the DTLS channel."""
    connection: str  # "udp.stream N"
    client: str
    gateway: str
    mode: str | None  # psk-negotiate, legacy, legacy-0x0100
    version: str | None
    cipher_suite: str | None
    client_hellos: list[DTLSHello]
    client_hello_count: int
    hello_intervals: list[float]
    hello_verify_requests: int
    hello_verify_request_frames: list[int]
    hello_verify_request_times: list[float]
    server_hello: DTLSServerHello | None
    full_handshake: bool
    established: bool
    established_time: float | None
    established_frame: int | None
    established_from: str | None  # before-capture, record-pattern, decryption
    before_capture: bool
    handshake_start: float | None
    handshake_duration: float | None
    keys: str | None  # where the keys came from: legacy, psk-negotiate
    undecrypted_records: int
    undecrypted_records_by_direction: dict[str, int]
    undecrypted_reason: str | None
    alerts: list[dict[str, Any]]  # {direction, level, description, name, encrypted, ts, frame}
    problems: list[dict[str, Any]]  # {message, ts, frame}
    datagrams: dict[str, int]
    bytes: dict[str, int]
    channel: ChannelSummary
    session_id: str | None  # hex
    first_record: dict[str, Any]
    start: float | None
    end: float | None
    continues: str | None  # the flow whose DTLS session this one continues (NAT rebinding)
    first_frame: int | None
    # without keys: what the channel carried, estimated from record sizes (only for undecrypted records)
    estimate: ChannelEstimate = UNSET
    server_hello_frames: list[int] = field(default=UNSET, metadata={
        "description": "every ServerHello of the flow (the gateway's answer to each ClientHello it answered; the "
                       "first 50); present only when there is one"})
    server_hello_times: list[float] = field(default=UNSET, metadata={"description": "their times"})
    finished: dict[str, DTLSFinishedSent] = field(default=UNSET, metadata={
        "description": "per direction (c2s, s2c), the records that carried its Finished — a copy sent again when no "
                       "answer came, or a later handshake's (a rekey) — decrypted or read as a protected handshake "
                       "record without keys (the first 16); present only when one was sent"})
    records_missing: dict[str, DTLSRecordsMissing] = field(default=UNSET, metadata={
        "description": "per direction (c2s: the client's records, s2c: the gateway's), the record numbers its sender "
                       "gave that the capture lacks — records lost before they reached the capture point (or not "
                       "captured); read from the record headers, with or without keys; present only when a number "
                       "is missing (added in session 20)"})


@record
class DTLSRecordGap(Record):
    """A run of record numbers one side of a DTLS flow skipped: the records between two that were captured."""
    before: float  # when the record before it was captured
    time: float  # when the record after it was
    missing: int  # numbers skipped
    frame: int | None  # the frame of the record after it


@record
class DTLSRecordsMissing(Record):
    """The record numbers one side of a DTLS flow gave that the capture lacks (DTLS numbers every record its sender
    sends, one by one in each epoch, retransmissions included: RFC 6347 §4.1)."""
    records: int  # numbers spanned, from the first record captured to the last (per epoch)
    missing: int  # of them, never captured
    late: int  # captured after a later number (reordered on the way)
    gaps: int  # runs of numbers skipped
    first_gaps: list[DTLSRecordGap]  # the first 20 of them


@record
class DTLSFinishedSent(Record):
    """One side's Finished of a DTLS handshake: the records that carried it (the first, then each copy sent again
    when no answer came), and whether it verified against the keys acflow derived."""
    frames: list[int]
    times: list[float]
    #: True/False: its verify_data checked against the flow's keys (PSK-NEGOTIATE: the PSK from the client's TLS
    #: session); null: not checked (no keys, the transcript incomplete)
    verified: bool | None


@record
class DTLSDetails(Record):
    """The DTLS flows and the main one's outcome; without flows only `offered` (did the gateway offer DTLS)."""
    flows: list[DTLSFlowSummary] = UNSET
    mode: str | None = UNSET
    version: str | None = UNSET
    cipher_suite: str | None = UNSET
    established: bool = UNSET
    client_hello_times: list[float] = UNSET
    offered: bool = False
    before_capture: bool = UNSET
    data_moved_to_dtls: float | None = UNSET  # first client→gateway data over DTLS

    @property
    def flow_list(self) -> list[DTLSFlowSummary]:
        return self.flows or []


def _dtls_mode(flow: DTLSFlow, params: TunnelParameters | None) -> str | None:
    if flow.keys_source == "psk-negotiate":
        return "psk-negotiate"
    if flow.keys_source == "legacy":
        return "legacy-0x0100" if flow.version == 0x0100 else "legacy"
    suite = params.dtls_ciphersuite if params else None
    if suite == "PSK-NEGOTIATE":
        return "psk-negotiate"
    if flow.version == 0x0100 or (flow.hellos and flow.hellos[0]["version"] == 0x0100):
        return "legacy-0x0100"
    return "legacy" if suite else None


def _attempt_start(f: DTLSFlow) -> float | None:
    """When the handshake that succeeded (or the last one) began: its first ClientHello, before any cookie
    exchange or retransmission (a hello with a cookie or a retransmitted one continues the attempt)."""
    end = f.established_ts
    start = None
    for h in f.hellos:
        if end is not None and h["ts"] > end:
            break
        if start is None or not (h["retransmission"] or h["cookie"]):
            start = h["ts"]
    return start


def flow_summary(f: DTLSFlow, params: TunnelParameters | None) -> DTLSFlowSummary:
    hello_times = [h["ts"] for h in f.hellos]
    attempt_start = _attempt_start(f)
    return DTLSFlowSummary(
        connection=f"udp.stream {f.index}", client=fmt_endpoint(*f.client),
        gateway=fmt_endpoint(*f.server), mode=_dtls_mode(f, params),
        version=DTLS_VERSIONS.get(f.version, hex(f.version) if f.version else None),
        cipher_suite=cipher_suite_name(f.cipher_suite) if f.cipher_suite is not None else None,
        client_hellos=[DTLSHello(**h) for h in f.hellos], client_hello_count=f.hello_total,
        hello_intervals=[round(b - a, 3) for a, b in itertools.pairwise(hello_times)],
        hello_verify_requests=len(f.hello_verify),
        hello_verify_request_frames=[h["frame"] for h in f.hello_verify[:50]],
        hello_verify_request_times=[h["ts"] for h in f.hello_verify[:50]],
        server_hello=DTLSServerHello(**f.server_hello) if f.server_hello else None,
        full_handshake=f.full_handshake, established=f.established_ts is not None or f.up_before_capture,
        established_time=f.established_ts, established_frame=f.established_frame,
        established_from=("before-capture" if f.up_before_capture else "record-pattern" if f.established_keyless
                          else "decryption" if f.established_ts is not None else None),
        before_capture=f.before_capture,
        handshake_start=attempt_start,
        handshake_duration=round(f.established_ts - attempt_start, 6)
        if f.established_ts is not None and attempt_start is not None else None,
        keys=f.keys_source, undecrypted_records=f.undecrypted,
        undecrypted_records_by_direction=dict(f.undecrypted_records),
        undecrypted_reason=f.undecrypted_reason,
        alerts=f.alerts, problems=f.problems[:10], datagrams=dict(f.datagrams), bytes=dict(f.bytes),
        channel=ChannelSummary.from_stats(f.channel),
        session_id=f.session_id.hex() if f.session_id else None,
        first_record=f.first_record, start=f.first_ts, end=f.last_ts, continues=f.continues,
        first_frame=f.first_frame,
        estimate=ChannelEstimate.from_estimate(f.estimate) if f.estimate is not None and f.keys_source is None
        else UNSET,
        **({"server_hello_frames": [fr for _t, fr in f.server_hellos[:50]],
            "server_hello_times": [t for t, _fr in f.server_hellos[:50]]} if f.server_hellos else {}),
        **({"finished": {d: DTLSFinishedSent(frames=[fr for _t, fr in recs], times=[t for t, _fr in recs],
                                             verified=f.finished_verified.get(d))
                         for d, recs in sorted(f.finished_records.items())}} if f.finished_records else {}),
        **_records_missing(f))


def records_lost(details) -> dict[str, tuple[int, int]]:
    """Per direction, (records missing, record numbers spanned) over the DTLS flows of ``details`` (the dtls phase's
    details) that miss any: the records that never reached the capture point (`DTLSFlowSummary.records_missing`)."""
    out: dict[str, tuple[int, int]] = {}
    for f in details.flow_list if isinstance(details, DTLSDetails) else []:
        for direction, m in (opt(f.records_missing) or {}).items():
            n, total = out.get(direction, (0, 0))
            out[direction] = (n + m.missing, total + m.records)
    return out if any(n for n, _ in out.values()) else {}


def records_lost_line(details) -> str | None:
    """``client→gateway 0 of 65 (0.0 %), gateway→client 4 of 65 (6.2 %)`` of `records_lost`, or None."""
    lost = records_lost(details)
    if not lost:
        return None
    return ", ".join(f"{who} {lost[k][0]} of {lost[k][1]} ({100 * lost[k][0] / max(lost[k][1], 1):.1f} %)"
                     for k, who in (("c2s", "client→gateway"), ("s2c", "gateway→client")) if k in lost)


def _records_missing(f: DTLSFlow) -> dict:
    """``records_missing`` of the flow's summary: only when a number is missing."""
    gaps = getattr(f, "sequence_gaps", None) or {}
    if not any(g["missing"] for g in gaps.values()):
        return {}
    return {"records_missing": {
        d: DTLSRecordsMissing(records=g["records"], missing=g["missing"], late=g["late"], gaps=g["gaps"],
                              first_gaps=[DTLSRecordGap(before=b, time=t, missing=n, frame=fr)
                                          for b, t, n, fr in g["first_gaps"][:20]])
        for d, g in sorted(gaps.items())}}


def build(g: Group, cstp: Phase, capture_end: float | None = None) -> Phase:
    p = Phase("dtls")
    cd = connect_details(cstp)
    params = cd.parameters or None if cd is not None else None
    offered = bool(params and params.dtls_port)
    proxy = next((cn.c.proxy for cn in g.conns if cn.c.proxy), None)
    if not g.dtls:
        if offered and proxy is not None:
            # clients do not send DTLS through an HTTP proxy (openconnect: none in the lab's http-proxy sample)
            p.status = "absent"
            p.summary = (f"not tried: the client reaches the gateway through the HTTP proxy ("
                         f"CONNECT {proxy.get('target')}), and a proxy carries no UDP")
        elif offered:
            p.status = "failed"
            p.summary = "gateway offered DTLS (X-DTLS-Port) but no DTLS packets were captured"
        else:
            p.status = "absent"
            p.summary = "no DTLS" + ("; gateway offered no DTLS" if params else "")
        p.details = DTLSDetails(offered=offered)
        return p
    flows = []
    for f in g.dtls:
        flows.append(flow_summary(f, params))
        p.touch(f.first_ts, f.first_frame)
        p.touch(f.last_ts, f.last_frame)
        for h in f.hellos[:50]:
            p.frames.append(h["frame"])
        for h in f.hello_verify[:50]:
            p.frames.append(h["frame"])
        if f.server_hello:
            p.frames.append(f.server_hello["frame"])
        if f.established_frame:
            p.frames.append(f.established_frame)
    main = next((e for e in flows if e.established), flows[0])
    d = DTLSDetails(flows=flows, mode=main.mode, version=main.version, cipher_suite=main.cipher_suite,
                    established=main.established, client_hello_times=[h.ts for e in flows for h in e.client_hellos],
                    offered=offered, before_capture=bool(main.before_capture))
    est = [e for e in flows if e.established]
    if est:
        d.data_moved_to_dtls = est[0].channel.first_data.get("c2s")
        undecrypted = sum(e.undecrypted_records for e in est if e.keys is None)
        hs = next((e.handshake_duration for e in est if e.handshake_duration is not None), None)
        what = " ".join(x for x in (main.mode, main.version, main.cipher_suite) if x) or "DTLS"
        timing = f", handshake {hs * 1000:.0f} ms" if hs is not None else ""
        if all(e.before_capture for e in est):
            p.status = "before-capture"
            done = next((e for e in est if e.established_frame), None)
            p.summary = (f"{what} up, " + ("established before the capture started" if done is None else
                                          f"handshake began before the capture, completed at frame "
                                          f"{done.established_frame}") +
                         (f"; not decrypted: {undecrypted} records" if undecrypted else ""))
        elif undecrypted:
            p.status = "undecrypted"
            p.summary = f"{what} up{timing}; not decrypted: {undecrypted} records"
        else:
            p.status = "ok"
            p.summary = what + timing
    elif any(e.server_hello for e in flows):
        undecrypted = any(e.undecrypted_records for e in flows)
        p.status = "undecrypted" if undecrypted else "failed"
        p.summary = "DTLS handshake answered but not completed" if not undecrypted else "DTLS not decrypted"
    elif any(e.hello_verify_requests for e in flows):
        p.status = "failed"
        n = sum(e.client_hello_count for e in flows)
        v = sum(e.hello_verify_requests for e in flows)
        p.summary = f"{plural(n, 'ClientHello')}, {plural(v, 'HelloVerifyRequest')}, no ServerHello"
    else:
        n = sum(e.client_hello_count for e in flows)
        last = max((h.ts for e in flows for h in e.client_hellos), default=None)
        if capture_end is not None and last is not None and capture_end - last < INCOMPLETE_WAIT:
            # the capture stops right after the hello: whether it would have been answered is not in it
            p.status = "incomplete"
            p.summary = (f"{plural(n, 'ClientHello')}, the capture ends {capture_end - last:.1f} s after the last one: "
                         "the answer, if any, is not in the capture")
        else:
            p.status = "failed"
            p.summary = f"{plural(n, 'ClientHello')} unanswered"
    p.details = d
    return p
