"""Run one command and write its wall time and rusage as JSON: `python _launch.py OUT.json -- ARGV…`.

Why a separate small process: Python starts children with vfork(), and Linux carries the parent's peak RSS
over into the child's `ru_maxrss` at exec() (the mm being replaced is the parent's). Spawned from the bench
(which maps big captures), every child would report at least the bench's own peak; spawned from this tiny
launcher, a child reports at most the launcher's ~10 MB, which is below anything measured here.
Stdlib only, no imports from the bench, so that its own footprint stays small.
"""
import json
import os
import subprocess
import sys
import time


def main() -> int:
    out, sep, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not argv:
        print("usage: _launch.py OUT.json -- ARGV…", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    with open(out, "w") as f:
        json.dump({"wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
                   "returncode": p.returncode}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
