"""Running a scripted case in the lab: the scripted gateway (`python -m replay.gateway --serve`) in the gateway
namespace, real openconnect (and for the downloader curl) in the client namespace, dumpcap on the client's veth.

A run writes into `<out>/<case>/`:

* `capture.pcapng` (dumpcap on the client's veth), `keys.log` (NSS key log of every TLS session: the gateway's
  `SSLContext.keylog_filename` merged with openconnect's and curl's SSLKEYLOGFILE),
* `client.log` (and `client-auth.log` for the split flows; `openconnect -vvv --dump-http-traffic`), `curl.log`,
  `gateway.log`, `dtls-server.log` (cases with a real DTLS server: gnutls-serv in the gateway namespace) — every
  line stamped `<epoch seconds>\\t<line>` as the lab does,
* `script.json` (the exact script served), `gateway-events.jsonl` (the gateway's own record, one JSON object per
  event), `script-*.env` (what openconnect gave the vpnc-script), `server-cert.pem`, `server-key.pem`, `ca.pem`,
* `facts.json` (see `lab.scripted.facts`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from replay.script import Script

from ..client import (
    HOSTNAME,
    TUNNEL_GW,
    USER,
    USER_PASSWORD,
    authenticate,
    await_exit,
    fetch_profile,
    interrupt_client,
    openconnect_argv,
    start_openconnect,
    wait_client_line,
    wait_tun_configured,
    write_client_script,
)
from ..netns import CLIENT_OUTER, GW_OUTER, Lab, LabError, require_tools
from ..pki import make_pki
from ..runs import Actions, collect_outputs, run_each, work_dir
from .cases import CASES, CSD_WRAPPER, IDP_ADDR, IDP_HOST, LIVE_CASES, MEMBER_GW, PROFILE_URI, TUNNEL_GW6, idp_script
from .facts import build_facts, profile_facts, sha1_upper

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m replay.gateway` runs from here
# every program a case runs (the tests' prerequisites are this list too); gnutls-serv only for dtls_server cases
REQUIRED_TOOLS = ("openconnect", "dumpcap", "ip", "ethtool", "ping", "curl")

PROFILE_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<AnyConnectProfile xmlns="http://schemas.xmlsoap.org/encoding/">
  <ClientInitialization>
    <UseStartBeforeLogon UserControllable="true">false</UseStartBeforeLogon>
    <AutoUpdate UserControllable="false">{autoupdate}</AutoUpdate>
  </ClientInitialization>
  <ServerList>
    <HostEntry><HostName>acflow lab</HostName><HostAddress>{host}</HostAddress></HostEntry>
  </ServerList>
</AnyConnectProfile>
"""



