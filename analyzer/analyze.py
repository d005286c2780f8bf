"""`acflow analyze`: the I/O edge that reads captures and key files into the driver (analyzer/driver.py), then renders.

Exit codes (documented in README.md): 0 analysed, whatever was found; 1 with `--fail-on LEVEL`, a finding at or above
LEVEL is in the report; 2 usage; 4 an input could not be read at all (not a capture, unreadable key file).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from dissectors.keylog import KeyStore, load_rsa_private_key

from . import __version__
from .capture import CaptureFormatError, read_capture_batches
from .driver import Analyzer
from .model import Analysis

EXIT_OK = 0
EXIT_FINDINGS = 1  # --fail-on: a finding at or above the level
EXIT_USAGE = 2
EXIT_INPUT = 4
SEVERITY_LEVEL = {"info": 1, "warning": 2, "error": 3}


class InputError(Exception):
    """An input file that cannot be used at all (the message says which and why)."""


def load_keys(keylogs, rsa_keys) -> tuple[KeyStore, dict]:
    store = KeyStore()
    info: dict = {"keylog_files": [], "rsa_keys": [], "keylog_errors": []}
    for path in keylogs or ():
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise InputError(f"cannot read key log {path}: {e.strerror or e}") from e
        errors = store.add_keylog_text(text)
        info["keylog_files"].append(str(path))
        info["keylog_errors"] += [f"{path}: {e}" for e in errors[:20]]
    for path in rsa_keys or ():
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read RSA key {path}: {e.strerror or e}") from e
        try:
            key = load_rsa_private_key(data)
        except Exception as e:  # noqa: BLE001 - any parse failure is the user's input problem
            raise InputError(f"{path}: not a usable RSA private key (PEM/DER, PKCS#1/PKCS#8): {e}") from e
        store.add_rsa_private_key(key)
        info["rsa_keys"].append(str(path))
    info["entries"] = len(store)
    return store, info


def feed_capture(an: Analyzer, path, progress=None) -> None:
    """Read the capture file ``path`` (pcap/pcapng, plain or gzip) into ``an`` as one capture.
    ``progress(frames)`` is called about every 1024 frames. Raises InputError if it cannot be read at all."""
    ci = an.start_capture(str(path))
    try:
        for batch in read_capture_batches(path):
            n = ci.frames
            an.feed_events(batch)
            if progress is not None and (ci.frames >> 10) != (n >> 10):
                progress(ci.frames)
    except CaptureFormatError as e:
        raise InputError(str(e)) from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    an.end_capture()


def analyze_paths(paths, keys: KeyStore, key_info: dict | None = None, inner_sink=None,
                  progress=None, on_pipeline=None, fast_lanes: bool = True, gateways=None) -> Analysis:
    """Analyse every capture in ``paths``, in the order given, through one driver (a session may span files;
    frames and flows are numbered per file). ``on_pipeline(pipeline)`` is called once the analysis is done, for
    callers that need more than the session model (`acflow keys`: the derived DTLS keys)."""
    an = Analyzer(keys, key_info=key_info, inner_sink=inner_sink, fast_lanes=fast_lanes, gateways=gateways)
    for path in paths:
        feed_capture(an, path, progress)
    analysis = an.finish()
    if on_pipeline is not None:
        on_pipeline(an.pipeline)
    return analysis


def select_sessions(analysis: Analysis, *, session_ids=(), clients=(), gateways=(), since=None,
                    until=None) -> dict | None:
    """Keep the sessions that match every filter given (ids, client addresses, a time window the session overlaps);
    capture-wide findings and other traffic stay. `gateways` (GatewaySpec, --gateway) already chose the sessions
    during the analysis (its evidence role, analyzer/evidence.py); here it filters once more by the session's
    gateway address and port. Returns what was applied (None: no filter)."""
    from .evidence import split_endpoint  # noqa: PLC0415

    if not (session_ids or clients or gateways or since is not None or until is not None):
        return None
    total = len(analysis.sessions)
    ids = {i.strip() for v in session_ids for i in v.split(",") if i.strip()}
    want = {_norm_addr(c) for c in clients}

    def keep(s) -> bool:
        if ids and s.id not in ids:
            return False
        if want and _norm_addr(split_endpoint(s.client)[0]) not in want:
            return False
        if gateways and not any(g.matches(*split_endpoint(s.gateway)) for g in gateways):
            return False
        a, b = s.start, s.end if s.end is not None else s.start
        if since is not None and (b is None or b < since):
            return False
        return not (until is not None and (a is None or a > until))

    analysis.sessions = [s for s in analysis.sessions if keep(s)]
    out: dict = {"shown": len(analysis.sessions), "total": total}
    if ids:
        out["session"] = sorted(ids)
    if clients:
        out["client"] = list(clients)
    if gateways:
        out["gateway"] = [g.address if g.port is None else
                          (f"[{g.address}]:{g.port}" if ":" in g.address else f"{g.address}:{g.port}")
                          for g in gateways]
    if since is not None:
        out["since"] = since
    if until is not None:
        out["until"] = until
    return out


def _norm_addr(text: str) -> str:
    import ipaddress  # noqa: PLC0415

    t = text.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        return t.lower()


def fails(analysis: Analysis, level: str | None) -> bool:
    """--fail-on: a finding (of a reported session, or capture-wide) at or above `level`."""
    if not level:
        return False
    floor = SEVERITY_LEVEL[level]
    found = [f for s in analysis.sessions for f in s.findings] + list(analysis.findings)
    return any(SEVERITY_LEVEL.get(f.severity, 0) >= floor for f in found)


def run_analyze(*, captures, keylogs, rsa_keys, fmt, output, verbose, show_secrets, export_inner,
                gateways=(), summary=False, fail_on=None, session_ids=(), clients=(), since=None, until=None,
                tz=None) -> int:
    """`since`/`until`: epoch seconds, or the text of --since/--until (read in `tz`, a time of day on the
    capture's first day); `tz`: a tzinfo or a --tz name."""
    import os  # noqa: PLC0415

    from .report import render  # noqa: PLC0415
    from .timefmt import parse_time, parse_tz  # noqa: PLC0415

    if tz is None or isinstance(tz, str):
        tz = parse_tz(tz)

    try:
        keys, key_info = load_keys(keylogs, rsa_keys)
        writer = None
        if export_inner:
            from .report.inner_pcap import InnerPcapWriter  # noqa: PLC0415

            writer = InnerPcapWriter(export_inner)
        progress = _progress() if sys.stderr.isatty() else None
        try:
            analysis = analyze_paths(captures, keys, key_info, inner_sink=writer.write if writer else None,
                                     progress=progress, gateways=gateways)
        finally:
            if writer is not None:
                writer.close()
            if progress is not None:
                progress(None)
    except InputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return EXIT_INPUT
    firsts = [c.first for c in analysis.captures if c.first is not None]
    try:
        window = [parse_time(t, tz, min(firsts) if firsts else None) if isinstance(t, str) else t
                  for t in (since, until)]
    except ValueError as e:
        print(f"acflow: --since/--until: {e}", file=sys.stderr)
        return EXIT_USAGE
    filters = select_sessions(analysis, session_ids=session_ids, clients=clients, gateways=gateways,
                              since=window[0], until=window[1])
    color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    text = render(analysis, fmt, version=__version__, verbose=verbose, show_secrets=show_secrets,
                  to_terminal=color, tz=tz, summary=summary, filters=filters)
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_FINDINGS if fails(analysis, fail_on) else EXIT_OK


def _progress():
    state = {"last": 0.0}

    def cb(n):
        now = time.monotonic()
        if n is None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            return
        if now - state["last"] > 0.2:
            state["last"] = now
            sys.stderr.write(f"\racflow: {n} frames read…")
            sys.stderr.flush()

    return cb
