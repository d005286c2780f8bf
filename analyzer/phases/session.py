"""A VPN session from a group of flows: the six phases, the tunnel, the connections, evidence and client."""
from __future__ import annotations

from .. import captive_portal
from ..attempts import describe as describe_failed_connect
from ..attempts import match_icmp
from ..dns_lookups import failed as dns_failed
from ..evidence import fmt_endpoint, judge, other_traffic
from ..keyless import share_dpd_timers
from ..model import PHASES, Phase, Session
from . import cstp_connect, downloader, dtls, group_selection, inferred, sign_in, tls_handshake, tunnel, user_auth
from . import outside as outside_mod
from .grouping import (
    DOWNLOADER_PATHS,
    Group,
    another_program,
    attach_failed_connects,
    group_connections,
    groups_by_key,
    portal_visits,
    tls_client_fingerprint,
)
from .record import UNSET


def build_phases(g: Group, capture_end: float | None, client_sw: dict) -> list[Phase]:
    """The six phases of one group, in order (phase names: analyzer.model.PHASES)."""
    # keyless reading: what one channel shows of a DPD timer holds on the session's others
    share_dpd_timers([cn.c.cstp_estimate for cn in g.conns] + [f.estimate for f in g.dtls])
    tls = tls_handshake.build(g)
    grp = group_selection.build(g)
    auth = user_auth.build(g, tls)
    dl = downloader.build(g, auth, client_sw)
    cstp = cstp_connect.build(g)
    dt = dtls.build(g, cstp, capture_end)
    phases = [tls, grp, auth, dl, cstp, dt]
    assert tuple(p.phase for p in phases) == PHASES
    mark_before_capture(g, phases)
    mark_snapped(g, phases)
    mark_stalled(phases)
    inferred.apply(g, phases)
    return phases


