"""Bulk captures for the benchmark: one real openconnect ↔ ocserv session carrying a sustained inner TCP stream.

Built from the lab's public pieces (`lab/`: namespaces, PKI, the gateway's files and start, the client's
vpnc-script and arguments, key log merging), but runs its own session: `lab.runner.run_scenario` has no hook for a
traffic generator, runs openconnect with `-vvv --dump-http-traffic` and ocserv with `-d 9` (a log line per packet
at these rates) and builds facts.json from those logs, which is not wanted here.

Two modes:

* ``dtls``: the inner stream goes over DTLS (PSK-NEGOTIATE, DTLS 1.2), the normal case;
* ``cstp``: UDP to the gateway's port 443 is dropped by nftables in the gateway namespace (exactly as the lab's
  `dtls-blocked` scenario does), so DTLS never comes up and everything is carried by CSTP over TLS 1.3.

The inner stream is a paced TCP bulk transfer (a Python sender in the client namespace, a receiver in the
gateway namespace, both over the tunnel: 198.19.0.50 → 198.19.0.1), so the capture holds both full-size data
records and small ACK records in both directions. Output per mode, in `bench/cache/<mode>/`: capture.pcapng,
keys.log (SSLKEYLOGFILE of both peers, merged), session.json (what was sent, when, how).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

INNER_PORT = 5201
TUNNEL_GW = "198.19.0.1"

# Paced sender: sends `rate` bytes/s of incompressible data for `duration` s, then closes and waits for the
# receiver's close. Prints one JSON line with what it did.
SENDER = r"""
import json, os, socket, sys, time
host, port, rate, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
for attempt in range(50):
    try:
        s = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        time.sleep(0.2)
else:
    print(json.dumps({"error": "cannot connect"}), flush=True)
    sys.exit(1)
s.settimeout(30)
buf = os.urandom(1 << 16)
mv = memoryview(buf)
chunk = 16384
start = time.monotonic()
sent = 0
while True:
    now = time.monotonic() - start
    if now >= duration:
        break
    ahead = sent - rate * now
    if ahead > 0:
        time.sleep(min(0.005, ahead / rate))
        continue
    off = sent % len(buf)
    n = min(chunk, len(buf) - off)
    s.sendall(mv[off:off + n])
    sent += n
s.shutdown(socket.SHUT_WR)
while s.recv(4096):
    pass
