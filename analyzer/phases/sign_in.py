"""The browser's way to the identity provider during a SAML single sign-on, read from the traffic around it.

During the sign-in, the client waits: the user's browser goes to the gateway's sign-in URL, is redirected to the
identity provider (its own name: Entra ID, Okta, ADFS…), signs in there and comes back to the gateway with the SAML
response. A capture on the user's machine holds that way too — not the VPN session's flows, but the same client's
other traffic in the same seconds: the DNS lookup of the identity provider's name, the TCP connection to it, its
TLS handshake (the name in the ClientHello's SNI). What went wrong on that way is usually what a support engineer
is asked about ("SAML login does not work"): a name the user's DNS does not know (split DNS, a VPN-only name), an
address nothing answers (a firewall), a certificate the browser does not trust (TLS inspection).

`read` collects, for one client and a time window (the sign-in URL given → the token, or the client's give-up):

* the identity provider's name, when known (with keys: the gateway's redirect names it,
  `SingleSignOn.identity_provider`);
* the connections to other servers than the gateway: with the name, TLS connections whose SNI is that name (or
  without SNI to an address a lookup of it resolved to); without it, TLS connections made by the same program as the
  browser's connections to the gateway (their TLS ClientHello fingerprint: analyzer/phases/grouping.py
  `tls_client_fingerprint`); failed connects (analyzer/attempts.py, no ClientHello to tell the program by) to an
  address a lookup of the name resolved to — without the name, one resolved in the window, or to port 443 when no
  lookup resolved anything, within `LOOKUP_AFTER` seconds of the browser's requests;
* the lookups: with the name, its lookups; without it, the failed ones within `LOOKUP_AFTER` seconds of the
  browser's requests and those that resolved the address of a connection kept;
* what became of each (`SignInConnection.outcome`) and the first failure on the way (`SignInPath.problem`).

Pure reading of the pipeline's finished state: no I/O.
"""
from __future__ import annotations

import functools

from ..dns_lookups import failed as failed_lookups
from ..evidence import fmt_endpoint
from .grouping import client_closed_in_handshake, server_stalled_in_handshake, tls_client_fingerprint
from .record import UNSET, Record, record

LOOKUP_AFTER = 3.0  # seconds after a browser request to the gateway in which its next lookups and connects fall
MAX_ITEMS = 8  # lookups and connections kept per sign-in


@record
class SignInLookup(Record):
    """A DNS lookup by the client during the sign-in."""
    name: str
    answer: str  # "resolved", or what the failure was: NXDOMAIN, SERVFAIL, no record, no answer…
    addresses: list[str]
    time: float
    frames: list[int]


@record
class SignInConnection(Record):
    """A connection of the client to another server than the gateway during the sign-in."""
    connection: str
    server: str
    name: str | None  # the TLS ClientHello's SNI, else the name a lookup resolved to the server's address
    time: float
    frame: int
    #: reached (the TLS handshake completed), no-answer / reset / unacknowledged / icmp (the TCP connect failed),
    #: refused-in-handshake (the client ended the TLS handshake: its certificate not trusted, most likely),
    #: handshake-stalled, alert (a TLS alert ended it), no-tls (a TCP connection without a TLS handshake)
    outcome: str
    detail: str
    frames: list[int]


@record
class SignInPath(Record):
    """The browser's way to the identity provider: lookups, connections, and the first failure on it."""
    identity_provider: str | None  # its name (with keys: the gateway's redirect; without: the SNI / failed lookup)
    lookups: list[SignInLookup]
    connections: list[SignInConnection]
    reached: bool  # a TLS handshake with it completed
    problem: str | None = None  # the first failure on the way, in words (None: none seen)
    problem_frames: list[int] = UNSET
    inferred: bool = UNSET  # true: read without keys (the browser told by its TLS fingerprint)


#: TLS alerts a browser sends for a certificate it does not accept (RFC 8446 §6.2)
CERTIFICATE_ALERTS = frozenset({"bad_certificate", "unsupported_certificate", "certificate_revoked",
                                "certificate_expired", "certificate_unknown", "unknown_ca", "access_denied"})


