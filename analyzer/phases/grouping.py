"""Grouping: from connection trackers to the groups of flows that may be VPN sessions.

One group per connection attempt of a client to a gateway:
* a TLS connection whose first aggregate-auth POST is `type="init"` starts a new group;
* a connection carrying `CONNECT /CSCOSSLC/tunnel` joins the group whose webvpn cookie it presents (a second
  CONNECT in a session is a reconnect), from whatever client address (a client that roamed reconnects from its
  new one); without a known cookie it joins the latest open group of that client↔gateway pair, or starts one;
* a downloader connection (GETs only) joins the group whose cookie it presents, else the latest one;
* an undecrypted connection joins the latest group of the pair that was active within `JOIN_WINDOW` seconds
  before it, whose client did not end its tunnel (a DISCONNECT-sized last frame), and none of whose address's
  earlier tunnels still carried the client's frames a second after the connection began (then the connection is
  another user's behind the same address, a NAT: `_another_client`); else it starts a new group;
* a DTLS flow joins the group whose CONNECT gave out its ClientHello session id (X-DTLS-Session-ID or
  X-DTLS-App-ID), else the group of an earlier flow that resumed the same session id (from any client address: a
  client that moved), else the group of the same client and gateway address whose connection began last before
  it; without keys, the TLS connection a moved client makes next from its new address joins its session
  (`_join_moved_clients`).

Which groups are sessions is decided by analyzer/evidence.py (`judge`); the phase builders (the other modules of
this package) read a group's trackers and the HTTP exchanges classified here (`Conn`).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from dissectors import aggauth
from dissectors.http import hands_out_tunnel
from dissectors.redact import REDACTED, redact_headers, redact_xml
from dissectors.tls.handshake import client_fingerprint

from ..dtlsflow import DTLSFlow
from ..inference import read_connection
from ..tcptracker import TCPTracker, capture_missed
from .record import HeaderList, XMLText

JOIN_WINDOW = 120.0
DOWNLOADER_PATHS = ("/profiles/", "/CACHE/", "/+CSCOT+/", "/1/VPNManifest", "/1/binaries", "/+CSCOE+/")


#: the paths of a Cisco gateway's SAML service-provider pages (/+CSCOE+/saml/sp/login, …/acs, …/logout,
#: /+CSCOE+/saml_ac_login.html): a browser's, during single sign-on, not the downloader's
SSO_PATH_PREFIX = "/+CSCOE+/saml"


#: the host scan's (Cisco Secure Desktop, posture) paths: its token, the scan results, the wait page, its files
HOSTSCAN_PATH_PREFIXES = ("/+CSCOE+/sdesktop/", "/CACHE/sdesktop/")


def is_hostscan_path(target: str, paths=()) -> bool:
    """A request of the host scan (the client's CSD script, or the client waiting for the evaluation), not the
    downloader's: under the gateway's sdesktop paths, or a URI the init answer's <host-scan> named (``paths``)."""
    return target.startswith(HOSTSCAN_PATH_PREFIXES) or target.split("?")[0] in paths


def is_sso_path(target: str, paths=()) -> bool:
    """A request target of the user's browser during SAML single sign-on: a SAML page of the gateway, or one of the
    sign-in URLs the gateway's auth-request named (``paths``)."""
    return target.startswith(SSO_PATH_PREFIX) or target in paths


def redact_sso_location(url: str) -> str:
    """``url`` without the sealed token of a redirect to the client's http://localhost:29786/api/sso/<token>."""
    head, sep, rest = url.partition("/api/sso/")
    if not sep:
        return url
    _blob, q, query = rest.partition("?")
    return head + sep + REDACTED + (q + query if q else "")


def client_closed_in_handshake(c) -> dict | None:
    """The client's FIN or reset on a TLS connection whose handshake it never finished (ServerHello seen, no alert;
    in TLS 1.3 without keys: no encrypted record from the client, not even its Finished), or None: {frame, time,
    reason, after_certificate (the server's Certificate was read before it), encrypted_flight (TLS 1.3: the server's
    encrypted handshake records came before it)}."""
    if c.server_hello is None or c.alerts or server_stalled_in_handshake(c) is not None:
        return None  # (a flight that never reached the client: it refused nothing)
    tls13 = c.server_hello.version >= 0x0304
    if c.handshake_done_ts is not None and not (tls13 and not c.decrypted and not c.encrypted_bytes.get("c2s")):
        return None
    gone = next((x for x in c.closed or [] if x.get("direction") == "c2s"), None)
    if gone is None:
        return None
    if capture_missed(c, "c2s"):
        return None  # the capture missed some of what the client sent: its handshake may be in it
    cert = c.certificates
    return {"frame": gone["frame"], "time": gone["ts"], "reason": gone["reason"],
            "after_certificate": cert is not None and cert.frame <= gone["frame"],
            "encrypted_flight": tls13 and bool(c.encrypted_bytes.get("s2c"))}


#: seconds without the server's next handshake message before the client gave up (or the capture ended) that make a
#: handshake stalled (`server_stalled_in_handshake`): a slow gateway answers within a second or two
STALL_SECONDS = 5.0


def server_stalled_in_handshake(c) -> dict | None:
    """The server's side of a TLS handshake that stopped arriving, or None. Seen from the client's side: the
    ClientHello went out, the server sent nothing after it (no ServerHello) or only its ServerHello (not the
    certificate, nor TLS 1.3's encrypted flight). Seen from the gateway's side: the server's flight after the
    ServerHello went out and was sent again (two retransmissions or more), the client never answered it. Either way
    no alert, and the client closed the connection (or the capture ended) `STALL_SECONDS` or more after the
    ServerHello (the ClientHello when there is none) — what a path MTU black hole does (the server's flight fills
    full-size packets that a smaller link drops, its ICMP "fragmentation needed" lost), or a server that hung.
    {since_frame, since_time (the ServerHello, else the ClientHello), waited (seconds), closed_frame (the client's
    FIN or reset, None when the capture ended first), server_hello (bool), retransmitted (the server's
    retransmissions: > 0 on the gateway's side)}. Not for a connection the capture cut short (a snapshot length)."""
    ch, sh = c.client_hello, c.server_hello
    if ch is None or c.alerts or c.snapped or c.app_bytes.get("s2c") or c.app_bytes.get("c2s") \
            or c.encrypted_bytes.get("c2s"):
        return None
    again = c.retransmissions.get("s2c", 0)
    flight = c.certificates is not None or bool(c.encrypted_bytes.get("s2c"))
    if flight and (sh is None or again < 2):
        return None  # the flight arrived (the client's side) and was not sent again: no stall
    if not flight and (c.handshake_done_ts is not None or (sh is None and c.segments.get("s2c"))):
        return None  # (the server sent data, but no ServerHello: something else)
    since_ts, since_frame = (sh.ts, sh.frame) if sh is not None else (ch.ts, ch.frame)
    gone = next((x for x in c.closed or [] if x.get("direction") == "c2s"), None)
    end = gone["ts"] if gone is not None else c.last_ts
    if end - since_ts < STALL_SECONDS:
        return None
    return {"since_frame": since_frame, "since_time": since_ts, "waited": round(end - since_ts, 3),
            "closed_frame": gone["frame"] if gone is not None else None, "server_hello": sh is not None,
            "retransmitted": again if flight else 0}


def cookie(headers, name: str = "webvpn") -> str | None:
    for value in headers.get_all("Cookie"):
        for part in value.split(";"):
            k, _, v = part.strip().partition("=")
            if k == name and v:
                return v
    return None


def set_cookie(headers, name: str = "webvpn") -> str | None:
    for value in headers.get_all("Set-Cookie"):
        k, _, rest = value.partition("=")
        if k.strip() == name:
            v = rest.split(";", 1)[0].strip()
            if v:
                return v
    return None


def config_auth(body: bytes, refused: list | None = None):
    if not body or b"config-auth" not in body[:4096] and b"<auth" not in body[:4096]:
        return None
    ca = aggauth.parse_config_auth(body)
    if isinstance(ca, aggauth.AggAuthError):
        if refused is not None:
            refused.append(ca)
        return None
    return ca


def headers_view(headers) -> HeaderList:
    raw = [[k, v] for k, v in headers]
    red = [[k, v] for k, v in redact_headers(headers)]
    return HeaderList(raw, red)


def xml_view(body: bytes, secret_fields=()) -> XMLText:
    text = body.decode("utf-8", "replace")
    return XMLText(text, redact_xml(body, secret_fields))


def to_int(v) -> int | None:
    try:
        return int(str(v).strip()) if v is not None else None
    except ValueError:
        return None


def is_form(req) -> bool:
    """A legacy urlencoded login POST (never an XML document that failed to parse: its text is not field names)."""
    ctype = (req.headers.get("Content-Type") or "").lower()
    body = req.body.lstrip()
    if body.startswith(b"<") or "xml" in ctype:
        return False
    return "x-www-form-urlencoded" in ctype or b"=" in body[:200]


def form_fields(body: bytes) -> list[str]:
    from urllib.parse import parse_qsl

    try:
        return [k for k, _ in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)][:50]
    except ValueError:
        return []


