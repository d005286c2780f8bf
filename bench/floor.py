"""`python -m bench.floor [--cache DIR] [--rounds N]`: the least a single-threaded CPython analyzer must spend
on the DTLS bulk capture, to put acflow's time and the 0.5 × tshark target in proportion.

The "floor" loop does only what any analyzer of that capture must do per frame, with no checks, no objects
and no statistics: walk the pcapng blocks (struct), slice the frame, look its 4-tuple up in a dict, and, for a
DTLS record, one AES-256-GCM decryption of a record of the same length with `cryptography` (the record is
encrypted once per length beforehand with a throw-away key, so the decryption succeeds as it does with the
real keys — a failing one costs more, as it raises). Plus the interpreter's start-up with `cryptography`
imported (`python -c "import cryptography.hazmat.primitives.ciphers.aead"`).

It prints the parts and their sum next to tshark's time if bench/results.json has one; nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent

_II = struct.Struct("<II").unpack_from
_EPB = struct.Struct("<IIIII").unpack_from
_REC = struct.Struct("!BHHHIH").unpack_from  # DTLS record header
_AAD = struct.Struct("!QBHH").pack


def _blocks(data: bytes, with_decrypt: bool, records: dict) -> int:
    pos, end, n = 0, len(data), 0
    lanes: dict = {}
    while pos + 8 <= end:
        bt, bl = _II(data, pos)
        if bl < 12:
            break
        if bt == 6:
            _iface, _th, _tl, cl, _ol = _EPB(data, pos + 8)
            fr = data[pos + 28:pos + 28 + cl]
            n += 1
            if len(fr) >= 55 and fr[12] == 8 and fr[23] == 17:
                lane = lanes.get(fr[26:38])
                if lane is None:
                    lane = lanes[fr[26:38]] = [0]
                lane[0] += 1
                ct, ver, epoch, hi, lo, length = _REC(fr, 42)
                if with_decrypt and ct == 23 and epoch and length >= 24:
                    nonce, sealed = records[length]
                    records["aead"].decrypt(nonce, sealed, _AAD((epoch << 48) | (hi << 32) | lo, 23, ver, length - 24))
        pos += bl
    return n


def _sealed_records(data: bytes) -> dict:
    """One record per DTLS record length in the capture, sealed with a throw-away key (the AAD is filled in per
    record like the real one, so it is built in the loop: the sealed copy must use the same AAD)."""
    aead = AESGCM(bytes(range(32)))
    out: dict = {"aead": _AADFixed(aead)}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        bt, bl = _II(data, pos)
        if bl < 12:
            break
        if bt == 6:
            cl = _EPB(data, pos + 8)[3]
            fr = data[pos + 28:pos + 28 + cl]
            if len(fr) >= 55 and fr[12] == 8 and fr[23] == 17:
                length = _REC(fr, 42)[5]
                if length >= 24 and length not in out:
                    nonce = bytes(12)
                    out[length] = (nonce, aead.encrypt(nonce, bytes(length - 24), b"floor"))
        pos += bl
    return out


class _AADFixed:
    """Decrypts with the AAD the record was sealed with; the real AAD is still built per record (its cost is
    part of the floor), then swapped for the fixed one here, which costs one Python call."""

    __slots__ = ("_aead",)

    def __init__(self, aead: AESGCM) -> None:
        self._aead = aead

    def decrypt(self, nonce: bytes, sealed: bytes, _aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, sealed, b"floor")


def _startup(rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "import cryptography.hazmat.primitives.ciphers.aead"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def measure(capture: Path, rounds: int = 3) -> dict:
    data = capture.read_bytes()
    records = _sealed_records(data)
    res = {}
    for name, dec in (("walk_and_lookup_s", False), ("walk_lookup_decrypt_s", True)):
        best = float("inf")
        for _ in range(rounds):
            t = time.process_time()
            frames = _blocks(data, dec, records)
            best = min(best, time.process_time() - t)
        res[name] = round(best, 3)
    res["frames"] = frames
    res["startup_s"] = round(_startup(rounds), 3)
    res["floor_s"] = round(res["walk_lookup_decrypt_s"] + res["startup_s"], 3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    a = ap.parse_args(argv)
    capture = a.cache / "dtls" / "capture.pcapng"
    if not capture.exists():
        print(f"no DTLS bulk capture at {capture}: run `python -m bench` first", file=sys.stderr)
        return 2
    r = measure(capture, a.rounds)
    print(f"DTLS bulk capture, {r['frames']} frames (CPU seconds, best of {a.rounds}):")
    print(f"  pcapng walk + 4-tuple lookup          {r['walk_and_lookup_s']:.3f}")
    print(f"  … + one AES-GCM decryption per record {r['walk_lookup_decrypt_s']:.3f}")
    print(f"  interpreter + cryptography start-up   {r['startup_s']:.3f}")
    print(f"  floor                                 {r['floor_s']:.3f}")
    try:
        results = json.loads(a.results.read_text())
        row = next(x for x in results.get("results", []) if x.get("mode") == "dtls" and x.get("size") == 1)
        ts = row["tshark"]["cpu_s"]
        print(f"  tshark on the same capture            {ts:.3f}  → floor / tshark = {r['floor_s'] / ts:.2f}")
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
