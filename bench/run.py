"""`python -m bench`: acflow vs tshark on the same bulk captures, at 1×, 2× and 4×; peak RSS; a cProfile summary.

See bench/README.md. Nothing here asserts on timings: the bench measures and reports.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ceiling, measure
from .measure import ROOT, CommandFailed, run_measured
from .scale import count_frames, merge_clients, scale_capture

BENCH = Path(__file__).resolve().parent
DEFAULT_CACHE = BENCH / "cache"
BASELINE = ROOT / "samples" / "baseline"

# What the lab makes (see bench/lab.py), and the tshark display filter that shows a decrypted inner payload in
# each mode (used once per capture, untimed, to check that every copy of an N× capture decrypts).
MODES = {
    "dtls": {"what": "inner TCP stream over DTLS 1.2 (PSK-NEGOTIATE, AES-256-GCM)", "decrypted": "dtls and data.data"},
    "cstp": {"what": "inner TCP stream over CSTP (TLS 1.3, AES-256-GCM); UDP/443 dropped at the gateway",
             "decrypted": "tls and http"},
    "gateway": {"what": "gateway-side: many openconnect clients at once against one ocserv, each in its own namespace "
                        "and address, DTLS up, each a paced inner TCP stream (bench/lab.py make_many_clients); "
                        "1× only", "decrypted": "dtls and data.data"},
}
#: a gateway-side capture of two clients at once, made of the dtls and cstp captures of the same size
#: (bench/scale.py merge_clients: the cstp client moved to its own address), for `--jobs`
CLIENTS = {"what": "two clients at once on one gateway: the dtls and the cstp session, each from its own address "
                   "(bench/scale.py merge_clients)", "decrypted": "(dtls and data.data) or (tls and http)"}
QUICK_MODE = {"what": "committed baseline sample (samples/baseline): handshake, 5 pings over DTLS, disconnect",
              "decrypted": "dtls and data.data"}

DEFAULT_DURATION = 15.0  # seconds of inner stream per lab session
DEFAULT_RATE = 50.0  # Mbit/s


def say(*a) -> None:
    print("[bench]", *a, flush=True)


# -- inputs ------------------------------------------------------------------------------------------------------

def _signature(path: Path) -> list:
    st = path.stat()
    return [st.st_size, int(st.st_mtime)]


def _load_meta(d: Path) -> dict:
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_meta(d: Path, meta: dict) -> None:
    (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def prepare_clients(parts: list[dict], args) -> dict:
    """The "clients" capture at every size: the parts' (dtls, cstp) captures of that size merged as two clients."""
    d = args.cache / "clients"
    d.mkdir(parents=True, exist_ok=True)
    keylog = d / "keys.log"
    keylog.write_text("".join(Path(p["keylog"]).read_text() for p in parts))
    meta = _load_meta(d)
    files = {}
    for n in args.sizes:
        path = d / ("capture.pcapng" if n == 1 else f"capture-x{n}.pcapng")
        srcs = [p["files"][n]["path"] for p in parts]
        sig = [_signature(Path(x)) for x in srcs]
        info = meta.get(str(n)) or {}
        if info.get("sources") != sig or not path.exists() or info.get("signature") != _signature(path):
            t0 = time.perf_counter()
            info = {"merge": merge_clients(srcs, path), "sources": sig}
            say(f"clients: built the {n}× capture ({path.stat().st_size / 1e6:.0f} MB) in "
                f"{time.perf_counter() - t0:.0f} s")
            info["signature"] = _signature(path)
            info["frames"] = _count_frames(path)
        meta[str(n)] = info
        files[n] = {"path": path, "bytes": path.stat().st_size, "frames": info["frames"], "tshark_decrypted": None}
    _save_meta(d, meta)
    return {"mode": "clients", "keylog": keylog, "psk_options": [o for p in parts for o in p["psk_options"]],
            "files": files, "session": {"source": "merge of " + ", ".join(p["mode"] for p in parts)}}


