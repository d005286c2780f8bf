"""Phase 1, tls-handshake: the first TLS connection's handshake, the gateway's certificate chain and verdicts,
client certificates on every connection of the session; also the per-connection summaries (`ConnectionSummary`)
that `Session.connections` lists."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from dissectors.tls.names import cipher_suite_name, version_name

from .. import certs
from ..evidence import fmt_endpoint
from ..model import Phase
from ..tcptracker import TCPTracker, side_record
from .grouping import Group, client_closed_in_handshake, server_stalled_in_handshake
from .record import UNSET, Record, record


@record
class ClientHelloInfo(Record):
    frame: int
    time: float
    sni: str | None
    alpn: list[str]
    max_version: str | None
    cipher_suites: list[str]
    session_id: str  # hex
    session_ticket: bool
    extended_master_secret: bool


@record
class ServerHelloInfo(Record):
    frame: int
    time: float
    version: str | None
    cipher_suite: str | None
    alpn: str | None
    session_id: str  # hex
    resumed: bool
    extended_master_secret: bool


@record
class TLSAlert(Record):
    direction: str
    level: int | None
    name: str | None
    encrypted: bool
    time: float
    frame: int


@record
class CertificateRequestInfo(Record):
    frame: int
    time: float
    ca_names: list[str]


@record
class ClientCertificateInfo(Record):
    frame: int
    count: int
    certificates: list[dict[str, Any]]  # certs.describe()


@record
class ClientCertificateUse(Record):
    """What one TLS connection shows of client-certificate authentication: the request and the client's answer."""
    connection: str
    requested: bool
    request_frame: int | None
    request_time: float | None
    ca_names: list[str]
    certificate_message: bool
    certificate_frame: int | None
    certificates_sent: int | None
    chain: list[dict[str, Any]]  # certs.describe()
    certificate_verify_frame: int | None
    encrypted_handshake: bool


CONNECTION_DOC = {"description": "tcp.stream N / udp.stream N, numbered per capture file as tshark -r FILE "
                                 "numbers them"}
CAPTURE_DOC = {"description": "path of the capture file the flow was first seen in (its stream number is of that file)"}


SILENCES_DOC = {"description": "the flow's pauses of 10 s or more without a packet either way (the 8 longest, in time "
                                "order): {from, to, seconds, frames: [the packet before, the packet after]}; present "
                                "only when it had one"}


CLIENT_SILENCES_DOC = {"description": "the same of the client's own packets: its pauses of 10 s or more between two "
                                       "packets it sent (the gateway may have sent meanwhile); present only when it "
                                       "had one"}


CLIENT_PACKETS_DOC = {"description": "the client's first and last packet of the flow: {first, first_frame, last, "
                                      "last_frame}; present only when it sent one"}


GATEWAY_PACKETS_DOC = {"description": "the same of the gateway's packets (its TCP retransmissions and bare "
                                       "acknowledgements included, which `end` may not count); present only when it "
                                       "sent one"}


def _pauses(q) -> list[dict]:
    return [{"from": a, "to": b, "seconds": round(b - a, 3), "frames": [fa, fb]} for a, b, fa, fb in sorted(q)]


def silences(f) -> dict:
    """``silences=`` and ``client_silences=`` of a flow summary: the tracker's ``quiet`` list and its client
    direction's (dissectors.flows.keep_pause) in time order."""
    out = {}
    q = getattr(f, "quiet", None)
    if q:
        out["silences"] = _pauses(q)
    side = client_side(f)
    if side is not None and side[1]:
        out["client_packets"] = {"first": side[0], "first_frame": side[1], "last": side[2], "last_frame": side[3]}
        if side[4]:
            out["client_silences"] = _pauses(side[4])
    side = client_side(f, "s2c")
    if side is not None and side[1]:
        out["gateway_packets"] = {"first": side[0], "first_frame": side[1], "last": side[2], "last_frame": side[3]}
    return out


