"""Running the lab's named runs, shared by `python -m lab` (scenarios) and `python -m lab.scripted` (cases).

`run_each` is the loop over the names (unknown names and a missing root refused before anything starts; SIGTERM
and SIGHUP end a run as Ctrl-C does, so that the clean-up in the runners' finally blocks runs; exit status 0, 1 or
130). `work_dir`, `Actions`, `merge_keylogs` and `collect_outputs` are a run's bookkeeping: its temporary work
directory, the record of what the lab did (part of facts.json), and the outputs written from the work directory.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .netns import LabError

INTERRUPTED = 130  # a run ended by Ctrl-C, SIGTERM or SIGHUP (namespaces and processes cleaned up)


def run_each(names: list[str], known: Iterable[str], run_one: Callable[[str], bool], *, tag: str,
             kind: str = "scenario") -> int:
    """Run `run_one(name)` for each of `names` (or all of `known` for ["all"]), in order.

    0 if every run returned True; 1 if a name is unknown, the user is not root, a run raised LabError (its message
    is printed) or returned False; 130 at once if a run was interrupted.
    """
    known = list(known)
    if names == ["all"]:
        names = known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"[{tag}] unknown {kind} {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print(f"[{tag}] the lab needs root (it creates network namespaces and runs the peers there); run it as root",
              file=sys.stderr)
        return 1
    # SIGTERM / SIGHUP end a run as Ctrl-C does, also outside the Lab context (while the work directory is
    # prepared, or the outputs written): the clean-up in the runners' finally blocks then runs too
    old = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    failed = []
    try:
        for name in names:
            try:
                if not run_one(name):
                    failed.append(name)
            except LabError as e:
                print(f"[{tag}] {name}: FAILED: {e}", file=sys.stderr)
                failed.append(name)
            except KeyboardInterrupt:
                print(f"[{tag}] {name}: interrupted; namespaces and processes cleaned up", file=sys.stderr)
                return INTERRUPTED
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if failed and len(names) > 1:
        print(f"[{tag}] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def work_dir(prefix: str) -> Path:
    """A fresh temporary work directory, readable by the peers' unprivileged workers (ocserv's run as nobody)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)
    return work


class Actions(list):
    """What the lab did during a run, in order: `actions("what", key=value…)` appends a timestamped record."""

    def __call__(self, what: str, **extra) -> None:
        self.append({"time": time.time(), "action": what, **extra})


def merge_keylogs(keylogs: Iterable[Path], dest: Path) -> None:
    """Write the distinct lines of the NSS key logs `keylogs` (those that exist), in order, to `dest`."""
    lines: dict[str, None] = {}
    for kf in keylogs:
        if kf.exists():
            for line in kf.read_text().splitlines():
                if line.strip():
                    lines.setdefault(line)
    dest.write_text("\n".join(lines) + "\n")


def collect_outputs(work: Path, out: Path, *, keylogs: Iterable[Path], files: Iterable[str]) -> None:
    """Replace `out` with a run's outputs: work/capture.pcapng, keys.log (the key logs merged), the `files` of
    `work` that exist, and the vpnc-script's script-*.env."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(work / "capture.pcapng", out / "capture.pcapng")
    merge_keylogs(keylogs, out / "keys.log")
    for f in files:
        if (work / f).exists():
            shutil.copy(work / f, out / f)
    for env_file in work.glob("script-*.env"):
        shutil.copy(env_file, out / env_file.name)
