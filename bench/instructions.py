"""Instructions per frame of the analysis pipeline, counted by callgrind (valgrind): a measure that does not move
with the machine's load, for comparing two revisions of acflow on the same capture (e.g. a refactor against the
commit before it).

    python -m bench.instructions                        # this tree, the cached cstp and dtls bench captures
    python -m bench.instructions --rev 4804847          # also that revision (a temporary git worktree)
    python -m bench.instructions --modes cstp --frames 30000

Each count is the difference between analysing the first N frames twice and once in one process (reading the
capture, imports and start-up cancel out), divided by N. The frames read are frozen out of the garbage collector
and each run starts after a collection, so that the two runs' collections match; no process writes bytecode
caches (else the first would compile modules the second then finds compiled, and its count would be the lower);
every module is compiled beforehand into a temporary bytecode cache (PYTHONPYCACHEPREFIX), so no run compiles any.
Needs valgrind and the bench captures (bench/cache/, made by `python -m bench`). Callgrind runs ~50x slower than
the real thing: 30 000 frames take about a minute.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"

_RUNNER = r"""
import gc
import sys
from pathlib import Path
from analyzer.analyze import load_keys
from analyzer.capture import read_capture_batches
from analyzer.driver import Analyzer
cap, limit, runs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keys, info = load_keys([cap.parent / "keys.log"], [])
batches, n = [], 0
for b in read_capture_batches(cap):
    batches.append(b)
    n += len(b)
    if n >= limit:
        break
gc.collect()
gc.freeze()  # the frames read above are not the analysis': no collection walks them
for _ in range(runs):
    gc.collect()  # every run starts from the same heap, so that one run's collections are not the other's
    an = Analyzer(keys, key_info=info)
    an.start_capture(str(cap))
    for b in batches:
        an.feed_events(b)
    an.end_capture()
    an.finish()
print(n)
"""


def _env(tree: Path, pycache: Path, write: bool = False) -> dict:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": str(pycache)}
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _compile(tree: Path, capture: Path, pycache: Path) -> None:
    """Bytecode of everything an analysis of `capture` imports (lazy imports included), in `pycache`: the counted
    runs then import compiled modules, as an installed acflow does. (Compiling a module whose bytecode in the tree
    is stale is not the same work in a run that imports it first and in one that finds it imported; counting it
    made the difference of two runs mean nothing.)"""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.py"
        script.write_text(_RUNNER)
        subprocess.run([sys.executable, str(script), str(capture), "2000", "1"], capture_output=True, check=True,
                       env=_env(tree, pycache, write=True), cwd=tmp)


def _count(tree: Path, capture: Path, frames: int, runs: int, pycache: Path) -> tuple[int, int]:
    """(instructions, frames read) of `runs` analyses of the first `frames` frames, with `tree` first on the path."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.py"
        script.write_text(_RUNNER)
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                            str(script), str(capture), str(frames), str(runs)], capture_output=True, text=True,
                           env=_env(tree, pycache), cwd=tmp, check=False)
    m = re.search(r"refs:\s*([\d,]+)", p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"callgrind run failed (exit {p.returncode}): {p.stderr[-1500:]}")
    return int(m.group(1).replace(",", "")), int(p.stdout.split()[-1])


def per_frame(tree: Path, capture: Path, frames: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as pycache:
        _compile(tree, capture, Path(pycache))
        once, n = _count(tree, capture, frames, 1, Path(pycache))
        twice, _ = _count(tree, capture, frames, 2, Path(pycache))
    return (twice - once) / n, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="cstp,dtls", help="bench captures to use (default cstp,dtls)")
    ap.add_argument("--frames", type=int, default=30000, help="frames analysed (default 30000)")
    ap.add_argument("--rev", action="append", default=[], help="another git revision to count too (repeatable)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    trees: list[tuple[str, Path]] = [("this tree", ROOT)]
    made: list[Path] = []
    try:
        for rev in args.rev:
            wt = Path(tempfile.mkdtemp(prefix="acflow-rev-"))
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), rev], check=True)
            made.append(wt)
            trees.append((rev, wt))
        for mode in args.modes.split(","):
            capture = CACHE / mode / "capture.pcapng"
            if not capture.exists():
                print(f"{mode}: no bench capture at {capture} (run python -m bench first)", file=sys.stderr)
                continue
            base = None
            for name, tree in trees:
                ipf, n = per_frame(tree, capture, args.frames)
                base = base or ipf
                print(f"{mode:5} {name:>12}: {ipf:9.0f} instructions/frame over {n} frames"
                      + ("" if ipf == base else f"  ({ipf / base:.3f}x this tree)"))
    finally:
        for wt in made:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
