"""Run one lab scenario: ocserv in one namespace, openconnect in the other, dumpcap on the client's veth.

Writes into `<out>/<scenario>/`: capture.pcapng, keys.log (SSLKEYLOGFILE of both peers, merged), client.log
(openconnect -vvv --dump-http-traffic, each line stamped with the epoch time it was read), gateway.log
(ocserv -d 9, stamped the same way), script.log (one line per call of the client's vpnc-script by openconnect:
time, reason, address), server-key.pem / server-cert.pem / ca.pem, and facts.json (ground truth taken from the
peers' logs and the lab's own actions; see facts.py).
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

from .client import (
    HOSTNAME,
    TUNNEL_GW,
    TUNNEL_NET,
    URL,
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
from .facts import build_facts
from .netns import (
    CLIENT_OUTER,
    GW_OUTER,
    NAT_OUTER,
    NAT_UDP_OUTER,
    ROUTER_OUTER,
    UNDERLAY_CLIENT,
    UNDERLAY_GW,
    VXLAN_VNI,
    Lab,
    LabError,
    StampedProcess,
    require_tools,
)
from .othertraffic import OTHER_NS_ADDRESSES
from .othertraffic import run_flows as run_other_flows
from .othertraffic import start_servers as start_other_servers
from .pki import LabPKI, make_client_pki, make_pki
from .portal import probe as portal_probe
from .portal import start as start_portal
from .runs import Actions, collect_outputs, work_dir
from .scenarios import SCENARIOS, Scenario

ROOT = Path(__file__).resolve().parent.parent  # the checkout (lab.proxy runs from it)
PROXY_PORT = 3128  # the lab's HTTP proxy (scenario proxy=True), in the gateway namespace
INSPECT_PORT = 8443  # the lab's TLS-inspecting middlebox (scenario tls_inspection=True), in the gateway namespace

# every program a lab scenario runs (the tests' prerequisites are this list too)
REQUIRED_TOOLS = ("ocserv", "openconnect", "dumpcap", "ip", "nft", "openssl", "ping", "ethtool", "ss", "curl")
INSTALL_HINT = ("install with: apt-get install ocserv openconnect tshark nftables openssl iputils-ping ethtool "
                "iproute2 curl")


def check_tools() -> None:
    require_tools(REQUIRED_TOOLS, INSTALL_HINT)


def passwd_hash(password: str) -> str:
    return subprocess.run(["openssl", "passwd", "-6", "-salt", "acflowlab", password],
                          capture_output=True, text=True, check=True).stdout.strip()


def _subst(value, work: Path, pki: LabPKI) -> str:
    """Tokens for the run's own paths in gateway values and client arguments: @CA_CERT@ (the lab CA),
    @PASSWD@ (the plain passwd file), @CLIENT_CA@ (the root of the client PKI of `Scenario.client_cert`)."""
    return (str(value).replace("@CA_CERT@", str(pki.ca_cert)).replace("@PASSWD@", str(work / "ocpasswd"))
            .replace("@CLIENT_CA@", str(work / "client-root-ca.pem")))


def ocserv_conf(sc: Scenario, work: Path, pki: LabPKI) -> str:
    """ocserv.conf for `sc` (its `gateway` overrides applied) with the run's files in `work`."""
    conf: dict[str, object] = {
        "auth": f'"plain[passwd={work / "ocpasswd"}]"',
        "listen-host": GW_OUTER,
        "tcp-port": "443",
        "udp-port": "443",
        "run-as-user": "nobody",
        "run-as-group": "nogroup",
        "socket-file": str(work / "ocserv.sock"),
        "isolate-workers": "false",
        "server-cert": str(pki.server_cert),
        "server-key": str(pki.server_key),
        "max-clients": "16",
        "max-same-clients": "4",
        "rate-limit-ms": "0",
        "keepalive": "30",
        "dpd": "20",
        "mobile-dpd": "60",
        "switch-to-tcp-timeout": "25",
        "try-mtu-discovery": "true",
        "auth-timeout": "240",
        "cookie-timeout": "300",
        "deny-roaming": "false",
        "rekey-time": "172800",
        "rekey-method": "ssl",
        "use-occtl": "false",
        "pid-file": str(work / "ocserv.pid"),
        "log-level": "3",
        "device": "vpns",
        "predictable-ips": "true",
        "default-domain": "acflow.test",
        "ipv4-network": TUNNEL_NET,
        "ipv4-netmask": "255.255.255.0",
        "dns": TUNNEL_GW,
        "route": "198.19.0.0/255.255.255.0",
        "cisco-client-compat": "true",
        "dtls-legacy": "true",
        "tls-priorities": '"NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"',
    }
    if sc.downloader:
        profile = work / "acflow-profile.xml"
        profile.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<AnyConnectProfile xmlns="http://schemas.xmlsoap.org/encoding/">\n'
            '  <ClientInitialization><UseStartBeforeLogon UserControllable="true">false</UseStartBeforeLogon>'
            '</ClientInitialization>\n'
            '  <ServerList><HostEntry><HostName>acflow lab</HostName><HostAddress>vpn.acflow.test</HostAddress>'
            '</HostEntry></ServerList>\n</AnyConnectProfile>\n')
        conf["user-profile"] = profile.name  # relative: ocserv runs in `work`
    for key, value in sc.gateway.items():
        if value is None:  # (a setting the scenario takes away, e.g. udp-port: no DTLS)
            conf.pop(key, None)
            continue
        if key == "tls-priorities":
            value = f'"{value}"'
        conf[key] = [_subst(v, work, pki) for v in value] if isinstance(value, list) else _subst(value, work, pki)
    lines = []
    for key, value in conf.items():
        for v in (value if isinstance(value, list) else [value]):
            lines.append(f"{key} = {v}")
    return "\n".join(lines) + "\n"