def prepare(mode: str, args, scratch: Path) -> dict:
    """Make sure the 1× capture (lab or baseline) and its N× copies exist; return what the bench needs."""
    d = args.cache / mode
    if mode == "baseline":
        d.mkdir(parents=True, exist_ok=True)
        base, keylog = BASELINE / "capture.pcapng", BASELINE / "keys.log"
        session = {"source": "samples/baseline"}
    else:
        base, keylog = d / "capture.pcapng", d / "keys.log"
        if args.regen or not (base.exists() and keylog.exists()):
            from .lab import make_capture, make_many_clients

            if d.exists():
                shutil.rmtree(d)
            t0 = time.perf_counter()
            if mode == "gateway":
                say(f"{mode}: making the capture with the lab ({args.clients} clients, {args.duration:g} s at "
                    f"{args.rate / args.clients:g} Mbit/s each)")
                make_many_clients(d, clients=args.clients, duration=args.duration,
                                  rate_mbit=args.rate / args.clients)
            else:
                say(f"{mode}: making the 1× capture with the lab ({args.duration:g} s at {args.rate:g} Mbit/s)")
                make_capture(mode, d, duration=args.duration, rate_mbit=args.rate)
            say(f"{mode}: capture made in {time.perf_counter() - t0:.0f} s")
        try:
            session = json.loads((d / "session.json").read_text())
        except (OSError, ValueError):
            session = {}
    meta = _load_meta(d)
    sig = _signature(base)
    if meta.get("base_signature") != sig or meta.get("base") != str(base):
        meta = {"base": str(base), "base_signature": sig, "sizes": {}}
    if "psk_options" not in meta:
        meta["psk_options"] = measure.dtls_psk_options(base, keylog, scratch / f"{mode}.keys")
    files = {}
    # the gateway capture's copies shift every client's ports (bench/scale.py all_clients), the others' the one
    # client's
    for n in args.sizes:
        if n == 1:
            path = base
            info = meta["sizes"].get("1") or {}
        else:
            path = d / f"capture-x{n}.pcapng"
            info = meta["sizes"].get(str(n)) or {}
            stale = (args.regen or not path.exists() or "scale" not in info
                     or info.get("signature") != _signature(path))
            if stale:
                t0 = time.perf_counter()
                info = {"scale": scale_capture(base, path, n, all_clients=mode == "gateway")}
                say(f"{mode}: built the {n}× capture ({path.stat().st_size / 1e6:.0f} MB) in "
                    f"{time.perf_counter() - t0:.0f} s")
        info["signature"] = _signature(path)
        if "frames" not in info:
            info["frames"] = _count_frames(path)
        # the tshark check (slow: a protocol tree per frame) on the 1× and the largest copy; the copies in
        # between are made the same way
        if not args.no_validate and "tshark_decrypted" not in info and n in (1, max(args.sizes)):
            t0 = time.perf_counter()
            info["tshark_decrypted"] = measure.tshark_decrypted_count(path, keylog, meta["psk_options"],
                                                                      _mode_info(mode)["decrypted"])
            say(f"{mode}: {n}×: tshark shows {info['tshark_decrypted']} decrypted frames "
                f"('{_mode_info(mode)['decrypted']}', untimed check, {time.perf_counter() - t0:.0f} s)")
        meta["sizes"][str(n)] = info
        files[n] = {"path": path, "bytes": path.stat().st_size, **{k: v for k, v in info.items() if k != "signature"}}
    _save_meta(d, meta)
    return {"mode": mode, "keylog": keylog, "psk_options": meta["psk_options"], "files": files, "session": session}


def _mode_info(mode: str) -> dict:
    if mode.endswith("-keyless"):  # (--keyless: the capture of the mode it names, read without keys)
        info = _mode_info(mode[:-len("-keyless")])
        return dict(info, what=info["what"] + "; both tools without keys")
    return QUICK_MODE if mode == "baseline" else CLIENTS if mode == "clients" else MODES[mode]


def _count_frames(path: Path) -> int:
    return count_frames(path)


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# -- measuring ---------------------------------------------------------------------------------------------------

def _inner_packets(report: dict) -> int:
    total = 0
    for s in report.get("sessions", []):
        ip = (s.get("tunnel") or {}).get("inner_packets") or {}
        total += sum(v for v in ip.values() if isinstance(v, int))
    return total