def _tls_outcome(c) -> tuple[str, str, list[int]]:
    """(outcome, detail in words without frames, frames) of one TLS connection of the browser."""
    gone = client_closed_in_handshake(c)
    if gone is not None:
        what = "the server's certificate" if gone["after_certificate"] else \
            "the server's encrypted handshake (its certificate)" if gone["encrypted_flight"] else "the ServerHello"
        return ("refused-in-handshake", f"the browser ended the TLS handshake after {what} "
                                        f"({gone['reason'].upper()}): it did not trust the certificate, most likely",
                [gone["frame"]])
    stall = server_stalled_in_handshake(c)
    if stall is not None:
        return ("handshake-stalled", f"the server's TLS handshake stopped arriving ({stall['waited']:.1f} s)",
                [stall["since_frame"]])
    if c.alerts:
        a = c.alerts[0]
        if a.direction == "c2s":
            why = ": it did not accept the certificate" if a.name in CERTIFICATE_ALERTS else ""
            return "alert", f"the browser ended the TLS handshake with the alert {a.name}{why}", [a.frame]
        return "alert", f"the server sent the TLS alert {a.name}", [a.frame]
    if c.handshake_done_ts is not None and (c.decrypted or c.encrypted_bytes.get("c2s")):
        return "reached", "TLS handshake completed", [c.first_frame]
    if c.client_hello is None:
        return "no-tls", "a TCP connection without a TLS handshake", [c.first_frame]
    return "handshake-stalled", "the TLS handshake did not complete", [c.first_frame]


def _connect_detail(f) -> str:
    """A failed connect in words, without frames (analyzer/attempts.py FailedConnect)."""
    n = len(f.syns)
    if f.answer == "reset":
        return "refused: accepted, then reset" if f.accepted else "refused (reset)"
    if f.answer == "unacknowledged":
        return "its answer (SYN-ACK) never reached the client"
    if f.answer == "icmp" and f.icmp:
        return f"rejected by {f.icmp.get('from')} with ICMP destination unreachable ({f.icmp.get('text')})"
    span = f.syns[-1][0] - f.syns[0][0] if n > 1 else 0.0
    return f"no answer to {n} SYN{'s' if n != 1 else ''}" + (f" over {span:.1f} s" if n > 1 else "")


