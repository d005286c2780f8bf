"""`acflow analyze --jobs N` against one process, in instructions (callgrind): the critical path of a parallel run —
what the slowest process executes — beside the whole analysis in one process, a scaling figure that does not move
with the machine's load or with a virtual machine's uneven cores (the wall-clock speed-up on a shared 2-core VM
varies by ±30 % from run to run; see the README's Performance section).

    python -m bench.jobs_instructions                      # bench/cache/gateway (the 50-client capture), 2 jobs
    python -m bench.jobs_instructions --capture C --keylog K --jobs 3

Each part of a parallel run is counted in its own callgrind process, as the difference between two runs that stop
before and after it (imports and key loading are in every run and cancel out):

* serial before: imports (of modules compiled beforehand, as an installed acflow's are), keys, the capture
  heads (`base`);
* stage 1, each process: `index_part` k (one byte range of the file); beside it, not in the critical path, the
  bare walk of the same range (`floor`: one struct call per block and its offset kept, no checks, no
  classification), the least any Python walk of the blocks costs;
* stage 2, each process: `plan_index` (the parts' buckets counted and made into the shard table: in the first
  process only, counted in each) and `run_shard` k (its own frames picked out of the parts' indexes, read at their
  offsets, analysed; the other shards' trackers pickled, the first one's handed over as they are);
* serial after: `merge` (unpickling, renumbering, sessions, rules) and the JSON report;

critical path = base + max(index k) + max(shard k) + merge; one process = imports, keys, `analyze_paths` and the same
JSON report. Needs valgrind. Callgrind runs ~50x slower than the real thing: the 110 MB capture takes a few minutes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"

_RUNNER = r"""
import sys
from pathlib import Path
import analyzer.parallel as P
from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import dumps, to_document
from analyzer.collector import few_collections
few_collections().__enter__()  # as `acflow analyze` runs (analyzer/analyze.py run_analyze): until the process ends
cap, keylog, jobs, what = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
keys, info = load_keys([keylog], [])
if what == "single":
    dumps(to_document(analyze_paths([cap], keys, info), version=__version__))
    sys.exit(0)
head = P.head_of(cap)
if head is None:
    sys.exit("not a capture the indexed reading takes")
base = {"paths": [str(cap)], "keylogs": [str(keylog)], "rsa_keys": [], "nshards": jobs, "table": None,
        "inner": None, "fast_lanes": True, "max_flows": 1 << 16, "window": P._WINDOW}
part = {"path": str(cap), "head": head[0], "parts": jobs, "file": 0, "window": P._WINDOW}
if what == "base":
    sys.exit(0)
if what.startswith("index"):
    P.index_part(dict(part, part=int(what[5:])))
    sys.exit(0)