def measure_all(inputs: list[dict], args, scratch: Path, ceiling_rounds: list | None = None) -> list[dict]:
    """Every capture timed ``args.rounds`` times (acflow, acflow --jobs, tshark, tshark -q), round by round; with
    --jobs N > 1, each round also measures the machine's own N-process ceiling (bench/ceiling.py) into
    ``ceiling_rounds``, under the same load as the timings it judges."""
    cells: dict[tuple[str, int], dict] = {}
    for inp in inputs:
        for n, f in inp["files"].items():
            cells[(inp["mode"], n)] = {"mode": inp["mode"], "size": n, "frames": f["frames"], "bytes": f["bytes"],
                                       "runs": {"acflow": [], "tshark": [], "tshark_read_only": [],
                                                **({"acflow_jobs": []} if args.jobs > 1 else {})},
                                       "acflow_frames": [], "acflow_inner_packets": [], "jobs_same_report": [],
                                       "tshark_decrypted": f.get("tshark_decrypted")}
            _warm(f["path"])
    total = args.rounds * len(cells)
    i = 0
    for r in range(args.rounds):
        for inp in inputs:
            for n, f in inp["files"].items():
                i += 1
                cell = cells[(inp["mode"], n)]
                out_json = scratch / f"acflow-{inp['mode']}-{n}.json"
                a = run_measured("acflow", measure.acflow_analyze_argv(f["path"], inp["keylog"], out_json),
                                 env=measure.child_env(), cwd=measure.child_cwd())
                report = json.loads(out_json.read_text())
                out_json.unlink()
                cell["acflow_frames"].append(sum(c.get("frames", 0) for c in report.get("captures", [])))
                cell["acflow_inner_packets"].append(_inner_packets(report))
                j = None
                if args.jobs > 1:
                    j = run_measured("acflow-j", measure.acflow_analyze_argv(f["path"], inp["keylog"], out_json,
                                                                             args.jobs),
                                     env=measure.child_env(), cwd=measure.child_cwd())
                    cell["jobs_same_report"].append(json.loads(out_json.read_text()) == report)
                    out_json.unlink()
                    cell["runs"]["acflow_jobs"].append(j.as_dict())
                t = run_measured("tshark", measure.tshark_argv(f["path"], inp["keylog"], inp["psk_options"]))
                q = run_measured("tshark-q", measure.tshark_argv(f["path"], inp["keylog"], inp["psk_options"],
                                                                 dissect=False))
                for key, run in (("acflow", a), ("tshark", t), ("tshark_read_only", q)):
                    cell["runs"][key].append(run.as_dict())
                say(f"[{i}/{total}] round {r + 1} {inp['mode']} {n}×: acflow {a.wall_s:.2f} s (cpu {a.cpu_s:.2f} s, "
                    f"{a.maxrss_kib / 1024:.0f} MiB)  tshark {t.wall_s:.2f} s (cpu {t.cpu_s:.2f} s, "
                    f"{t.maxrss_kib / 1024:.0f} MiB)  tshark -q {q.wall_s:.2f} s"
                    + (f"  acflow --jobs {args.jobs} {j.wall_s:.2f} s (cpu {j.cpu_s:.2f} s)" if j else ""))
        if args.jobs > 1 and ceiling_rounds is not None:
            c = ceiling.measure_once(args.jobs)
            ceiling_rounds.append(c)
            say(f"round {r + 1}: the machine's own {args.jobs}-process ceiling (bench/ceiling.py): "
                f"{c['speedup']:.2f}x")
    return [_summarise_cell(c) for c in cells.values()]


def fixed_cost(scratch: Path, measure_it: bool = True) -> dict | None:
    """Start-up cost: both tools on the 61-frame baseline sample (after an untimed run that fills acflow's
    bytecode cache; only that run with measure_it=False)."""
    cap, keylog = BASELINE / "capture.pcapng", BASELINE / "keys.log"
    out_json = scratch / "warm.json"
    run_measured("acflow", measure.acflow_analyze_argv(cap, keylog, out_json), env=measure.child_env(),
                 cwd=measure.child_cwd())
    if not measure_it:
        return None
    psk = measure.dtls_psk_options(cap, keylog, scratch / "warm.keys")
    a = run_measured("acflow", measure.acflow_analyze_argv(cap, keylog, out_json), env=measure.child_env(),
                     cwd=measure.child_cwd())
    t = run_measured("tshark", measure.tshark_argv(cap, keylog, psk))
    return {"capture": "samples/baseline/capture.pcapng", "frames": 61,
            "acflow": {k: round(v, 4) if isinstance(v, float) else v for k, v in a.as_dict().items() if k != "tool"},
            "tshark": {k: round(v, 4) if isinstance(v, float) else v for k, v in t.as_dict().items() if k != "tool"}}


