"""`acflow replay client`: play a recorded client's session again against a gateway, its inner traffic through a
TUN device in a network namespace (issue #14).

    acflow replay client CAPTURE --keylog K… [--session ID] --gateway URL [--user U]
        [--password-stdin | --reuse-credentials] [--netns NAME] [--speed X | --no-timing] [--no-dtls]
        [--write FILE] [--cafile F | --servercert SHA] [--resolve HOST:ADDR] [--format terminal|json] [-o report]

What is played (in this order, as openconnect does):

1. TLS with Python's ssl offering the recorded ClientHello's TLS 1.2 suites in its order, the gateway's
   certificate checked against the system CAs, ``--cafile`` or pinned by ``--servercert`` (its SHA-256 or SHA-1,
   as openconnect's option); OpenSSL's key log of each connection kept in a private temporary file (the
   PSK-NEGOTIATE key is its exporter; ``--write`` embeds it);
2. group selection: the aggregate-auth ``init`` POST with the recorded version, device-id and group;
3. user authentication: each ``auth-request`` form of the gateway answered field by field — the username from
   ``--user`` (else the recorded one), the password from ``--password-stdin``, or every recorded value with
   ``--reuse-credentials`` (read from the decrypted capture, never printed), a group list with the recorded group,
   hidden fields and ``<opaque>`` echoed;
4. the downloader: the recorded GETs again with the new cookie, each recorded TLS connection a new one;
5. ``CONNECT /CSCOSSLC/tunnel`` with the recorded request headers (X-CSTP-*, User-Agent…), the new webvpn cookie,
   a fresh X-DTLS-Master-Secret and the recorded DTLS suite offers reduced to what replay/dtls_client.py can
   complete (none with ``--no-dtls``);
6. the tunnel: a TUN device in a network namespace (replay/tunnel.py) configured from the *new* CONNECT answer;
   the DTLS channel the answer offers (PSK-NEGOTIATE or legacy, GnuTLS, non-blocking in this loop) and CSTP
   frames on the TLS connection: packets from the TUN go over DTLS when it is up, else CSTP; DPD-REQ answered on
   either, DPD-REQ and KEEPALIVE sent per channel when its X-CSTP-/X-DTLS-DPD / -Keepalive interval passes without
   traffic; the recorded client→gateway IPv4 packets sent into the namespace at their recorded times — source
   rewritten to the new tunnel address with scapy, checksums recomputed — so that they leave through the TUN;
   what the gateway sends back is written to the TUN and matched to them (ICMP echo id/seq, else the reversed
   addresses and ports);
7. DISCONNECT, TLS close, DTLS close_notify, and the namespace and device removed on every exit path; with
   ``--write`` the capture (replay/capture.py) written with its keys and analysed.

Timing: a packet's intended send time is its recorded time after the recorded CONNECT answer, divided by
``--speed``, counted from the new CONNECT answer; packets the recording carried over DTLS wait (DTLS_WAIT at most)
for this replay's DTLS channel and count from it, less the recorded CONNECT→DTLS delay. ``--no-timing`` sends them
one after the other at once. The single I/O loop (select on the TLS socket, the DTLS socket and the TUN) wakes at
each intended time; the drift is the actual send time (the injection call) minus the intended one, reported as
p50/p99/max. Bound, checked by the lab test: p99 below DRIFT_BOUND_MS on the 2-core shared test machine
(typically well under 5 ms).

Exit status: 0 the replay matched the recording, 1 it differs (or a phase failed), 2 usage, 4 the capture or key
log cannot be used (or holds no session to replay), 5 the environment does not allow the replay (no root /
CAP_NET_ADMIN, namespace or TUN cannot be made, ``--write`` without dumpcap), 130 interrupted (after clean-up).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from dissectors.aggauth import AggAuthError, parse_config_auth
from dissectors.cstp import CSTPFrame, CSTPType, parse_disconnect_reason

from .gatewayconn import GatewayConnection, GatewayError, GatewayURL
from .recording import CONNECT_DROPPED, Recording

EXIT_SAME = 0
EXIT_DIFFERS = 1
EXIT_USAGE = 2
EXIT_INPUT = 4
EXIT_ENV = 5
EXIT_INTERRUPTED = 130

DRIFT_BOUND_MS = 50.0
LINGER = 2.0  # seconds to wait for answers after the last packet
MAX_AUTH_ROUNDS = 10
DISCONNECT_REASON = b"\xb0acflow replay finished"
DTLS_WAIT = 5.0  # seconds the recorded DTLS packets wait for the DTLS channel before going over CSTP
INIT_HEADERS = {"user-agent", "accept", "accept-encoding", "x-transcend-version", "x-aggregate-auth",
                "x-support-http-auth", "content-type"}


@dataclass
class Options:
    capture: Path
    keylogs: tuple
    gateway: str
    session: str | None = None
    user: str | None = None
    password: str | None = None
    reuse_credentials: bool = False
    netns: str | None = None
    speed: float = 1.0
    no_timing: bool = False
    cafile: Path | None = None
    servercert: str | None = None
    resolve: str | None = None  # HOST:ADDR
    linger: float = LINGER
    no_dtls: bool = False
    write: Path | None = None


@dataclass
class SentPacket:
    index: int
    intended: float  # seconds after the tunnel came up
    actual: float | None = None
    seen_on_tun: float | None = None
    answered: float | None = None
    summary: str = ""
    key: tuple | None = None
    error: str | None = None
    channel: str | None = None  # the channel it went to the gateway on (cstp / dtls)
    note: str | None = None  # how the recorded packet was completed (restore_length)


@dataclass
class Replay:
    """What happened during the replay (the report compares it with the Recording)."""

    gateway: str
    phases: dict = field(default_factory=dict)  # name -> {"status", "summary"}
    tls: dict = field(default_factory=dict)
    init_posts: list = field(default_factory=list)
    group_list: list = field(default_factory=list)
    group_selected: str | None = None
    rounds: list = field(default_factory=list)
    auth_result: str | None = None
    connect_headers_sent: list = field(default_factory=list)
    connect_headers_dropped: list = field(default_factory=list)
    connect_status: int | None = None
    connect_reason: str | None = None
    connect_params: dict = field(default_factory=dict)
    tunnel: dict = field(default_factory=dict)  # namespace, device, routes
    packets: list = field(default_factory=list)  # SentPacket
    other_from_tun: int = 0
    other_from_gateway: int = 0
    cstp: dict = field(default_factory=lambda: {"dpd_req_received": 0, "dpd_resp_sent": 0, "dpd_req_sent": 0,
                                                "dpd_resp_received": 0, "keepalives_sent": 0,
                                                "keepalives_received": 0, "data_sent": 0, "data_received": 0,
                                                "compressed_received": 0})
    end: str | None = None
    error: str | None = None
    cleanup: list = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    dtls: dict = field(default_factory=dict)  # status, summary, mode, version, cipher_suite, counts…
    capture: dict = field(default_factory=dict)  # --write: file, interface, key log lines (or error)
    timing_origin: str | None = None
    downloads: list = field(default_factory=list)  # the downloader GETs: target, status, size, sha1
    analysis: dict = field(default_factory=dict)  # --write: the replay's capture analysed (phases, findings)
    dtls_counts: dict = field(default_factory=lambda: {"data_sent": 0, "data_received": 0, "dpd_req_sent": 0,
                                                       "dpd_resp_received": 0, "dpd_req_received": 0,
                                                       "dpd_resp_sent": 0, "keepalives_sent": 0,
                                                       "keepalives_received": 0})


# ---------------------------------------------------------------------------------------------------------------
# aggregate-auth documents (the protocol's client messages; built here, parsed by dissectors.aggauth)
# ---------------------------------------------------------------------------------------------------------------

def init_body(version: str, client_version: str, device_id: str, group: str | None, group_access: str) -> bytes:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
             f'aggregate-auth-version={quoteattr(version)}>',
             f'<version who="vpn">{escape(client_version)}</version>',
             f'<device-id>{escape(device_id)}</device-id>']
    if group:
        parts.append(f"<group-select>{escape(group)}</group-select>")
    parts.append(f"<group-access>{escape(group_access)}</group-access></config-auth>\n")
    return "".join(parts).encode()


def reply_body(version: str, client_version: str, device_id: str, answers: list[tuple[str, str]],
               group: str | None, opaque_xml: str | None) -> bytes:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" '
             f'aggregate-auth-version={quoteattr(version)}>',
             f'<version who="vpn">{escape(client_version)}</version>',
             f'<device-id>{escape(device_id)}</device-id>']
    if opaque_xml:
        parts.append(opaque_xml)
    parts.append("<auth>" + "".join(f"<{n}>{escape(v)}</{n}>" for n, v in answers) + "</auth>")
    if group:
        parts.append(f"<group-select>{escape(group)}</group-select>")
    parts.append("</config-auth>\n")
    return "".join(parts).encode()


def _why_failed(rounds: list) -> str:
    if not rounds:
        return ""
    last = rounds[-1]
    if last.get("rejected"):
        said = " / ".join((last.get("message") or "").splitlines())
        return f": the gateway asked again for {', '.join(last['form_fields'])}" + (f" ({said})" if said else "")
    if last.get("error"):
        return f": {last['error']}"
    if last.get("status") not in (None, 200):
        return f": answered {last['status']}"
    return ""


def _xml_name_ok(name: str) -> bool:
    return bool(name) and name.replace("-", "").replace("_", "").replace(".", "").isalnum() and not name[0].isdigit()


def _cookie(resp) -> str | None:
    for value in resp.headers.get_all("Set-Cookie"):
        first = value.split(";", 1)[0].strip()
        name, _, val = first.partition("=")
        if name.strip() == "webvpn" and val:
            return val
    return None


def connect_params(headers) -> dict:
    """The tunnel parameters of a CONNECT answer, keyed as in acflow's JSON document (cstp-connect parameters)."""
    def num(name):
        v = headers.get(name)
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    return {
        "address": headers.get("X-CSTP-Address"), "netmask": headers.get("X-CSTP-Netmask"),
        "address_ip6": headers.get("X-CSTP-Address-IP6"),
        "dns": list(headers.get_all("X-CSTP-DNS")), "split_include": list(headers.get_all("X-CSTP-Split-Include")),
        "split_exclude": list(headers.get_all("X-CSTP-Split-Exclude")),
        "default_domain": headers.get("X-CSTP-Default-Domain"), "dpd": num("X-CSTP-DPD"),
        "keepalive": num("X-CSTP-Keepalive"), "mtu": num("X-CSTP-MTU"), "base_mtu": num("X-CSTP-Base-MTU"),
        "idle_timeout": headers.get("X-CSTP-Idle-Timeout"), "session_timeout": headers.get("X-CSTP-Session-Timeout"),
        "disconnected_timeout": headers.get("X-CSTP-Disconnected-Timeout"),
        "content_encoding": headers.get("X-CSTP-Content-Encoding"), "banner": headers.get("X-CSTP-Banner"),
        "dtls_ciphersuite": headers.get("X-DTLS-CipherSuite"),
    }