def client_side(f, direction: str = "c2s") -> tuple | None:
    """(first ts, first frame, last ts, last frame, pauses) of the client's packets of flow tracker ``f`` (with
    ``direction`` "s2c": the gateway's; analyzer/tcptracker.py side_record), or None when it does not know them."""
    sides = getattr(f, "sides", None)
    if not sides:
        return None
    # (a DTLS flow's first sender may be the gateway: its directions are the session's through direction_map)
    mine = next((k for k, v in (getattr(f, "direction_map", None) or {"c2s": "c2s"}).items() if v == direction),
                direction)
    return side_record(sides[0 if mine == "c2s" else 1])


@record
class FlowSummary(Record):
    """What `Session.connections` says of every flow of the session, TCP or UDP."""
    connection: str = field(metadata=CONNECTION_DOC)  # "tcp.stream N" / "udp.stream N"
    capture: str | None = field(metadata=CAPTURE_DOC)
    client: str
    start: float | None
    end: float | None
    first_frame: int | None
    last_frame: int | None


@dataclass
class ConnectionSummary(FlowSummary):
    """One TCP connection of the session (`Session.connections`, `TLSHandshakeDetails.connections`)."""
    version: str | None
    cipher_suite: str | None
    decrypted: bool
    requests: list[str]
    retransmissions: dict[str, int]
    segments: dict[str, int]
    retransmission_frames: list[int]
    gaps: list[dict[str, Any]]
    closed: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    alerts: list[TLSAlert]
    decryption: dict[str, Any]
    first_retransmission: float | None = field(
        default=None, metadata={"description": "time of the first retransmitted TCP segment (null: none)"})
    truncated_frames: int = field(default=UNSET, metadata={
        "description": "frames of the connection the capture cut short (its snaplen); present only then"})
    snaplen: int = field(default=UNSET, metadata={
        "description": "the most bytes captured of one such frame; present only with truncated_frames"})
    first_truncated_frame: int = field(default=UNSET, metadata={
        "description": "the first such frame; present only with truncated_frames"})
    handshake_ttl: dict[str, int] = field(default=UNSET, metadata={
        "description": "the IP TTL (IPv6: hop limit) the client's SYN (c2s) and the server's SYN-ACK (s2c) arrived "
                       "with at the capture point; present only when the handshake was captured. A reset's is in "
                       "`closed[].ttl`"})
    silences: list[dict[str, Any]] = field(default=UNSET, metadata=SILENCES_DOC)
    client_silences: list[dict[str, Any]] = field(default=UNSET, metadata=CLIENT_SILENCES_DOC)
    client_packets: dict[str, Any] = field(default=UNSET, metadata=CLIENT_PACKETS_DOC)
    gateway_packets: dict[str, Any] = field(default=UNSET, metadata=GATEWAY_PACKETS_DOC)
    after_reset: dict[str, int] = field(default=UNSET, metadata={
        "description": "segments with data a side (c2s, s2c) sent after its own reset: the reset was not its own; "
                       "present only then"})
    proxy: dict[str, Any] = field(default=UNSET, metadata={
        "description": "the connection runs through an HTTP proxy (the server is the proxy): {frame, time, request "
                       "(the CONNECT line), target (host:port asked for), response (the proxy's status line), status, "
                       "response_frame, response_time, refused: [{status, response, frame, time}] the answers before "
                       "(407: credentials asked)}; present only then"})


@dataclass
class FailedConnectSummary(FlowSummary):
    """A TCP connection of the session that never carried data (analyzer/attempts.py), in `Session.connections`:
    the client's SYNs unanswered, refused by a reset, or rejected by an ICMP error."""
    failed_connect: bool = field(metadata={"description": "always true: a TCP connection without data (the other "
                                                          "entries have no such key)"})
    answer: str = field(metadata={"description": "none (no answer to the SYNs), reset (the server side reset the "
                                                 "connection), icmp (an ICMP destination unreachable quoting it), "
                                                 "unacknowledged (the server's SYN-ACK never acknowledged while the "
                                                 "client sent its SYN again: seen on the gateway's side)"})
    syn_frames: list[int] = field(metadata={"description": "the client's SYNs (among the connection's first 32 SYN "
                                                            "and SYN-ACK segments)"})
    syn_times: list[float] = field(metadata={"description": "their times (capture epoch seconds)"})
    answer_frame: int | None = field(metadata={"description": "the reset, the ICMP error or the first SYN-ACK (null: "
                                                             "no answer)"})
    answer_time: float | None
    accepted: bool = field(metadata={"description": "the server answered SYN-ACK before it reset the connection"})
    icmp: dict[str, Any] = field(default=UNSET, metadata={
        "description": "the ICMP error: {from (who sent it), code, text (the code in words), frame, time}; present "
                       "only with answer icmp"})
    answer_ttl: int = field(default=UNSET, metadata={
        "description": "the reset's IP TTL (IPv6: hop limit) as captured; present only with answer reset"})


