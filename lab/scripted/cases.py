"""The scripted-gateway cases: what the gateway answers (a `replay.script` script), how openconnect (and for the
downloader curl) is run, and the expected effects, checked against the peers' own logs.

Each `Case` is data: `build` makes the script (given the hashes known once the run's PKI exists), the client plan
(`flow`, `pings`, `hold`, `pause_client`, `dtls_server`…) says what the lab does, and `expectations` are checks on
the run's outputs (`Ctx`). `lab.scripted.runner` runs a case, `lab.scripted.facts` writes its facts.json;
`python -m lab.scripted --case NAME|all [--out DIR]` (root: it creates network namespaces; default out:
samples/scripted).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import re
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..client import HOSTNAME, TUNNEL_GW, TUNNEL_NET, USER, USER_PASSWORD

TUNNEL_IP = "198.19.0.50"
TUNNEL_IP6 = "2001:2::50"  # RFC 5180 benchmarking range, like 198.18.0.0/15 for IPv4
TUNNEL_GW6 = "2001:2::1"
TUNNEL_IP_RECONNECT = "198.19.0.51"  # what the reconnect-address-changed gateway hands out the second time
DTLS_SINK_PORT = 4443
DTLS_PORT = 4443  # X-DTLS-Port of the DTLS cases (gnutls-serv or the gateway's UDP responder listens there)
DTLS_REPLY_PORT = 4444  # the port the dtls-source-mismatch gateway answers from
PROFILE_URI = "/CACHE/stc/profiles/acflow.xml"
#: a client package the downloader fetches (downloader-large-package): larger than the HTTP dissector's 16 MiB body
#: bound, of deterministic bytes
PACKAGE_URI = "/CACHE/stc/1/binaries/anyconnect-core-vpn-webdeploy-k9.msi"
PACKAGE_SIZE = 17 * 1024 * 1024 + 4321
WRONG_PASSWORD = "wrong-password"  # what the user of login-retry types first


@functools.cache
def package_bytes() -> bytes:
    """The downloader-large-package file (made once: the script, its manifest and the checks all need it)."""
    return hashlib.shake_256(b"acflow lab client package").digest(PACKAGE_SIZE)


@functools.cache
def _package_sha1() -> str:
    return hashlib.sha1(package_bytes()).hexdigest().upper()

# --------------------------------------------------------------------------------------------------------------
# the exchange an ASA would have (aggregate-auth v2), as script pieces
# --------------------------------------------------------------------------------------------------------------

XML_HEADERS = [["Content-Type", "text/xml"], ["Cache-Control", "no-store"], ["Pragma", "no-cache"],
               ["X-Transcend-Version", "1"], ["X-Aggregate-Auth", "1"]]

INIT_REPLY = """<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<opaque is-for="sg">
<tunnel-group>ACFLOW-TG</tunnel-group>
<aggauth-handle>${aggauth_handle}</aggauth-handle>
<group-alias>acflow</group-alias>
<config-hash>1717171717171</config-hash>
</opaque>
<auth id="main">
<title>Login</title>
<message>Please enter your username and password.</message>
<banner></banner>
<form>
<input type="text" name="username" label="Username:"></input>
<input type="password" name="password" label="Password:"></input>
<select name="group_list" label="GROUP:">
<option selected="true">acflow</option>
</select>
</form>
</auth>
</config-auth>
"""


def complete_reply(*, server_cert_hash: str = "${server_cert_sha1}", profile: tuple[str, str] | None = None) -> str:
    """`type="complete"`: session id and token, `<config>` with vpn-base-config and an optional profile manifest."""
    manifest = ""
    if profile:
        uri, sha1 = profile
        manifest = (f'<vpn-profile-manifest>\n<vpn rev="1.0">\n<file type="profile" service-type="user">\n'
                    f'<uri>{uri}</uri>\n<hash type="sha1">{sha1}</hash>\n</file>\n</vpn>\n</vpn-profile-manifest>\n')
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete" aggregate-auth-version="2">
<session-id>${{session_id}}</session-id>
<session-token>${{cookie}}</session-token>
<auth id="success">
<message id="0" param1="" param2=""></message>
</auth>
<capabilities>
<crypto-supported>ssl-dhe</crypto-supported>
</capabilities>
<config client="vpn" type="private">
<vpn-base-config>
<server-cert-hash>{server_cert_hash}</server-cert-hash>
</vpn-base-config>
<opaque is-for="vpn-client"></opaque>
{manifest}</config>
</config-auth>
"""


def cookie_headers(profile: tuple[str, str] | None = None) -> list[list[str]]:
    h = [["Set-Cookie", "webvpn=${cookie}; path=/; secure; HttpOnly"]]
    fu = f"&fu:{profile[0].rsplit('/', 1)[-1]}&fh:{profile[1]}" if profile else ""
    h.append(["Set-Cookie", f"webvpnc=bu:/CACHE/stc/&p:t&iu:1/&sh:${{server_cert_sha1}}{fu}; path=/; secure"])
    return h


def auth_steps(*, complete_body: str | None = None, complete_headers: list | None = None) -> list[dict]:
    return [
        {"id": "init", "note": "aggregate-auth v2 init -> ASA-style auth-request (username, password, group list)",
         "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
         "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": INIT_REPLY}},
        {"id": "init-group", "note": "openconnect re-posts init with <group-select> for the selected group (as for "
                                     "any group choice); the same form again",
         "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"', "<group-select>acflow<"]},
         "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": INIT_REPLY}},
        {"id": "auth-reply", "note": "credentials -> complete, session token and webvpn cookie",
         "expect": {"method": "POST", "path": "/", "body_contains": ['type="auth-reply"', f"<username>{USER}"]},
         "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS + (complete_headers or cookie_headers()),
                     "body": complete_body or complete_reply()}},
    ]


def connect_headers(*, mtu: int = 1399, dtls: dict | None = None, dpd: int = 30, keepalive: int = 20,
                    ipv6: str | None = None, post_auth_xml: bool = False,
                    address: str = TUNNEL_IP) -> list[list[str]]:
    """X-CSTP-/X-DTLS- answer headers in the order an ASA sends them."""
    h = [["X-CSTP-Version", "1"], ["X-CSTP-Address", address], ["X-CSTP-Netmask", "255.255.255.0"]]
    if ipv6:
        h.append(["X-CSTP-Address-IP6", ipv6])
    h += [["X-CSTP-Keep", "true"], ["X-CSTP-DNS", TUNNEL_GW], ["X-CSTP-Lease-Duration", "1209600"],
          ["X-CSTP-Session-Timeout", "none"], ["X-CSTP-Idle-Timeout", "1800"],
          ["X-CSTP-Disconnected-Timeout", "1800"], ["X-CSTP-Default-Domain", "acflow.test"],
          ["X-CSTP-Split-Include", f"{TUNNEL_NET}/255.255.255.0"]]
    if ipv6:
        h.append(["X-CSTP-Split-Include-IP6", "2001:2::/64"])
    h += [["X-CSTP-Keepalive", str(keepalive)], ["X-CSTP-DPD", str(dpd)], ["X-CSTP-Rekey-Time", "3600"],
          ["X-CSTP-Rekey-Method", "new-tunnel"]]
    if dtls:
        h += [["X-DTLS-Session-ID", "${dtls_session_id}"], ["X-DTLS-Port", str(dtls["port"])],
              ["X-DTLS-Keepalive", str(keepalive)], ["X-DTLS-DPD", str(dpd)], ["X-DTLS-Rekey-Time", "3600"],
              ["X-DTLS-Rekey-Method", "new-tunnel"]]
    h += [["X-CSTP-MTU", str(mtu)]]
    if dtls:
        h += [["X-DTLS-MTU", str(dtls["mtu"])], ["X-DTLS-CipherSuite", dtls["cipher"]]]
    h += [["X-CSTP-Routing-Filtering-Ignore", "false"], ["X-CSTP-Quarantine", "false"],
          ["X-CSTP-Disable-Always-On-VPN", "false"], ["X-CSTP-Client-Bypass-Protocol", "false"],
          ["X-CSTP-TCP-Keepalive", "true"]]
    if post_auth_xml:
        h.append(["X-CSTP-Post-Auth-XML", ('<?xml version="1.0" encoding="UTF-8"?><config-auth client="vpn" '
                                           'type="complete" aggregate-auth-version="2"><session-token>${cookie}'
                                           '</session-token><auth id="success"></auth></config-auth>')])
    return h


def connect_step(headers: list, *, status: int = 200, reason: str = "CONNECTED", note: str = "",
                 close: bool = False, step_id: str = "connect") -> dict:
    step = {"id": step_id, "note": note,
            "expect": {"method": "CONNECT", "path": "/CSCOSSLC/tunnel", "cookie": "${cookie}"},
            "respond": {"status": status, "reason": reason, "headers": headers}}
    if close:
        step["close"] = True
    return step


# --------------------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Ctx:
    """What a case's expectations may look at."""

    out: Path
    client: list[tuple[float, str]]  # client-auth.log + client.log lines
    events: list[dict]
    env: dict[str, dict[str, str]]  # script-<reason>.env
    extra: dict  # case-specific facts (curl, profile hashes, ...)
    exit_code: int | None

    def client_has(self, pattern: str) -> tuple[float, str] | None:
        rx = re.compile(pattern)
        return next(((ts, line) for ts, line in self.client if rx.search(line)), None)

    def ev(self, etype: str, **match) -> list[dict]:
        return [e for e in self.events if e["type"] == etype and all(e.get(k) == v for k, v in match.items())]


Check = Callable[[Ctx], tuple[bool, object]]


def log_line(pattern: str) -> Check:
    def check(ctx: Ctx):
        hit = ctx.client_has(pattern)
        return hit is not None, list(hit) if hit else None
    return check


def no_log_line(pattern: str) -> Check:
    def check(ctx: Ctx):
        hit = ctx.client_has(pattern)
        return hit is None, list(hit) if hit else None
    return check


def requests_are(expected: list[tuple[str, str]]) -> Check:
    def check(ctx: Ctx):
        got = [(e["method"], e["target"]) for e in ctx.ev("request")]
        return got == expected, [list(g) for g in got]
    return check


def count_at_least(etype: str, n: int, **match) -> Check:
    def check(ctx: Ctx):
        c = len(ctx.ev(etype, **match))
        return c >= n, c
    return check


@dataclass
class Case:
    name: str
    description: str
    build: Callable[[dict], dict]  # context (hashes known after the PKI is made) -> script dict
    expectations: list[tuple[str, Check]]
    flow: str = "single"  # "single": one openconnect run; "split": --authenticate, [curl], --cookie-on-stdin
    downloader: bool = False
    # the downloader's file: what it GETs when the complete answer's manifest names none, what the facts look up,
    # and a case with one gives dumpcap a 64 MiB buffer (a big download outruns the default one)
    download_uri: str | None = None
    expect_connect: bool = True
    wait_configured: float = 10.0  # seconds to wait for "Configured as" after "CSTP connected"
    pings: list[tuple[int, int, int]] = field(default_factory=list)  # (ip version, count, data size)
    hold: float = 1.0
    # instead of the SIGINT after `hold`: wait up to this many seconds for openconnect to end by itself
    wait_exit: float | None = None
    # {"after_gateway_line": text, "timeout": s, "seconds": s}: once the gateway logged a line containing the text
    # (e.g. the client's first KEEPALIVE), SIGSTOP openconnect, and SIGCONT it `seconds` later (a frozen client);
    # with "network": True all traffic between client and gateway is dropped meanwhile too (a laptop asleep:
    # Lab.suspend_client)
    pause_client: dict | None = None
    # where dumpcap captures: "client" (the client's veth) or "gateway" (the gateway's: as an ASA's own capture
    # sees the traffic; a sleeping client's network is then cut on the client's side)
    capture_side: str = "client"
    # a real DTLS server in the gateway namespace: {"port": N, "priority": "..."} runs gnutls-serv --udp there;
    # {"kind": "psk", "port": N} runs replay.dtls_psk_server (PSK-NEGOTIATE, RFC 6347 cookies) there
    dtls_server: dict | None = None
    # the lines typed at openconnect's password prompts, one per prompt (no --passwd-on-stdin); None: the lab
    # password once, with --passwd-on-stdin
    passwords: tuple[str, ...] | None = None
    # the client namespace drops incoming UDP from this gateway port (nftables input hook): the answers reach the
    # client's wire, hence the capture on its veth, but never its socket (a one-way firewall rule)
    client_drops_udp_from: int | None = None
    # SAML single sign-on: openconnect --external-browser runs the lab's browser (lab/scripted/browser.py) in this
    # mode: "follow" (the redirects, back to the client's port 29786 with the token) or "stall" (the first page
    # only: a user who closed the window); `give_up_after` seconds later the user presses Ctrl-C (SIGINT)
    external_browser: str | None = None
    give_up_after: float | None = None
    csd_wrapper: bool = False  # openconnect --csd-wrapper=CSD_WRAPPER (the host scan script of the package)
    # before the client, the user's desktop browser visits the gateway's web portal and logs in with its form
    # (lab/scripted/browser.py `portal`: a browser's User-Agent, TLS secrets in the key log)
    portal_first: bool = False
    # a second gateway (a load-balancing cluster's member) at MEMBER_GW, serving this script; its events are merged
    # into gateway-events.jsonl, each with "gateway": MEMBER_GW
    member: Callable[[dict], dict] | None = None
    # SAML's identity provider: a scripted server at IDP_ADDR (`idp_script`, its own CA) whose name IDP_HOST the
    # lab's DNS server (lab.dnsish in the gateway's namespace, the client namespace's resolver) answers:
    # {"dns": "answer" | "nxdomain", "fault": None | "drop" (TCP to it dropped on its way in), "trusted": the
    # browser trusts its CA (default true)}
    idp: dict | None = None


