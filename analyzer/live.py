"""`acflow live`: analyse traffic as it arrives (I/O edge).

Packets come from `dumpcap -i IFACE -w -` (pcapng on a pipe; dumpcap is Wireshark's capture engine and runs
unprivileged when set up so), or from standard input (`--stdin`, e.g. `tcpdump -U -w - | acflow live --stdin`).
They go through the same driver as `acflow analyze` (analyzer/driver.py), a pipe chunk at a time, so memory stays
flat. Key log files are followed as they grow (a client writes SSLKEYLOGFILE while it connects; a key log that does
not exist yet is waited for): records whose keys are not there yet are held and decrypted when the key lines
arrive (dissectors/tls/connection.py KeyWait).

While the capture runs, the session model is snapshotted about twice a second (`Analyzer.snapshot`) and what
changed is shown (analyzer/live_view.py): rich Live on a terminal, one line per event otherwise, or JSON lines
(`--format jsonl`). The report is rendered when the capture ends: Ctrl-C (a second Ctrl-C aborts, exit 130),
`--duration` seconds, or end of input. `--write FILE` keeps the capture as pcapng with the keys embedded (a
Decryption Secrets Block with the key log lines read and the derived DTLS master secrets), so that the file alone
re-analyses to the same result.

Exit codes: 0 the capture ran and was reported; 4 something prevents capturing (checked before capturing: dumpcap
missing, no such interface, no permission, a key log whose directory does not exist, an output that cannot be
written); 130 aborted by a second Ctrl-C.
"""
from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from dissectors.keylog import CLIENT_RANDOM
from dissectors.pcapfile import PcapParser
from dissectors.tls.connection import KeyWait

from . import __version__
from .analyze import InputError, load_keys
from .driver import TLS_KEYLOG_DSB, Analyzer
from .live_view import EventDiffer, JsonlView, LineView, RichView
from .outputs import AtomicFile, OutputError, check_outputs, is_stdio

EXIT_OK = 0
EXIT_INPUT = 4
EXIT_ABORTED = 130

SNAPSHOT_EVERY = 0.5  # seconds between two snapshots of the session model (more when a snapshot is slow)
KEYLOG_POLL = 0.2  # seconds between two looks at the key log files
START_TIMEOUT = 10.0  # dumpcap must start writing within this many seconds
DRAIN_TIMEOUT = 5.0  # after Ctrl-C: how long dumpcap may take to hand over what it captured
KEY_WAIT_LIMIT = 32 << 20  # bytes of records held waiting for keys, all connections together
MAX_KEYLOG_READ = 4 << 20  # bytes of a key log read per look (a key log line is < 300 bytes)


class LiveError(Exception):
    """Something that prevents capturing: one line for the user, exit 4."""


class _KeyFollower:
    """Follows key log files as they grow (only the new whole lines), into ``an.add_keylog``. A file that does not
    exist yet is waited for; one that shrinks (rewritten) is read again from the start."""

    def __init__(self, paths, an: Analyzer) -> None:
        self.paths = [Path(p) for p in paths or ()]
        self.an = an
        self.offsets = {p: 0 for p in self.paths}
        self.entries = {p: 0 for p in self.paths}
        self.errors: list[str] = []

    def poll(self) -> int:
        """Read what was added; returns the number of new entries."""
        new = 0
        for p in self.paths:
            try:
                size = p.stat().st_size
            except OSError:
                continue
            off = self.offsets[p]
            if size < off:
                off = 0
            if size > off:
                try:
                    with open(p, "rb") as f:
                        f.seek(off)
                        data = f.read(min(size - off, MAX_KEYLOG_READ))
                except OSError:
                    continue
                cut = data.rfind(b"\n") + 1  # only whole lines: keep a partial last line for the next poll
                if cut:
                    text = data[:cut].decode("utf-8", "replace")
                    n, errors = self.an.add_keylog(text)
                    self.entries[p] += n
                    new += n
                    self.errors += [f"{p}: {e}" for e in errors[:20]]
                off += cut
            self.offsets[p] = off
        return new

    def describe(self) -> list[str]:
        out = []
        for p in self.paths:
            if not p.exists():
                out.append(f"{p}: waiting for the file to appear")
            else:
                out.append(f"{p}: {self.entries[p]} entries")
        return out


