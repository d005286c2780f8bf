"""`acflow replay client --write FILE`: a capture of the replay's own traffic with its keys embedded.

dumpcap (Wireshark's capture program, as the lab uses) runs as a child of the replay, in the replay's network
namespace, on the interface the route to the gateway leaves by (looked up with pyroute2), with a capture filter
for the gateway's address: the TLS connection(s) and the DTLS flow, as a capture taken on the client's side of
the link shows them. When the replay ends the capture is stopped (SIGINT, by its PID) and the file is written with
a pcapng Decryption Secrets Block (type ``TLSK``: NSS key log lines) right after the section header: the TLS
sessions' secrets (OpenSSL's key log of this replay's connections, with EXPORTER_SECRET so the PSK-NEGOTIATE key
can be derived) and the DTLS sessions' ``CLIENT_RANDOM`` lines. `acflow analyze FILE` needs nothing else.

The file holds the replay's secrets (as any capture with embedded keys does); it is written 0600.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

DSB = 0x0000000A
SHB = 0x0A0D0D0A
TLS_KEY_LOG = 0x544C534B  # "TLSK"


class CaptureError(Exception):
    """The capture could not be made (the message says why)."""


def dumpcap_path() -> str | None:
    return shutil.which("dumpcap") or (str(Path("/usr/bin/dumpcap")) if Path("/usr/bin/dumpcap").exists() else None)


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def dsb_block(keylog: str, endian: str = "<") -> bytes:
    """A pcapng Decryption Secrets Block holding ``keylog`` (NSS key log lines)."""
    data = keylog.encode("ascii", "replace")
    body = struct.pack(endian + "II", TLS_KEY_LOG, len(data)) + _pad(data)
    total = 12 + len(body)
    return struct.pack(endian + "II", DSB, total) + body + struct.pack(endian + "I", total)


def embed_keys(pcapng: bytes, keylog: str) -> bytes:
    """``pcapng`` with a Decryption Secrets Block inserted after its first Section Header Block."""
    if len(pcapng) < 28 or struct.unpack_from("<I", pcapng, 0)[0] != SHB:
        raise CaptureError("the capture is not a pcapng file")
    magic = pcapng[8:12]
    endian = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
    shb_len = struct.unpack_from(endian + "I", pcapng, 4)[0]
    if shb_len < 28 or shb_len > len(pcapng):
        raise CaptureError("the capture's section header is damaged")
    return pcapng[:shb_len] + dsb_block(keylog, endian) + pcapng[shb_len:]


def route_interface(address: str) -> str:
    """The name of the interface the route to ``address`` leaves by (this process's network namespace)."""
    from pyroute2 import IPRoute  # noqa: PLC0415

    with IPRoute() as ipr:
        routes = ipr.route("get", dst=address)
        if not routes:
            raise CaptureError(f"no route to {address}")
        oif = routes[0].get_attr("RTA_OIF")
        links = ipr.get_links(oif)
        if not links:
            raise CaptureError(f"no interface {oif} for the route to {address}")
        return links[0].get_attr("IFLA_IFNAME")


class ReplayCapture:
    """dumpcap on the way to the gateway while the replay runs; `finish(keylog)` writes the file."""

    def __init__(self, output: Path, gateway_host: str, port: int):
        self.output = Path(output)
        try:
            self.address = socket.getaddrinfo(gateway_host, port, proto=socket.IPPROTO_TCP)[0][4][0]
        except OSError as e:
            raise CaptureError(f"cannot resolve {gateway_host}: {e}") from e
        self.proc: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="acflow-rp-cap-")
        self.raw = Path(self.dir) / "replay.pcapng"
        self.interface: str | None = None
        self.stopped = False

    def start(self, timeout: float = 10.0) -> ReplayCapture:
        exe = dumpcap_path()
        if exe is None:
            raise CaptureError("--write needs dumpcap (Wireshark's capture program; apt package wireshark-common)")
        self.interface = route_interface(self.address)
        log = open(Path(self.dir) / "dumpcap.log", "wb")  # noqa: SIM115 - kept by the child
        try:
            # its own session: a Ctrl-C to the replay's process group must not cut the capture before the
            # replay's clean-up has stopped it properly
            self.proc = subprocess.Popen([exe, "-q", "-i", self.interface, "-f", f"host {self.address}", "-s", "0",
                                          "-w", str(self.raw)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CaptureError("dumpcap ended: " + self._log())
            if self.raw.exists() and self.raw.stat().st_size > 0 and "Capturing on" in self._log():
                time.sleep(0.2)  # the capture filter is in place once dumpcap says it captures
                return self
            time.sleep(0.05)
        self.stop()
        raise CaptureError("dumpcap did not start capturing: " + self._log())

    def _log(self) -> str:
        try:
            return (Path(self.dir) / "dumpcap.log").read_text(errors="replace").strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """End dumpcap (SIGINT by its PID, then SIGKILL if it lingers). Idempotent."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass

    def finish(self, keylog: str, settle: float = 0.3) -> dict:
        """Stop the capture and write ``output`` with ``keylog`` embedded; returns what was written."""
        time.sleep(settle)  # the last segments (FIN, close_notify) reach the capture
        self.stop()
        try:
            data = self.raw.read_bytes()
        except OSError as e:
            raise CaptureError(f"the capture was not written: {e}; {self._log()}") from e
        out = embed_keys(data, keylog)
        fd = os.open(self.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(out)
        lines = [ln for ln in keylog.splitlines() if ln.strip() and not ln.startswith("#")]
        return {"file": str(self.output), "interface": self.interface, "filter": f"host {self.address}",
                "bytes": len(out), "key_log_lines": len(lines)}

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
