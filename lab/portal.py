"""The lab's captive portal: what a hotel's, airport's or café's network does before its sign-in page was accepted.

    python -m lab.portal http LISTEN_ADDR PORTAL_NAME

Every plain HTTP request, to whatever host it names, is answered with a redirect to the portal's sign-in page
(`302 Found`, Location http://PORTAL_NAME/login?url=<the URL asked for>); a request for the sign-in page itself (Host
PORTAL_NAME, path /login) gets the page: 200, HTML with a form. Each request is printed as a line (method, host,
path, the status sent). HTTPS is left to the scenario: a portal that also answers TLS does it with gnutls-serv
and a certificate of its own name (lab.runner), one that does not lets a firewall drop it.
"""
from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent  # the checkout (python -m lab.portal runs from it)
PORTAL_NAME = "portal.hotspot.test"
#: the portal's namespace on the client's LAN: its own address first (its DNS server, its HTTPS), then an address
#: standing for "some web server on the internet" whose port 80 the portal answers in its place ("firewall")
PORTAL_ADDRESSES = ("198.18.0.5", "198.18.0.4")
#: the operating system's connectivity check, as a laptop makes it on joining a network (NetworkManager on Ubuntu)
PROBE_HOST = "connectivity-check.ubuntu.com"

PAGE = ("<!DOCTYPE html>\n<html><head><title>Guest Wi-Fi sign-in</title></head><body>\n"
        "<h1>Welcome to the guest network</h1>\n<form method=\"post\" action=\"/login\">\n"
        "<label><input type=\"checkbox\" name=\"accept\"> I accept the terms of use</label>\n"
        "<button type=\"submit\">Connect</button>\n</form>\n</body></html>\n")


def handler(portal: str):
    class Portal(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            if host == portal and self.path.split("?")[0] == "/login":
                body, status = PAGE.encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
            else:
                asked = f"http://{host or self.server.server_address[0]}{self.path}"
                body, status = b"", 302
                self.send_response(status)
                self.send_header("Location", f"http://{portal}/login?url={quote(asked, safe='')}")
                self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            print(f"{self.command} {host} {self.path} -> {status}", flush=True)

        do_GET = do_HEAD = do_POST = _answer

        def log_message(self, *args) -> None:  # one line per request is printed by _answer
            pass

    return Portal


def start(lab, how: str, work: Path, act) -> dict:
    """The captive portal of scenario field ``captive_portal`` (``how``: "dns" or "firewall") on the client's LAN
    (lab.netns.Lab.add_other_servers): lab.portal on port 80 of both PORTAL_ADDRESSES; "dns": the client's resolver
    is the portal's (lab.dnsish portal: every name is the portal's address) and the portal answers TLS on 443 with a
    certificate of its own name (gnutls-serv --http); "firewall": TCP to the gateway's port 443 is dropped on its way
    in (Lab.path_fault) and names resolve as the scenario has them (openconnect --resolve)."""
    from .netns import LabError
    from .pki import make_self_signed

    if how not in ("dns", "firewall"):
        raise LabError(f"unknown captive_portal {how!r}: dns or firewall")
    work.mkdir(parents=True, exist_ok=True)
    ns = lab.add_other_servers(PORTAL_ADDRESSES)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = {"http": lab.start(ns, "portal-http", [sys.executable, "-m", "lab.portal", "http", "0.0.0.0", PORTAL_NAME],
                               work / "portal-http.log", env=env, cwd=ROOT)}
    if how == "dns":
        procs["dns"] = lab.start(ns, "portal-dns", [sys.executable, "-m", "lab.dnsish", "portal", PORTAL_ADDRESSES[0],
                                                    PORTAL_ADDRESSES[0]], work / "portal-dns.log", env=env, cwd=ROOT)
        cert, key = make_self_signed(work, PORTAL_NAME)
        procs["https"] = lab.start(ns, "portal-https", ["gnutls-serv", "--http", "-p", "443", "-a", "--x509certfile",
                                                        str(cert), "--x509keyfile", str(key)],
                                   work / "portal-https.log", env=env)
        lab.use_resolver(lab.client_ns, PORTAL_ADDRESSES[0])
    else:
        lab.path_fault("drop")
    for name, p in procs.items():
        if p.wait_for("listening", 10) is None:
            p.check_running(f"the portal's {name} server")
            raise LabError(f"the portal's {name} server did not start: {p.tail(5)}")
    act("captive-portal", how=how, namespace=ns, address=PORTAL_ADDRESSES[0], name=PORTAL_NAME,
        dns=PORTAL_ADDRESSES[0] if how == "dns" else None, https=how == "dns")
    return {"ns": ns, "how": how, "procs": procs}


def probe(lab, portal: dict, act) -> None:
    """The operating system's connectivity check from the client (curl, plain HTTP, not following redirects): with
    the portal's resolver the name is the portal's address, else it stands for a web server on the internet
    (PORTAL_ADDRESSES[1]) whose port 80 the portal answers."""
    url = f"http://{PROBE_HOST}/"
    argv = ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
            "HTTP_STATUS=%{http_code} REDIRECT=%{redirect_url}\\n", url]
    if portal["how"] == "firewall":
        argv[1:1] = ["--resolve", f"{PROBE_HOST}:80:{PORTAL_ADDRESSES[1]}"]
    act("portal-probe-start", url=url)
    p = lab.ns_run(lab.client_ns, argv, check=False)
    act("portal-probe-done", url=url, returncode=p.returncode, output=(p.stdout + p.stderr)[-400:])


def facts(out: Path, actions: list[dict]) -> dict | None:
    """facts.json `captive_portal`: what the lab's portal was (its action), what the connectivity check printed,
    the requests the portal answered (its log), and the HTTP messages in the capture as tshark (the oracle) reads
    them: request frames with their URL, answer frames with status and Location."""
    import shutil
    import subprocess

    from .netns import read_stamped

    made = next((a for a in actions if a["action"] == "captive-portal"), None)
    if made is None:
        return None
    done = next((a for a in actions if a["action"] == "portal-probe-done"), {})
    log = out / "portal" / "portal-http.log"
    answered = [{"time": ts, "line": line} for ts, line in read_stamped(log) if " -> " in line] \
        if log.exists() else []
    http: list[dict] = []
    if shutil.which("tshark") is not None:
        p = subprocess.run(["tshark", "-n", "-r", str(out / "capture.pcapng"), "-Y", "http", "-T", "fields",
                            "-e", "frame.number", "-e", "frame.time_epoch", "-e", "http.request.full_uri",
                            "-e", "http.response.code", "-e", "http.location"],
                           capture_output=True, text=True, check=False)
        for line in p.stdout.splitlines():
            frame, ts, uri, code, location = (line.split("\t") + [""] * 5)[:5]
            http.append({"frame": int(frame), "time": float(ts), "request": uri or None,
                         "status": int(code) if code else None, "location": location or None})
    return {"how": made.get("how"), "address": made.get("address"), "name": made.get("name"),
            "dns": made.get("dns"), "https": made.get("https"), "probe_url": done.get("url"),
            "probe_output": done.get("output"), "probe_returncode": done.get("returncode"),
            "portal_answered": answered, "oracle_http": http}


def main(argv: list[str]) -> int:
    if argv[:1] == ["http"] and len(argv) == 3:
        server = ThreadingHTTPServer((argv[1], 80), handler(argv[2].lower()))
        print(f"listening on {argv[1]}:80", flush=True)
        server.serve_forever()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
