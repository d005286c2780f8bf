"""Is it an AnyConnect-protocol session? Evidence and confidence for every group of flows, and the rest.

A capture from a laptop or a gateway holds much more than the VPN: browsers, push services, media over DTLS. A
group of flows (analyzer/phases/grouping.py: the TLS connections of one client to one server address and port, and
the DTLS flows joined to them) is reported as a VPN session only when something in the capture says it speaks
the AnyConnect protocol. Everything else goes to the "other traffic" summary — never a session, never a finding.

Evidence (code, strength; docs/findings.md "Which flows are a VPN session"):

* decrypted (confirms): `aggregate-auth` (config-auth XML POSTs), `cstp-connect` (CONNECT /CSCOSSLC/tunnel or
  a CONNECT answered with X-CSTP-* headers), `cstp-frames` (CSTP framing after the CONNECT), `webvpn-cookie` (the
  gateway's session cookie set or presented), `downloader` (GETs of the downloader's paths);
* strong (2 points): `dtls-same-port` (DTLS on the TLS connection's server address and port: TCP and UDP on one
  gateway port), `dtls-resumes-session` (a DTLS ClientHello carrying a 32-byte session id: AnyConnect's legacy
  X-DTLS-Session-ID resumption or PSK-NEGOTIATE's X-DTLS-App-ID), `dtls-0x0100` (Cisco's pre-standard DTLS
  version, spoken only by AnyConnect-protocol peers), `cstp-record-pattern` (records of exactly a CSTP control
  frame's protected size answered in kind, or repeated — DPD and keepalives), `dtls-record-pattern` (the same on a
  DTLS flow seen only mid-tunnel, sized by the protection its records fit), `cstp-disconnect-shape` (HTTP/1.1
  rounds, then a DISCONNECT-sized record as the client's last, unanswered, before the close: `cstp_disconnect_shape`),
  `confirmed-gateway` (the same server
  address and port, or the same certificate or SNI, as a confirmed session's gateway);
* medium (1 point): `dtls-same-server` (DTLS to the TLS server's address on another port, after the TLS
  connection started).

`--gateway ADDR[:PORT]` (`forced`) makes every group to that address (and port) a session and no other.
A group is a session when it has decrypted evidence, is forced, or scores 2 points or more. Confidence:
`confirmed` (decrypted evidence or forced), `high` (4+ points), `medium` (2–3 points).
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from dissectors.dtls.record import DTLS_BAD_VER
from dissectors.http import hands_out_tunnel
from dissectors.tls.names import cipher_suite_name

from .inference import read_connection
from .ipsec import summarize as summarize_ipsec
from .keyless import CSTP_HEADER, GUESS_MIN_CONTROL, MIN_IP_PACKET, control_pattern, protection

STRONG, MEDIUM = 2, 1
CSTP_CONTROL_MIN = 2  # control-size records needed for the record pattern


#: a host name as --gateway takes it (RFC 1123 labels): letters, digits, hyphens, dots
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True)
class GatewaySpec:
    """One --gateway ADDR[:PORT] or NAME[:PORT]. A name (the host name users type into the client) stands for the
    addresses the capture itself ties to it (`resolved`): the answers of DNS lookups of it, and the servers of TLS
    connections whose ClientHello names it (SNI); until resolved, or when the capture ties none, it matches nothing."""

    address: str | None
    port: int | None = None
    name: str | None = None  # lower case, without a final dot
    addresses: tuple[str, ...] = ()  # a name's addresses, once `resolved`

    @classmethod
    def parse(cls, text: str) -> GatewaySpec:
        """`198.18.0.1`, `198.18.0.1:443`, `2001:2::1`, `[2001:2::1]:8443`, `vpn.example.com`,
        `vpn.example.com:8443`. Raises ValueError."""
        t = text.strip()
        port = None
        if t.startswith("["):
            host, _, rest = t[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"bad gateway {text!r}")
                port = int(rest[1:])
        elif t.count(":") == 1:
            host, _, p = t.partition(":")
            port = int(p)
        else:
            host = t
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in {text!r}")
        try:
            return cls(str(ipaddress.ip_address(host)), port)
        except ValueError:
            if not t.startswith("[") and _HOSTNAME.fullmatch(host) and not host.replace(".", "").isdigit():
                return cls(None, port, name=host.lower().rstrip("."))
            raise

    @property
    def text(self) -> str:
        """As given: ADDR, ADDR:PORT, [IPv6]:PORT, NAME, NAME:PORT."""
        host = self.name or self.address or ""
        if self.port is None:
            return host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def resolved(self, pipe) -> GatewaySpec:
        """A name's spec with the addresses the capture ties to it (itself for an address)."""
        if self.name is None:
            return self
        found: list[str] = []
        for e in getattr(getattr(pipe, "dns", None), "entries", {}).values():
            if e["name"] == self.name and e.get("rcode") == 0:
                found += e.get("addresses") or []
        for c in getattr(pipe, "tcp", {}).values():
            ch = c.client_hello
            if ch is not None and (ch.sni or "").lower().rstrip(".") == self.name:
                found.append(c.server[0])
        return GatewaySpec(None, self.port, self.name, tuple(dict.fromkeys(found)))

    def matches(self, address: str, port: int | None) -> bool:
        if self.name is not None:
            targets = self.addresses
        else:
            targets = (self.address,)
        same = False
        for t in targets:
            try:
                same = ipaddress.ip_address(address) == ipaddress.ip_address(t)
            except ValueError:
                same = address == t
            if same:
                break
        return same and (self.port is None or port is None or port == self.port)


