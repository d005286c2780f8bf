"""Ground truth for a lab run, taken from the peers' own logs and the lab's own actions — never from acflow.

Sources:
* `client.log`: `openconnect -vvv --dump-http-traffic`, every line stamped with the epoch time the lab read it
  (so times are the moment openconnect printed, a few ms after the packet; tests compare with a tolerance).
* `gateway.log`: `ocserv -d 9`, stamped the same way.
* the lab's actions (pings sent, signals) and `ping.log`.
* `oracle_tshark`: a few wire facts tshark reports (DTLS ClientHello times); tshark is the project's independent
  oracle, named as such, and not part of acflow.

The schema is documented in README.md ("facts.json").
"""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

from lxml import etree

from .flowfacts import client_identity, decode_as, other_flows, tls_connections, vpn_flows
from .netns import read_stamped
from .portal import facts as portal_facts

SCHEMA_VERSION = 1


def _stamped_script(path: Path) -> list[dict]:
    """The lab's vpnc-script log: one line per call by openconnect (time, reason, INTERNAL_IP4_ADDRESS)."""
    if not path.exists():
        return []
    calls = []
    for raw in path.read_text().splitlines():
        cols = raw.split("\t")
        if len(cols) >= 2:
            calls.append({"time": float(cols[0]), "reason": cols[1], "address": (cols[2] if len(cols) > 2 else "")
                          or None})
    return calls


def _cookie_hash(headers: list) -> str | None:
    """A short fingerprint of the webvpn cookie a CONNECT carried (the cookie itself stays out of facts)."""
    import hashlib

    for k, v in headers:
        if k.lower() == "cookie":
            for part in v.split(";"):
                if part.strip().startswith("webvpn="):
                    return hashlib.sha256(part.strip()[len("webvpn="):].encode()).hexdigest()[:16]
    return None


def _xml(text: str):
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.fromstring(text.encode(), parser)
    except etree.XMLSyntaxError:
        return None


def _http_exchanges(lines: list[tuple[float, str]]) -> list[dict]:
    """Split openconnect's --dump-http-traffic output into request/response exchanges."""
    exchanges: list[dict] = []
    cur: dict | None = None
    i = 0
    n = len(lines)
    while i < n:
        ts, line = lines[i]
        m = re.match(r"^> (GET|POST|CONNECT) (\S+) HTTP/1\.[01]$", line)
        if m:
            cur = {"method": m.group(1), "target": m.group(2), "time": ts, "request_headers": [],
                   "request_body": "", "status": None, "response_time": None, "response_headers": [],
                   "response_body": ""}
            exchanges.append(cur)
            i += 1
            in_body = False
            body = []
            while i < n and lines[i][1].startswith(">"):
                text = lines[i][1][2:] if lines[i][1].startswith("> ") else ""
                if not in_body:
                    if text == "":
                        in_body = True
                    elif ":" in text:
                        k, _, v = text.partition(":")
                        cur["request_headers"].append([k.strip(), v.strip()])
                else:
                    body.append(text)
                i += 1
            cur["request_body"] = "\n".join(body)
            continue
        m = re.match(r"^Got (?:HTTP|CONNECT) response: HTTP/1\.[01] (\d{3}) ?(.*)$", line)
        if m and cur is not None and cur["status"] is None:
            cur["status"] = int(m.group(1))
            cur["reason"] = m.group(2)
            cur["response_time"] = ts
            i += 1
            while i < n and re.match(r"^[A-Za-z0-9-]+: ", lines[i][1]):
                k, _, v = lines[i][1].partition(": ")
                cur["response_headers"].append([k, v])
                i += 1
            body = []
            while i < n and (lines[i][1].startswith("< ") or lines[i][1].startswith("HTTP body length")):
                if lines[i][1].startswith("< "):
                    body.append(lines[i][1][2:])
                i += 1
            cur["response_body"] = "\n".join(body)
            continue
        i += 1
    return exchanges