#: User-Agent markers of the AnyConnect-protocol clients and their own components (downloader, embedded browser):
#: a request that carries none of them behind a browser's "Mozilla/" is a desktop browser's
_CLIENT_MARKERS = ("anyconnect", "openconnect", "cisco", "secure client")


def is_browser(headers) -> bool:
    """A request a desktop browser made (its User-Agent), not an AnyConnect-protocol client or its components."""
    ua = (headers.get("User-Agent") or "").strip()
    return ua.startswith("Mozilla/") and not any(m in ua.lower() for m in _CLIENT_MARKERS)


class Conn:
    """A TCP connection seen by the session builder, with what it carried at the HTTP level."""

    def __init__(self, c: TCPTracker):
        self.c = c
        self.kind = "unknown"
        self.posts: list = []  # (Exchange, ConfigAuth request, ConfigAuth response)
        self.form_posts: list = []  # legacy (pre-aggregate-auth) urlencoded login POSTs
        #: GETs (and HEADs), and a browser's POSTs to the gateway's SAML pages (the identity provider's response to
        #: the assertion consumer service: the user's sign-in, no login round of the client)
        self.gets: list = []
        self.connects: list = []
        self.cookies_presented: set[str] = set()
        self.cookies_issued: set[str] = set()
        for ex in c.exchanges:
            req = ex.request
            ck = cookie(req.headers)
            if ck:
                self.cookies_presented.add(ck)
            if ex.response is not None:
                sc = set_cookie(ex.response.headers)
                if sc:
                    self.cookies_issued.add(sc)
            if req.method == "POST" and is_sso_path(req.target) and config_auth(req.body) is None:
                self.gets.append(ex)
            elif req.method == "POST":
                refused: list = []
                rq = config_auth(req.body, refused)
                rs = config_auth(ex.response.body, refused) if ex.response is not None else None
                for err in refused:  # hostile or oversized aggregate-auth XML: say so in the report
                    c.add_problem("limit", f"aggregate-auth XML refused ({err.kind}): {err.message}",
                               req.ts, req.frame)
                if rs is not None and rs.session_token:
                    self.cookies_issued.add(rs.session_token)
                if rq is None and is_form(req):
                    self.form_posts.append(ex)
                self.posts.append((ex, rq, rs))
            elif req.method == "" and ex.response is not None:
                # an answer whose request the capture missed (analyzer/tcptracker.py): an aggregate-auth answer is a
                # login round all the same, its request unknown; one that hands out a tunnel answers a CONNECT
                rs = config_auth(ex.response.body)
                if hands_out_tunnel(ex.response.headers):
                    self.connects.append(ex)
                elif rs is not None:
                    if rs.session_token:
                        self.cookies_issued.add(rs.session_token)
                    self.posts.append((ex, None, rs))
            elif req.method == "CONNECT":
                self.connects.append(ex)
            elif req.method in ("GET", "HEAD"):
                self.gets.append(ex)
        if self.connects:
            self.kind = "tunnel"
        elif c.exchanges and all(is_browser(ex.request.headers) and not is_sso_path(ex.request.target)
                                 and not is_hostscan_path(ex.request.target) for ex in c.exchanges) \
                and not any(rq is not None or rs is not None for _ex, rq, rs in self.posts):
            # a desktop browser at the gateway's web portal (its logon page, form login, portal page; web launch):
            # the user's, not the client's — never a phase of its session (`portal_visits`)
            self.kind = "portal"
        elif self.posts:
            self.kind = "auth"
        elif self.gets:
            self.kind = "downloader"
        elif not c.decrypted and client_closed_in_handshake(c) is None and \
                not (c.handshake_done_ts is None and not sum(c.encrypted_bytes.values())):
            # (a handshake that never finished carried nothing to decrypt: its later phases are absent)
            self.kind = "undecrypted"

    @property
    def starts_with_init(self) -> bool:
        return bool(self.posts) and self.posts[0][1] is not None and self.posts[0][1].type == "init"