def resolve_gateways(gateways, pipe) -> list[GatewaySpec] | None:
    """--gateway specs with their names resolved from the capture (`GatewaySpec.resolved`); None stays None."""
    if not gateways:
        return gateways
    return [gw.resolved(pipe) for gw in gateways]


@dataclass
class Verdict:
    """Why a group of flows is (or is not) an AnyConnect-protocol session."""

    evidence: list[dict] = field(default_factory=list)  # {"code", "strength", "text", "frames"}
    score: int = 0
    decrypted: bool = False
    forced: bool | None = None  # True/False when --gateway was given, else None

    def add(self, code: str, strength: str, text: str, frames=()) -> None:
        if any(e["code"] == code for e in self.evidence):
            return
        self.evidence.append({"code": code, "strength": strength, "text": text, "frames": list(frames)[:5]})
        if strength == "decrypted":
            self.decrypted = True
        elif strength == "strong":
            self.score += STRONG
        elif strength == "medium":
            self.score += MEDIUM

    @property
    def is_vpn(self) -> bool:
        if self.forced is not None:
            return self.forced
        return self.decrypted or self.score >= STRONG

    @property
    def confidence(self) -> str:
        if self.decrypted or self.forced:
            return "confirmed"
        return "high" if self.score >= 2 * STRONG else "medium"


def cstp_record_pattern(conn, suite_name: str | None) -> tuple[int, list[int]] | None:
    """Protected records of exactly a CSTP control frame's size: (count, frames) when they form the pattern
    (`keyless.control_pattern`: a control-size record answered by one from the other side within 5 s — DPD
    request/response — or control-size records from one side at least 5 s apart — keepalives; HTTP traffic has no
    records of these exact sizes recurring like this). A connection whose handshake was before the capture has no
    suite to size them by: the protection its records' sizes fit (`TCPTracker.guessed_protection`), with a
    stricter pattern (`keyless.guess_protection`)."""
    sh = conn.server_hello
    prot = protection(suite_name, sh.version if sh else None, dtls=False, etm=bool(sh and sh.encrypt_then_mac))
    if prot is None and conn.guessed_protection is not None:
        return control_pattern(conn.record_sizes, conn.cstp_estimate.prot.record_length(CSTP_HEADER),
                               GUESS_MIN_CONTROL, answered=True)
    if prot is None:
        return None
    return control_pattern(conn.record_sizes, prot.record_length(CSTP_HEADER), CSTP_CONTROL_MIN)