@dataclass
class DTLSConnectionSummary(FlowSummary):
    """One UDP (DTLS) flow of the session in `Session.connections`."""
    dtls: bool = True
    silences: list[dict[str, Any]] = field(default=UNSET, metadata=SILENCES_DOC)
    client_silences: list[dict[str, Any]] = field(default=UNSET, metadata=CLIENT_SILENCES_DOC)
    client_packets: dict[str, Any] = field(default=UNSET, metadata=CLIENT_PACKETS_DOC)
    gateway_packets: dict[str, Any] = field(default=UNSET, metadata=GATEWAY_PACKETS_DOC)
    truncated_frames: int = field(default=UNSET, metadata={
        "description": "datagrams of the flow the capture cut short (its snaplen); present only then"})
    snaplen: int = field(default=UNSET, metadata={
        "description": "the most bytes captured of one such frame; present only with truncated_frames"})
    first_truncated_frame: int = field(default=UNSET, metadata={
        "description": "the first such frame; present only with truncated_frames"})


@record
class TLSHandshakeDetails(Record):
    connection: str
    client: str
    gateway: str
    client_hello: ClientHelloInfo = UNSET
    server_hello: ServerHelloInfo = UNSET
    certificates: list[dict[str, Any]] = field(default_factory=list)  # certs.describe() of the chain sent
    certificate_host: str | None = None
    certificate_verdicts: list[dict[str, Any]] = field(default_factory=list)  # certs.verdicts(): {verdict, message}
    chain_includes_issuer: bool | None = None
    certificates_note: str = UNSET
    #: the client closed the connection (FIN or reset, no alert) before finishing the handshake, after the server's
    #: certificate: {frame, time, reason, after_certificate}; a client that refuses the certificate does so
    client_closed: dict[str, Any] = UNSET
    #: the server's handshake stopped arriving (analyzer/phases/grouping.py `server_stalled_in_handshake`):
    #: {since_frame, since_time, waited, closed_frame, server_hello}
    server_stalled: dict[str, Any] = UNSET
    certificate_request: CertificateRequestInfo = UNSET
    client_certificate: ClientCertificateInfo = UNSET
    client_certificates: list[ClientCertificateUse] = field(default_factory=list)
    alerts: list[TLSAlert] = field(default_factory=list)
    decryption: dict[str, Any] = field(default_factory=dict)
    connections: list[ConnectionSummary] = field(default_factory=list)


