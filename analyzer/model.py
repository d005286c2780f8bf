"""The session model: what acflow knows about each VPN session once the capture is read.

This is the interface between reconstruction (analyzer/sessions.py; analyzer/phases/ builds the phases and
their typed details), the findings rules (analyzer/rules/) and the renderers (analyzer/report/). Everything here
is plain data that serialises to the public JSON schema (docs/json-schema.md); `to_json()` never includes a
secret unless the renderer was asked to show secrets (secrets are stored wrapped in `Secret`, which renderers
redact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dissectors.redact import REDACTED

#: Phase names: part of the public JSON contract (docs/json-schema.md). Do not rename.
PHASES = ("tls-handshake", "group-selection", "user-auth", "downloader", "cstp-connect", "dtls")

#: Phase statuses: part of the public JSON contract. "before-capture": the phase happened before the capture
#: started (a capture cut in the middle of a session); what followed is still analysed. "incomplete": the capture
#: ends while the phase is in progress (e.g. right after a DTLS ClientHello), so its outcome is not in it.
#: "not-captured": the phase happened but none of its traffic is in the capture — a session whose DTLS channel was
#: captured without its TLS connection (a capture filtered to UDP, or taken where only UDP passes).
STATUSES = ("ok", "failed", "absent", "undecrypted", "before-capture", "incomplete", "not-captured")

#: Session confidence (docs/json-schema.md): "confirmed" by decrypted AnyConnect exchanges or --gateway; "high" /
#: "medium" for sessions recognised without keys, from the evidence listed in `Session.evidence`.
CONFIDENCES = ("confirmed", "high", "medium")

SEVERITIES = ("error", "warning", "info")


class Secret(str):
    """A string that is a secret (password, cookie, token, master secret). Renderers redact it by default."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret(" + REDACTED + ")"


class Redactable:
    """A value with secrets inside (an XML document, a header list): `raw` and its `redacted` rendering."""

    __slots__ = ("raw", "redacted")

    def __init__(self, raw: Any, redacted: Any) -> None:
        self.raw = raw
        self.redacted = redacted

    def __repr__(self) -> str:
        return f"Redactable({self.redacted!r})"