# -- steps: what a scenario does once the tunnel is up ----------------------------------------------------------

NAT_TABLE = "acflow_nat"  # client namespace: source NAT of the client's UDP


def _nft(lab: Lab, ns: str, *args: str) -> None:
    lab.ns_run(ns, ["nft", *args])


def _udp_sockets(lab: Lab, ns: str) -> list[dict]:
    """The client's UDP sockets towards the gateway's port 443, as the kernel lists them (`ss -uanp`)."""
    out = lab.ns_run(ns, ["ss", "-H", "-uanp", "dst", f"{GW_OUTER}:443"], check=False).stdout
    socks = []
    for line in out.splitlines():
        parts = line.split()
        local = next((p for p in parts if p.startswith(f"{CLIENT_OUTER}:")), None)
        if local:
            socks.append({"local": local, "port": int(local.rsplit(":", 1)[1]), "process": parts[-1]})
    return socks


def _conntrack_udp(lab: Lab, ns: str) -> list[dict]:
    """The client namespace's UDP conntrack entries to the gateway's 443: original and translated source port."""
    out = lab.ns_run(ns, ["cat", "/proc/net/nf_conntrack"], check=False).stdout
    entries = []
    for line in out.splitlines():
        if " udp " not in f" {line} ":
            continue
        kv = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if len(kv) < 8:
            continue
        orig, reply = dict(kv[:4]), dict(kv[4:8])
        if orig.get("dst") == GW_OUTER and orig.get("dport") == "443":
            entries.append({"original_sport": int(orig["sport"]), "translated_sport": int(reply["dport"])})
    return entries


RESET_TABLE = "acflowreset"  # the "reset-once" step's nftables table (gateway namespace)
ROUTER_RESET_TABLE = "acflowrtreset"  # the "router-reset" step's (router namespace)

#: Scenario.router's rules: (chain, nftables rule) of the router's table (Lab.router_rule); "{n}" takes the number
ROUTER_RULES = {
    "nat": ("rtpost", ("ip", "saddr", CLIENT_OUTER, "counter", "snat", "to", NAT_OUTER)),
    # a carrier-grade NAT without paired pooling: the client's TCP and UDP leave from two addresses
    "nat-tcp": ("rtpost", ("ip", "saddr", CLIENT_OUTER, "meta", "l4proto", "tcp", "counter", "snat", "to", NAT_OUTER)),
    "nat-udp": ("rtpost", ("ip", "saddr", CLIENT_OUTER, "meta", "l4proto", "udp", "counter", "snat", "to",
                           NAT_UDP_OUTER)),
    "drop-udp": ("rtforward", ("ip", "daddr", GW_OUTER, "udp", "dport", "443", "counter", "drop")),
    "loss": ("rtforward", ("numgen", "random", "mod", "100", "<", "{n}", "counter", "drop")),
    "mss": ("rtforward", ("tcp", "flags", "syn", "tcp", "option", "maxseg", "size", "set", "{n}", "counter")),
}

