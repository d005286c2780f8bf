"""What N cores of this machine give work that needs nothing from any other process: the ceiling of `--jobs N`.

A speed-up target such as "1.8x on 2 cores" is reachable only if the machine itself runs two busy processes at
1.8 times the pace of one. A virtual machine's cores often do not: its two vCPUs may be hyper-threads of one
physical core, or share their host with other guests, and each process then runs slower while the other runs. This
measures it in the same run as the timings it judges: a fixed CPU-bound loop in a fresh Python process (no I/O, no
memory traffic beyond the interpreter's own: the best case for any parallel work) timed alone, then N copies
started together; the ceiling is N times the lone time over the slowest of the N.

``python -m bench.ceiling [--jobs N] [--rounds R]`` prints it; `python -m bench` measures it once per round, beside
acflow's `--jobs` runs, and reports acflow's speed-up as a share of it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from .measure import run_measured

#: loop iterations of one spin process (~0.5-1 s on the bench's 2-core VM)
SPIN_ITERATIONS = 12_000_000

_SPIN = "x = 0\nfor i in range({n}):\n    x += i\n"


def spin_argv(iterations: int = SPIN_ITERATIONS) -> list[str]:
    """The command of one spin process (``python -S``: no site import, so start-up is a few milliseconds)."""
    return [sys.executable, "-S", "-c", _SPIN.format(n=int(iterations))]


def _together(n: int, iterations: int) -> list[float]:
    """Wall times of ``n`` spin processes started at once (each measured from its own start)."""
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    procs = []
    for _ in range(n):
        procs.append((time.perf_counter(), subprocess.Popen(spin_argv(iterations))))
    walls = []
    for t0, p in procs:
        p.wait()
        walls.append(time.perf_counter() - t0)
    return walls


def measure_once(jobs: int = 2, iterations: int = SPIN_ITERATIONS) -> dict:
    """One lone spin and ``jobs`` spins together: {"one_s", "together_s" (the slowest), "speedup"}."""
    one = run_measured("spin", spin_argv(iterations)).wall_s
    together = max(_together(jobs, iterations))
    return {"one_s": round(one, 4), "together_s": round(together, 4),
            "speedup": round(jobs * one / together, 3) if together > 0 else None}


def summarise(rounds: list[dict], jobs: int) -> dict:
    """The median ceiling over ``rounds`` (each from `measure_once`), with every round kept."""
    speedups = [r["speedup"] for r in rounds if r.get("speedup")]
    return {"jobs": jobs, "what": "a CPU-bound Python loop alone and in N processes at once (bench/ceiling.py)",
            "speedup": round(statistics.median(speedups), 3) if speedups else None,
            "speedup_min": min(speedups) if speedups else None,
            "speedup_max": max(speedups) if speedups else None,
            "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=SPIN_ITERATIONS)
    args = ap.parse_args(argv)
    rounds = [measure_once(args.jobs, args.iterations) for _ in range(args.rounds)]
    doc = summarise(rounds, args.jobs)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