def reconstruct(pipe, gateways=None) -> tuple[list[Session], dict, list]:
    """(VPN sessions, "other traffic" summary, its failed connects typed — [(server, FailedConnectSummary)], the
    first 20): every group of flows with AnyConnect evidence is a session."""
    groups = group_connections(pipe)
    failed = getattr(pipe, "failed_connects", [])
    match_icmp(failed, getattr(pipe, "icmp_unreachable", []))
    attach_failed_connects(groups, failed, gateways)
    by_key = groups_by_key(groups)
    verdicts = judge(groups, gateways, DOWNLOADER_PATHS)
    index = sign_in.ClientIndex(pipe)  # (each session's sign-in and DNS read their own client's traffic)
    sessions = []
    made: list[tuple] = []  # (session, its group)
    vpn_conns: set[int] = set()
    vpn_flows: set[int] = set()
    vpn_failed: set[int] = set()
    for g, verdict in zip(groups, verdicts):
        if not verdict.is_vpn:
            continue
        vpn_conns |= {id(cn.c) for cn in g.conns}
        vpn_flows |= {id(f) for f in g.dtls}
        vpn_failed |= {id(f) for f in g.failed}
        i = len(sessions) + 1
        client_sw = client_software(g)
        phases = build_phases(g, pipe.last_ts, client_sw)
        sign_in_path(index, g, phases[2])
        if g.failed and not g.conns and not g.dtls:
            _unreached(phases[0], g)
        client, gw_ip, gw_port = g.key
        starts = [c.c.first_ts for c in g.conns] + [f.first_ts for f in g.dtls] + [f.first_ts for f in g.failed]
        ends = [c.c.last_ts for c in g.conns] + [f.last_ts for f in g.dtls] + [f.end for f in g.failed]
        s = Session(id=f"s{i}", client=client, gateway=fmt_endpoint(gw_ip, gw_port),
                    start=min(starts) if starts else None, end=max(ends) if ends else None, phases=phases)
        s.tunnel = tunnel.build(g, phases[5].details)
        outside = outside_lookups(index, g, phases[4], s.end)
        if outside:
            s.tunnel.outside_lookups = outside
        elsewhere = outside_mod.read(index, g, phases[4], s.end, tunnel.inner_attempts(g))
        if elsewhere:
            s.tunnel.outside_traffic = elsewhere
        # TCP connections in time order (the failed connects among them), then the DTLS flows
        s.connections = sorted([tls_handshake.conn_summary(cn.c) for cn in g.conns] + [
            tls_handshake.failed_connect_summary(f) for f in g.failed], key=lambda c: c.start) + [
            tls_handshake.dtls_conn_summary(f) for f in g.dtls]
        # the capture files its flows were seen in (a connection may run on from one file into the next)
        caps = sorted({n for t in [cn.c for cn in g.conns] + g.dtls + g.failed for n, _ in t.numbers})
        s.captures = [pipe.captures[n] for n in caps if n < len(pipe.captures)]
        s.evidence = verdict.evidence
        s.confidence = verdict.confidence
        s.client_software = client_sw
        visits = portal_visits(by_key, g)
        if visits:  # analyzer/phases/grouping.py: a browser at the gateway's web portal before the client
            conns = [cn for h in visits for cn in h.conns]
            asked = [f"{ex.request.method} {_path(ex.request.target)}"
                     + (f" → {ex.response.status}" if ex.response is not None else "")
                     for cn in conns for ex in cn.c.exchanges][:6]
            ua = next((ex.request.headers.get("User-Agent") for cn in conns for ex in cn.c.exchanges), None)
            where = ", ".join(f"tcp.stream {cn.c.index}" for cn in conns[:4]) + (" …" if len(conns) > 4 else "")
            if asked:
                s.notes.append(f"Before the client connected, a web browser ({ua}) used the gateway's web portal on "
                               f"{where}: " + ", ".join(asked) + ". That is the user's browser (to download the "
                               "client, or the clientless portal), not part of this session's phases; its "
                               "connections are under other traffic.")
            else:  # without keys: another TLS client program (its ClientHello), before the VPN client's first
                s.notes.append(f"Before the client connected, another program on the client's machine made "
                               f"{len(conns)} TLS connection(s) to the gateway ({where}): its TLS ClientHello is "
                               "not the VPN client's — a web browser at the gateway's web portal, most likely "
                               "(inferred without keys). Not part of this session's phases; under other "
                               "traffic.")
        if g.redirected_from is not None:  # analyzer/phases/grouping.py `_follow_redirects`
            _c, rip, rport = g.redirected_from
            s.notes.append(f"The client came here on a redirect from {fmt_endpoint(rip, rport)} (its answer to the "
                           "client's first request: a load-balancing director sending it to a member, or a gateway "
                           "moved to another name); its connection is the session's first.")
        sessions.append(s)
        made.append((s, g))
    # the VPN's adapter captured too (analyzer/tunnel_device.py): its packets are a session's inside
    inside, tried = tunnel.attach_devices(pipe, sessions, pipe.captures)
    for s, g in made:  # without keys: connections outside the tunnel to what the VPN's DNS gave inside it
        if id(s) in tried and s.tunnel.outside_traffic is UNSET:
            ts = inferred.tunnels(s)
            up = next((t.established_time for t in ts if t.established_time is not None), None)
            elsewhere = outside_mod.read_inferred(index, g, up, s.end, tried[id(s)])
            if elsewhere:
                s.tunnel.outside_traffic = elsewhere
    other = other_traffic(pipe, vpn_conns, vpn_flows)
    left = [f for f in failed if id(f) not in vpn_failed and f.client[0] not in inside]
    typed = [(fmt_endpoint(*f.server), tls_handshake.failed_connect_summary(f)) for f in left[:20]]
    if left:
        # (JSON: the connection's summary, with the server it was to)
        other["failed_connects"] = [c.to_json() | {"server": server} for server, c in typed]
        # (a live snapshot's list holds open connections not counted yet: Pipeline.failed_connects_so_far)
        other["failed_connects_total"] = max(getattr(pipe, "failed_connects_total", 0), len(failed)) - (
            len(failed) - len(left))
    dns = getattr(pipe, "dns", None)
    if dns is not None and dns.entries:  # analyzer/dns_lookups.py: names no answer resolved
        bad = dns_failed({k: e for k, e in dns.entries.items() if e["client"] not in inside} if inside
                         else dns.entries)
        other["dns"] = {"lookups": len(dns.entries) + dns.overflow, "failed": bad[:20], "failed_total": len(bad)}
    portals = captive_portal.read(pipe, inside)  # analyzer/captive_portal.py: a guest network's sign-in page
    if portals:
        other["captive_portal"] = portals
    for s, prior in _tried_before(sessions, left):
        n = len(prior)
        s.notes.append(f"Before this session the client's TCP connection{'s' if n != 1 else ''} to "
                       + ", ".join(sorted({fmt_endpoint(*f.server) for f in prior})) + " failed: "
                       + "; ".join(describe_failed_connect(f) for f in prior[:3]) + (" …" if n > 3 else "")
                       + ". If that is a VPN gateway too (the first of a list of backup servers, or another address "
                         "of the gateway's name), the client could not reach it and went on to this one.")
    return sessions, other, typed


