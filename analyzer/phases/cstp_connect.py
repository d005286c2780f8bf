"""Phase 5, cstp-connect: `CONNECT /CSCOSSLC/tunnel`, the tunnel parameters the gateway granted (X-CSTP-*,
X-DTLS-*) and what the client asked for, and the CSTP channel of the first tunnel connection."""
from __future__ import annotations

from dataclasses import field

from dissectors.redact import redact_xml

from ..model import Phase
from .channel import ChannelSummary
from .grouping import Group, headers_view, missed_after, to_int, tunnel_seen_after
from .record import UNSET, HeaderList, Record, XMLText, record


@record
class TunnelParameters(Record):
    """What the gateway granted in its CONNECT answer (X-CSTP-*, X-DTLS-* headers)."""
    address: str | None
    netmask: str | None
    address_ip6: str | None
    dns: list[str]
    split_include: list[str]
    split_exclude: list[str]
    default_domain: str | None
    dpd: int | None
    keepalive: int | None
    mtu: int | None
    base_mtu: int | None
    rekey_time: int | None
    rekey_method: str | None
    idle_timeout: str | None
    session_timeout: str | None
    disconnected_timeout: str | None
    content_encoding: str | None
    banner: str | None
    dtls_port: int | None
    dtls_dpd: int | None
    dtls_keepalive: int | None
    dtls_mtu: int | None
    dtls_ciphersuite: str | None
    dtls_session_id: str | None
    dtls_app_id: str | None
    dtls_content_encoding: str | None
    #: X-CSTP-Split-DNS: the domains whose names the client is to look up at the tunnel's DNS servers (each header
    #: one domain, or several separated by commas)
    split_dns: list[str] = field(default_factory=list)
    #: X-CSTP-Split-Include-IP6 / X-CSTP-Split-Exclude-IP6: the IPv6 prefixes routed into (kept out of) the tunnel
    split_include_ip6: list[str] = field(default_factory=list)
    split_exclude_ip6: list[str] = field(default_factory=list)
    #: X-CSTP-Session-Timeout-Remaining: the seconds the session has left when this CONNECT was answered (a
    #: reconnect's answer counts what the gateway counts from: ocserv each connection's start); present when sent
    session_timeout_remaining: str | None = UNSET
    #: X-CSTP-Session-Timeout-Alert-Interval: how long before the session timeout the client warns its user
    session_timeout_alert: str | None = UNSET


@record
class RequestedParameters(Record):
    """What the client asked for in its CONNECT request."""
    mtu: int | None
    base_mtu: int | None
    address_type: str | None
    address: str | None
    dtls_ciphersuites: str | None
    dtls12_ciphersuites: str | None
    accept_encoding: str | None
    hostname: str | None


@record
class ConnectExchange(Record):
    """One CONNECT and its answer (the response keys only when answered; parameters only for a 2xx)."""
    time: float
    frame: int
    connection: str
    target: str
    request_headers: HeaderList
    cookie_matches_session: bool | None = None
    status: int = UNSET
    reason: str | None = UNSET
    response_time: float = UNSET
    response_frame: int = UNSET
    response_headers: HeaderList = UNSET
    x_reason: str | None = UNSET
    parameters: TunnelParameters = UNSET
    requested: RequestedParameters = UNSET
    post_auth_xml: XMLText = UNSET


@record
class TunnelEstablished(Record):
    time: float | None
    frame: int | None


@record
class CSTPConnectDetails(Record):
    """The CONNECTs; the parameters, channel and counters of the first one answered 2xx."""
    connects: list[ConnectExchange] = field(default_factory=list)
    parameters: TunnelParameters = UNSET
    requested: RequestedParameters = UNSET
    tunnel_established: TunnelEstablished = UNSET
    channel: ChannelSummary | None = UNSET
    tcp_retransmissions: dict[str, int] = UNSET
    tls_records: dict[str, int] = UNSET


@record
class CSTPUndecryptedDetails(Record):
    """No key: the TLS connection that carries (or may carry) the CONNECT and the tunnel, seen from outside."""
    connection: str
    encrypted_records: dict[str, int]
    encrypted_bytes: dict[str, int]
    note: str


