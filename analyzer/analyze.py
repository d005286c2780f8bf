"""`acflow analyze`: read captures and keys (I/O edge), run the pipeline, build sessions, apply the rules, render.

Exit codes (documented in README.md): 0 analysed; 2 usage; 4 an input could not be read at all (not a capture,
unreadable key file); findings never change the exit code unless `--fail-on` is given.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from dissectors.keylog import KeyStore, load_rsa_private_key

from . import __version__
from .capture import CaptureError, CaptureFormatError, Frame, Secrets, read_capture_batches
from .model import Analysis, CaptureInfo
from .pipeline import Pipeline
from .sessions import build_sessions

EXIT_OK = 0
EXIT_INPUT = 4
TLS_KEYLOG_DSB = 0x544C534B


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


def analyze_paths(paths, keys: KeyStore, key_info: dict | None = None, inner_sink=None,
                  progress=None, on_pipeline=None, fast_lanes: bool = True) -> Analysis:
    """Analyse every capture in `paths` (in the order given, as one stream of frames per file)."""
    analysis = Analysis()
    pipe = Pipeline(keys, inner_sink=inner_sink, fast_lanes=fast_lanes)
    for path in paths:
        ci = CaptureInfo(path=str(path), keys=dict(key_info or {}))
        frames_before = pipe.frames
        analysis.captures.append(ci)
        try:
            feed = pipe.feed
            done = 0
            for batch in read_capture_batches(path):
                for ev in batch:
                    t = type(ev)
                    if t is Frame:  # the hot path
                        feed(ev)
                        continue
                    if t is Secrets:
                        if ev.kind == TLS_KEYLOG_DSB:
                            errs = keys.add_keylog_text(ev.data.decode("utf-8", "replace"))
                            ci.keys["embedded_secrets"] = ci.keys.get("embedded_secrets", 0) + 1
                            if errs:
                                ci.errors.append(f"embedded key log: {len(errs)} unusable line(s)")
                        continue
                    if t is CaptureError:
                        ci.errors.append(f"{ev.message} (at byte {ev.offset})")
                        continue
                # per batch: what the frames of this file were
                n = pipe.frames - done - frames_before
                if n:
                    if ci.first is None:
                        ci.first = next(ev.ts for ev in batch if type(ev) is Frame)
                    ci.frames += n
                    done += n
                    ci.last = pipe.last_ts
                    if progress is not None and (ci.frames >> 10) != ((ci.frames - n) >> 10):
                        progress(ci.frames)
        except CaptureFormatError as e:
            raise InputError(str(e)) from e
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    pipe.finish()
    if on_pipeline is not None:
        on_pipeline(pipe)
    analysis.sessions = build_sessions(pipe)
    from .rules import apply_rules  # noqa: PLC0415

    apply_rules(analysis, pipe)
    analysis.pipeline_stats = {"frames": pipe.frames, "undecodable": pipe.undecodable,
                               "tcp_connections": len(pipe.tcp), "dtls_flows": len(pipe.udp),
                               "evicted_flows": pipe.evicted}
    return analysis


def run_analyze(*, captures, keylogs, rsa_keys, fmt, output, verbose, show_secrets, export_inner) -> int:
    from .report import render  # noqa: PLC0415

    t0 = time.perf_counter()
    try:
        keys, key_info = load_keys(keylogs, rsa_keys)
        writer = None
        if export_inner:
            from .report.inner_pcap import InnerPcapWriter  # noqa: PLC0415

            writer = InnerPcapWriter(export_inner)
        progress = _progress() if sys.stderr.isatty() else None
        try:
            analysis = analyze_paths(captures, keys, key_info, inner_sink=writer.write if writer else None,
                                     progress=progress)
        finally:
            if writer is not None:
                writer.close()
            if progress is not None:
                progress(None)
    except InputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return EXIT_INPUT
    analysis.elapsed = time.perf_counter() - t0
    text = render(analysis, fmt, version=__version__, verbose=verbose, show_secrets=show_secrets,
                  to_terminal=output is None and sys.stdout.isatty())
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


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
