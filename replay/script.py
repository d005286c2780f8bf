"""The scripted gateway's script: what to expect from the client and what to answer, as plain data.

A script is a JSON-compatible dict (or a `.json` file holding one); `Script.from_dict()` validates it and
`Script.to_dict()` gives it back, so a recorded exchange can be edited by hand and replayed. Shape::

    {
      "name": "dtls-mtu-differs",
      "description": "what the script makes the gateway do",
      "vars": {"tunnel_ip": "198.19.0.50"},          # ${name} placeholders usable in every string below
      "steps": [                                      # matched in order (see `Step`)
        {"id": "init",
         "expect": {"method": "POST", "path": "/", "body_contains": ["type=\\"init\\""]},
         "respond": {"status": 200, "reason": "OK",
                     "headers": [["Content-Type", "text/xml"]], "body": "<?xml ...?>..."},
         "note": "why this answer"},
        {"id": "connect", "expect": {"method": "CONNECT", "path": "/CSCOSSLC/tunnel", "cookie": "${cookie}"},
         "respond": {"status": 200, "reason": "CONNECTED", "headers": [["X-CSTP-MTU", "1399"]]}}
      ],
      "unmatched": {"status": 404, "reason": "Not Found"},   # answer to a request no step matches
      "unmatched_nearest": false,  # true: such a request with the method and path of a step gets that step's
                                   # answer (the next one expected, else the closest before); 404 if none
      "cstp": {"answer_dpd": true, "icmp_echo": true,         # behaviour after a 2xx CONNECT (see `CstpBehaviour`)
               "actions": [{"at": 0.6, "send": "data", "payload_hex": "4500…",   # an inner packet to the
                            "channel": "dtls"},                                  # client (DTLS when up)
                           {"at": 2.0, "send": "dpd-req"},
                           {"at": 3.0, "send": "close", "tunnels": [1]}]},   # only on the first tunnel
      "udp_sinks": [4443],                                    # UDP ports bound and read silently (DTLS black hole)
      "udp_responders": [{"port": 4443, "reply_from": 4444,   # see `UdpResponder`
                          "reply": "hello-verify-request"}],
      "tls": {"alert": {"sessions": [2], "description": "handshake_failure"},
              "min_version": null, "max_version": null},
      "dtls": {"mode": "psk-negotiate", "port": 443,          # a DTLS server (see `DtlsBehaviour`)
               "hello_verify": false}
    }

Placeholders: `${name}` is replaced by `vars[name]` or by a value the gateway knows at run time:
`cookie` (the webvpn cookie it issues), `server_cert_sha1` (SHA-1 of the DER certificate it presents, upper-case
hex), `dtls_session_id` (64 hex digits), `session_id` (decimal), `sso_token` (the SAML single sign-on token it
issues, 32 letters and digits) and `sso_blob` (that token sealed to the key of the last request's
X-AnyConnect-STRAP-DH-Pubkey header, as an external browser carries it to the client: replay/sso.py; base64,
percent-encoded for a URL). A placeholder
that is neither is an error when the script is loaded.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RUNTIME_VARS = ("cookie", "server_cert_sha1", "dtls_session_id", "session_id", "sso_token", "sso_blob")

# CSTP packet types (the 8-byte "STF\x01" header's type byte)
CSTP_TYPES = {"data": 0x00, "dpd-req": 0x03, "dpd-resp": 0x04, "disconnect": 0x05, "keepalive": 0x07,
              "compressed": 0x08, "terminate": 0x09}
CSTP_NAMES = {v: k for k, v in CSTP_TYPES.items()}
CSTP_ACTIONS = (*CSTP_TYPES, "close")

TLS_ALERTS = {  # RFC 8446 §6 / RFC 5246 §7.2 alert descriptions the gateway may abort a handshake with
    "handshake_failure": 40, "bad_certificate": 42, "certificate_unknown": 46, "illegal_parameter": 47,
    "unknown_ca": 48, "access_denied": 49, "decode_error": 50, "protocol_version": 70,
    "insufficient_security": 71, "internal_error": 80, "user_canceled": 90, "unrecognized_name": 112,
}


class ScriptError(ValueError):
    """The script is malformed; the message names the offending item."""


def _pairs(value, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.items())
    out = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise ScriptError(f"{where}: headers must be [name, value] pairs, got {item!r}")
        out.append((str(item[0]), str(item[1])))
    return out


@dataclass
class Match:
    """What a request must look like for a step to answer it. Unset fields match anything."""

    method: str | None = None
    path: str | None = None  # exact request target
    path_regex: str | None = None  # or a regular expression (re.fullmatch) on the target
    body_contains: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # header name (any case) -> substring of its value
    cookie: str | None = None  # the webvpn cookie the request must carry (templated, e.g. "${cookie}")

    @classmethod
    def from_dict(cls, d: dict, where: str) -> Match:
        unknown = set(d) - {"method", "path", "path_regex", "body_contains", "headers", "cookie"}
        if unknown:
            raise ScriptError(f"{where}: unknown expect keys {sorted(unknown)}")
        m = cls(method=d.get("method"), path=d.get("path"), path_regex=d.get("path_regex"),
                body_contains=list(d.get("body_contains") or []), headers=dict(d.get("headers") or {}),
                cookie=d.get("cookie"))
        if m.path_regex:
            try:
                re.compile(m.path_regex)
            except re.error as e:
                raise ScriptError(f"{where}: bad path_regex: {e}") from None
        return m


@dataclass
class Response:
    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    #: a body served byte for byte, placeholders not rendered (a recorded downloader file); replaces ``body``
    body_hex: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str) -> Response:
        if "status" not in d:
            raise ScriptError(f"{where}: a response needs a status")
        unknown = set(d) - {"status", "reason", "headers", "body", "body_hex"}
        if unknown:
            raise ScriptError(f"{where}: unknown respond keys {sorted(unknown)}")
        if d.get("body") and d.get("body_hex"):
            raise ScriptError(f"{where}: body and body_hex are exclusive")
        body_hex = str(d.get("body_hex") or "")
        try:
            bytes.fromhex(body_hex)
        except ValueError:
            raise ScriptError(f"{where}: body_hex is not hex") from None
        return cls(status=int(d["status"]), reason=str(d.get("reason", "")),
                   headers=_pairs(d.get("headers"), where), body=str(d.get("body", "")), body_hex=body_hex)


@dataclass
class Step:
    """One "expect request matching X -> send response Y" item.

    Steps are consumed in order; a request may also match a later step (the ones in between are recorded as
    skipped), never an earlier one. `times` is how many requests the step answers before it is used up. After a
    2xx answer to CONNECT (or when `tunnel` is true) the connection switches to CSTP framing; `close` ends the
    TCP connection after the answer; `delay` is how many seconds the gateway takes before it answers (an ASA waiting
    for its authentication server: RADIUS, LDAP, a multi-factor push the user approves on a phone).
    """

    id: str
    expect: Match
    respond: Response
    times: int = 1
    close: bool = False
    tunnel: bool | None = None
    note: str = ""
    delay: float = 0.0

    def starts_tunnel(self) -> bool:
        if self.tunnel is not None:
            return self.tunnel
        return (self.expect.method or "").upper() == "CONNECT" and 200 <= self.respond.status < 300


@dataclass
class CstpAction:
    at: float  # seconds after the CONNECT answer was sent
    send: str  # one of CSTP_ACTIONS
    payload_hex: str = ""
    reason: str = ""  # for disconnect: the text after the reason byte
    tunnels: list[int] = field(default_factory=list)  # 1-based numbers of the tunnels it applies to; empty: all
    # "data" only: "dtls" sends the packet over the DTLS channel when one is up (`Script.dtls`), else over CSTP;
    # "" or "cstp": over CSTP
    channel: str = ""


UDP_REPLIES = ("hello-verify-request",)


@dataclass
class UdpResponder:
    """A UDP port that answers DTLS ClientHellos from *another* port of the gateway.

    The gateway binds `port` (the one X-DTLS-Port names) and `reply_from`; every DTLS ClientHello arriving at
    `port` is answered, from `reply_from`, with `reply`: "hello-verify-request" is a DTLS HelloVerifyRequest
    (content type 22, the ClientHello's record version, handshake type 3, message_seq 0, server_version = the
    ClientHello's client_version, the cookie `cookie_hex`). At most `max_replies` answers (0: no limit).
    """

    port: int
    reply_from: int
    reply: str = "hello-verify-request"
    cookie_hex: str = "acf10ac0ffee0000acf10ac0ffee0000"
    max_replies: int = 0

    @classmethod
    def from_dict(cls, d: dict, where: str) -> UdpResponder:
        unknown = set(d) - {"port", "reply_from", "reply", "cookie_hex", "max_replies"}
        if unknown:
            raise ScriptError(f"{where}: unknown keys {sorted(unknown)}")
        if "port" not in d or "reply_from" not in d:
            raise ScriptError(f"{where}: a UDP responder needs port and reply_from")
        r = cls(port=int(d["port"]), reply_from=int(d["reply_from"]), reply=d.get("reply", "hello-verify-request"),
                cookie_hex=d.get("cookie_hex", cls.cookie_hex), max_replies=int(d.get("max_replies", 0)))
        if r.reply not in UDP_REPLIES:
            raise ScriptError(f"{where}: reply must be one of {UDP_REPLIES}, got {r.reply!r}")
        try:
            cookie = bytes.fromhex(r.cookie_hex)
        except ValueError:
            raise ScriptError(f"{where}: cookie_hex is not hex") from None
        if len(cookie) > 255:
            raise ScriptError(f"{where}: cookie longer than 255 bytes")
        if r.port == r.reply_from:
            raise ScriptError(f"{where}: reply_from must differ from port")
        return r


@dataclass
class CstpBehaviour:
    """What the gateway does on the CSTP channel once a CONNECT was answered 2xx."""

    answer_dpd: bool = True  # DPD-REQ -> DPD-RESP echoing the payload
    icmp_echo: bool = False  # answer ICMP/ICMPv6 echo requests in DATA packets (no tun on the gateway)
    actions: list[CstpAction] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict | None) -> CstpBehaviour:
        d = d or {}
        unknown = set(d) - {"answer_dpd", "icmp_echo", "actions"}
        if unknown:
            raise ScriptError(f"cstp: unknown keys {sorted(unknown)}")
        actions = []
        for i, a in enumerate(d.get("actions") or []):
            if a.get("send") not in CSTP_ACTIONS:
                raise ScriptError(f"cstp.actions[{i}]: send must be one of {CSTP_ACTIONS}, got {a.get('send')!r}")
            unknown = set(a) - {"at", "send", "payload_hex", "reason", "tunnels", "channel"}
            if unknown:
                raise ScriptError(f"cstp.actions[{i}]: unknown keys {sorted(unknown)}")
            actions.append(CstpAction(at=float(a.get("at", 0.0)), send=a["send"],
                                      payload_hex=a.get("payload_hex", ""), reason=a.get("reason", ""),
                                      tunnels=[int(t) for t in a.get("tunnels") or []],
                                      channel=str(a.get("channel") or "")))
            if actions[-1].channel not in ("", "cstp", "dtls"):
                raise ScriptError(f"cstp.actions[{i}]: channel must be cstp or dtls, got {actions[-1].channel!r}")
            try:
                bytes.fromhex(actions[-1].payload_hex)
            except ValueError:
                raise ScriptError(f"cstp.actions[{i}]: payload_hex is not hex") from None
        return cls(answer_dpd=bool(d.get("answer_dpd", True)), icmp_echo=bool(d.get("icmp_echo", False)),
                   actions=sorted(actions, key=lambda a: a.at))


DTLS_MODES = ("psk-negotiate", "legacy")
LEGACY_DTLS_VERSIONS = ("DTLS 0x0100", "DTLS 1.0", "DTLS 1.2")  # as the session model names them
LEGACY_DTLS_SUITES = ("AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384")


@dataclass
class DtlsBehaviour:
    """A DTLS server beside the gateway (replay.dtls_psk_server, GnuTLS) on UDP `port`: `mode` "psk-negotiate"
    (openconnect's PSK from the CSTP TLS session's exporter) or "legacy" (the session resumed with the master
    secret the client sent in X-DTLS-Master-Secret and the X-DTLS-Session-ID the gateway answered; `version` one
    of "DTLS 0x0100", "DTLS 1.0", "DTLS 1.2", `suite` an OpenSSL name: AES128-SHA, AES256-SHA, AES128-GCM-SHA256,
    AES256-GCM-SHA384); `hello_verify`: answer a cookie-less ClientHello with a HelloVerifyRequest first (RFC 6347;
    Cisco gateways do, ocserv does not)."""

    mode: str = "psk-negotiate"
    port: int = 443
    hello_verify: bool = False
    mtu: int = 1472  # the DTLS MTU GnuTLS may send (UDP payload)
    version: str = ""  # legacy only
    suite: str = ""  # legacy only

    @classmethod
    def from_dict(cls, d: dict | None) -> DtlsBehaviour | None:
        if not d:
            return None
        unknown = set(d) - {"mode", "port", "hello_verify", "mtu", "version", "suite"}
        if unknown:
            raise ScriptError(f"dtls: unknown keys {sorted(unknown)}")
        b = cls(mode=str(d.get("mode", "psk-negotiate")), port=int(d.get("port", 443)),
                hello_verify=bool(d.get("hello_verify", False)), mtu=int(d.get("mtu", 1472)),
                version=str(d.get("version") or ""), suite=str(d.get("suite") or ""))
        if b.mode not in DTLS_MODES:
            raise ScriptError(f"dtls.mode must be one of {DTLS_MODES}, got {b.mode!r}")
        if b.mode == "legacy" and (b.version not in LEGACY_DTLS_VERSIONS or b.suite not in LEGACY_DTLS_SUITES):
            raise ScriptError(f"dtls: legacy mode needs version in {LEGACY_DTLS_VERSIONS} and suite in "
                              f"{LEGACY_DTLS_SUITES}, got {b.version!r} {b.suite!r}")
        if not 0 < b.port < 65536 or not 256 <= b.mtu <= 65507:
            raise ScriptError("dtls: port or mtu out of range")
        return b


@dataclass
class TlsBehaviour:
    alert_sessions: list[int] = field(default_factory=list)  # 1-based TLS session numbers to abort
    alert: str = "handshake_failure"
    min_version: str | None = None  # ssl.TLSVersion member names, e.g. "TLSv1_2"
    max_version: str | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> TlsBehaviour:
        d = d or {}
        unknown = set(d) - {"alert", "min_version", "max_version"}
        if unknown:
            raise ScriptError(f"tls: unknown keys {sorted(unknown)}")
        alert = d.get("alert") or {}
        desc = alert.get("description", "handshake_failure")
        if desc not in TLS_ALERTS:
            raise ScriptError(f"tls.alert.description must be one of {sorted(TLS_ALERTS)}, got {desc!r}")
        return cls(alert_sessions=[int(s) for s in alert.get("sessions", [])], alert=desc,
                   min_version=d.get("min_version"), max_version=d.get("max_version"))

    def to_dict(self) -> dict:
        out: dict = {}
        if self.alert_sessions:
            out["alert"] = {"sessions": self.alert_sessions, "description": self.alert}
        if self.min_version:
            out["min_version"] = self.min_version
        if self.max_version:
            out["max_version"] = self.max_version
        return out


@dataclass
class Script:
    name: str
    steps: list[Step]
    description: str = ""
    vars: dict[str, str] = field(default_factory=dict)
    unmatched: Response = field(default_factory=lambda: Response(404, "Not Found", [("Content-Type", "text/html")],
                                                                "<html><body>Not Found</body></html>\n"))
    cstp: CstpBehaviour = field(default_factory=CstpBehaviour)
    udp_sinks: list[int] = field(default_factory=list)
    udp_responders: list[UdpResponder] = field(default_factory=list)
    tls: TlsBehaviour = field(default_factory=TlsBehaviour)
    dtls: DtlsBehaviour | None = None
    unmatched_nearest: bool = False

    # -- (de)serialisation --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> Script:
        if not isinstance(d, dict):
            raise ScriptError("a script is a JSON object")
        unknown = set(d) - {"name", "description", "vars", "steps", "unmatched", "cstp", "udp_sinks",
                            "udp_responders", "tls", "dtls", "unmatched_nearest"}
        if unknown:
            raise ScriptError(f"unknown top-level keys {sorted(unknown)}")
        steps = []
        seen = set()
        for i, s in enumerate(d.get("steps") or []):
            where = f"steps[{i}]"
            sid = str(s.get("id") or f"step{i + 1}")
            if sid in seen:
                raise ScriptError(f"{where}: duplicate step id {sid!r}")
            seen.add(sid)
            unknown = set(s) - {"id", "expect", "respond", "times", "close", "tunnel", "note", "delay"}
            if unknown:
                raise ScriptError(f"{where}: unknown keys {sorted(unknown)}")
            if "respond" not in s:
                raise ScriptError(f"{where}: a step needs a respond")
            steps.append(Step(id=sid, expect=Match.from_dict(s.get("expect") or {}, where),
                              respond=Response.from_dict(s["respond"], where), times=int(s.get("times", 1)),
                              close=bool(s.get("close", False)), tunnel=s.get("tunnel"), note=s.get("note", ""),
                              delay=max(0.0, float(s.get("delay", 0.0)))))
        if not steps:
            raise ScriptError("a script needs at least one step")
        script = cls(name=str(d.get("name", "script")), description=str(d.get("description", "")),
                     vars={str(k): str(v) for k, v in (d.get("vars") or {}).items()}, steps=steps,
                     cstp=CstpBehaviour.from_dict(d.get("cstp")),
                     udp_sinks=[int(p) for p in d.get("udp_sinks") or []],
                     udp_responders=[UdpResponder.from_dict(r, f"udp_responders[{i}]")
                                     for i, r in enumerate(d.get("udp_responders") or [])],
                     tls=TlsBehaviour.from_dict(d.get("tls")), dtls=DtlsBehaviour.from_dict(d.get("dtls")),
                     unmatched_nearest=bool(d.get("unmatched_nearest", False)))
        ports = script.udp_sinks + [p for r in script.udp_responders for p in (r.port, r.reply_from)]
        ports += [script.dtls.port] if script.dtls else []
        if len(ports) != len(set(ports)):
            raise ScriptError(f"a UDP port is used twice in udp_sinks/udp_responders: {ports}")
        if d.get("unmatched"):
            script.unmatched = Response.from_dict(d["unmatched"], "unmatched")
        script.check_placeholders()
        return script

    @classmethod
    def load(cls, path: Path | str) -> Script:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise ScriptError(f"{path}: not JSON: {e}") from None

    def to_dict(self) -> dict:
        def resp(r: Response) -> dict:
            out: dict = {"status": r.status, "reason": r.reason}
            if r.headers:
                out["headers"] = [list(h) for h in r.headers]
            if r.body:
                out["body"] = r.body
            if r.body_hex:
                out["body_hex"] = r.body_hex
            return out

        steps = []
        for s in self.steps:
            exp = {k: v for k, v in asdict(s.expect).items() if v not in (None, [], {})}
            item: dict = {"id": s.id, "expect": exp, "respond": resp(s.respond)}
            if s.times != 1:
                item["times"] = s.times
            if s.close:
                item["close"] = True
            if s.tunnel is not None:
                item["tunnel"] = s.tunnel
            if s.note:
                item["note"] = s.note
            if s.delay:
                item["delay"] = s.delay
            steps.append(item)
        out: dict = {"name": self.name, "description": self.description, "vars": dict(self.vars), "steps": steps,
                     "unmatched": resp(self.unmatched),
                     "cstp": {"answer_dpd": self.cstp.answer_dpd, "icmp_echo": self.cstp.icmp_echo,
                              "actions": [{k: v for k, v in asdict(a).items() if v not in ("", [])}
                                          for a in self.cstp.actions]}}
        if self.udp_sinks:
            out["udp_sinks"] = list(self.udp_sinks)
        if self.udp_responders:
            out["udp_responders"] = [asdict(r) for r in self.udp_responders]
        tls = self.tls.to_dict()
        if tls:
            out["tls"] = tls
        if self.dtls:
            out["dtls"] = asdict(self.dtls)
        if self.unmatched_nearest:
            out["unmatched_nearest"] = True
        return out

    def dump(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    # -- placeholders ---------------------------------------------------------------------------------------
    def _strings(self):
        for s in self.steps:
            yield from (s.expect.cookie or "", s.expect.path or "", *s.expect.body_contains,
                        *s.expect.headers.values(), s.respond.reason, s.respond.body)
            for k, v in s.respond.headers:
                yield k
                yield v
        yield from (self.unmatched.body, *(v for _, v in self.unmatched.headers))
        yield from (a.reason for a in self.cstp.actions)
        yield from self.vars.values()

    def check_placeholders(self) -> None:
        known = set(self.vars) | set(RUNTIME_VARS)
        for text in self._strings():
            for name in PLACEHOLDER.findall(text):
                if name not in known:
                    raise ScriptError(f"unknown placeholder ${{{name}}} (known: {', '.join(sorted(known))})")


def render(text: str, values: dict[str, str]) -> str:
    """Replace ${name} placeholders (values may themselves hold placeholders, one level deep)."""

    def sub(m: re.Match) -> str:
        v = values[m.group(1)]
        return PLACEHOLDER.sub(lambda m2: values[m2.group(1)], v)

    return PLACEHOLDER.sub(sub, text)