# ---------------------------------------------------------------------------------------------------------------
# inner packets: rewrite and match
# ---------------------------------------------------------------------------------------------------------------

def rewrite_source(packet: bytes, new_src: str) -> bytes:
    """The IPv4 ``packet`` with its source address set to ``new_src`` and every checksum recomputed (scapy)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415

    p = IP(packet)
    p.src = new_src
    del p.chksum
    for layer in (TCP, UDP, ICMP):
        if p.haslayer(layer):
            del p[layer].chksum
    return bytes(p)


def restore_length(packet: bytes) -> tuple[bytes, str | None]:
    """An IPv4 packet the recording holds only in part (its total length says more than the recorded bytes — e.g.
    the real client put a packet bigger than the tunnel MTU into a DTLS record cut to that MTU): the application's
    packet as long as its header says, the missing bytes zero, and a note. Sending the cut packet instead would let
    the kernel rewrite its length (IP_HDRINCL) and turn it into another, valid, smaller packet."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return packet, None
    total = int.from_bytes(packet[2:4], "big")
    if total <= len(packet) or total > 65535:
        return packet, None
    return packet + bytes(total - len(packet)), f"recorded {len(packet)} of its {total} bytes; the rest sent as zeros"


def fit_mtu(packet: bytes, mtu: int | None, sp) -> list[bytes]:
    """What an application's packet becomes on a TUN of this MTU, as the kernel would make it (the raw socket the
    replay sends through does not do this itself): the packet; its fragments (scapy) when bigger without DF; nothing
    when bigger with DF — an application gets EMSGSIZE — noted on ``sp``."""
    if not mtu or len(packet) <= mtu:
        return [packet]
    if packet[6] & 0x40:  # DF
        sp.error = (f"{len(packet)} bytes with DF set, more than the tunnel MTU {mtu}: not sent (an application "
                    "would get EMSGSIZE)")
        return []
    from scapy.layers.inet import IP, fragment  # noqa: PLC0415

    return [bytes(f) for f in fragment(IP(packet), fragsize=(mtu - (packet[0] & 15) * 4) // 8 * 8)]


def request_key(packet: bytes) -> tuple | None:
    """What an answer to ``packet`` (IPv4) would match: ICMP echo (dst, id, seq) or (proto, dst, sport, dport)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 15) * 4
    proto, dst = packet[9], bytes(packet[16:20])
    body = packet[ihl:]
    if proto == 1 and len(body) >= 8 and body[0] == 8:
        return ("echo", dst, body[4:6], body[6:8])
    if proto in (6, 17) and len(body) >= 4:
        return (proto, dst, body[0:2], body[2:4])
    return None


def answer_key(packet: bytes) -> tuple | None:
    """The request key ``packet`` (IPv4, gateway→client) answers, if any."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 15) * 4
    proto, src = packet[9], bytes(packet[12:16])
    body = packet[ihl:]
    if proto == 1 and len(body) >= 8 and body[0] == 0:
        return ("echo", src, body[4:6], body[6:8])
    if proto in (6, 17) and len(body) >= 4:
        return (proto, src, body[2:4], body[0:2])
    return None


def summarize(packet: bytes) -> str:
    try:
        from scapy.layers.inet import IP  # noqa: PLC0415

        return IP(packet).summary()
    except Exception:  # noqa: BLE001 - a summary only
        return f"{len(packet)} bytes"


def recorded_exchange(rec: Recording) -> dict:
    """Sent / answered counts of the recorded client→gateway IPv4 packets (the same matching as the replay)."""
    sent = rec.client_packets()
    keys = [request_key(p.data) for p in sent]
    answers = {answer_key(p.data) for p in rec.inner if p.direction == "s2c"} - {None}
    answered = sum(1 for k in keys if k is not None and k in answers)
    ipv6 = sum(1 for p in rec.inner if p.direction == "c2s" and p.data[:1] and p.data[0] >> 4 == 6)
    channels: dict[str, int] = {}
    for p in sent:
        channels[p.channel] = channels.get(p.channel, 0) + 1
    return {"sent": len(sent), "answered": answered, "not_ipv4_skipped": ipv6, "channels": channels}


def _int(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))
    return v[k]


# ---------------------------------------------------------------------------------------------------------------
# the replay
# ---------------------------------------------------------------------------------------------------------------

class ReplayClient:
    def __init__(self, rec: Recording, opts: Options, critical=contextlib.nullcontext):
        self.rec = rec
        self.opts = opts
        self.critical = critical  # () -> context manager holding signals (namespace and TUN set-up)
        self.url = GatewayURL.parse(opts.gateway)
        address = None
        if opts.resolve:
            host, _, address = opts.resolve.rpartition(":")
            if host and host != self.url.host:
                raise ValueError(f"--resolve {opts.resolve}: the gateway URL's host is {self.url.host}")
        self.conn = GatewayConnection(self.url, cafile=opts.cafile, servercert=opts.servercert, address=address,
                                      ciphers=rec.tls_client_ciphers)
        self.out = Replay(gateway=opts.gateway)
        self.ns = None
        self.dtls = None  # DTLSChannel once the CONNECT answer offers DTLS
        self.master_secret: bytes | None = None  # the fresh X-DTLS-Master-Secret (legacy DTLS)
        self.dtls_offered = False
        self.dtls_keylog: list[str] = []
        self.tls_keylog = ""
        self.capture = None  # ReplayCapture with --write
        self.extra_keylog = ""  # the downloader connections' TLS secrets
        self.interrupted = False
        first = rec.init_posts[0] if rec.init_posts else {}
        self.version = first.get("aggregate_auth_version") or "2"
        self.client_version = first.get("client_version") or "v9.01"
        self.device_id = first.get("device_id") or "linux-64"

    # -- phases -------------------------------------------------------------------------------------------------
    def run(self) -> Replay:
        out = self.out
        if self.opts.write:
            from .capture import ReplayCapture  # noqa: PLC0415

            self.capture = ReplayCapture(self.opts.write, self.conn.address, self.url.port)
            self.capture.start()  # CaptureError: nothing was sent yet
        try:
            self._tls()
            cookie = self._auth()
            if cookie is not None:
                self._downloader(cookie)
                self._connect_and_tunnel(cookie)
        except GatewayError as e:
            out.error = str(e)
        except BaseException:
            self.interrupted = True  # Ctrl-C / SIGTERM: clean up, keep the capture so far, analyse nothing
            raise
        finally:
            self._close_tunnel()
            self.conn.close()
            self.tls_keylog = self.conn.keylog_text()
            self.conn.close_keylog()
            if self.capture is not None:
                self._finish_capture()
        for name in ("tls-handshake", "group-selection", "user-auth", "cstp-connect"):
            out.phases.setdefault(name, {"status": "not reached", "summary": ""})
        if "downloader" not in out.phases and not self.rec.downloader:
            out.phases["downloader"] = {"status": "absent", "summary": "no downloader in the recording either"}
        out.phases.setdefault("downloader", {"status": "not reached", "summary": ""})
        d = out.dtls
        if d.get("status") in ("ok", "failed", "absent", "not replayed"):
            out.phases["dtls"] = {"status": d["status"], "summary": d.get("summary", "")}
        else:
            out.phases["dtls"] = {"status": "not reached", "summary": ""}
        return out

    def _downloader(self, cookie: str) -> None:
        """The recorded downloader GETs again, in order, each recorded TLS connection a new one (as the recorded
        client made them), with the new webvpn cookie; status, size and SHA-1 of each answer."""
        gets = self.rec.downloader
        if not gets:
            return
        out, t0 = self.out, time.time()
        conns: dict = {}
        try:
            for g in gets:
                key = g.get("connection")
                c = conns.get(key)
                try:
                    if c is None:
                        c = GatewayConnection(self.url, cafile=self.opts.cafile, servercert=self.opts.servercert,
                                              address=self.conn.address, ciphers=self.rec.tls_client_ciphers)
                        conns[key] = c
                        c.connect()
                    resp = c.request("GET", g["target"], [("User-Agent", self.rec.user_agent), ("Accept", "*/*"),
                                                          ("Cookie", f"webvpn={cookie}")])
                except GatewayError as e:
                    out.downloads.append({"target": g["target"], "status": None, "size": None, "sha1": None,
                                          "error": str(e)})
                    conns.pop(key, None)
                    self._retire(c)
                    continue
                body = resp.body or b""
                out.downloads.append({"target": g["target"], "status": resp.status, "size": len(body),
                                      "sha1": hashlib.sha1(body).hexdigest().upper() if body else None})  # noqa: S324
                if c.closing:
                    conns.pop(key, None)
                    self._retire(c)
        finally:
            for c in conns.values():
                self._retire(c)
        bad = [d for d in out.downloads if d.get("status") != 200]
        out.phases["downloader"] = {
            "status": "failed" if bad else "ok",
            "summary": f"{len(out.downloads)} GET(s) on {len(conns) or 1} TLS session(s)"
            + (": " + ", ".join(f"{d['target']} {d.get('status') or d.get('error')}" for d in bad) if bad else ""),
            "duration": time.time() - t0}

    def _retire(self, c) -> None:
        """Close a downloader connection, keeping its TLS secrets for --write."""
        if c is None:
            return
        c.close()
        self.extra_keylog += c.keylog_text()
        c.close_keylog()

    def _finish_capture(self) -> None:
        """Write the --write capture (keys embedded) and analyse it as `acflow analyze` would: its session's
        phases and findings are compared with the recording's."""
        from .capture import CaptureError  # noqa: PLC0415

        keylog = (self.tls_keylog.rstrip("\n") + "\n" + self.extra_keylog
                  + "".join(line + "\n" for line in self.dtls_keylog))
        try:
            self.out.capture = self.capture.finish(keylog)
        except CaptureError as e:
            self.out.capture = {"file": str(self.opts.write), "error": str(e)}
            self.out.error = self.out.error or f"--write: {e}"
            return
        finally:
            self.capture.cleanup()
        if self.interrupted:
            return
        from analyzer.analyze import InputError  # noqa: PLC0415

        from .recording import RecordingError, load_recording  # noqa: PLC0415

        try:
            again = load_recording(Path(self.opts.write), [])
        except (InputError, RecordingError) as e:
            self.out.analysis = {"error": str(e)}
            return
        self.out.analysis = {"session": again.session_id, "phases": {k: v["status"] for k, v in again.phases.items()},
                             "findings": again.findings, "dtls": again.dtls}

    def _tls(self) -> None:
        try:
            tls = self.conn.connect()
        except GatewayError as e:
            self.out.phases["tls-handshake"] = {"status": "failed", "summary": str(e)}
            raise
        self.out.tls = {**tls, "tls12_suites_offered": len(self.conn.cipher_list.split(":")) if self.conn.cipher_list
                        else "OpenSSL's defaults", "recorded_suites_not_offered": list(self.conn.ciphers_left_out)}
        self.out.phases["tls-handshake"] = {
            "status": "ok", "summary": f"{tls['version']} {tls['cipher_suite']}, certificate SHA-256 "
                                       f"{tls['cert_sha256'][:16]}…"}

    def _post(self, target: str, body: bytes, extra: list | None = None):
        headers = []
        for post in self.rec.init_posts[:1]:
            headers = [(k, v) for k, v in post.get("headers", []) if k.lower() in INIT_HEADERS]
        if not headers:
            headers = [("User-Agent", self.rec.user_agent), ("Accept", "*/*"), ("Accept-Encoding", "identity"),
                       ("X-Transcend-Version", "1"), ("X-Aggregate-Auth", "1"),
                       ("Content-Type", "application/xml; charset=utf-8")]
        return self.conn.request("POST", target, headers + (extra or []), body)

    def _group_choice(self) -> str | None:
        rec = self.rec
        if rec.group_selected:
            return rec.group_selected
        for p in rec.init_posts:
            if p.get("group_select"):
                return p["group_select"]
        for r in rec.rounds:
            if r.group_select:
                return r.group_select
        return None

    def _answer(self, fld) -> str | None:
        name = fld.name or ""
        rec, o = self.rec, self.opts
        if fld.type == "select":
            want = self._group_choice()
            for opt in fld.options:
                if want and want in (opt.value, opt.label):
                    return opt.value
            return fld.selected.value if fld.selected else ""
        if fld.type == "hidden":
            return fld.value or ""
        if name == "username" and o.user:
            return o.user
        if fld.type == "password" or name in ("password", "secondary_password"):
            if o.password is not None and name == "password":
                return o.password
            return rec.recorded_value(name) if o.reuse_credentials else None
        if o.reuse_credentials or name == "username":
            v = rec.recorded_value(name)
            if v is not None:
                return v
        return fld.value or ""

    def _auth(self) -> str | None:
        out, rec = self.out, self.rec
        first = rec.init_posts[0] if rec.init_posts else {}
        group = first.get("group_select")
        access = f"{self.url.base}{self.url.path}"
        target = first.get("target") or self.url.path
        t0 = time.time()
        resp = self._post(target, init_body(self.version, self.client_version, self.device_id, group, access))
        doc = parse_config_auth(resp.body) if resp.body else None
        post = {"target": target, "group_select": group, "status": resp.status,
                "response_type": getattr(doc, "type", None)}
        out.init_posts.append(post)
        if isinstance(doc, AggAuthError) or doc is None or resp.status != 200:
            out.phases["group-selection"] = {"status": "failed",
                                             "summary": f"init POST answered {resp.status} {resp.reason}"}
            return None
        glist = self._group_list(doc)
        out.group_list = glist
        out.phases["group-selection"] = {
            "status": "ok", "summary": f"1 POST(s); groups: {', '.join(glist) if glist else 'no group list'}",
            "duration": time.time() - t0}
        # user-auth rounds
        cookie = None
        result = None
        reselected = False
        for _ in range(MAX_AUTH_ROUNDS):
            if doc.type == "complete":
                cookie = _cookie(resp) or doc.session_token
                result = "success" if cookie else "failure"
                break
            if doc.type != "auth-request" or doc.auth is None or doc.auth.form is None:
                result = "failure"
                break
            form = doc.auth.form
            opaque = doc.opaque.xml if doc.opaque is not None else None
            groups = next((f for f in form.fields if f.type == "select" and f.name == "group_list"), None)
            want = self._group_choice()
            if (groups is not None and want and not reselected and want in [o.value for o in groups.options]
                    and (groups.selected is None or groups.selected.value != want)):
                # as the recorded client: the group list offers another group than the one to use, so first ask
                # for that group's form (an auth-reply holding only <group-select>), a group-selection POST
                reselected = True
                tgt = form.action or "/auth"
                resp = self._post(tgt, reply_body(self.version, self.client_version, self.device_id, [], want,
                                                  opaque))
                doc = parse_config_auth(resp.body) if resp.body else None
                ok_doc = doc is not None and not isinstance(doc, AggAuthError)
                out.init_posts.append({"target": tgt, "group_select": want, "status": resp.status,
                                       "response_type": doc.type if ok_doc else None})
                if resp.status != 200 or not ok_doc:
                    result = "failure"
                    break
                continue
            answers, missing = [], []
            for fld in form.fields:
                if not fld.name or not _xml_name_ok(fld.name):
                    continue
                v = self._answer(fld)
                if v is None:
                    missing.append(fld.name)
                    v = ""
                if fld.type == "select" and fld.name == "group_list":
                    out.group_selected = v  # sent as <group-select>, as the recorded client did
                    continue
                answers.append((fld.name, v))
            if missing:
                out.rounds.append({"fields": [n for n, _ in answers], "status": None, "response_type": None,
                                   "message": None, "error": f"no value for {', '.join(missing)}", "form_fields": []})
                result = "failure"
                break
            group_reply = out.group_selected if groups is not None else None
            tgt = form.action or (rec.rounds[len(out.rounds)].target if len(out.rounds) < len(rec.rounds) else "/auth")
            resp = self._post(tgt, reply_body(self.version, self.client_version, self.device_id, answers,
                                              group_reply, opaque))
            doc = parse_config_auth(resp.body) if resp.body else None
            ok_doc = doc is not None and not isinstance(doc, AggAuthError)
            auth = doc.auth if ok_doc else None
            out.rounds.append({
                "target": tgt, "fields": [n for n, _ in answers], "status": resp.status,
                "response_type": doc.type if ok_doc else None, "auth_id": auth.id if auth else None,
                "message": auth.message.formatted if auth and auth.message else None,
                "error": auth.error.formatted if auth and auth.error else None,
                "form_fields": [f.name for f in auth.form.fields if f.name] if auth and auth.form else []})
            if resp.status != 200 or not ok_doc:
                result = "failure"
                break
            if auth and auth.error:
                result = "failure"
                break
            typed = sorted(n for n, _ in answers if form.field(n) is None or form.field(n).type != "hidden")
            if auth and auth.form and typed and typed == sorted(
                    f.name for f in auth.form.fields if f.name and f.type not in ("hidden", "select")):
                # the same form again for what was just answered (ocserv: "Login failed." and the password
                # prompt): rejected. A person would type again; the replay has nothing else to answer.
                out.rounds[-1]["rejected"] = True
                result = "failure"
                break
        out.auth_result = result
        out.phases["group-selection"]["summary"] = (
            f"{len(out.init_posts)} POST(s); groups: {', '.join(glist) if glist else 'no group list'}"
            + (f"; chose {out.group_selected}" if out.group_selected else ""))
        n = len(out.rounds)
        out.phases["user-auth"] = {"status": "ok" if result == "success" else "failed",
                                   "summary": (f"success after {n} round(s)" if result == "success" else
                                               f"failure after {n} round(s)" + _why_failed(out.rounds))}
        return cookie if result == "success" else None

    @staticmethod
    def _group_list(doc) -> list[str]:
        form = doc.auth.form if doc.auth else None
        if form is None:
            return []
        for f in form.fields:
            if f.type == "select" and f.name == "group_list":
                return [o.value for o in f.options]
        return []

    # -- CONNECT and the tunnel ---------------------------------------------------------------------------------
    def _dtls_header(self, name: str, value: str, sent: list, dropped: list) -> None:
        """A recorded X-DTLS-Master-Secret / X-DTLS-CipherSuite / X-DTLS12-CipherSuite request header, as this
        replay sends it: a fresh master secret; the suites it can complete (PSK-NEGOTIATE only when the exporter of
        this TLS session is known); nothing with --no-dtls."""
        from .dtls_client import gnutls_version, supported_offer  # noqa: PLC0415

        if self.opts.no_dtls:
            dropped.append((name, "--no-dtls"))
            return
        if gnutls_version() is None:
            dropped.append((name, "no GnuTLS library (libgnutls.so.30) for DTLS"))
            return
        if name.lower() == "x-dtls-master-secret":
            self.master_secret = os.urandom(48)
            sent.append((name, self.master_secret.hex().upper()))
            return
        offer, left = supported_offer(name, value)
        if "PSK-NEGOTIATE" in offer.split(":") and self.conn.exporter_psk() is None:
            offer = ":".join(x for x in offer.split(":") if x != "PSK-NEGOTIATE")
            dropped.append((f"{name} PSK-NEGOTIATE", "the TLS session's exporter is not known (no key log line)"))
        if left:
            dropped.append((f"{name} {':'.join(left)}", "suites this client cannot complete"))
        if offer:
            sent.append((name, offer))
            self.dtls_offered = True

    def _connect_headers(self, cookie: str) -> list[tuple[str, str]]:
        sent, dropped = [], []
        for name, value in self.rec.connect_headers:
            if name.lower() in ("x-dtls-master-secret", "x-dtls-ciphersuite", "x-dtls12-ciphersuite"):
                self._dtls_header(name, value, sent, dropped)
                continue
            why = CONNECT_DROPPED.get(name.lower())
            if why is not None:
                if why:
                    dropped.append((name, why))
                continue
            sent.append((name, value))
        if not any(k.lower() == "user-agent" for k, _ in sent):
            sent.insert(0, ("User-Agent", self.rec.user_agent))
        if not any(k.lower().startswith("x-cstp-") for k, _ in sent):
            sent += [("X-CSTP-Version", "1"), ("X-CSTP-Address-Type", "IPv4")]
        self.out.connect_headers_sent = [k for k, _ in sent]
        self.out.connect_headers_dropped = dropped
        return [("Cookie", f"webvpn={cookie}")] + sent

    def _connect_and_tunnel(self, cookie: str) -> None:
        out = self.out
        if self.rec.connect_new_connection or self.conn.closing:
            # the recorded client connected on a new TLS connection (openconnect --authenticate then a cookie
            # connect), or the gateway closes this one: CONNECT on a fresh one, as a client does
            why = "as recorded" if self.rec.connect_new_connection else "the gateway closed the first one"
            self.conn.reconnect()
            out.tunnel["connect_connection"] = f"a new TLS connection ({why})"
        resp = self.conn.request("CONNECT", "/CSCOSSLC/tunnel", self._connect_headers(cookie))
        out.connect_status, out.connect_reason = resp.status, resp.reason
        if resp.status != 200:
            out.phases["cstp-connect"] = {"status": "failed", "summary": f"{resp.status} {resp.reason}"}
            return
        p = connect_params(resp.headers)
        out.connect_params = p
        out.phases["cstp-connect"] = {
            "status": "ok", "summary": f"200 {resp.reason}: {p['address']}, MTU {p['mtu']}, DPD {p['dpd']}, "
                                       f"keepalive {p['keepalive']}"}
        if not p.get("address"):
            out.phases["cstp-connect"]["status"] = "failed"
            out.phases["cstp-connect"]["summary"] += " (no IPv4 address granted: nothing to replay over)"
            return
        from .tunnel import TunNamespace  # noqa: PLC0415

        dtls_mtu = _int(resp.headers.get("X-DTLS-MTU"))
        # as openconnect: the tunnel MTU is the largest of the MTUs granted for the two channels
        tun_mtu = max((m for m in (p.get("mtu"), dtls_mtu) if m), default=None)
        with self.critical():
            self.ns = TunNamespace(self.opts.netns)
            self.ns.open()
            self.ns.configure(p["address"], p.get("netmask"), tun_mtu, p.get("split_include") or [])
        out.tunnel = {**out.tunnel, "namespace": self.ns.name, "namespace_created": self.ns.created_ns,
                      "device": self.ns.ifname, "address": p["address"], "mtu": tun_mtu,
                      "routes": list(self.ns.routes)}
        self._dtls_setup(resp.headers)
        self._tunnel_loop(p, self.conn.start_tunnel())

    def _dtls_setup(self, headers) -> None:
        """The DTLS channel the CONNECT answer offers (its handshake is driven by the tunnel loop)."""
        from .dtls_client import DTLSChannel, DTLSError, suite_for_answer  # noqa: PLC0415

        d = self.out.dtls
        mode, suite, name = suite_for_answer(headers)
        d.update({"gateway_suite": name, "port": _int(headers.get("X-DTLS-Port")),
                  "dpd": _int(headers.get("X-DTLS-DPD")), "keepalive": _int(headers.get("X-DTLS-Keepalive")),
                  "mtu": _int(headers.get("X-DTLS-MTU"))})
        if self.opts.no_dtls:
            d.update(status="not replayed", summary="--no-dtls: no DTLS offered")
            return
        if not self.dtls_offered:
            d.update(status="absent", summary="no DTLS offered (the recorded client offered none this replay can "
                                              "complete)")
            return
        if mode == "none":
            d.update(status="absent", summary="the gateway offered no DTLS")
            return
        if mode == "unsupported":
            d.update(status="failed", summary=f"the gateway chose {name}, which this client cannot complete")
            return
        d["mode"] = "legacy-0x0100" if suite is not None and suite.version == "DTLS0.9" else mode
        if not d["port"] or not 0 < d["port"] < 65536:
            d.update(status="failed", summary=f"the gateway's X-DTLS-Port {headers.get('X-DTLS-Port')!r} is no port")
            return
        try:
            host = self.conn.sock.getpeername()[0]
            if mode == "psk-negotiate":
                psk = self.conn.exporter_psk()
                self.dtls = DTLSChannel((host, d["port"]), mode, psk=psk,
                                        app_id=bytes.fromhex(headers.get("X-DTLS-App-ID") or ""))
            else:
                self.dtls = DTLSChannel((host, d["port"]), mode, suite=suite, master_secret=self.master_secret,
                                        session_id=bytes.fromhex(headers.get("X-DTLS-Session-ID") or ""))
        except (DTLSError, OSError, ValueError) as e:
            d.update(status="failed", summary=f"DTLS could not start: {e}")
            self.dtls = None
            return
        d.update(status="pending", summary="handshake started")

    def _tunnel_loop(self, params: dict, early: list) -> None:
        """The single I/O loop: the TLS socket (CSTP), the DTLS socket, the TUN; recorded packets injected at their
        times. Packets recorded on the DTLS channel wait (up to DTLS_WAIT) for this replay's DTLS channel: their
        times then count from the moment it came up (or gave up), less the recorded CONNECT→DTLS delay."""
        out, rec, conn, ns = self.out, self.rec, self.conn, self.ns
        dtls = self.dtls
        d = out.dtls
        addr = params["address"]
        speed = self.opts.speed if self.opts.speed and self.opts.speed > 0 else 1.0
        origin = rec.connect_time
        recorded = rec.client_packets()
        if origin is None and recorded:
            origin = recorded[0].ts
        rec_dtls_delay = 0.0
        if rec.dtls.get("established_time") and rec.connect_time:
            rec_dtls_delay = max(0.0, rec.dtls["established_time"] - rec.connect_time)
        wait_for_dtls = dtls is not None and rec.dtls.get("status") == "ok"
        plan: list[tuple[SentPacket, list[bytes]]] = []
        base: list[float] = []
        mtu = out.tunnel.get("mtu") or params.get("mtu")
        for i, p in enumerate(recorded):
            intended = 0.0 if self.opts.no_timing else max(0.0, (p.ts - origin) / speed)
            whole, note = restore_length(p.data)
            data = rewrite_source(whole, addr)
            sp = SentPacket(index=i + 1, intended=intended, summary=summarize(data), key=request_key(data))
            plan.append((sp, fit_mtu(data, mtu, sp)))
            sp.note = note
            base.append(intended)
            out.packets.append(sp)
        by_key: dict = {}
        for sp, _ in plan:
            if sp.key is not None:
                by_key.setdefault(sp.key, []).append(sp)
        t0 = time.monotonic()
        last_rx = last_tx = t0
        dpd = params.get("dpd") or 0
        keepalive = params.get("keepalive") or 0
        dpd_outstanding = False
        d_dpd, d_keepalive = d.get("dpd") or 0, d.get("keepalive") or 0
        d_last_rx = d_last_tx = t0
        d_dpd_sent_at = None
        dtls_up = False
        dtls_due = t0  # when GnuTLS wants the handshake advanced
        held = wait_for_dtls  # the schedule waits for the DTLS channel
        nxt = 0
        done_at = None
        tun_fd = ns.fd
        cnt = out.dtls_counts

        def release(now: float) -> None:
            nonlocal held
            held = False
            shift = max(0.0, (now - t0) - (0.0 if self.opts.no_timing else rec_dtls_delay / speed))
            for (sp, _), b in zip(plan, base):
                sp.intended = b + shift
            out.timing_origin = ("the DTLS channel up (recorded and replayed)" if dtls_up else
                                 "the DTLS channel given up (replayed) / up (recorded)")

        def dtls_down(why: str) -> None:
            nonlocal dtls_up
            dtls_up = False
            d["ended"] = why

        def on_frame(channel: str, t: int, payload: bytes, packet: bytes | None) -> None:
            nonlocal last_rx, dpd_outstanding, d_last_rx, d_dpd_sent_at
            now = time.monotonic()
            if channel == "dtls":
                d_last_rx = now
            else:
                last_rx = now
            c = cnt if channel == "dtls" else out.cstp
            if t in (CSTPType.DATA, CSTPType.COMPRESSED_DATA) and packet:
                c["data_received"] += 1
                if t == CSTPType.COMPRESSED_DATA and channel == "cstp":  # expanded by the framer
                    out.cstp["compressed_received"] += 1
                try:
                    ns.write(packet)
                except OSError:
                    pass
                k = answer_key(packet)
                waiting = by_key.get(k) if k else None
                match = next((s for s in waiting or () if s.actual is not None and s.answered is None), None)
                if match is not None:
                    match.answered = now - t0
                else:
                    out.other_from_gateway += 1
            elif t == CSTPType.DPD_REQ:
                c["dpd_req_received"] += 1
                if channel == "dtls":
                    dtls.send(bytes([CSTPType.DPD_RESP]) + payload)
                else:
                    conn.send_frame(CSTPType.DPD_RESP, payload)
                c["dpd_resp_sent"] += 1
            elif t == CSTPType.DPD_RESP:
                c["dpd_resp_received"] += 1
                if channel == "dtls":
                    d_dpd_sent_at = None
                    if d.get("mtu_probe") and len(payload) == d["mtu_probe"]["size"]:
                        d["mtu_probe"]["answered"] = True
                else:
                    dpd_outstanding = False
            elif t == CSTPType.KEEPALIVE:
                c["keepalives_received"] += 1
            elif t in (CSTPType.DISCONNECT, CSTPType.TERMINATE):
                if channel == "dtls":
                    dtls_down(f"gateway sent {CSTPType(t).name} over DTLS")
                else:
                    out.end = f"gateway sent {CSTPType(t).name} ({parse_disconnect_reason(payload)})"
                    conn.closed_by_gateway = True

        def handle(events) -> None:
            for ev in events:
                if isinstance(ev, CSTPFrame):
                    on_frame("cstp", ev.type, ev.payload, ev.packet)

        def send_packet(pkt: bytes) -> str:
            nonlocal last_tx, d_last_tx
            if dtls_up and dtls.send(b"\x00" + pkt):
                cnt["data_sent"] += 1
                d_last_tx = time.monotonic()
                return "dtls"
            conn.send_frame(CSTPType.DATA, pkt)
            out.cstp["data_sent"] += 1
            last_tx = time.monotonic()
            return "cstp"

        handle(early)
        while True:
            now = time.monotonic()
            # the DTLS handshake, advanced when GnuTLS's timer is due (reads are handled below)
            if dtls is not None and not dtls_up and d.get("status") == "pending" and now >= dtls_due:
                self._dtls_step(now, t0)
                dtls_up = d["status"] == "ok"
                dtls_due = now + max(0.01, dtls.timeout()) if d["status"] == "pending" else float("inf")
                if dtls_up:
                    d_last_rx = d_last_tx = time.monotonic()
                    # as openconnect once DTLS is up: an MTU probe, a DPD-REQ padded to the tunnel MTU
                    size = min(mtu or 0, max(0, (d.get("data_mtu") or 1) - 1))
                    if size and dtls.send(bytes([CSTPType.DPD_REQ]) + bytes(size)):
                        # counted, but not a liveness DPD: a lost probe says the path MTU is smaller, not that the
                        # peer is gone
                        cnt["dpd_req_sent"] += 1
                        d["mtu_probe"] = {"size": size, "answered": False}
            if held and (d.get("status") != "pending" or now - t0 > DTLS_WAIT):
                release(time.monotonic())
            rel = time.monotonic() - t0
            # packets due now go into the namespace (and so out through the TUN)
            while not held and nxt < len(plan) and plan[nxt][0].intended <= rel:
                sp, pieces = plan[nxt]
                if pieces:
                    sp.actual = time.monotonic() - t0
                try:
                    for piece in pieces:
                        ns.inject(piece)
                except OSError as e:
                    sp.error = e.strerror or str(e)
                nxt += 1
                rel = time.monotonic() - t0
            if nxt >= len(plan) and done_at is None:
                done_at = time.monotonic()
            if conn.closed_by_gateway:
                out.end = out.end or "the gateway closed the TLS connection"
                break
            if done_at is not None:
                pending = [s for s, _ in plan if s.key and s.actual is not None and s.answered is None and not s.error]
                if not pending or time.monotonic() - done_at > self.opts.linger:
                    break
            # timers: DPD when the gateway has been silent, keepalive when we have (each channel its own)
            now = time.monotonic()
            if dpd and not dpd_outstanding and now - last_rx > dpd:
                conn.send_frame(CSTPType.DPD_REQ, b"")
                out.cstp["dpd_req_sent"] += 1
                dpd_outstanding = True
                last_tx = now
            if keepalive and now - last_tx > keepalive:
                conn.send_frame(CSTPType.KEEPALIVE, b"")
                out.cstp["keepalives_sent"] += 1
                last_tx = now
            if dtls_up:
                if d_dpd_sent_at is not None and now - d_dpd_sent_at > 2 * max(d_dpd, 1):
                    dtls_down(f"no DPD-RESP over DTLS within {2 * max(d_dpd, 1)} s: back to CSTP")
                elif d_dpd and d_dpd_sent_at is None and now - d_last_rx > d_dpd:
                    dtls.send(bytes([CSTPType.DPD_REQ]))
                    cnt["dpd_req_sent"] += 1
                    d_dpd_sent_at = d_last_tx = now
                if dtls_up and d_keepalive and now - d_last_tx > d_keepalive:
                    dtls.send(bytes([CSTPType.KEEPALIVE]))
                    cnt["keepalives_sent"] += 1
                    d_last_tx = now
            wait = 0.2
            if nxt < len(plan) and not held:
                wait = min(wait, max(0.0, plan[nxt][0].intended - (time.monotonic() - t0)))
            if dtls is not None and d.get("status") == "pending":
                wait = min(wait, max(0.0, dtls_due - time.monotonic()))
            if conn.sock.pending():
                wait = 0.0
            fds = [conn.sock, tun_fd] + ([dtls.fileno()] if dtls is not None and not dtls.closed else [])
            r, _, _ = select.select(fds, [], [], wait)
            if conn.sock in r or conn.sock.pending():
                handle(conn.read_frames())
            if dtls is not None and not dtls.closed and dtls.fileno() in r:
                if d.get("status") == "pending":
                    dtls_due = time.monotonic()  # a datagram for the handshake: advance it now
                elif dtls_up:
                    payloads, ended = dtls.recv()
                    for pl in payloads:
                        if pl:
                            on_frame("dtls", pl[0], pl[1:], pl[1:] if pl[0] == CSTPType.DATA else None)
                    if ended:
                        dtls_down("the gateway closed the DTLS channel" if not dtls.failed else dtls.failed)
                else:
                    try:  # DTLS given up: drain what still arrives
                        dtls.sock.recv(65536)
                    except OSError:
                        pass
            if tun_fd in r:
                while True:
                    try:
                        pkt = os.read(tun_fd, 65536)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    k = request_key(pkt)
                    sp = next((s for s in by_key.get(k, ()) if s.actual is not None and s.seen_on_tun is None),
                              None) if k else None
                    channel = send_packet(pkt)
                    if sp is not None:
                        sp.seen_on_tun = time.monotonic() - t0
                        sp.channel = channel
                    else:
                        out.other_from_tun += 1
        if dtls is not None and d.get("status") == "pending":
            d.update(status="failed", summary=f"not established after {time.monotonic() - d['started']:.1f} s "
                                              "(no answer from the gateway) when the replay ended")
        drifts = [(s.actual - s.intended) * 1000 for s in out.packets if s.actual is not None]
        tun_lag = [(s.seen_on_tun - s.actual) * 1000 for s in out.packets
                   if s.seen_on_tun is not None and s.actual is not None]
        out.timing = {"mode": "no-timing" if self.opts.no_timing else "recorded", "speed": speed,
                      "origin": out.timing_origin or "the CONNECT answer (recorded and replayed)",
                      "drift_ms": {"p50": percentile(drifts, 50), "p99": percentile(drifts, 99),
                                   "max": max(drifts) if drifts else None},
                      "tun_lag_ms": {"p50": percentile(tun_lag, 50), "max": max(tun_lag) if tun_lag else None},
                      "bound_ms": DRIFT_BOUND_MS}

    def _dtls_step(self, now: float, t0: float) -> None:
        """One step of the DTLS handshake; updates out.dtls (ok / failed) when it ends."""
        dtls, d = self.dtls, self.out.dtls
        d.setdefault("started", now)
        if dtls.handshake_step():
            info = dtls.description()
            took = (time.monotonic() - d["started"]) * 1000
            d.update(status="ok", version=info["version"], cipher_suite=info["cipher_suite"],
                     resumed=info["resumed"], data_mtu=info["data_mtu"], established_after_connect_ms=round(
                         (time.monotonic() - t0) * 1000, 3),
                     summary=f"{info['version']} {info['cipher_suite']} ({d['mode']}), established in "
                             f"{took:.1f} ms")
            self.dtls_keylog = dtls.keylog_lines()
            return
        if dtls.failed:
            d.update(status="failed", summary=f"handshake failed: {dtls.failed}")
        elif now - d["started"] > 12.0:
            d.update(status="failed", summary="no answer from the gateway within 12 s (as openconnect, given up)")

    def _close_tunnel(self) -> None:
        """DISCONNECT (if the tunnel is up and the gateway did not end it), then the namespace and device."""
        out = self.out
        try:
            if out.connect_status == 200 and self.conn.sock is not None and not self.conn.closed_by_gateway:
                try:
                    self.conn.send_frame(CSTPType.DISCONNECT, DISCONNECT_REASON)
                    out.end = out.end or "DISCONNECT from the replay client over CSTP"
                except (OSError, ValueError):
                    out.end = out.end or "DISCONNECT could not be sent"
        finally:
            if self.dtls is not None:
                self.dtls.close(notify=out.dtls.get("status") == "ok")
            if self.ns is not None:
                out.cleanup = self.ns.close()


# ---------------------------------------------------------------------------------------------------------------
# signals: Ctrl-C, SIGTERM and SIGHUP end the replay through its finally blocks (held during clean-up)
# ---------------------------------------------------------------------------------------------------------------

class _Signals:
    """SIGINT/SIGTERM/SIGHUP → KeyboardInterrupt in this process only. pyroute2 forks short-lived helper processes
    (namespace creation, sockets in a namespace); a signal reaching such a child must end the child at once and
    never run the replay's clean-up there (it would remove the namespace the parent still uses)."""

    def __init__(self):
        self.old: dict = {}
        self.fired = False
        self.pid = os.getpid()
        self.deferring = 0
        self.pending: int | None = None

    @contextlib.contextmanager
    def critical(self):
        """A section a signal must not cut in half (the namespace and TUN being made and configured, partly in
        pyroute2's forked helpers): a signal is held and raised as soon as the section ends."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1
            if not self.deferring and self.pending is not None and not self.fired:
                signum, self.pending = self.pending, None
                self.fired = True
                raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self.old[sig] = signal.signal(sig, self._on)
            except ValueError:
                pass
        return self

    def _on(self, signum, frame):
        if os.getpid() != self.pid:  # a forked helper (pyroute2): leave at once, touching nothing
            os._exit(128 + signum)
        if self.fired:  # a second signal must not cut the clean-up short
            return
        if self.deferring:
            self.pending = signum
            return
        self.fired = True
        raise KeyboardInterrupt(f"signal {signum}")

    def hold(self) -> None:
        self.fired = True

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            try:
                signal.signal(sig, h)
            except (ValueError, TypeError):
                pass


def run_replay_client(opts: Options, *, fmt: str = "terminal", output: Path | None = None) -> int:
    """The `acflow replay client` command: returns the exit status (module docstring)."""
    from analyzer.analyze import InputError  # noqa: PLC0415

    from .capture import CaptureError, dumpcap_path  # noqa: PLC0415
    from .recording import RecordingError, load_recording  # noqa: PLC0415
    from .report import compare, render_json, render_terminal  # noqa: PLC0415
    from .tunnel import EnvironmentProblem, has_net_admin  # noqa: PLC0415

    def err(msg: str) -> None:
        print(f"acflow replay client: {msg}", file=sys.stderr)

    if not has_net_admin():
        err("needs root (CAP_NET_ADMIN): it creates a network namespace and a TUN device; nothing was done")
        return EXIT_ENV
    try:
        GatewayURL.parse(opts.gateway)
    except ValueError as e:
        err(str(e))
        return EXIT_USAGE
    if opts.write is not None and dumpcap_path() is None:
        err("--write needs dumpcap (Wireshark's capture program; apt package wireshark-common); nothing was done")
        return EXIT_ENV
    try:
        rec = load_recording(opts.capture, opts.keylogs, opts.session)
    except (InputError, RecordingError) as e:
        err(str(e))
        return EXIT_INPUT
    except KeyboardInterrupt:
        err("interrupted while reading the capture; nothing was created yet")
        return EXIT_INTERRUPTED
    needs_password = any(f in ("password",) for r in rec.rounds for f in r.fields)
    if needs_password and opts.password is None and not opts.reuse_credentials:
        err("the recorded session answered a password: give --password-stdin or --reuse-credentials")
        return EXIT_USAGE
    sigs = _Signals()
    try:
        client = ReplayClient(rec, opts, critical=sigs.critical)
    except ValueError as e:
        err(str(e))
        return EXIT_USAGE
    with sigs:
        try:
            replay = client.run()
        except KeyboardInterrupt:
            sigs.hold()
            removed = client.out.cleanup + (client.ns.close() if client.ns else [])  # again: it may have been cut
            err("interrupted; removed: " + (", ".join(removed) if removed else "nothing was created yet"))
            return EXIT_INTERRUPTED
        except (EnvironmentProblem, CaptureError) as e:
            sigs.hold()
            if client.ns is not None:
                client.ns.close()
            err(str(e))
            return EXIT_ENV
        finally:
            sigs.hold()
            if client.ns is not None:
                client.out.cleanup += client.ns.close()
            if client.capture is not None:
                client.capture.cleanup()  # dumpcap ended and its temporary file removed (idempotent)
    result = compare(rec, replay, opts)
    text = render_json(result) if fmt == "json" else render_terminal(result)
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_SAME if result["result"] == "same" else EXIT_DIFFERS


