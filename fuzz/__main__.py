"""``python -m fuzz --minutes N [--family F ...]``: fuzz acflow's parsers, seeded from the real samples.

Each family (see :mod:`fuzz`) gets N minutes; families run in parallel, ``--jobs`` at a time (default: the number
of CPUs), so the run takes about N × ceil(families / jobs) minutes. Each family runs in its own process
(:mod:`fuzz.worker`) which is restarted if it dies (a native crash or a hang the per-input alarm could not
interrupt) until its time is used up. At the end a table gives, per family, the inputs tried, inputs/hour and the
distinct crashes; each crashing input is under ``fuzz/crashes/<family>/`` (smallest input per crash signature,
traceback next to it). Exit status: 0 no crash, 1 crashes found, 2 usage error.

Other modes:

* ``python -m fuzz --reproduce FILE --family F`` — run one input through a target and print the traceback;
* ``python -m fuzz --minimize FILE --family F [-o OUT]`` — shrink a crashing input (same crash signature);
* ``python -m fuzz --export FILE --family pipeline-inner|tls-inner [-o OUT.pcapng]`` — the capture (and key log)
  such an input stands for: to run ``acflow analyze`` on it, and to commit as a ``pipeline`` regression.

Engine: ``--engine auto`` (default) uses atheris/libFuzzer when ``import atheris`` works, else the built-in
mutator loop (``--engine builtin``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from fuzz import FAMILIES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _run_family(family: str, seconds: float, engine: str, work: Path, crashes: Path, seed: int,
                log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fuzz.worker", "--family", family, "--seconds", f"{seconds:.0f}", "--work",
           str(work), "--crashes", str(crashes), "--engine", engine, "--seed", str(seed)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _collect(work: Path, family: str) -> dict:
    inputs, seconds, crashes = 0, 0.0, {}
    for p in sorted((work / family).glob("stats-*.json")):
        try:
            st = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        inputs += st.get("inputs", 0)
        seconds += st.get("seconds", 0.0)
        for c in st.get("crashes", []):
            prev = crashes.get(c["signature"])
            if prev is None or c["size"] < prev["size"]:
                crashes[c["signature"]] = c
    return {"inputs": inputs, "seconds": seconds, "crashes": crashes}


def _native_crashes(crashes: Path, family: str, since: float) -> list[str]:
    d = crashes / family
    return [str(p) for p in sorted(d.glob("libfuzzer-*")) if p.stat().st_mtime >= since] if d.is_dir() else []


def fuzz(families, minutes: float, jobs: int, engine: str, work: Path, crashes: Path, seed: int) -> int:
    seconds = minutes * 60
    waves = math.ceil(len(families) / jobs)
    print(f"acflow fuzz: {len(families)} famil{'y' if len(families) == 1 else 'ies'} × {minutes:g} min, engine "
          f"{engine}, {jobs} in parallel (≈ {waves * minutes:g} min); logs in {work}/<family>/log.txt",
          flush=True)
    t0 = time.time()
    from fuzz.seeds import write_cache

    for f in families:  # statistics are per run; seeds and key material are computed once, here
        (work / f).mkdir(parents=True, exist_ok=True)
        for p in (work / f).glob("stats-*.json"):
            p.unlink()
        write_cache(f, work / f)
    pending = list(families)
    running: dict[str, dict] = {}
    extra: dict[str, list] = {f: [] for f in families}
    i = 0
    while pending or running:
        while pending and len(running) < jobs:
            fam = pending.pop(0)
            (work / fam).mkdir(parents=True, exist_ok=True)
            log = work / fam / "log.txt"
            running[fam] = {"deadline": time.monotonic() + seconds, "started": time.time(), "log": log,
                            "proc": _run_family(fam, seconds, engine, work, crashes, seed + i, log)}
            i += 1
        time.sleep(1.0)
        for fam, r in list(running.items()):
            proc = r["proc"]
            left = r["deadline"] - time.monotonic()
            if proc.poll() is None:
                if left < -120:  # hung in native code: the per-input alarm could not fire
                    proc.kill()
                    proc.wait()
                    extra[fam].append("hang: worker killed (no progress in native code)")
                else:
                    continue
            rc = proc.returncode
            if rc != 0:
                extra[fam] += [f"native crash/oom (exit {rc}): {p}" for p in _native_crashes(crashes, fam,
                                                                                              r["started"])]
                if not _native_crashes(crashes, fam, r["started"]) and rc < 0:
                    extra[fam].append(f"worker died with signal {-rc}; see {r['log']}")
            if left > 5 and rc != 0:  # restart for the time that is left
                r["started"] = time.time()
                r["proc"] = _run_family(fam, left, engine, work, crashes, seed + i, r["log"])
                i += 1
                continue
            del running[fam]
            st = _collect(work, fam)
            print(f"  {fam:9s} done: {st['inputs']} inputs, {len(st['crashes']) + len(extra[fam])} crash(es)",
                  flush=True)
    for fam in families:  # scratch capture files of the pipeline targets
        for p in (work / fam).glob("acflow-fuzz-*.pcapng"):
            p.unlink()
    # summary
    total_crashes = 0
    print(f"\n{'family':10s} {'inputs':>10s} {'seconds':>8s} {'inputs/hour':>12s} {'crashes':>8s}")
    for fam in families:
        st = _collect(work, fam)
        n = len(st["crashes"]) + len(extra[fam])
        total_crashes += n
        rate = st["inputs"] / st["seconds"] * 3600 if st["seconds"] else 0
        print(f"{fam:10s} {st['inputs']:10d} {st['seconds']:8.0f} {rate:12.0f} {n:8d}")
        for c in st["crashes"].values():
            print(f"    {c['signature']}  ({c['count']}×, smallest {c['size']} B) {c['file']}")
        for e in extra[fam]:
            print(f"    {e}")
    print(f"\nwall time {time.time() - t0:.0f} s; {total_crashes} distinct crash(es)"
          + (f"; inputs under {crashes}/" if total_crashes else ""))
    return 1 if total_crashes else 0


def _run(family: str, data: bytes):
    """Run one input; returns (exception or None, traceback text)."""
    import signal

    from fuzz.targets import TARGETS, prepare
    from fuzz.worker import TIME_LIMIT, _alarm

    prepare(family)
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        TARGETS[family](data)
    except Exception as exc:  # noqa: BLE001
        return exc, "".join(traceback.format_exception(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None, ""


def reproduce(family: str, path: Path) -> int:
    exc, tb = _run(family, path.read_bytes())
    if exc is None:
        print(f"{path}: no crash in family {family}")
        return 0
    print(tb, end="")
    return 1


def minimize(family: str, path: Path, out: Path | None, budget: float = 120.0) -> int:
    """Delta debugging on bytes: drop chunks while the crash signature stays the same."""
    from fuzz.worker import signature

    data = path.read_bytes()
    exc, tb = _run(family, data)
    if exc is None:
        print(f"{path}: no crash in family {family}")
        return 0
    sig = signature(exc, tb)
    deadline = time.monotonic() + budget
    n = 2
    while len(data) >= 2 and time.monotonic() < deadline:
        size = max(1, len(data) // n)
        reduced = False
        for start in range(0, len(data), size):
            cand = data[:start] + data[start + size:]
            e2, tb2 = _run(family, cand)
            if e2 is not None and signature(e2, tb2) == sig:
                data = cand
                n = max(n - 1, 2)
                reduced = True
                break
            if time.monotonic() > deadline:
                break
        if not reduced:
            if size == 1:
                break
            n = min(len(data), n * 2)
    out = out or path.with_suffix(".min")
    out.write_bytes(data)
    print(f"{sig}: {path.stat().st_size} -> {len(data)} bytes, written to {out}")
    return 1


def export(family: str, path: Path, out: Path | None) -> int:
    """tls-inner/pipeline-inner input -> the capture it stands for (+ a key log): a file for `acflow analyze`, and
    a regression input of the pipeline family that does not depend on the sample set (the input's first byte
    indexes the samples' TLS 1.3 connections, which shift when samples are added)."""
    from fuzz import tlscap
    from fuzz.seeds import keylog_text
    from fuzz.tls13 import build_stream

    if family not in ("tls-inner", "pipeline-inner"):
        print("--export is for the tls-inner and pipeline-inner families", file=sys.stderr)
        return 2
    chunks = build_stream(path.read_bytes())
    if chunks is None:
        print(f"{path}: empty input", file=sys.stderr)
        return 1
    out = out or path.with_suffix(".pcapng")
    out.write_bytes(tlscap.pcapng(tlscap.tcp_frames(chunks)))
    keys = out.with_name(out.name + ".keys")
    keys.write_text(keylog_text())
    print(f"wrote {out} and {keys}: acflow analyze {out} --keylog {keys}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="fuzzing time per family (default 1)")
    ap.add_argument("--family", action="append", choices=FAMILIES, help="a family to fuzz (repeatable; default all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="families fuzzed in parallel")
    ap.add_argument("--engine", choices=["auto", "atheris", "builtin"], default="auto")
    ap.add_argument("--seed", type=int, default=int(time.time()) & 0xFFFF)
    ap.add_argument("--work", type=Path, default=HERE / "work", help="corpora, logs, statistics")
    ap.add_argument("--crashes", type=Path, default=HERE / "crashes")
    ap.add_argument("--reproduce", type=Path, metavar="FILE", help="run one input (needs --family)")
    ap.add_argument("--minimize", type=Path, metavar="FILE", help="shrink a crashing input (needs --family)")
    ap.add_argument("--export", type=Path, metavar="FILE",
                    help="tls-inner/pipeline-inner input -> pcapng + key log (needs --family)")
    ap.add_argument("-o", "--output", type=Path, help="with --minimize/--export: where to write the result")
    a = ap.parse_args(argv)
    if a.reproduce or a.minimize or a.export:
        if not a.family or len(a.family) != 1:
            ap.error("--reproduce/--minimize/--export need exactly one --family")
        if a.export:
            return export(a.family[0], a.export, a.output)
        return reproduce(a.family[0], a.reproduce) if a.reproduce else minimize(a.family[0], a.minimize, a.output)
    engine = a.engine
    if engine == "auto":
        engine = "atheris" if _have_atheris() else "builtin"
    elif engine == "atheris" and not _have_atheris():
        ap.error("atheris is not installed (pip install atheris)")
    families = a.family or list(FAMILIES)
    return fuzz(families, a.minutes, max(1, a.jobs), engine, a.work, a.crashes, a.seed)


if __name__ == "__main__":
    sys.exit(main())
