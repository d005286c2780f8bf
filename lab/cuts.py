"""Cut captures: committed lab samples cut with editcap so that they start in the middle of a tunnel or end early,
hold only UDP, or keep only the first bytes of each packet.

Support engineers often get captures started after the VPN came up (the first packets are TLS application data
and DTLS epoch-1 records, no ClientHello), stopped too early, taken with a capture filter on UDP ('udp port 443'),
or with a snapshot length (tcpdump -s N; Windows pktmon keeps 128 bytes of each packet by default). These samples
are made from real lab captures, without a new run: `editcap -r` keeps a frame range of the source sample's
capture.pcapng (then `tshark -Y` keeps the frames a capture filter would, `editcap -s` cuts each packet); the key
log and the gateway's key and certificates are copied (the TLS 1.3 and DTLS secrets in the key log are keyed by the
hello randoms, which a capture that starts mid-tunnel does not hold: such a capture is, in effect, without keys).

    python -m lab.cuts [NAME…|all] [--list] [--out samples/cut]

`facts.json` says where the cut is — the source frame range and times, the rule that chose it — and, per flow of
the cut capture, what tshark (the independent oracle) sees in it: the first record, whether the handshake is
inside, the DTLS epochs and handshake messages per direction. Facts about the session come from the source
sample's facts.json (the peers' own logs), restricted to what happened inside the cut.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DEFAULT_OUT = SAMPLES / "cut"
SCHEMA_VERSION = 1
COPIED = ("keys.log", "server-key.pem", "server-cert.pem", "ca.pem")


@dataclass(frozen=True)
class Cut:
    name: str
    source: str  # sample directory under samples/
    description: str
    start: str  # rule for the first kept frame: "first" | "first-ping" (first frame at or after the lab's ping-start)
    #: | "after-last-dtls-client-hello" (the first frame after the source's last DTLS ClientHello)
    end: str  # rule for the last kept frame: "last" | "first-dtls-client-hello"
    only: str | None = None  # a tshark display filter the kept frames must match (what a capture filter keeps)
    snaplen: int | None = None  # bytes kept of each packet (editcap -s)


CUTS: dict[str, Cut] = {c.name: c for c in [
    Cut("baseline-mid-tunnel", "baseline",
        "baseline from the first ping on: DTLS epoch-1 application data both ways (no DTLS hello), then the "
        "CSTP DISCONNECT (TLS application data) and the TCP close; no TCP handshake, no TLS hello",
        start="first-ping", end="last"),
    Cut("dtls-blocked-mid-tunnel", "dtls-blocked",
        "dtls-blocked from the first ping on: CSTP (TLS application data) both ways, no TCP or TLS handshake; the "
        "client's second round of DTLS ClientHellos (~72 s after the first) to the blocked UDP port",
        start="first-ping", end="last"),
    Cut("mixed-traffic-mid-tunnel", "mixed-traffic",
        "mixed-traffic from the first ping on: the VPN's DTLS epoch-1 data both ways and its CSTP DISCONNECT "
        "(no VPN handshake), with the unrelated TLS, DTLS (HelloVerifyRequest), DNS and HTTP flows complete",
        start="first-ping", end="last"),
    Cut("baseline-ends-at-dtls-hello", "baseline",
        "baseline up to and including the first DTLS ClientHello: TLS, auth, CONNECT 200 and the DTLS "
        "ClientHello, nothing after it (no DTLS answer, no tunnel traffic, no disconnect)",
        start="first", end="first-dtls-client-hello"),
    Cut("keepalive-dpd-mid-tunnel", "keepalive-dpd",
        "keepalive-dpd after its last DTLS ClientHello: the CSTP tunnel over TLS 1.3 alone, already up (no TCP or "
        "TLS handshake, nothing names the cipher suite), DPD exchanges, keepalives, pings, the DISCONNECT",
        start="after-last-dtls-client-hello", end="last"),
    Cut("baseline-udp-only", "baseline",
        "baseline as a capture filtered to UDP ('udp port 443') keeps it: the DTLS channel with its handshake, "
        "no TCP at all (the TLS connection with the login and the CONNECT is not in the capture)",
        start="first", end="last", only="udp"),
    Cut("baseline-snaplen-128", "baseline",
        "baseline with every packet cut to its first 128 bytes, as Windows pktmon captures by default (and tcpdump "
        "-s 128): the packets' headers and lengths, not their TLS/DTLS records",
        start="first", end="last", snaplen=128),
]}

FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
          "udp.dstport", "tcp.flags.syn", "tcp.flags.fin", "tcp.flags.reset", "tcp.len", "tls.record.content_type",
          "tls.handshake.type", "dtls.record.content_type", "dtls.record.epoch", "dtls.handshake.type"]


def _tshark(capture: Path, fields: list[str], display_filter: str | None = None) -> list[dict]:
    cmd = ["tshark", "-n", "-r", str(capture), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("\t"), strict=False)) for line in out.splitlines()]


def _ints(v: str) -> list[int]:
    return [int(x) for x in v.split(",") if x.strip()] if v else []


def _frames(capture: Path) -> list[dict]:
    rows = []
    for r in _tshark(capture, FIELDS):
        rows.append({"frame": int(r["frame.number"]), "time": float(r["frame.time_epoch"]), "src": r["ip.src"],
                     "dst": r["ip.dst"], "proto": "tcp" if r["tcp.srcport"] else "udp" if r["udp.srcport"] else None,
                     "sport": int(r["tcp.srcport"] or r["udp.srcport"] or 0),
                     "dport": int(r["tcp.dstport"] or r["udp.dstport"] or 0),
                     "syn": r["tcp.flags.syn"] in ("1", "True"), "fin": r["tcp.flags.fin"] in ("1", "True"),
                     "rst": r["tcp.flags.reset"] in ("1", "True"), "tcp_len": int(r["tcp.len"] or 0),
                     "tls_types": _ints(r["tls.record.content_type"]), "tls_hs": _ints(r["tls.handshake.type"]),
                     "dtls_types": _ints(r["dtls.record.content_type"]), "dtls_epochs": _ints(r["dtls.record.epoch"]),
                     "dtls_hs": _ints(r["dtls.handshake.type"])})
    return rows


def _choose(cut: Cut, frames: list[dict], src_facts: dict) -> tuple[int, int, str, str]:
    if cut.start == "first":
        first, start_rule = frames[0]["frame"], "the source's first frame"
    elif cut.start == "after-last-dtls-client-hello":
        hello = max(f["frame"] for f in frames if 1 in f["dtls_hs"])
        first = hello + 1
        start_rule = f"the frame after the source's last DTLS ClientHello (frame {hello})"
    elif cut.start == "first-ping":
        t = next(a["time"] for a in src_facts["actions"] if a["action"] == "ping-start")
        first = next(f["frame"] for f in frames if f["time"] >= t)
        start_rule = f"the first frame at or after the lab's first ping-start action ({t:.6f})"
    else:
        raise ValueError(cut.start)
    if cut.end == "last":
        last, end_rule = frames[-1]["frame"], "the source's last frame"
    elif cut.end == "first-dtls-client-hello":
        last = next(f["frame"] for f in frames if 1 in f["dtls_hs"])
        end_rule = "the source's first DTLS ClientHello"
    else:
        raise ValueError(cut.end)
    return first, last, start_rule, end_rule


def _flows(frames: list[dict], gateway: str, client: str) -> list[dict]:
    """Per TCP/UDP flow between client and gateway in the (cut) capture: what tshark sees in it."""
    flows: dict[tuple, dict] = {}
    for f in frames:
        if f["proto"] is None or {f["src"], f["dst"]} != {gateway, client}:
            continue
        c2s = f["src"] == client
        cport, sport = (f["sport"], f["dport"]) if c2s else (f["dport"], f["sport"])
        key = (f["proto"], cport, sport)
        fl = flows.setdefault(key, {"proto": f["proto"], "client_port": cport, "server_port": sport,
                                    "first_frame": f["frame"], "first_time": f["time"], "last_frame": f["frame"],
                                    "frames": 0, "c2s": {}, "s2c": {}})
        fl["last_frame"], fl["frames"] = f["frame"], fl["frames"] + 1
        d = fl["c2s" if c2s else "s2c"]
        if f["proto"] == "tcp":
            if f["syn"]:
                d["syn"] = True
            if f["fin"]:
                d["fin_frame"] = f["frame"]
            if f["rst"]:
                d["rst_frame"] = f["frame"]
            for t in f["tls_types"]:
                d.setdefault("tls_records", {}).setdefault(str(t), 0)
                d["tls_records"][str(t)] += 1
            if f["tls_types"] and "first_tls_record" not in fl:
                fl["first_tls_record"] = {"frame": f["frame"], "direction": "c2s" if c2s else "s2c",
                                          "content_type": f["tls_types"][0]}
            if f["tls_hs"]:
                d.setdefault("tls_handshake_types", []).extend(f["tls_hs"])
        else:
            for t, e in zip(f["dtls_types"], f["dtls_epochs"], strict=False):
                k = f"{t}@{e}"
                d.setdefault("dtls_records", {}).setdefault(k, 0)
                d["dtls_records"][k] += 1
            if f["dtls_types"] and "first_dtls_record" not in fl:
                fl["first_dtls_record"] = {"frame": f["frame"], "direction": "c2s" if c2s else "s2c",
                                           "content_type": f["dtls_types"][0], "epoch": f["dtls_epochs"][0]}
            if f["dtls_hs"]:
                d.setdefault("dtls_handshake", []).append({"frame": f["frame"], "types": f["dtls_hs"]})
    out = []
    for fl in flows.values():
        if fl["proto"] == "tcp":
            fl["tcp_handshake_in_capture"] = bool(fl["c2s"].get("syn"))
            fl["tls_client_hello_in_capture"] = 1 in fl["c2s"].get("tls_handshake_types", [])
            fl["started_before_capture"] = not fl["tcp_handshake_in_capture"]
            fl["closed_in_capture"] = "fin_frame" in fl["c2s"] or "fin_frame" in fl["s2c"] or \
                "rst_frame" in fl["c2s"] or "rst_frame" in fl["s2c"]
        else:
            hello = [h["frame"] for h in fl["c2s"].get("dtls_handshake", []) if 1 in h["types"]]
            fl["dtls_client_hellos"] = hello
            app = {d: sum(n for k, n in fl[d].get("dtls_records", {}).items() if k.startswith("23@"))
                   for d in ("c2s", "s2c")}
            fl["dtls_application_records"] = app
            fl["dtls_established_before_capture"] = (not hello and app["c2s"] > 0 and app["s2c"] > 0
                                                     and not fl["s2c"].get("dtls_handshake"))
        out.append(fl)
    return sorted(out, key=lambda x: x["first_frame"])


def _shift(flow: dict, offset: int, frames: int) -> dict:
    """A source facts.json flow with its frame numbers moved to the cut capture's numbering."""
    out = dict(flow)
    for k, v in flow.items():
        if k.endswith("_frame") and isinstance(v, int):
            out[k] = v - offset
        elif k.endswith("_frames") and isinstance(v, list):
            out[k] = [x - offset for x in v if 0 < x - offset <= frames]
    return out


