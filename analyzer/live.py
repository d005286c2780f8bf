"""`acflow live`: analyse traffic as it arrives (I/O edge).

Packets come from `dumpcap -i IFACE -w -` (pcapng on a pipe; dumpcap is Wireshark's capture engine and runs
unprivileged when set up so), or from standard input (`--stdin`, e.g. `tcpdump -U -w - | acflow live --stdin`).
They go through the same driver as `acflow analyze` (analyzer/driver.py), a pipe chunk at a time, so memory stays flat.
Key log files are re-read whenever they grow, because clients write SSLKEYLOGFILE while they connect. The report
is rendered when the capture ends: Ctrl-C, `--duration` seconds, or end of input. `--write FILE` also keeps the
raw capture.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dissectors.pcapfile import PcapParser

from . import __version__
from .analyze import InputError, load_keys
from .driver import Analyzer


class _KeyFollower:
    """Re-reads key log files when they grow (only the new part) into ``add_keylog_text``."""

    def __init__(self, paths, add_keylog_text) -> None:
        self.paths = [Path(p) for p in paths or ()]
        self.add_keylog_text = add_keylog_text
        self.offsets = {p: 0 for p in self.paths}

    def poll(self) -> None:
        for p in self.paths:
            try:
                size = p.stat().st_size
            except OSError:
                continue
            off = self.offsets[p]
            if size > off:
                with open(p, "rb") as f:
                    f.seek(off)
                    data = f.read(size - off)
                # only whole lines: keep a partial last line for the next poll
                cut = data.rfind(b"\n") + 1
                if cut:
                    self.add_keylog_text(data[:cut].decode("utf-8", "replace"))
                    self.offsets[p] = off + cut


def run_live(*, interface, stdin, keylogs, rsa_keys, duration, fmt, output, write, show_secrets,
             capture_filter) -> int:
    from .report import render  # noqa: PLC0415

    try:
        keys, key_info = load_keys([], rsa_keys)
    except InputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return 4
    key_info["keylog_files"] = [str(p) for p in keylogs or ()]
    an = Analyzer(keys, key_info=key_info)
    follower = _KeyFollower(keylogs, an.add_keylog_text)
    follower.poll()
    proc = None
    if stdin:
        src = sys.stdin.buffer
        name = "<stdin>"
    else:
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:
            print("acflow live: dumpcap not found (install Wireshark's dumpcap, e.g. apt-get install tshark)",
                  file=sys.stderr)
            return 4
        cmd = [dumpcap, "-q", "-i", interface, "-w", "-", "-s", "0"]
        if capture_filter:
            cmd += ["-f", capture_filter]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        src = proc.stdout
        name = f"live:{interface}"
    sink = open(write, "wb") if write else None  # noqa: SIM115 - closed below
    parser = PcapParser()
    ci = an.start_capture(name)
    deadline = time.monotonic() + duration if duration else None
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    fd = src.fileno()
    last_report = time.monotonic()
    try:
        while not stop["now"]:
            if deadline is not None and time.monotonic() >= deadline:
                break
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                if proc is not None and proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            if sink is not None:
                sink.write(chunk)
            follower.poll()
            an.feed_events(parser.feed(chunk))
            if sys.stderr.isatty() and time.monotonic() - last_report > 1:
                last_report = time.monotonic()
                st = an.stats()
                sys.stderr.write(f"\racflow live: {ci.frames} frames, {st['tcp_connections']} TCP / "
                                 f"{st['dtls_flows']} DTLS flows")
                sys.stderr.flush()
        an.feed_events(parser.close())
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
            if proc.returncode not in (0, -15, None) and err and ci.frames == 0:
                print(f"acflow live: dumpcap failed: {err}", file=sys.stderr)
        if sink is not None:
            sink.close()
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
    # a partial last block on a live pipe is normal when the capture is stopped: not damage
    ci.errors = [e for e in ci.errors if not (stop["now"] or deadline) or "truncated" not in e]
    analysis = an.finish()
    text = render(analysis, fmt, version=__version__, show_secrets=show_secrets,
                  to_terminal=output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0

