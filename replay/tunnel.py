"""The replay's TUN device, in a network namespace, made with pyroute2 — and removed on every exit path.

Design: the namespace is created with `pyroute2.netns.create` (default a private `acflow-rp-<pid>`; `--netns NAME`
uses an existing one, or creates NAME if it does not exist, and then removes only what it created). The TUN device
is created *from a short-lived thread that has entered the namespace* (`setns(CLONE_NEWNET)` changes only the
calling thread's namespace; the main thread, whose sockets reach the gateway, never moves): that thread opens
`/dev/net/tun` and issues TUNSETIFF, so the kernel creates the device in the namespace, not on the host; it also
opens there the raw socket the packets are injected through and turns IPv6 off in the namespace (no router
solicitations of our own on the TUN). The file descriptors keep working from any thread once made. The device is
not persistent: it disappears when its descriptor is closed, and with the namespace in any case. Address, MTU,
link state and routes are set with pyroute2 (`IPRoute(netns=…)`), never with `ip` subprocesses.

Clean-up (`TunNamespace.close`, idempotent) closes the descriptors, deletes the device if it is still there and
removes the namespace if this object created it. The caller runs it in `finally` and turns SIGINT/SIGTERM/SIGHUP
into KeyboardInterrupt (replay/client.py), as lab/netns.py does.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
import threading
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


class EnvironmentProblem(Exception):
    """The machine does not let the replay set up its namespace or device (exit status 5)."""


def has_net_admin() -> bool:
    """True when this process holds CAP_NET_ADMIN (root normally does)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return os.geteuid() == 0


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mask_to_prefix(mask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


def parse_route(text: str) -> tuple[str, int] | None:
    """An X-CSTP-Split-Include value ("198.19.0.0/255.255.255.0" or "198.19.0.0/24") as (network, prefix)."""
    try:
        net, _, mask = text.strip().partition("/")
        prefix = (_mask_to_prefix(mask) if "." in mask else int(mask)) if mask else 32
        n = ipaddress.IPv4Network(f"{net}/{prefix}", strict=False)
        return str(n.network_address), n.prefixlen
    except ValueError:
        return None


class TunNamespace:
    """A namespace (made or given) holding one TUN device; `fd` reads/writes its packets, `inject` sends an IPv4
    packet into the namespace's stack (which routes it out through the TUN)."""

    def __init__(self, name: str | None = None, ifname: str = "acrp0"):
        self.name = name or f"acflow-rp-{os.getpid()}"
        self.ifname = ifname
        self.created_ns = False
        self.fd: int | None = None
        self.raw: socket.socket | None = None
        self.index: int | None = None
        self.routes: list[str] = []

    # -- set-up -------------------------------------------------------------------------------------------------
    def open(self) -> TunNamespace:
        from pyroute2 import netns  # noqa: PLC0415

        try:
            existing = set(netns.listnetns())
        except OSError:
            existing = set()
        try:
            if self.name not in existing:
                self.created_ns = True  # before: a signal right after the creation must still remove it
                netns.create(self.name)
        except Exception as e:  # noqa: BLE001 - pyroute2 raises several kinds; all mean the same here
            raise EnvironmentProblem(f"cannot create network namespace {self.name}: {e}") from e
        made: dict = {}

        def enter_and_make() -> None:
            try:
                nsfd = os.open(str(NETNS_DIR / self.name), os.O_RDONLY)
                try:
                    _setns(nsfd)
                finally:
                    os.close(nsfd)
                fd = os.open("/dev/net/tun", os.O_RDWR)
                try:
                    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", self.ifname.encode(), IFF_TUN | IFF_NO_PI))
                except OSError:
                    os.close(fd)
                    raise
                try:  # /proc/sys/net is the namespace of the thread that opens it; only our device's setting
                    Path(f"/proc/sys/net/ipv6/conf/{self.ifname}/disable_ipv6").write_text("1")
                except OSError:
                    pass
                made["fd"] = fd
                made["raw"] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except BaseException as e:  # noqa: BLE001 - reported by the caller's thread
                made["error"] = e

        t = threading.Thread(target=enter_and_make, name="acflow-rp-netns")
        t.start()
        t.join()
        self.fd, self.raw = made.get("fd"), made.get("raw")
        if "error" in made:
            raise EnvironmentProblem(f"cannot create the TUN device in namespace {self.name}: {made['error']}")
        os.set_blocking(self.fd, False)
        return self

    def configure(self, address: str, netmask: str | None, mtu: int | None, split_include: list[str]) -> None:
        """Address, MTU, link up and routes (split-include networks, else a default route) on the TUN, lo up."""
        from pyroute2 import IPRoute  # noqa: PLC0415

        try:
            with IPRoute(netns=self.name) as ipr:
                idx = ipr.link_lookup(ifname=self.ifname)
                if not idx:
                    raise EnvironmentProblem(f"TUN device {self.ifname} not found in namespace {self.name}")
                self.index = idx[0]
                lo = ipr.link_lookup(ifname="lo")
                if lo:
                    ipr.link("set", index=lo[0], state="up")
                kw = {"mtu": int(mtu)} if mtu else {}
                ipr.link("set", index=self.index, state="up", **kw)
                ipr.addr("add", index=self.index, address=address, prefixlen=32)
                nets = [r for r in (parse_route(x) for x in split_include) if r]
                if netmask and not nets:
                    nets = [parse_route(f"{address}/{netmask}")] if parse_route(f"{address}/{netmask}") else []
                if not split_include:
                    nets.append(("0.0.0.0", 0))
                for net, prefix in nets:
                    ipr.route("replace", dst=f"{net}/{prefix}", oif=self.index)
                    self.routes.append(f"{net}/{prefix}")
        except EnvironmentProblem:
            raise
        except Exception as e:  # noqa: BLE001
            raise EnvironmentProblem(f"cannot configure {self.ifname} in namespace {self.name}: {e}") from e

    # -- packets ------------------------------------------------------------------------------------------------
    def inject(self, packet: bytes) -> None:
        """Send an IPv4 packet (header included) into the namespace's stack: it leaves through the TUN."""
        dst = str(ipaddress.IPv4Address(packet[16:20]))
        self.raw.sendto(packet, (dst, 0))

    def write(self, packet: bytes) -> None:
        """Hand a packet from the tunnel to the namespace (as received on the TUN)."""
        os.write(self.fd, packet)

    # -- clean-up -----------------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Remove everything this object created; returns what was removed (for the report). Idempotent and
        re-entrant: each step forgets what it removed, so a clean-up cut short (a signal) can simply run again."""
        removed = []
        raw, self.raw = self.raw, None
        if raw is not None:
            try:
                raw.close()
            except OSError:
                pass
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)  # a non-persistent TUN device goes with its last descriptor
                removed.append(f"TUN {self.ifname}")
            except OSError:
                pass
        if self.created_ns:
            path = NETNS_DIR / self.name
            if path.exists():
                from pyroute2 import netns  # noqa: PLC0415

                try:
                    netns.remove(self.name)
                except Exception:  # noqa: BLE001 - clean-up goes on; checked below
                    pass
                if path.exists():
                    # the bind mount may survive a failed remove: once more with the plain calls
                    try:
                        import ctypes  # noqa: PLC0415

                        ctypes.CDLL(None, use_errno=True).umount2(str(path).encode(), 2)  # MNT_DETACH
                        path.unlink()
                    except OSError:
                        pass
                if not path.exists():
                    removed.append(f"namespace {self.name}")
            self.created_ns = False
        return removed
