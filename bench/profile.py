"""Profile `acflow analyze` with cProfile (stdlib) and summarise where the time goes.

The profiled run is the same command as the timed one (`analyze CAP --keylog K --format json -o …`), started as
`python -m cProfile -o FILE -m analyzer.cli …` in a child process. cProfile adds a fixed cost to every Python
call, so the profiled run is slower than the timed one and small, often-called functions look heavier than
they are; the shares between modules are what to read, not the absolute times.
"""
from __future__ import annotations

import io
import json
import pstats
import subprocess
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

from . import measure
from .measure import ROOT, CommandFailed, child_cwd, child_env

_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def run_profile(capture: Path, keylog: Path, prof_path: Path, out_json: Path) -> float:
    """Run the profiled analysis; return its wall time."""
    argv = [sys.executable, "-m", "cProfile", "-o", str(prof_path), "-m", "analyzer.cli", "analyze", str(capture),
            "--keylog", str(keylog), "--format", "json", "-o", str(out_json)]
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=child_cwd() or ROOT, capture_output=True, text=True, env=child_env(),
                       check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not prof_path.exists():
        raise CommandFailed(f"profiled run failed (exit {p.returncode}): {p.stderr[-2000:]}")
    return wall


def run_stages(capture: Path, keylog: Path) -> dict:
    """bench/stages.py in a child: the layers' CPU time without a profiler (see there)."""
    # run by path (sys.path[0] = bench/), so that analyzer/dissectors come from the snapshot (PYTHONPATH)
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("stages.py")), str(capture), str(keylog)],
                       cwd=child_cwd() or ROOT, capture_output=True, text=True, env=child_env(), check=False)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (p.stderr or p.stdout)[-1000:]}


def format_stages(stages: dict, frames: int, full_cpu: float | None) -> tuple[str, list[dict]]:
    """Per-layer CPU time (differences of the cumulative passes), as text and as rows: what `acflow analyze`
    spends, then the general path's layers (what every frame would cost without the fast lanes)."""
    main = [("imports", "imports (what `acflow analyze` loads)"),
            ("read", "read capture (pcapng blocks → Frame)"),
            ("pipeline", "pipeline: fast lanes + the general path for the other frames"),
            ("analyze", "reading loop, sessions, rules, JSON report")]
    general = [("read", "read capture"), ("decode", "decode headers (→ Packet)"),
               ("flows", "flows: TCP reassembly / UDP flows"),
               ("pipeline_general", "trackers: TLS/DTLS decryption, HTTP, CSTP, channel stats")]

    def rows_of(names):
        rows, prev = [], 0.0
        for key, what in names:
            st = stages.get(key) or {}
            if "cpu_s" not in st:
                rows.append({"stage": key, "what": what, "error": st.get("error", "not measured")})
                continue
            own = st["cpu_s"] if key == "imports" else max(st["cpu_s"] - prev, 0.0)
            if key != "imports":
                prev = st["cpu_s"]
            rows.append({"stage": key, "what": what, "cpu_s": round(own, 3),
                         "us_per_frame": round(1e6 * own / max(frames, 1), 2)})
        return rows

    def text_of(rows, tail):
        total = sum(r.get("cpu_s", 0.0) for r in rows) or 1e-12
        lines = []
        for r in rows:
            if "error" in r:
                lines.append(f"  {'':>6}  {'':>9}  {'':>9}  {r['what']}: {r['error']}")
            else:
                r["share"] = round(r["cpu_s"] / total, 4)
                lines.append(f"  {100 * r['share']:5.1f}%  {r['cpu_s']:7.2f} s  {r['us_per_frame']:6.1f} µs  "
                             f"{r['what']}")
        lines.append(f"  {'':>6}  {total:7.2f} s  {1e6 * total / max(frames, 1):6.1f} µs  {tail}")
        return lines

    rows = rows_of(main)
    lines = text_of(rows, "in all" + (f" (the timed `acflow analyze` runs: median {full_cpu:.2f} s CPU, incl. "
                                      "interpreter start-up)" if full_cpu is not None else ""))
    fast = (stages.get("pipeline") or {}).get("fast_frames")
    if fast is not None:
        lines.append(f"  fast lanes took {fast} of {frames} frames ({100 * fast / max(frames, 1):.1f} %)")
    grows = rows_of(general)
    lines.append("  the general path's layers (every frame, fast lanes off):")
    lines += text_of(grows, "in all, without fast lanes (imports and report not included)")
    for r in grows:
        r["stage"] = "general:" + r["stage"]
    return "\n".join(lines) + "\n", rows + grows


def module_of(filename: str, funcname: str) -> str:
    """A short owner name for a profile entry: repo-relative path, third-party package, stdlib module or the
    built-in/extension function itself."""
    if filename == "~":
        return funcname  # e.g. "<method 'decrypt' of 'builtins.AESGCM' objects>"
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return filename
    for base in filter(None, (measure.SNAPSHOT, ROOT)):  # acflow's code runs from the snapshot
        try:
            return str(path.relative_to(base.resolve()))
        except ValueError:
            pass
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            i = parts.index(marker)
            if i + 1 < len(parts):
                return parts[i + 1].removesuffix(".py")
    try:
        return "stdlib:" + str(path.relative_to(_STDLIB))
    except ValueError:
        return filename