def connect_details(phase: Phase) -> CSTPConnectDetails | None:
    """The decrypted CONNECT details of a cstp-connect phase, or None (absent, undecrypted)."""
    d = phase.details
    return d if isinstance(d, CSTPConnectDetails) else None


def answered(session, before: float | None = None) -> list[ConnectExchange]:
    """The session's CONNECTs the gateway answered 2xx with tunnel parameters (decrypted), in order — those answered
    by ``before`` when given (analyzer/rules/gateway_timeout.py, tunnel_silent.py)."""
    cd = connect_details(session.phase("cstp-connect"))
    return [x for x in (cd.connects if cd is not None else []) if x.status and 200 <= x.status < 300
            and x.parameters and x.response_time is not None and (before is None or x.response_time <= before)]


def granted(session) -> TunnelParameters | None:
    """What the gateway granted the session in its CONNECT answer (decrypted), or None."""
    cd = connect_details(session.phase("cstp-connect"))
    return cd.parameters or None if cd is not None else None


def tunnel_params(h) -> TunnelParameters:
    def ints(name):
        return to_int(h.get(name))

    p = TunnelParameters(
        address=h.get("X-CSTP-Address"), netmask=h.get("X-CSTP-Netmask"),
        address_ip6=h.get("X-CSTP-Address-IP6"), dns=list(h.get_all("X-CSTP-DNS")),
        split_include=list(h.get_all("X-CSTP-Split-Include")),
        split_exclude=list(h.get_all("X-CSTP-Split-Exclude")),
        default_domain=h.get("X-CSTP-Default-Domain"),
        dpd=ints("X-CSTP-DPD"), keepalive=ints("X-CSTP-Keepalive"), mtu=ints("X-CSTP-MTU"),
        base_mtu=ints("X-CSTP-Base-MTU"), rekey_time=ints("X-CSTP-Rekey-Time"),
        rekey_method=h.get("X-CSTP-Rekey-Method"), idle_timeout=h.get("X-CSTP-Idle-Timeout"),
        session_timeout=h.get("X-CSTP-Session-Timeout"),
        disconnected_timeout=h.get("X-CSTP-Disconnected-Timeout"),
        content_encoding=h.get("X-CSTP-Content-Encoding"), banner=h.get("X-CSTP-Banner"),
        dtls_port=ints("X-DTLS-Port"), dtls_dpd=ints("X-DTLS-DPD"), dtls_keepalive=ints("X-DTLS-Keepalive"),
        dtls_mtu=ints("X-DTLS-MTU"), dtls_ciphersuite=h.get("X-DTLS-CipherSuite") or h.get("X-DTLS12-CipherSuite"),
        dtls_session_id=h.get("X-DTLS-Session-ID"), dtls_app_id=h.get("X-DTLS-App-ID"),
        dtls_content_encoding=h.get("X-DTLS-Content-Encoding"),
        split_dns=[d.strip() for v in h.get_all("X-CSTP-Split-DNS") for d in v.split(",") if d.strip()],
        split_include_ip6=list(h.get_all("X-CSTP-Split-Include-IP6")),
        split_exclude_ip6=list(h.get_all("X-CSTP-Split-Exclude-IP6")),
    )
    for name, header in (("session_timeout_remaining", "X-CSTP-Session-Timeout-Remaining"),
                         ("session_timeout_alert", "X-CSTP-Session-Timeout-Alert-Interval")):
        if h.get(header) is not None:
            setattr(p, name, h.get(header))
    return p


