"""The recorded session a client replay plays again, read through acflow's public JSON form.

`load_recording(capture, keylogs, session_id)` runs the same analysis as `acflow analyze`
(`analyzer.analyze.analyze_paths`) and reads the session from its JSON document (`to_document(...,
show_secrets=True)`, docs/json-schema.md) — no second parser — plus the decapsulated inner packets through the
analysis' inner-packet sink. Secrets (recorded credential values, cookies, DTLS master secrets) stay in memory
only: `Recording` never renders them, and the replay report never contains them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from dissectors.aggauth import parse_config_auth

# request headers of the recorded CONNECT that are not replayed as recorded (X-DTLS-Master-Secret and the DTLS
# cipher suite offers are replaced by the client: fresh secret, the suites it can complete)
CONNECT_DROPPED = {
    "host": "the gateway's own host",
    "cookie": "the new webvpn cookie",
    "content-length": "",
    "x-dtls-accept-encoding": "DTLS compression is not replayed (the DTLS channel carries plain DATA)",
    "x-anyconnect-strap-verify": "a signature over the recorded session's keys",
    "x-anyconnect-strap-pubkey": "the recorded client's STRAP key",
}


class RecordingError(Exception):
    """The capture holds no session that can be replayed (the message says why)."""


@dataclass
class InnerPacket:
    ts: float
    direction: str  # c2s / s2c
    channel: str  # cstp / dtls
    data: bytes


@dataclass
class AuthRound:
    target: str
    fields: list[str]  # the fields the client answered
    values: dict[str, str]  # the recorded values (secrets; never rendered)
    group_select: str | None
    status: int | None
    response_type: str | None
    auth_id: str | None
    message: str | None
    error: str | None
    form_fields: list[str]  # what the gateway's answer asked next


@dataclass
class Recording:
    session_id: str
    gateway: str
    client: str
    phases: dict[str, dict]  # phase name -> {"status", "summary"}
    sni: str | None
    tls_version: str | None
    tls_cipher: str | None
    cert_sha256: str | None
    init_posts: list[dict]  # target, group_select, aggregate_auth_version, client_version, device_id, headers, …
    group_list: list[str]
    group_selected: str | None
    rounds: list[AuthRound]
    auth_result: str | None
    connect_headers: list[tuple[str, str]]
    connect_status: int | None
    connect_params: dict
    connect_time: float | None  # when the recorded CONNECT was answered (the inner packets' time origin)
    connect_new_connection: bool  # the recorded CONNECT went on another TLS connection than the first one
    dpd_keepalive: dict  # recorded CSTP/DTLS DPD and keepalive counts
    downloader_gets: int
    dtls: dict  # mode, version, cipher_suite, status
    inner: list[InnerPacket] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)  # the session's findings: id, severity, phase
    tls_client_ciphers: list[str] = field(default_factory=list)  # the recorded ClientHello's suites (IANA)
    downloader: list[dict] = field(default_factory=list)  # the recorded GETs: target, status, size, sha1, connection

    @property
    def user_agent(self) -> str:
        for name, value in self.connect_headers:
            if name.lower() == "user-agent":
                return value
        for post in self.init_posts:
            for name, value in post.get("headers", []):
                if name.lower() == "user-agent":
                    return value
        return "Open AnyConnect VPN Agent"

    def client_packets(self) -> list[InnerPacket]:
        """The recorded client→gateway inner packets, IPv4 only, in order."""
        return [p for p in self.inner if p.direction == "c2s" and p.data[:1] and p.data[0] >> 4 == 4]

    def recorded_value(self, name: str) -> str | None:
        """The value the recorded client typed into the field ``name`` (a secret: never printed)."""
        for r in self.rounds:
            if name in r.values:
                return r.values[name]
        return None


def _phase(session: dict, name: str) -> dict:
    for ph in session.get("phases", []):
        if ph.get("phase") == name:
            return ph
    return {"phase": name, "status": "absent", "summary": "", "details": {}}


def _values_of(xml: str | None) -> dict[str, str]:
    if not xml:
        return {}
    doc = parse_config_auth(xml)
    auth = getattr(doc, "auth", None)
    if auth is None:
        return {}
    return {k: v for k, v in auth.values}


def from_document(doc: dict, session_id: str | None = None) -> Recording:
    """The `Recording` of session ``session_id`` (default: the only session, else the first one that reached a
    CSTP CONNECT) of an `acflow analyze` JSON document made with secrets shown."""
    sessions = doc.get("sessions", [])
    if not sessions:
        raise RecordingError("the capture holds no VPN session (see `acflow analyze`)")
    if session_id is not None:
        chosen = [s for s in sessions if s.get("id") == session_id]
        if not chosen:
            raise RecordingError(f"no session {session_id!r}; the capture has "
                                 + ", ".join(s.get("id", "?") for s in sessions))
        s = chosen[0]
    else:
        with_connect = [s for s in sessions if _phase(s, "cstp-connect").get("status") == "ok"]
        s = (with_connect or sessions)[0]
    tls = _phase(s, "tls-handshake")
    gs = _phase(s, "group-selection")
    ua = _phase(s, "user-auth")
    cc = _phase(s, "cstp-connect")
    dl = _phase(s, "downloader")
    dt = _phase(s, "dtls")
    td = tls.get("details", {})
    gd = gs.get("details", {})
    ud = ua.get("details", {})
    cd = cc.get("details", {})
    if not gd.get("posts") and not ud.get("rounds") and not cd.get("connects"):
        raise RecordingError(f"session {s.get('id')}: nothing of its HTTP exchange was decrypted (keys missing?): "
                             "there is nothing to replay")
    rounds = []
    for r in ud.get("rounds", []):
        rounds.append(AuthRound(
            target=r.get("target") or "/", fields=list(r.get("fields") or []), values=_values_of(r.get("xml")),
            group_select=r.get("group_select"), status=r.get("status"), response_type=r.get("response_type"),
            auth_id=r.get("auth_id"), message=r.get("message"), error=r.get("error"),
            form_fields=list(r.get("form_fields") or [])))
    connects = cd.get("connects", [])
    ok_connects = [c for c in connects if c.get("status") == 200] or connects
    conn = ok_connects[0] if ok_connects else {}
    certs = td.get("certificates") or []
    sh = td.get("server_hello") or {}
    ch = td.get("client_hello") or {}
    group_list = [(g.get("value") or g.get("label")) if isinstance(g, dict) else str(g)
                  for g in gd.get("group_list", [])]
    tunnel = s.get("tunnel", {})
    channel = cd.get("channel", {})
    dpd_ka = {
        "cstp_dpd_requests": (channel.get("dpd") or {}).get("requests", {}),
        "cstp_keepalives": channel.get("keepalives", {}),
        "end": (tunnel.get("end") or {}).get("type"),
    }
    rec = Recording(
        session_id=s.get("id", "?"), gateway=s.get("gateway", "?"), client=s.get("client", "?"),
        phases={ph.get("phase"): {"status": ph.get("status"), "summary": ph.get("summary")}
                for ph in s.get("phases", [])},
        sni=ch.get("sni"), tls_version=sh.get("version"), tls_cipher=sh.get("cipher_suite"),
        cert_sha256=certs[0].get("sha256") if certs else None,
        init_posts=list(gd.get("posts", [])), group_list=group_list, group_selected=gd.get("group_selected"),
        rounds=rounds, auth_result=ud.get("result"),
        connect_headers=[(h[0], h[1]) for h in conn.get("request_headers", [])],
        connect_status=conn.get("status"), connect_params=dict(conn.get("parameters") or {}),
        connect_time=conn.get("response_time"),
        connect_new_connection=bool(conn) and conn.get("connection") != td.get("connection"), dpd_keepalive=dpd_ka,
        downloader_gets=len((dl.get("details") or {}).get("gets", [])),
        dtls={"status": dt.get("status"), "mode": (dt.get("details") or {}).get("mode"),
              "version": (dt.get("details") or {}).get("version"),
              "cipher_suite": (dt.get("details") or {}).get("cipher_suite"),
              "established_time": next((f.get("established_time") for f in (dt.get("details") or {}).get(
                  "flows", []) if f.get("established")), None)},
    )
    rec.tls_client_ciphers = [c for c in ch.get("cipher_suites") or [] if isinstance(c, str)]
    rec.downloader = [{"target": g.get("target"), "status": g.get("status"), "size": g.get("size"),
                       "sha1": g.get("sha1"), "connection": g.get("connection")}
                      for g in (dl.get("details") or {}).get("gets", []) if g.get("target")]
    rec.findings = [{"id": f.get("id"), "severity": f.get("severity"), "phase": f.get("phase")}
                    for f in s.get("findings", [])]
    return rec


def load_recording(capture: Path, keylogs, session_id: str | None = None) -> Recording:
    """Analyse ``capture`` with ``keylogs`` and return the session to replay. Raises
    `analyzer.analyze.InputError` (unreadable input) or `RecordingError` (nothing to replay)."""
    from analyzer import __version__  # noqa: PLC0415
    from analyzer.analyze import analyze_paths, load_keys  # noqa: PLC0415
    from analyzer.report.json_report import to_document  # noqa: PLC0415

    keys, info = load_keys(list(keylogs), [])
    packets: list[InnerPacket] = []

    def sink(channel, direction, ts, frame, packet):
        packets.append(InnerPacket(ts, direction, channel, bytes(packet)))

    analysis = analyze_paths([Path(capture)], keys, key_info=info, inner_sink=sink)
    doc = to_document(analysis, version=__version__, show_secrets=True)
    rec = from_document(doc, session_id)
    # the inner packets of this session: its time span, and (client→gateway) its tunnel address
    sess = next(s for s in doc["sessions"] if s.get("id") == rec.session_id)
    start, end = sess.get("start") or 0.0, sess.get("end") or float("inf")
    addr = rec.connect_params.get("address")
    for p in packets:
        if not (start <= p.ts <= end + 1.0):
            continue
        if addr and p.data[:1] and p.data[0] >> 4 == 4 and len(p.data) >= 20:
            src, dst = str(ipaddress.IPv4Address(p.data[12:16])), str(ipaddress.IPv4Address(p.data[16:20]))
            if (p.direction == "c2s" and src != addr) or (p.direction == "s2c" and dst != addr):
                continue
        rec.inner.append(p)
    return rec