def summarise(prof_path: Path, *, frames: int, label: str, unprofiled_wall: float | None,
              profiled_wall: float, top: int = 40, stages: dict | None = None,
              unprofiled_cpu: float | None = None) -> tuple[str, dict]:
    """(text for profile.txt, machine-readable summary)."""
    st = pstats.Stats(str(prof_path))
    total = st.total_tt or 1e-12
    by_module: dict[str, float] = defaultdict(float)
    by_package: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        mod = module_of(filename, func)
        by_module[mod] += tt
        by_package[_package(mod)] += tt
        rows.append((tt, ct, nc, cc, mod, line, func))
    out = io.StringIO()
    w = out.write
    w(f"acflow profile — {label}\n")
    w(f"cProfile total {total:.2f} s of self time over {frames} frames ({total / max(frames, 1) * 1e6:.1f} µs/frame "
      f"under the profiler); profiled wall {profiled_wall:.2f} s")
    if unprofiled_wall:
        w(f", unprofiled wall (median of the timed rounds) {unprofiled_wall:.2f} s "
          f"(profiler overhead ×{profiled_wall / unprofiled_wall:.2f})")
    w("\n\n")
    stage_rows = None
    if stages is not None:
        text, stage_rows = format_stages(stages, frames, unprofiled_cpu)
        w("CPU time per layer, no profiler (bench/stages.py: cumulative passes over the same capture in one process, "
          "best of 2)\n")
        w(text)
        w("\n")
    w("cProfile: self time by package\n")
    for pkg, tt in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]:
        w(f"  {100 * tt / total:5.1f}%  {tt:8.2f} s  {pkg}\n")
    w("\ncProfile: self time by module / built-in\n")
    for mod, tt in sorted(by_module.items(), key=lambda kv: -kv[1])[:30]:
        w(f"  {100 * tt / total:5.1f}%  {tt:8.2f} s  {mod}\n")
    w(f"\nTop {top} functions by self time (calls/frame = calls ÷ frames in the capture)\n")
    w(f"  {'self%':>6} {'self s':>8} {'cum s':>8} {'calls':>10} {'calls/fr':>8} {'µs/call':>8}  function\n")
    rows.sort(key=lambda r: -r[0])
    for tt, ct, nc, _cc, mod, line, func in rows[:top]:
        where = f"{mod}:{line}({func})" if not mod.startswith("<") else mod
        w(f"  {100 * tt / total:5.1f}% {tt:8.3f} {ct:8.3f} {nc:10d} {nc / max(frames, 1):8.2f} "
          f"{1e6 * tt / max(nc, 1):8.2f}  {where}\n")
    w(f"\nTop {top} acflow functions by cumulative time\n")
    w(f"  {'cum%':>6} {'cum s':>8} {'self s':>8} {'calls':>10}  function\n")
    own = [r for r in rows if r[4].startswith(("analyzer/", "dissectors/"))]
    own.sort(key=lambda r: -r[1])
    whole = max([total] + [r[1] for r in own])  # cumulative times of generators can exceed the self-time sum
    for tt, ct, nc, _cc, mod, line, func in own[:top]:
        w(f"  {100 * ct / whole:5.1f}% {ct:8.3f} {tt:8.3f} {nc:10d}  {mod}:{line}({func})\n")
    w("\npstats, sorted by self time (raw)\n")
    raw = io.StringIO()
    pstats.Stats(str(prof_path), stream=raw).sort_stats("tottime").print_stats(25)
    w("\n".join(l for l in raw.getvalue().splitlines() if l.strip() and not l.startswith(str(prof_path))))
    w("\n")
    summary = {
        "stages": stage_rows,
        "label": label, "frames": frames, "profiled_total_s": round(total, 3),
        "profiled_wall_s": round(profiled_wall, 3),
        "by_package": [{"package": p, "self_s": round(t, 3), "share": round(t / total, 4)}
                       for p, t in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]],
        "by_module": [{"module": m, "self_s": round(t, 3), "share": round(t / total, 4)}
                      for m, t in sorted(by_module.items(), key=lambda kv: -kv[1])[:20]],
        "top_functions": [{"function": f"{mod}:{line}({func})" if not mod.startswith("<") else mod,
                           "self_s": round(tt, 4), "cum_s": round(ct, 4), "calls": nc, "share": round(tt / total, 4)}
                          for tt, ct, nc, _cc, mod, line, func in rows[:20]],
    }
    return out.getvalue(), summary


def _package(mod: str) -> str:
    if mod.startswith(("analyzer/", "dissectors/")):
        parts = mod.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else parts[0] + "/"  # dissectors/tls, analyzer/
    if mod.startswith("stdlib:"):
        return "stdlib"
    if mod.startswith("<"):
        return "built-ins / C extensions"
    return mod