if what.startswith("floor"):  # the bare walk of part k: one struct call per block, its offset kept, nothing else
    import mmap
    import struct
    from array import array
    from dissectors.pcapfile import PcapParser
    k = int(what[5:])
    with open(cap, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        parser = PcapParser()
        parser.feed(buf[:head[0]])
        pos, hi = P.part_bounds(parser, buf, head[0], k, jobs)  # the range index_part k walks
        u = struct.Struct("<II").unpack_from
        offsets = array("Q")
        add = offsets.append
        while pos < hi:
            _btype, blen = u(buf, pos)
            add(pos)
            pos += blen
    sys.exit(0)
parts = {(0, k): P.index_part(dict(part, part=k)) for k in range(jobs)}
planned = P.plan_index(parts, [head], jobs)
if planned is None:
    sys.exit("the index parts did not meet")
plans, base["table"] = planned
if what.startswith("shard"):
    k = int(what[len("shard"):])
    P.run_shard(dict(base, shard=k, plan=plans[k], in_process=k == 0))
    sys.exit(0)
results = [P.run_shard(dict(base, shard=k, plan=plans[k], in_process=k == 0)) for k in range(jobs)]
if what == "both":
    sys.exit(0)
analysis, _pipe = P.merge(results, keys, [cap])
dumps(to_document(analysis, version=__version__))
"""


def _env(pycache: Path) -> dict:
    """The runs' environment: this tree first on the path, its bytecode in ``pycache`` (compiled once by
    `_compile`, as an installed acflow's is: else every run would also count compiling the modules whose
    bytecode in the tree is stale, which an installed copy never does)."""
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": str(pycache),
            "PYTHONDONTWRITEBYTECODE": "1"}


def _compile(pycache: Path) -> None:
    """Bytecode for acflow and its dependencies in ``pycache``: one import of everything the runs import."""
    env = dict(_env(pycache))
    del env["PYTHONDONTWRITEBYTECODE"]
    subprocess.run([sys.executable, "-c", "import analyzer.parallel, analyzer.analyze, analyzer.report.json_report"],
                   env=env, cwd=str(pycache), check=True)


def _count(capture: Path, keylog: Path, jobs: int, what: str, pycache: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.py"
        script.write_text(_RUNNER)
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                            str(script), str(capture), str(keylog), str(jobs), what], capture_output=True, text=True,
                           env=_env(pycache), cwd=tmp, check=False)
    m = re.search(r"refs:\s*([\d,]+)", p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"callgrind run {what} failed (exit {p.returncode}): {p.stderr[-1500:]}")
    return int(m.group(1).replace(",", ""))


def measure(capture: Path, keylog: Path, jobs: int, parallel: int | None = None) -> dict:
    """Instructions of every part of a --jobs ``jobs`` run of ``capture`` and of one process (see the module doc)."""
    runs = ["base", "single", "both", "merge"] + [f"index{k}" for k in range(jobs)] + \
        [f"shard{k}" for k in range(jobs)] + [f"floor{k}" for k in range(jobs)]
    with tempfile.TemporaryDirectory() as pycache, \
            ThreadPoolExecutor(max_workers=parallel or os.cpu_count() or 1) as ex:
        _compile(Path(pycache))
        counts = dict(zip(runs, ex.map(lambda w: _count(capture, keylog, jobs, w, Path(pycache)), runs),
                          strict=True))
    base = counts["base"]
    index = [counts[f"index{k}"] - base for k in range(jobs)]
    before_shards = base + sum(index)
    shard = [counts[f"shard{k}"] - before_shards for k in range(jobs)]
    merge = counts["merge"] - counts["both"]
    floor = [counts[f"floor{k}"] - base for k in range(jobs)]
    critical = base + max(index) + max(shard) + merge
    return {"capture": str(capture), "jobs": jobs, "single": counts["single"], "base": base, "index": index,
            "shards": shard, "merge": merge, "critical_path": critical, "index_floor": floor,
            "total": base + sum(index) + (counts["both"] - before_shards) + merge,
            "speed_up": round(counts["single"] / critical, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.jobs_instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", type=Path, default=CACHE / "gateway" / "capture.pcapng")
    ap.add_argument("--keylog", type=Path, default=None, help="default: keys.log beside the capture")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not args.capture.exists():
        print(f"no capture at {args.capture} (python -m bench --modes gateway makes it)", file=sys.stderr)
        return 2
    capture = args.capture.resolve()  # (the runs start in a temporary directory)
    r = measure(capture, (args.keylog or capture.parent / "keys.log").resolve(), args.jobs)
    g = 1e9
    print(f"{r['capture']}, --jobs {r['jobs']}, instructions (10^9):")
    print(f"  one process                    {r['single'] / g:7.2f}")
    print(f"  serial before (imports, keys)  {r['base'] / g:7.2f}")
    print("  stage 1 index, per process     " + "  ".join(f"{x / g:.2f}" for x in r["index"]))
    print("    (bare block walk, per process " + "  ".join(f"{x / g:.2f}" for x in r["index_floor"]) + ")")
    print("  stage 2 shard, per process     " + "  ".join(f"{x / g:.2f}" for x in r["shards"]))
    print(f"  serial after (merge, report)   {r['merge'] / g:7.2f}")
    print(f"  critical path                  {r['critical_path'] / g:7.2f}   all processes {r['total'] / g:.2f} "
          f"({r['total'] / r['single'] - 1:+.0%} work)")
    print(f"  speed-up on {r['jobs']} equal cores       {r['speed_up']:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