STEP_OPS = {
    "block-all": "nftables in the gateway namespace (netdev ingress+egress of its veth) silently drops every IPv4 "
                 "packet from and to the client (TCP, UDP, ICMP)",
    "unblock": "delete that nftables table",
    "stop-client": "openconnect stopped (SIGSTOP): a VPN client that hangs while the computer goes on",
    "continue-client": "openconnect continued (SIGCONT)",
    "suspend-client": "(seconds): a laptop that sleeps: all IPv4 between client and gateway dropped (as block-all, "
                      "on the client's veth when the capture is the gateway's) and openconnect stopped (SIGSTOP) "
                      "for that long, then the block lifted and openconnect continued (SIGCONT)",
    "client-exits": "(timeout): wait until openconnect exits by itself (the gateway ended the session); the scenario "
                    "then ends without the user's DISCONNECT",
    "wait-client": "(regex, timeout): wait until openconnect logs a line matching regex (after the last step); "
                   "fail the scenario if it does not within timeout seconds",
    "capture-stall": "(count): the capturing dumpcap stopped (SIGSTOP) while a flood of count 1000-byte pings crosses "
                     "the tunnel (ping -f), then continued: its capture buffer overflows and the kernel drops packets "
                     "the network carried — a busy capturing host; dumpcap's Interface Statistics count them",
    "sleep": "(seconds)",
    "ping": "(count): small pings through the tunnel",
    "kill-tcp": "ss -K in the client namespace: abort openconnect's TCP connection to the gateway (RST)",
    "snat-udp": "(ports): nftables SNAT in the client namespace of UDP to the gateway's 443 to "
                "198.18.0.2:ports",
    "move-client": "(address): the client's address on its veth changes to this one (another address in "
                   "198.18.0.0/24; the old one removed): a laptop that roams to another network",
    "reset-once": "nftables in the gateway namespace answers TCP to port 443 with a TCP reset (a device in between "
                  "resetting the connection: ocserv never sees the packet, nor sends the reset)",
    "unreset": "delete that nftables table",
    "other-traffic": "unrelated flows (lab.othertraffic.FLOWS: TLS, DTLS, DNS, HTTP to the other servers' "
                     "namespace) one after the other, while pings run through the tunnel",
    "inner-route": "(kind, address): a route of that kind in the gateway namespace for an address inside the tunnel's "
                   "routes (ip route blackhole: dropped without a word, an ACL's drop; prohibit: ICMP "
                   "administratively prohibited, an ACL's reject), forwarding on",
    "inner-tcp": "(address, port): a TCP connection attempt from the client through the tunnel (curl, 4 s)",
    "inner-dns": "(server, name): a DNS A query from the client through the tunnel (lab.dnsish client, 2 s)",
    "lookup": "(name): the client namespace's resolver asked for the name's IPv4 address (getent ahostsv4)",
    "tunnel-dns": "(address): a DNS server at the tunnel's DNS address (198.19.0.1, in the gateway namespace once the "
                  "tunnel is up) answering every A query with this address (lab.dnsish server)",
    "router-reset": "nftables in the router's namespace (Scenario.router) answers the client's TCP to the gateway's "
                    "port 443 with a TCP reset in the gateway's name (a firewall in between resetting the connection; "
                    "the gateway never sees the packet, nor sends the reset)",
    "router-unreset": "delete that nftables table",
    "client-route": "(prefix): a route in the client namespace for this prefix (or 'default') via the gateway's outer "
                    "address over the client's own interface — the route of a home or hotel network, more specific "
                    "than the tunnel's, or the machine's default route",
}