def _groups(xml_text: str) -> dict | None:
    root = _xml(xml_text)
    if root is None:
        return None
    sel = root.find(".//select[@name='group_list']")
    if sel is None:
        return None
    # an <option> without a value attribute submits its text (HTML forms semantics)
    options = [{"value": o.get("value") or (o.text or "").strip(), "label": (o.text or "").strip(),
                "selected": o.get("selected") == "true"}
               for o in sel.findall("option")]
    return {"options": options}


def _auth_rounds(exchanges: list[dict]) -> list[dict]:
    rounds = []
    for ex in exchanges:
        if ex["method"] != "POST":
            continue
        req = _xml(ex["request_body"]) if ex["request_body"] else None
        resp = _xml(ex["response_body"]) if ex["response_body"] else None
        r = {"time": ex["time"], "target": ex["target"], "status": ex["status"],
             "request_type": req.get("type") if req is not None else None,
             "request_fields": sorted({c.tag for c in req.find("auth")} if req is not None and
                                      req.find("auth") is not None else []),
             "group_select": (req.findtext("group-select") if req is not None else None),
             "response_type": resp.get("type") if resp is not None else None,
             "response_auth_id": (resp.find("auth").get("id") if resp is not None and resp.find("auth") is not None
                                  else None),
             "response_message": (resp.findtext("auth/message") if resp is not None else None),
             "response_error": (resp.findtext("auth/error") if resp is not None else None),
             "form_fields": ([i.get("name") for i in resp.iter("input")] +
                             [s.get("name") for s in resp.iter("select")]) if resp is not None else []}
        rounds.append(r)
    return rounds