#: a failed connect this long before a session, from its client to another server on the gateway's port, is named
#: in the session's notes (a backup server list: the client tries the next one after a few seconds)
TRIED_BEFORE = 60.0


def _tried_before(sessions: list[Session], left: list) -> list[tuple[Session, list]]:
    """(session, the failed connects its client made to another server on the session's gateway port within
    `TRIED_BEFORE` seconds before the session began) for each session that has some."""
    out = []
    by_client: dict = {}  # (a gateway capture: thousands of sessions, up to a thousand failed connects)
    for f in left:
        by_client.setdefault(f.client[0], []).append(f)
    for s in sessions:
        if s.start is None or s.client not in by_client:
            continue
        port = s.gateway.rsplit(":", 1)[-1]
        prior = [f for f in by_client[s.client] if str(f.server[1]) == port
                 and fmt_endpoint(*f.server) != s.gateway and 0 <= s.start - f.first_ts <= TRIED_BEFORE]
        if prior:
            out.append((s, prior))
    return out


def _unreached(p: Phase, g: Group) -> None:
    """The tls-handshake phase of a session that is only failed TCP connects: failed, before any TLS."""
    p.status = "failed"
    for f in g.failed:
        for ts, frame in f.syns:
            p.touch(ts, frame)
        if f.answer_frame is not None:
            p.touch(f.answer_ts, f.answer_frame)
    n = len(g.failed)
    p.summary = (f"no TCP connection to the gateway ({n} attempt{'s' if n != 1 else ''}): "
                 + describe_failed_connect(g.failed[0]) + (" …" if n > 1 else ""))


_CLIENTS = (  # User-Agent prefix -> client name (AnyConnect-protocol clients as they announce themselves)
    ("Open AnyConnect VPN Agent", "openconnect"),
    ("OpenConnect", "openconnect"),
    ("Cisco AnyConnect", "Cisco AnyConnect"),
    ("AnyConnect", "Cisco AnyConnect"),
    ("Cisco Secure Client", "Cisco Secure Client"),
)


def sign_in_path(index: sign_in.ClientIndex, g: Group, auth: Phase) -> None:
    """The browser's way to the identity provider during a SAML sign-in (analyzer/phases/sign_in.py): with keys on
    `SingleSignOn.path`, without on the keyless reading's `InferredSignIn.path` (which it also marks as single
    sign-on when that program went to another server or a lookup near its requests failed)."""
    client, gateway = g.key[0], g.key[1]
    by_name = {f"tcp.stream {cn.c.index}": cn.c for cn in g.conns}
    d = auth.details
    sso = d.sso if isinstance(d, user_auth.UserAuthDetails) and d.sso is not UNSET else None
    if sso is not None:
        until = sso.token_time if sso.token_time is not UNSET else sso.offered_time + (sso.waited or 0)
        prints = frozenset(fp for b in sso.browser if (c := by_name.get(b.connection)) is not None
                           and (fp := tls_client_fingerprint(c)) is not None)
        times = [b.time for b in sso.browser]
        if not sso.browser:
            # the key log has the client's secrets, not the browser's (its own program, its own key log): its
            # connections to the gateway are told by their TLS ClientHello, not the client's, as without keys
            own = {tls_client_fingerprint(cn.c) for cn in g.conns if cn.c.decrypted}
            other = [cn.c for cn in g.conns if not cn.c.decrypted and cn.c.first_ts >= sso.offered_time
                     and another_program(cn.c, own)]
            prints = frozenset(tls_client_fingerprint(c) for c in other)
            times = _answer_times(other)
            if other:
                sso.browser_undecrypted = [f"tcp.stream {c.index}" for c in other[:10]]
        path = sign_in.read(index, client=client, gateway=gateway, since=sso.offered_time, until=until,
                            idp=(sso.identity_provider or None) if sso.identity_provider is not UNSET else None,
                            browser_times=times, fingerprints=prints, inferred=False)
        if path is not None:
            sso.path = path
        return
    inf = auth.inferred
    si = inf.sign_in if inf is not None and inf.sign_in is not UNSET else None
    if si is None:
        return
    conns = [c for name in si.connections if (c := by_name.get(name)) is not None]
    prints = frozenset(fp for c in conns if (fp := tls_client_fingerprint(c)) is not None)
    path = sign_in.read(index, client=client, gateway=gateway, since=si.since, until=si.since + si.waited, idp=None,
                        browser_times=_answer_times(conns), fingerprints=prints, inferred=True)
    if path is not None:
        si.path = path
        si.single_sign_on = bool(path.connections or path.lookups)
    if si.outcome == "went-on" and inf.status == "ok":
        went = f" and went on to {path.identity_provider}" if path is not None and path.identity_provider else ""
        if si.polls is not UNSET and not went:  # (inferred.py `_wait_pages`: a host scan that finished)
            inf.basis += (f"; right after the first answer another program on its machine connected to the gateway "
                          f"({', '.join(si.connections[:4])}), and the client then asked for the wait page "
                          f"{si.polls} times: a host scan (posture assessment) that finished, most likely")
        else:
            inf.basis += (f"; while the client waited {si.waited:.1f} s after the first answer, another program on "
                          f"its machine connected to the gateway ({', '.join(si.connections[:4])}){went}: a browser "
                          "signing in, most likely")