def cstp_disconnect_shape(conn) -> int | None:
    """An undecrypted connection shaped like a tunnel that ends with a CSTP DISCONNECT: HTTP/1.1
    request/response rounds (the login POSTs or the CONNECT), then — as the client's last record, unanswered,
    right before the connection closes — a record whose plaintext is a CSTP header plus a payload too short for
    an IP packet (a DISCONNECT and its reason). The frame of that record, else None. A client that offers HTTP/2
    (ALPN h2) is left out: its GOAWAY frame has such a size."""
    ch = conn.client_hello
    if ch is None or "h2" in (ch.alpn or ()) or not conn.closed:
        return None
    r = read_connection(conn, [])
    if r.prot is None or not any(x.http_like for x in r.rounds) or not r.rounds[-1].records:
        return None
    last = r.rounds[-1].records[-1]
    if last[1] != "c2s" or r.rounds[-1].response_records:
        return None
    least, most = r.prot.plaintext(last[2])
    if not (least > CSTP_HEADER and most - CSTP_HEADER < MIN_IP_PACKET):
        return None
    return last[3] if conn.last_ts - last[0] <= 2.0 else None


TLS_SERVERS = 8  # the other traffic's TLS servers listed (by connections)


def other_traffic(pipe, vpn_conn_ids: set[int], vpn_flow_ids: set[int], top: int = 5) -> dict:
    """The summary of everything that is not a VPN session: counts per protocol and server port, top talkers, the
    TLS servers (their SNI names: what to give --gateway when the gateway is among them)."""
    rows: Counter = Counter()
    flows: Counter = Counter()
    talkers: Counter = Counter()
    tls_servers: dict = {}  # (address, port) -> [connections, bytes, names, clients]
    for c in pipe.tcp.values():
        if id(c) in vpn_conn_ids:
            continue
        proto = "TLS" if c.is_tls else "TCP"
        b = (sum(c.encrypted_bytes.values()) + sum(c.app_bytes.values())) if c.is_tls else c.other_bytes
        key = (proto, c.server[1])
        flows[key] += 1
        rows[key] += b
        talkers[(c.client[0], c.server[0])] += b
        if c.is_tls:
            t = tls_servers.setdefault(c.server, [0, 0, {}, set()])
            t[0] += 1
            t[1] += b
            sni = getattr(c.client_hello, "sni", None)
            if sni and len(t[2]) < 4:
                t[2][sni.lower()] = None
            if len(t[3]) < 1000:
                t[3].add(c.client[0])
    for f in pipe.udp.values():
        if id(f) in vpn_flow_ids:
            continue
        key = ("DTLS", f.server[1])
        b = sum(f.bytes.values())
        flows[key] += 1
        rows[key] += b
        talkers[(f.client[0], f.server[0])] += b
    ipsec = []
    for entry in pipe.udp_other.values():
        client, server, _first, _last, _n, b = entry[:6]
        named = entry[6] if len(entry) > 6 and type(entry[6]) is str else None  # "QUIC" (dissectors/quic.py)
        key = (named or "UDP", server[1])
        if len(entry) > 6 and named is None:  # IKE / ESP in UDP (analyzer/ipsec.py): `ipsec` below (row: UDP/port)
            ipsec.append(entry)
        flows[key] += 1
        rows[key] += b
        talkers[(client[0], server[0])] += b
    by_proto = [{"protocol": p, "server_port": port, "flows": n, "bytes": rows[(p, port)]}
                for (p, port), n in sorted(flows.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {
        "flows": sum(flows.values()),
        "bytes": sum(rows.values()),
        "by_protocol": by_proto[:50],
        "more_protocols": max(0, len(by_proto) - 50),
        "top_talkers": [{"client": a, "server": b, "bytes": n} for (a, b), n in talkers.most_common(top)],
        "unitemised_udp_datagrams": pipe.udp_other_overflow,
        **({"ipsec": summarize_ipsec(ipsec)} if ipsec else {}),
        # the TLS servers, by connections: candidates for --gateway ADDR or NAME when no session was recognised
        **({"tls_servers": [{"server": fmt_endpoint(*k), "names": list(t[2]), "connections": t[0], "bytes": t[1],
                             "clients": len(t[3])}
                            for k, t in sorted(tls_servers.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[
                                :TLS_SERVERS]]} if tls_servers else {}),
    }


def _suite(conn) -> str | None:
    sh = conn.server_hello
    return cipher_suite_name(sh.cipher_suite) if sh is not None else None


def _cert_sha1(conn) -> str | None:
    if conn.certificates is None or not conn.certificates.certificates:
        return None
    return hashlib.sha1(bytes(conn.certificates.certificates[0])).hexdigest()


def judge(groups, gateways: list[GatewaySpec] | None = None, downloader_paths=()) -> list[Verdict]:
    """One Verdict per group (same order). See the module docstring for the evidence and the thresholds."""
    verdicts = [_own_evidence(g, downloader_paths) for g in groups]
    if gateways:
        for g, v in zip(groups, verdicts):
            _, addr, port = g.key
            # TLS groups by address and port; DTLS seen without its TLS connection by address (X-DTLS-Port may
            # differ from the TLS port)
            if getattr(g, "portal", False):
                continue
            v.forced = any(gw.matches(addr, port) for gw in gateways) if g.conns or getattr(g, "failed", None) \
                else any(gw.matches(f.server[0], None) for f in g.dtls for gw in gateways)
            if v.forced:
                v.add("forced", "decrypted" if v.decrypted else "strong", "--gateway names this gateway")
        return verdicts
    # a confirmed gateway vouches for other connections to it (same address and port, certificate or SNI)
    confirmed = [(g, v) for g, v in zip(groups, verdicts) if v.is_vpn]
    endpoints = {(g.key[1], g.key[2]) for g, _ in confirmed if g.conns}
    certs = {s for g, _ in confirmed for cn in g.conns if (s := _cert_sha1(cn.c))}
    snis = {cn.c.client_hello.sni for g, _ in confirmed for cn in g.conns
            if cn.c.client_hello is not None and cn.c.client_hello.sni}
    for g, v in zip(groups, verdicts):
        if v.is_vpn or not g.conns or getattr(g, "portal", False):
            continue
        c = g.conns[0].c
        if (g.key[1], g.key[2]) in endpoints:
            v.add("confirmed-gateway", "strong", f"same gateway {fmt_endpoint(g.key[1], g.key[2])} as a confirmed "
                  "session", [c.first_frame])
        elif (sha := _cert_sha1(c)) and sha in certs:
            v.add("confirmed-gateway", "strong", "the server presents a confirmed gateway's certificate",
                  [c.certificates.frame])
        elif c.client_hello is not None and c.client_hello.sni and c.client_hello.sni in snis:
            v.add("confirmed-gateway", "strong", f"SNI {c.client_hello.sni} names a confirmed gateway",
                  [c.client_hello.frame])
    return verdicts


def _own_evidence(g, downloader_paths) -> Verdict:
    # the paths phase user-auth reads (single sign-on, host scan); imported here: grouping imports lxml, which the
    # CLI's missing-dependency check must be able to report
    from .phases.grouping import is_hostscan_path, is_sso_path  # noqa: PLC0415

    v = Verdict()
    if getattr(g, "portal", False):
        # a desktop browser at the gateway's web portal (analyzer/phases/grouping.py): the user's, no client's
        # session, whatever cookie the portal gave it; not even with --gateway
        v.forced = False
        return v
    _, gw_addr, gw_port = g.key
    for cn in g.conns:
        if any(rq is not None for _, rq, _ in cn.posts):
            ex = next(ex for ex, rq, _ in cn.posts if rq is not None)
            v.add("aggregate-auth", "decrypted", "aggregate-auth (config-auth XML) POSTs", [ex.request.frame])
        elif any(rs is not None and ex.request.method == "" for ex, _, rs in cn.posts):
            ex = next(ex for ex, _, rs in cn.posts if rs is not None and ex.request.method == "")
            v.add("aggregate-auth", "decrypted", "aggregate-auth (config-auth XML) answers (their requests not "
                  "captured)", [ex.response.frame])
        for ex in cn.connects:
            resp = ex.response
            if ex.request.target.upper().startswith("/CSCOSSLC/") or (
                    resp is not None and hands_out_tunnel(resp.headers)):
                v.add("cstp-connect", "decrypted", f"CONNECT {ex.request.target}", [ex.request.frame])
        tunnel = cn.c.tunnel
        if tunnel is not None and (tunnel.frames["c2s"] or tunnel.frames["s2c"]):
            v.add("cstp-frames", "decrypted", "CSTP frames after the CONNECT", [cn.c.tunnel_frame or cn.c.first_frame])
        if cn.cookies_presented or cn.cookies_issued:
            v.add("webvpn-cookie", "decrypted", "the gateway's webvpn session cookie", [cn.c.first_frame])
        dl = [ex for ex in cn.gets if not is_sso_path(ex.request.target) and not is_hostscan_path(ex.request.target)
              and any(ex.request.target.startswith(p) for p in downloader_paths)]
        if dl:  # (a browser at the gateway's SAML pages, or a host scan's requests, are not the downloader)
            ex = dl[0]
            v.add("downloader", "decrypted", f"downloader GET {ex.request.target}", [ex.request.frame])
        if not cn.c.decrypted and cn.c.is_tls:
            pat = cstp_record_pattern(cn.c, _suite(cn.c))
            if pat is not None:
                n, frames = pat
                why = "the handshake was before the capture" if cn.c.started_before_capture else \
                    "the capture cut the ServerHello"
                guessed = (f" ({why}: sized as {cn.c.guessed_protection}, the protection every record fits)"
                           if cn.c.server_hello is None else "")
                v.add("cstp-record-pattern", "strong", f"{n} records of a CSTP control frame's size (DPD/keepalive "
                      f"pattern) on tcp.stream {cn.c.index}{guessed}", frames)
    first_tls = min((cn.c.first_ts for cn in g.conns), default=None)
    for f in g.dtls:
        first = f.hellos[0] if f.hellos else None
        if f.server == (gw_addr, gw_port) and g.conns:
            v.add("dtls-same-port", "strong", f"DTLS on the TLS gateway's port {fmt_endpoint(gw_addr, gw_port)} "
                  "(TCP and UDP on one gateway port)", [f.first_frame])
        elif f.server[0] == gw_addr and g.conns and first_tls is not None and f.first_ts >= first_tls:
            v.add("dtls-same-server", "medium", f"DTLS to the TLS gateway's address on UDP {f.server[1]} after the "
                  "TLS connection", [f.first_frame])
        if first is not None and (len(first.get("session_id") or "") == 64 or first.get("session_id_length") == 32):
            v.add("dtls-resumes-session", "strong", "DTLS ClientHello resumes a 32-byte session id (AnyConnect "
                  "X-DTLS-Session-ID or PSK-NEGOTIATE App-ID)", [first["frame"]])
        if f.version == DTLS_BAD_VER or any(h.get("version") == DTLS_BAD_VER for h in f.hellos):
            v.add("dtls-0x0100", "strong", "Cisco's pre-standard DTLS 0x0100", [f.first_frame])
        if f.keys_source is not None:
            v.add("dtls-keys-from-connect", "decrypted", "DTLS keys derived from the CONNECT exchange",
                  [f.first_frame])
        if f.guessed_protection is not None and f.guess_pattern:
            n, frames = f.guess_pattern
            v.add("dtls-record-pattern", "strong", f"{n} DTLS records of a control packet's size (DPD/keepalive "
                  f"pattern) on udp.stream {f.index} (the handshake was before the capture: sized as "
                  f"{f.guessed_protection}, the protection every record fits)", frames)
    if not v.is_vpn:  # the weakest keyless sign last: only where nothing else tells
        for cn in g.conns:
            fr = cstp_disconnect_shape(cn.c) if not cn.c.decrypted and cn.c.is_tls else None
            if fr is not None:
                v.add("cstp-disconnect-shape", "strong", f"HTTP request/response rounds, then a record of a CSTP "
                      f"DISCONNECT's size as the client's last before the close on tcp.stream {cn.c.index}", [fr])
                break
    return v


def fmt_endpoint(addr: str, port: int | None) -> str:
    """`198.18.0.1:443`, `[2001:2::1]:443` (RFC 3986 brackets for IPv6)."""
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def split_endpoint(text: str) -> tuple[str, int | None]:
    """The inverse of `fmt_endpoint`: `198.18.0.1:443` / `[2001:2::1]:443` -> (address, port)."""
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    addr, _, port = text.rpartition(":")
    if not addr or ":" in addr:  # a bare IPv6 address, or no port
        return text, None
    return addr, int(port) if port.isdigit() else None