class Group:
    """A group of flows: the TLS connections of one client to one server address and port (one attempt), with
    the DTLS flows that belong to them. A session when analyzer/evidence.py says so."""

    def __init__(self, key):
        self.key = key
        self.conns: list[Conn] = []
        self.dtls: list[DTLSFlow] = []
        self.cookies: set[str] = set()
        self.has_tunnel = False
        self.last_ts = 0.0
        self.redirected_from: tuple | None = None  # (client, gateway, port) that redirected the client here
        self.portal = False  # a desktop browser's visit to the gateway's web portal, not a client's session
        #: the client's TCP connects to the gateway that never carried data (analyzer/attempts.py), given by
        #: `attach_failed_connects`
        self.failed: list = []

    def add(self, conn: Conn) -> None:
        self.conns.append(conn)
        self.cookies |= conn.cookies_issued | conn.cookies_presented
        self.has_tunnel = self.has_tunnel or conn.kind == "tunnel"
        self.last_ts = max(self.last_ts, conn.c.last_ts)


def missed_after(g: Group, since: float, direction: str | None = None) -> dict | None:
    """The first stretch of TCP data the capture misses (its own loss: not a snapshot length's cut) on the group's
    connections, given up on after ``since`` (in ``direction`` only, when given), with the connection's stream
    number (`conn`); None when it misses nothing there. What an exchange under way then carried may be in it."""
    gaps = [dict(gp, conn=cn.c.index) for cn in g.conns for gp in capture_missed(cn.c, direction, since)]
    return min(gaps, key=lambda x: x["ts"]) if gaps else None


def tunnel_seen_after(g: Group, since: float) -> str | None:
    """How the group's tunnel shows it came up after ``since`` — a CONNECT answered 2xx, else a DTLS channel
    established — or None."""
    for cn in g.conns:
        for ex in getattr(cn.c, "exchanges", ()):
            if (ex.request.method == "CONNECT" and ex.request.ts >= since and ex.response is not None
                    and 200 <= (ex.response.status or 0) < 300):
                return f"CONNECT answered {ex.response.status}"
    for f in g.dtls:
        if f.established_ts is not None and f.established_ts >= since:
            return "DTLS established"
    return None