def _second_server(lab: Lab, work: Path, name: str, address: str, script: dict, pki, keylog: Path):
    """Another scripted server in the gateway's namespace, at ``address`` (added to its veth), serving ``script``
    with ``pki``'s certificate; events in <name>-events.jsonl, its log <name>-gateway.log."""
    Script.from_dict(script).dump(work / f"{name}-script.json")
    lab.ns_run(lab.gw_ns, ["ip", "addr", "add", f"{address}/24", "dev", lab.gw_if])
    proc = lab.start(lab.gw_ns, f"{name}-gateway",
                     [sys.executable, "-m", "replay.gateway", "--serve", str(work / f"{name}-script.json"),
                      "--cert", str(pki.server_cert), "--key", str(pki.server_key), "--listen", address, "--port",
                      "443", "--keylog", str(keylog), "--events", str(work / f"{name}-events.jsonl")],
                     work / f"{name}-gateway.log", env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
    if proc.wait_for("[gw] listening", 15) is None:
        raise LabError(f"{name} server did not start: {proc.tail(15)}")
    return proc

def run_case(name: str, out_root: Path, *, keep_work: bool = False, verbose: bool = True) -> Path:
    """Run one case in fresh namespaces; write `<out_root>/<name>/`. Raises LabError if the run itself fails."""
    known = {**CASES, **LIVE_CASES}
    if name not in known:
        raise LabError(f"unknown case {name!r}; known: {', '.join(known)}")
    require_tools(REQUIRED_TOOLS)
    case = known[name]
    if case.dtls_server and case.dtls_server.get("kind", "gnutls-serv") == "gnutls-serv":
        require_tools(("gnutls-serv",), "Debian package gnutls-bin")
    say = print if verbose else (lambda *a, **k: None)
    work = work_dir(f"acflow-scripted-{name}-")
    act = Actions()

    try:
        pki = make_pki(work, HOSTNAME, GW_OUTER)
        previous = make_pki(work / "previous", HOSTNAME, GW_OUTER)  # a certificate the gateway does not present
        profile_current = PROFILE_TEMPLATE.format(autoupdate="false", host=HOSTNAME)
        profile_previous = PROFILE_TEMPLATE.format(autoupdate="true", host=HOSTNAME)
        bctx = {"previous_cert_sha1": previous.sha1_hex.upper(), "profile_current": profile_current,
                "profile_current_sha1": sha1_upper(profile_current.encode()),
                "profile_previous_sha1": sha1_upper(profile_previous.encode())}
        script = Script.from_dict(case.build(bctx))  # validate before anything starts
        script.dump(work / "script.json")
        vpnc = write_client_script(work)
        gw_keys, cl_keys, curl_keys = work / "gw-keys.log", work / "client-keys.log", work / "curl-keys.log"
        dtls_keys = work / "dtls-server-keys.log"
        member_keys, idp_keys = work / "member-keys.log", work / "idp-keys.log"
        events, capture = work / "gateway-events.jsonl", work / "capture.pcapng"
        extra: dict = {}

        with Lab() as lab:
            say(f"[scripted] {name}: namespaces {lab.gw_ns} / {lab.client_ns}")
            # (a big download arrives faster than dumpcap's default buffer drains: 64 MiB, as the bench's captures)
            dump = lab.start_capture(capture, work / "dumpcap.log",
                                     extra=("-q", "-B", "64") if case.download_uri else ("-q",),
                                     side=case.capture_side)
            if case.client_drops_udp_from:
                lab.drop_udp_from(lab.client_ns, case.client_drops_udp_from)
                act("client-drops-udp", sport=case.client_drops_udp_from)
            if case.dtls_server and case.dtls_server.get("kind") == "psk":
                # GnuTLS through ctypes (replay.dtls_psk_server): PSK-NEGOTIATE with RFC 6347 cookies; it reads
                # the gateway's key log and events (the PSK is the CSTP TLS session's exporter)
                ds = case.dtls_server
                dargv = [sys.executable, "-m", "replay.dtls_psk_server", "--listen", GW_OUTER, "--port",
                         str(ds["port"]), "--gateway-keylog", str(gw_keys), "--gateway-events", str(events),
                         "--psk-file", str(work / "dtls-psk.txt"), "--events", str(work / "dtls-events.jsonl")]
                dtls_srv = lab.start(lab.gw_ns, "dtls-psk-server", dargv, work / "dtls-server.log",
                                     env=dict(os.environ, SSLKEYLOGFILE=str(dtls_keys), PYTHONUNBUFFERED="1"),
                                     cwd=ROOT)
                if dtls_srv.wait_for("[dtls] listening", 10) is None:
                    raise LabError(f"replay.dtls_psk_server did not start: {dtls_srv.tail(10)}")
                listening = dtls_srv.wait_for("[dtls] listening", 1)
                extra["dtls_server"] = {"argv": ["python" if a == sys.executable else a.replace(f"{work}/", "")
                                                 for a in dargv],
                                        "version": listening[1].split("GnuTLS ")[-1].split(" ")[0] if listening
                                        else None, "kind": "psk", "port": ds["port"],
                                        "priority": "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK"}
                act("dtls-server-listening", port=ds["port"])
            elif case.dtls_server:
                ds = case.dtls_server
                dargv = ["gnutls-serv", "--udp", "--port", str(ds["port"]), "--x509certfile", str(pki.server_cert),
                         "--x509keyfile", str(pki.server_key), "--disable-client-cert", "--priority", ds["priority"],
                         *ds.get("options", [])]
                dtls_srv = lab.start(lab.gw_ns, "gnutls-serv", dargv, work / "dtls-server.log",
                                     env=dict(os.environ, SSLKEYLOGFILE=str(dtls_keys)))
                if dtls_srv.wait_for("listening on IPv4", 10) is None:
                    raise LabError(f"gnutls-serv did not start: {dtls_srv.tail(10)}")
                version = subprocess.run(["gnutls-serv", "--version"], capture_output=True, text=True,
                                         check=False).stdout.splitlines()
                extra["dtls_server"] = {"argv": [a.replace(f"{work}/", "") for a in dargv],  # paths as in <out>
                                        "version": version[0] if version else None,
                                        "port": ds["port"], "priority": ds["priority"]}
                act("dtls-server-listening", port=ds["port"])
            gw = lab.start(lab.gw_ns, "gateway",
                           [sys.executable, "-m", "replay.gateway", "--serve", str(work / "script.json"),
                            "--cert", str(pki.server_cert), "--key", str(pki.server_key), "--listen", GW_OUTER,
                            "--port", "443", "--keylog", str(gw_keys), "--events", str(events)],
                           work / "gateway.log", env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
            if gw.wait_for("[gw] listening", 15) is None:
                raise LabError(f"gateway did not start: {gw.tail(15)}")
            act("gateway-listening")
            member = idp = None
            if case.member is not None:  # a load-balancing member at MEMBER_GW, in the gateway's namespace
                member = _second_server(lab, work, "member", MEMBER_GW, case.member(bctx), pki, member_keys)
                act("member-gateway-listening", address=MEMBER_GW)
            browser_cas = [str(pki.ca_cert)]
            if case.idp is not None:  # SAML's identity provider at IDP_ADDR, its name in the lab's DNS
                ic = case.idp
                idp_pki = make_pki(work / "idp", IDP_HOST, IDP_ADDR, ca_name="acflow lab identity provider CA")
                if ic.get("trusted", True):
                    browser_cas.append(str(idp_pki.ca_cert))
                dns_argv = ["server", GW_OUTER, IDP_ADDR] if ic.get("dns", "answer") == "answer" else \
                    ["nxserver", GW_OUTER]
                dnsp = lab.start(lab.gw_ns, "dns", [sys.executable, "-m", "lab.dnsish", *dns_argv],
                                 work / "dns.log", env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
                if dnsp.wait_for("listening", 10) is None:
                    raise LabError(f"the lab's DNS server did not start: {dnsp.tail(10)}")
                lab.use_resolver(lab.client_ns, GW_OUTER)
                act("dns", how=dns_argv[0], server=GW_OUTER, name=IDP_HOST)
                idp = _second_server(lab, work, "idp", IDP_ADDR, idp_script(bctx), idp_pki, idp_keys)
                act("identity-provider-listening", address=IDP_ADDR, name=IDP_HOST,
                    trusted=ic.get("trusted", True))
                if ic.get("fault") == "drop":  # nothing reaches it: TCP to its port 443 dropped on its way in
                    lab.drop_tcp_to(lab.gw_ns, IDP_ADDR, 443)
                    act("path-fault", how="drop", address=IDP_ADDR, port=443)
            if case.portal_first:  # the user's browser at the web portal first (lab/scripted/browser.py)
                p = lab.ns_run(lab.client_ns, ["env", f"ACFLOW_BROWSER_CA={pki.ca_cert}",
                                               f"ACFLOW_BROWSER_KEYLOG={curl_keys}",
                                               f"ACFLOW_BROWSER_LOG={work / 'browser.log'}", f"PYTHONPATH={ROOT}",
                                               sys.executable, "-m", "lab.scripted.browser", "--portal",
                                               "https://vpn.acflow.test/", USER, USER_PASSWORD], check=False)
                act("portal-visited", returncode=p.returncode)
                if p.returncode != 0:
                    raise LabError(f"the portal visit failed: {p.stdout[-300:]} {p.stderr[-300:]}")
            base = openconnect_argv(pki.pin_sha256)
            cenv = dict(os.environ, SSLKEYLOGFILE=str(cl_keys))
            if case.csd_wrapper:  # the host scan: openconnect runs the package's CSD script (curl, its own TLS)
                base.append(f"--csd-wrapper={CSD_WRAPPER}")
                cenv["INSECURE"] = "false"
                act("csd-wrapper", script=CSD_WRAPPER)
            if case.external_browser:  # SAML: openconnect runs the lab's browser (lab/scripted/browser.py)
                browser = work / "browser.sh"
                browser.write_text(f"#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m lab.scripted.browser \"$@\"\n")
                browser.chmod(0o755)
                base.append(f"--external-browser={browser}")
                cenv.update(ACFLOW_BROWSER_CA=":".join(browser_cas), ACFLOW_BROWSER_KEYLOG=str(curl_keys),
                            ACFLOW_BROWSER_LOG=str(work / "browser.log"), ACFLOW_BROWSER_MODE=case.external_browser,
                            ACFLOW_BROWSER_USER=USER, ACFLOW_BROWSER_PASSWORD=USER_PASSWORD)
                act("external-browser", mode=case.external_browser)
            auth_args = ["-u", USER, "--passwd-on-stdin"]
            if case.flow == "split":
                cookie, authp = authenticate(lab, base, auth_args, work / "client-auth.log", cenv, USER_PASSWORD)
                act("authenticated")
                if case.downloader:
                    got = fetch_profile(lab, work, cookie, authp, case.download_uri or PROFILE_URI, curl_keys)
                    act("downloader-get", uri=got["uri"], status=got["status"])
                    status = got["status"]
                    extra["curl"] = {"uri": got["uri"], "status": int(status) if status and status.isdigit() else None,
                                     "exit_code": got["exit_code"]}
                client = start_openconnect(lab, base, work, cenv, vpnc, cookie=cookie)
            else:
                if case.passwords is not None:  # typed at each password prompt (openconnect reads stdin lines)
                    client = start_openconnect(lab, base, work, cenv, vpnc, auth_args=["-u", USER],
                                               password="\n".join(case.passwords))
                else:
                    client = start_openconnect(lab, base, work, cenv, vpnc, auth_args=auth_args)
            act("client-started", pid=client.pid)

            if not case.expect_connect and case.give_up_after:
                time.sleep(case.give_up_after)  # the user waits, then gives up
                act("user-gives-up")
                interrupt_client(client, act)
            elif not case.expect_connect:
                await_exit(client, act)
            else:
                wait_client_line(client, "CSTP connected", 30, "openconnect did not connect")
                act("cstp-connected")
                if client.wait_for("Configured as", case.wait_configured) is None:
                    act("not-configured", waited=case.wait_configured)
                wait_tun_configured(work)
                pings = []
                for family, count, size in case.pings:
                    target = TUNNEL_GW if family == 4 else TUNNEL_GW6
                    cmd = ["ping", f"-{family}", "-n", "-c", str(count), "-i", "0.3", "-W", "2", "-s", str(size),
                           target]
                    act("ping-start", family=family, count=count, size=size, target=target)
                    p = lab.ns_run(lab.client_ns, cmd, check=False)
                    m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
                    pings.append({"family": family, "size": size, "sent": int(m.group(1)) if m else 0,
                                  "received": int(m.group(2)) if m else 0, "returncode": p.returncode,
                                  "output": (p.stdout + p.stderr)[-300:]})
                    act("ping-done", family=family, returncode=p.returncode)
                extra["pings"] = pings
                if case.pause_client:
                    pc = case.pause_client
                    seen = gw.wait_for(pc["after_gateway_line"], pc.get("timeout", 15))
                    act("gateway-line-seen" if seen else "gateway-line-not-seen", wanted=pc["after_gateway_line"],
                        line=seen[1] if seen else None, line_time=seen[0] if seen else None)
                    time.sleep(0.5)
                    if pc.get("network"):  # asleep: the network gone too
                        lab.suspend_client(client, pc["seconds"], at_client=case.capture_side == "gateway",
                                           act=lambda what, pid=client.pid, seconds=pc["seconds"], **kw:
                                           act(what, pid=pid, seconds=seconds, **kw))
                        act("client-resumed", pid=client.pid)
                    else:
                        act("client-sigstop", pid=client.pid, seconds=pc["seconds"])
                        client.send_signal(signal.SIGSTOP)
                        time.sleep(pc["seconds"])
                        act("client-sigcont", pid=client.pid)
                        client.send_signal(signal.SIGCONT)
                if case.hold:
                    time.sleep(case.hold)
                exited = False
                if case.wait_exit:
                    act("wait-client-exit", seconds=case.wait_exit)
                    try:
                        client.proc.wait(case.wait_exit)
                        exited = True
                    except subprocess.TimeoutExpired:
                        act("client-still-running")
                if exited:
                    act("client-exited", returncode=client.proc.poll())
                else:
                    interrupt_client(client, act)
            time.sleep(1.0)
            exit_code = client.proc.poll()
            client.stop()
            gw.stop(signal.SIGTERM)
            for second in (member, idp):
                if second is not None:
                    second.stop(signal.SIGTERM)
            if case.dtls_server:
                dtls_srv.stop(signal.SIGTERM)
            time.sleep(0.5)
            dump.stop(signal.SIGTERM)

        # --- outputs ---------------------------------------------------------------------------------------
        out = out_root / name
        seconds = [(work / f"{n}-events.jsonl", a) for n, a in (("member", MEMBER_GW), ("idp", IDP_ADDR))]
        if any(f.exists() for f, _ in seconds):  # one record of every server, in time order
            main = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] \
                if events.exists() else []
            for f, address in seconds:
                if f.exists():
                    evs2 = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
                    for e in evs2:
                        e["gateway"] = address
                    main += evs2
            merged = sorted(main, key=lambda e: e.get("t", 0))
            events.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in merged))
        collect_outputs(work, out, keylogs=(gw_keys, member_keys, idp_keys, cl_keys, curl_keys, dtls_keys),
                        files=("client.log", "client-auth.log", "gateway.log", "curl.log", "script.json",
                               "gateway-events.jsonl", "server-key.pem", "server-cert.pem", "ca.pem",
                               "downloaded-profile.xml", "script-ipv6.log", "dtls-server.log", "dtls-events.jsonl",
                               "browser.log", "member-gateway.log", "member-script.json", "idp-gateway.log",
                               "idp-script.json", "dns.log"))
        evs = [json.loads(l) for l in events.read_text().splitlines() if l.strip()] if events.exists() else []
        if (work / "dtls-events.jsonl").exists():
            extra["dtls_events"] = [json.loads(l) for l in (work / "dtls-events.jsonl").read_text().splitlines()
                                    if l.strip()]
        if (work / "script-ipv6.log").exists():
            kv = dict(l.split("=", 1) for l in (work / "script-ipv6.log").read_text().splitlines() if "=" in l)
            extra["tun_ipv6"] = {"rc": kv.get("rc"), "output": kv.get("output", ""),
                                 "route_rc": kv.get("route_rc"), "route_output": kv.get("route_output", "")}
        if case.downloader:
            dl = work / "downloaded-profile.xml"
            extra["profile"] = {**profile_facts(evs, case.download_uri or PROFILE_URI),
                                "downloaded_sha1": sha1_upper(dl.read_bytes()) if dl.exists() else None,
                                "curl_status": (extra.get("curl") or {}).get("status"),
                                "curl_exit_code": (extra.get("curl") or {}).get("exit_code")}
        if case.dtls_server:
            extra["dtls_server"]["keylog_lines"] = (len([l for l in dtls_keys.read_text().splitlines() if l.strip()])
                                                    if dtls_keys.exists() else 0)
        listening = next((e for e in evs if e["type"] == "listening"), {})
        extra["cert"] = {"presented": listening.get("server_cert_sha1"), "advertised": next(
            (m.group(1) for e in evs if e["type"] == "response"
             for m in [re.search(r"<server-cert-hash>([^<]*)</server-cert-hash>", e.get("body", ""))] if m), None)}
        facts = build_facts(case, script, out, evs, list(act), extra, exit_code, GW_OUTER, CLIENT_OUTER)
        (out / "facts.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
        failed = [e["effect"] for e in facts["expected"] if not e["observed"]]
        say(f"[scripted] {name}: wrote {out}" + (f"; NOT observed: {failed}" if failed else "; all effects observed"))
        return out
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def run_cases(names: list[str], out: Path, *, keep_work: bool = False) -> int:
    """Run the cases `names` (or "all") into `out`/<case>/: 0 if every run worked and showed all its expected
    effects, 1 otherwise (or bad names, or not root), 130 interrupted."""
    def run_one(name: str) -> bool:
        facts = json.loads((run_case(name, out, keep_work=keep_work) / "facts.json").read_text())
        return all(e["observed"] for e in facts["expected"])

    # ("all": the cases whose captures are in samples/; a live-only case by its name)
    return run_each(names, CASES if names == ["all"] else {**CASES, **LIVE_CASES}, run_one, tag="scripted",
                    kind="case")