#: the types `reveal` gives back as they are (exact types: a Secret is a str subclass); tested with ``type(v) in``
#: inside the containers' loops, a call per plain value being most of a walk's time
PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def reveal(value: Any, show_secrets: bool) -> Any:
    """Recursively turn Secrets into their value (show_secrets) or into REDACTED; the JSON-ready form. Typed
    records (analyzer/phases/record.py `Record`) give their own JSON form (`json_value`)."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:  # most values (a Secret is not a str)
        return value
    to_json = getattr(value, "json_value", None)
    if to_json is not None:
        return to_json(show_secrets)
    if isinstance(value, Redactable):
        return reveal(value.raw if show_secrets else value.redacted, show_secrets)
    if isinstance(value, Secret):
        return str.__str__(value) if show_secrets else REDACTED
    if isinstance(value, dict):
        return {k: v if type(v) in PLAIN_TYPES else reveal(v, show_secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in PLAIN_TYPES else reveal(v, show_secrets) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclass
class Phase:
    phase: str
    status: str = "absent"
    start: float | None = None
    end: float | None = None
    frames: list[int] = field(default_factory=list)
    #: the phase's typed details (analyzer/phases/: TLSHandshakeDetails, GroupSelectionDetails, UserAuthDetails,
    #: DownloaderDetails, CSTPConnectDetails or CSTPUndecryptedDetails, DTLSDetails); None when the phase has none
    #: to give (JSON: an empty object)
    details: Any = None
    summary: str = ""  # one line for the terminal timeline
    #: without keys: the status the keyless reading gives (analyzer/phases/inferred.py `PhaseInference`), with
    #: its confidence and basis; None when the phase was read (or there is nothing to infer). JSON: `inferred`,
    #: present only when set
    inferred: Any = None

    def touch(self, ts: float | None, frame: int | None) -> None:
        if ts is not None:
            self.start = ts if self.start is None else min(self.start, ts)
            self.end = ts if self.end is None else max(self.end, ts)
        if frame and len(self.frames) < 10000:
            self.frames.append(frame)

    def to_json(self, show_secrets: bool = False) -> dict:
        out = {"phase": self.phase, "status": self.status, "start": self.start, "end": self.end,
               "frames": sorted(set(self.frames)), "summary": self.summary,
               "details": {} if self.details is None else reveal(self.details, show_secrets)}
        if self.inferred is not None:
            out["inferred"] = reveal(self.inferred, show_secrets)
        return out


@dataclass
class Finding:
    id: str
    severity: str
    message: str
    remedy: str
    time: float | None = None
    frames: list[int] = field(default_factory=list)
    phase: str | None = None
    evidence: dict = field(default_factory=dict)
    #: read without keys from the keyless inference (analyzer/phases/inferred.py); JSON `inferred: true`,
    #: present only when set
    inferred: bool = False

    def to_json(self, show_secrets: bool = False) -> dict:
        out = {"id": self.id, "severity": self.severity, "time": self.time, "frames": list(self.frames),
               "phase": self.phase, "message": self.message, "remedy": self.remedy,
               "evidence": reveal(self.evidence, show_secrets)}
        if self.inferred:
            out["inferred"] = True
        return out


@dataclass
class Session:
    id: str
    client: str
    gateway: str
    start: float | None = None
    end: float | None = None
    phases: list[Phase] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tunnel: Any = None  # analyzer/phases/tunnel.py `Tunnel`: session-wide tunnel statistics
    #: TCP/UDP flows that belong to the session (analyzer/phases/tls_handshake.py `ConnectionSummary`,
    #: `DTLSConnectionSummary`)
    connections: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)  # why this is an AnyConnect session (analyzer/evidence.py)
    confidence: str = "confirmed"
    client_software: dict = field(default_factory=dict)  # {"name", "version", "evidence"}: from the wire only
    captures: list[str] = field(default_factory=list)  # paths of the capture files its flows were seen in
    verdict: Any = None  # analyzer/verdict.py `SessionVerdict`: the one-line verdict, set after the rules

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.phase == name:
                return p
        raise KeyError(name)

    def to_json(self, show_secrets: bool = False) -> dict:
        return {"id": self.id, "client": self.client, "gateway": self.gateway, "start": self.start,
                "end": self.end, "phases": [p.to_json(show_secrets) for p in self.phases],
                "findings": [f.to_json(show_secrets) for f in self.findings],
                "tunnel": {} if self.tunnel is None else reveal(self.tunnel, show_secrets),
                "connections": reveal(self.connections, show_secrets), "notes": list(self.notes),
                "evidence": reveal(self.evidence, show_secrets), "confidence": self.confidence,
                "client_software": dict(self.client_software),
                "captures": list(self.captures),
                "verdict": None if self.verdict is None else reveal(self.verdict, show_secrets)}


@dataclass
class CaptureInfo:
    path: str
    frames: int = 0
    first: float | None = None
    last: float | None = None
    errors: list[str] = field(default_factory=list)
    keys: dict = field(default_factory=dict)
    #: the pcapng interfaces the capture describes: {id, linktype, name, description} (a pcap file: none)
    interfaces: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "frames": self.frames, "first": self.first, "last": self.last,
                "errors": list(self.errors), "keys": dict(self.keys),
                "interfaces": [dict(i) for i in self.interfaces]}


@dataclass
class Analysis:
    captures: list[CaptureInfo] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # capture-wide findings (not tied to a session)
    other_traffic: dict = field(default_factory=dict)  # flows that are not VPN sessions (analyzer/evidence.py)
    #: the --gateway specs the sessions were chosen by, names resolved from the capture (analyzer/evidence.py
    #: GatewaySpec.resolved); not in the document itself (the filters say them)
    gateways: list = field(default_factory=list)
    #: the other traffic's failed connects, typed: [(server "address:port", FailedConnectSummary)] — the first 20,
    #: as the document's `other_traffic.failed_connects` lists them (analyzer/phases/session.py `reconstruct`)
    failed_connects: list = field(default_factory=list)
    #: analyzer/path.py `PathReport`: the comparison with a capture of the same traffic taken at another point
    #: (`acflow analyze --other-side`); None without one
    path: Any = None

    def to_json(self, version: str, show_secrets: bool = False, sessions: bool = True) -> dict:
        """``sessions=False``: ``"sessions": []`` (a writer that puts them in one at a time)."""
        doc = {"acflow": version, "schema": SCHEMA_VERSION,
               "captures": [c.to_json() for c in self.captures],
               "sessions": [s.to_json(show_secrets) for s in self.sessions] if sessions else [],
               "findings": [f.to_json(show_secrets) for f in self.findings],
               # (a captive portal's redirect URL is kept whole as a Secret: analyzer/captive_portal.py)
               "other_traffic": reveal(dict(self.other_traffic), show_secrets)}
        if self.path is not None:
            doc["path"] = self.path.to_json()
        return doc


#: Version of the JSON document layout (docs/json-schema.md); bumped on incompatible changes only.
SCHEMA_VERSION = 1
