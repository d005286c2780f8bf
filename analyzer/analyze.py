"""`acflow analyze`: the I/O edge that reads captures and key files into the driver (analyzer/driver.py), then renders.

Exit codes (documented in README.md): 0 analysed, whatever was found; 1 with `--fail-on LEVEL`, a finding at or above
LEVEL is in the report; 2 usage; 4 an input could not be read at all (not a capture, unreadable key file).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from dissectors.keylog import KeyStore, load_rsa_private_key
from dissectors.pcapfile import Frame

from . import __version__
from .archive import expand_archives, read_input, split_member
from .capture import CaptureFormatError, read_capture_batches, read_stream_batches
from .collector import few_collections
from .driver import Analyzer
from .model import Analysis
from .outputs import STDIO, AtomicFile, OutputError, check_outputs, is_stdio, say_interrupted

EXIT_OK = 0
EXIT_FINDINGS = 1  # --fail-on: a finding at or above the level (analyzer/selection.py)
EXIT_USAGE = 2
EXIT_INPUT = 4


class InputError(Exception):
    """An input file that cannot be used at all (the message says which and why)."""


class AnalysisTimeout(Exception):
    """The analysis went past its deadline (`acflow batch --task-timeout`); the message says how far it got."""


def load_keys(keylogs, rsa_keys) -> tuple[KeyStore, dict]:
    store = KeyStore()
    info: dict = {"keylog_files": [], "rsa_keys": [], "keylog_errors": []}
    for path in keylogs or ():
        try:  # a file or an archive member, compressed or not (analyzer/archive.py)
            text = read_input(path).decode("utf-8", errors="replace")
        except OSError as e:
            raise InputError(f"cannot read key log {path}: {e.strerror or e}") from e
        except ValueError as e:  # a member that needs a password, a key log over 256 MiB
            raise InputError(f"cannot read key log {path}: {e}") from e
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


def feed_capture(an: Analyzer, path, progress=None, deadline: float | None = None,
                 skip_interfaces: frozenset = frozenset()) -> None:
    """Read the capture file ``path`` (pcap/pcapng, plain or gzip) into ``an`` as one capture.
    ``progress(frames)`` is called about every 1024 frames; ``-`` reads standard input. Raises InputError if it
    cannot be read at all, AnalysisTimeout when `time.monotonic()` passes ``deadline`` (checked between the
    reader's batches of frames). ``skip_interfaces``: pcapng interface ids whose frames are left out (the far side
    of a capture that holds two points of one path: analyzer/both_sides.py)."""
    stdin = is_stdio(path)
    ci = an.start_capture("<stdin>" if stdin else str(path))
    try:
        for batch in (read_stream_batches(sys.stdin.buffer) if stdin else read_capture_batches(path)):
            if skip_interfaces:
                batch = [ev for ev in batch if type(ev) is not Frame or ev.interface not in skip_interfaces]
            n = ci.frames
            an.feed_events(batch)
            if progress is not None and (ci.frames >> 10) != (n >> 10):
                progress(ci.frames)
            if deadline is not None and time.monotonic() > deadline:
                raise AnalysisTimeout(f"stopped at frame {ci.frames} of {path}")
    except CaptureFormatError as e:
        raise InputError(str(e)) from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    an.end_capture()


@few_collections()
def analyze_paths(paths, keys: KeyStore, key_info: dict | None = None, inner_sink=None,
                  progress=None, on_pipeline=None, fast_lanes: bool = True, gateways=None,
                  deadline: float | None = None, skip_interfaces: frozenset = frozenset()) -> Analysis:
    """Analyse every capture in ``paths``, in the order given, through one driver (a session may span files;
    frames and flows are numbered per file). ``on_pipeline(pipeline)`` is called once the analysis is done, for
    callers that need more than the session model (`acflow keys`: the derived DTLS keys). ``deadline``: a
    `time.monotonic()` value past which reading stops with AnalysisTimeout."""
    an = Analyzer(keys, key_info=key_info, inner_sink=inner_sink, fast_lanes=fast_lanes, gateways=gateways)
    for path in paths:
        feed_capture(an, path, progress, deadline, skip_interfaces)
    analysis = an.finish()
    if on_pipeline is not None:
        on_pipeline(an.pipeline)
    return analysis


def expand_directories(captures) -> tuple[list, str | None]:
    """``captures`` with each directory replaced by the capture files below it (their names end in .pcap,
    .pcapng, .cap, compressed or not, or are tcpdump's numbered ring files: `acflow batch`'s `discover`): a ring
    buffer's folder given as one argument. (captures, problem): problem when a directory holds no capture."""
    import os  # noqa: PLC0415

    out: list = []
    for c in captures:
        if is_stdio(c) or not os.path.isdir(c):
            out.append(c)
            continue
        from .batch import discover  # noqa: PLC0415

        found = discover([c], expand=False)  # archives in it: expanded with their key logs by run_analyze
        if not found:
            return out, f"{c}: a directory without capture files (.pcap, .pcapng, .cap, also gzip-compressed)"
        out += [type(c)(f) if isinstance(c, os.PathLike) else f for f in found]
    return out, None