def build(g: Group) -> Phase:
    p = Phase("tls-handshake")
    if not g.conns:
        p.details = None
        return p
    c = g.conns[0].c
    ch, sh = c.client_hello, c.server_hello
    d = TLSHandshakeDetails(connection=f"tcp.stream {c.index}", client=fmt_endpoint(*c.client),
                            gateway=fmt_endpoint(*c.server))
    p.touch(c.first_ts, c.first_frame)
    for f in c.handshake_frames[:32]:
        p.frames.append(f)
    if ch is not None:
        d.client_hello = ClientHelloInfo(
            frame=ch.frame, time=ch.ts, sni=ch.sni, alpn=list(ch.alpn), max_version=version_name(ch.max_version),
            cipher_suites=list(ch.cipher_suite_names), session_id=ch.session_id.hex(),
            session_ticket=ch.session_ticket is not None and len(ch.session_ticket) > 0,
            extended_master_secret=ch.extended_master_secret)
        p.touch(ch.ts, ch.frame)
    if sh is not None:
        resumed = bool(ch is not None and ch.session_id and sh.session_id == ch.session_id and sh.version < 0x0304) \
            or sh.selected_psk is not None
        d.server_hello = ServerHelloInfo(frame=sh.frame, time=sh.ts, version=version_name(sh.version),
                                         cipher_suite=cipher_suite_name(sh.cipher_suite), alpn=sh.alpn,
                                         session_id=sh.session_id.hex(), resumed=resumed,
                                         extended_master_secret=sh.extended_master_secret)
        p.touch(sh.ts, sh.frame)
    chain: list[dict] = []
    if c.certificates is not None:
        # "frame": where the gateway's Certificate message is (a finding can point at it)
        chain = [certs.describe(der) | {"frame": c.certificates.frame} for der in c.certificates.certificates[:10]]
        p.touch(c.certificates.ts, c.certificates.frame)
    host = ch.sni if ch is not None and ch.sni else None
    if host is None:
        for cn in g.conns:
            for _, rq, _ in cn.posts:
                if rq is not None and rq.group_access:
                    host = urlparse(rq.group_access).hostname
                    break
            if host:
                break
    d.certificates = chain
    d.certificate_host = host
    d.certificate_verdicts = certs.verdicts(chain, c.first_ts, host)
    d.chain_includes_issuer = (len(chain) > 1 and chain[0].get("issuer") in {x.get("subject") for x in chain[1:]}) \
        if chain else None
    if c.certificates is None and sh is not None and sh.version >= 0x0304 and not c.decrypted:
        d.certificates_note = "TLS 1.3 encrypts the certificate: supply the key log to see it"
    if c.certificate_request is not None:
        cr = c.certificate_request
        d.certificate_request = CertificateRequestInfo(frame=cr.frame, time=cr.ts,
                                                       ca_names=[_dn(n) for n in cr.ca_names[:50]])
    if c.client_certificate is not None:
        d.client_certificate = ClientCertificateInfo(
            frame=c.client_certificate.frame, count=len(c.client_certificate.certificates),
            certificates=[certs.describe(x) for x in c.client_certificate.certificates[:3]])
    # client certificates: requested and sent on every TLS connection of the session (auth, tunnel, downloader)
    d.client_certificates = [x for x in (client_cert(cn.c) for cn in g.conns) if x is not None]
    d.alerts = _alerts(c.alerts)
    d.decryption = {k: v for k, v in c.decryption.items()}
    d.connections = [conn_summary(cn.c) for cn in g.conns]
    stalled = server_stalled_in_handshake(c)
    if sh is None:
        p.status = "failed"
        p.summary = "no ServerHello" + (f"; alert {c.alerts[0].name}" if c.alerts else "")
    elif c.handshake_done_ts is None and any(a.level == 2 for a in c.alerts):
        p.status = "failed"
        p.summary = f"handshake failed: alert {next(a.name for a in c.alerts if a.level == 2)}"
    elif (gone := client_closed_in_handshake(c)) is not None:
        p.status = "failed"
        d.client_closed = gone
        p.touch(gone["time"], gone["frame"])
        p.summary = (f"not completed: the client closed the connection ({gone['reason']}, frame {gone['frame']}) "
                     + ("right after the server's certificate, without an alert: it refused the certificate"
                        if gone["after_certificate"] else
                        "after the server's handshake messages, without sending its own (TLS 1.3 encrypts the "
                        "certificate: with the key log acflow reads whether the client refused it)"
                        if gone["encrypted_flight"] else "before finishing the handshake"))
    else:
        p.status = "ok"
        if c.handshake_done_ts:
            p.touch(c.handshake_done_ts, None)
        p.summary = (f"{version_name(sh.version)} {cipher_suite_name(sh.cipher_suite)}"
                     + (f", SNI {ch.sni}" if ch and ch.sni else ""))
    if stalled is not None:  # the server's handshake stopped arriving (a path MTU black hole, a hung server)
        d.server_stalled = stalled
        p.status = "failed"
        p.touch(stalled["since_time"], stalled["since_frame"])
        p.summary = ((f"not completed: the gateway's handshake after its ServerHello (frame {stalled['since_frame']}) "
                      f"was sent {stalled['retransmitted'] + 1} times, never acknowledged, for "
                      f"{stalled['waited']:.1f} s" if stalled["retransmitted"] else
                      ("not completed: the gateway's handshake stopped after its ServerHello" if stalled["server_hello"]
                       else "no ServerHello: nothing came back after the ClientHello")
                      + f" (frame {stalled['since_frame']}); {stalled['waited']:.1f} s without more")
                     + (f", then the client closed the connection (frame {stalled['closed_frame']})"
                        if stalled["closed_frame"] else " until the capture ended"))
    p.details = d
    return p


