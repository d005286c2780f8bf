"""The lab's client side, shared by the lab scenarios (`lab.runner`), the scripted cases (`lab.scripted.runner`)
and the bench (`bench/lab.py`): the names and tunnel addresses, the vpnc-script openconnect runs in the client
namespace, openconnect's common arguments and the split flow (authenticate, fetch the profile as AnyConnect's
downloader does, then connect with the cookie).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .netns import GW_OUTER, Lab, LabError, StampedProcess

HOSTNAME = "vpn.acflow.test"  # the gateway's name (openconnect --resolve maps it to GW_OUTER)
URL = f"https://{HOSTNAME}/"
USER = "alice"
USER_PASSWORD = "acflow-pass-1"
TUNNEL_NET = "198.19.0.0"  # /24: the addresses the gateways hand out inside the tunnel
TUNNEL_GW = "198.19.0.1"
TUNNEL_NET6 = "2001:2::/64"  # RFC 5180 benchmarking range, like 198.18.0.0/15 for IPv4
DOWNLOADER_AGENT = "AnyConnect Linux_64 4.10.07061"

# The vpnc-script: configures only the tun device inside the client namespace (no DNS, no resolv.conf). It
# records what openconnect gave it (script-<reason>.env) and each call (script.log: time, reason, address);
# ACFLOW_FORCE_MTU (if set) replaces the granted MTU on the tun; an IPv6 address, if granted, is tried and the
# outcome written to script-ipv6.log.
CLIENT_SCRIPT = """#!/bin/sh
# acflow lab vpnc-script: configures only the tun device inside the client namespace (no DNS, no resolv.conf).
env | grep -E '^(reason|TUNDEV|VPNGATEWAY|INTERNAL_IP4_|INTERNAL_IP6_|CISCO_)' | sort > "{logdir}/script-$reason.env"
echo "$(date +%s.%N)	$reason	${{INTERNAL_IP4_ADDRESS:-}}" >> "{logdir}/script.log"
case "$reason" in
  connect|reconnect)
    ip link set dev "$TUNDEV" up mtu "${{ACFLOW_FORCE_MTU:-$INTERNAL_IP4_MTU}}"
    if [ "$reason" = connect ]; then
      [ -n "$INTERNAL_IP4_ADDRESS" ] && ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
      ip route replace {net}/24 dev "$TUNDEV"
      if [ -n "$INTERNAL_IP6_NETMASK" ]; then
        out=$(ip -6 addr add "$INTERNAL_IP6_NETMASK" dev "$TUNDEV" 2>&1); rc=$?
        rout=$(ip -6 route replace {net6} dev "$TUNDEV" 2>&1); rrc=$?
        printf 'rc=%s\\noutput=%s\\nroute_rc=%s\\nroute_output=%s\\n' "$rc" "$out" "$rrc" "$rout" \\
          > "{logdir}/script-ipv6.log"
      fi
    fi
    ;;
esac
exit 0
"""


def write_client_script(work: Path, routes: bool = True) -> Path:
    """Write the vpnc-script into `work` (its logs go there too); return its path (openconnect -s). ``routes``
    False: it sets no route (a second client in the namespace: the first's tun keeps the tunnel's routes)."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "vpnc-script"
    text = CLIENT_SCRIPT.format(logdir=work, net=TUNNEL_NET, net6=TUNNEL_NET6)
    if not routes:
        text = "\n".join(line for line in text.splitlines() if "route replace" not in line) + "\n"
    script.write_text(text)
    script.chmod(0o755)
    return script


def openconnect_argv(pin_sha256: str, *, debug: bool = True) -> list[str]:
    """openconnect with the lab's common options: AnyConnect protocol, HOSTNAME resolved to the gateway, the
    gateway's certificate pinned. `debug`: -vvv --dump-http-traffic (the logs the facts are read from); else -v."""
    return ["openconnect", "--protocol=anyconnect", *(["-vvv", "--dump-http-traffic"] if debug else ["-v"]),
            f"--resolve={HOSTNAME}:{GW_OUTER}", f"--servercert={pin_sha256}", "--os=linux-64"]


