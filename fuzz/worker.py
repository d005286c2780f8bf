"""One fuzzing process for one family (started by ``python -m fuzz``; not meant to be run by hand).

``python -m fuzz.worker --family F --seconds S --work DIR --crashes DIR --engine atheris|builtin --seed N``

Crashes are caught here, in the target wrapper, so that the run goes on after the first one: each distinct
crash signature (exception type + innermost acflow frame, or the invariant that broke) is saved once — the
smallest input seen for it — as ``<crashes>/<family>/<signature-hash>.bin`` with the traceback in ``.txt``.
Per-input bounds: ``TIME_LIMIT`` seconds (SIGALRM raises ``FuzzTimeout`` in the target) and an address-space
limit (``MemoryError``); both are crashes too. Statistics go to ``<work>/<family>/stats-<pid>.json`` every
second and at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

TIME_LIMIT = 10.0  # seconds per input (a capture of the samples' size is analysed in < 0.1 s)
MEMORY_LIMIT = 4 << 30  # address space, bytes: a 4 GB allocation must fail, not swap


class FuzzTimeout(Exception):
    """An input took more than TIME_LIMIT seconds."""


def _alarm(signum, frame):
    raise FuzzTimeout(f"input took more than {TIME_LIMIT} s")


ROOT = Path(__file__).resolve().parent.parent


def signature(exc: BaseException, tb_text: str) -> str:
    """Exception type + the innermost frame in acflow's code (line numbers dropped: stable across edits)."""
    from fuzz.targets import Bug

    if isinstance(exc, Bug):
        msg = re.sub(r"\d+", "N", str(exc))[:80]
        return f"Bug: {msg}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = "?"
    for fr in reversed(frames):
        p = Path(fr.filename)
        try:
            rel = p.resolve().relative_to(ROOT)
        except ValueError:
            continue
        if rel.parts[0] in ("dissectors", "analyzer"):
            where = f"{rel}:{fr.name}"
            break
    if isinstance(exc, FuzzTimeout) and frames:
        return f"timeout in {where}"
    return f"{type(exc).__name__} in {where}"


class Recorder:
    def __init__(self, family: str, crash_dir: Path, stats_path: Path, engine: str) -> None:
        self.family = family
        self.dir = crash_dir / family
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stats_path = stats_path
        self.engine = engine
        self.inputs = 0
        self.crashes: dict[str, dict] = {}
        self.start = time.monotonic()
        self._last_flush = 0.0

    def crash(self, data: bytes, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc))
        sig = signature(exc, tb)
        h = hashlib.sha1(sig.encode()).hexdigest()[:10]
        known = self.crashes.get(sig)
        if known is None:
            self.crashes[sig] = {"signature": sig, "file": str(self.dir / f"{h}.bin"), "count": 1,
                                 "size": len(data)}
            print(f"[{self.family}] NEW CRASH {sig} ({len(data)} bytes) -> {self.dir / (h + '.bin')}",
                  file=sys.stderr, flush=True)
        else:
            known["count"] += 1
            if len(data) >= known["size"]:
                return
            known["size"] = len(data)
        (self.dir / f"{h}.bin").write_bytes(data)
        (self.dir / f"{h}.txt").write_text(f"family: {self.family}\nsignature: {sig}\nsize: {len(data)}\n\n{tb}")
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < 1.0:
            return
        self._last_flush = now
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"family": self.family, "engine": self.engine, "inputs": self.inputs,
                                   "seconds": now - self.start, "crashes": list(self.crashes.values())}))
        tmp.replace(self.stats_path)


def make_runner(family: str, rec: Recorder):
    from fuzz.targets import TARGETS, prepare

    prepare(family)
    target = TARGETS[family]
    setitimer = signal.setitimer

    def run_one(data: bytes) -> None:
        rec.inputs += 1
        setitimer(signal.ITIMER_REAL, TIME_LIMIT)
        try:
            target(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every escape is a finding
            setitimer(signal.ITIMER_REAL, 0)
            rec.crash(bytes(data), exc)
        finally:
            setitimer(signal.ITIMER_REAL, 0)
        rec.flush()

    return run_one


def _limit_memory() -> None:
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    except (ValueError, OSError):
        pass


def run_builtin(family: str, seconds: float, rec: Recorder, seed: int, corpus_dir: Path) -> None:
    from fuzz.mutate import mutate
    from fuzz.seeds import keylog_text, read_cache
    from fuzz.targets import MAX_LEN

    rng = random.Random(seed)
    pool = read_cache(corpus_dir.parent)
    pool += [p.read_bytes() for p in sorted(corpus_dir.glob("*"))[:500] if p.is_file()]
    klog = keylog_text() if family in ("pcap", "pipeline") else ""
    run_one = make_runner(family, rec)
    for s in pool:  # the seeds themselves first
        run_one(s)
    deadline = time.monotonic() + seconds
    max_len = MAX_LEN[family]
    while time.monotonic() < deadline:
        data = rng.choice(pool)
        for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.2)):
            data = mutate(family, data, rng, pool, max_len, klog)
        run_one(data)


def run_atheris(family: str, seconds: float, rec: Recorder, seed: int, corpus_dir: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["dissectors", "analyzer"]):
        import pkgutil

        import analyzer
        import dissectors

        for pkg in (dissectors, analyzer):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if m.name.split(".")[1] in ("cli", "live", "lab"):
                    continue
                __import__(m.name)
    from fuzz.mutate import mutate
    from fuzz.seeds import keylog_text, read_cache
    from fuzz.targets import MAX_LEN

    seeds = read_cache(corpus_dir.parent)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        p = corpus_dir / ("seed-" + hashlib.sha1(s).hexdigest()[:16])
        if not p.exists():
            p.write_bytes(s)
    klog = keylog_text() if family in ("pcap", "pipeline") else ""
    run_one = make_runner(family, rec)

    def custom_mutator(data: bytes, max_size: int, seed_: int) -> bytes:
        rng = random.Random(seed_)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        return mutate(family, data, rng, seeds, max_size, klog)

    args = [sys.argv[0], str(corpus_dir), f"-max_total_time={max(1, int(seconds))}", "-timeout=0",
            f"-max_len={MAX_LEN[family]}", "-rss_limit_mb=4096", f"-seed={seed}", "-print_final_stats=1",
            f"-artifact_prefix={rec.dir}/libfuzzer-"]
    atheris.Setup(args, run_one, custom_mutator=custom_mutator)
    atheris.Fuzz()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--crashes", type=Path, required=True)
    ap.add_argument("--engine", choices=["atheris", "builtin"], default="builtin")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    _limit_memory()
    signal.signal(signal.SIGALRM, _alarm)
    work = a.work / a.family
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ACFLOW_FUZZ_SCRATCH_DIR"] = str(work)  # libFuzzer exits without running atexit handlers
    rec = Recorder(a.family, a.crashes, work / f"stats-{os.getpid()}.json", a.engine)
    rec.flush(force=True)
    import atexit

    atexit.register(rec.flush, True)
    try:
        if a.engine == "atheris":
            run_atheris(a.family, a.seconds, rec, a.seed, work / "corpus")
        else:
            run_builtin(a.family, a.seconds, rec, a.seed, work / "corpus")
    finally:
        rec.flush(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