def build(g: Group) -> Phase:
    p = Phase("cstp-connect")
    tunnels = [cn for cn in g.conns if cn.kind == "tunnel"]
    if not tunnels:
        if len(g.conns) and all(cn.kind == "undecrypted" for cn in g.conns):
            longest = max(g.conns, key=lambda cn: cn.c.encrypted_bytes["c2s"] + cn.c.encrypted_bytes["s2c"])
            c = longest.c
            p.status = "undecrypted"
            p.touch(c.first_ts, c.first_frame)
            p.touch(c.last_ts, c.last_frame)
            p.details = CSTPUndecryptedDetails(
                connection=f"tcp.stream {c.index}", encrypted_records=dict(c.encrypted_records),
                encrypted_bytes=dict(c.encrypted_bytes),
                note="the CONNECT and the CSTP data channel are inside TLS: supply the key log")
            p.summary = f"TLS not decrypted; {sum(c.encrypted_bytes.values())} encrypted bytes on tcp.stream {c.index}"
        else:
            p.status = "absent"
            p.summary = "no CONNECT"
            p.details = None
        return p
    connects = []
    primary = None
    for cn in tunnels:
        for ex in cn.connects:
            req, resp = ex.request, ex.response
            p.touch(req.ts, req.frame)
            entry = ConnectExchange(time=req.ts, frame=req.frame, connection=f"tcp.stream {cn.c.index}",
                                    target=req.target, request_headers=headers_view(req.headers))
            if resp is not None:
                p.touch(resp.ts, resp.frame)
                entry.status = resp.status
                entry.reason = resp.reason
                entry.response_time = resp.ts
                entry.response_frame = resp.frame
                entry.response_headers = headers_view(resp.headers)
                entry.x_reason = resp.headers.get("X-Reason")
                if 200 <= resp.status < 300:
                    entry.parameters = tunnel_params(resp.headers)
                    entry.requested = RequestedParameters(
                        mtu=to_int(req.headers.get("X-CSTP-MTU")), base_mtu=to_int(req.headers.get("X-CSTP-Base-MTU")),
                        address_type=req.headers.get("X-CSTP-Address-Type"), address=req.headers.get("X-CSTP-Address"),
                        dtls_ciphersuites=req.headers.get("X-DTLS-CipherSuite"),
                        dtls12_ciphersuites=req.headers.get("X-DTLS12-CipherSuite"),
                        accept_encoding=req.headers.get("X-CSTP-Accept-Encoding"),
                        hostname=req.headers.get("X-CSTP-Hostname"))
                    pax = resp.headers.get("X-CSTP-Post-Auth-XML")
                    if pax:
                        entry.post_auth_xml = XMLText(pax, redact_xml(pax, keep_declaration=False))
                    if primary is None:
                        primary = (cn, entry)
            connects.append(entry)
    d = CSTPConnectDetails(connects=connects)
    if primary is not None:
        cn, entry = primary
        c = cn.c
        d.parameters = entry.parameters
        d.requested = entry.requested
        d.tunnel_established = TunnelEstablished(time=c.tunnel_ts, frame=c.tunnel_frame)
        d.channel = ChannelSummary.from_stats(c.tunnel) if c.tunnel else None
        d.tcp_retransmissions = dict(c.retransmissions)
        d.tls_records = dict(c.app_records)
        if c.tunnel is not None:
            for k in ("c2s", "s2c"):
                if k in c.tunnel.last_data:
                    p.touch(c.tunnel.last_data[k][0], None)
            if c.tunnel.disconnect:
                p.touch(c.tunnel.disconnect["ts"], c.tunnel.disconnect["frame"])
        p.status = "ok"
        params = entry.parameters
        parts = [params.address or "no X-CSTP-Address"]
        for label, value in (("MTU", params.mtu), ("DPD", params.dpd), ("keepalive", params.keepalive)):
            parts.append(f"{label} {value}" if value is not None else f"no {label}")
        p.summary = (f"{entry.status} {entry.reason or 'CONNECTED'}: " + ", ".join(parts) +
                     (f"; {len(connects)} CONNECTs" if len(connects) > 1 else ""))
    else:
        last = connects[-1]
        status = None if last.status is UNSET else last.status
        gap = missed_after(g, last.time, "s2c") if status is None else None
        if gap is not None:
            # the capture misses the gateway's bytes after the CONNECT: its answer may be in them (a DTLS channel
            # that came up after it says it was accepted)
            up = tunnel_seen_after(g, last.time)
            p.status = "incomplete"
            p.summary = (f"CONNECT sent; its answer is not in the capture, which misses {gap['length']} bytes of the "
                         f"gateway's data of tcp.stream {gap['conn']} at frame {gap['frame']}"
                         + (f" — accepted: {up} after it" if up else ""))
        else:
            p.status = "failed"
            p.summary = (f"CONNECT answered {status} {last.reason or ''}".strip()
                         if status is not None else "CONNECT sent, no answer in the capture")
    p.details = d
    return p