def _run_steps(sc: Scenario, lab: Lab, client, act, ping, other, work: Path, dump=None) -> None:
    cursor = len(client.lines())  # wait-client looks at the client's lines from here on
    for step in sc.steps:
        op, args = step[0], step[1:]
        if op not in STEP_OPS:
            raise LabError(f"scenario {sc.name}: unknown step {op!r}; known: {', '.join(STEP_OPS)}")
        if op == "block-all":
            lab.block_all()
            act("traffic-blocked", scope="all IPv4 between client and gateway, both ways", namespace="gateway",
                how=f"nftables netdev ingress+egress drop on {lab.gw_if}")
            cursor = len(client.lines())
        elif op == "stop-client":
            client.proc.send_signal(signal.SIGSTOP)
            act("client-stopped", how="openconnect SIGSTOP (the machine and its network go on)")
        elif op == "continue-client":
            client.proc.send_signal(signal.SIGCONT)
            act("client-continued")
            cursor = len(client.lines())
        elif op == "suspend-client":
            # A laptop that sleeps: its network goes (nothing reaches it, it sends nothing) and its programs
            # stop; on waking the network comes back first, then the programs go on where they were.
            dev = lab.suspend_client(client.proc, args[0], at_client=sc.capture_side == "gateway",
                                     act=lambda what, seconds=args[0], **kw: act(what, seconds=seconds, **kw))
            act("client-resumed", device=dev)
            cursor = len(client.lines())
        elif op == "unblock":
            lab.unblock_all()
            act("traffic-unblocked", namespace="gateway")
            cursor = len(client.lines())
        elif op == "client-exits":
            await_exit(client, act, args[0])
            if client.proc.poll() is None:
                raise LabError(f"scenario {sc.name}: openconnect did not exit within {args[0]:.0f} s (the gateway "
                               f"did not end the session); last lines: {client.tail(6)}")
        elif op == "wait-client":
            regex, timeout = args
            hit = client.wait_for_re(regex, timeout, start=cursor)
            if hit is None:
                raise LabError(f"scenario {sc.name}: openconnect did not log /{regex}/ within {timeout} s; last "
                               "lines: " + " | ".join(l for _, l in client.lines()[-12:]))
            index, ts, line = hit
            act("client-logged", pattern=regex, line=line, line_time=ts)
            cursor = index + 1
        elif op == "reset-once":
            _nft(lab, lab.gw_ns, "add", "table", "inet", RESET_TABLE)
            _nft(lab, lab.gw_ns, "add", "chain", "inet", RESET_TABLE, "in",
                 "{ type filter hook input priority -10 ; }")
            _nft(lab, lab.gw_ns, "add", "rule", "inet", RESET_TABLE, "in", "ip", "saddr", CLIENT_OUTER, "tcp", "dport",
                 "443", "reject", "with", "tcp", "reset")
            act("tcp-reset-rule", namespace="gateway", how="nftables input: reject with tcp reset")
            cursor = len(client.lines())
        elif op == "router-reset":
            _nft(lab, lab.router_ns, "add", "table", "ip", ROUTER_RESET_TABLE)
            _nft(lab, lab.router_ns, "add", "chain", "ip", ROUTER_RESET_TABLE, "rtforward",
                 "{ type filter hook forward priority -10 ; }")
            _nft(lab, lab.router_ns, "add", "rule", "ip", ROUTER_RESET_TABLE, "rtforward", "ip", "saddr", CLIENT_OUTER,
                 "tcp", "dport", "443", "counter", "reject", "with", "tcp", "reset")
            act("tcp-reset-rule", namespace="router", how="nftables forward: reject with tcp reset")
            cursor = len(client.lines())
        elif op == "router-unreset":
            act("tcp-reset-rule-removed", namespace="router", counters=lab.router_counters(ROUTER_RESET_TABLE))
            _nft(lab, lab.router_ns, "delete", "table", "ip", ROUTER_RESET_TABLE)
        elif op == "unreset":
            _nft(lab, lab.gw_ns, "delete", "table", "inet", RESET_TABLE)
            act("tcp-reset-rule-removed", namespace="gateway")
        elif op == "capture-stall":
            if dump is None:
                raise LabError(f"scenario {sc.name}: capture-stall needs the capture's dumpcap")
            dump.proc.send_signal(signal.SIGSTOP)
            act("capture-stopped", how="dumpcap SIGSTOP (its buffer fills, the kernel drops what does not fit)")
            try:
                p = lab.ns_run(lab.client_ns, ["ping", "-n", "-f", "-c", str(args[0]), "-s", "1000", "-W", "1",
                                               TUNNEL_GW], check=False)
                act("ping-flood-done", count=args[0], size=1000, returncode=p.returncode,
                    output=(p.stdout + p.stderr)[-400:])
            finally:
                dump.proc.send_signal(signal.SIGCONT)
                act("capture-continued")
            time.sleep(1.0)  # (dumpcap catches up with what its buffer held)
        elif op == "sleep":
            time.sleep(args[0])
        elif op == "ping":
            ping(args[0])
        elif op == "kill-tcp":
            before = len(client.lines())
            issued = time.time()
            p = lab.ns_run(lab.client_ns, ["ss", "-H", "-K", "-tn", "dst", f"{GW_OUTER}:443"], check=False)
            killed = [l.split() for l in p.stdout.splitlines() if l.strip()]
            if p.returncode != 0 or not killed:
                raise LabError(f"ss -K killed no TCP connection to {GW_OUTER}:443 (rc {p.returncode}): "
                               f"{p.stderr.strip() or p.stdout.strip()}")
            act("tcp-killed", namespace="client", tool="ss -K", issued=issued,
                sockets=[next((x for x in k if x.startswith(CLIENT_OUTER + ":")), " ".join(k)) for k in killed])
            cursor = before
        elif op == "snat-udp":
            ports = args[0]
            socks = _udp_sockets(lab, lab.client_ns)
            _nft(lab, lab.client_ns, "add", "table", "ip", NAT_TABLE)
            _nft(lab, lab.client_ns, "add", "chain", "ip", NAT_TABLE, "post",
                 "{ type nat hook postrouting priority 100 ; }")
            _nft(lab, lab.client_ns, "add", "rule", "ip", NAT_TABLE, "post", "ip", "daddr", GW_OUTER, "udp", "dport",
                 "443", "snat", "to", f"{CLIENT_OUTER}:{ports}")
            # Like a NAT box, keep no way in through the old mapping: unsolicited UDP from the gateway (a conntrack
            # entry that the gateway would open, i.e. a packet to the client's old port) is dropped. Without this
            # the kernel re-maps such a packet to a free port and answers ICMP port unreachable, which makes
            # ocserv's worker fail at once.
            _nft(lab, lab.client_ns, "add", "chain", "ip", NAT_TABLE, "pre",
                 "{ type filter hook prerouting priority -150 ; }")
            _nft(lab, lab.client_ns, "add", "rule", "ip", NAT_TABLE, "pre", "ip", "saddr", GW_OUTER, "udp", "sport",
                 "443", "ct", "state", "new", "drop")
            act("udp-snat-added", namespace="client", to=f"{CLIENT_OUTER}:{ports}",
                sockets_before=[s_["port"] for s_ in socks])
            cursor = len(client.lines())
        elif op == "move-client":
            new = args[0]
            # the old address first: deleting a primary address also deletes its secondaries
            lab.ns_run(lab.client_ns, ["ip", "addr", "del", f"{CLIENT_OUTER}/24", "dev", lab.client_if])
            lab.ns_run(lab.client_ns, ["ip", "addr", "add", f"{new}/24", "dev", lab.client_if])
            act("client-moved", namespace="client", old=CLIENT_OUTER, new=new)
            cursor = len(client.lines())
        elif op == "inner-route":
            kind, address = args
            lab.ns_run(lab.gw_ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            lab.ns_run(lab.gw_ns, ["ip", "route", "add", kind, f"{address}/32"])
            act("inner-route", namespace="gateway", kind=kind, address=address)
        elif op == "inner-tcp":
            address, port = args
            issued = time.time()
            p = lab.ns_run(lab.client_ns, ["curl", "-sS", "-o", "/dev/null", "--connect-timeout", "4",
                                           f"http://{address}:{port}/"], check=False)
            act("inner-tcp", address=address, port=port, issued=issued, returncode=p.returncode,
                error=(p.stderr or "").strip()[-200:])
        elif op == "inner-dns":
            server, qname = args
            issued = time.time()
            p = lab.ns_run(lab.client_ns, ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "lab.dnsish", "client",
                                           server, qname], check=False)
            act("inner-dns", server=server, name=qname, issued=issued, returncode=p.returncode,
                output=((p.stdout or "") + (p.stderr or "")).strip()[-200:])
        elif op == "lookup":
            issued = time.time()
            p = lab.ns_run(lab.client_ns, ["getent", "ahostsv4", args[0]], check=False)
            act("lookup", name=args[0], issued=issued, returncode=p.returncode, output=(p.stdout or "").strip()[-200:])
        elif op == "tunnel-dns":
            dnsp = lab.start(lab.gw_ns, "tunnel-dns",
                             [sys.executable, "-m", "lab.dnsish", "server", TUNNEL_GW, args[0]],
                             work / "tunnel-dns.log", cwd=ROOT)
            if dnsp.wait_for("listening on", 10) is None:
                raise LabError(f"the tunnel's DNS responder did not start: {dnsp.tail(5)}")
            act("tunnel-dns", namespace="gateway", server=TUNNEL_GW, answers=args[0])
        elif op == "client-route":
            lab.ns_run(lab.client_ns, ["ip", "route", "add", args[0], "via", GW_OUTER, "dev", lab.client_if])
            act("client-route", namespace="client", prefix=args[0], via=GW_OUTER, dev=lab.client_if)
        elif op == "other-traffic":
            if other is None:
                raise LabError(f"scenario {sc.name}: step other-traffic needs other_traffic=True")
            run_other_flows(lab, other, act)
        else:  # pragma: no cover - STEP_OPS and this chain are kept in step
            raise LabError(f"step {op} not implemented")
    # what the NAT did (if any): the kernel's own table, read by the lab
    if any(st[0] == "snat-udp" for st in sc.steps):
        act("udp-conntrack", namespace="client", entries=_conntrack_udp(lab, lab.client_ns),
            sockets=[s_["port"] for s_ in _udp_sockets(lab, lab.client_ns)])