# -- checks before capturing --------------------------------------------------------------------------------
def check_before_capture(*, interface, stdin, keylogs, output, write) -> str | None:
    """What prevents capturing, as a message (None: go). The interface itself is checked by dumpcap (below)."""
    try:
        for k in keylogs or ():
            k = Path(k)
            if k.exists():
                if k.is_dir():
                    raise LiveError(f"key log {k} is a directory")
                if not os.access(k, os.R_OK):
                    raise LiveError(f"key log {k} is not readable")
            elif not (k.parent if str(k.parent) else Path(".")).is_dir():
                raise LiveError(f"key log {k}: directory {k.parent} does not exist (a key log that does not exist "
                                "yet is waited for, but its directory must exist)")
        try:  # the shared output checks (analyzer/outputs.py): a missing directory, an input overwritten…
            check_outputs({"report": output if output is not None else "-", "--write capture": write},
                          inputs=[*(keylogs or ())])
        except OutputError as e:
            raise LiveError(str(e)) from e
        if not stdin:
            if shutil.which("dumpcap") is None:
                raise LiveError("dumpcap not found (install Wireshark's dumpcap, e.g. apt-get install tshark)")
            if sys.platform.startswith("linux") and interface != "any" and not interface.isdigit() \
                    and Path("/sys/class/net").is_dir() and not (Path("/sys/class/net") / interface).exists():
                raise LiveError(f"no network interface named {interface!r} (see 'ip link' or 'dumpcap -D')")
    except LiveError as e:
        return str(e)
    return None