def _fallback_script(c: dict) -> dict:
    html = ("<!DOCTYPE html>\n<html><head><title>SSL VPN Service</title></head>\n<body>\n"
            '<form name="login" method="post" action="/+webvpn+/index.html">\n'
            '<input type="text" name="username"/>\n<input type="password" name="password"/>\n'
            '<input type="submit" name="Login" value="Login"/>\n</form>\n</body></html>\n')
    legacy_form = ('<?xml version="1.0" encoding="UTF-8"?>\n<auth id="main">\n<title>SSL VPN Service</title>\n'
                   "<message>Please enter your username and password.</message>\n"
                   '<form method="post" action="/+webvpn+/index.html">\n'
                   '<input type="text" name="username" label="Username:" />\n'
                   '<input type="password" name="password" label="Password:" />\n'
                   '<input type="submit" name="Login" value="Login" />\n</form>\n</auth>\n')
    success = ('<?xml version="1.0" encoding="UTF-8"?>\n<auth id="success">\n<title>SSL VPN Service</title>\n'
               "</auth>\n")
    return {
        "name": "aggauth-v1-fallback",
        "description": "the gateway does not speak aggregate-auth: the XML init POST gets an HTML login page "
                       "(200, text/html, no <auth> node), so openconnect drops XML POST and falls back to the "
                       "pre-aggregate-auth flow: GET / on a new TLS session, legacy <auth> form, urlencoded POST",
        "vars": {},
        "steps": [
            {"id": "init-html", "note": "aggregate-auth v2 init answered with a clientless-portal HTML page",
             "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
             "respond": {"status": 200, "reason": "OK",
                         "headers": [["Content-Type", "text/html; charset=utf-8"], ["Cache-Control", "no-store"]],
                         "body": html}},
            {"id": "legacy-get", "note": "the fallback GET: legacy (pre-aggregate-auth) XML <auth> form",
             "expect": {"method": "GET", "path": "/"},
             "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/xml"]],
                         "body": legacy_form}},
            {"id": "legacy-post", "note": "urlencoded credentials -> <auth id=success> + webvpn cookie",
             "expect": {"method": "POST", "path": "/+webvpn+/index.html", "body_contains": [f"username={USER}"]},
             "respond": {"status": 200, "reason": "OK",
                         "headers": [["Content-Type", "text/xml"],
                                     ["Set-Cookie", "webvpn=${cookie}; path=/; secure; HttpOnly"]],
                         "body": success}},
            connect_step(connect_headers(mtu=1399), note="plain CONNECT answer, no DTLS"),
        ],
        "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []},
    }


def _dtls_mtu_script(c: dict) -> dict:
    return {
        "name": "dtls-mtu-differs",
        "description": "CONNECT answered as an ASA would: X-CSTP-MTU 1399 and a different X-DTLS-MTU 1300, legacy "
                       "DTLS (X-DTLS-Session-ID + X-DTLS-CipherSuite AES256-SHA) on a UDP port where nothing "
                       "answers, so DTLS fails and the tunnel stays on CSTP; DPD/keepalive/DATA over CSTP",
        "vars": {"aggauth_handle": "1193825"},
        "steps": [*auth_steps(),
                  connect_step(connect_headers(mtu=1399, dpd=10, keepalive=4, post_auth_xml=True,
                                               dtls={"port": DTLS_SINK_PORT, "mtu": 1300, "cipher": "AES256-SHA"}),
                               note="X-CSTP-MTU 1399 != X-DTLS-MTU 1300; X-DTLS-Port is a black hole")],
        "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": [{"at": 2.0, "send": "dpd-req"}]},
        "udp_sinks": [DTLS_SINK_PORT],
    }


def _rejected_script(c: dict) -> dict:
    return {"name": "connect-rejected",
            "description": "authentication succeeds, then CONNECT is answered 401 Cookie is not acceptable",
            "vars": {"aggauth_handle": "1193826"},
            "steps": [*auth_steps(),
                      connect_step([["Content-Length", "0"]], status=401, reason="Cookie is not acceptable",
                                   close=True, note="the ASA refuses the (valid) cookie at CONNECT")]}


def _unavailable_script(c: dict) -> dict:
    return {"name": "connect-unavailable",
            "description": "authentication succeeds, then CONNECT is answered 503 Service Unavailable with "
                           "X-Reason: No assigned address (an exhausted address pool)",
            "vars": {"aggauth_handle": "1193827"},
            "steps": [*auth_steps(),
                      connect_step([["X-Reason", "No assigned address"], ["Content-Length", "0"]], status=503,
                                   reason="Service Unavailable", close=True,
                                   note="503 + X-Reason, as an ASA with no free address answers")]}


