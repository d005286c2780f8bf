"""Run one command and measure it: wall time, CPU time (user + sys) and peak RSS of that child alone.

`os.wait4(pid)` (in bench/_launch.py) returns the rusage of the one child waited for (and of its own waited-for
descendants), so each run gets its own peak RSS; `resource.getrusage(RUSAGE_CHILDREN)` would give the maximum
over every child of the bench so far, which hides a smaller later run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYCACHE: Path | None = None  # set by the bench: where acflow's bytecode cache goes
SNAPSHOT: Path | None = None  # set by the bench: a private copy of analyzer/ + dissectors/ to time (see snapshot())
SOURCE_PACKAGES = ("analyzer", "dissectors")


def source_digest(root: Path = ROOT) -> str:
    """sha256 (prefix) of acflow's sources under `root` (analyzer/, dissectors/)."""
    h = hashlib.sha256()
    for pkg in SOURCE_PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0")
            try:
                h.update(f.read_bytes())
            except OSError:
                pass
    return h.hexdigest()[:16]


def snapshot(cache: Path) -> tuple[Path, str]:
    """Copy acflow's sources (analyzer/, dissectors/) to cache/snapshot/<digest>/; return (directory, digest).

    The bench runs for minutes, and in a shared working tree the sources may change meanwhile; every acflow
    run of one bench (timed rounds, `acflow keys`, profile, layers) uses this copy, taken at the start, so all of
    them time the same code. Older snapshots are removed.
    """
    root = cache / "snapshot"
    tmp = root / f".part-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for pkg in SOURCE_PACKAGES:
        shutil.copytree(ROOT / pkg, tmp / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = source_digest(tmp)  # of the copy: what will run
    dst = root / digest
    if dst.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(dst)
    for old in root.iterdir():
        if old.name != digest and not old.name.startswith(".part-"):
            shutil.rmtree(old, ignore_errors=True)
    return dst, digest


def child_env() -> dict:
    """The environment for acflow children: with a bytecode cache, as an installed acflow has.

    Under PYTHONDONTWRITEBYTECODE=1 (set in some shells/CI) every run would compile acflow from source again
    (~0.3 s of CPU); the bench times the analysis, not that. The cache goes to PYTHONPYCACHEPREFIX in
    bench/cache/, never next to the sources.
    """
    env = dict(os.environ)
    if PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def child_cwd() -> Path | None:
    """Where acflow children run: in the snapshot, so that `python -m analyzer.cli` imports it (sys.path[0])."""
    return SNAPSHOT


@dataclass
class Run:
    tool: str
    wall_s: float
    cpu_s: float  # user + sys
    user_s: float
    sys_s: float
    maxrss_kib: int
    returncode: int

    def as_dict(self) -> dict:
        return asdict(self)


class CommandFailed(RuntimeError):
    pass


LAUNCHER = Path(__file__).resolve().parent / "_launch.py"


def run_measured(tool: str, argv: list[str], *, cwd: Path | None = None, stdout=subprocess.DEVNULL,
                 env: dict | None = None) -> Run:
    """Run `argv` through bench/_launch.py, which times it and reaps it with wait4() (see there why)."""
    with tempfile.TemporaryDirectory(prefix="acflow-bench-run-") as tmp, tempfile.TemporaryFile() as err:
        result = Path(tmp) / "run.json"
        p = subprocess.run([sys.executable, str(LAUNCHER), str(result), "--", *map(str, argv)],
                           stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, cwd=cwd, env=env, check=False)
        try:
            r = json.loads(result.read_text())
        except (OSError, ValueError):
            r = None
        if p.returncode != 0 or r is None or r["returncode"] != 0:
            err.seek(0)
            rc = r["returncode"] if r else p.returncode
            raise CommandFailed(f"{tool} failed (exit {rc}): {' '.join(map(str, argv))}\n"
                                + err.read().decode(errors="replace")[-2000:])
    return Run(tool, r["wall_s"], r["user_s"] + r["sys_s"], r["user_s"], r["sys_s"], r["maxrss_kib"], 0)


def acflow_argv() -> list[str]:
    """`python -m analyzer.cli` run in the snapshot (what the `acflow` console script runs: `main()` of
    analyzer.cli); without a snapshot, the console script next to the interpreter running the bench (not a pyenv
    shim: its start-up would be timed too), else `acflow` on PATH, else `python -m analyzer.cli`."""
    if SNAPSHOT is not None:
        return [sys.executable, "-m", "analyzer.cli"]
    here = Path(sys.executable).parent / "acflow"
    if here.exists():
        return [str(here)]
    found = shutil.which("acflow")
    if found:
        return [found]
    return [sys.executable, "-m", "analyzer.cli"]


def acflow_analyze_argv(capture: Path, keylog: Path | None, out_json: Path, jobs: int = 1) -> list[str]:
    """`acflow analyze` in one process (``jobs`` 1, as the bench always timed it) or split over ``jobs``; without a
    key log when ``keylog`` is None (--keyless)."""
    keys = ["--keylog", str(keylog)] if keylog is not None else []
    return [*acflow_argv(), "analyze", str(capture), *keys, "--format", "json", "-o", str(out_json),
            "--jobs", str(jobs)]


def tshark_argv(capture: Path, keylog: Path | None, psk_options: list[str], *, dissect: bool = True) -> list[str]:
    """tshark decrypting `capture` with the same keys acflow gets.

    `tshark -q` alone does *not* dissect: with nothing to print, no filter and no tap, tshark 4.x skips
    dissection (and so decryption) entirely and only reads the frames. `-z io,stat,0` adds the cheapest tap
    there is (one counter, no protocol tree), which makes tshark dissect and decrypt every frame, so this is
    the fair comparison (`dissect=False` gives the literal `-q` command, reported as "read only").
    """
    argv = ["tshark", "-n", "-r", str(capture)]
    if keylog is not None:  # (None: --keyless, both tools without keys)
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    for opt in psk_options:
        argv += ["-o", opt]
    argv += ["--disable-heuristic", "rdpmt_dtls", "--disable-heuristic", "udt_dtls", "-q"]
    if dissect:
        argv += ["-z", "io,stat,0"]
    return argv


def dtls_psk_options(capture: Path, keylog: Path, scratch: Path) -> list[str]:
    """The `-o dtls.psk:<hex>` options `acflow keys` prints for a PSK-NEGOTIATE capture (may be none)."""
    p = subprocess.run([*acflow_argv(), "keys", str(capture), "--keylog", str(keylog), "-o", str(scratch)],
                       capture_output=True, text=True, env=child_env(), cwd=child_cwd(), check=False)
    if p.returncode != 0:
        raise CommandFailed(f"acflow keys failed (exit {p.returncode}): {p.stderr.strip()[-1000:]}")
    return re.findall(r"^-o (dtls\.psk:[0-9a-fA-F]+)\s*$", p.stdout, re.MULTILINE)


def tshark_decrypted_count(capture: Path, keylog: Path, psk_options: list[str], display_filter: str) -> int:
    """How many frames tshark shows matching `display_filter` (a decrypted-payload filter): not timed."""
    argv = tshark_argv(capture, keylog, psk_options, dissect=False)
    argv.remove("-q")
    argv += ["-Y", display_filter, "-T", "fields", "-e", "frame.number"]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise CommandFailed(f"tshark failed: {p.stderr.strip()[-1000:]}")
    return sum(1 for line in p.stdout.splitlines() if line.strip())


def tshark_version() -> str:
    try:
        out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.splitlines()[0].strip() if out else "unknown"