def _alerts(alerts) -> list[TLSAlert]:
    return [TLSAlert(direction=a.direction, level=a.level, name=a.name, encrypted=a.encrypted, time=a.ts,
                     frame=a.frame) for a in alerts]


def client_cert(c: TCPTracker) -> ClientCertificateUse | None:
    """What one connection shows of client-certificate authentication: the request and the client's answer."""
    cr, cc = c.certificate_request, c.client_certificate
    if cr is None and cc is None:
        return None
    sent = cc.certificates if cc is not None else None
    return ClientCertificateUse(
        connection=f"tcp.stream {c.index}", requested=cr is not None,
        request_frame=cr.frame if cr is not None else None, request_time=cr.ts if cr is not None else None,
        ca_names=[_dn(n) for n in cr.ca_names[:50]] if cr is not None else [],
        certificate_message=cc is not None, certificate_frame=cc.frame if cc is not None else None,
        certificates_sent=len(sent) if sent is not None else None,
        chain=[certs.describe(x) for x in sent[:4]] if sent else [],
        certificate_verify_frame=(c.certificate_verify or {}).get("frame"),
        encrypted_handshake=c.certificate_request is None and c.client_certificate is None)


def _dn(der: bytes) -> str:
    return certs.dn_from_der(bytes(der))


def failed_connect_summary(f) -> FailedConnectSummary:
    """`FailedConnectSummary` of an analyzer/attempts.py FailedConnect."""
    return FailedConnectSummary(
        connection=f"tcp.stream {f.index}", capture=f.capture, client=fmt_endpoint(*f.client), start=f.first_ts,
        end=f.end, first_frame=f.first_frame, last_frame=f.end_frame, failed_connect=True, answer=f.answer,
        syn_frames=[fr for _t, fr in f.syns], syn_times=[t for t, _fr in f.syns], answer_frame=f.answer_frame,
        answer_time=f.answer_ts, accepted=f.accepted, **({"icmp": dict(f.icmp)} if f.icmp else {}),
        **({"answer_ttl": f.answer_ttl} if f.answer_ttl is not None else {}))


def conn_summary(c: TCPTracker) -> ConnectionSummary:
    sh = c.server_hello
    return ConnectionSummary(
        connection=f"tcp.stream {c.index}", capture=c.capture, client=fmt_endpoint(*c.client),
        start=c.first_ts, end=c.last_ts, first_frame=c.first_frame, last_frame=c.last_frame,
        version=version_name(sh.version) if sh else None,
        cipher_suite=cipher_suite_name(sh.cipher_suite) if sh else None,
        decrypted=c.decrypted, requests=[f"{ex.request.method} {ex.request.target}" for ex in c.exchanges][:20],
        retransmissions=dict(c.retransmissions), segments=dict(c.segments),
        retransmission_frames=c.retransmission_frames[:20], gaps=c.gaps[:10],
        closed=c.closed[:2], problems=c.problems[:10], alerts=_alerts(c.alerts[:10]),
        decryption={k: v for k, v in c.decryption.items()}, first_retransmission=c.first_retransmission_ts,
        **_snapped(c), **({"proxy": dict(c.proxy)} if c.proxy else {}),
        **({"handshake_ttl": dict(c.handshake_ttl)} if c.handshake_ttl else {}), **silences(c),
        **({"after_reset": dict(c.after_reset)} if c.after_reset else {}))


def _snapped(f) -> dict:
    return {"truncated_frames": f.snapped, "snaplen": f.snaplen, "first_truncated_frame": f.snapped_frame} \
        if f.snapped else {}


def dtls_conn_summary(f) -> DTLSConnectionSummary:
    return DTLSConnectionSummary(connection=f"udp.stream {f.index}", capture=f.capture, client=fmt_endpoint(*f.client),
                                 start=f.first_ts, end=f.last_ts, first_frame=f.first_frame,
                                 last_frame=f.last_frame, **_snapped(f), **silences(f))