def authenticate(lab: Lab, argv: list[str], auth_args: list[str], log: Path, env: dict,
                 password: str, *, url: str = URL) -> tuple[str, StampedProcess]:
    """`openconnect --authenticate` in the client namespace (first half of the split flow): the cookie it prints
    and the process (its lines hold the config-auth answers). LabError if it printed no COOKIE."""
    authp = lab.start(lab.client_ns, "openconnect-auth", [*argv, "--authenticate", *auth_args, url], log,
                      env=env, stdin_data=(password + "\n").encode())
    try:
        authp.proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    authp.stop()
    cookie = next((line.split("=", 1)[1].strip().strip("'") for _, line in authp.lines()
                   if line.startswith("COOKIE=")), None)
    if not cookie:
        raise LabError(f"openconnect --authenticate printed no COOKIE: {authp.tail(10)}")
    return cookie, authp


def fetch_profile(lab: Lab, work: Path, cookie: str, auth: StampedProcess, default_uri: str,
                  keylog: Path) -> dict:
    """The downloader's GET of the profile the vpn-profile-manifest names (as AnyConnect does), with the webvpn
    cookie, by curl in the client namespace into work/downloaded-profile.xml (curl.log).
    Returns {"uri", "status" (the HTTP status as curl printed it, or None), "exit_code"}."""
    # COOKIE may hold several cookies ("openconnect_strapkey=…; webvpn=…"): the downloader sends webvpn
    webvpn = next((c.strip()[len("webvpn="):] for c in cookie.split(";") if c.strip().startswith("webvpn=")),
                  cookie)
    uris = re.findall(r"<uri>([^<]+)</uri>", "\n".join(line for _, line in auth.lines()))
    uri = uris[0] if uris else default_uri
    curl = lab.start(lab.client_ns, "curl",
                     ["curl", "-sS", "-k", "--fail", "--resolve", f"{HOSTNAME}:443:{GW_OUTER}", "-A", DOWNLOADER_AGENT,
                      "-H", f"Cookie: webvpn={webvpn}", "-o", str(work / "downloaded-profile.xml"),
                      "-w", "HTTP_STATUS=%{http_code}\\n", f"https://{HOSTNAME}{uri}"],
                     work / "curl.log", env=dict(os.environ, SSLKEYLOGFILE=str(keylog)))
    try:
        curl.proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    rc = curl.stop()
    status = next((line.split("=", 1)[1] for _, line in curl.lines() if line.startswith("HTTP_STATUS=")), None)
    return {"uri": uri, "status": status, "exit_code": rc}


def start_openconnect(lab: Lab, argv: list[str], work: Path, env: dict, script: Path, *,
                      cookie: str | None = None, auth_args: list[str] | tuple[str, ...] = (),
                      password: str = USER_PASSWORD, url: str = URL) -> StampedProcess:
    """openconnect connecting for real to `url` in the client namespace (tun0, configured by `script`), logging
    to work/client.log: with `cookie` (--cookie-on-stdin, after `authenticate`), else logging in with
    `auth_args` and `password` on stdin."""
    login = ["--cookie-on-stdin"] if cookie is not None else list(auth_args)
    secret = cookie if cookie is not None else password
    return lab.start(lab.client_ns, "openconnect", [*argv, *login, "-s", str(script), "-i", "tun0", url],
                     work / "client.log", env=env, stdin_data=(secret + "\n").encode())


def wait_client_line(client: StampedProcess, needle: str, timeout: float, failure: str,
                     peers: tuple[tuple[StampedProcess, str], ...] = ()) -> None:
    """Wait for a client log line containing `needle`; if none comes, LabError: first for a peer of `peers`
    ((process, name) pairs, the client too) that has died, else `failure` with the client's last lines."""
    if client.wait_for(needle, timeout) is None:
        for proc, what in peers:
            proc.check_running(what)
        raise LabError(f"{failure}: {client.tail(15)}")


def await_exit(client: StampedProcess, record: Callable[..., None], timeout: float = 30.0) -> None:
    """A client expected to give up by itself (a failed login…): wait for its exit, recorded by `record`."""
    try:
        client.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        record("client-did-not-exit")
    record("client-exited", returncode=client.proc.poll())


def interrupt_client(client: StampedProcess, record: Callable[..., None]) -> None:
    """End the session as a user's Ctrl-C does (SIGINT: openconnect sends DISCONNECT), recorded by `record`."""
    record("client-sigint")
    if not client.interrupt(15):
        record("client-did-not-exit")
    record("client-exited", returncode=client.proc.poll())


def wait_tun_configured(work: Path, timeout: float = 30.0) -> bool:
    """Wait until the vpnc-script has run for "connect" (the tun is configured); True if it has. (openconnect
    configures the tun only once DTLS is up or given up: ~13 s when its hellos go unanswered.)"""
    deadline = time.time() + timeout
    while not (work / "script-connect.env").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return (work / "script-connect.env").exists()