def prepare_gateway(sc: Scenario, work: Path) -> LabPKI:
    """The gateway's files in `work`: PKI (readable by ocserv's workers), the plain passwd file with the lab user
    (in `sc.groups`), ocserv.conf."""
    pki = make_pki(work, HOSTNAME, GW_OUTER, **sc.pki)
    for p in (pki.server_key, pki.server_cert, pki.ca_cert):
        os.chmod(p, 0o644)
    groups = ",".join(sc.groups) if sc.groups else "*"
    (work / "ocpasswd").write_text(f"{USER}:{groups}:{passwd_hash(USER_PASSWORD)}\n")
    if sc.client_cert is not None:
        cpki = make_client_pki(work, USER, **sc.client_cert)
        for p in (cpki.root_ca, cpki.chain, cpki.key):
            os.chmod(p, 0o644)
    (work / "ocserv.conf").write_text(ocserv_conf(sc, work, pki))
    return pki


def start_gateway(lab: Lab, work: Path, keylog: Path, *, debug: int = 9) -> StampedProcess:
    """ocserv (`ocserv -f -d <debug>`) in the gateway namespace with work/ocserv.conf, its TLS secrets to `keylog`,
    its output stamped into work/gateway.log; returns once it listens (LabError if it does not)."""
    gw = lab.start(lab.gw_ns, "ocserv", ["ocserv", "-f", "-d", str(debug), "-c", str(work / "ocserv.conf")],
                   work / "gateway.log", env=dict(os.environ, SSLKEYLOGFILE=str(keylog)), cwd=work)
    if gw.wait_for("listening (TCP) on", 15) is None:
        gw.check_running("ocserv (gateway)")
        raise LabError(f"ocserv did not start listening: {gw.tail(15)}")
    return gw