def marginal(results: list[dict]) -> dict:
    """Per-frame cost without the start-up: the slope between the smallest and the largest size of a mode."""
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        rs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["size"])
        if len(rs) < 2 or rs[-1]["frames"] == rs[0]["frames"]:
            continue
        df = rs[-1]["frames"] - rs[0]["frames"]
        m = {"sizes": [rs[0]["size"], rs[-1]["size"]]}
        for tool in ("acflow", "tshark"):
            m[f"{tool}_us_per_frame_cpu"] = round(1e6 * (rs[-1][tool]["cpu_s"] - rs[0][tool]["cpu_s"]) / df, 2)
            m[f"{tool}_us_per_frame_wall"] = round(1e6 * (rs[-1][tool]["wall_s"] - rs[0][tool]["wall_s"]) / df, 2)
        ok = m["tshark_us_per_frame_cpu"] > 0 and m["acflow_us_per_frame_cpu"] > 0
        m["ratio_cpu"] = round(m["acflow_us_per_frame_cpu"] / m["tshark_us_per_frame_cpu"], 3) if ok else None
        out[mode] = m
    return out


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _summarise_cell(c: dict) -> dict:
    frames = c["frames"]
    out = {"mode": c["mode"], "size": c["size"], "frames": frames, "bytes": c["bytes"]}
    for tool, runs in c["runs"].items():
        out[tool] = {
            "wall_s": round(_med(runs, "wall_s"), 4), "cpu_s": round(_med(runs, "cpu_s"), 4),
            "maxrss_mib": round(_med(runs, "maxrss_kib") / 1024, 1),
            "maxrss_mib_max": round(max(r["maxrss_kib"] for r in runs) / 1024, 1),
            "us_per_frame_wall": round(1e6 * _med(runs, "wall_s") / max(frames, 1), 2),
            "us_per_frame_cpu": round(1e6 * _med(runs, "cpu_s") / max(frames, 1), 2),
            "rounds": len(runs),
            "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "tool"}
                     for r in runs],
        }
    out["ratio_wall"] = round(out["acflow"]["wall_s"] / out["tshark"]["wall_s"], 3)
    out["ratio_cpu"] = round(out["acflow"]["cpu_s"] / out["tshark"]["cpu_s"], 3)
    if "acflow_jobs" in out:
        out["ratio_wall_jobs"] = round(out["acflow_jobs"]["wall_s"] / out["tshark"]["wall_s"], 3)
        out["speedup_jobs"] = round(out["acflow"]["wall_s"] / out["acflow_jobs"]["wall_s"], 3)
    out["checks"] = {
        "acflow_frames": sorted(set(c["acflow_frames"])),
        "acflow_inner_packets": sorted(set(c["acflow_inner_packets"])),
        "tshark_decrypted": c["tshark_decrypted"],
        "jobs_same_report": sorted(set(c["jobs_same_report"])),
    }
    return out