def group_connections(pipe) -> list[Group]:
    conns = [Conn(c) for c in sorted(pipe.tcp.values(), key=lambda c: (c.first_ts, c.index)) if c.is_tls]
    dtls_of: dict = {}  # (client address, gateway address) -> its DTLS flows
    for flow in pipe.udp.values():
        dtls_of.setdefault((flow.client[0], flow.server[0]), []).append(flow)
    groups: list[Group] = []
    latest: dict = {}
    # indexes, so that a capture of thousands of clients is not grouped in quadratic time: the groups of each
    # client↔gateway pair in the order they were made, and the latest-made group holding each cookie
    order: dict[int, int] = {}
    by_key: dict = {}
    by_cookie: dict = {}

    def new_group(key, portal: bool = False) -> Group:
        g = Group(key)
        g.portal = portal
        order[id(g)] = len(groups)
        groups.append(g)
        by_key.setdefault(key, []).append(g)
        return g

    for cn in conns:
        key = (cn.c.client[0], cn.c.server[0], cn.c.server[1])
        last = latest.get(key)
        target = None
        if cn.kind == "portal":
            # the browser's connections together (one visit: logon, form login, portal page), apart from the
            # client's; the latest group of the pair stays the client's
            target = next((h for h in reversed(by_key.get(key, ())) if h.portal
                           and cn.c.first_ts - h.last_ts <= JOIN_WINDOW), None) or new_group(key, portal=True)
            target.add(cn)
            continue
        if cn.kind == "auth" and cn.starts_with_init:
            target = None  # a new attempt
        elif cn.kind in ("tunnel", "downloader", "auth"):
            # the session's cookie wins over the client's address: a client that roamed to another network (or
            # whose NAT changed its address) reconnects to the same gateway with it from its new address
            holders = [h for ck in cn.cookies_presented if (h := by_cookie.get((key[1], key[2], ck))) is not None]
            target = max(holders, key=lambda h: order[id(h)]) if holders else None
            if target is None and last is not None and (cn.kind != "tunnel" or not last.has_tunnel):
                target = last
        elif last is not None:
            # the latest group of the pair this connection may continue: active within JOIN_WINDOW, its client
            # did not end it (DISCONNECT), no other client's tunnel still in use (see `_another_client`)
            flows = dtls_of.get((cn.c.client[0], cn.c.server[0]), ())
            target = next((h for h in reversed(by_key.get(key, ())) if not h.portal
                           and cn.c.first_ts - h.last_ts <= JOIN_WINDOW
                           and not _ended_by_client(h, cn.c.first_ts) and not _another_client(h, cn, flows)), None)
        if target is None:
            target = new_group(key)
        target.add(cn)
        for ck in target.cookies:
            held = by_cookie.get((key[1], key[2], ck))
            if held is None or order[id(held)] < order[id(target)]:
                by_cookie[(key[1], key[2], ck)] = target
        latest[key] = target
    # DTLS flows
    by_conn = {id(cn.c): g for g in groups for cn in g.conns}
    by_pair: dict = {}  # (client address, gateway address) -> its groups (no portal visit), in order
    with_tunnel: dict = {}  # client address -> its groups with a tunnel, in order
    for g in groups:
        if not g.portal:
            by_pair.setdefault((g.key[0], g.key[1]), []).append(g)
        if g.has_tunnel:
            with_tunnel.setdefault(g.key[0], []).append(g)
    by_session: dict = {}  # (DTLS session id a ClientHello resumed, gateway address) -> the group of its first flow
    up_times: dict = {}  # id(group) -> when its keyless tunnels came up (`_tunnel_just_up`, read once)
    for flow in sorted(pipe.udp.values(), key=lambda f: f.first_ts):
        g = None
        info = pipe.dtls_keys.get(flow.session_id) if flow.session_id else None
        if info is not None:
            g = by_conn.get(id(info.connection))
        sid = (bytes(flow.session_id), flow.server[0]) if flow.session_id and len(flow.session_id) == 32 else None
        if g is None and sid is not None:
            # the tunnel's DTLS session id, resumed in the clear: the same session, whatever the client's address
            # now (a client that moved resumes it from its new address before its TLS connection comes back)
            g = by_session.get(sid)
        if g is None:
            cands = by_pair.get((flow.client[0], flow.server[0]), [])
            if not cands and anyconnect_hello(flow):
                # a resuming hello to another address than the gateway: same client, a tunnel up
                cands = with_tunnel.get(flow.client[0], [])
            before = [g2 for g2 in cands
                      if (g2.conns[0].c.first_ts if g2.conns else g2.dtls[0].first_ts) <= flow.first_ts]
            # the group whose connection began last before the flow (groups of one address can interleave: two
            # users behind one NAT, a reconnect joining the older one): its tunnel is the one the flow came from
            g = max(before, key=lambda g2: max((c.c.first_ts for c in g2.conns if c.c.first_ts <= flow.first_ts),
                                               default=g2.dtls[0].first_ts if g2.dtls else float("-inf"))) \
                if before else (cands[0] if cands else None)
        if g is None and anyconnect_hello(flow):
            g = _tunnel_just_up(groups, flow, up_times)
        if g is None:
            g = Group((flow.client[0], flow.server[0], flow.server[1]))
            groups.append(g)
            by_pair.setdefault((g.key[0], g.key[1]), []).append(g)
        g.dtls.append(flow)
        if sid is not None:
            by_session.setdefault(sid, g)
    _join_moved_clients(groups)
    _split_concurrent_tunnels(groups)
    _split_other_programs(groups)
    groups.sort(key=_start)
    return _follow_redirects(groups)