def short_name(path) -> str:
    """A capture's name for a line on standard error: the file's name, or a member's name inside its archive."""
    import os  # noqa: PLC0415

    where = split_member(path)
    return where[1] if where is not None else os.path.basename(str(path))


def stdin_problem(captures) -> str | None:
    """Why the captures named cannot include standard input ('-') as given, or None."""
    n = sum(1 for c in captures if is_stdio(c))
    if n > 1:
        return "standard input ('-') can be read as one capture only"
    if n and sys.stdin.isatty():
        return "the capture '-' is standard input, which is a terminal: pipe a capture into acflow"
    return None


@few_collections()
def run_analyze(*, captures, keylogs, rsa_keys, fmt, output, verbose, show_secrets, export_inner,
                gateways=(), summary=False, fail_on=None, session_ids=(), clients=(), users=(), since=None,
                until=None, tz=None, jobs=1, other_side=None, exit_when_done: bool = False) -> int:
    """Filters, --summary, --fail-on, --tz: analyzer/selection.py and the renderers (issue #17). ``exit_when_done``
    (the command line): end the process once the report is out, see `exit_now`."""
    import os  # noqa: PLC0415

    from .report import render, render_pieces  # noqa: PLC0415
    from .selection import fails, select_sessions  # noqa: PLC0415
    from .timefmt import parse_tz  # noqa: PLC0415

    tz = parse_tz(tz) if tz is None or isinstance(tz, str) else tz

    given = [c for c in captures if not is_stdio(c)]
    captures, problem = expand_directories(captures)
    if problem:
        print(f"acflow: {problem}", file=sys.stderr)
        return EXIT_INPUT
    # a support case's zip or tar: the captures in it, and the key logs in it used as if given with --keylog
    found = expand_archives(captures, stdio=STDIO)
    for note in found.notes:
        print(f"acflow: {note}", file=sys.stderr)
    if found.problem:
        print(f"acflow: {found.problem}", file=sys.stderr)
        return EXIT_INPUT
    captures = found.captures
    keylogs = [*(keylogs or ()), *(k for k in found.keylogs if k not in (keylogs or ()))]
    problem = stdin_problem(captures)
    if problem:
        print(f"acflow: {problem}", file=sys.stderr)
        return EXIT_INPUT
    if isinstance(other_side, (list, tuple)):
        other_side = list(other_side) or None
    elif other_side is not None:
        other_side = [other_side]
    if other_side is not None:
        if len(captures) != 1 or is_stdio(captures[0]) or any(is_stdio(o) for o in other_side):
            print("acflow: --other-side compares two capture points: give one capture file to analyse (not "
                  "standard input)", file=sys.stderr)
            return EXIT_USAGE
        other_side, problem = expand_directories(other_side)
        if problem:
            print(f"acflow: --other-side {problem}", file=sys.stderr)
            return EXIT_INPUT
        if len(other_side) > 1:
            from .capture import in_time_order  # noqa: PLC0415

            other_side = in_time_order(other_side)[0]
    try:
        # every output is checked before any work: a report is never lost to a typo after a long analysis
        check_outputs({"report": output if output is not None else "-", "inner packets": export_inner},
                      inputs=[*given, *captures, *(keylogs or ()), *(rsa_keys or ()), *(other_side or ())])
    except OutputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return EXIT_INPUT
    if len(captures) > 1 and not any(is_stdio(c) for c in captures):
        # several files: the pieces of one capture (a ring buffer), read in the order they were written
        from .capture import in_time_order  # noqa: PLC0415

        ordered, moved = in_time_order(list(captures))
        if moved:
            names = [short_name(c) for c in ordered]
            print("acflow: reading the captures in the time order of their first packets: "
                  + ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else ""),
                  file=sys.stderr)
            captures = ordered
    progress = None
    inner = None
    try:
        try:
            keys, key_info = load_keys(keylogs, rsa_keys)
            writer = None
            if export_inner:
                from .report.inner_pcap import InnerPcapWriter  # noqa: PLC0415

                inner = AtomicFile(export_inner, "wb")
                writer = InnerPcapWriter(inner)
            progress = _progress() if sys.stderr.isatty() else None
            points = None
            if other_side is None and len(captures) == 1 and not is_stdio(captures[0]):
                from .both_sides import two_points  # noqa: PLC0415

                points = two_points(captures[0])  # one file, a firewall's two interfaces
            if points is not None:  # one side analysed (one process: its frames are picked by interface)
                analysis = analyze_paths(captures, keys, key_info, inner_sink=writer.write if writer else None,
                                         progress=progress, gateways=gateways,
                                         skip_interfaces=frozenset({points.far}))
            elif jobs == 1 or any(is_stdio(c) for c in captures):  # standard input is read once: one process
                analysis = analyze_paths(captures, keys, key_info, inner_sink=writer.write if writer else None,
                                         progress=progress, gateways=gateways)
            else:  # --jobs N / auto (None): analyzer/parallel.py
                from .parallel import analyze_with_jobs  # noqa: PLC0415

                analysis = analyze_with_jobs(captures, keylogs, rsa_keys, keys, key_info, jobs,
                                             inner_sink=writer.write if writer else None, progress=progress,
                                             gateways=gateways, warn=lambda m: print(f"acflow: {m}", file=sys.stderr))
        except InputError as e:
            if progress is not None:
                progress(None)
            print(f"acflow: {e}", file=sys.stderr)
            return EXIT_INPUT
        if progress is not None:
            progress(None)
        if points is not None:
            from .both_sides import attach_path, two_points_finding  # noqa: PLC0415

            analysis.findings.append(two_points_finding(points))
            attach_path(analysis, points.report, points.names)
        if other_side is not None:
            from .both_sides import attach_other_side  # noqa: PLC0415
            from .capture import CaptureFormatError  # noqa: PLC0415

            try:
                attach_other_side(analysis, captures[0], other_side)
            except (OSError, CaptureFormatError) as e:
                where = f" {other_side[0]}" if len(other_side) == 1 else ""
                print(f"acflow: --other-side{where}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
                return EXIT_INPUT
        for g in analysis.gateways:
            if g.name is not None and not g.addresses:
                print(f"acflow: --gateway {g.text}: the capture ties no address to this name (no DNS answer for it, "
                      "no TLS ClientHello naming it): give the gateway's address", file=sys.stderr)
        try:
            filters = select_sessions(analysis, session_ids=session_ids, clients=clients, gateways=gateways,
                                      since=since, until=until, tz=tz, users=users)
        except ValueError as e:
            print(f"acflow: {e}", file=sys.stderr)
            return EXIT_USAGE
        color = (output is None or is_stdio(output)) and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        how = {"version": __version__, "verbose": verbose, "show_secrets": show_secrets, "to_terminal": color,
               "tz": tz, "summary": summary, "filters": filters}
        try:
            if output is not None and not is_stdio(output):
                # a file is written as the report is made (JSON: a session at a time, never the whole document in
                # memory); it appears, whole, only at the end (AtomicFile)
                with AtomicFile(output, "w") as f:
                    for piece in render_pieces(analysis, fmt, **how):
                        f.write(piece)
            else:  # standard output: the report once it is made (an error while making it writes nothing)
                sys.stdout.write(render(analysis, fmt, **how))
            if inner is not None:
                inner.commit()
        except OSError as e:  # the directory went away or filled up during the analysis (checked before it)
            print(f"acflow: cannot write the output: {e.strerror or e}", file=sys.stderr)
            return EXIT_INPUT
    except KeyboardInterrupt:
        return say_interrupted("analyze")
    finally:
        if inner is not None:
            inner.abort()  # nothing left behind unless committed above (then this does nothing)
    status = EXIT_FINDINGS if fails(analysis, fail_on) else EXIT_OK
    if exit_when_done:
        exit_now(status)
    return status


def exit_now(status: int) -> None:
    """End the process with ``status`` now that everything is written: standard output and error flushed, the exit
    handlers run (`atexit`: the dataclass table, analyzer/_dataclass_cache.py), then `os._exit`, without the
    interpreter's teardown — which, after a big analysis, is the collector walking and freeing every object the
    analysis made one by one (~0.1 s after the bench's 440 MB gateway capture, 3 % of the run) for a process that
    is ending anyway. Returns (the process goes on to end as usual) under a profiler or tracer (`python -m
    cProfile`, coverage), which write their results after the program."""
    import atexit  # noqa: PLC0415
    import os  # noqa: PLC0415

    if sys.getprofile() is not None or sys.gettrace() is not None:
        return

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`acflow … | head`): what could be written was
            pass
    atexit._run_exitfuncs()
    os._exit(status)


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