def _ipv6_small_script(c: dict) -> dict:
    return {"name": "mtu-ipv6-small",
            "description": "CONNECT grants X-CSTP-MTU 1200 together with an IPv6 address (X-CSTP-Address-IP6): "
                           "IPv6 in a tunnel whose MTU is below the IPv6 minimum of 1280; no DTLS offered",
            "vars": {"aggauth_handle": "1193828"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1200, ipv6=f"{TUNNEL_IP6}/64"),
                                   note="MTU 1200 < 1280 with an IPv6 address")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _profile_script(c: dict) -> dict:
    manifest_sha1 = c["profile_previous_sha1"]
    return {"name": "profile-hash-mismatch",
            "description": "the complete answer's vpn-profile-manifest names a profile whose sha1 does not match "
                           "the profile served at that URI (the manifest carries the previous revision's hash); "
                           "the profile is fetched by a separate TLS session with the webvpn cookie, as the "
                           "AnyConnect downloader does, then the tunnel is opened with the cookie",
            "vars": {"aggauth_handle": "1193829"},
            "steps": [*auth_steps(complete_body=complete_reply(profile=(PROFILE_URI, manifest_sha1)),
                                  complete_headers=cookie_headers((PROFILE_URI, manifest_sha1))),
                      {"id": "profile-get", "note": "serves the current profile revision (its sha1 differs)",
                       "expect": {"method": "GET", "path": PROFILE_URI, "cookie": "${cookie}"},
                       "respond": {"status": 200, "reason": "OK",
                                   "headers": [["Content-Type", "text/xml"], ["Cache-Control", "no-store"]],
                                   "body": c["profile_current"]}},
                      connect_step(connect_headers(mtu=1399))],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _cert_hash_script(c: dict) -> dict:
    return {"name": "server-cert-hash-mismatch",
            "description": "the complete answer's <vpn-base-config><server-cert-hash> is the SHA-1 of another "
                           "certificate (the gateway's previous one), not of the certificate it presents",
            "vars": {"aggauth_handle": "1193830"},
            "steps": [*auth_steps(complete_body=complete_reply(server_cert_hash=c["previous_cert_sha1"])),
                      connect_step(connect_headers(mtu=1399))],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _tls_alert_script(c: dict) -> dict:
    return {"name": "tls-alert",
            "description": "authentication (TLS session 1) succeeds; the next TLS session, opened for CONNECT "
                           "with the cookie, is aborted by the gateway with a fatal handshake_failure alert",
            "vars": {"aggauth_handle": "1193831"},
            "steps": [*auth_steps(), connect_step(connect_headers(mtu=1399))],
            "tls": {"alert": {"sessions": [2], "description": "handshake_failure"}}}


def _terminate_script(c: dict) -> dict:
    return {"name": "terminate",
            "description": "CONNECT 200 (no DTLS); 4 s after the CONNECT answer the gateway sends a CSTP TERMINATE "
                           "frame (type 0x09, no payload) and ends the TCP connection (FIN, no close_notify)",
            "vars": {"aggauth_handle": "1193832"},
            "steps": [*auth_steps(), connect_step(connect_headers(mtu=1399), note="plain CONNECT answer, no DTLS")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": [{"at": 4.0, "send": "terminate"}]}}


#: an ASA waiting for its authentication server: a RADIUS server that sends a multi-factor push and answers once the
#: user approves it on the phone (or never, when nobody does)
MFA_APPROVED_AFTER = 20.0
MFA_NEVER_ANSWERED = 60.0
#: AnyConnect's authentication timeout: 12 s before 4.8.02045, 30 s since (profile: Authentication Timeout); the
#: lab's user gives up as the older client does, a little after its 12 s
CLIENT_GIVES_UP_AFTER = 13.0


def _held_answer(step: str, what: str) -> tuple[str, Check]:
    """The expectation that the gateway held its answer to ``step`` (its `delay`: one "delay" event)."""
    return (f"the gateway held its answer to {what}",
            lambda ctx: (len(ctx.ev("delay", step=step)) == 1, ctx.ev("delay")))


def _auth_slow_script(c: dict, name: str, delay: float, description: str) -> dict:
    init, init_group, auth_reply = auth_steps()
    slow = {**auth_reply, "delay": delay,
            "note": f"credentials -> complete, {delay:g} s later (the authentication server's multi-factor push, "
                    "approved on the phone)"}
    return {"name": name, "description": description, "vars": {"aggauth_handle": "1193836"},
            "steps": [init, init_group, slow, connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _auth_mfa_slow_script(c: dict) -> dict:
    return _auth_slow_script(c, "auth-mfa-slow", MFA_APPROVED_AFTER,
                             f"ASA-style login whose credentials are answered {MFA_APPROVED_AFTER:g} s later (an "
                             "authentication server waiting for the user to approve a multi-factor push), with "
                             "complete; then the tunnel (CSTP)")


def _auth_client_gives_up_script(c: dict) -> dict:
    return _auth_slow_script(c, "auth-client-gives-up", MFA_NEVER_ANSWERED,
                             f"ASA-style login whose credentials the gateway would answer only after "
                             f"{MFA_NEVER_ANSWERED:g} s (an authentication server still waiting for a push nobody "
                             f"approves): the client gives up after {CLIENT_GIVES_UP_AFTER:g} s")


#: an ASA assigning the tunnel's address from a DHCP server that answers slowly
CONNECT_ANSWERED_AFTER = 8.0


def _connect_slow_script(c: dict) -> dict:
    step = {**connect_step(connect_headers(mtu=1399), note=f"tunnel on CSTP, answered {CONNECT_ANSWERED_AFTER:g} s "
                                                           "later (an address from a slow DHCP server)"),
            "delay": CONNECT_ANSWERED_AFTER}
    return {"name": "connect-slow",
            "description": f"ASA-style login, then the CONNECT answered 200 only {CONNECT_ANSWERED_AFTER:g} s after it "
                           "arrived (a gateway waiting for the DHCP server of its address pool); no DTLS",
            "vars": {"aggauth_handle": "1193837"},
            "steps": [*auth_steps(), step],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _session_timeout_script(c: dict) -> dict:
    h = connect_headers(mtu=1399)
    i = h.index(["X-CSTP-Session-Timeout", "none"])
    # an 8-hour maximum connect time of which 6 s remain (a session near its end: its reconnect's answer), the
    # client's warning 60 s before it, as gateways that send these headers order them
    h[i:i + 1] = [["X-CSTP-Session-Timeout", "28800"], ["X-CSTP-Session-Timeout-Alert-Interval", "60"],
                  ["X-CSTP-Session-Timeout-Remaining", "6"]]
    return {"name": "session-timeout-remaining",
            "description": "CONNECT 200 (no DTLS) announcing X-CSTP-Session-Timeout 28800 with 6 s remaining; 6.5 s "
                           "after the CONNECT answer the gateway sends a CSTP DISCONNECT with a reason text ('Max "
                           "time exceeded', the words ASA syslog 113019 gives this cause; what an ASA's own frame "
                           "carries is not known here) and ends the connection",
            "vars": {"aggauth_handle": "1193852"},
            "steps": [*auth_steps(), connect_step(h, note="6 s of an 8-hour session left")],
            "cstp": {"answer_dpd": True, "icmp_echo": True,
                     "actions": [{"at": 6.5, "send": "disconnect", "reason": "Max time exceeded"}]}}


def _reconnect_script(c: dict) -> dict:
    return {"name": "reconnect-address-changed",
            "description": f"CONNECT 200 with X-CSTP-Address {TUNNEL_IP}; 4 s later the gateway ends that TLS "
                           "connection (TCP FIN, no close_notify, no CSTP frame); openconnect reconnects with its "
                           "cookie on a new TLS session and the second CONNECT is answered 200 with another "
                           f"X-CSTP-Address ({TUNNEL_IP_RECONNECT})",
            "vars": {"aggauth_handle": "1193833"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1399), note=f"first tunnel: address {TUNNEL_IP}"),
                      connect_step(connect_headers(mtu=1399, address=TUNNEL_IP_RECONNECT), step_id="reconnect",
                                   note=f"the reconnect (same cookie, no auth) gets {TUNNEL_IP_RECONNECT}")],
            "cstp": {"answer_dpd": True, "icmp_echo": True,
                     "actions": [{"at": 4.0, "send": "close", "tunnels": [1]}]}}


def _profile_missing_script(c: dict) -> dict:
    manifest_sha1 = c["profile_current_sha1"]
    return {"name": "profile-missing",
            "description": "the complete answer's vpn-profile-manifest announces a profile; the downloader's GET of "
                           "that URI (separate TLS session, webvpn cookie) is answered 404 Not Found; then the "
                           "tunnel is opened with the cookie",
            "vars": {"aggauth_handle": "1193834"},
            "steps": [*auth_steps(complete_body=complete_reply(profile=(PROFILE_URI, manifest_sha1)),
                                  complete_headers=cookie_headers((PROFILE_URI, manifest_sha1))),
                      {"id": "profile-get", "note": "the announced profile is not there: 404",
                       "expect": {"method": "GET", "path": PROFILE_URI, "cookie": "${cookie}"},
                       "respond": {"status": 404, "reason": "Not Found",
                                   "headers": [["Content-Type", "text/html"], ["Cache-Control", "no-store"]],
                                   "body": "<html><body>File not found</body></html>\n"}},
                      connect_step(connect_headers(mtu=1399))],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _dtls_full_script(c: dict) -> dict:
    return {"name": "dtls-full-handshake",
            "description": "CONNECT 200 with legacy DTLS (X-DTLS-Session-ID, X-DTLS-CipherSuite AES256-SHA, "
                           f"X-DTLS-Port {DTLS_PORT}); on that UDP port a real DTLS server (gnutls-serv --udp, "
                           "GnuTLS, the gateway certificate) that does not know the session: it answers the "
                           "resuming ClientHello with a full handshake (new session id, Certificate)",
            "vars": {"aggauth_handle": "1193835"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1399, dpd=30, keepalive=20,
                                                   dtls={"port": DTLS_PORT, "mtu": 1399, "cipher": "AES256-SHA"}),
                                   note=f"legacy DTLS offered; gnutls-serv listens on UDP {DTLS_PORT}")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def psk_connect_headers(*, mtu: int = 1399, dpd: int = 30, keepalive: int = 20) -> list[list[str]]:
    """CONNECT 200 headers granting DTLS in PSK-NEGOTIATE mode on DTLS_PORT (X-DTLS-App-ID: the session id the
    client puts in its DTLS ClientHello), no X-DTLS-MTU (as ocserv in PSK mode)."""
    h = [h for h in connect_headers(mtu=mtu, dpd=dpd, keepalive=keepalive)]
    i = next(n for n, (k, _) in enumerate(h) if k == "X-CSTP-MTU")
    h[i:i] = [["X-DTLS-Port", str(DTLS_PORT)], ["X-DTLS-Keepalive", str(keepalive)], ["X-DTLS-DPD", str(dpd)],
              ["X-DTLS-Rekey-Time", "3600"], ["X-DTLS-Rekey-Method", "new-tunnel"],
              ["X-DTLS-App-ID", "${dtls_session_id}"], ["X-DTLS-CipherSuite", "PSK-NEGOTIATE"]]
    return h


def _dtls_cookie_script(c: dict) -> dict:
    return {"name": "dtls-cookie",
            "description": "CONNECT 200 with DTLS PSK-NEGOTIATE on X-DTLS-Port 4443 (X-DTLS-App-ID); on that UDP "
                           "port a real DTLS 1.2 PSK server (GnuTLS, replay.dtls_psk_server) that answers a "
                           "ClientHello without a valid cookie with a HelloVerifyRequest (RFC 6347 4.2.1), then "
                           "completes the PSK handshake with the PSK both sides export from the CSTP TLS session",
            "vars": {"aggauth_handle": "1193835"},
            "steps": [*auth_steps(),
                      connect_step(psk_connect_headers(), note=f"PSK-NEGOTIATE on UDP {DTLS_PORT}")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


OCSERV_XML_HEADERS = [["Content-Type", "text/xml"], ["X-Transcend-Version", "1"]]


def _ocserv_form(message: str, field: str, label: str, kind: str) -> str:
    """An auth-request form as ocserv 1.1.6 sends it (one field per round)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-request">\n'
            '<version who="sg">0.1(1)</version>\n<auth id="main">\n'
            f'<message>{message}</message>\n<form method="post" action="/auth">\n'
            f'<input type="{kind}" name="{field}" label="{label}" />\n</form></auth>\n</config-auth>\n')


def _login_retry_script(c: dict) -> dict:
    complete = ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="complete">\n'
                '<version who="sg">0.1(1)</version>\n<auth id="success">\n'
                "<title>SSL VPN Service</title></auth></config-auth>\n")
    password_form = _ocserv_form("Please enter your password.", "password", "Password:", "password")
    return {"name": "login-retry",
            "description": "ocserv-style login in rounds (username, then password; the forms as ocserv 1.1.6 "
                           "sends them): the first password is rejected with a new auth-request form whose message "
                           "is 'Login failed.' (as ocserv does), the second is accepted; then the tunnel (CSTP)",
            "vars": {"aggauth_handle": "1193835"},
            "steps": [
                {"id": "init", "note": "init -> username form",
                 "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
                 "respond": {"status": 200, "reason": "OK", "headers": OCSERV_XML_HEADERS,
                             "body": _ocserv_form("Please enter your username.", "username", "Username:", "text")}},
                {"id": "username", "note": "username -> password form",
                 "expect": {"method": "POST", "path": "/auth", "body_contains": [f"<username>{USER}</username>"]},
                 "respond": {"status": 200, "reason": "OK", "headers": OCSERV_XML_HEADERS, "body": password_form}},
                {"id": "wrong-password", "note": "a wrong password -> the password form again, message "
                                                 "'Login failed.' (ocserv's answer to a rejected password)",
                 "expect": {"method": "POST", "path": "/auth", "body_contains": [f"<password>{WRONG_PASSWORD}<"]},
                 "respond": {"status": 200, "reason": "OK", "headers": OCSERV_XML_HEADERS,
                             "body": _ocserv_form("Login failed.\nPlease enter your password.", "password",
                                                  "Password:", "password")}},
                {"id": "right-password", "note": "the right password -> complete, webvpn cookie",
                 "expect": {"method": "POST", "path": "/auth", "body_contains": [f"<password>{USER_PASSWORD}<"]},
                 "respond": {"status": 200, "reason": "OK",
                             "headers": OCSERV_XML_HEADERS + [["Set-Cookie", "webvpn=${cookie}; Secure; HttpOnly"]],
                             "body": complete}},
                connect_step(connect_headers(mtu=1399), note="tunnel on CSTP (no DTLS)")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _login_retry_asa_script(c: dict) -> dict:
    init, init_group, auth_reply = auth_steps()
    failed = INIT_REPLY.replace("<banner></banner>\n",
                                '<banner></banner>\n<error id="88" param1="" param2="">Login failed.</error>\n')
    wrong = {"id": "wrong-password", "note": "a wrong password -> the form again with <error>Login failed.</error> "
                                             "(ASA style)",
             "expect": {"method": "POST", "path": "/",
                        "body_contains": ['type="auth-reply"', f"<password>{WRONG_PASSWORD}<"]},
             "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": failed}}
    right = {**auth_reply, "id": "right-password",
             "expect": {**auth_reply["expect"],
                        "body_contains": [*auth_reply["expect"]["body_contains"], f"<password>{USER_PASSWORD}<"]}}
    return {"name": "login-retry-asa",
            "description": "ASA-style aggregate-auth (one form: username, password, group list): the first password "
                           "is answered with the same form carrying <error id=\"88\">Login failed.</error>, the "
                           "second with complete; then the tunnel (CSTP)",
            "vars": {"aggauth_handle": "1193835"},
            "steps": [init, init_group, wrong, right, connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


SSO_LOGIN_PATH = "/+CSCOE+/saml/sp/login?tgname=ACFLOW-SAML&acsamlcap=v2"
SSO_FINAL_PATH = "/+CSCOE+/saml_ac_login.html"

# an ASA tunnel group with SAML authentication answers init so (the element set as other AnyConnect-protocol clients'
# fixtures show it; not recorded from an ASA): no credentials asked, the client is sent to a browser
SSO_INIT_REPLY = f"""<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<opaque is-for="sg">
<tunnel-group>ACFLOW-SAML</tunnel-group>
<aggauth-handle>${{aggauth_handle}}</aggauth-handle>
<auth-method>single-sign-on-v2</auth-method>
<config-hash>1717171717172</config-hash>
</opaque>
<auth id="main">
<title>Login</title>
<message>Please complete the authentication process in the AnyConnect Login window.</message>
<banner></banner>
<sso-v2-login>https://{HOSTNAME}{SSO_LOGIN_PATH.replace("&", "&#x26;")}</sso-v2-login>
<sso-v2-login-final>https://{HOSTNAME}{SSO_FINAL_PATH}</sso-v2-login-final>
<sso-v2-logout>https://{HOSTNAME}/+CSCOE+/saml/sp/logout</sso-v2-logout>
<sso-v2-logout-final>https://{HOSTNAME}{SSO_FINAL_PATH}</sso-v2-logout-final>
<sso-v2-token-cookie-name>acSamlv2Token</sso-v2-token-cookie-name>
<sso-v2-error-cookie-name>acSamlv2Error</sso-v2-error-cookie-name>
<sso-v2-browser-mode>external</sso-v2-browser-mode>
<form>
<input type="sso" name="sso-token"></input>
</form>
</auth>
</config-auth>
"""

IDP_HOST = "idp.acflow.test"  # SAML's identity provider, in the lab's DNS (Case.idp)
IDP_ADDR = "198.18.0.6"
IDP_SSO_PATH = "/saml2/sso"
SSO_ACS_PATH = "/+CSCOE+/saml/sp/acs?tgname=ACFLOW-SAML"


def _saml_request() -> str:
    """A SAML AuthnRequest as the HTTP-Redirect binding carries it: raw DEFLATE, base64, URL-quoted."""
    xml = ('<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_acflow-lab" Version="2.0" '
           f'AssertionConsumerServiceURL="https://{HOSTNAME}{SSO_ACS_PATH}"/>').encode()
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return urllib.parse.quote(base64.b64encode(z.compress(xml) + z.flush()).decode(), safe="")


#: the identity provider's SAML response (HTTP-POST binding: base64 in a form field); no assertion is checked
_SAML_RESPONSE = base64.b64encode(b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
                                  b'ID="_acflow-lab-response" Version="2.0"/>').decode()


def idp_script(c: dict) -> dict:
    """The identity provider's pages (Case.idp): its sign-in form for the SAML request, then — the user signed in —
    the SAML response in a form of hidden fields that the page's script posts to the gateway's assertion consumer
    service (HTTP-POST binding)."""
    acs = f"https://{HOSTNAME}{SSO_ACS_PATH}"
    sign_in = ("<!DOCTYPE html>\n<html><head><title>Sign in - acflow lab identity provider</title></head><body>\n"
               '<form method="post" action="/saml2/login"><input type="text" name="username"/>'
               '<input type="password" name="password"/><input type="hidden" name="RelayState" value="ACFLOW-SAML"/>'
               "</form>\n</body></html>\n")
    post_back = ('<!DOCTYPE html>\n<html><body onload="document.forms[0].submit()">\n'
                 f'<form method="post" action="{acs}"><input type="hidden" name="SAMLResponse" '
                 f'value="{_SAML_RESPONSE}"/><input type="hidden" name="RelayState" value="ACFLOW-SAML"/></form>\n'
                 "</body></html>\n")
    html = [["Content-Type", "text/html; charset=utf-8"], ["Cache-Control", "no-store"]]
    return {"name": "identity-provider",
            "description": f"SAML identity provider {IDP_HOST}: sign-in page, then the SAML response posted back",
            "vars": {},
            "steps": [{"id": "idp-sign-in-page", "note": "the SAML request: the sign-in page",
                       "expect": {"method": "GET", "path_regex": "^" + re.escape(IDP_SSO_PATH) + r"\?SAMLRequest=.*"},
                       "respond": {"status": 200, "reason": "OK", "headers": html, "body": sign_in}},
                      {"id": "idp-sign-in", "note": "the user's credentials: the SAML response, posted back by the "
                                                    "page's script",
                       "expect": {"method": "POST", "path": "/saml2/login", "body_contains": [f"username={USER}"]},
                       "respond": {"status": 200, "reason": "OK", "headers": html, "body": post_back}}],
            "cstp": {"answer_dpd": False, "icmp_echo": False, "actions": []}}


_IDP_PAGE = ("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>\n<form method=\"post\" "
             "action=\"/idp/login\"><input name=\"username\"/><input type=\"password\" name=\"password\"/>"
             "</form>\n</body></html>\n")


def _sso_steps(*, stall: bool, idp: bool = False) -> list[dict]:
    init = {"id": "init", "note": "aggregate-auth v2 init -> auth-request with sso-v2-login (external browser), no "
                                  "credentials asked",
            "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
            "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": SSO_INIT_REPLY}}
    if stall:
        login = {"id": "sso-login", "note": "the browser at sso-v2-login: the identity provider's sign-in page, "
                                            "which the user never fills in",
                 "expect": {"method": "GET", "path_regex": re.escape(SSO_LOGIN_PATH)},
                 "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/html"]],
                             "body": _IDP_PAGE}}
        return [init, login]
    ret = "https%3A%2F%2F" + HOSTNAME + "%2F%2BCSCOE%2B%2Fsaml_ac_login.html"
    back = {"status": 302, "reason": "Found",
            "headers": [["Location", f"http://localhost:29786/api/sso/${{sso_blob}}?return={ret}"],
                        ["Set-Cookie", "acSamlv2Token=${sso_token}; path=/; secure"], ["Content-Length", "0"]],
            "body": ""}
    login = {"id": "sso-login", "note": "the browser at sso-v2-login; the identity provider stood in for (it would "
                                        "vouch for the user here): sent back to the client's port 29786 with the "
                                        "SSO token sealed to its STRAP DH key",
             "expect": {"method": "GET", "path_regex": re.escape(SSO_LOGIN_PATH)}, "respond": back}
    final = {"id": "sso-final", "note": "the browser, sent on by the client, at sso-v2-login-final",
             "expect": {"method": "GET", "path": SSO_FINAL_PATH},
             "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/html"]],
                         "body": "<html><body>Authentication successful. You may close this window.</body></html>\n"}}
    reply = {"id": "sso-token", "note": "the client's auth-reply with the SSO token -> complete and the webvpn cookie",
             "expect": {"method": "POST", "path": "/",
                        "body_contains": ['type="auth-reply"', "<sso-token>${sso_token}</sso-token>"]},
             "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS + cookie_headers(),
                         "body": complete_reply()}}
    if idp:  # the SAML request to the identity provider; its answer comes back to the assertion consumer service
        login = {"id": "sso-login", "note": "the browser at sso-v2-login: sent to the identity provider with a SAML "
                                            "authentication request (HTTP-Redirect binding)",
                 "expect": {"method": "GET", "path_regex": re.escape(SSO_LOGIN_PATH)},
                 "respond": {"status": 302, "reason": "Found",
                             "headers": [["Location", f"https://{IDP_HOST}{IDP_SSO_PATH}?SAMLRequest={_saml_request()}"
                                                      "&RelayState=ACFLOW-SAML"], ["Content-Length", "0"]],
                             "body": ""}}
        acs = {"id": "sso-acs", "note": "the browser posts the identity provider's SAML response to the assertion "
                                        "consumer service: sent back to the client's port 29786 with the SSO token "
                                        "sealed to its STRAP DH key",
               "expect": {"method": "POST", "path": SSO_ACS_PATH, "body_contains": ["SAMLResponse="]},
               "respond": back}
        return [init, login, acs, final, reply]
    return [init, login, final, reply]


def _saml_script(c: dict) -> dict:
    return {"name": "saml-external-browser",
            "description": "SAML single sign-on with an external browser: init is answered with sso-v2-login "
                           "(browser mode external); openconnect opens the lab's browser, which the gateway sends "
                           "back to http://localhost:29786/api/sso/<token sealed to the client's "
                           "X-AnyConnect-STRAP-DH-Pubkey>; the client posts <sso-token> and is logged in; tunnel "
                           "on CSTP",
            "vars": {"aggauth_handle": "1193840"},
            "steps": [*_sso_steps(stall=False), connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            # the browser's GET of the final page and the client's auth-reply race (both follow the token's
            # arrival at port 29786): whichever comes second is answered by its own step all the same
            "unmatched_nearest": True,
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _saml_stalled_script(c: dict) -> dict:
    return {"name": "saml-browser-stalled",
            "description": "SAML single sign-on with an external browser that never comes back: the browser gets "
                           "the identity provider's sign-in page and stops (the user closed the window); "
                           "openconnect waits on port 29786 until the user presses Ctrl-C",
            "vars": {"aggauth_handle": "1193841"},
            "steps": _sso_steps(stall=True),
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _saml_idp_script(c: dict, name: str = "saml-idp", handle: str = "1193843") -> dict:
    return {"name": name,
            "description": "SAML single sign-on with an external browser through an identity provider: sso-v2-login "
                           f"redirects the browser to {IDP_HOST} (a DNS name), whose sign-in page the user fills in; "
                           "its SAML response is posted back to the gateway, which sends the browser on to the "
                           "client's port 29786 with the token; tunnel on CSTP when it comes",
            "vars": {"aggauth_handle": handle},
            "steps": [*_sso_steps(stall=False, idp=True), connect_step(connect_headers(mtu=1399),
                                                                        note="tunnel on CSTP")],
            "unmatched_nearest": True,
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


#: what the lab must observe in the cases whose browser never reaches the identity provider
_IDP_NOT_REACHED = [
    ("the gateway sent the browser to the identity provider; nothing came back",
     lambda ctx: ([e.get("step") for e in ctx.ev("request", gateway=None)] == ["init", "sso-login"],
                  [e.get("step") for e in ctx.ev("request", gateway=None)])),
    ("the identity provider got no request", lambda ctx: (not ctx.ev("request", gateway=IDP_ADDR), None)),
    ("openconnect never got a token", no_log_line(r"SSO token")),
    ("openconnect did not connect", no_log_line(r"^CSTP connected"))]


def _saml_no_browser_script(c: dict) -> dict:
    init, login = _sso_steps(stall=True)
    init = {**init, "respond": {**init["respond"], "body": init["respond"]["body"].replace(
        "<sso-v2-browser-mode>external</sso-v2-browser-mode>\n", "")}}
    return {"name": "saml-no-browser",
            "description": "SAML single sign-on in the default (embedded browser) mode, to a client that has no "
                           "browser to offer: openconnect without a webview",
            "vars": {"aggauth_handle": "1193842"},
            "steps": [init, login],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


# Host scan (Cisco Secure Desktop / posture), as openconnect's csd-post.sh (the Debian package's
# /usr/libexec/openconnect/csd-post.sh, run by openconnect --csd-wrapper) walks it: the init answered with <host-scan>
# (ticket, token, base and wait URIs); the script GETs /+CSCOE+/sdesktop/token.xml?ticket=…&stub=0 for a token and
# POSTs the endpoint description to /+CSCOE+/sdesktop/scan.xml?reusebrowser=1 with the cookie sdesktop=<token>;
# openconnect then GETs the wait URI until the answer is no refresh page (it needs an XML document to go on) and posts
# init again with the sdesktop cookie. The element set of <host-scan> as openconnect reads it; not recorded from an ASA.
CSD_WRAPPER = "/usr/libexec/openconnect/csd-post.sh"
HOSTSCAN_WAIT = "/+CSCOE+/sdesktop/wait.html"
HOSTSCAN_INIT_REPLY = INIT_REPLY.replace("</opaque>\n", """</opaque>
<host-scan>
<host-scan-ticket>${hostscan_ticket}</host-scan-ticket>
<host-scan-token>${hostscan_token}</host-scan-token>
<host-scan-base-uri>/+CSCOE+/sdesktop/token.xml</host-scan-base-uri>
<host-scan-wait-uri>""" + HOSTSCAN_WAIT + """</host-scan-wait-uri>
</host-scan>
""", 1)
_REFRESH = ('<html><head><meta http-equiv="refresh" content="1; URL=' + HOSTSCAN_WAIT + '"></head>'
            "<body>Scanning…</body></html>\n")


def _hostscan_steps(*, stall: bool) -> list[dict]:
    steps = [
        {"id": "init", "note": "init -> the login form with <host-scan>: the client must run the host scan first",
         "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
         "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": HOSTSCAN_INIT_REPLY}},
        {"id": "hostscan-token", "note": "the CSD script asks for its token with the ticket",
         "expect": {"method": "GET", "path_regex": r"/\+CSCOE\+/sdesktop/token\.xml\?ticket=.*"},
         "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/xml"]],
                     "body": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<hostscan><token>${hostscan_token}"
                             "</token></hostscan>\n"}},
        {"id": "hostscan-results", "note": "the CSD script posts the endpoint description",
         "expect": {"method": "POST", "path": "/+CSCOE+/sdesktop/scan.xml?reusebrowser=1"},
         "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/html"]],
                     "body": "<html><body>ok</body></html>\n"}},
    ]
    if stall:  # the gateway never finishes evaluating: the wait page refreshes for ever
        steps.append({"id": "hostscan-wait", "note": "the wait page, a refresh page every time", "times": 1000,
                      "expect": {"method": "GET", "path": HOSTSCAN_WAIT},
                      "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/html"]],
                                  "body": _REFRESH}})
        return steps
    steps += [
        {"id": "hostscan-wait", "note": "the wait page: a refresh page twice", "times": 2,
         "expect": {"method": "GET", "path": HOSTSCAN_WAIT},
         "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/html"]], "body": _REFRESH}},
        {"id": "hostscan-done", "note": "the wait page once the scan is evaluated: an XML document",
         "expect": {"method": "GET", "path": HOSTSCAN_WAIT},
         "respond": {"status": 200, "reason": "OK", "headers": [["Content-Type", "text/xml"]],
                     "body": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<hostscan><status>TOKEN_SUCCESS</status>"
                             "</hostscan>\n"}},
        {"id": "init-after-scan", "note": "init again, with the sdesktop cookie: the login form",
         "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
         "respond": {"status": 200, "reason": "OK", "headers": XML_HEADERS, "body": INIT_REPLY}},
        *auth_steps()[1:],
    ]
    return steps


def _hostscan_script(c: dict) -> dict:
    return {"name": "hostscan",
            "description": "a host scan (posture) before the login: the client's CSD script fetches its token and "
                           "posts the endpoint description, the wait page refreshes twice, then the login and the "
                           "tunnel (CSTP)",
            "vars": {"aggauth_handle": "1193844", "hostscan_ticket": "A1B2C3D4E5F60718",
                     "hostscan_token": "0F1E2D3C4B5A69788796A5B4"},
            "steps": [*_hostscan_steps(stall=False), connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            "unmatched_nearest": True,
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _hostscan_stalled_script(c: dict) -> dict:
    return {"name": "hostscan-stalled",
            "description": "a host scan whose evaluation never ends: the wait page is a refresh page every time; the "
                           "user gives up (Ctrl-C) 8 s later",
            "vars": {"aggauth_handle": "1193845", "hostscan_ticket": "A1B2C3D4E5F60719",
                     "hostscan_token": "0F1E2D3C4B5A69788796A5B5"},
            "steps": _hostscan_steps(stall=True),
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


PORTAL_COOKIE = "5A1E7C2D9B3F4E6A8C0D2F4B6E8A0C2E"  # the web portal's own session: not the client's cookie


def _portal_script(c: dict) -> dict:
    logon = ("<!DOCTYPE html>\n<html><head><title>SSL VPN Service</title></head>\n<body>\n"
             '<form name="unicorn" method="post" action="/+webvpn+/index.html">\n'
             '<input type="text" name="username"/>\n<input type="password" name="password"/>\n'
             '<input type="submit" name="Login" value="Logon"/>\n</form>\n</body></html>\n')
    portal = ("<!DOCTYPE html>\n<html><head><title>SSL VPN Service</title></head>\n<body>\n"
              "<h1>Welcome</h1>\n<p><a href=\"/CACHE/stc/2/index.html\">Start AnyConnect</a></p>\n"
              "<p><a href=\"/+CSCOE+/logout.html\">Logout</a></p>\n</body></html>\n")
    html = [["Content-Type", "text/html; charset=utf-8"], ["Cache-Control", "no-store"]]
    return {"name": "web-portal-first",
            "description": "the user first visits the gateway's web portal in a browser (GET / -> logon page, form "
                           "login, portal page with its own webvpn cookie), then the client logs in with "
                           "aggregate-auth and connects (CSTP)",
            "vars": {"aggauth_handle": "1193850"},
            "steps": [
                {"id": "portal-root", "note": "the browser at the gateway's address: to the logon page",
                 "expect": {"method": "GET", "path": "/"},
                 "respond": {"status": 302, "reason": "Found",
                             "headers": [["Location", "/+CSCOE+/logon.html"], ["Content-Length", "0"]]}},
                {"id": "portal-logon", "note": "the logon page (HTML form)",
                 "expect": {"method": "GET", "path": "/+CSCOE+/logon.html"},
                 "respond": {"status": 200, "reason": "OK", "headers": html, "body": logon}},
                {"id": "portal-login", "note": "the form login: the portal's session cookie, to the portal page",
                 "expect": {"method": "POST", "path": "/+webvpn+/index.html", "body_contains": [f"username={USER}"]},
                 "respond": {"status": 302, "reason": "Found",
                             "headers": [["Location", "/+CSCOE+/portal.html"], ["Content-Length", "0"],
                                         ["Set-Cookie", f"webvpn={PORTAL_COOKIE}; path=/; secure; HttpOnly"]]}},
                {"id": "portal-page", "note": "the portal page (a link to start the client)",
                 "expect": {"method": "GET", "path": "/+CSCOE+/portal.html"},
                 "respond": {"status": 200, "reason": "OK", "headers": html, "body": portal}},
                *auth_steps(),
                connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


MEMBER_GW = "198.18.0.4"  # the load-balancing member a director sends the client to


def _director_script(c: dict) -> dict:
    return {"name": "load-balancer-redirect",
            "description": f"an ASA load-balancing director (the cluster address {HOSTNAME} resolves to): it answers "
                           f"the client's first request with an HTTP redirect to the least-loaded member, "
                           f"https://{MEMBER_GW}/ (its address; redirect-fqdn would give a name)",
            "vars": {},
            "steps": [{"id": "redirect", "note": "init -> 302 to the member",
                       "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
                       "respond": {"status": 302, "reason": "Found",
                                   "headers": [["Location", f"https://{MEMBER_GW}/"], ["Content-Length", "0"],
                                               ["Connection", "close"]], "body": ""},
                       "close": True}],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _member_script(c: dict) -> dict:
    return {"name": "load-balancer-member",
            "description": "the member the director sent the client to: ASA-style login, then the tunnel on CSTP",
            "vars": {"aggauth_handle": "1193843"},
            "steps": [*auth_steps(), connect_step(connect_headers(mtu=1399), note="tunnel on CSTP")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _dtls_source_script(c: dict) -> dict:
    return {"name": "dtls-source-mismatch",
            "description": f"CONNECT 200 with legacy DTLS on X-DTLS-Port {DTLS_PORT}; the gateway answers every "
                           f"DTLS ClientHello arriving at UDP {DTLS_PORT} with a DTLS HelloVerifyRequest sent from "
                           f"another port, UDP {DTLS_REPLY_PORT} (as an asymmetric path or a NAT rewriting the "
                           "source port would)",
            "vars": {"aggauth_handle": "1193836"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1399, dtls={"port": DTLS_PORT, "mtu": 1399,
                                                                   "cipher": "AES256-SHA"}),
                                   note=f"X-DTLS-Port {DTLS_PORT}; the answers come from {DTLS_REPLY_PORT}")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []},
            "udp_responders": [{"port": DTLS_PORT, "reply_from": DTLS_REPLY_PORT, "reply": "hello-verify-request"}]}


def _keepalive_script(c: dict) -> dict:
    return {"name": "keepalive-missing",
            "description": "CONNECT 200 with X-CSTP-Keepalive 5 and X-CSTP-DPD 30, no DTLS; the gateway sends "
                           "nothing unasked (it only answers DPD and echoes pings). The lab freezes the openconnect "
                           "process (SIGSTOP) for 16.5 s right after its first KEEPALIVE, then lets it go on "
                           "(SIGCONT): a hung or suspended client",
            "vars": {"aggauth_handle": "1193837"},
            "steps": [*auth_steps(), connect_step(connect_headers(mtu=1399, keepalive=5, dpd=30),
                                                  note="keepalive 5 s: 2 x 5 + 5 = 15 s of silence is too long")],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


def _gateway_controls_script(c: dict) -> dict:
    return {"name": "gateway-dpd-keepalive",
            "description": "CONNECT 200 with DTLS PSK-NEGOTIATE on X-DTLS-Port 4443 served by the gateway itself "
                           "(replay.dtls_psk_server in process); the gateway sends its own KEEPALIVE and DPD-REQ "
                           "frames: over CSTP at 1.0 and 1.5 s after CONNECT, then over DTLS (once up) every 1.5 s "
                           "from 3.0 s (DPD-REQ at 3.0, 4.5, 6.0; KEEPALIVE at 3.5, 5.0, 6.5)",
            "vars": {"aggauth_handle": "1193839"},
            "steps": [*auth_steps(),
                      connect_step(psk_connect_headers(dpd=30, keepalive=20),
                                   note=f"PSK-NEGOTIATE on UDP {DTLS_PORT}, served in process")],
            "cstp": {"answer_dpd": True, "icmp_echo": True,
                     "actions": [{"at": 1.0, "send": "keepalive"}, {"at": 1.5, "send": "dpd-req"},
                                 *({"at": 3.0 + 1.5 * i, "send": "dpd-req", "channel": "dtls"} for i in range(3)),
                                 *({"at": 3.5 + 1.5 * i, "send": "keepalive", "channel": "dtls"}
                                   for i in range(3))]},
            "dtls": {"mode": "psk-negotiate", "port": DTLS_PORT}}


def _env_mtu(ctx: Ctx, key: str = "INTERNAL_IP4_MTU") -> str | None:
    return ctx.env.get("connect", {}).get(key)


def _hello_session_ids(ctx: Ctx) -> tuple[bool, object]:
    hellos = [e for e in ctx.ev("udp-rx") if (e.get("dtls") or {}).get("handshake_type") == 1]
    sid = next((v for k, v in _connect_sent(ctx) if k == "X-DTLS-Session-ID"), None)
    ids = sorted({h["dtls"].get("session_id") for h in hellos})
    return bool(hellos) and ids == [sid], {"hellos": len(hellos), "session_ids": ids, "x_dtls_session_id": sid,
                                           "record_versions": sorted({h["dtls"]["record_version"] for h in hellos})}


def _connect_sent(ctx: Ctx) -> list[tuple[str, str]]:
    r = next((e for e in ctx.ev("response") if e.get("step") == "connect"), None)
    return [tuple(h) for h in r["headers"]] if r else []


def _urlencoded_post(ctx: Ctx) -> tuple[bool, object]:
    r = ctx.ev("request")[2]
    ok = r["body"].startswith("username=") and any(k.lower() == "content-type" and "x-www-form-urlencoded" in v
                                                   for k, v in r["headers"])
    return ok, r["body"].split("&password")[0]


def _connect_addresses(ctx: Ctx) -> list[str | None]:
    out = []
    for r in ctx.ev("response"):
        if r.get("step") in ("connect", "reconnect") and r["status"] == 200:
            out.append(next((v for k, v in r["headers"] if k == "X-CSTP-Address"), None))
    return out


def _client_silence(seconds: float) -> Check:
    """The longest gap between CSTP frames from the client (gateway record) exceeds `seconds`."""
    def check(ctx: Ctx):
        ts = [e["t"] for e in ctx.ev("cstp-rx")]
        gaps = sorted(((b - a, a, b) for a, b in itertools.pairwise(ts)), reverse=True)
        best = gaps[0] if gaps else (0.0, None, None)
        return best[0] > seconds, {"longest_gap": round(best[0], 3), "from": best[1], "to": best[2]}
    return check


def _dtls_server_has(pattern: str) -> Check:
    def check(ctx: Ctx):
        rx = re.compile(pattern)
        hit = next(([ts, line] for ts, line in ctx.extra.get("dtls_server_log", []) if rx.search(line)), None)
        return hit is not None, hit
    return check


def _dtls_server_new_session(ctx: Ctx) -> tuple[bool, object]:
    log = [line for _, line in ctx.extra.get("dtls_server_log", [])]
    version = next((m.group(1) for l in log for m in [re.search(r"Selected version (\S+)", l)] if m), None)
    suite = next((m.group(1) for l in log for m in [re.search(r"Selected cipher suite: (\S+)", l)] if m), None)
    sid = next((m.group(1).upper() for l in log for m in [re.search(r"HSK\[\w+\]: SessionID: ([0-9a-f]+)", l)]
                if m), None)
    offered = next((v for k, v in _connect_sent(ctx) if k == "X-DTLS-Session-ID"), None)
    ok = version == "DTLS0.9" and suite == "GNUTLS_RSA_AES_256_CBC_SHA1" and sid is not None and sid != offered
    return ok, {"version": version, "cipher_suite": suite, "server_session_id": sid, "x_dtls_session_id": offered}


def _dtls_events(ctx: Ctx, etype: str) -> list[dict]:
    """The events replay.dtls_psk_server recorded (dtls-events.jsonl) of type `etype`."""
    return [e for e in ctx.extra.get("dtls_events", []) if e.get("type") == etype]


def _dtls_event(etype: str) -> Check:
    def check(ctx: Ctx):
        evs = _dtls_events(ctx, etype)
        return bool(evs), [{k: v for k, v in e.items() if k != "sent_hex"} for e in evs][:3]
    return check


def _action_time(ctx: Ctx, name: str) -> float | None:
    return next((a["time"] for a in ctx.extra.get("actions", []) if a["action"] == name), None)


def _keepalive_around_pause(when: str) -> Check:
    def check(ctx: Ctx):
        stop, cont = _action_time(ctx, "client-sigstop"), _action_time(ctx, "client-sigcont")
        ka = [e["t"] for e in ctx.ev("cstp-rx", name="keepalive")]
        hits = [t for t in ka if (t < stop if when == "before" else t > cont)] if stop and cont else []
        return bool(hits), {"keepalives": ka, "sigstop": stop, "sigcont": cont}
    return check


def _silence_is_pause(ctx: Ctx) -> tuple[bool, object]:
    ok, gap = _client_silence(15.0)(ctx)
    stop, cont = _action_time(ctx, "client-sigstop"), _action_time(ctx, "client-sigcont")
    return bool(ok and stop and cont and gap["from"] <= stop and gap["to"] >= cont), \
        {**gap, "sigstop": stop, "sigcont": cont}


def _pings_answered(ctx: Ctx) -> tuple[bool, object]:
    pings = ctx.extra.get("pings", [])
    ok = bool(pings) and all(p["received"] == p["sent"] for p in pings if p["family"] == 4)
    return ok, pings


#: what the sleep cases (sleep-reconnect-refused, sleep-gateway-dpd, sleep-past-idle-timeout) expect in common
RECONNECTED_WITH_COOKIE = (
    "openconnect reconnected with its cookie after the sleep, without authenticating again",
    lambda ctx: (len([e for e in ctx.ev("request") if e["method"] == "CONNECT"]) == 2,
                 [(e["session"], e["method"], e["step"]) for e in ctx.ev("request")]))
COOKIE_REFUSED = [
    ("openconnect reported the 401",
     log_line(r"^Got inappropriate HTTP CONNECT response: HTTP/1\.1 401 Cookie is not acceptable")),
    ("openconnect exited non-zero", lambda ctx: (ctx.exit_code not in (0, None), ctx.exit_code))]
#: (reconnect-address-changed too)
FIRST_TUNNEL_CLOSED = (
    "the gateway closed the first tunnel connection by script",
    lambda ctx: (len(ctx.ev("cstp-action", action="close")) == 1, ctx.ev("cstp-action", action="close")))
#: a laptop asleep 40 s from the first thing the client sent on its tunnel (its network cut too)
ASLEEP_40S = {"after_gateway_line": "cstp-rx: session 1:", "timeout": 12.0, "seconds": 40.0, "network": True}


def _sleep_gateway_dpd_script(c: dict) -> dict:
    return {"name": "sleep-gateway-dpd",
            "description": "CONNECT 200 (CSTP only, X-CSTP-DPD 30, keepalive 20: the client's timers); the gateway "
                           "runs its own DPD (as an ASA does, on its own interval): a CSTP DPD request 12 s after the "
                           "CONNECT answer (~10 s after the client's last packet), answered; the lab then puts the "
                           "client to sleep for 40 s (openconnect SIGSTOP, its network cut on the client's side) and "
                           "the capture is the gateway's: its DPD requests at 23 and 28 s go out unanswered into the "
                           "silence (TCP sends the first again and again, the second held behind it); 38 s after the "
                           "CONNECT it ends the tunnel's TLS connection (its DPD timeout: the tunnel torn down, the "
                           "session kept); on waking openconnect reconnects with its cookie and the CONNECT is "
                           "answered 200",
            "vars": {"aggauth_handle": "1193854"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1399, keepalive=20, dpd=30), note="the tunnel, CSTP only"),
                      connect_step(connect_headers(mtu=1399, keepalive=20, dpd=30), step_id="reconnect",
                                   note="after the sleep: the session kept, the reconnect accepted")],
            "cstp": {"answer_dpd": True, "icmp_echo": True,
                     "actions": [*({"at": at, "send": "dpd-req", "tunnels": [1]} for at in (12.0, 23.0, 28.0)),
                                 {"at": 38.0, "send": "close", "tunnels": [1]}]}}


def _sleep_past_idle_script(c: dict) -> dict:
    d = _sleep_refused_script(c)
    h = d["steps"][-2]["respond"]["headers"]
    h[h.index(["X-CSTP-Idle-Timeout", "1800"])] = ["X-CSTP-Idle-Timeout", "30"]
    h[h.index(["X-CSTP-Disconnected-Timeout", "1800"])] = ["X-CSTP-Disconnected-Timeout", "30"]
    d.update(name="sleep-past-idle-timeout", vars={"aggauth_handle": "1193853"},
             description="sleep-reconnect-refused with X-CSTP-Idle-Timeout 30 (and X-CSTP-Disconnected-Timeout 30) in "
                         "the CONNECT answer: the 40 s sleep outlasts the idle timeout, for which a Cisco gateway "
                         "keeps a session whose tunnel is down (its 'parent' session: Cisco TAC document 116312), "
                         "so the reconnect's cookie is refused (401) and the user has to log in again")
    return d


def _sleep_refused_script(c: dict) -> dict:
    return {"name": "sleep-reconnect-refused",
            "description": "CONNECT 200 (CSTP only, X-CSTP-DPD 10, keepalive 20); the lab then puts the client to "
                           "sleep for 40 s (openconnect SIGSTOP, all traffic dropped); 12 s after CONNECT the gateway "
                           "ends the tunnel's TLS connection (its FIN lost in the silence), as a gateway that gave a "
                           "silent session up does; on waking openconnect reconnects with its cookie and the CONNECT "
                           "is answered 401 Cookie is not acceptable (the session is gone): the user has to log in "
                           "again",
            "vars": {"aggauth_handle": "1193851"},
            "steps": [*auth_steps(),
                      connect_step(connect_headers(mtu=1399, keepalive=20, dpd=10), note="the tunnel, CSTP only"),
                      connect_step([["Content-Length", "0"]], status=401, reason="Cookie is not acceptable",
                                   close=True, step_id="reconnect",
                                   note="after the sleep the session is gone: the reconnect's cookie is refused")],
            "cstp": {"answer_dpd": True, "icmp_echo": True,
                     "actions": [{"at": 12.0, "send": "close", "tunnels": [1]}]}}


CASES: dict[str, Case] = {c.name: c for c in [
    Case("aggauth-v1-fallback",
         "XML init POST answered with an HTML page: openconnect falls back to GET / and a urlencoded POST",
         _fallback_script,
         [("the gateway saw POST / (XML init), then GET /, POST /+webvpn+/index.html, CONNECT",
           requests_are([("POST", "/"), ("GET", "/"), ("POST", "/+webvpn+/index.html"),
                         ("CONNECT", "/CSCOSSLC/tunnel")])),
          ("the first POST was aggregate-auth v2 XML",
           lambda ctx: ('aggregate-auth-version="2"' in ctx.ev("request")[0]["body"], ctx.ev("request")[0]["body"])),
          ("the second POST was urlencoded (no XML)", _urlencoded_post),
          ("openconnect rejected the HTML answer (no <auth> node)", log_line(r'XML response has no "auth" node')),
          ("openconnect did not enable XML POST", no_log_line(r"^XML POST enabled")),
          ("the fallback GET came on a new TLS session", count_at_least("tls-established", 2)),
          ("openconnect connected with the legacy cookie", log_line(r"^CSTP connected"))],
         pings=[(4, 2, 56)]),
    Case("dtls-mtu-differs",
         "X-CSTP-MTU 1399 vs X-DTLS-MTU 1300, legacy DTLS to a black-hole port; CSTP DPD/keepalive/DATA",
         _dtls_mtu_script,
         [("openconnect logged X-CSTP-MTU 1399", log_line(r"^X-CSTP-MTU: 1399$")),
          ("openconnect logged X-DTLS-MTU 1300", log_line(r"^X-DTLS-MTU: 1300$")),
          ("openconnect applied the larger of the two (1399) as the tunnel MTU",
           lambda ctx: (_env_mtu(ctx) == "1399", _env_mtu(ctx))),
          ("openconnect tried legacy DTLS with X-DTLS-Session-ID at the black-hole port", _hello_session_ids),
          ("openconnect's DTLS handshake failed", log_line(r"DTLS handshake (timed out|failed)")),
          ("the tunnel came up on CSTP with DTLS still in progress",
           log_line(r"^Configured as \S+, with SSL connected and DTLS in progress")),
          ("openconnect answered the gateway's DPD-REQ", log_line(r"^Got CSTP DPD request")),
          ("the client sent DPD-REQ and the gateway answered DPD-RESP",
           lambda ctx: (bool(ctx.ev("cstp-rx", name="dpd-req")) and bool(ctx.ev("cstp-tx", name="dpd-resp")),
                        {"rx": len(ctx.ev("cstp-rx", name="dpd-req")), "tx": len(ctx.ev("cstp-tx", name="dpd-resp"))})),
          ("openconnect logged the gateway's DPD-RESP", log_line(r"^Got CSTP DPD response")),
          ("the client sent KEEPALIVE", count_at_least("cstp-rx", 1, name="keepalive")),
          ("pings went through the tunnel over CSTP (gateway echo)", _pings_answered),
          ("the client ended with DISCONNECT", count_at_least("cstp-rx", 1, name="disconnect"))],
         wait_configured=25.0, pings=[(4, 3, 56), (4, 2, 1300)], hold=7.0),
    Case("connect-rejected", "CONNECT answered 401 Cookie is not acceptable", _rejected_script,
         [("openconnect reported the 401",
           log_line(r"^Got inappropriate HTTP CONNECT response: HTTP/1\.1 401 Cookie is not acceptable")),
          ("openconnect gave up the tunnel", log_line(r"^Creating SSL connection failed")),
          ("openconnect exited non-zero", lambda ctx: (ctx.exit_code not in (0, None), ctx.exit_code)),
          ("no CSTP data was exchanged", lambda ctx: (not ctx.ev("tunnel-start"), len(ctx.ev("tunnel-start"))))],
         expect_connect=False),
    Case("connect-unavailable", "CONNECT answered 503 Service Unavailable + X-Reason", _unavailable_script,
         [("openconnect reported the X-Reason",
           log_line(r"^VPN service unavailable; reason: No assigned address")),
          ("openconnect gave up the tunnel", log_line(r"^Creating SSL connection failed")),
          ("openconnect exited non-zero", lambda ctx: (ctx.exit_code not in (0, None), ctx.exit_code))],
         expect_connect=False),
    Case("mtu-ipv6-small", "X-CSTP-MTU 1200 with X-CSTP-Address-IP6: IPv6 in a tunnel below 1280",
         _ipv6_small_script,
         [("openconnect logged X-CSTP-MTU 1200", log_line(r"^X-CSTP-MTU: 1200$")),
          ("openconnect warned that the MTU is too small for IPv6",
           log_line(r"IPv6 configuration received but MTU 1200 is too small")),
          ("the vpnc-script got MTU 1200 and the IPv6 address",
           lambda ctx: (_env_mtu(ctx) == "1200" and bool(_env_mtu(ctx, "INTERNAL_IP6_NETMASK")),
                        {"INTERNAL_IP4_MTU": _env_mtu(ctx),
                         "INTERNAL_IP6_NETMASK": _env_mtu(ctx, "INTERNAL_IP6_NETMASK")})),
          ("the client kernel refused IPv6 on the tun (MTU < 1280)",
           lambda ctx: (ctx.extra.get("tun_ipv6", {}).get("rc") not in (None, "0"), ctx.extra.get("tun_ipv6"))),
          ("IPv4 pings went through the tunnel (gateway echo)", _pings_answered),
          ("the client ended with DISCONNECT", count_at_least("cstp-rx", 1, name="disconnect"))],
         pings=[(4, 2, 56), (6, 1, 56)]),
    Case("profile-hash-mismatch",
         "vpn-profile-manifest sha1 differs from the served profile; curl downloader GET; cookie CONNECT",
         _profile_script,
         [("the manifest hash differs from the served profile's sha1",
           lambda ctx: (ctx.extra["profile"]["manifest_sha1"] != ctx.extra["profile"]["served_sha1"],
                        ctx.extra["profile"])),
          ("the downloader got exactly the served profile (so its sha1 mismatches the manifest)",
           lambda ctx: (ctx.extra["profile"].get("downloaded_sha1") == ctx.extra["profile"]["served_sha1"]
                        and ctx.extra["profile"].get("curl_status") == 200, ctx.extra["profile"])),
          ("openconnect logged the manifest it was given",
           lambda ctx: (ctx.client_has(re.escape(ctx.extra["profile"]["manifest_sha1"])) is not None, None)),
          ("the gateway saw three TLS sessions (auth, downloader, tunnel)", count_at_least("tls-established", 3)),
          ("the profile GET and the CONNECT carried the issued cookie",
           lambda ctx: (all(e["webvpn_cookie_ok"] for e in ctx.ev("request") if e["method"] in ("GET", "CONNECT")),
                        [(e["method"], e["webvpn_cookie_ok"]) for e in ctx.ev("request")])),
          ("openconnect connected with the cookie", log_line(r"^CSTP connected"))],
         flow="split", downloader=True, pings=[(4, 2, 56)]),
    Case("server-cert-hash-mismatch",
         "<server-cert-hash> in the complete answer is not the SHA-1 of the presented certificate",
         _cert_hash_script,
         [("the advertised server-cert-hash differs from the presented certificate's SHA-1",
           lambda ctx: (ctx.extra["cert"]["advertised"] != ctx.extra["cert"]["presented"], ctx.extra["cert"])),
          ("openconnect logged the advertised hash",
           lambda ctx: (ctx.client_has(re.escape(ctx.extra["cert"]["advertised"])) is not None, None)),
          ("openconnect does not check it: it connected anyway", log_line(r"^CSTP connected"))],
         pings=[(4, 2, 56)]),
    Case("tls-alert", "the CONNECT session's TLS handshake is aborted with a fatal handshake_failure alert",
         _tls_alert_script,
         [("authentication completed on TLS session 1",
           lambda ctx: (bool(ctx.ev("response", step="auth-reply")), len(ctx.ev("response", step="auth-reply")))),
          ("the gateway aborted TLS session 2 with handshake_failure (40)",
           lambda ctx: (any(e["session"] == 2 and e["alert_code"] == 40 for e in ctx.ev("tls-failed")),
                        [{k: e[k] for k in ("session", "alert_sent", "error")} for e in ctx.ev("tls-failed")])),
          ("openconnect reported the TLS failure",
           log_line(r"(?i)fatal alert|handshake failed|SSL connection failure")),
          ("no CONNECT reached the gateway",
           lambda ctx: (not [e for e in ctx.ev("request") if e["method"] == "CONNECT"], None))],
         flow="split", expect_connect=False),
    Case("terminate", "4 s after CONNECT the gateway sends a CSTP TERMINATE (0x09) frame", _terminate_script,
         [("the gateway sent TERMINATE on the tunnel",
           lambda ctx: (len(ctx.ev("cstp-tx", name="terminate")) == 1,
                        [{k: e[k] for k in ("t", "session", "length")} for e in ctx.ev("cstp-tx", name="terminate")])),
          ("openconnect logged the terminate packet", log_line(r"received server terminate packet")),
          ("openconnect ended by itself (no SIGINT needed)",
           lambda ctx: (not [a for a in ctx.extra["actions"] if a["action"] == "client-sigint"], ctx.exit_code)),
          ("openconnect logged that the server ended the session",
           log_line(r"^Session terminated by server; exiting")),
          ("after the TERMINATE openconnect sent a BYE (DISCONNECT 'Server request') and the gateway received it",
           lambda ctx: (any(e.get("reason") == "Server request" and e["t"] > ctx.ev("cstp-tx", name="terminate")[0]["t"]
                            for e in ctx.ev("cstp-rx", name="disconnect")),
                        [{k: e.get(k) for k in ("t", "reason", "reason_code")}
                         for e in ctx.ev("cstp-rx", name="disconnect")])),
          ("openconnect exited non-zero", lambda ctx: (ctx.exit_code not in (0, None), ctx.exit_code))],
         pings=[(4, 2, 56)], hold=0.0, wait_exit=15.0),
    Case("session-timeout-remaining", "the CONNECT answer gives 6 s of an 8-hour session timeout; the gateway then "
         "sends DISCONNECT with a reason text", _session_timeout_script,
         [("the CONNECT answer announced the session timeout and what remains of it",
           lambda ctx: (any(["X-CSTP-Session-Timeout-Remaining", "6"] in (e.get("headers") or [])
                            for e in ctx.ev("response")), None)),
          ("the gateway sent DISCONNECT on the tunnel",
           lambda ctx: (len(ctx.ev("cstp-tx", name="disconnect")) == 1,
                        [{k: e[k] for k in ("t", "session", "length")} for e in ctx.ev("cstp-tx", name="disconnect")])),
          ("openconnect logged the gateway's disconnect", log_line(r"(?i)received server disconnect")),
          ("openconnect ended by itself (no SIGINT needed)",
           lambda ctx: (not [a for a in ctx.extra["actions"] if a["action"] == "client-sigint"], ctx.exit_code)),
          ("openconnect logged that the server ended the session",
           log_line(r"^Session terminated by server; exiting"))],
         pings=[(4, 2, 56)], hold=0.0, wait_exit=15.0),
    Case("reconnect-address-changed",
         "the gateway drops the tunnel's TLS connection; the reconnect's CONNECT gets another X-CSTP-Address",
         _reconnect_script,
         [FIRST_TUNNEL_CLOSED,
          ("openconnect reconnected on a new TLS session with its cookie, without authenticating again",
           lambda ctx: (len([e for e in ctx.ev("request") if e["method"] == "CONNECT"]) == 2
                        and all(e["webvpn_cookie_ok"] for e in ctx.ev("request") if e["method"] == "CONNECT")
                        and len({e["session"] for e in ctx.ev("request") if e["method"] == "CONNECT"}) == 2
                        and len([e for e in ctx.ev("request") if e["method"] == "POST"]) == 3,
                        [(e["session"], e["method"], e["step"]) for e in ctx.ev("request")])),
          ("both CONNECTs were answered 200, with different X-CSTP-Address",
           lambda ctx: (_connect_addresses(ctx) == [TUNNEL_IP, TUNNEL_IP_RECONNECT], _connect_addresses(ctx))),
          ("openconnect refused the changed address",
           log_line(rf"^Reconnect gave different Legacy IP address \({re.escape(TUNNEL_IP_RECONNECT)} != "
                    rf"{re.escape(TUNNEL_IP)}\)")),
          ("openconnect gave up and exited non-zero", lambda ctx: (ctx.exit_code not in (0, None), ctx.exit_code))],
         pings=[(4, 2, 56)], hold=0.0, wait_exit=20.0),
    Case("profile-missing",
         "vpn-profile-manifest announces a profile; the downloader's GET gets 404; cookie CONNECT",
         _profile_missing_script,
         [("the downloader's GET of the announced profile was answered 404",
           lambda ctx: (ctx.extra["profile"].get("served_status_line") == "HTTP/1.1 404 Not Found"
                        and ctx.extra["profile"].get("curl_status") == 404, ctx.extra["profile"])),
          ("the downloader saved no profile",
           lambda ctx: (ctx.extra["profile"].get("downloaded_sha1") is None, ctx.extra["profile"])),
          ("openconnect logged the manifest it was given",
           lambda ctx: (ctx.client_has(re.escape(ctx.extra["profile"]["manifest_sha1"] or "-")) is not None, None)),
          ("the gateway saw three TLS sessions (auth, downloader, tunnel)", count_at_least("tls-established", 3)),
          ("openconnect does not enforce the profile: it connected with the cookie anyway",
           log_line(r"^CSTP connected"))],
         flow="split", downloader=True, pings=[(4, 2, 56)]),
    Case("dtls-full-handshake",
         "legacy DTLS to a real DTLS server (gnutls-serv) that does a full handshake instead of resuming",
         _dtls_full_script,
         [("openconnect was given legacy DTLS (X-DTLS-Session-ID, X-DTLS-CipherSuite AES256-SHA)",
           lambda ctx: (ctx.client_has(r"^X-DTLS-Session-ID: [0-9A-F]{64}$") is not None
                        and ctx.client_has(r"^X-DTLS-CipherSuite: AES256-SHA$") is not None, None)),
          ("gnutls-serv could not resume: the session is not in its resumption database",
           _dtls_server_has(r"_gnutls_server_restore_session")),
          ("gnutls-serv chose DTLS 0.9 RSA_AES_256_CBC_SHA1 and a new session id, not X-DTLS-Session-ID",
           _dtls_server_new_session),
          ("gnutls-serv sent a full-handshake flight (ServerHello, Certificate, ServerHelloDone)",
           lambda ctx: (all(_dtls_server_has(rf"HSK\[\w+\]: {m} was queued")(ctx)[0]
                            for m in ("SERVER HELLO", "CERTIFICATE", "SERVER HELLO DONE")), None)),
          ("openconnect refused it: its resuming DTLS session has no certificate credentials for a full handshake",
           log_line(r"^DTLS handshake failed: Insufficient credentials for that request\.")),
          ("openconnect did not get as far as its 'possible MITM attack' check (the handshake never completed)",
           no_log_line(r"possible MITM attack")),
          ("the tunnel came up on CSTP", log_line(r"^Configured as ")),
          ("pings went through the tunnel over CSTP (gateway echo)", _pings_answered)],
         wait_configured=20.0, pings=[(4, 2, 56)], hold=1.0,
         dtls_server={"port": DTLS_PORT, "priority": "NORMAL:+VERS-DTLS0.9:+RSA:+AES-256-CBC:+SHA1:%COMPAT",
                      # gnutls-serv's HelloVerifyRequest always says DTLS 1.0 (0xfeff), which a DTLS 0.9 client
                      # drops: no cookie exchange, so the resuming ClientHello gets the server's answer directly
                      "options": ["--nocookie", "-d", "4"]}),
    Case("dtls-cookie",
         "DTLS PSK-NEGOTIATE to a real DTLS server that sends a HelloVerifyRequest: the client re-sends its "
         "ClientHello with the cookie and the DTLS channel comes up",
         _dtls_cookie_script,
         [("openconnect was given PSK-NEGOTIATE on UDP 4443 with an X-DTLS-App-ID",
           lambda ctx: (ctx.client_has(r"^X-DTLS-CipherSuite: PSK-NEGOTIATE$") is not None
                        and ctx.client_has(r"^X-DTLS-App-ID: [0-9A-F]{64}$") is not None, None)),
          ("the DTLS server answered the first ClientHello (no cookie) with a HelloVerifyRequest",
           _dtls_event("hello-verify-request")),
          ("the client re-sent its ClientHello with the server's cookie", _dtls_event("cookie-valid")),
          ("the DTLS server derived the PSK from the gateway's TLS session", _dtls_event("psk-derived")),
          ("the DTLS 1.2 PSK handshake completed (server: identity psk)",
           lambda ctx: (any(e.get("psk_identity") == "psk" and "PSK" in (e.get("description") or "")
                            for e in _dtls_events(ctx, "handshake-done")), _dtls_events(ctx, "handshake-done"))),
          ("openconnect: Established DTLS connection", log_line(r"^Established DTLS connection")),
          ("the pings went over DTLS and were answered there (server: ICMP echo replies)",
           lambda ctx: (len([e for e in _dtls_events(ctx, "tx") if e.get("why") == "ICMP echo reply"]) >= 3,
                        len([e for e in _dtls_events(ctx, "tx") if e.get("why") == "ICMP echo reply"]))),
          ("pings answered", _pings_answered)],
         pings=[(4, 3, 56)], hold=1.0, dtls_server={"kind": "psk", "port": DTLS_PORT}),
    Case("dtls-cookie-ignored",
         "as dtls-cookie, but a firewall rule on the client drops the DTLS server's answers after the capture "
         "point: the HelloVerifyRequests are on the wire, the client never sees them and keeps re-sending its "
         "cookie-less ClientHello until it gives up on DTLS; the tunnel stays on CSTP",
         _dtls_cookie_script,
         [("the DTLS server answered ClientHellos with HelloVerifyRequests (at least two)",
           lambda ctx: (len(_dtls_events(ctx, "hello-verify-request")) >= 2,
                        len(_dtls_events(ctx, "hello-verify-request")))),
          ("no ClientHello ever carried the cookie", lambda ctx: (not _dtls_events(ctx, "cookie-valid"), None)),
          ("openconnect did not establish DTLS", no_log_line(r"^Established DTLS connection")),
          ("pings answered (over CSTP)", _pings_answered)],
         pings=[(4, 3, 56)], hold=14.0, dtls_server={"kind": "psk", "port": DTLS_PORT},
         client_drops_udp_from=DTLS_PORT),
    Case("login-retry",
         "the first password is rejected ('Login failed.' in a new auth-request form, as ocserv does), the "
         "second accepted; the tunnel comes up",
         _login_retry_script,
         [("the gateway answered the wrong password with the form again, 'Login failed.'",
           lambda ctx: ([e.get("step") for e in ctx.ev("request")][:4] ==
                        ["init", "username", "wrong-password", "right-password"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect showed 'Login failed.' and asked for the password again",
           log_line(r"^Login failed\.$")),
          ("openconnect was logged in by the second password and connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, passwords=(WRONG_PASSWORD, USER_PASSWORD)),
    Case("auth-mfa-slow",
         f"the gateway answers the credentials {MFA_APPROVED_AFTER:g} s later (a multi-factor push approved on the "
         "phone), then the tunnel comes up",
         _auth_mfa_slow_script,
         [_held_answer("auth-reply", "the credentials"),
          ("openconnect was logged in and connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0),
    Case("auth-client-gives-up",
         f"the gateway has not answered the credentials after {CLIENT_GIVES_UP_AFTER:g} s (its authentication server "
         "still waiting for a push nobody approves); the user gives up (Ctrl-C), as AnyConnect before 4.8.02045 "
         "gives up after 12 s",
         _auth_client_gives_up_script,
         [("the gateway was holding its answer to the credentials when the client gave up",
           lambda ctx: (len(ctx.ev("delay", step="auth-reply")) == 1
                        and not ctx.ev("response", step="auth-reply"), ctx.ev("delay"))),
          ("openconnect did not connect", no_log_line(r"^CSTP connected"))],
         expect_connect=False, give_up_after=CLIENT_GIVES_UP_AFTER),
    Case("connect-slow",
         f"the gateway answers the CONNECT {CONNECT_ANSWERED_AFTER:g} s after it arrived (its DHCP server slow to give "
         "an address), then the tunnel comes up",
         _connect_slow_script,
         [_held_answer("connect", "the CONNECT"),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0),
    Case("login-retry-asa",
         "the first password is rejected with an <error> in the form (ASA style), the second accepted; the tunnel "
         "comes up",
         _login_retry_asa_script,
         [("the gateway answered the wrong password with the form and <error>Login failed.</error>",
           lambda ctx: ([e.get("step") for e in ctx.ev("request")][:4] ==
                        ["init", "init-group", "wrong-password", "right-password"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect showed the error and asked again", log_line(r"Login failed\.")),
          ("openconnect was logged in by the second password and connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, passwords=(WRONG_PASSWORD, USER_PASSWORD)),
    Case("saml-external-browser",
         "SAML single sign-on through an external browser: the token comes back by http://localhost:29786, the "
         "client posts it and is logged in",
         _saml_script,
         [("the gateway asked for single sign-on and got the token back in an auth-reply",
           lambda ctx: ([e.get("step") for e in ctx.ev("request") if e.get("step") != "sso-final"][:3]
                        == ["init", "sso-login", "sso-token"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("the browser was sent on to the final page", count_at_least("request", 1, step="sso-final")),
          ("openconnect received the token from the browser", log_line(r"^Got encrypted SSO token of \d+ bytes")),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, external_browser="follow"),
    Case("saml-browser-stalled",
         "SAML single sign-on whose browser never comes back: openconnect waits on port 29786; the user gives up "
         "(Ctrl-C) 8 s later",
         _saml_stalled_script,
         [("the gateway asked for single sign-on; the browser fetched the sign-in page and nothing came back",
           lambda ctx: ([e.get("step") for e in ctx.ev("request")] == ["init", "sso-login"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect never got a token", no_log_line(r"SSO token")),
          ("openconnect did not connect", no_log_line(r"^CSTP connected"))],
         expect_connect=False, external_browser="stall", give_up_after=8.0),
    Case("saml-no-browser",
         "SAML single sign-on in embedded-browser mode to openconnect, which has no embedded browser: it gives up at "
         "once",
         _saml_no_browser_script,
         [("the gateway asked for single sign-on and no browser came",
           lambda ctx: ([e.get("step") for e in ctx.ev("request")] == ["init"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect has no single sign-on handler", log_line(r"No SSO handler")),
          ("openconnect did not connect", no_log_line(r"^CSTP connected"))],
         expect_connect=False),
    Case("saml-idp",
         f"SAML single sign-on through an identity provider ({IDP_HOST}, resolved by the lab's DNS): the browser "
         "signs in there, its SAML response goes back to the gateway, the token to the client, which connects",
         _saml_idp_script,
         [("the gateway sent the browser to the identity provider and got the SAML response and the token",
           lambda ctx: ([e.get("step") for e in ctx.ev("request", gateway=None) if e.get("step") != "sso-final"][:4]
                        == ["init", "sso-login", "sso-acs", "sso-token"],
                        [e.get("step") for e in ctx.ev("request", gateway=None)])),
          ("the identity provider showed its sign-in page and took the user's credentials",
           lambda ctx: ([e.get("step") for e in ctx.ev("request", gateway=IDP_ADDR)] == ["idp-sign-in-page",
                                                                                         "idp-sign-in"],
                        [e.get("step") for e in ctx.ev("request", gateway=IDP_ADDR)])),
          ("openconnect received the token from the browser", log_line(r"^Got encrypted SSO token of \d+ bytes")),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, external_browser="follow", idp={"dns": "answer"}),
    Case("saml-idp-unknown",
         f"SAML single sign-on whose identity provider's name does not resolve (the lab's DNS answers {IDP_HOST} "
         "NXDOMAIN): the browser cannot leave the gateway's sign-in redirect; the user gives up (Ctrl-C) 8 s later",
         functools.partial(_saml_idp_script, name="saml-idp-unknown", handle="1193844"),
         _IDP_NOT_REACHED,
         expect_connect=False, external_browser="follow", give_up_after=8.0, idp={"dns": "nxdomain"}),
    Case("saml-idp-unreachable",
         f"SAML single sign-on whose identity provider ({IDP_HOST}) resolves but does not answer (TCP to it dropped "
         "on its way in): the browser's connection times out after 10 s; the user gives up (Ctrl-C) 14 s in",
         functools.partial(_saml_idp_script, name="saml-idp-unreachable", handle="1193845"),
         _IDP_NOT_REACHED,
         expect_connect=False, external_browser="follow", give_up_after=14.0, idp={"dns": "answer", "fault": "drop"}),
    Case("saml-idp-untrusted",
         f"SAML single sign-on whose identity provider ({IDP_HOST}) presents a certificate the browser does not "
         "trust: the browser ends the TLS handshake; the user gives up (Ctrl-C) 8 s later",
         functools.partial(_saml_idp_script, name="saml-idp-untrusted", handle="1193846"),
         _IDP_NOT_REACHED,
         expect_connect=False, external_browser="follow", give_up_after=8.0,
         idp={"dns": "answer", "trusted": False}),
    Case("hostscan",
         "a host scan (posture) before the login: token, endpoint description, wait page, then login and tunnel",
         _hostscan_script,
         [("the CSD script fetched its token and posted the scan",
           lambda ctx: ({"hostscan-token", "hostscan-results"} <= {e.get("step") for e in ctx.ev("request")},
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect waited for the evaluation, then posted init again and logged in",
           lambda ctx: ([e.get("step") for e in ctx.ev("request")][-4:] == ["init-after-scan", "init-group",
                                                                             "auth-reply", "connect"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("openconnect ran the script", log_line(r"Trying to run CSD Trojan script")),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, csd_wrapper=True),
    Case("hostscan-stalled",
         "a host scan whose evaluation never ends: the wait page refreshes until the user gives up",
         _hostscan_stalled_script,
         [("the CSD script posted the scan", count_at_least("request", 1, step="hostscan-results")),
          ("openconnect kept asking for the wait page", count_at_least("request", 3, step="hostscan-wait")),
          ("openconnect did not connect", no_log_line(r"^CSTP connected"))],
         expect_connect=False, csd_wrapper=True, give_up_after=8.0),
    Case("web-portal-first",
         "the user's browser visits the web portal first (form login, portal page), then openconnect logs in and "
         "connects",
         _portal_script,
         [("the browser logged in at the portal",
           lambda ctx: ({"portal-root", "portal-logon", "portal-login", "portal-page"}
                        <= {e.get("step") for e in ctx.ev("request")}, [e.get("step") for e in ctx.ev("request")])),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, portal_first=True),
    Case("load-balancer-redirect",
         "a load-balancing director redirects the client's first request to a member gateway, where it logs in and "
         "connects",
         _director_script,
         [("the director answered the init with a redirect to the member",
           lambda ctx: ([e.get("step") for e in ctx.ev("request") if not e.get("gateway")] == ["redirect"],
                        [e.get("step") for e in ctx.ev("request")])),
          ("the member got the login and the CONNECT",
           lambda ctx: ([e.get("step") for e in ctx.ev("request", gateway=MEMBER_GW)][-2:] == ["auth-reply",
                                                                                               "connect"],
                        [e.get("step") for e in ctx.ev("request", gateway=MEMBER_GW)])),
          ("openconnect connected", log_line(r"^CSTP connected")),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=1.0, member=_member_script),
    Case("dtls-source-mismatch",
         "DTLS ClientHellos to X-DTLS-Port are answered (HelloVerifyRequest) from another gateway port",
         _dtls_source_script,
         [("the gateway answered DTLS ClientHellos to the X-DTLS-Port from another port",
           lambda ctx: (bool(ctx.ev("udp-tx")) and all(e["port"] == DTLS_REPLY_PORT and e["answers_port"] == DTLS_PORT
                                                       for e in ctx.ev("udp-tx")),
                        [(e["port"], e["dst"], e["answers_port"]) for e in ctx.ev("udp-tx")])),
          ("openconnect tried legacy DTLS with X-DTLS-Session-ID", _hello_session_ids),
          ("each answer is a HelloVerifyRequest (type 22, the ClientHello's record version, handshake type 3)",
           lambda ctx: (bool(ctx.ev("udp-tx")) and all(
               e["record_version"] == (ctx.ev("udp-rx")[0]["dtls"] or {}).get("record_version")
               and e["handshake_type"] == 3 for e in ctx.ev("udp-tx")),
               [(e["record_version"], e["handshake_type"], e["length"]) for e in ctx.ev("udp-tx")])),
          ("openconnect never got the answers (its UDP socket talks to port 4443): the DTLS handshake timed out",
           log_line(r"^DTLS handshake timed out")),
          ("the tunnel came up on CSTP", log_line(r"^Configured as \S+, with SSL connected and DTLS in progress"))],
         wait_configured=20.0, pings=[(4, 2, 56)], hold=1.0),
    Case("keepalive-missing",
         "X-CSTP-Keepalive 5; after its first KEEPALIVE openconnect is frozen (SIGSTOP) for 16.5 s, then continued",
         _keepalive_script,
         [("openconnect was told keepalive 5", log_line(r"^CSTP connected\. DPD 30, Keepalive 5")),
          ("before the freeze the client sent KEEPALIVE on its 5 s schedule", _keepalive_around_pause("before")),
          ("no CSTP frame from the client for more than 2 x 5 + 5 s (gateway record)", _client_silence(15.0)),
          ("the silence is the freeze: it spans SIGSTOP..SIGCONT", _silence_is_pause),
          ("after SIGCONT the client sent KEEPALIVE again", _keepalive_around_pause("after")),
          ("the client ended with DISCONNECT", count_at_least("cstp-rx", 1, name="disconnect"))],
         pings=[(4, 2, 56)], hold=1.5,
         pause_client={"after_gateway_line": "cstp-rx: session 1: keepalive", "timeout": 12.0, "seconds": 16.5}),
    Case("sleep-reconnect-refused",
         "the client sleeps 40 s with the tunnel up; the gateway gives the session up; the reconnect's CONNECT is "
         "answered 401",
         _sleep_refused_script,
         [FIRST_TUNNEL_CLOSED,
          RECONNECTED_WITH_COOKIE,
          *COOKIE_REFUSED],
         pings=[(4, 2, 56)], hold=0.0, wait_exit=40.0,
         pause_client=ASLEEP_40S),
    Case("sleep-gateway-dpd",
         "captured at the gateway: the client sleeps 40 s while the gateway's DPD requests go unanswered; the gateway "
         "ends the tunnel connection; the reconnect with the cookie is accepted",
         _sleep_gateway_dpd_script,
         [("the gateway sent its 3 DPD requests on the first tunnel, the first answered",
           lambda ctx: (len(ctx.ev("cstp-tx", name="dpd-req")) == 3 and len(ctx.ev("cstp-rx", name="dpd-resp")) == 1,
                        [(e["t"], e["session"]) for e in ctx.ev("cstp-tx", name="dpd-req")])),
          FIRST_TUNNEL_CLOSED,
          RECONNECTED_WITH_COOKIE,
          ("the reconnect's tunnel came up (openconnect: CSTP connected twice)",
           lambda ctx: (len([1 for _, line in ctx.client if line.startswith("CSTP connected")]) == 2, None))],
         pings=[(4, 2, 56)], hold=4.0, capture_side="gateway",
         pause_client={"after_gateway_line": "cstp-rx: session 1: dpd-resp", "timeout": 20.0, "seconds": 40.0,
                       "network": True}),
    Case("sleep-past-idle-timeout",
         "the client sleeps 40 s, longer than the idle timeout (30 s) the CONNECT answer announced; the reconnect's "
         "CONNECT is answered 401",
         _sleep_past_idle_script,
         [("the CONNECT answer announced an idle timeout of 30 s",
           lambda ctx: (any(["X-CSTP-Idle-Timeout", "30"] in (e.get("headers") or []) for e in ctx.ev("response")),
                        None)),
          RECONNECTED_WITH_COOKIE,
          *COOKIE_REFUSED],
         pings=[(4, 2, 56)], hold=0.0, wait_exit=40.0,
         pause_client=ASLEEP_40S),
    Case("gateway-dpd-keepalive",
         "the gateway sends its own KEEPALIVE and DPD-REQ frames, over CSTP and then over DTLS (PSK-NEGOTIATE)",
         _gateway_controls_script,
         [("openconnect: Established DTLS connection", log_line(r"^Established DTLS connection")),
          ("openconnect got the gateway's DPD-REQ over CSTP", log_line(r"^Got CSTP DPD request")),
          ("openconnect got the gateway's DPD-REQ over DTLS", log_line(r"^Got DTLS DPD request")),
          ("the gateway sent KEEPALIVE and DPD-REQ over CSTP",
           lambda ctx: ({e.get("name") for e in ctx.ev("cstp-tx") if "script action" in (e.get("why") or "")}
                        >= {"keepalive", "dpd-req"}, None)),
          ("pings answered", _pings_answered)],
         pings=[(4, 2, 56)], hold=6.0),
]}


def _large_package_script(c: dict) -> dict:
    return {"name": "downloader-large-package",
            "description": f"the complete answer's manifest announces a {PACKAGE_SIZE}-byte file (more than acflow's "
                           "16 MiB HTTP body bound) with its SHA-1; the downloader (curl, with the webvpn cookie, on "
                           "its own TLS session) fetches it whole; then the tunnel is opened with the cookie",
            "vars": {"aggauth_handle": "1193836"},
            # announced in the vpn-profile-manifest with its SHA-1, as a profile is: the analysis checks the hash
            "steps": [*auth_steps(complete_body=complete_reply(profile=(PACKAGE_URI, _package_sha1())),
                                  complete_headers=cookie_headers((PACKAGE_URI, _package_sha1()))),
                      {"id": "package-get", "note": "the package, whole",
                       "expect": {"method": "GET", "path": PACKAGE_URI, "cookie": "${cookie}"},
                       "respond": {"status": 200, "reason": "OK",
                                   "headers": [["Content-Type", "application/octet-stream"]],
                                   "body_hex": package_bytes().hex()}},
                      connect_step(connect_headers(mtu=1399))],
            "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": []}}


#: cases run live by the tests only (their captures are too big for samples/): not in "all"
LIVE_CASES: dict[str, Case] = {c.name: c for c in [
    Case("downloader-large-package",
         "the downloader fetches a 17 MiB client package (over acflow's HTTP body bound); cookie CONNECT",
         _large_package_script,
         [("curl got the whole package",
           lambda ctx: (ctx.extra["profile"].get("downloaded_sha1") == _package_sha1()
                        == ctx.extra["profile"].get("manifest_sha1")
                        and ctx.extra["profile"].get("curl_status") == 200, ctx.extra["profile"])),
          ("openconnect connected with the cookie", log_line(r"^CSTP connected"))],
         flow="split", downloader=True, download_uri=PACKAGE_URI, pings=[(4, 1, 56)]),
]}
