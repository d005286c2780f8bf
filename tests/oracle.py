"""tshark as the test oracle: small helpers around `tshark` command lines (tests only)."""
from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BASE = ["tshark", "-n", "--disable-heuristic", "rdpmt_dtls", "--disable-heuristic", "udt_dtls"]


def tshark_fields(capture: Path, fields: list[str], display_filter: str = "", keylog: Path | None = None,
                  rsa_key: Path | None = None, extra: list[str] | None = None) -> list[list[str]]:
    cmd = [*BASE, "-r", str(capture)]
    if keylog:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    if rsa_key:
        cmd += ["-o", f'uat:rsa_keys:"{rsa_key}",""']
    cmd += extra or []
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


def tshark_follow_tls(capture: Path, stream: int, keylog: Path | None = None, rsa_key: Path | None = None,
                      client_ip: str = "198.18.0.2",
                      decode_as: list[str] | tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """Decrypted bytes of TCP stream `stream`, (client→server, server→client), via `-z follow,tls,raw`.

    Untabbed hex lines come from "Node 0", tab-indented ones from "Node 1"; which node is the client is read
    from the Node lines. TLS desegmentation is turned off, or tshark 4.0 drops records from the follow output.
    """
    # decode_as: tshark -d rules (a sample's facts.json "tshark_decode_as": TLS on a port tshark gives to another
    # protocol, e.g. 8009)
    cmd = [*BASE, "-r", str(capture), "-o", "tls.desegment_ssl_application_data:FALSE", "-q",
           *(x for rule in decode_as for x in ("-d", rule)), "-z", f"follow,tls,raw,{stream}"]
    if keylog:
        cmd[1:1] = ["-o", f"tls.keylog_file:{keylog}"]
    if rsa_key:
        cmd[1:1] = ["-o", f'uat:rsa_keys:"{rsa_key}",""']
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    node = {0: bytearray(), 1: bytearray()}
    node0_is_client = True
    in_body = False
    for line in out.splitlines():
        if line.startswith("Node 0:"):
            node0_is_client = line.split(":", 1)[1].strip().rsplit(":", 1)[0] == client_ip
            continue
        if line.startswith("Node 1:"):
            in_body = True
            continue
        if not in_body or line.startswith("="):
            continue
        if line.startswith("\t"):
            node[1] += bytes.fromhex(line.strip())
        elif line.strip():
            node[0] += bytes.fromhex(line.strip())
    c, s_ = (node[0], node[1]) if node0_is_client else (node[1], node[0])
    return bytes(c), bytes(s_)



@contextmanager
def pyshark_file(capture: Path, **options) -> Iterator:
    """A pyshark FileCapture of ``capture`` that leaves nothing behind. pyshark attaches asyncio's SafeChildWatcher
    to its event loop — a SIGCHLD handler that writes to that loop's self-pipe (the signal wakeup fd) — and never
    detaches it: every child process that ends later (the lab's, the replay's, tshark's) writes a byte into a pipe
    nobody reads, and once it is full each one is an "Exception ignored … BlockingIOError" (pytest's
    PytestUnraisableExceptionWarning). Here the capture gets an event loop of its own, and the capture, the watcher
    (its SIGCHLD handler and the wakeup fd go with it) and the loop are closed after it."""
    import pyshark  # noqa: PLC0415 - the oracle's own dependency, imported where it is used

    asyncio.set_event_loop(asyncio.new_event_loop())  # (its own loop, closed below: pyshark takes the current one)
    cap = pyshark.FileCapture(str(capture), **options)
    try:
        yield cap
    finally:
        cap.close()
        watcher = asyncio.get_child_watcher()
        watcher.close()
        asyncio.set_child_watcher(None)
        loop = getattr(cap, "eventloop", None)
        if loop is not None and not loop.is_closed():
            loop.close()
        asyncio.set_event_loop(None)
