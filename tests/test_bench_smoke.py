"""Smoke test of the benchmark (bench/): `--quick` on the committed baseline sample, no lab, no timing asserts.

The bench itself is run by hand or by `make bench` (`python -m bench`); this only checks that its code path works
end to end — N× copies, both tools timed, RSS read, table and results JSON written, profile summarised — and that
the N× copies stay decryptable by acflow and tshark alike.
"""
from __future__ import annotations

import json
import struct

import pytest

from bench import run as bench_run
from bench.scale import _Pcapng, count_frames, map_port, scale_capture

from .conftest import SAMPLES

BASELINE = SAMPLES / "baseline"


@pytest.mark.tshark
def test_quick_bench_writes_table_and_results(tshark, tmp_path, capsys):
    results, profile = tmp_path / "results.json", tmp_path / "profile.txt"
    rc = bench_run.main(["--quick", "--rounds", "1", "--sizes", "1,2", "--cache", str(tmp_path / "cache"),
                         "--results", str(results), "--profile-out", str(profile)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "| mode" in out and "| baseline | " in out and "ratio" in out

    doc = json.loads(results.read_text())
    assert doc["quick"] is True and doc["rounds"] == 1 and doc["sizes"] == [1, 2]
    m = doc["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["python"] and m["tshark"].lower().startswith("tshark")
    assert doc["problems"] == []
    assert [r["size"] for r in doc["results"]] == [1, 2]
    one, two = doc["results"]
    for r, n in ((one, 1), (two, 2)):
        assert r["mode"] == "baseline" and r["frames"] == 61 * n and r["bytes"] > 0
        for tool in ("acflow", "tshark", "tshark_read_only"):
            t = r[tool]
            assert t["wall_s"] > 0 and t["cpu_s"] > 0 and t["maxrss_mib"] > 0 and t["us_per_frame_cpu"] > 0
            assert len(t["runs"]) == 1
        assert r["ratio_wall"] > 0 and r["ratio_cpu"] > 0
        assert r["checks"]["acflow_frames"] == [r["frames"]]
    # each copy decrypts: twice the inner packets for acflow, twice the decrypted DTLS records for tshark
    assert one["checks"]["acflow_inner_packets"][0] > 0
    assert two["checks"]["acflow_inner_packets"] == [2 * one["checks"]["acflow_inner_packets"][0]]
    assert one["checks"]["tshark_decrypted"] > 0
    assert two["checks"]["tshark_decrypted"] == 2 * one["checks"]["tshark_decrypted"]
    assert doc["captures"]["baseline"]["dtls_psk"] is True
    assert doc["startup"]["acflow"]["maxrss_kib"] > 0
    # --jobs 2 (the default): the machine's own two-process ceiling measured each round, each speed-up judged by it
    assert doc["ceiling"]["jobs"] == 2 and len(doc["ceiling"]["rounds"]) == 1 and doc["ceiling"]["speedup"] > 0
    assert all(r["speedup_jobs_of_ceiling"] == round(r["speedup_jobs"] / doc["ceiling"]["speedup"], 3)
               for r in doc["results"])
    assert len(doc["table"]) == 2 + 2

    assert doc["profile"]["top_functions"] and doc["profile"]["by_module"]
    stages = {row["stage"]: row for row in doc["profile"]["stages"]}
    assert set(stages) == {"imports", "read", "pipeline", "analyze", "general:read", "general:decode", "general:flows",
                           "general:pipeline_general"}
    assert all("cpu_s" in row for row in stages.values()), stages  # every layer ran (interfaces unchanged)
    text = profile.read_text()
    assert "CPU time per layer" in text and "self time by module" in text and "functions by self time" in text


@pytest.mark.tshark
def test_quick_bench_keyless_times_both_tools_without_keys(tshark, tmp_path, capsys):
    """--keyless: every capture is timed again with neither tool given keys (mode <name>-keyless)."""
    results = tmp_path / "results.json"
    rc = bench_run.main(["--quick", "--keyless", "--rounds", "1", "--sizes", "1", "--jobs", "1", "--no-profile",
                         "--cache", str(tmp_path / "cache"), "--results", str(results)])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads(results.read_text())
    by_mode = {r["mode"]: r for r in doc["results"]}
    assert set(by_mode) == {"baseline", "baseline-keyless"}
    keyed, keyless = by_mode["baseline"], by_mode["baseline-keyless"]
    assert keyless["frames"] == keyed["frames"] == 61
    assert keyless["checks"]["acflow_frames"] == [61]
    # no keys, nothing decrypted: no inner packet (the keyed run decrypts the five pings' DTLS)
    assert keyed["checks"]["acflow_inner_packets"][0] > 0 and keyless["checks"]["acflow_inner_packets"] == [0]
    assert "without keys" in doc["captures"]["baseline-keyless"]["what"]


def _l4_checksum_ok(pkt: bytes) -> bool:
    """Recompute the TCP/UDP checksum of an Ethernet/IPv4 frame from scratch."""
    ihl = (pkt[14] & 0x0F) * 4
    ip = pkt[14:14 + ihl]
    total = struct.unpack("!H", ip[2:4])[0]
    seg = bytearray(pkt[14 + ihl:14 + total])
    proto = ip[9]
    coff = 16 if proto == 6 else 6
    if proto == 17 and seg[coff:coff + 2] == b"\0\0":
        return True
    seg[coff:coff + 2] = b"\0\0"
    data = ip[12:20] + bytes([0, proto]) + struct.pack("!H", len(seg)) + bytes(seg)
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    want = ~s & 0xFFFF
    if proto == 17 and want == 0:
        want = 0xFFFF
    return struct.unpack("!H", pkt[14 + ihl + coff:14 + ihl + coff + 2])[0] == want


def test_scaled_copies_are_new_flows_with_valid_checksums(tmp_path):
    dst = tmp_path / "x3.pcapng"
    info = scale_capture(BASELINE / "capture.pcapng", dst, 3)
    assert info["client"] == "198.18.0.2" and info["frames"] == 3 * 61 == count_frames(dst)
    data = dst.read_bytes()
    pf = _Pcapng(data)
    flows: dict[int, set] = {0: set(), 1: set(), 2: set()}
    last_ts = None
    for i, (off, _btype, _blen) in enumerate(b for b in pf.blocks() if b[1] == 6):
        _ifid, th, tl, caplen = struct.unpack_from("<IIII", data, off + 8)
        pkt = data[off + 28:off + 28 + caplen]
        copy = i // 61
        ts = (th << 32) | tl
        if i % 61 == 0 and last_ts is not None:
            assert ts > last_ts  # each copy starts after the previous one ended
        last_ts = ts
        if pkt[12:14] == b"\x08\x00" and pkt[14 + 9] in (6, 17):
            assert _l4_checksum_ok(pkt), f"frame {i + 1}"
            ihl = (pkt[14] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", pkt, 14 + ihl)
            src = pkt[26:30]
            flows[copy].add(sport if src == bytes([198, 18, 0, 2]) else dport)
    assert flows[1] == {map_port(p, 1, info["port_stride"]) for p in flows[0]}
    assert not (flows[0] & flows[1]) and not (flows[1] & flows[2]) and not (flows[0] & flows[2])


def test_floor_loop_walks_every_frame_and_decrypts():
    """bench/floor.py (the least any analyzer must spend) walks every frame and really decrypts the records."""
    from bench.floor import _blocks, _sealed_records, measure

    cap = SAMPLES / "baseline" / "capture.pcapng"
    data = cap.read_bytes()
    records = _sealed_records(data)
    assert len(records) > 2  # the baseline sample has DTLS records of several lengths
    assert _blocks(data, True, records) == 61
    broken = {k: (v if k == "aead" else (v[0], bytes([v[1][0] ^ 1]) + v[1][1:])) for k, v in records.items()}
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        _blocks(data, True, broken)
    r = measure(cap, rounds=1)
    assert r["frames"] == 61 and r["floor_s"] >= r["walk_lookup_decrypt_s"] >= 0


def test_ceiling_times_lone_and_parallel_spins():
    """bench/ceiling.py: a lone spin and two at once are really run and timed; the ceiling is 2 × lone / slowest."""
    from bench import ceiling

    r = ceiling.measure_once(2, iterations=200_000)
    assert r["one_s"] > 0 and r["together_s"] > 0
    assert r["speedup"] == pytest.approx(2 * r["one_s"] / r["together_s"], rel=0.01)
    s = ceiling.summarise([{"one_s": 1.0, "together_s": 1.25, "speedup": 1.6},
                           {"one_s": 1.0, "together_s": 1.0, "speedup": 2.0},
                           {"one_s": 1.0, "together_s": 1.1, "speedup": 1.818}], 2)
    assert s["speedup"] == 1.818 and s["speedup_min"] == 1.6 and s["speedup_max"] == 2.0 and len(s["rounds"]) == 3
    assert ceiling.summarise([], 2)["speedup"] is None