s.close()
print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)
"""

RECEIVER = r"""
import json, socket, sys, time
port = int(sys.argv[1])
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port))
ls.listen(1)
print("LISTENING", flush=True)
c, peer = ls.accept()
got = 0
start = time.monotonic()
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    got += len(d)
c.close()
print(json.dumps({"received": got, "peer": peer[0], "seconds": round(time.monotonic() - start, 3)}), flush=True)
"""

REQUIRED = ("ocserv", "openconnect", "dumpcap", "ip", "nft", "openssl", "ethtool")


class BenchLabError(RuntimeError):
    pass


def say(*a) -> None:
    print("[bench]", *a, flush=True)


def make_capture(mode: str, out_dir: Path, *, duration: float, rate_mbit: float) -> Path:
    """Run one bulk session in mode 'dtls' or 'cstp'; write capture.pcapng, keys.log, session.json to out_dir."""
    if mode not in ("dtls", "cstp"):
        raise ValueError(mode)
    if os.geteuid() != 0:
        raise BenchLabError("making the bulk captures needs root (network namespaces); run as root, or use "
                            "--quick to benchmark the committed baseline sample only")
    # imported here: the lab (source tree only) needs root-only tools and is not needed by --quick
    from lab.client import (
        USER,
        interrupt_client,
        openconnect_argv,
        start_openconnect,
        wait_client_line,
        wait_tun_configured,
        write_client_script,
    )
    from lab.netns import Lab, missing_tools
    from lab.runner import prepare_gateway, start_gateway
    from lab.runs import merge_keylogs, work_dir
    from lab.scenarios import PRIO_TLS13, Scenario

    missing = missing_tools(REQUIRED)
    if missing:
        raise BenchLabError("missing tools: " + ", ".join(missing))
    sc = Scenario(f"bench-{mode}", "benchmark bulk session", gateway={"tls-priorities": PRIO_TLS13},
                  block_udp=(mode == "cstp"), wait_dtls=(mode == "dtls"), pings=0)
    work = work_dir(f"acflow-bench-{mode}-")
    log: dict = {"mode": mode, "duration_target_s": duration, "rate_target_mbit": rate_mbit, "events": []}

    def ev(what: str, **extra) -> None:
        log["events"].append({"time": round(time.time(), 6), "event": what, **extra})

    try:
        pki = prepare_gateway(sc, work)
        script = write_client_script(work)
        gw_keys, cl_keys = work / "gw-keys.log", work / "client-keys.log"
        capture = work / "capture.pcapng"

        with Lab(tag=f"b{os.getpid() % 10000}") as lab:
            say(f"{mode}: namespaces {lab.gw_ns} / {lab.client_ns}")
            if sc.block_udp:  # as lab/runner.py does for dtls-blocked
                lab.block_udp_443()
                ev("udp-blocked")
            dump = lab.start_capture(capture, work / "dumpcap.log", extra=("-B", "64"))
            gw = start_gateway(lab, work, gw_keys, debug=1)
            recv = lab.start(lab.gw_ns, "receiver", [sys.executable, "-c", RECEIVER, str(INNER_PORT)],
                             work / "receiver.log")
            if recv.wait_for("LISTENING", 10) is None:
                raise BenchLabError("inner receiver did not start: " + " | ".join(l for _, l in recv.lines()))
            client = start_openconnect(lab, openconnect_argv(pki.pin_sha256, debug=False), work,
                                       dict(os.environ, SSLKEYLOGFILE=str(cl_keys)), script,
                                       auth_args=["-u", USER, "--passwd-on-stdin"])
            peers = ((gw, "ocserv (gateway)"), (client, "openconnect (client)"))
            wait_client_line(client, "CSTP connected", 30, "openconnect did not connect", peers)
            ev("cstp-connected")
            if mode == "dtls":
                wait_client_line(client, "Established DTLS connection", 20, "DTLS did not come up", peers)
                ev("dtls-established")
            wait_tun_configured(work)
            time.sleep(0.5)
            say(f"{mode}: tunnel up; sending {rate_mbit:g} Mbit/s of inner TCP for {duration:g} s")
            ev("stream-start")
            send = lab.start(lab.client_ns, "sender",
                             [sys.executable, "-c", SENDER, TUNNEL_GW, str(INNER_PORT), str(rate_mbit * 1e6 / 8),
                              str(duration)], work / "sender.log")
            send.proc.wait(duration + 120)
            recv.proc.wait(30)
            ev("stream-done")
            log["sender"] = _last_json(send.lines())
            log["receiver"] = _last_json(recv.lines())
            if mode == "dtls" and any("DTLS" in l and ("dead peer" in l or "fail" in l.lower())
                                      for _, l in client.lines()):
                log["warning"] = "DTLS trouble during the stream; see client.log"
            time.sleep(0.5)
            interrupt_client(client, ev)
            time.sleep(1.0)
            client.stop()
            gw.stop(signal.SIGTERM)
            time.sleep(0.5)
            dump.stop(signal.SIGTERM)
            stats = [l for _, l in dump.lines() if "received/dropped" in l]
            log["dumpcap"] = stats[-1].strip() if stats else None
            m = re.search(r"(\d+)/(\d+)", stats[-1]) if stats else None
            if m:
                log["dumpcap_received"], log["dumpcap_dropped"] = int(m.group(1)), int(m.group(2))
        if not log.get("sender") or "sent" not in log["sender"]:
            raise BenchLabError(f"{mode}: the inner sender did not finish: {log.get('sender')}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(capture), out_dir / "capture.pcapng")
        merge_keylogs((cl_keys, gw_keys), out_dir / "keys.log")
        for f in ("client.log", "gateway.log", "ocserv.conf"):
            if (work / f).exists():
                shutil.copy(work / f, out_dir / f)
        (out_dir / "session.json").write_text(json.dumps(log, indent=2) + "\n")
        return out_dir / "capture.pcapng"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _last_json(lines: list[tuple[float, str]]) -> dict | None:
    for _, line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def make_many_clients(out_dir: Path, *, clients: int = 8, duration: float = 10.0, rate_mbit: float = 4.0) -> Path:
    """A gateway-side capture of ``clients`` openconnect clients at once against one ocserv, each in its own
    namespace and address (198.18.0.2, 198.18.0.11, .12…) with DTLS up and its own paced inner TCP stream
    (``rate_mbit`` each) to a receiver of its own in the gateway namespace; captured on the gateway's bridge.
    Writes capture.pcapng, keys.log (every client's and the gateway's secrets), session.json to out_dir."""
    if os.geteuid() != 0:
        raise BenchLabError("making the many-client capture needs root (network namespaces)")
    import subprocess  # noqa: PLC0415

    from lab.client import URL, USER, USER_PASSWORD, openconnect_argv, write_client_script
    from lab.netns import Lab, missing_tools
    from lab.runner import prepare_gateway, start_gateway
    from lab.runs import merge_keylogs, work_dir
    from lab.scenarios import PRIO_TLS13, Scenario

    missing = missing_tools(REQUIRED)
    if missing:
        raise BenchLabError("missing tools: " + ", ".join(missing))
    sc = Scenario("bench-clients", "benchmark: many clients on one gateway",
                  gateway={"tls-priorities": PRIO_TLS13, "max-clients": "0", "max-same-clients": "0"}, pings=0)
    work = work_dir("acflow-bench-clients-")
    log: dict = {"mode": "gateway", "clients": clients, "duration_target_s": duration, "rate_target_mbit": rate_mbit,
                 "events": []}
    extra_ns: list[str] = []

    def sh(*cmd: str) -> None:
        subprocess.run(list(cmd), check=True, capture_output=True)

    try:
        pki = prepare_gateway(sc, work)
        gw_keys = work / "gw-keys.log"
        capture = work / "capture.pcapng"
        with Lab(tag=f"m{os.getpid() % 10000}") as lab:
            lab.add_other_servers(())  # moves the gateway's address to a bridge the clients' veths join
            br = f"acbr{lab.tag}"[:15]
            namespaces = [lab.client_ns]
            for k in range(1, clients):
                ns = f"acflow-c{k}-{lab.tag}"
                sh("ip", "netns", "add", ns)
                extra_ns.append(ns)
                g_if, c_if = f"acg{k}x{lab.tag}"[:15], f"acc{k}x{lab.tag}"[:15]
                sh("ip", "link", "add", g_if, "netns", lab.gw_ns, "type", "veth", "peer", "name", c_if, "netns", ns)
                lab.ns_run(lab.gw_ns, ["ip", "link", "set", g_if, "master", br])
                lab.ns_run(ns, ["ip", "addr", "add", f"198.18.0.{10 + k}/24", "dev", c_if])
                for n, dev in ((lab.gw_ns, g_if), (ns, c_if), (ns, "lo")):
                    lab.ns_run(n, ["ip", "link", "set", dev, "up"])
                    if dev != "lo":
                        lab.ns_run(n, ["ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                                       "gro", "off"], check=False)
                namespaces.append(ns)
            dump = lab.start(lab.gw_ns, "dumpcap", ["dumpcap", "-q", "-B", "64", "-i", br, "-w", str(capture),
                                                    "-s", "0"], work / "dumpcap.log")
            deadline = time.time() + 10
            while not capture.exists() and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            gw = start_gateway(lab, work, gw_keys, debug=1)
            procs = []
            for k, ns in enumerate(namespaces):
                wk = work / f"client{k}"
                wk.mkdir()
                os.chmod(wk, 0o755)
                script = write_client_script(wk)
                recv = lab.start(lab.gw_ns, f"receiver{k}", [sys.executable, "-c", RECEIVER, str(INNER_PORT + k)],
                                 wk / "receiver.log")
                client = lab.start(ns, f"openconnect{k}",
                                   [*openconnect_argv(pki.pin_sha256, debug=False), "-u", USER, "--passwd-on-stdin",
                                    "-s", str(script), "-i", "tun0", URL], wk / "client.log",
                                   env=dict(os.environ, SSLKEYLOGFILE=str(wk / "keys.log")),
                                   stdin_data=(USER_PASSWORD + "\n").encode())
                procs.append((k, ns, wk, recv, client))
            for k, _ns, wk, recv, client in procs:
                for needle in ("CSTP connected", "Established DTLS connection"):
                    if client.wait_for(needle, 60) is None:
                        gw.check_running("ocserv (gateway)")
                        raise BenchLabError(f"client {k}: no '{needle}': {client.tail(10)}")
                deadline = time.time() + 15
                while not (wk / "script-connect.env").exists() and time.time() < deadline:
                    time.sleep(0.1)
                if recv.wait_for("LISTENING", 10) is None:
                    raise BenchLabError(f"receiver {k} did not start")
            log["events"].append({"time": round(time.time(), 6), "event": "all-connected"})
            time.sleep(0.5)
            say(f"clients: {clients} tunnels up; {rate_mbit:g} Mbit/s of inner TCP each for {duration:g} s")
            senders = [lab.start(ns, f"sender{k}", [sys.executable, "-c", SENDER, TUNNEL_GW, str(INNER_PORT + k),
                                                     str(rate_mbit * 1e6 / 8), str(duration)], wk / "sender.log")
                       for k, ns, wk, _r, _c in procs]
            for s in senders:
                s.proc.wait(duration + 120)
            log["senders"] = [_last_json(s.lines()) for s in senders]
            time.sleep(0.5)
            for _k, _ns, _wk, _r, client in procs:
                client.interrupt(15)
            time.sleep(1.0)
            gw.stop(signal.SIGTERM)
            time.sleep(0.5)
            dump.stop(signal.SIGTERM)
            stats = [line for _, line in dump.lines() if "received/dropped" in line]
            log["dumpcap"] = stats[-1].strip() if stats else None
        if not all(s and "sent" in s for s in log["senders"]):
            raise BenchLabError(f"clients: an inner sender did not finish: {log['senders']}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(capture), out_dir / "capture.pcapng")
        merge_keylogs([work / f"client{k}" / "keys.log" for k in range(clients)] + [gw_keys], out_dir / "keys.log")
        (out_dir / "session.json").write_text(json.dumps(log, indent=2) + "\n")
        return out_dir / "capture.pcapng"
    finally:
        for ns in extra_ns:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