def run_scenario(name: str, out_root: Path, *, keep_work: bool = False, verbose: bool = True) -> Path:
    """Run scenario `name`; return the directory holding its outputs. Raises LabError on failure."""
    if name not in SCENARIOS:
        raise LabError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    check_tools()
    sc = SCENARIOS[name]
    out = out_root / name
    work = work_dir(f"acflow-lab-{name}-")
    say = print if verbose else (lambda *a, **k: None)
    act = Actions()

    try:
        pki = prepare_gateway(sc, work)
        script = write_client_script(work)
        gw_keys, cl_keys, curl_keys = work / "gw-keys.log", work / "client-keys.log", work / "curl-keys.log"
        other_keys = work / "other-keys.log"  # the unrelated TLS/DTLS peers' secrets (other_traffic)
        capture = work / "capture.pcapng"
        url = URL + sc.url_path

        with Lab() as lab:
            say(f"[lab] {name}: namespaces {lab.gw_ns} / {lab.client_ns}")
            if sc.underlay == "vxlan":
                lab.use_vxlan_underlay()
                act("vxlan-underlay", vni=VXLAN_VNI, underlay=[UNDERLAY_CLIENT, UNDERLAY_GW])
            if sc.outer_mtu:
                lab.set_outer_mtu(sc.outer_mtu)
            for key, value in sc.client_sysctls.items():
                lab.ns_run(lab.client_ns, ["sysctl", "-q", "-w", f"{key}={value}"])
                act("client-sysctl", key=key, value=value)
            for key, value in sc.gateway_sysctls.items():
                lab.ns_run(lab.gw_ns, ["sysctl", "-q", "-w", f"{key}={value}"])
                act("gateway-sysctl", key=key, value=value)
            if sc.block_udp:
                lab.block_udp_443()
                act("udp-blocked")
            if sc.dns:
                lab.use_resolver(lab.client_ns, GW_OUTER)
                if sc.dns in ("nxdomain", "no-aaaa"):
                    how = (["nxserver", GW_OUTER] if sc.dns == "nxdomain" else  # the name does not exist
                           ["noaaaa", GW_OUTER, GW_OUTER])  # A answered, AAAA dropped
                    dnsp = lab.start(lab.gw_ns, "dns", [sys.executable, "-m", "lab.dnsish", *how],
                                     work / "dns.log", cwd=ROOT)
                    if dnsp.wait_for("listening on", 10) is None:
                        raise LabError(f"the DNS responder did not start: {dnsp.tail(5)}")
                else:
                    lab.drop_udp_to(lab.gw_ns, 53)
                act("dns", how=sc.dns, server=GW_OUTER)
            if sc.outside_dns:  # the client's own resolver, outside the tunnel: NXDOMAIN for every name
                dnsp = lab.start(lab.gw_ns, "dns", [sys.executable, "-m", "lab.dnsish", "nxserver", GW_OUTER],
                                 work / "dns.log", cwd=ROOT)
                if dnsp.wait_for("listening on", 10) is None:
                    raise LabError(f"the DNS responder did not start: {dnsp.tail(5)}")
                lab.use_resolver(lab.client_ns, GW_OUTER)
                act("outside-dns", server=GW_OUTER, answers="NXDOMAIN")
            if sc.gateway_ttl:
                _nft(lab, lab.gw_ns, "add", "table", "inet", "acflowttl")
                _nft(lab, lab.gw_ns, "add", "chain", "inet", "acflowttl", "out",
                     "{ type filter hook output priority 0 ; }")
                _nft(lab, lab.gw_ns, "add", "rule", "inet", "acflowttl", "out", "tcp", "sport", "443", "tcp", "flags",
                     "&", "rst", "==", "0", "ip", "ttl", "set", str(sc.gateway_ttl))
                act("gateway-ttl", ttl=sc.gateway_ttl)
            if sc.path_fault:
                lab.path_fault(sc.path_fault)
                act("path-fault", how=sc.path_fault)
            other = None
            if sc.other_traffic:
                other = start_other_servers(lab, lab.add_other_servers(OTHER_NS_ADDRESSES), work / "other",
                                            other_keys)
                act("other-servers-listening", namespace=other["ns"], addresses=list(OTHER_NS_ADDRESSES))
            portal = start_portal(lab, sc.captive_portal, work / "portal", act) if sc.captive_portal else None
            if sc.router is not None:
                lab.use_router()
                for spec in sc.router:
                    kind, _, n = spec.partition(":")
                    if kind == "mtu":  # a smaller link toward the client, its ICMP 'fragmentation needed' lost
                        lab.ns_run(lab.router_ns, ["ip", "link", "set", lab.router_client_if, "mtu", n])
                        lab.router_rule("rtoutput", "icmp", "type", "destination-unreachable", "icmp", "code",
                                        "frag-needed", "counter", "drop", "comment", f'"{spec}"')
                        continue
                    if kind not in ROUTER_RULES:
                        raise LabError(f"scenario {sc.name}: unknown router rule {spec!r}; known: "
                                       + ", ".join(ROUTER_RULES))
                    chain, rule = ROUTER_RULES[kind]
                    lab.router_rule(chain, *(a.replace("{n}", n) for a in rule), "comment", f'"{spec}"')
                act("router", namespace=lab.router_ns, address=ROUTER_OUTER, rules=list(sc.router),
                    nat_address=NAT_OUTER if "nat" in sc.router or "nat-tcp" in sc.router else None,
                    nat_udp_address=NAT_UDP_OUTER if "nat-udp" in sc.router else None)
            dump = lab.start_capture(capture, work / "dumpcap.log", side=sc.capture_side)
            gw_dump = router_dump = None
            if sc.router is not None:  # the same traffic on the gateway's side of the router, and at the router
                gw_dump = lab.start_capture(work / "gateway-side.pcapng", work / "dumpcap-gw.log", side="gateway")
                router_dump = lab.start_capture(work / "router.pcapng", work / "dumpcap-router.log", side="router")
            gw = start_gateway(lab, work, gw_keys)
            act("gateway-listening")
            proxy_args: list[str] = []
            if sc.proxy:
                proxy = lab.start(lab.gw_ns, "proxy", [sys.executable, "-m", "lab.proxy", "--listen",
                                                       f"{GW_OUTER}:{PROXY_PORT}", "--map", f"{HOSTNAME}={GW_OUTER}",
                                                       *(["--basic", sc.proxy_basic] if sc.proxy_basic else [])],
                                  work / "proxy.log", cwd=ROOT)
                if proxy.wait_for("listening on", 10) is None:
                    proxy.check_running("lab.proxy")
                    raise LabError(f"the proxy did not start: {proxy.tail(5)}")
                cred = f"{sc.proxy_basic}@" if sc.proxy_basic else ""
                proxy_args = [f"--proxy=http://{cred}{GW_OUTER}:{PROXY_PORT}",
                              *(["--proxy-auth=basic"] if sc.proxy_basic else [])]
                act("proxy-listening", address=GW_OUTER, port=PROXY_PORT)

            inspect_pki = None
            if sc.tls_inspection:  # a TLS-inspecting middlebox on the path (lab/inspect.py)
                # on the router when there is one (between the two captures), else in the gateway's namespace
                mb_ns, mb_addr = (lab.router_ns, ROUTER_OUTER) if sc.router is not None else (lab.gw_ns, GW_OUTER)
                inspect_pki = make_pki(work / "inspection", HOSTNAME, GW_OUTER, ca_name="acflow lab inspection CA")
                mbox = lab.start(mb_ns, "inspect", [sys.executable, "-m", "lab.inspect", "--listen",
                                                    f"{mb_addr}:{INSPECT_PORT}", "--upstream", f"{GW_OUTER}:443",
                                                    "--cert", str(inspect_pki.server_cert), "--key",
                                                    str(inspect_pki.server_key), "--keylog",
                                                    str(work / "inspect-keys.log")],
                                 work / "inspect.log", env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT)
                if mbox.wait_for("listening on", 10) is None:
                    mbox.check_running("lab.inspect")
                    raise LabError(f"the inspecting middlebox did not start: {mbox.tail(5)}")
                _nft(lab, mb_ns, "add", "table", "ip", "acflowinspect")
                _nft(lab, mb_ns, "add", "chain", "ip", "acflowinspect", "pre",
                     "{ type nat hook prerouting priority -100 ; }")
                _nft(lab, mb_ns, "add", "rule", "ip", "acflowinspect", "pre", "ip", "saddr", CLIENT_OUTER, "tcp",
                     "dport", "443", "redirect", "to", f":{INSPECT_PORT}")
                act("tls-inspection", address=mb_addr, port=INSPECT_PORT, namespace=mb_ns,
                    middlebox_cert_sha1=inspect_pki.sha1_hex.upper(), gateway_cert_sha1=pki.sha1_hex.upper())
            base = [*openconnect_argv((inspect_pki or pki).pin_sha256), *proxy_args,
                    *(_subst(a, work, pki) for a in sc.client_args)]
            if portal is not None:  # the laptop's connectivity check, as it joins the network
                portal_probe(lab, portal, act)
            if sc.dns or sc.captive_portal == "dns":  # the name goes to the DNS server, not to --resolve
                base = [a for a in base if not a.startswith("--resolve=")]
            if sc.trust_ca:  # verify against the lab CA, not by the pinned key
                base = [a for a in base if not a.startswith("--servercert=")] + [f"--cafile={pki.ca_cert}",
                                                                                  "--non-inter"]
            cenv = dict(os.environ, SSLKEYLOGFILE=str(cl_keys))
            if sc.force_tun_mtu:
                cenv["ACFLOW_FORCE_MTU"] = str(sc.force_tun_mtu)
            auth_args = ["-u", USER, "--passwd-on-stdin"]
            if sc.authgroup:
                auth_args.append(f"--authgroup={sc.authgroup}")
            if sc.downloader or sc.client_cert is not None:
                # client_cert: the certificate chain on the auth connection only (the tunnel's carries none)
                cert_args = (["-c", str(work / "client-chain.pem"), "-k", str(work / "client-key.pem")]
                             if sc.client_cert is not None else [])
                cookie, authp = authenticate(lab, base, [*cert_args, *auth_args], work / "client-auth.log", cenv,
                                             sc.password, url=url)
                act("authenticated", client_certificate=bool(cert_args))
                if sc.downloader:
                    got = fetch_profile(lab, work, cookie, authp, "/profiles/acflow-profile.xml", curl_keys)
                    act("downloader-get", uri=got["uri"], status=got["status"])
                client = start_openconnect(lab, base, work, cenv, script, cookie=cookie, url=url)
            else:
                client = start_openconnect(lab, base, work, cenv, script, auth_args=auth_args, password=sc.password,
                                           url=url)
            act("client-started", pid=client.pid)
            peers = ((gw, "ocserv (gateway)"), (client, "openconnect (client)"))
            client2 = None
            if sc.second_client is not None:  # another user behind the same address
                time.sleep(sc.second_client)
                script2 = write_client_script(work / "client2", routes=False)
                client2 = lab.start(lab.client_ns, "openconnect-2",
                                    [*base, *auth_args, "-s", str(script2), "-i", "tun1", url], work / "client2.log",
                                    env=cenv, stdin_data=(sc.password + "\n").encode())
                act("client-started", pid=client2.pid, which="second", delay=sc.second_client)

            if not sc.expect_connect:
                await_exit(client, act)
            else:
                wait_client_line(client, "CSTP connected", 30, "openconnect did not connect", peers)
                act("cstp-connected")
                if sc.wait_dtls:
                    wait_client_line(client, "Established DTLS connection", 20, "DTLS did not come up", peers)
                    act("dtls-established")
                if client2 is not None:
                    wait_client_line(client2, "CSTP connected", 30, "the second openconnect did not connect", peers)
                    act("cstp-connected", which="second")
                    if sc.wait_dtls:
                        wait_client_line(client2, "Established DTLS connection", 20,
                                         "DTLS did not come up for the second client", peers)
                        act("dtls-established", which="second")
                else:
                    time.sleep(2)
                wait_tun_configured(work)
                if sc.tunnel_capture:
                    tun_dump = lab.start(lab.client_ns, "dumpcap", ["dumpcap", "-q", "-i", "tun0", "-w",
                                                                    str(work / "tunnel-side.pcapng"), "-s", "0"],
                                         work / "dumpcap-tun.log")
                    deadline = time.time() + 10
                    while not (work / "tunnel-side.pcapng").exists() and time.time() < deadline:
                        time.sleep(0.1)
                    time.sleep(0.5)
                    act("tunnel-capture-started", interface="tun0")
                ping_log = []

                def ping(count: int, size: int = 56, df: bool = False) -> None:
                    ping_cmd = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-s", str(size)]
                    ping_cmd += ["-M", "do"] if df else []
                    act("ping-start", count=count, size=size, df=df, target=TUNNEL_GW)
                    p = lab.ns_run(lab.client_ns, [*ping_cmd, TUNNEL_GW], check=False)
                    ping_log.append(p.stdout + p.stderr)
                    act("ping-done", count=count, size=size, df=df, returncode=p.returncode,
                        output=p.stdout[-400:] + p.stderr[-400:])

                for count, size, df in sc.ping_plan():
                    ping(count, size, df)
                if sc.steps:
                    _run_steps(sc, lab, client, act, ping, other, work, dump)
                (work / "ping.log").write_text("\n".join(ping_log))
                if sc.hold:
                    say(f"[lab] {name}: holding the tunnel for {sc.hold:.0f} s")
                    time.sleep(sc.hold)
                # a peer that died on its own (crash, kill) would leave a broken sample: fail instead
                exited = any(step[0] == "client-exits" for step in sc.steps) and client.proc.poll() is not None
                if not exited:
                    client.check_running("openconnect (client)")
                if client2 is not None:
                    client2.check_running("the second openconnect")
                    interrupt_client(client2, act)
                if sc.tunnel_capture:
                    tun_dump.stop(signal.SIGTERM)  # before the client's disconnect takes its tun device away
                    time.sleep(0.3)
                if not exited:
                    interrupt_client(client, act)
            time.sleep(1.0)
            gw.check_running("ocserv (gateway)")
            dump.check_running("dumpcap")
            client.stop()
            if client2 is not None:
                client2.stop()
            gw.stop(signal.SIGTERM)
            time.sleep(0.5)
            dump.stop(signal.SIGTERM)
            for _ts, line in dump.lines():  # dumpcap's own closing report (stderr): the capture's drops
                m = re.search(r"Packets received/dropped on interface '([^']*)': (\d+)/(\d+)", line)
                if m:
                    act("capture-statistics", interface=m.group(1), received=int(m.group(2)),
                        dropped=int(m.group(3)), line=line.strip())
            if gw_dump is not None:
                gw_dump.stop(signal.SIGTERM)
                router_dump.stop(signal.SIGTERM)
                act("router-counters", rules=lab.router_counters())

        collect_outputs(work, out, keylogs=(cl_keys, gw_keys, curl_keys, other_keys),
                        files=("client.log", "client2.log", "client-auth.log", "gateway.log", "curl.log", "ping.log",
                               "inspect-keys.log",
                               "script.log",
                               "proxy.log", "inspect.log", "dns.log", "tunnel-side.pcapng", "gateway-side.pcapng",
                               "router.pcapng",
                               "ocserv.conf", "server-key.pem", "server-cert.pem", "ca.pem",
                               "downloaded-profile.xml", "client-root-ca.pem", "client-chain.pem"))
        for sub in ("other", "portal"):  # unrelated servers' and the portal's logs and certificates (no keys)
            if (work / sub).is_dir():
                shutil.copytree(work / sub, out / sub, ignore=shutil.ignore_patterns("*.key", "www"))
        facts = build_facts(sc, out, list(act), pki)
        (out / "facts.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
        say(f"[lab] {name}: wrote {out}")
        return out
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