def _tshark_dtls_hellos(capture: Path) -> list[float] | None:
    if shutil.which("tshark") is None:
        return None
    # the gateway's DTLS only (a capture may hold unrelated DTLS flows: mixed-traffic)
    p = subprocess.run(["tshark", "-r", str(capture), "-Y", "dtls.handshake.type == 1 && ip.dst == 198.18.0.1",
                        "-T", "fields",
                        "-e", "frame.time_epoch"], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return None
    return [float(x) for x in p.stdout.split()]


def _tshark_wire(capture: Path) -> dict:
    """A few more wire facts from tshark (the oracle): TCP SYNs and the client's UDP source ports, towards the
    gateway (198.18.0.1)."""
    if shutil.which("tshark") is None:
        return {"tcp_syns": None, "udp_client_ports": None}
    p = subprocess.run(["tshark", "-n", "-r", str(capture), "-Y",
                        ("((tcp.flags.syn == 1 && tcp.flags.ack == 0) || (udp && !tcp && !icmp && "
                         "ip.src == 198.18.0.2)) && ip.dst == 198.18.0.1"), "-T",
                        "fields", "-e", "frame.time_epoch", "-e", "tcp.srcport", "-e", "udp.srcport",
                        "-e", "dtls.handshake.type"], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return {"tcp_syns": None, "udp_client_ports": None}
    syns: list[dict] = []
    ports: dict[int, dict] = {}
    for line in p.stdout.splitlines():
        cols = (line.split("\t") + ["", "", "", ""])[:4]
        cols[2] = cols[2].rsplit(",", 1)[-1]  # inside VXLAN (vxlan-mirror): the outer UDP port comes first
        ts = float(cols[0])
        if cols[1]:
            syns.append({"time": ts, "port": int(cols[1])})
        elif cols[2]:
            port = int(cols[2])
            e = ports.setdefault(port, {"port": port, "first_time": ts, "last_time": ts, "packets": 0,
                                        "client_hello": False})
            e["last_time"] = ts
            e["packets"] += 1
            if "1" in cols[3].split(","):
                e["client_hello"] = True
    return {"tcp_syns": syns, "udp_client_ports": sorted(ports.values(), key=lambda e: e["first_time"])}


def _certificate(path: Path) -> dict | None:
    """Names and validity of a lab certificate (the lab's own PKI, written next to the capture)."""
    if not path.exists():
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "subject_cn": cns[0] if cns else None, "san_dns": dns, "san_ip": ips,
            "not_before": cert.not_valid_before_utc.timestamp(), "not_after": cert.not_valid_after_utc.timestamp()}


def _conf_values(path: Path) -> dict[str, list[str]]:
    """ocserv.conf as key -> values (quotes removed)."""
    conf: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, _, v = line.partition("=")
                conf.setdefault(k.strip(), []).append(v.strip().strip('"'))
    return conf


_MAIN = r"main\[[^\]]*\]:198\.18\.0\.2:(?P<tcp_port>\d+) "  # ocserv main's prefix for the client's TCP connection
_SESSION = r"\(session: (?P<session>[^)]+)\)"
GATEWAY_EVENTS = [  # (event, regex on an ocserv -d 9 line); named groups become fields
    ("session-open", r"sec-mod: initiating session for user '(?P<user>[^']*)' " + _SESSION),
    ("session-suspended", r"sec-mod: temporarily closing session for (?P<user>\S+) " + _SESSION),
    ("session-closed", r"sec-mod: permanently closing session of user '(?P<user>[^']*)' " + _SESSION),
    ("cookie-auth", _MAIN + r"user of group .* authenticated \(using cookie\)"),
    ("address-assigned", _MAIN + r"assigned IPv4: (?P<address>\S+)"),
    ("dtls-hello", r"main: new DTLS session from 198\.18\.0\.2:(?P<udp_port>\d+)"),
    ("udp-socket-to-worker", _MAIN + r"passed UDP socket from 198\.18\.0\.2:(?P<udp_port>\d+)"),
    ("udp-unexpected", r"main: 198\.18\.0\.2:(?P<udp_port>\d+): unexpected DTLS content type"),
    ("udp-too-soon", r"received UDP connection too soon from 198\.18\.0\.2:(?P<udp_port>\d+)"),
    ("udp-idle-using-tcp", r"No UDP data received for (?P<seconds>\d+) seconds, using TCP instead"),
    ("worker-error", r"GnuTLS error \(at [^)]*\): (?P<error>.*)$"),
    ("bye-received", r"received BYE packet"),
    ("user-disconnected", _MAIN + r"user disconnected \(reason: (?P<reason>[^,]*)"),
    ("certificate-request-sent", r"HSK\[[^\]]*\]: CERTIFICATE REQUEST was queued"),
    ("client-certificate-received", r"HSK\[[^\]]*\]: CERTIFICATE \(11\) was received\. Length (?P<length>\d+)"),
    ("no-client-certificate", r"no certificate was found"),
]


def _gateway_events(gateway: list[tuple[float, str]]) -> list[dict]:
    rxs = [(name, re.compile(rx)) for name, rx in GATEWAY_EVENTS]
    events = []
    for ts, line in gateway:
        for name, rx in rxs:
            m = rx.search(line)
            if m:
                ev = {"time": ts, "event": name}
                for k, v in m.groupdict().items():
                    ev[k] = int(v) if k.endswith(("_port", "seconds", "length")) else v
                events.append(ev)
                break
    return events


def build_facts(sc, out: Path, actions: list[dict], pki) -> dict:
    client = read_stamped(out / "client.log")
    auth_client = read_stamped(out / "client-auth.log")
    gateway = read_stamped(out / "gateway.log")
    all_client = auth_client + client
    exchanges = _http_exchanges(all_client)
    text = [l for _, l in all_client]

    def first(pattern: str, source=all_client):
        rx = re.compile(pattern)
        for ts, line in source:
            m = rx.search(line)
            if m:
                return ts, m
        return None

    facts: dict = {"schema": SCHEMA_VERSION, "scenario": sc.name, "description": sc.description,
                   "actions": actions, "peers": {}}
    facts["peers"]["client"] = "openconnect"
    facts["peers"]["gateway"] = next((l.split("initialized ")[1] for _, l in gateway if "initialized ocserv" in l),
                                     "ocserv")
    facts["gateway_address"] = "198.18.0.1"
    facts["client_address"] = "198.18.0.2"
    facts["server_cert_sha1"] = pki.sha1_hex

    # phase 1: TCP (the client's own words when it could not connect), then TLS
    facts["client_connect_errors"] = [{"time": ts, "line": line} for ts, line in all_client
                                      if re.search(r"Failed to connect to host|Connection refused|No route to host|"
                                                   r"getaddrinfo failed|Connection timed out|Network is unreachable",
                                                   line)]
    # phase 1: TLS
    tls = [(ts, m.group(1), m.group(2)) for ts, line in all_client
           if (m := re.search(r"Connected to HTTPS on \S+ with ciphersuite \((TLS1\.\d)\)-(.*)$", line))]
    facts["tls_sessions"] = [{"time": ts, "version": ver, "ciphersuite": cs} for ts, ver, cs in tls]
    facts["tls_version"] = tls[0][1] if tls else None

    # phase 2/3: aggregate auth
    posts = [e for e in exchanges if e["method"] == "POST"]
    facts["http"] = [{"method": e["method"], "target": e["target"], "time": e["time"], "status": e["status"],
                      "response_time": e["response_time"]} for e in exchanges]
    rounds = _auth_rounds(exchanges)
    facts["auth_rounds"] = rounds
    groups = None
    for e in posts:
        g = _groups(e["response_body"]) if e["response_body"] else None
        if g:
            groups = g
            break
    facts["group_list"] = groups["options"] if groups else []
    facts["group_chosen"] = next((r["group_select"] for r in rounds if r["group_select"]), None)
    complete = next((r for r in rounds if r["response_type"] == "complete"), None)
    if complete is not None and complete["response_auth_id"] == "success":
        facts["auth_result"] = "success"
    elif any(r["status"] == 401 for r in rounds) or first(r"Failed to obtain WebVPN cookie|Login failed"):
        facts["auth_result"] = "failure"
    else:
        facts["auth_result"] = None
    fail = first(r"(Login failed|Failed to obtain WebVPN cookie|Got inappropriate HTTP CONNECT response.*)")
    facts["auth_failure_message"] = fail[1].group(1) if fail and facts["auth_result"] == "failure" else None
    facts["aggregate_auth_version_offered"] = None
    for e in posts:
        req = _xml(e["request_body"]) if e["request_body"] else None
        if req is not None:
            facts["aggregate_auth_version_offered"] = req.get("aggregate-auth-version")
            break

    # phase 4: downloader (the lab's curl, as the AnyConnect downloader would)
    dl = [a for a in actions if a["action"] == "downloader-get"]
    facts["downloader"] = [{"time": a["time"], "uri": a["uri"], "status": int(a["status"]) if a.get("status")
                            else None} for a in dl]
    complete_body = next((e["response_body"] for e in posts if "type=\"complete\"" in e["response_body"]), "")
    root = _xml(complete_body) if complete_body else None
    facts["profile_manifest"] = ([{"uri": f.findtext("uri"), "hash": f.findtext("hash"),
                                   "hash_type": (f.find("hash").get("type") if f.find("hash") is not None else None)}
                                  for f in root.iter("file")] if root is not None else [])

    # phase 5: CONNECT (a CONNECT host:port to an HTTP proxy, in the clear before the TLS, is the proxy's: apart)
    facts["proxy_connects"] = [{"time": e["time"], "target": e["target"], "status": e["status"],
                                "reason": e.get("reason")} for e in exchanges
                               if e["method"] == "CONNECT" and not e["target"].startswith("/")]
    connects = [e for e in exchanges if e["method"] == "CONNECT" and e["target"].startswith("/")]
    facts["connects"] = []
    for c in connects:
        facts["connects"].append({
            "time": c["time"], "status": c["status"], "reason": c.get("reason"),
            "response_time": c["response_time"],
            "request_headers": [[k, v] for k, v in c["request_headers"] if k.lower().startswith(("x-cstp", "x-dtls"))],
            "response_headers": [[k, v] for k, v in c["response_headers"]
                                 if k.lower().startswith(("x-cstp", "x-dtls"))],
        })
    cstp = first(r"CSTP connected\. DPD (\d+), Keepalive (\d+)", client)
    facts["cstp_connected_time"] = cstp[0] if cstp else None
    facts["cstp_dpd"] = int(cstp[1].group(1)) if cstp else None
    facts["cstp_keepalive"] = int(cstp[1].group(2)) if cstp else None
    configured = first(r"Configured as (\S+?),", client)
    facts["tunnel_address"] = configured[1].group(1) if configured else None
    mtu_env = (out / "script-connect.env")
    facts["tunnel_mtu_granted"] = None
    if mtu_env.exists():
        for line in mtu_env.read_text().splitlines():
            if line.startswith("INTERNAL_IP4_MTU="):
                facts["tunnel_mtu_granted"] = int(line.split("=", 1)[1])

    # phase 6: DTLS
    resp = {k.lower(): v for k, v in (connects[-1]["response_headers"] if connects else [])}
    if "x-dtls-port" not in resp:
        mode = None
    elif resp.get("x-dtls-ciphersuite") == "PSK-NEGOTIATE" or resp.get("x-dtls12-ciphersuite") == "PSK-NEGOTIATE":
        mode = "psk-negotiate"
    else:
        mode = "legacy"
    facts["dtls_mode"] = mode
    facts["dtls_ciphersuite_header"] = resp.get("x-dtls-ciphersuite") or resp.get("x-dtls12-ciphersuite")
    est = first(r"Established DTLS connection \(using GnuTLS\)\. Ciphersuite (\S+)\.", client)
    facts["dtls_established"] = est is not None
    facts["dtls_established_time"] = est[0] if est else None
    facts["dtls_ciphersuite"] = est[1].group(1) if est else None
    facts["dtls_version"] = (re.match(r"\((DTLS[0-9.]+)\)", est[1].group(1)).group(1) if est and
                             re.match(r"\((DTLS[0-9.]+)\)", est[1].group(1)) else None)
    facts["dtls_attempts"] = [ts for ts, l in client if "DTLS handshake timed out" in l or
                              "DTLS handshake failed" in l]
    facts["oracle_tshark"] = {"dtls_client_hello_times": _tshark_dtls_hellos(out / "capture.pcapng")}

    # inner traffic as openconnect logged it
    def count(rx: str) -> int:
        r = re.compile(rx)
        return sum(1 for line in text if r.search(line))

    facts["inner_packets"] = {
        "client_sent_dtls": count(r"^Sent DTLS packet of \d+ bytes"),
        "client_sent_cstp": count(r"^Sending uncompressed data packet of \d+ bytes|^Sent uncompressed data "
                                  r"packet of \d+ bytes"),
        "client_received_dtls": count(r"^Received DTLS packet 0x00 of \d+ bytes"),
        "client_received_cstp": count(r"^Received uncompressed data packet of \d+ bytes"),
        "client_received_compressed": count(r"^Received compressed data packet"),
    }
    facts["pings"] = []
    for a in actions:
        if a["action"] == "ping-done":
            m = re.search(r"(\d+) packets transmitted, (\d+) received", a.get("output", ""))
            facts["pings"].append({"size": a["size"], "df": a["df"], "sent": int(m.group(1)) if m else None,
                                   "received": int(m.group(2)) if m else None})

    # server certificate (the lab's PKI) and what the client made of it
    host = first(r"^SSL negotiation with (\S+)$")
    facts["host_used"] = host[1].group(1) if host else None
    cert = _certificate(out / "server-cert.pem")
    if cert is not None:
        h = facts["host_used"]
        cert["names_host"] = bool(h) and (h in cert["san_dns"] or (not cert["san_dns"] and cert["subject_cn"] == h))
        start = facts["tls_sessions"][0]["time"] if facts["tls_sessions"] else None
        cert["expired_at_connect"] = (start > cert["not_after"]) if start else None
    facts["server_certificate"] = cert
    facts["server_cert_verify_errors"] = sorted({m.group(1) for _, l in all_client
                                                 if (m := re.match(r"Server certificate verify failed: (.*)$", l))})

    # client certificate request (ocserv.conf, the lab CA, the gateway's TLS debug log)
    gw_events = _gateway_events(gateway)
    conf = _conf_values(out / "ocserv.conf")
    auths = [a.split("[", 1)[0] for a in conf.get("auth", []) + conf.get("enable-auth", [])]  # method names
    requested = any(e["event"] == "certificate-request-sent" for e in gw_events)
    ca = _certificate(out / "ca.pem") if "ca-cert" in conf else None
    received = [e for e in gw_events if e["event"] == "client-certificate-received"]
    facts["client_cert_request"] = {
        "requested": requested,
        "gateway_auth": auths,
        "certificate_required": any(a.split("[", 1)[0] == "certificate" for a in conf.get("auth", [])),
        "ca_names": [ca["subject"]] if ca and requested else [],
        # TLS 1.2 Certificate of an empty chain is 3 bytes long, TLS 1.3's 4 (request context + list length)
        "client_certificate_sent": (None if not requested else
                                    not (any(e["event"] == "no-client-certificate" for e in gw_events) or
                                         any(e["length"] <= 4 for e in received))),
    }

    # losses and reconnections: the client's log and script calls, the lab's actions, the gateway's log
    facts["cstp_connected_times"] = [ts for ts, l in client if l.startswith("CSTP connected.")]
    facts["dtls_established_times"] = [ts for ts, l in client if l.startswith("Established DTLS connection")]
    facts["tunnel_addresses"] = [{k.lower(): v for k, v in c["response_headers"]}.get("x-cstp-address")
                                 for c in facts["connects"] if c["status"] == 200]
    facts["dead_peer"] = [{"time": ts, "channel": m.group(1)} for ts, l in client
                          if (m := re.match(r"(CSTP|DTLS) Dead Peer Detection detected dead peer", l))]
    facts["ssl_read_errors"] = [{"time": ts, "error": m.group(1)} for ts, l in client
                                if (m := re.match(r"Read error on SSL session: (.*)$", l))]
    script_calls = _stamped_script(out / "script.log")
    facts["script_calls"] = script_calls
    facts["reconnect_attempts"] = [c["time"] for c in script_calls if c["reason"] == "attempt-reconnect"]
    facts["reconnect_failures"] = [{"time": ts, "error": m.group(1)} for ts, l in client
                                   if (m := re.match(r"Failed to reconnect to host \S+: (.*)$", l))]
    facts["reconnect_sleeps"] = [{"time": ts, "seconds": int(m.group(1)), "remaining": int(m.group(2))}
                                 for ts, l in client if (m := re.match(r"sleep (\d+)s, remaining timeout (\d+)s", l))]
    losses = sorted([d["time"] for d in facts["dead_peer"] if d["channel"] == "CSTP"] +
                    [e["time"] for e in facts["ssl_read_errors"]])
    first_cookie = _cookie_hash(connects[0]["request_headers"]) if connects else None
    facts["reconnects"] = []
    for prev, c in itertools.pairwise(connects):
        between = [(ts, l) for ts, l in all_client if prev["time"] < ts < c["time"]]
        lost = max((t for t in losses if prev["time"] < t < c["time"]), default=None)
        dtls = next((t for t in facts["dtls_established_times"] if t > c["time"]), None)
        facts["reconnects"].append({
            "time": c["time"], "status": c["status"], "response_time": c["response_time"],
            "lost_time": lost, "gap": (c["response_time"] - lost) if lost and c["response_time"] else None,
            "new_tls_session": any(l.startswith("Connected to HTTPS on") for _, l in between),
            "config_auth_posts": sum(1 for e in exchanges if e["method"] == "POST" and prev["time"] < e["time"] <
                                     c["time"]),
            "same_cookie": _cookie_hash(c["request_headers"]) == first_cookie if first_cookie else None,
            "request_address": {k.lower(): v for k, v in c["request_headers"]}.get("x-cstp-address"),
            "tunnel_address": {k.lower(): v for k, v in c["response_headers"]}.get("x-cstp-address"),
            "dtls_established_time": dtls,
        })
    blocks = []
    for a in actions:
        if a["action"] == "traffic-blocked":
            blocks.append({"start": a["time"], "end": None, "scope": a.get("scope")})
        elif a["action"] == "client-suspended":  # (Lab.suspend_client: a sleep blocks all traffic too)
            blocks.append({"start": a["time"], "end": None, "scope": "all IPv4 between client and gateway, both ways "
                                                                      "(the client asleep)"})
        elif a["action"] in ("traffic-unblocked", "client-resumed") and blocks:
            blocks[-1]["end"] = a["time"]
    facts["traffic_blocks"] = blocks
    facts["tcp_kills"] = [{"time": a.get("issued", a["time"]), "sockets": a.get("sockets", [])} for a in actions
                          if a["action"] == "tcp-killed"]
    snat = next((a for a in actions if a["action"] == "udp-snat-added"), None)
    if snat:
        ct = next((a for a in actions if a["action"] == "udp-conntrack"), {"entries": []})
        before = snat.get("sockets_before") or []
        mapped = next((e["translated_sport"] for e in ct["entries"] if before and e["original_sport"] == before[0]),
                      None)
        facts["nat_rebinding"] = {"time": snat["time"], "snat_to": snat.get("to"), "port_before": before[0]
                                  if before else None, "port_after": mapped, "conntrack": ct["entries"]}
    else:
        facts["nat_rebinding"] = None
    facts["gateway_events"] = [e for e in gw_events if e["event"] not in
                               ("certificate-request-sent", "client-certificate-received")]
    facts["oracle_tshark"].update(_tshark_wire(out / "capture.pcapng"))

    # flows, identity, client certificates per TLS connection, unrelated traffic (lab.flowfacts)
    facts["url"] = first(r"^(?:POST|GET) (https://\S+)$")[1].group(1) if first(r"^(?:POST|GET) (https://\S+)$") \
        else None
    facts["client_errors"] = [{"time": ts, "line": line} for ts, line in all_client
                              if re.match(r"^(Unexpected \d+ result from server|Failed to .*|Creating SSL connection "
                                          r"failed|Cookie was rejected.*)$", line)]
    facts["client_identity"] = client_identity(all_client, gateway)
    facts["tls_connections"] = tls_connections(out, auth_client, client, gateway)
    facts["vpn_flows"] = vpn_flows(out / "capture.pcapng")
    facts["other_flows"] = other_flows(out, actions)
    facts["captive_portal"] = portal_facts(out, actions)  # lab.portal: what the portal did, its HTTP (tshark)
    facts["tshark_decode_as"] = decode_as(actions)  # what an oracle must tell tshark to see every TLS/DTLS flow

    # end of session
    bye = first(r"Send BYE packet: (.*)$", client)
    server = first(r"^Received server (disconnect|terminate)", client)
    if bye and server and server[0] <= bye[0]:
        # the gateway ended the session (its session or idle timeout, an administrator): openconnect said goodbye
        # ("Server request") and exited; the reason is the gateway's (ocserv main: "user disconnected (reason: …")
        why = first(r"user disconnected \(reason: ([^,)]+)", gateway[::-1])  # its last session's
        facts["end"] = {"by": "gateway", "how": f"gateway-{server[1].group(1)}",
                        "reason": why[1].group(1) if why else None, "time": server[0],
                        "client_answer": bye[1].group(1)}
    elif bye:
        facts["end"] = {"by": "client", "how": "cstp-disconnect", "reason": bye[1].group(1), "time": bye[0]}
    elif facts["auth_result"] == "failure":
        facts["end"] = {"by": "gateway", "how": "auth-failed", "reason": facts["auth_failure_message"],
                        "time": fail[0] if fail else None}
    elif not connects and facts["client_errors"]:  # the client gave up before any login (group-url-unknown)
        last = facts["client_errors"][-1]
        facts["end"] = {"by": "client", "how": "client-gave-up", "reason": last["line"], "time": last["time"]}
    else:
        facts["end"] = {"by": None, "how": "unknown", "reason": None, "time": None}
    return facts


def refresh(directory: Path) -> dict:
    """Recompute facts.json of an existing sample from its logs (after a change to this module)."""
    import hashlib
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from .scenarios import SCENARIOS

    old = json.loads((directory / "facts.json").read_text())
    cert = x509.load_pem_x509_certificate((directory / "server-cert.pem").read_bytes())

    class _P:
        sha1_hex = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    new = build_facts(SCENARIOS[old["scenario"]], directory, old["actions"], _P())
    (directory / "facts.json").write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
    return new