def check_scaling(results: list[dict]) -> list[str]:
    """Every N× capture must decrypt N times what the 1× one does, for both tools (sanity, not timing)."""
    problems = []
    ones = {r["mode"]: r for r in results if r["size"] == 1}
    for r in results:
        chk = r["checks"]
        if chk["acflow_frames"] != [r["frames"]]:
            problems.append(f"{r['mode']} {r['size']}×: acflow read {chk['acflow_frames']} frames, "
                            f"file has {r['frames']}")
        if chk.get("jobs_same_report") and chk["jobs_same_report"] != [True]:
            problems.append(f"{r['mode']} {r['size']}×: acflow --jobs gave another report than one process")
        if len(chk["acflow_inner_packets"]) != 1:
            problems.append(f"{r['mode']} {r['size']}×: acflow's inner packet count varied: "
                            f"{chk['acflow_inner_packets']}")
        one = ones.get(r["mode"])
        if one is None or r["size"] == 1:
            continue
        n = r["size"]
        if chk["acflow_inner_packets"] and one["checks"]["acflow_inner_packets"] and \
                chk["acflow_inner_packets"][0] != n * one["checks"]["acflow_inner_packets"][0]:
            problems.append(f"{r['mode']} {n}×: acflow decrypted {chk['acflow_inner_packets'][0]} inner packets, "
                            f"expected {n} × {one['checks']['acflow_inner_packets'][0]}")
        if chk["tshark_decrypted"] is not None and one["checks"]["tshark_decrypted"] is not None and \
                chk["tshark_decrypted"] != n * one["checks"]["tshark_decrypted"]:
            problems.append(f"{r['mode']} {n}×: tshark decrypted {chk['tshark_decrypted']} frames, expected "
                            f"{n} × {one['checks']['tshark_decrypted']}")
    return problems


# -- machine, table ----------------------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    from analyzer import __version__ as acflow_version

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or None
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=False).stdout.strip()) if commit else None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gib": mem,
            "python": platform.python_version(), "python_implementation": platform.python_implementation(),
            "tshark": measure.tshark_version(), "acflow": acflow_version, "kernel": platform.release(),
            "git_commit": commit, "git_dirty": dirty, "acflow_command": " ".join(measure.acflow_argv())}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def format_table(results: list[dict]) -> str:
    jobs = any("acflow_jobs" in r for r in results)
    head = ("mode", "size", "frames", "MB", "acflow s", "cpu s", "µs/frame", "RSS MiB", "tshark s", "cpu s",
            "µs/frame", "RSS MiB", "ratio wall", "ratio cpu", "tshark -q s") + (
            ("--jobs s", "cpu s", "RSS MiB", "ratio wall", "speed-up") if jobs else ())
    rows = []
    for r in results:
        a, t, q = r["acflow"], r["tshark"], r["tshark_read_only"]
        j = r.get("acflow_jobs")
        rows.append((r["mode"], f"{r['size']}×", str(r["frames"]), f"{r['bytes'] / 1e6:.1f}",
                     f"{a['wall_s']:.2f}", f"{a['cpu_s']:.2f}", f"{a['us_per_frame_cpu']:.1f}",
                     f"{a['maxrss_mib']:.0f}", f"{t['wall_s']:.2f}", f"{t['cpu_s']:.2f}",
                     f"{t['us_per_frame_cpu']:.1f}", f"{t['maxrss_mib']:.0f}", f"{r['ratio_wall']:.2f}",
                     f"{r['ratio_cpu']:.2f}", f"{q['wall_s']:.2f}") + (
                     (f"{j['wall_s']:.2f}", f"{j['cpu_s']:.2f}", f"{j['maxrss_mib']:.0f}",
                      f"{r['ratio_wall_jobs']:.2f}", f"{r['speedup_jobs']:.2f}") if j else
                     ("", "", "", "", "") if jobs else ()))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.rjust(w) if i > 0 else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(row, widths))) + " |")
    return "\n".join(lines)


def memory_growth(results: list[dict]) -> dict:
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        rs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["size"])
        if len(rs) > 1:
            out[mode] = {tool: round(rs[-1][tool]["maxrss_mib"] / rs[0][tool]["maxrss_mib"], 3)
                         for tool in ("acflow", "tshark")}
            out[mode]["sizes"] = [rs[0]["size"], rs[-1]["size"]]
    return out