def _answer_times(conns) -> list[float]:
    """When the gateway answered the browser's undecrypted connections (its records' times, the first 200 each) — not
    the connections' ends: a browser keeps them open."""
    return [ts for c in conns for ts, _n, _f in c.record_sizes["s2c"][:200]]


def outside_lookups(index: sign_in.ClientIndex, g: Group, cstp: Phase, end: float | None) -> list:
    """Lookups of names in the VPN's domains (the CONNECT answer's X-CSTP-Default-Domain and X-CSTP-Split-DNS) that
    the client sent outside the tunnel — in the capture's DNS, to a server not among the tunnel's X-CSTP-DNS —
    between the CONNECT answer and the session's end: its resolver does not send them through the tunnel (the
    VPN's DNS settings not applied, or overridden). By (name, server), first query first; the first 20."""
    cd = cstp_connect.connect_details(cstp)
    params = cd.parameters if cd is not None and cd.parameters else None
    if params is None or not cd.connects or end is None:
        return []
    domains = {d.lower().strip(".") for d in [params.default_domain or "", *params.split_dns] if d.strip(".")}
    entries = index.dns.get(g.key[0]) or {}
    if not domains or not entries:
        return []
    start = min((c.response_time for c in cd.connects if c.response_time), default=None)  # (UNSET: unanswered)
    if start is None:
        return []
    ours = {str(a) for a in params.dns}
    picked = {k: e for k, e in entries.items() if e["queries"]
              and start <= e["queries"][0][0] <= end and e["server"] not in ours
              and any(e["name"] == d or e["name"].endswith("." + d) for d in domains)}
    if not picked:
        return []
    bad = {(b["name"]): b for b in dns_failed(picked)}
    by: dict = {}
    for e in sorted(picked.values(), key=lambda e: e["queries"][0]):
        x = by.setdefault((e["name"], e["server"]), tunnel.OutsideLookup(
            name=e["name"], server=e["server"], types=[], answer=bad[e["name"]]["answer"] if e["name"] in bad
            else "resolved", frames=[], time=e["queries"][0][0]))
        if e["type"] not in x.types:
            x.types.append(e["type"])
        x.frames = sorted(set(x.frames) | {fr for _t, fr in e["queries"]} |
                          ({e["answer_frame"]} if e["answer_frame"] is not None else set()))[:10]
    return list(by.values())[:20]


def client_software(g: Group) -> dict:
    """Which client this is, from what it said on the wire (User-Agent, aggregate-auth version); else unknown."""
    for cn in g.conns:
        for ex in cn.c.exchanges:
            ua = ex.request.headers.get("User-Agent")
            if not ua:
                continue
            name = next((n for prefix, n in _CLIENTS if ua.startswith(prefix)), None)
            version = None
            for _, rq, _ in cn.posts:
                if rq is not None and rq.version("vpn"):
                    version = rq.version("vpn")
                    break
            if version is None:
                version = ua.rsplit(" v", 1)[1] if " v" in ua else ua.rsplit(" ", 1)[-1] if name else None
            return {"name": name or "unknown", "version": version, "user_agent": ua,
                    "evidence": f"User-Agent frame {ex.request.frame}"}
    return {"name": "unknown", "version": None, "user_agent": None,
            "evidence": "no decrypted HTTP request (no User-Agent)"}