def _dumpcap_error(stderr: str, interface: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    msg = next((ln[len("dumpcap: "):] for ln in lines if ln.startswith("dumpcap: ")), None) or \
        next((ln for ln in lines if not ln.startswith("Capturing on")), "dumpcap exited")
    if "permission" in stderr.lower() or "not permitted" in stderr.lower():
        msg += " (run as root, or give dumpcap the capture capabilities: dpkg-reconfigure wireshark-common)"
    return f"cannot capture on {interface}: {msg}"


def _start_dumpcap(interface: str, capture_filter: str | None):
    """dumpcap writing pcapng to a pipe; returns (process, first bytes) once it writes, LiveError if it fails."""
    cmd = [shutil.which("dumpcap") or "dumpcap", "-q", "-i", interface, "-w", "-", "-s", "0"]
    if capture_filter:
        cmd += ["-f", capture_filter]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                first = os.read(fd, 1 << 16)
                if first:
                    return proc, first
                break
            if proc.poll() is not None:
                break
    except BaseException:  # Ctrl-C while it starts: do not leave it running
        _stop(proc)
        raise
    _stop(proc)
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.returncode is None or (not err.strip() and proc.returncode == 0):
        raise LiveError(f"cannot capture on {interface}: dumpcap did not start writing within {START_TIMEOUT:.0f} s")
    raise LiveError(_dumpcap_error(err, interface))


def _stop(proc, sig=signal.SIGTERM, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- --write: the capture with its keys embedded -------------------------------------------------------------
def embedded_key_lines(an: Analyzer, follower: _KeyFollower) -> list[str]:
    """The key log lines read, the TLS master secrets acflow recovered otherwise (RSA key), and for each DTLS
    handshake its master secret as a CLIENT_RANDOM line (derived from the CONNECT exchange)."""
    from .keys_export import collect  # noqa: PLC0415

    lines, _options = collect(an.pipeline, an.keys)
    seen = set(lines)
    for flow in an.pipeline.udp.values():
        dtls = flow.dtls
        cr, ms = dtls.client_random, dtls.master_secret
        if cr and ms:
            line = f"{CLIENT_RANDOM} {bytes(cr).hex()} {bytes(ms).hex()}"
            if line not in seen:
                seen.add(line)
                lines.append(line)
    return lines


def _dsb(lines: list[str], little: bool) -> bytes:
    """A pcapng Decryption Secrets Block holding an NSS key log."""
    data = ("\n".join(lines) + "\n").encode()
    pad = (-len(data)) % 4
    total = 12 + 8 + len(data) + pad
    e = "<" if little else ">"
    return (struct.pack(e + "II", 0x0000000A, total) + struct.pack(e + "II", TLS_KEYLOG_DSB, len(data)) + data
            + b"\0" * pad + struct.pack(e + "I", total))


def _pcap_to_pcapng(f, o, lines: list[str]) -> bool:
    """Copy the pcap stream ``f`` (at its start) to ``o`` as pcapng: section header, the key log block, one interface,
    one Enhanced Packet Block per record. False if ``f`` is not a pcap stream."""
    head = f.read(24)
    if len(head) < 24:
        return False
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return False
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    snaplen, linktype = struct.unpack(e + "II", head[16:24])
    o.write(struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))
    o.write(_dsb(lines, True))
    opts = struct.pack("<HHB3x", 9, 1, 9 if nanos else 6) + struct.pack("<HH", 0, 0)  # if_tsresol, end of options
    idb = struct.pack("<HHI", linktype & 0xFFFF, 0, snaplen) + opts
    o.write(struct.pack("<II", 1, 12 + len(idb)) + idb + struct.pack("<I", 12 + len(idb)))
    while True:
        rh = f.read(16)
        if len(rh) < 16:
            break
        sec, frac, incl, orig = struct.unpack(e + "IIII", rh)
        data = f.read(incl)
        if len(data) < incl:
            break
        ts = sec * (10**9 if nanos else 10**6) + frac
        pad = (-incl) % 4
        total = 32 + incl + pad
        o.write(struct.pack("<IIIIIII", 6, total, 0, ts >> 32, ts & 0xFFFFFFFF, incl, orig) + data + b"\0" * pad
                + struct.pack("<I", total))
    return True


def write_with_keys(raw: Path, out: Path, lines: list[str]) -> str | None:
    """``out`` = the capture ``raw`` with a Decryption Secrets Block holding ``lines`` after its section header (a
    pcap stream is written as pcapng for that). Returns a warning, or None."""
    with open(raw, "rb") as f:
        head = f.read(12)
        f.seek(0)
        if lines and head[:4] != b"\x0a\x0d\x0d\x0a":
            with open(out, "wb") as o:
                if _pcap_to_pcapng(f, o, lines):
                    return None
            f.seek(0)
            with open(out, "wb") as o:
                shutil.copyfileobj(f, o, 1 << 20)
            return "the capture is neither pcapng nor pcap: kept as it is, keys not embedded"
        if len(head) < 12 or not lines:
            with open(out, "wb") as o:
                shutil.copyfileobj(f, o, 1 << 20)
            return None
        little = head[8:12] == b"\x4d\x3c\x2b\x1a"
        (shb_len,) = struct.unpack(("<" if little else ">") + "I", head[4:8])
        shb = f.read(shb_len)
        with open(out, "wb") as o:
            o.write(shb)
            o.write(_dsb(lines, little))
            shutil.copyfileobj(f, o, 1 << 20)
    return None


# -- the capture loop ---------------------------------------------------------------------------------------
def _key_state(an: Analyzer) -> dict:
    """Connection -> (state, text, time) for the TLS connections whose keys matter: waiting for them, decrypting
    after waiting, or unmatchable (ClientHello before the capture)."""
    out = {}
    for conn in an.pipeline.tcp.values():
        if not conn.is_tls:
            continue
        name = f"tcp.stream {conn.index}"
        ch = conn.client_hello
        if conn.tls.waiting_for_keys and ch is not None:
            out[name] = ("waiting", f"waiting for keys for ClientHello frame {ch.frame} ({name}, client random "
                                    f"{bytes(ch.random).hex()[:16]}…)", ch.ts)
        elif ch is None and conn.started_before_capture:
            out[name] = ("unmatchable", f"{name} started before the capture: its keys cannot be matched; start "
                                        "acflow live before the client connects", conn.first_ts)
        elif conn.decrypted:
            out[name] = ("decrypting", f"{name}: keys found, decrypting", ch.ts if ch is not None else None)
    return out


def _make_view(fmt: str, output):
    if fmt == "jsonl":
        stream = open(output, "w", encoding="utf-8") if output and not is_stdio(output) else sys.stdout  # noqa: SIM115
        return JsonlView(stream)
    if sys.stderr.isatty():
        from rich.console import Console  # noqa: PLC0415

        return RichView(Console(stderr=True))
    return LineView(sys.stderr)


def run_live(*, interface, stdin, keylogs, rsa_keys, duration, fmt, output, write, show_secrets,
             capture_filter) -> int:
    problem = check_before_capture(interface=interface, stdin=stdin, keylogs=keylogs, output=output, write=write)
    if problem is not None:
        print(f"acflow live: {problem}", file=sys.stderr)
        return EXIT_INPUT
    try:
        keys, key_info = load_keys([], rsa_keys)
    except InputError as e:
        print(f"acflow live: {e}", file=sys.stderr)
        return EXIT_INPUT
    key_info["keylog_files"] = [str(p) for p in keylogs or ()]
    an = Analyzer(keys, key_info=key_info, key_wait=KeyWait(KEY_WAIT_LIMIT) if keylogs else None)
    follower = _KeyFollower(keylogs, an)
    state = {"stop": False}

    def on_signal(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True  # the capture loop stops, then reports

    old = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    proc = None
    raw = Path(str(write) + ".part") if write else None
    sink = None
    view = None
    try:
        first = b""
        if stdin:
            fd = sys.stdin.buffer.fileno()
            name = "<stdin>"
        else:
            try:
                proc, first = _start_dumpcap(interface, capture_filter)
            except LiveError as e:
                print(f"acflow live: {e}", file=sys.stderr)
                return EXIT_INPUT
            fd = proc.stdout.fileno()
            name = f"live:{interface}"
        sink = open(raw, "wb") if raw else None  # noqa: SIM115 - closed below
        view = _make_view(fmt, output)
        an_done = _capture(an, follower, fd, first, proc, sink, view, name, duration, state)
        analysis, doc = an_done
        if sink is not None:
            sink.close()
            sink = None
            warning = write_with_keys(raw, Path(write), embedded_key_lines(an, follower))
            raw.unlink()
            if warning:
                print(f"acflow live: {warning}", file=sys.stderr)
        return _report(analysis, doc, fmt, output, show_secrets, view)
    except KeyboardInterrupt:
        print("acflow live: aborted", file=sys.stderr)
        return EXIT_ABORTED
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        if proc is not None:
            _stop(proc, signal.SIGTERM, 2.0)
        if sink is not None:
            sink.close()
        if raw is not None and raw.exists():
            raw.unlink()
        if view is not None and isinstance(view, RichView):
            view.close()


def _capture(an: Analyzer, follower: _KeyFollower, fd: int, first: bytes, proc, sink, view, name, duration,
             state):
    from .report.json_report import to_document  # noqa: PLC0415

    parser = PcapParser()
    ci = an.start_capture(name)
    differ = EventDiffer()
    now = time.monotonic()
    deadline = now + duration if duration else None
    next_snap = now + SNAPSHOT_EVERY
    next_keys = now
    drain_until = None  # stopping: read what dumpcap still hands over until EOF or this time

    def feed(chunk: bytes) -> None:
        if sink is not None:
            sink.write(chunk)
        an.feed_events(parser.feed(chunk))

    def show(final: bool = False) -> dict:
        # a capture on an interface runs on the wall clock: silence since the last packet is time too
        snap = an.snapshot(time.time() if proc is not None else None) if not final else analysis_box[0]
        doc = to_document(snap, version=__version__)
        ks = _key_state(an)
        events = differ.diff(doc, ks, final=final)
        view.show(events, doc, {"capture": name, "frames": ci.frames, "keylogs": follower.describe(),
                                "key_state": ks, "held": an.pipeline.held_datagrams, "display": differ.display,
                                "findings": differ.shown_findings})
        return doc

    analysis_box: list = [None]
    view.started(name)
    follower.poll()
    ci.keys["entries"] = sum(follower.entries.values())
    if first:
        feed(first)
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            state["stop"] = True
        if state["stop"] and drain_until is None:
            if not isinstance(view, RichView):
                sys.stderr.write("acflow live: stopping: reading what was captured, then the report (Ctrl-C again "
                                 "to abort)\n")
                sys.stderr.flush()
            if proc is None:
                break
            drain_until = now + DRAIN_TIMEOUT
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # dumpcap hands over what it captured, then ends the stream
        if drain_until is not None and now >= drain_until:
            break
        try:
            ready, _, _ = select.select([fd], [], [], 0.1)
        except InterruptedError:
            continue
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            feed(chunk)
        elif proc is not None and proc.poll() is not None and drain_until is None:
            break
        now = time.monotonic()
        if now >= next_keys:
            next_keys = now + KEYLOG_POLL
            if follower.poll():
                ci.keys["entries"] = sum(follower.entries.values())
        if now >= next_snap:
            t0 = time.monotonic()
            show()
            cost = time.monotonic() - t0
            next_snap = time.monotonic() + max(SNAPSHOT_EVERY, 10 * cost)  # a snapshot takes < 10% of the time
    an.feed_events(parser.close())
    if proc is not None and not state["stop"] and proc.poll() not in (None, 0):  # dumpcap ended by itself
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        sys.stderr.write(f"acflow live: capture stopped: {_dumpcap_error(err, name)}\n")
    follower.poll()
    ci.keys["entries"] = sum(follower.entries.values())
    if follower.errors:
        ci.keys["keylog_errors"] = follower.errors[:20]
    # a partial last block on a live pipe is normal when the capture is stopped: not damage
    ci.errors = [e for e in ci.errors if not state["stop"] or "truncated" not in e]
    analysis_box[0] = an.finish()
    doc = show(final=True)
    return analysis_box[0], doc


def _report(analysis, doc, fmt, output, show_secrets, view) -> int:
    from .report import render  # noqa: PLC0415
    from .report.json_report import to_document  # noqa: PLC0415

    if isinstance(view, RichView):
        view.close()
    if fmt == "jsonl":
        view.close(to_document(analysis, version=__version__, show_secrets=show_secrets))
        if view.stream is not sys.stdout:
            view.stream.close()
        return EXIT_OK
    text = render(analysis, fmt, version=__version__, show_secrets=show_secrets,
                  to_terminal=output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    if output and not is_stdio(output):
        with AtomicFile(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK
