"""Network namespaces and processes for the lab, with guaranteed clean-up.

`StampedProcess` runs a child and writes each line of its output to a log as `<epoch seconds>\t<line>`;
`read_stamped` reads such a log back. `Lab` is a context manager: it creates two namespaces (gateway and client)
joined by a veth pair, numbered
from 198.18.0.0/15 only, and on exit (normal, exception, Ctrl-C, SIGTERM) ends every process it started, by
PID, and deletes the namespaces it created — and nothing else. A second Ctrl-C or SIGTERM during that clean-up
does not cut it short: it is held until the clean-up is done.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GW_OUTER = "198.18.0.1"
CLIENT_OUTER = "198.18.0.2"
OUTER_PREFIX = 24
# the underlay of a scenario whose link runs in VXLAN (Scenario.underlay, Lab.use_vxlan_underlay)
UNDERLAY_GW = "198.19.250.1"
UNDERLAY_CLIENT = "198.19.250.2"
VXLAN_VNI = 4242
VXLAN_DEV = "acvx0"
# the router between client and gateway (Lab.use_router): its own address, the address its source NAT gives the
# client, its nftables table
ROUTER_OUTER = "198.18.0.254"
NAT_OUTER = "198.18.0.3"
NAT_UDP_OUTER = "198.18.0.4"  # the address a NAT that maps UDP apart from TCP gives the client's UDP (nat-split)
ROUTER_TABLE = "acflowrouter"
BLOCK_TABLE = "acflow_block"  # Lab.block_all: everything between client and gateway dropped


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def missing_tools(tools: tuple[str, ...]) -> list[str]:
    """The programs of `tools` that are neither on PATH nor in /usr/sbin."""
    return [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def require_tools(tools: tuple[str, ...], hint: str = "") -> None:
    """LabError naming the programs of `tools` that are missing (and `hint`: how to install them)."""
    missing = missing_tools(tools)
    if missing:
        raise LabError("missing tools: " + ", ".join(missing) + (f" ({hint})" if hint else ""))


def read_stamped(path: Path) -> list[tuple[float, str]]:
    """The (epoch seconds, line) pairs of a log written by StampedProcess; [] if there is no such file."""
    out = []
    if path.exists():
        for raw in path.read_text(errors="replace").splitlines():
            ts, _, line = raw.partition("\t")
            try:
                out.append((float(ts), line))
            except ValueError:
                continue
    return out


def _run(cmd: list[str], check: bool = True, detach: bool = False) -> subprocess.CompletedProcess:
    """`detach`: run in a new session, out of reach of a Ctrl-C sent to the lab's process group (clean-up)."""
    p = subprocess.run(cmd, capture_output=True, text=True, check=False, start_new_session=detach)
    if check and p.returncode != 0:
        raise LabError(f"command failed ({p.returncode}): {' '.join(cmd)}: {p.stderr.strip()}")
    return p


class StampedProcess:
    """A child process whose stdout+stderr lines are written to a log as `<epoch seconds>\\t<line>`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
                 stdin_data: bytes | None = None, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._log = open(log_path, "w", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd, start_new_session=True)
        if stdin_data is not None:
            try:
                self.proc.stdin.write(stdin_data)
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            ts = time.time()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self._lines.append((ts, line))
                self._log.write(f"{ts:.6f}\t{line}\n")
                self._log.flush()
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def lines(self) -> list[tuple[float, str]]:
        with self._cond:
            return list(self._lines)

    def tail(self, n: int = 12) -> str:
        """The last `n` lines, joined by " | " (for error messages)."""
        return " | ".join(line for _, line in self.lines()[-n:])

    def check_running(self, what: str) -> None:
        """LabError if the process (a peer or dumpcap, which only the lab ends) has exited by itself."""
        rc = self.proc.poll()
        if rc is not None:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise LabError(f"{what} {how} during the run; last lines: {self.tail(12)}")

    def wait_for(self, needle: str, timeout: float, start: int = 0) -> tuple[float, str] | None:
        """Wait until a log line containing `needle` appears (or the process exits / timeout)."""
        deadline = time.time() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self._lines):
                    if needle in self._lines[i][1]:
                        return self._lines[i]
                    i += 1
                remaining = deadline - time.time()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(remaining, 0.2))

    def wait_for_re(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, float, str] | None:
        """Wait until a log line at index >= `start` matches `pattern`; return (index, time, line)."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self._lines):
                    if rx.search(self._lines[i][1]):
                        return (i, *self._lines[i])
                    i += 1
                remaining = deadline - time.time()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(remaining, 0.2))

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def interrupt(self, timeout: float = 15.0) -> bool:
        """SIGINT (as Ctrl-C: openconnect then says goodbye to the gateway) and wait; True if it exited."""
        self.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """End the process by its PID: `sig`, then SIGKILL of its process group after `timeout`."""
        self.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self._reader.join(2)
        with self._cond:
            self._log.close()
        return self.proc.returncode