def make(cut: Cut, out_root: Path, *, verbose: bool = True) -> Path:
    src = SAMPLES / cut.source
    src_cap = src / "capture.pcapng"
    src_facts = json.loads((src / "facts.json").read_text())
    frames = _frames(src_cap)
    first, last, start_rule, end_rule = _choose(cut, frames, src_facts)
    out = out_root / cut.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tool = f"editcap -r capture.pcapng out.pcapng {first}-{last}"
    subprocess.run(["editcap", "-r", str(src_cap), str(out / "capture.pcapng"), f"{first}-{last}"], check=True,
                   capture_output=True)
    kept = [f for f in frames if first <= f["frame"] <= last]
    if cut.only:
        tmp = out / "range.pcapng"
        (out / "capture.pcapng").replace(tmp)
        # the source frames the filter keeps (the range file numbers them from 1)
        matching = {int(r["frame.number"]) + first - 1 for r in _tshark(tmp, ["frame.number"], cut.only)}
        subprocess.run(["tshark", "-n", "-r", str(tmp), "-Y", cut.only, "-w", str(out / "capture.pcapng")],
                       check=True, capture_output=True)
        tmp.unlink()
        tool += f"; tshark -r out.pcapng -Y '{cut.only}' -w out2.pcapng"
        kept = [f for f in kept if f["frame"] in matching]
    if cut.snaplen:
        tmp = out / "whole.pcapng"
        (out / "capture.pcapng").replace(tmp)
        subprocess.run(["editcap", "-s", str(cut.snaplen), str(tmp), str(out / "capture.pcapng")], check=True,
                       capture_output=True)
        tmp.unlink()
        tool += f"; editcap -s {cut.snaplen}"
    for f in COPIED:
        if (src / f).exists():
            shutil.copy(src / f, out / f)
    cut_frames = _frames(out / "capture.pcapng")
    assert len(cut_frames) == len(kept), (len(cut_frames), len(kept))
    gw, cl = src_facts["gateway_address"], src_facts["client_address"]
    t0, t1 = kept[0]["time"], kept[-1]["time"]

    def inside(t) -> bool:
        return t is not None and t0 <= t <= t1

    facts = {
        "schema": SCHEMA_VERSION, "scenario": cut.name, "kind": "cut", "description": cut.description,
        "derived_from": f"samples/{cut.source}",
        "source_capture_sha256": hashlib.sha256(src_cap.read_bytes()).hexdigest(),
        "gateway_address": gw, "client_address": cl, "peers": src_facts.get("peers"),
        "cut": {"tool": tool, "source_frames": [first, last], "only": cut.only, "snaplen": cut.snaplen,
                "source_frame_count": len(frames), "frame_offset": first - 1, "frames": len(kept),
                "start_time": t0, "end_time": t1, "start_rule": start_rule, "end_rule": end_rule,
                "source_start_time": frames[0]["time"], "source_end_time": frames[-1]["time"],
                "starts_mid_session": first > 1, "ends_before_source_end": last < frames[-1]["frame"]},
        "flows": _flows(cut_frames, gw, cl),
        # the session as the peers logged it (source facts.json), and which of its moments the cut holds
        "session": {
            "tls_sessions": src_facts.get("tls_sessions"), "tunnel_address": src_facts.get("tunnel_address"),
            "dtls_mode": src_facts.get("dtls_mode"), "dtls_established": src_facts.get("dtls_established"),
            "dtls_established_time": src_facts.get("dtls_established_time"),
            "dtls_ciphersuite": src_facts.get("dtls_ciphersuite"), "end": src_facts.get("end"),
            "in_cut": {
                "tls_handshake": any(inside(s["time"]) for s in src_facts.get("tls_sessions") or []),
                "http": [h for h in src_facts.get("http") or [] if inside(h["time"])],
                "connect_response": any(inside(c.get("response_time")) for c in src_facts.get("connects") or []),
                "dtls_established": inside(src_facts.get("dtls_established_time")),
                "end": inside((src_facts.get("end") or {}).get("time")),
                "dtls_client_hello_times": [t for t in (src_facts.get("oracle_tshark") or {})
                                            .get("dtls_client_hello_times") or [] if inside(t)],
            },
        },
    }
    if src_facts.get("other_flows"):  # mixed-traffic: the unrelated flows, frame numbers of the cut capture
        facts["other_flows"] = [_shift(f, first - 1, len(kept)) for f in src_facts["other_flows"]
                                if f.get("first_frame") and first <= f["first_frame"] and f["last_frame"] <= last]
        facts["tshark_decode_as"] = src_facts.get("tshark_decode_as", [])
    (out / "facts.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    if verbose:
        print(f"[cut] {cut.name}: source frames {first}-{last} of {len(frames)} -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.cuts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list or not args.names:
        for c in CUTS.values():
            print(f"{c.name:28} {c.description}")
        return 0 if args.list else 2
    names = list(CUTS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in CUTS]
    if unknown:
        print(f"[cut] unknown: {', '.join(unknown)}; known: {', '.join(CUTS)}", file=sys.stderr)
        return 1
    for n in names:
        make(CUTS[n], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