class ClientIndex:
    """The pipeline's TCP connections (in time order), failed connects and DNS lookups by client address, each made
    on first use, once per reconstruction: on a gateway's capture of thousands of sessions each sign-in reads its own
    client's only, and a capture without sign-ins or lookups pays nothing."""

    def __init__(self, pipe) -> None:
        self._pipe = pipe

    @functools.cached_property
    def tcp(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for c in sorted(self._pipe.tcp.values(), key=lambda c: (c.first_ts, c.index)):
            out.setdefault(c.client[0], []).append(c)
        return out

    @functools.cached_property
    def failed(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for f in getattr(self._pipe, "failed_connects", []) or []:
            out.setdefault(f.client[0], []).append(f)
        return out

    @functools.cached_property
    def on_device(self) -> frozenset:
        """(client address, port, server address, port) of the TCP connects seen on a VPN adapter's capture
        (analyzer/tunnel_device.py): they went into the tunnel, whatever their source address (a Linux 'any'
        capture shows a packet sent from the client's own address into its tun as the tun's)."""
        devices = (getattr(self._pipe, "tunnel_devices", None) or {}).values()
        return frozenset((p.src, p.sport, p.dst, p.dport) for dev in devices if dev.named
                         for _c, _f, _t, p in dev.kept if p.proto == 6 and p.flags is not None
                         and p.flags & 0x12 == 0x02)

    @functools.cached_property
    def dns(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for k, e in (getattr(getattr(self._pipe, "dns", None), "entries", None) or {}).items():
            out.setdefault(e["client"], {})[k] = e
        return out


def read(index: ClientIndex, *, client: str, gateway: str, since: float, until: float, idp: str | None,
         browser_times: list[float], fingerprints: frozenset, inferred: bool) -> SignInPath | None:
    """The sign-in path of ``client`` between ``since`` and ``until`` (see the module's docstring); ``gateway``: the
    gateway's address; ``idp``: the identity provider's name when known; ``browser_times``: when the browser's
    requests to the gateway were answered (its connections' ends without keys); ``fingerprints``: the TLS
    fingerprints of the browser's connections to the gateway. None when nothing was found."""
    def near_browser(t: float) -> bool:
        return any(0 <= t - b <= LOOKUP_AFTER for b in browser_times)

    mine = {k: e for k, e in index.dns.get(client, {}).items() if e["queries"]
            and since <= e["queries"][0][0] <= until and e["type"] in ("A", "AAAA")}
    resolved: dict[str, str] = {}  # address -> name
    for e in mine.values():
        for a in e.get("addresses") or ():
            resolved.setdefault(a, e["name"])
    known = {a for a, n in resolved.items() if idp is None or n == idp}
    conns: list[SignInConnection] = []
    for c in index.tcp.get(client, ()):
        if c.server[0] == gateway or not since <= c.first_ts <= until:
            continue
        sni = getattr(c.client_hello, "sni", None)
        name = sni or resolved.get(c.server[0])
        if idp is not None:
            ours = (sni or "").lower() == idp or (not sni and c.server[0] in known)
        else:
            # (not by address: other programs resolve names and connect in the same seconds)
            ours = bool(fingerprints) and c.client_hello is not None and tls_client_fingerprint(c) in fingerprints
        if not ours:
            continue
        outcome, detail, frames = _tls_outcome(c) if c.is_tls or c.client_hello is not None else \
            ("no-tls", "a TCP connection without a TLS handshake", [c.first_frame])
        conns.append(SignInConnection(connection=f"tcp.stream {c.index}", server=fmt_endpoint(*c.server), name=name,
                                      time=c.first_ts, frame=c.first_frame, outcome=outcome, detail=detail,
                                      frames=frames))
    for f in index.failed.get(client, ()):
        if f.server[0] == gateway or not since <= f.first_ts <= until:
            continue
        near = near_browser(f.first_ts)
        if not ((f.server[0] in known and (idp is not None or near)) or (f.server[1] == 443 and not known and near)):
            continue
        frames = [fr for _t, fr in f.syns][:5] + ([f.answer_frame] if f.answer_frame else [])
        text = _connect_detail(f)
        conns.append(SignInConnection(connection=f"tcp.stream {f.index}", server=fmt_endpoint(*f.server),
                                      name=resolved.get(f.server[0]), time=f.first_ts, frame=f.first_frame,
                                      outcome="no-answer" if f.answer == "none" else f.answer, detail=text,
                                      frames=frames))
    conns.sort(key=lambda x: (x.time, x.frame))
    servers = {c.server.rsplit(":", 1)[0].strip("[]") for c in conns}
    lookups: list[SignInLookup] = []
    by_name: dict[str, list[dict]] = {}
    for e in sorted(mine.values(), key=lambda e: e["queries"][0]):
        by_name.setdefault(e["name"], []).append(e)
    bad = {f["name"]: f for f in failed_lookups(mine)}
    for name, es in by_name.items():
        first = es[0]["queries"][0]
        addrs = list(dict.fromkeys(a for e in es for a in e.get("addresses") or ()))
        if idp is not None and name != idp:
            continue
        if idp is None and not (name in bad and near_browser(first[0])) and not servers & set(addrs):
            continue  # (without the name: failed lookups near the browser's requests, or those of its servers)
        frames = sorted({fr for e in es for _t, fr in e["queries"]} | {e["answer_frame"] for e in es
                                                                        if e["answer_frame"] is not None})
        lookups.append(SignInLookup(name=name, answer=bad[name]["answer"] if name in bad else "resolved",
                                    addresses=addrs[:MAX_ITEMS], time=first[0], frames=frames[:10]))
    if not lookups and not conns:
        return None
    name = idp or next((c.name for c in conns if c.name), None) or next((x.name for x in lookups), None)
    reached = any(c.outcome == "reached" for c in conns)
    path = SignInPath(identity_provider=name, lookups=lookups[:MAX_ITEMS], connections=conns[:MAX_ITEMS],
                      reached=reached)
    if inferred:
        path.inferred = True
    if not reached:
        path.problem, path.problem_frames = _problem(path)
    return path


def _problem(path: SignInPath) -> tuple[str | None, list[int]]:
    """The first failure on the way to the identity provider, in words (without frames), and its frames."""
    failed = next((x for x in path.lookups if x.answer != "resolved"), None)
    if failed is not None:
        return f"the lookup of {failed.name} got no address ({failed.answer})", failed.frames[:4]
    c = next((x for x in path.connections if x.outcome != "reached"), None)
    if c is None:
        return None, []
    who = f"{c.name} ({c.server}, {c.connection})" if c.name else f"{c.server} ({c.connection})"
    if c.outcome in ("no-answer", "reset", "unacknowledged", "icmp"):
        return f"the connection to {who} failed: {c.detail}", c.frames[:6]
    return f"the TLS connection to {who} did not get through: {c.detail}", c.frames[:6]