SAME_CLIENT_GRACE = 1.0  # seconds a client's old connection may still carry its records after it opened a new one


def _tunnel_sent_after(flow, t: float) -> bool:
    """The client of a tunnel — an undecrypted TLS connection whose records include CSTP control frames (DPD,
    keepalive: no HTTP exchange has records that small), or a DTLS flow — sent a record that can hold a tunnel
    frame after ``t`` (their record-size reading, analyzer/keyless.py)."""
    if isinstance(flow, TCPTracker):
        est = flow.cstp_estimate
        if est is None or not any(d.control for d in est.dirs.values()):
            return False
    else:
        est = flow.estimate
    last = est.last_frame("c2s") if est is not None else None
    return last is not None and last > t


def _keyless_tunnel(c: TCPTracker) -> bool:
    """An undecrypted TLS connection whose records, read by size, include CSTP control or DISCONNECT frames."""
    est = c.cstp_estimate
    return not c.decrypted and est is not None and any(d.control or d.disconnect for d in est.dirs.values())


def _ended_by_client(g: Group, before: float) -> bool:
    """Without keys: the client of the group ended its tunnel before ``before`` (its last tunnel connection's record
    from the client of a DISCONNECT's size came before it): a later connection of that address is a new login, not
    this session's (a connection made while the session still went on — a browser signing in — is)."""
    tunnels = [cn.c for cn in g.conns if _keyless_tunnel(cn.c)]
    if not tunnels or not tunnels[-1].cstp_estimate.dirs["c2s"].disconnect:
        return False
    est = tunnels[-1].cstp_estimate
    ends = [e[2] for e in est.controls if e[0] == "c2s" and e[3] == "DISCONNECT"]
    return (min(ends) if ends else tunnels[-1].last_ts) < before


def _another_client(g: Group, cn: Conn, dtls_flows) -> bool:
    """Without keys, users behind one address (a NAT: an office, a hotel, carrier-grade NAT) look like one client:
    the undecrypted connection ``cn`` is another client's, not the group's next connection, when a tunnel of that
    address that began before it — a tunnel connection of the group, or a DTLS flow to the same gateway — went on
    carrying the client's frames more than SAME_CLIENT_GRACE seconds after ``cn`` began. A client runs one tunnel:
    one that reconnects has given its old tunnel up, and its other connections during a tunnel (a host scan, a
    download) are no tunnel of their own; HTTP on two connections at once (a login beside a host scan) is no
    sign of two clients."""
    t = cn.c.first_ts + SAME_CLIENT_GRACE
    return any(_tunnel_sent_after(c.c, t) and _tunnel_began_before(c.c, cn.c.first_ts) for c in g.conns) or \
        any(_tunnel_sent_after(f, t) for f in dtls_flows if f.first_ts < cn.c.first_ts)


def _tunnel_began_before(c: TCPTracker, t: float) -> bool:
    """The undecrypted tunnel connection ``c`` carried its tunnel before ``t``: its CONNECT round (read without keys,
    analyzer/inference.py) was answered before it, or it was up when the capture started. A connection that logs in
    and then carries the tunnel is no tunnel while its login goes on — a browser signing in (SAML) connects then."""
    if c.started_before_capture:
        return True
    r = read_connection(c, [])
    rd = r.connect_round
    if rd is None:
        return True  # (no CONNECT round found: the tunnel's start unknown — as before, its frames count)
    return (rd.end if rd.end is not None else rd.start) < t


#: ClientHello extensions whose presence varies between the connections of one TLS client: padding (with the
#: hello's length), a resumption's session ticket / pre-shared key / early data, the HelloRetryRequest's cookie
def tls_client_fingerprint(c: TCPTracker) -> tuple | None:
    """What a TLS client program's ClientHellos all have (`client_fingerprint`): one for the VPN client's own
    connections (login, tunnel), another for a browser on the same machine. None: no ClientHello."""
    ch = c.client_hello
    return None if ch is None else client_fingerprint(ch)


def another_program(c: TCPTracker, own) -> bool:
    """The connection ``c`` was made by another TLS client program than the one whose fingerprints are ``own``
    (`tls_client_fingerprint`): a browser, a host scan's script; False when it has no ClientHello to tell by."""
    fp = tls_client_fingerprint(c)
    return fp is not None and fp not in own