# -- main --------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=(
        "acflow vs tshark on bulk AnyConnect captures (1×/2×/4×), peak RSS, cProfile summary. "
        "Makes the lab captures on first use (root; cached in bench/cache/)."))
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per capture (median reported; default 3)")
    ap.add_argument("--regen", action="store_true", help="make the lab captures (and their 2×/4× copies) again")
    ap.add_argument("--sizes", default="1,2,4", help="capture sizes, as multiples of the lab session (default 1,2,4)")
    ap.add_argument("--quick", action="store_true",
                    help="no lab: the committed samples/baseline capture (and its copies) only, for a smoke run")
    ap.add_argument("--modes", default="dtls,cstp,clients,gateway",
                    help="lab captures to bench (default dtls,cstp,clients,gateway; clients: the dtls and cstp "
                         "captures merged as two clients of one gateway; gateway: a lab capture of --clients "
                         "clients at once)")
    ap.add_argument("--clients", type=int, default=50,
                    help="clients of the gateway capture (default 50; --rate is shared between them; with --regen)")
    ap.add_argument("--keyless", action="store_true",
                    help="also time every capture without keys (both tools; mode <name>-keyless)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="also time `acflow analyze --jobs N` (default 2; 1: not)")
    ap.add_argument("--duration", type=float, default=DEFAULT_DURATION,
                    help=f"seconds of inner stream per lab session (default {DEFAULT_DURATION:g}; with --regen)")
    ap.add_argument("--rate", type=float, default=DEFAULT_RATE,
                    help=f"inner stream rate in Mbit/s (default {DEFAULT_RATE:g}; with --regen)")
    ap.add_argument("--live", action="store_true",
                    help="time the installed `acflow` on the working tree as it is at each run, instead of a copy of "
                         "analyzer/ and dissectors/ taken at the start (bench/cache/snapshot/)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--profile-mode", default=None,
                    help="which capture's 1× to profile (default: the first of --modes, i.e. dtls)")
    ap.add_argument("--no-validate", action="store_true",
                    help="skip the untimed tshark pass that checks every copy decrypts")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where captures are kept (default bench/cache)")
    ap.add_argument("--results", type=Path, default=None,
                    help="results JSON (default bench/results.json; with --quick bench/cache/quick-results.json)")
    ap.add_argument("--profile-out", type=Path, default=None,
                    help="profile summary (default bench/profile.txt; with --quick bench/cache/quick-profile.txt)")
    args = ap.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error("--sizes takes comma-separated integers, e.g. 1,2,4")
    if not args.sizes or min(args.sizes) < 1:
        ap.error("--sizes must be positive integers")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    args.modes = ["baseline"] if args.quick else [m.strip() for m in args.modes.split(",") if m.strip()]
    if "clients" in args.modes and not {"dtls", "cstp"} <= set(args.modes):
        args.modes = [m for m in ("dtls", "cstp") if m not in args.modes] + args.modes
    for m in args.modes:
        if m == "clients":
            continue
        if m not in MODES and m != "baseline":
            ap.error(f"unknown mode {m!r}; known: {', '.join(MODES)}")
    if args.results is None:
        args.results = (args.cache / "quick-results.json") if args.quick else BENCH / "results.json"
    if args.profile_out is None:
        args.profile_out = (args.cache / "quick-profile.txt") if args.quick else BENCH / "profile.txt"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("tshark") is None:
        print("bench: tshark is needed (apt-get install tshark)", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC)
    load_before = _loadavg()
    args.cache = args.cache.resolve()
    args.cache.mkdir(parents=True, exist_ok=True)
    measure.PYCACHE = args.cache / "pycache"
    if args.live:
        digest_before = measure.source_digest()
    else:
        measure.SNAPSHOT, digest_before = measure.snapshot(args.cache)
    with tempfile.TemporaryDirectory(prefix="acflow-bench-") as tmp:
        scratch = Path(tmp)
        try:
            inputs = [prepare(m, args, scratch) for m in args.modes if m != "clients"]
            if "clients" in args.modes:
                inputs.append(prepare_clients([i for i in inputs if i["mode"] in ("dtls", "cstp")], args))
            if args.keyless:  # the same captures read by both tools without keys: what support engineers mostly get
                inputs += [dict(i, mode=f"{i['mode']}-keyless", keylog=None, psk_options=[]) for i in list(inputs)]
        except (CommandFailed, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            print(f"bench: preparing the captures failed: {e}", file=sys.stderr)
            return 1
        try:
            startup = fixed_cost(scratch, measure_it=not args.quick)
            if startup:
                say(f"start-up on the 61-frame baseline sample: acflow {startup['acflow']['cpu_s']:.2f} s cpu, "
                    f"tshark {startup['tshark']['cpu_s']:.2f} s cpu")
            say(f"timing {len(args.modes)} capture(s) × sizes {args.sizes} × {args.rounds} round(s)")
            ceiling_rounds: list[dict] = []
            results = measure_all(inputs, args, scratch, ceiling_rounds)
            machine_ceiling = ceiling.summarise(ceiling_rounds, args.jobs) if ceiling_rounds else None
            if machine_ceiling:
                for r in results:
                    if r.get("speedup_jobs") and machine_ceiling["speedup"]:
                        r["speedup_jobs_of_ceiling"] = round(r["speedup_jobs"] / machine_ceiling["speedup"], 3)
            if not startup:  # --quick: the 1× capture is the baseline sample itself
                base = min(results, key=lambda r: r["size"])
                startup = {"capture": "samples/baseline/capture.pcapng", "frames": base["frames"],
                           "acflow": base["acflow"]["runs"][0], "tshark": base["tshark"]["runs"][0]}
            problems = check_scaling(results)
            floor = None
            dtls_in = next((i for i in inputs if i["mode"] == "dtls"), None)
            if dtls_in is not None and not args.quick:
                from .floor import measure as measure_floor

                floor = measure_floor(dtls_in["files"][min(dtls_in["files"])]["path"], args.rounds)
            profile = None
            if not args.no_profile:
                target = next((i for i in inputs if i["mode"] == args.profile_mode), inputs[0])
                profile = _profile(target, results, args, scratch)
        except CommandFailed as e:
            print(f"bench: a run failed: {e}", file=sys.stderr)
            return 1
    table = format_table(results)
    machine = machine_info()
    digest_after = measure.source_digest()
    machine["acflow_sources_sha256"] = digest_before
    machine["acflow_snapshot"] = _repo_rel(measure.SNAPSHOT) if measure.SNAPSHOT else None
    warnings = []
    if digest_after != digest_before:
        machine["acflow_sources_sha256_at_end"] = digest_after
        warnings.append("acflow's sources (analyzer/, dissectors/) changed while the bench ran: "
                        + ("every run used the copy taken at the start (sha256 prefix "
                           f"{digest_before}), not the sources as they are now" if measure.SNAPSHOT else
                           "with --live, the rounds may have timed different versions; run it again"))
    doc = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick, "rounds": args.rounds, "sizes": args.sizes,
        "machine": machine, "loadavg": {"before": load_before, "after": _loadavg()},
        "commands": {
            "acflow": "acflow analyze CAP --keylog K --format json -o OUT.json --jobs 1",
            "acflow_jobs": f"acflow analyze CAP --keylog K --format json -o OUT.json --jobs {args.jobs}",
            "tshark": "tshark -n -r CAP -o tls.keylog_file:K [-o dtls.psk:HEX] --disable-heuristic rdpmt_dtls "
                      "--disable-heuristic udt_dtls -q -z io,stat,0",
            "tshark_read_only": "the same without -z io,stat,0 (tshark -q then skips dissection: no decryption)",
        },
        "captures": {inp["mode"]: {
            "what": _mode_info(inp["mode"])["what"],
            "session": {k: inp["session"].get(k) for k in ("duration_target_s", "rate_target_mbit", "sender",
                                                           "receiver", "dumpcap_dropped", "source")
                        if k in inp["session"]},
            "dtls_psk": bool(inp["psk_options"]),
            "sizes": {str(n): {k: (_repo_rel(v) if isinstance(v, Path) else v) for k, v in f.items()}
                      for n, f in inp["files"].items()},
        } for inp in inputs},
        "results": results,
        "memory_growth": memory_growth(results),
        "marginal_per_frame": marginal(results),
        "startup": startup,
        "table": table.splitlines(),
        "problems": problems,
        "warnings": warnings,
        "profile": profile,
        "floor": floor,
        "ceiling": machine_ceiling,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(f"acflow {machine['acflow']} vs {machine['tshark']} — {machine['cpu']}, {machine['cores']} cores, "
          f"Python {machine['python']}; medians of {args.rounds} round(s); load average before/after "
          f"{load_before} / {doc['loadavg']['after']}")
    print(table)
    print("ratio = acflow ÷ tshark (tshark: -q -z io,stat,0, i.e. every frame dissected and decrypted); "
          "tshark -q = the same without the tap: tshark then only reads the file")
    for mode, g in doc["memory_growth"].items():
        print(f"peak RSS {g['sizes'][0]}× → {g['sizes'][1]}× ({mode}): acflow ×{g['acflow']:.2f}, "
              f"tshark ×{g['tshark']:.2f}")
    for mode, m in doc["marginal_per_frame"].items():
        if m["acflow_us_per_frame_cpu"] <= 0 or m["tshark_us_per_frame_cpu"] <= 0:
            continue  # too small a capture (--quick): start-up noise dominates
        print(f"per frame without start-up ({mode}, slope {m['sizes'][0]}×→{m['sizes'][1]}×): acflow "
              f"{m['acflow_us_per_frame_cpu']:.1f} µs cpu, tshark {m['tshark_us_per_frame_cpu']:.1f} µs cpu"
              + (f", ratio {m['ratio_cpu']:.2f}" if m["ratio_cpu"] else ""))
    print(f"start-up (61-frame sample): acflow {startup['acflow']['cpu_s']:.2f} s cpu / "
          f"{startup['acflow']['wall_s']:.2f} s, "
          f"tshark {startup['tshark']['cpu_s']:.2f} s cpu / {startup['tshark']['wall_s']:.2f} s")
    if floor:
        d1 = next(r for r in results if r["mode"] == "dtls" and r["size"] == 1)
        print(f"floor (bench/floor.py: pcapng walk + lookup + one AES-GCM decryption per record + start-up, no "
              f"analysis) on the DTLS 1× capture: {floor['floor_s']:.2f} s cpu = "
              f"{floor['floor_s'] / d1['tshark']['cpu_s']:.2f} × tshark")
    if machine_ceiling and machine_ceiling["speedup"]:
        print(f"ceiling (bench/ceiling.py: a CPU-bound loop alone and in {args.jobs} processes at once, each round): "
              f"this machine runs {args.jobs} busy processes {machine_ceiling['speedup']:.2f}x as fast as one "
              f"(rounds {machine_ceiling['speedup_min']:.2f}-{machine_ceiling['speedup_max']:.2f}x)"
              + "".join(f"; {r['mode']} {r['size']}× --jobs {args.jobs} {r['speedup_jobs']:.2f}x = "
                        f"{100 * r['speedup_jobs_of_ceiling']:.0f} % of it"
                        for r in results if r.get("speedup_jobs_of_ceiling")))
    for p in problems:
        print(f"PROBLEM: {p}")
    for w in warnings:
        print(f"WARNING: {w}")
    print(f"wrote {_rel(args.results)}" + (f" and {_rel(args.profile_out)}" if profile else "")
          + f" in {doc['elapsed_s']:.0f} s")
    return 1 if problems else 0


def _repo_rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _profile(inp: dict, results: list[dict], args, scratch: Path) -> dict | None:
    from .profile import run_profile, run_stages, summarise

    sizes = sorted(inp["files"])
    n = 1 if 1 in sizes else sizes[0]
    f = inp["files"][n]
    prof = args.cache / f"{inp['mode']}-x{n}.prof"
    say(f"profiling acflow on the {inp['mode']} {n}× capture (cProfile)")
    wall = run_profile(f["path"], inp["keylog"], prof, scratch / "profiled.json")
    say(f"timing the pipeline's layers on the {inp['mode']} {n}× capture (bench/stages.py)")
    stages = run_stages(f["path"], inp["keylog"])
    cell = next(r for r in results if r["mode"] == inp["mode"] and r["size"] == n)
    text, summary = summarise(prof, frames=f["frames"], label=f"{inp['mode']} {n}× ({f['path'].name}, "
                              f"{f['frames']} frames, {f['bytes'] / 1e6:.1f} MB)",
                              unprofiled_wall=cell["acflow"]["wall_s"], profiled_wall=wall, stages=stages,
                              unprofiled_cpu=cell["acflow"]["cpu_s"])
    args.profile_out.parent.mkdir(parents=True, exist_ok=True)
    args.profile_out.write_text(text)
    summary["file"] = _rel(args.profile_out)
    return summary