class Lab:
    """Two namespaces (gateway, client) and a veth pair; tracks and cleans up everything it starts."""

    def __init__(self, tag: str | None = None):
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it creates network namespaces); run it as root")
        tag = tag or f"{os.getpid() % 100000}"
        self.tag = tag
        self.gw_ns = f"acflow-gw-{tag}"
        self.client_ns = f"acflow-cl-{tag}"
        self.gw_if = f"acgw{tag}"[:15]
        self.client_if = f"accl{tag}"[:15]
        self.processes: list[StampedProcess] = []
        self._created: list[str] = []
        self._old_handlers: dict = {}
        self._interrupted = False  # a signal has already been turned into KeyboardInterrupt
        self._held: list[int] = []  # signals received after that, or during close()
        self._blocked: str | None = None  # the namespace of `block_all`'s table while it is there

    # -- context management -------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not in the main thread
                pass
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_signal(self, signum, frame):
        # Only the first signal interrupts the run; later ones (a second Ctrl-C, SIGTERM after SIGINT…) would
        # otherwise break into close() and leave namespaces and processes behind. close() re-raises them.
        if self._interrupted:
            self._held.append(signum)
            return
        self._interrupted = True
        raise KeyboardInterrupt(f"signal {signum}")

    def _setup(self) -> None:
        for ns in (self.gw_ns, self.client_ns):
            self._new_namespace(ns)
        _run(["ip", "link", "add", self.gw_if, "netns", self.gw_ns, "type", "veth",
              "peer", "name", self.client_if, "netns", self.client_ns])
        for ns, dev, addr in ((self.gw_ns, self.gw_if, GW_OUTER), (self.client_ns, self.client_if, CLIENT_OUTER)):
            self.ns_run(ns, ["ip", "addr", "add", f"{addr}/{OUTER_PREFIX}", "dev", dev])
            self.ns_run(ns, ["ip", "link", "set", dev, "up"])
            self.ns_run(ns, ["ip", "link", "set", "lo", "up"])
            self._offloads_off(ns, dev)

    def _new_namespace(self, ns: str) -> None:
        """Create namespace ``ns`` (LabError if it exists: a previous run died); deleted by the clean-up."""
        if ns in _run(["ip", "netns", "list"]).stdout.split():
            raise LabError(f"namespace {ns} already exists (a previous run died?): delete it with "
                           f"'ip netns delete {ns}'")
        _run(["ip", "netns", "add", ns])
        self._created.append(ns)

    def _offloads_off(self, ns: str, dev: str) -> None:
        # Offloads off, or captured checksums look wrong and segments are bigger than the MTU.
        self.ns_run(ns, ["ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off"],
                    check=False)

    def block_all(self, at_client: bool = False) -> str:
        """Drop every IPv4 packet between client and gateway, both ways, on the gateway's veth (or the client's):
        nftables netdev ingress and egress, table BLOCK_TABLE; returns the device. A capture sees a packet that
        arrives before the drop (the capture tap comes before netdev ingress) but not one that is to leave (netdev
        egress comes before it): so the end that is not captured drops. (Not the inet input/output hooks: a drop in
        the output hook fails the sender's own send() with EPERM — ocserv would end the session at once —, whereas a
        loss on the path is silent; an egress drop is, for TCP and UDP alike.)"""
        ns, dev, peer = ((self.client_ns, self.client_if, GW_OUTER) if at_client else
                         (self.gw_ns, self.gw_if, CLIENT_OUTER))
        self.ns_run(ns, ["nft", "add", "table", "netdev", BLOCK_TABLE])
        for chain, hook in (("in", "ingress"), ("out", "egress")):
            self.ns_run(ns, ["nft", "add", "chain", "netdev", BLOCK_TABLE, chain,
                             f'{{ type filter hook {hook} device "{dev}" priority 0 ; }}'])
        self.ns_run(ns, ["nft", "add", "rule", "netdev", BLOCK_TABLE, "in", "ip", "saddr", peer, "drop"])
        self.ns_run(ns, ["nft", "add", "rule", "netdev", BLOCK_TABLE, "out", "ip", "daddr", peer, "drop"])
        self._blocked = ns
        return dev

    def unblock_all(self) -> None:
        """Lift `block_all`."""
        ns = self._blocked or self.gw_ns
        self.ns_run(ns, ["nft", "delete", "table", "netdev", BLOCK_TABLE])
        self._blocked = None

    def suspend_client(self, proc, seconds: float, *, at_client: bool = False, act=None) -> str:
        """A laptop that sleeps ``seconds``: its network goes (`block_all`, on the client's veth when ``at_client``)
        and its VPN client ``proc`` stops (SIGSTOP); on waking the network comes back first, then the program goes on
        (SIGCONT) where it was. ``act(what, **facts)`` records the suspension. Returns the blocking device."""
        dev = self.block_all(at_client=at_client)
        proc.send_signal(signal.SIGSTOP)
        if act is not None:
            act("client-suspended", how=f"openconnect SIGSTOP, nftables netdev drop both ways on {dev}")
        try:
            time.sleep(seconds)
        finally:
            self.unblock_all()
            proc.send_signal(signal.SIGCONT)
        return dev

    def use_router(self) -> str:
        """Put a router between client and gateway: a third namespace joined to each by its own veth pair (the
        client's and the gateway's veth keep their names and addresses), forwarding between them and answering
        ARP for the other side (proxy ARP), so that both ends still see one 198.18.0.0/24 LAN — as a firewall or
        NAT box in bridge-like routed mode. Each end's veth can then be captured on its own: what the router does
        (`router_rule`) happens between the two captures. The router's own address is ROUTER_OUTER; NAT_OUTER and
        NAT_UDP_OUTER are kept for a source NAT. Returns the router's namespace."""
        ns = self.router_ns = f"acflow-rt-{self.tag}"
        self.router_gw_if, self.router_client_if = f"acrg{self.tag}"[:15], f"acrc{self.tag}"[:15]
        self._new_namespace(ns)
        self.ns_run(self.gw_ns, ["ip", "link", "del", self.gw_if])  # the direct pair (both ends) goes
        for end_ns, end_if, r_if, addr in ((self.gw_ns, self.gw_if, self.router_gw_if, GW_OUTER),
                                           (self.client_ns, self.client_if, self.router_client_if, CLIENT_OUTER)):
            _run(["ip", "link", "add", end_if, "netns", end_ns, "type", "veth", "peer", "name", r_if, "netns", ns])
            self.ns_run(end_ns, ["ip", "addr", "add", f"{addr}/{OUTER_PREFIX}", "dev", end_if])
            for n, dev in ((end_ns, end_if), (ns, r_if)):
                self.ns_run(n, ["ip", "link", "set", dev, "up"])
                self._offloads_off(n, dev)
            self.ns_run(ns, ["ip", "addr", "add", f"{ROUTER_OUTER}/32", "dev", r_if])
            self.ns_run(ns, ["sysctl", "-q", "-w", f"net.ipv4.conf.{r_if}.proxy_arp=1"])
        self.ns_run(ns, ["ip", "link", "set", "lo", "up"])
        self.ns_run(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        # the gateway on its side, the rest of the LAN (the client, wherever it roams) on the client's
        self.ns_run(ns, ["ip", "route", "add", f"{GW_OUTER}/32", "dev", self.router_gw_if])
        self.ns_run(ns, ["ip", "route", "add", f"198.18.0.0/{OUTER_PREFIX}", "dev", self.router_client_if])
        for addr in (NAT_OUTER, NAT_UDP_OUTER):
            self.ns_run(ns, ["ip", "addr", "add", f"{addr}/32", "dev", self.router_gw_if])
        for table, chain, spec in ((ROUTER_TABLE, "rtforward", "{ type filter hook forward priority 0 ; }"),
                                   (ROUTER_TABLE, "rtpost", "{ type nat hook postrouting priority 100 ; }"),
                                   (ROUTER_TABLE, "rtoutput", "{ type filter hook output priority 0 ; }")):
            self.ns_run(ns, ["nft", "add", "table", "ip", table])
            self.ns_run(ns, ["nft", "add", "chain", "ip", table, chain, spec])
        return ns

    def router_rule(self, chain: str, *rule: str) -> None:
        """An nftables rule in the router's table (`use_router`): chain "rtforward" (filter, forward hook), "rtpost"
        (NAT, postrouting) or "rtoutput" (filter, the router's own packets)."""
        self.ns_run(self.router_ns, ["nft", "add", "rule", "ip", ROUTER_TABLE, chain, *rule])

    def router_counters(self, table: str = ROUTER_TABLE) -> list[dict]:
        """The rules of the router's nftables ``table`` with their counters (packets, bytes), as nftables lists
        them."""
        out = self.ns_run(self.router_ns, ["nft", "-j", "list", "table", "ip", table], check=False).stdout
        try:
            items = json.loads(out).get("nftables", [])
        except ValueError:
            return []
        rules = []
        for item in items:
            rule = item.get("rule")
            if not rule:
                continue
            counter = next((e["counter"] for e in rule.get("expr", []) if isinstance(e, dict) and "counter" in e),
                           None)
            rules.append({"chain": rule.get("chain"), "comment": rule.get("comment"),
                          "packets": counter.get("packets") if counter else None,
                          "bytes": counter.get("bytes") if counter else None})
        return rules

    def add_other_servers(self, addresses: tuple[str, ...]) -> str:
        """A third namespace ("other servers", unrelated to the VPN) on the same LAN as the client: its veth and
        the gateway's are enslaved to a bridge in the gateway namespace (198.18.0.1 moves to the bridge), so that
        the other servers answer from their own addresses (`addresses`, all in 198.18.0.0/15; the first is the
        primary one, the source of unconnected UDP sockets) and MAC. Returns the namespace's name; it is cleaned
        up with the others."""
        ns, br = f"acflow-x-{self.tag}", f"acbr{self.tag}"[:15]
        x_gw, x_if = f"acxg{self.tag}"[:15], f"acx{self.tag}"[:15]
        self._new_namespace(ns)
        self.ns_run(self.gw_ns, ["ip", "link", "add", br, "type", "bridge"])
        self.ns_run(self.gw_ns, ["ip", "addr", "flush", "dev", self.gw_if])
        self.ns_run(self.gw_ns, ["ip", "link", "set", self.gw_if, "master", br])
        self.ns_run(self.gw_ns, ["ip", "addr", "add", f"{GW_OUTER}/{OUTER_PREFIX}", "dev", br])
        _run(["ip", "link", "add", x_gw, "netns", self.gw_ns, "type", "veth", "peer", "name", x_if, "netns", ns])
        self.ns_run(self.gw_ns, ["ip", "link", "set", x_gw, "master", br])
        for addr in addresses:
            self.ns_run(ns, ["ip", "addr", "add", f"{addr}/{OUTER_PREFIX}", "dev", x_if])
        for n, dev in ((self.gw_ns, br), (self.gw_ns, x_gw), (ns, x_if), (ns, "lo")):
            self.ns_run(n, ["ip", "link", "set", dev, "up"])
            if dev != "lo":
                self._offloads_off(n, dev)
        return ns

    def use_vxlan_underlay(self, vni: int = VXLAN_VNI) -> None:
        """Carry the client's and the gateway's link in a VXLAN overlay (RFC 7348, UDP port 4789, VNI ``vni``):
        the veth pair becomes the underlay (UNDERLAY_GW / UNDERLAY_CLIENT), the outer addresses move to a vxlan
        device in each namespace. A capture on the client's veth then holds every packet inside VXLAN, as a
        cloud's traffic mirroring (AWS, Azure) or a capture on a data-centre fabric's uplink gives them."""
        for ns, dev, addr, mine, peer in ((self.gw_ns, self.gw_if, GW_OUTER, UNDERLAY_GW, UNDERLAY_CLIENT),
                                          (self.client_ns, self.client_if, CLIENT_OUTER, UNDERLAY_CLIENT,
                                           UNDERLAY_GW)):
            self.ns_run(ns, ["ip", "addr", "flush", "dev", dev])
            self.ns_run(ns, ["ip", "addr", "add", f"{mine}/30", "dev", dev])
            self.ns_run(ns, ["ip", "link", "add", VXLAN_DEV, "type", "vxlan", "id", str(vni), "local", mine,
                             "remote", peer, "dstport", "4789", "dev", dev])
            self.ns_run(ns, ["ip", "addr", "add", f"{addr}/{OUTER_PREFIX}", "dev", VXLAN_DEV])
            self.ns_run(ns, ["ip", "link", "set", VXLAN_DEV, "up"])
            self._offloads_off(ns, VXLAN_DEV)

    def set_outer_mtu(self, mtu: int) -> None:
        self.ns_run(self.gw_ns, ["ip", "link", "set", self.gw_if, "mtu", str(mtu)])
        self.ns_run(self.client_ns, ["ip", "link", "set", self.client_if, "mtu", str(mtu)])

    def ns_run(self, ns: str, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", ns, *cmd], check=check)

    def start(self, ns: str, name: str, argv: list[str], log_path: Path, env: dict | None = None,
              stdin_data: bytes | None = None, cwd: Path | None = None) -> StampedProcess:
        p = StampedProcess(name, ["ip", "netns", "exec", ns, *argv], log_path, env=env, stdin_data=stdin_data,
                           cwd=cwd)
        self.processes.append(p)
        return p

    def drop_udp_from(self, ns: str, sport: int) -> None:
        """nftables in namespace ``ns``: drop incoming UDP from source port ``sport`` at the input hook, after a
        capture on the namespace's veth has seen it (a one-way firewall rule)."""
        self.ns_run(ns, ["nft", "add", "table", "inet", "acflow-in"])
        self.ns_run(ns, ["nft", "add", "chain", "inet", "acflow-in", "in",
                         "{ type filter hook input priority 0 ; }"])
        self.ns_run(ns, ["nft", "add", "rule", "inet", "acflow-in", "in", "udp", "sport", str(sport), "drop"])

    def drop_tcp_to(self, ns: str, address: str, port: int) -> None:
        """nftables in namespace ``ns``: drop incoming TCP to ``address``:``port`` at the input hook (a server
        nothing reaches: its SYNs unanswered)."""
        self._nft_chain(ns, "inet", "acflow-drop-to", "input",
                        ("ip", "daddr", address, "tcp", "dport", str(port), "drop"))

    def block_udp_443(self) -> None:
        """Drop UDP to port 443 in the gateway namespace (DTLS blocked; the tunnel stays on CSTP)."""
        self.ns_run(self.gw_ns, ["nft", "add", "table", "inet", "acflow"])
        self.ns_run(self.gw_ns, ["nft", "add", "chain", "inet", "acflow", "in",
                                 "{ type filter hook input priority 0 ; }"])
        self.ns_run(self.gw_ns, ["nft", "add", "rule", "inet", "acflow", "in", "udp", "dport", "443", "drop"])

    def use_resolver(self, ns: str, address: str) -> None:
        """Processes started in namespace ``ns`` resolve names through the DNS server at ``address`` (`ip netns
        exec` gives them /etc/netns/NS/resolv.conf; removed with the namespace)."""
        d = Path("/etc/netns") / ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {address}\noptions timeout:2 attempts:2\n")

    #: `path_fault` faults at the gateway's way in (inet input of its namespace: nothing reaches ocserv), as
    #: nftables verdicts for TCP to port 443
    GATEWAY_INPUT = {"drop": ("drop",), "reset": ("reject", "with", "tcp", "reset"),
                     "icmp": ("reject", "with", "icmp", "type", "admin-prohibited")}
    #: `path_fault` losses at the client's way in (netdev ingress of its veth: a capture on the gateway's side sees
    #: the packets leave): what is dropped silently
    CLIENT_INGRESS = {"big-in": ("tcp", "sport", "443", "meta", "length", "gt", "1200"),  # path MTU black hole
                      "udp-in": ("udp", "sport", "443"),  # the gateway's DTLS answers
                      "synack-in": ("tcp", "sport", "443")}  # the gateway's TCP: its SYN-ACKs (a broken way back)

    def _nft_chain(self, ns: str, family: str, table: str, hook: str, rule: tuple) -> None:
        self.ns_run(ns, ["nft", "add", "table", family, table])
        self.ns_run(ns, ["nft", "add", "chain", family, table, "c", f"{{ type filter hook {hook} priority 0 ; }}"])
        self.ns_run(ns, ["nft", "add", "rule", family, table, "c", *rule])

    def path_fault(self, how: str) -> None:
        """A fault on the path between client and gateway, made by nftables: ``how`` a key of `GATEWAY_INPUT` (TCP
        to port 443 dropped, reset or rejected by ICMP: the gateway not reached), of `CLIENT_INGRESS` (a loss on the
        client's way in), or "big" (the gateway's TCP segments from port 443 over 1200 bytes dropped on their way
        out: a path MTU black hole — a smaller link on the path, its ICMP 'fragmentation needed' lost)."""
        if how in self.CLIENT_INGRESS:
            self._nft_chain(self.client_ns, "netdev", "acflowpath", f"ingress device {self.client_if}",
                            ("meta", "protocol", "ip", *self.CLIENT_INGRESS[how], "drop"))
        elif how == "big":
            self._nft_chain(self.gw_ns, "inet", "acflowpath", "output",
                            ("tcp", "sport", "443", "meta", "length", "gt", "1200", "drop"))
        else:
            self._nft_chain(self.gw_ns, "inet", "acflowpath", "input",
                            ("tcp", "dport", "443", *self.GATEWAY_INPUT[how]))

    def drop_udp_to(self, ns: str, dport: int) -> None:
        """nftables in namespace ``ns``: drop incoming UDP to port ``dport`` (a server that never answers)."""
        self._nft_chain(ns, "inet", "acflow-udp", "input", ("udp", "dport", str(dport), "drop"))

    def start_capture(self, capture: Path, log_path: Path, extra: tuple[str, ...] = ("-q",),
                      side: str = "client") -> StampedProcess:
        """dumpcap on the client's veth (``side`` "gateway": the gateway's; "client-any": the client namespace's
        "any" device; "router": the router's two veths, client side first — one pcapng, two interfaces, as a
        firewall captures its inside and outside) into ``capture``; returns once it writes (LabError if it does
        not)."""
        ns, dev = (self.gw_ns, self.gw_if) if side == "gateway" else (self.client_ns, self.client_if)
        if side == "client-any":  # every interface of the client namespace (Linux "any": veth, tun0 once up, lo)
            dev = "any"
        devs = ["-i", dev]
        if side == "router":
            ns, devs = self.router_ns, ["-i", self.router_client_if, "-i", self.router_gw_if]
        dump = self.start(ns, "dumpcap", ["dumpcap", *extra, *devs, "-w", str(capture), "-s", "0"], log_path)
        deadline = time.time() + 10
        while not capture.exists() and time.time() < deadline:
            time.sleep(0.1)
        if not capture.exists():
            raise LabError("dumpcap did not start capturing: " + "; ".join(line for _, line in dump.lines()))
        time.sleep(0.5)
        return dump

    def close(self) -> None:
        self._interrupted = True  # from here on, signals are held (see _on_signal)
        try:
            self._cleanup()
        finally:
            for sig, handler in self._old_handlers.items():
                try:
                    signal.signal(sig, handler)
                except (ValueError, TypeError):
                    pass
            self._old_handlers.clear()
        held, self._held = self._held, []
        if held and sys.exc_info()[1] is None:  # a signal came during a normal close: stop now
            raise KeyboardInterrupt(f"signal {held[0]}")

    def _cleanup(self) -> None:
        for p in reversed(self.processes):
            try:
                p.stop(signal.SIGTERM, timeout=5)
            except Exception:  # noqa: BLE001 - clean-up must go on
                pass
        self.processes.clear()
        for ns in reversed(self._created):
            # kill anything still living in our namespace (only ours), then delete it
            pids = _run(["ip", "netns", "pids", ns], check=False, detach=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run(["ip", "netns", "delete", ns], check=False, detach=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)  # (use_resolver's resolv.conf)
        self._created.clear()
