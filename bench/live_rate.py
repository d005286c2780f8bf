"""Does `acflow live` keep up with a 50 Mbit/s tunnel? The bulk captures (bench/cache/<mode>/, made by bench/lab.py:
a real openconnect ↔ ocserv session carrying 50 Mbit/s for 15 s) are written into `acflow live --stdin` at line rate
(each packet block when its capture timestamp says, relative to the first), as dumpcap would hand them over.

A pipe holds 64 KiB: when the reader falls behind, the writer blocks and falls behind its schedule. Reported per
mode: the capture's span and rate, how late the writer was at worst and at the end (0 ≈ live kept up), how long
after the last byte acflow printed its report, acflow's CPU seconds per second of traffic (under 1: it keeps up
with room to spare), and the same for tshark reading the same paced stream with the same keys (`--tshark`), as a
ratio (tshark's command is bench/measure.py's, with the DTLS PSK of bench/cache/<mode>/meta.json when there).
Nothing here asserts on a timing.

    python -m bench.live_rate                 # both modes, acflow only
    python -m bench.live_rate --modes dtls --tshark
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"


def blocks(path: Path):
    """(timestamp or None, raw block bytes) of a pcapng file, in order (little-endian sections as dumpcap writes)."""
    data = path.read_bytes()
    pos, resol = 0, []
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if blen < 12 or pos + blen > len(data):
            break
        raw = data[pos:pos + blen]
        ts = None
        if btype == 0x0A0D0D0A:
            resol = []
        elif btype == 1:  # IDB: if_tsresol (option 9), default 10^-6
            r, opt = 1e-6, 16
            while opt + 4 <= blen - 4:
                code, olen = struct.unpack_from("<HH", raw, opt)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = raw[opt + 4]
                    r = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                opt += 4 + ((olen + 3) & ~3)
            resol.append(r)
        elif btype == 6:  # EPB
            iface, hi, lo = struct.unpack_from("<III", raw, 8)
            ts = ((hi << 32) | lo) * (resol[iface] if iface < len(resol) else 1e-6)
        yield ts, raw
        pos += blen


def paced_feed(path: Path, cmd: list[str], out_path: Path) -> dict:
    """Write ``path`` into ``cmd``'s stdin at line rate; returns the timings."""
    items = list(blocks(path))
    t0 = next(ts for ts, _ in items if ts is not None)
    span = max(ts for ts, _ in items if ts is not None) - t0
    size = path.stat().st_size
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
    start = time.monotonic()
    worst = 0.0
    pending = b""
    for ts, raw in items:
        if ts is not None:
            due = start + (ts - t0)
            now = time.monotonic()
            if due > now:
                if pending:
                    proc.stdin.write(pending)
                    proc.stdin.flush()
                    pending = b""
                    now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            else:
                worst = max(worst, now - due)
        pending += raw
        if len(pending) >= 1 << 16:
            proc.stdin.write(pending)
            pending = b""
    proc.stdin.write(pending)
    proc.stdin.close()
    fed = time.monotonic()
    end_late = fed - start - span
    proc.wait()
    done = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"span_s": round(span, 3), "mbit_s": round(size * 8 / span / 1e6, 1), "writer_worst_late_s": round(worst, 3),
            "writer_end_late_s": round(end_late, 3), "report_after_last_byte_s": round(done - fed, 3),
            "cpu_s": round(cpu, 2), "cpu_per_traffic_s": round(cpu / span, 3), "returncode": proc.returncode}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="dtls,cstp")
    ap.add_argument("--tshark", action="store_true", help="also feed tshark the same paced stream (ratio)")
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args(argv)
    results = {}
    for mode in args.modes.split(","):
        cap, keys = args.cache / mode / "capture.pcapng", args.cache / mode / "keys.log"
        if not cap.exists():
            print(f"{mode}: no {cap} (run `python -m bench --regen` as root first)", file=sys.stderr)
            continue
        out = Path(f"/tmp/acflow-live-rate-{os.getpid()}.json")
        acflow = [sys.executable, "-m", "analyzer.cli", "live", "--stdin", "--keylog", str(keys), "--format", "json"]
        r = {"acflow": paced_feed(cap, acflow, out)}
        try:
            doc = json.loads(out.read_text())
            s = doc["sessions"][0]
            r["acflow"]["inner_packets"] = s["tunnel"].get("inner_packets")
            r["acflow"]["phases"] = {p["phase"]: p["status"] for p in s["phases"]}
        except (ValueError, KeyError, IndexError) as e:
            r["acflow"]["problem"] = f"no report: {e}"
        if args.tshark and shutil.which("tshark"):
            from .measure import tshark_argv  # noqa: PLC0415 - the bench's fair tshark command (it decrypts)

            meta = args.cache / mode / "meta.json"
            psk = json.loads(meta.read_text()).get("psk_options", []) if meta.exists() else []
            tshark = tshark_argv(Path("-"), keys, psk)
            r["tshark"] = paced_feed(cap, tshark, out)
            r["acflow_cpu_vs_tshark"] = round(r["acflow"]["cpu_s"] / max(r["tshark"]["cpu_s"], 1e-9), 3)
        out.unlink(missing_ok=True)
        results[mode] = r
        print(f"{mode}: {json.dumps(r)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