def _split_other_programs(groups: list[Group]) -> None:
    """Without keys: the undecrypted connections of a group made before the client's first connection with its
    tunnel connection's TLS fingerprint (`tls_client_fingerprint`), by another TLS client program, are not the
    session's: a browser at the gateway's web portal before the client started (with keys: its User-Agent, `Conn`
    kind "portal"). They become a group of their own, marked as a portal visit. Connections of other programs
    after the client's first (a downloader of its own, a host scan's script) stay: the client ran them."""
    for g in list(groups):
        if g.portal or len(g.conns) < 2 or any(cn.c.decrypted for cn in g.conns):
            continue
        tunnel = next((cn.c for cn in reversed(g.conns) if _keyless_tunnel(cn.c)), None)
        mark = tls_client_fingerprint(tunnel) if tunnel is not None else None
        if mark is None:
            continue
        first = next(i for i, cn in enumerate(g.conns) if tls_client_fingerprint(cn.c) == mark)
        others = [cn for cn in g.conns[:first] if another_program(cn.c, (mark,))]
        if not others:
            continue
        visit = Group(g.key)
        visit.portal = True
        for cn in others:
            visit.add(cn)
        g.conns = [cn for cn in g.conns if cn not in others]
        g.last_ts = max([cn.c.last_ts for cn in g.conns], default=g.last_ts)
        groups.append(visit)


DTLS_AFTER_CONNECT = 5.0  # seconds from a CONNECT answer within which its client's first DTLS hello comes


DTLS_AFTER_CONNECT = 2.0  # seconds: a client sends its DTLS ClientHello this soon after the CONNECT answer


def _tunnel_just_up(groups: list[Group], flow: DTLSFlow, up_times: dict) -> Group | None:
    """Without keys, an AnyConnect DTLS flow from an address no TLS connection came from: the group whose tunnel to
    the same gateway address came up (its CONNECT answer, read from record sizes) at most DTLS_AFTER_CONNECT seconds
    before the flow's first ClientHello and that has no DTLS flow of its own — when exactly one has. The TLS came from
    another address than the DTLS: a device that ends the client's TLS and opens its own (TLS inspection), or a NAT
    that maps TCP and UDP to different addresses (the gateway's capture). With keys, the CONNECT's DTLS session id
    ties them (`pipe.dtls_keys`). ``up_times``: the groups' tunnel-up times, read once per grouping."""
    found = []
    for g in groups:
        if g.dtls or g.portal or g.key[1] != flow.server[0]:
            continue
        ups = up_times.get(id(g))
        if ups is None:
            ups = up_times[id(g)] = [_tunnel_up_at(cn.c) for cn in g.conns if cn.kind == "undecrypted"
                                     and _keyless_tunnel(cn.c) and not cn.c.started_before_capture]
        if any(0.0 <= flow.first_ts - t <= DTLS_AFTER_CONNECT for t in ups):
            found.append(g)
    return found[0] if len(found) == 1 else None


def _tunnel_up_at(c: TCPTracker) -> float:
    """When the undecrypted tunnel connection ``c`` carried its tunnel: its CONNECT round's answer (read without keys,
    analyzer/inference.py), else its first packet."""
    if c.started_before_capture:
        return c.first_ts
    rd = read_connection(c, []).connect_round
    return (rd.end if rd.end is not None else rd.start) if rd is not None else c.first_ts


def _last_sent(c: TCPTracker) -> float:
    """The time of the client's last tunnel record on ``c`` (its record-size reading), else its last packet."""
    est = c.cstp_estimate
    t = est.last_frame("c2s") if est is not None else None  # (a time: see TunnelEstimate.last_frame)
    return t if t is not None else c.last_ts


def _disconnected_at(c: TCPTracker) -> float | None:
    """When the client of the undecrypted tunnel connection ``c`` sent its first DISCONNECT-sized record, or None."""
    est = c.cstp_estimate
    ends = [e[2] for e in est.controls if e[0] == "c2s" and e[3] == "DISCONNECT"] if est is not None else []
    return min(ends) if ends else None


