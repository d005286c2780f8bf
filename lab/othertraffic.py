"""Unrelated traffic around a VPN session: real TLS, DTLS, UDP and TCP servers on other addresses of the LAN.

A laptop's capture holds much more than the VPN: a browser's HTTPS, a Chromecast's TLS on 8009, a push service on
5223, a backup client on 4287, a STUN/CoAP-style DTLS flow, DNS, plain HTTP. The `mixed-traffic` scenario makes
such flows from the client namespace while the tunnel is up, with real tools:

* the servers run in a third namespace ("other servers", `OTHER_ADDRESSES`, all in 198.18.0.0/15) whose veth is
  bridged with the gateway's on the same LAN (`Lab.add_other_servers`), so that they answer from their own
  addresses and MAC;
* TLS servers: gnutls-serv (echo, HTTP) and openssl s_server (`-rev`), each with its own self-signed certificate
  (no CA: an untrusted certificate, as such services have); clients gnutls-cli `--insecure`, openssl s_client,
  curl `-k`;
* DTLS: gnutls-serv `--udp --echo` with its default RFC 6347 cookies (HelloVerifyRequest), gnutls-cli `--udp`;
* DNS: a few A queries over UDP 53 to a tiny responder (`python -m lab.dnsish`); plain HTTP: `python -m
  http.server` and curl.

Every TLS/DTLS peer writes its secrets to the run's key log (GnuTLS and curl through SSLKEYLOGFILE, openssl with
`-keylogfile`), so every non-VPN TLS/DTLS flow decrypts too. What each flow is, and what its client printed,
goes to facts.json (`other_flows`); its client port comes from the capture (tshark, the oracle).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (python -m lab.dnsish runs from here)

OTHER_NS_ADDRESSES = ("198.18.0.3", "198.18.0.4", "198.18.0.5")  # the first is the namespace's primary (UDP) one


@dataclass(frozen=True)
class OtherFlow:
    name: str
    what: str  # what such a flow is on a real laptop
    protocol: str  # tls | dtls | dns | http
    server: str  # address
    port: int
    transport: str  # tcp | udp
    server_argv: tuple[str, ...]  # tokens: @CERT@ @KEY@ @KEYLOG@ @ADDR@ @PORT@ @WWW@ @PY@
    server_ready: str  # a line the server prints once it listens
    client_argv: tuple[str, ...]
    cert_name: str | None = None  # self-signed certificate made for this server (CN and SAN)
    tls_version: str | None = None  # what the server allows


FLOWS: tuple[OtherFlow, ...] = (
    OtherFlow("dns", "DNS A queries of the names the other flows use", "dns", "198.18.0.5", 53, "udp",
              ("@PY@", "-m", "lab.dnsish", "server", "@ADDR@", "198.18.0.4"), "listening",
              ("@PY@", "-m", "lab.dnsish", "client", "@ADDR@", "cast.example.test", "push.example.test",
               "www.example.test")),
    OtherFlow("cast-8009", "Chromecast-style TLS 1.2 on 8009 (self-signed certificate)", "tls", "198.18.0.3",
              8009, "tcp",
              ("gnutls-serv", "--echo", "-p", "@PORT@", "-a", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2",
               "--x509certfile", "@CERT@", "--x509keyfile", "@KEY@"), "listening",
              ("sh", "-c", ("(echo cast-ping-1; sleep 0.3; echo cast-ping-2; sleep 0.5) | gnutls-cli --insecure "
                           "--sni-hostname cast.example.test -p @PORT@ @ADDR@")),
              cert_name="cast.example.test", tls_version="TLS1.2"),
    OtherFlow("push-5223", "push-notification-style TLS 1.3 on 5223", "tls", "198.18.0.3", 5223, "tcp",
              ("openssl", "s_server", "-accept", "@ADDR@:@PORT@", "-tls1_3", "-rev", "-cert", "@CERT@", "-key",
               "@KEY@", "-keylogfile", "@KEYLOG@"), "ACCEPT",
              ("sh", "-c", ("(echo push-hello; sleep 0.5) | openssl s_client -connect @ADDR@:@PORT@ -servername "
                           "push.example.test -keylogfile @KEYLOG@ -quiet -no_ign_eof")),
              cert_name="push.example.test", tls_version="TLS1.3"),
    OtherFlow("backup-4287", "backup-client-style TLS 1.2 on 4287 to a server with a self-signed certificate "
                             "(readable in the clear)", "tls", "198.18.0.4", 4287, "tcp",
              ("gnutls-serv", "--echo", "-p", "@PORT@", "-a", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2",
               "--x509certfile", "@CERT@", "--x509keyfile", "@KEY@"), "listening",
              ("sh", "-c", ("(echo backup-chunk-1; sleep 0.3; echo backup-chunk-2; sleep 0.5) | gnutls-cli "
                           "--insecure --sni-hostname backup.example.test -p @PORT@ @ADDR@")),
              cert_name="backup.example.test", tls_version="TLS1.2"),
    OtherFlow("https-443", "a browser's HTTPS GET (TLS 1.3, HTTP/1.1) on 443 of another server", "tls",
              "198.18.0.4", 443, "tcp",
              ("gnutls-serv", "--http", "-p", "@PORT@", "-a", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3",
               "--x509certfile", "@CERT@", "--x509keyfile", "@KEY@"), "listening",
              ("curl", "-sS", "-k", "--tlsv1.3", "--http1.1", "--resolve", "www.example.test:443:@ADDR@", "-o",
               "/dev/null", "-w", "HTTP_STATUS=%{http_code}\\n", "https://www.example.test/"),
              cert_name="www.example.test", tls_version="TLS1.3"),
    OtherFlow("dtls-3478", "a STUN/CoAP-style DTLS 1.2 flow with the server's RFC 6347 cookie exchange "
                           "(HelloVerifyRequest), a full certificate handshake and a few messages", "dtls",
              "198.18.0.3", 3478, "udp",
              ("gnutls-serv", "--udp", "--echo", "-p", "@PORT@", "-a", "--x509certfile", "@CERT@",
               "--x509keyfile", "@KEY@"), "listening",
              ("sh", "-c", ("(echo stun-1; sleep 0.4; echo stun-2; sleep 0.4; echo stun-3; sleep 0.5) | gnutls-cli "
                           "--udp --insecure -p @PORT@ @ADDR@")),
              cert_name="stun.example.test", tls_version="DTLS1.2"),
    OtherFlow("http-80", "plain HTTP GET on 80", "http", "198.18.0.5", 80, "tcp",
              ("@PY@", "-m", "http.server", "--bind", "@ADDR@", "@PORT@", "--directory", "@WWW@"), "Serving HTTP",
              ("curl", "-sS", "-o", "/dev/null", "-w", "HTTP_STATUS=%{http_code}\\n", "http://@ADDR@/")),
)


def _argv(argv: tuple[str, ...], flow: OtherFlow, cert, key, keylog: Path, www: Path) -> list[str]:
    subst = {"@CERT@": str(cert), "@KEY@": str(key), "@KEYLOG@": str(keylog), "@ADDR@": flow.server,
             "@PORT@": str(flow.port), "@WWW@": str(www), "@PY@": sys.executable}
    out = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def start_servers(lab, ns: str, work: Path, keylog: Path) -> dict:
    """Start every flow's server in the other servers' namespace `ns` (certificates and logs under `work`, TLS
    secrets to `keylog`); returns what `run_flows` needs. LabError if a server does not come up."""
    from .netns import LabError
    from .pki import make_self_signed

    work.mkdir(parents=True, exist_ok=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("<html><body>acflow lab: an unrelated web server</body></html>\n")
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog), PYTHONUNBUFFERED="1")
    servers, certs = {}, {}
    for flow in FLOWS:
        cert = key = None
        if flow.cert_name:
            cert, key = make_self_signed(work, flow.cert_name)
            certs[flow.name] = cert
        argv = _argv(flow.server_argv, flow, cert, key, keylog, www)
        p = lab.start(ns, f"{flow.name}-server", argv, work / f"{flow.name}-server.log", env=env, cwd=ROOT)
        if p.wait_for(flow.server_ready, 10) is None:
            raise LabError(f"other server {flow.name} did not start: {p.tail(10)}")
        servers[flow.name] = {"argv": argv, "process": p}
    return {"ns": ns, "work": work, "keylog": keylog, "servers": servers, "certs": certs, "www": www, "env": env}


def run_flows(lab, other: dict, act, *, ping_count: int = 12) -> None:
    """Each flow's client, one after the other, in the client namespace (secrets to the same key log), while a
    ping runs through the tunnel; every start and end goes to the lab's actions."""
    from .client import TUNNEL_GW

    work = other["work"]
    ping = lab.start(lab.client_ns, "tunnel-ping", ["ping", "-n", "-c", str(ping_count), "-i", "0.5", "-W", "2",
                                                    TUNNEL_GW], work / "tunnel-ping.log")
    act("ping-start", count=ping_count, size=56, df=False, target=TUNNEL_GW, background=True)
    for flow in FLOWS:
        argv = _argv(flow.client_argv, flow, None, None, other["keylog"], other["www"])
        act("other-flow-start", name=flow.name)
        c = lab.start(lab.client_ns, f"{flow.name}-client", argv, work / f"{flow.name}-client.log", env=other["env"],
                      cwd=ROOT)
        try:
            c.proc.wait(20)
        except subprocess.TimeoutExpired:
            act("other-flow-timeout", name=flow.name)
        rc = c.stop()
        act("other-flow-done", name=flow.name, returncode=rc, output=[line for _, line in c.lines()][-6:])
        time.sleep(0.3)
    try:
        ping.proc.wait(ping_count * 0.5 + 5)
    except subprocess.TimeoutExpired:
        pass
    ping.stop()
    out = "\n".join(line for _, line in ping.lines())
    act("ping-done", count=ping_count, size=56, df=False, returncode=ping.proc.returncode, output=out[-400:],
        background=True)
