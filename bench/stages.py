"""Where the time goes, without a profiler: the pipeline's layers timed cumulatively on one capture.

`python bench/stages.py CAPTURE KEYLOG` (or `python -m bench.stages …`) prints JSON: CPU seconds
(time.process_time) of

  read      the capture reader alone (analyzer.capture.read_capture_batches: pcapng blocks → Frame objects)
  pipeline  + everything the driver (analyzer.driver.Analyzer.feed_events) and its pipeline do with the frames:
            fast lanes for the frames of established tunnels, the general path for the rest (`fast_frames`: how
            many frames the lanes took); the flows are flushed, sessions and rules are left to `analyze`
  analyze   what `acflow analyze --format json` does after start-up (analyzer.analyze.run_analyze): the
            pipeline + the reading loop around it, sessions, rules, the JSON report

and the general path's layers, as every frame would take them without fast lanes:

  decode            read + dissectors.packet.decode of every frame (Ethernet/IP/TCP/UDP headers → Packet)
  flows             + dissectors.flows.FlowTable (TCP reassembly, UDP flows → StreamData/Datagram events)
  pipeline_general  + the trackers (TLS/DTLS decryption, HTTP, CSTP, channel statistics): Analyzer(fast_lanes=False)

each a separate pass over the same (cached) file (the best of two), so a layer's own cost is the difference to
the one before;
and `imports`, the CPU time to import what `acflow analyze` imports.
cProfile's overhead inflates Python-call-heavy code 2–3×; these numbers are not inflated. They use the
pipeline's documented interfaces (docs/architecture.md); if those change, the stage that broke reports its error
instead of a time.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn, repeat: int = 2) -> dict:
    """The best of `repeat` passes (the least disturbed by other work on the machine)."""
    best = None
    for _ in range(repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        try:
            n = fn()
        except Exception as e:  # noqa: BLE001 - report, do not fail the bench
            return {"error": f"{type(e).__name__}: {e}"}
        run = {"cpu_s": round(time.process_time() - t0, 4), "wall_s": round(time.perf_counter() - w0, 4), "n": n}
        if best is None or run["cpu_s"] < best["cpu_s"]:
            best = run
    return best


def measure_stages(capture: Path, keylog: Path) -> dict:
    t0 = time.process_time()
    from analyzer.analyze import load_keys, run_analyze
    from analyzer.capture import Frame, read_capture_batches
    from analyzer.driver import Analyzer
    from analyzer.report import render  # noqa: F401 - imported by `acflow analyze` too
    from dissectors import flows as flows_mod
    from dissectors import packet as packet_mod

    out = {"imports": {"cpu_s": round(time.process_time() - t0, 4)}}

    def frames():  # as analyzer.analyze reads them: a chunk's frames at a time
        return (ev for batch in read_capture_batches(capture) for ev in batch if type(ev) is Frame)

    def read():
        n = 0
        for _fr in frames():
            n += 1
        return n

    def decode():
        dec, n = packet_mod.decode, 0
        for fr in frames():
            if dec(fr.linktype, fr.data) is not None:
                n += 1
        return n

    def flows():
        dec, table, n = packet_mod.decode, flows_mod.FlowTable(), 0
        for fr in frames():
            pkt = dec(fr.linktype, fr.data)
            if pkt is not None:
                n += len(table.feed(pkt, fr.ts, fr.number))
        n += len(table.flush())
        return n

    lanes = {}

    def pipeline(fast: bool = True):
        keys, _info = load_keys([keylog], [])
        an = Analyzer(keys, fast_lanes=fast)
        an.start_capture(str(capture))
        for batch in read_capture_batches(capture):
            an.feed_events(batch)
        an.pipeline.finish()  # flows and trackers flushed; sessions and rules belong to the `analyze` stage
        st = an.stats()
        lanes["fast_frames"] = st["fast_frames"]
        return st["frames"]

    def pipeline_general():
        return pipeline(fast=False)

    def analyze():
        with tempfile.TemporaryDirectory() as tmp:
            rc = run_analyze(captures=[capture], keylogs=[keylog], rsa_keys=[], fmt="json",
                             output=Path(tmp) / "out.json", verbose=False, show_secrets=False, export_inner=None)
        if rc != 0:
            raise RuntimeError(f"run_analyze returned {rc}")
        return 1

    for name, fn in (("read", read), ("pipeline", pipeline), ("decode", decode), ("flows", flows),
                     ("pipeline_general", pipeline_general), ("analyze", analyze)):
        out[name] = _timed(fn)
        if name == "pipeline" and "cpu_s" in out[name]:
            out[name]["fast_frames"] = lanes.get("fast_frames")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/stages.py CAPTURE KEYLOG", file=sys.stderr)
        return 2
    print(json.dumps(measure_stages(Path(argv[0]), Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