def _split_concurrent_tunnels(groups: list[Group]) -> None:
    """Without keys, two clients behind one address (a NAT: an office, carrier-grade NAT; the gateway's capture) that
    log in at the same time are one group: each connection began before the other's tunnel was up, so
    `_another_client` could not tell. A client runs one tunnel at a time (a reconnect gives the old one up), so
    tunnel connections of a group whose tunnels overlap — one's client still sending tunnel records more than
    SAME_CLIENT_GRACE seconds after the other's CONNECT was answered, or ending its tunnel with a DISCONNECT
    after it (a client that reconnects has given its old tunnel up: it disconnects none) — are different
    clients' sessions. The group is split into chains of tunnels that do not overlap (a reconnect continues the
    chain whose tunnel ended last before it); each other TLS connection goes with the chain whose first tunnel
    came next after it began (the login before its tunnel); each DTLS flow with the tunnel whose CONNECT was
    answered closest before its first hello (one flow each first, within DTLS_AFTER_CONNECT seconds), the rest
    with the tunnel last up before them. A group with a decrypted connection is left as the cookies made it."""
    for g in list(groups):
        if g.portal or any(cn.c.decrypted for cn in g.conns):
            continue
        tunnels = [cn for cn in g.conns if _keyless_tunnel(cn.c)]
        if len(tunnels) < 2:
            continue
        up = {id(cn): _tunnel_up_at(cn.c) for cn in tunnels}
        last = {id(cn): _last_sent(cn.c) for cn in tunnels}
        bye = {id(cn): _disconnected_at(cn.c) for cn in tunnels}

        chains: list[list[Conn]] = []
        for cn in sorted(tunnels, key=lambda x: up[id(x)]):
            t = up[id(cn)]
            # (the chain's last tunnel given up by then: its client's last record within the grace, no DISCONNECT
            # after it)
            free = [ch for ch in chains if last[id(ch[-1])] <= t + SAME_CLIENT_GRACE
                    and (bye[id(ch[-1])] is None or bye[id(ch[-1])] <= t)]
            if free:
                max(free, key=lambda ch: last[id(ch[-1])]).append(cn)
            else:
                chains.append([cn])
        if len(chains) < 2:
            continue
        parts = [Group(g.key) for _ in chains]
        for part, ch in zip(parts, chains):
            for cn in ch:
                part.add(cn)
        firsts = [up[id(ch[0])] for ch in chains]
        tunnel_ids = {id(cn) for cn in tunnels}
        for cn in g.conns:
            if id(cn) in tunnel_ids:
                continue
            after = [i for i, t in enumerate(firsts) if t >= cn.c.first_ts]
            i = min(after, key=lambda i: firsts[i]) if after else max(range(len(chains)), key=lambda i: firsts[i])
            parts[i].add(cn)
        for part in parts:
            part.conns.sort(key=lambda cn: (cn.c.first_ts, cn.c.index))
        answered = sorted(((up[id(cn)], i, last[id(cn)]) for i, ch in enumerate(chains) for cn in ch))
        pairs = sorted((f.first_ts - t, k, i) for k, f in enumerate(g.dtls) for t, i, _e in answered
                       if 0 <= f.first_ts - t <= DTLS_AFTER_CONNECT)
        took: dict[int, int] = {}  # DTLS flow -> the chain whose first flow it is
        for _d, k, i in pairs:
            if k not in took and i not in took.values():
                took[k] = i
        for k, f in enumerate(g.dtls):
            i = took.get(k)
            if i is None:  # (a later flow: the tunnel still up then, else the one up last before it)
                before = [(e >= f.first_ts - SAME_CLIENT_GRACE, t, i) for t, i, e in answered if t <= f.first_ts]
                i = max(before)[2] if before else answered[0][1]
            parts[i].dtls.append(f)
        at = groups.index(g)
        groups[at:at + 1] = parts


MOVE_WINDOW = 120.0  # seconds from a moved client's last DTLS packet to its TLS connection from the new address


def _join_moved_clients(groups: list[Group]) -> None:
    """Without keys, a client that moved to another address: the DTLS flow it resumed the session's DTLS session id
    with from its new address is in the session's group (above); the first group of TLS connections it made from
    that address to the same gateway, after that flow began and within MOVE_WINDOW seconds of its last packet, is
    the session going on (its reconnect: the cookie that says so in a decrypted capture is encrypted here). A
    group with a decrypted connection is left as the cookies made it."""
    for g in list(groups):
        if g not in groups:
            continue
        for flow in [f for f in g.dtls if f.client[0] != g.key[0]]:
            later = [h for h in groups if h is not g and h.key == (flow.client[0], *g.key[1:]) and h.conns
                     and not any(cn.c.decrypted for cn in h.conns)
                     and flow.first_ts <= h.conns[0].c.first_ts <= flow.last_ts + MOVE_WINDOW]
            if not later:
                continue
            h = min(later, key=lambda x: x.conns[0].c.first_ts)
            for cn in h.conns:
                g.add(cn)
            g.dtls = sorted(g.dtls + h.dtls, key=lambda f: f.first_ts)
            groups.remove(h)


REDIRECT_WINDOW = 30.0  # seconds from a gateway's redirect to the client's connection to where it pointed


def _start(g: Group) -> float:
    """When a group began: its flows' first packet (a group of failed connects only: its first SYN)."""
    return min([c.c.first_ts for c in g.conns] + [f.first_ts for f in g.dtls] or [f.first_ts for f in g.failed])


def _span(g: Group) -> tuple[float, float]:
    """(first, last) packet time of a group's flows and failed connects."""
    firsts = [c.c.first_ts for c in g.conns] + [f.first_ts for f in g.dtls] + [f.first_ts for f in g.failed]
    lasts = [c.c.last_ts for c in g.conns] + [f.last_ts for f in g.dtls] + [f.end for f in g.failed]
    return min(firsts), max(lasts)