def mark_stalled(phases: list[Phase]) -> None:
    """A session whose only TLS handshake never reached the client (tls-handshake details.server_stalled): the
    phases after it did not happen — `absent`, not `undecrypted` (the gateway's encrypted flight, seen without keys
    from the gateway's side, carries no login)."""
    d = phases[0].details
    if getattr(d, "server_stalled", None) in (None, UNSET) or phases[0].status != "failed":
        return
    for p in phases[1:]:
        if p.status == "undecrypted":
            p.status = "absent"
            p.summary = "not reached: the TLS handshake never completed"


def mark_snapped(g: Group, phases: list[Phase]) -> None:
    """A session whose packets the capture cut short (a snapshot length: CAPTURE_TRUNCATED): phases that could
    not be read because of it are `not-captured` (their packets are in the capture, not their contents), not
    `failed` ("no ServerHello"), `absent` or `undecrypted` (no key would help). The DTLS phase is read from the
    record headers the cut datagrams kept (hellos, protected records by size), unless even those were cut."""
    conns = [cn.c for cn in g.conns]
    cut = [c for c in conns if c.snapped]
    if cut:
        # a phase not seen (absent), not read (undecrypted), or a handshake whose ServerHello was not read: what
        # the cut packets held is unknown (a phase read as failed from its contents keeps its status)
        snap = max(c.snaplen for c in cut)
        hello = all(c.server_hello is not None for c in conns)
        # records read through the cuts and sized (the suite named, or the protection they fit): the keyless
        # reading tells the phases (`undecrypted`, with `inferred`), as without keys
        sized = any(c.server_hello is not None or c.guessed_protection is not None for c in cut)
        for p in phases[:5]:
            if p.status == "absent" or (p.status == "undecrypted" and not sized) or (
                    p.phase == "tls-handshake" and p.status == "failed" and not hello):
                p.status = "not-captured"
                p.summary = (f"not readable: the capture kept at most {snap} bytes of each packet of "
                             + ", ".join(f"tcp.stream {c.index}" for c in cut[:3]) + " (a snapshot length)")
    flows = [f for f in g.dtls if f.snapped]
    read = any(f.hellos or f.server_hello or f.established_ts is not None or f.up_before_capture for f in g.dtls)
    if flows and not read and phases[5].status in ("failed", "undecrypted") and not any(f.keys_source
                                                                                        for f in g.dtls):
        # (the record headers a cut datagram keeps usually tell the hellos and the protected records:
        # DTLSFlow.on_cut_datagram; only a snapshot shorter than them leaves nothing read)
        snap = max(f.snaplen for f in flows)
        phases[5].status = "not-captured"
        phases[5].summary = (f"not readable: the capture kept at most {snap} bytes of each DTLS datagram of "
                             + ", ".join(f"udp.stream {f.index}" for f in flows[:3]) + " (a snapshot length)")


def mark_before_capture(g: Group, phases: list[Phase]) -> None:
    """A session whose first connection was already running when the capture started: phases before it did not
    happen in the capture, they happened before it ("before-capture", not "failed" or "undecrypted"). A session
    seen by its DTLS channel alone, its handshake in the capture: the TLS connection that carried the login and
    the CONNECT (which gave the DTLS keys and session id) is not in the capture ("not-captured", not "absent")."""
    if not g.conns:
        before = bool(g.dtls) and all(f.before_capture for f in g.dtls)
        for p in phases[:5] if g.dtls else ():
            if p.status in ("absent", "undecrypted", "failed"):
                p.status = "before-capture" if before else "not-captured"
                p.summary = ("before the capture started (only the DTLS channel was captured)" if before else
                             "not in the capture: no TLS connection between this client and gateway was captured "
                             "(a capture filtered to UDP, or taken where the TLS connection does not pass); the "
                             "DTLS channel shows it was made")
        return
    first = g.conns[0].c
    if not first.started_before_capture:
        return
    for p in phases[:4]:
        if p.status in ("absent", "undecrypted", "failed"):
            p.status = "before-capture"
            p.summary = f"before the capture started (tcp.stream {first.index} was already up at its first frame)"
    cstp = phases[4]
    if cstp.status in ("absent", "undecrypted") and not first.decrypted:
        records = sum(first.encrypted_records.values())
        cstp.status = "before-capture"
        cstp.summary = (f"CONNECT before the capture started; tcp.stream {first.index} carries the tunnel"
                        + (f" (not decrypted: {records} records)" if records else ""))


def _path(target: str) -> str:
    """A request target without its query (a portal URL may carry tokens)."""
    return target.split("?", 1)[0][:80]