def attach_failed_connects(groups: list[Group], failed: list, gateways=None) -> None:
    """Give each failed TCP connect (analyzer/attempts.py) to the group of the same client address and gateway
    address and port whose flows it is nearest to in time (within `JOIN_WINDOW`: a reconnect attempt that got no
    answer, a first SYN dropped before the connection that worked); one that no group takes and whose server
    --gateway names (``gateways``, analyzer/evidence.py GatewaySpec) starts a group of its own, joined by the
    client's next ones within `JOIN_WINDOW` (the client could not reach the gateway: a session with no TLS). Those
    groups go into ``groups`` in time order."""
    if not failed:
        return
    by_key: dict = {}
    for g in groups:
        if not g.portal and (g.conns or g.dtls):
            by_key.setdefault(g.key, []).append(g)
    spans = {id(g): _span(g) for gs in by_key.values() for g in gs}
    own: dict = {}  # key -> the latest group made of failed connects only
    made = []
    for f in failed:
        key = (f.client[0], f.server[0], f.server[1])
        best, gap = None, None
        for g in by_key.get(key, ()):
            lo, hi = spans[id(g)]
            d = 0.0 if lo <= f.first_ts <= hi else min(abs(f.first_ts - lo), abs(f.first_ts - hi))
            if d <= JOIN_WINDOW and (gap is None or d < gap):
                best, gap = g, d
        # (--gateway ADDR without a port: the connects to its port 443 only)
        if best is None and gateways and any(gw.matches(f.server[0], f.server[1])
                                             and (gw.port is not None or f.server[1] == 443) for gw in gateways):
            best = own.get(key)
            if best is None or f.first_ts - best.failed[-1].last_ts > JOIN_WINDOW:
                best = own[key] = Group(key)
                made.append(best)
        if best is not None:
            best.failed.append(f)
    if made:
        groups += made
        # (the groups of flows keep their order: by their flows' first packet, as group_connections sorted them)
        groups.sort(key=_start)


def redirect_of(ex) -> str | None:
    """The host an HTTP answer sends the client to (a 3xx with a Location naming a host), else None."""
    resp = ex.response
    if resp is None or not 300 <= resp.status < 400:
        return None
    where = resp.headers.get("Location") or ""
    try:
        return urlsplit(where).hostname
    except ValueError:
        return None


def _follow_redirects(groups: list[Group]) -> list[Group]:
    """A gateway that answered the client's first request with a redirect to another host (a load-balancing
    director sending the client to the least-loaded member; a portal moved to another name) is the start of the
    session the client then made there: its connections join the group of the same client at that host (address,
    or the name the client's TLS ClientHello gave) that started within REDIRECT_WINDOW seconds after."""
    out = list(groups)
    for g in groups:
        if g.has_tunnel or not g.conns or g.portal:
            continue
        last = next((ex for cn in reversed(g.conns) for ex, _rq, _rs in reversed(cn.posts)), None)
        host = redirect_of(last) if last is not None else None
        if not host or host == g.key[1]:
            continue
        t = last.response.ts
        for h in out:
            if h is g or not h.conns or h.key[0] != g.key[0]:
                continue
            start = h.conns[0].c.first_ts
            ch = h.conns[0].c.client_hello
            if t <= start <= t + REDIRECT_WINDOW and host in (h.key[1], getattr(ch, "sni", None)):
                h.conns[:0] = g.conns
                h.dtls[:0] = g.dtls
                h.cookies |= g.cookies
                h.redirected_from = g.key
                out.remove(g)
                break
    return out


def anyconnect_hello(flow: DTLSFlow) -> bool:
    """A DTLS ClientHello as AnyConnect-protocol clients send it: resuming a 32-byte session id, or 0x0100."""
    return any(len(h.get("session_id") or "") == 64 or h.get("session_id_length") == 32 or h.get("version") == 0x0100
               for h in flow.hellos[:4])


def any_undecrypted(g: Group) -> bool:
    return any(cn.kind == "undecrypted" for cn in g.conns)


def posts(g: Group):
    """Every POST of the group: (Conn, exchange, request ConfigAuth or None, response ConfigAuth or None)."""
    for cn in g.conns:
        for ex, rq, rs in cn.posts:
            yield cn, ex, rq, rs


def portal_visits(by_key: dict, g: Group) -> list[Group]:
    """The web-portal visits (`Group.portal`) of ``g``'s client to ``g``'s gateway that began before ``g`` did, since
    the client's previous session there: what the user did in a browser before the client connected. ``by_key``:
    every group, by its key (`groups_by_key`)."""
    start = _span(g)[0]
    same = by_key.get(g.key, ())
    before = [h for h in same if not h.portal and h is not g and h.conns and h.conns[0].c.first_ts < start]
    since = max((h.last_ts for h in before), default=float("-inf"))
    return [h for h in same if h.portal and since <= h.conns[0].c.first_ts < start]


def groups_by_key(groups: list[Group]) -> dict:
    """{(client, gateway, port): its groups} (for `portal_visits`)."""
    out: dict = {}
    for g in groups:
        out.setdefault(g.key, []).append(g)
    return out
