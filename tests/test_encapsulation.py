"""Captures whose packets are inside other packets: a traffic mirror's (ERSPAN from a switch's remote SPAN, VXLAN or
GENEVE from a cloud's traffic mirroring) or an overlay's (VXLAN, GRE, IP in IP), and frames with MPLS labels or
Cisco VN-Tag / MetaData tags (dissectors.packet.decapsulate, CAPTURE_ENCAPSULATED).

Real parts: samples/vxlan-mirror is a lab session (openconnect and ocserv) whose link ran in a kernel VXLAN overlay,
captured on the underlay. The kernel here has no ERSPAN, GRETAP or GENEVE devices, so the other encapsulations are
made by rewriting a real lab capture frame by frame with scapy (each frame wrapped, its time kept); tshark, the
independent oracle, checks that it reads the rewritten frames as the same TLS and DTLS handshakes."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.capture import iter_frames
from analyzer.report.json_report import render_json
from dissectors.packet import decapsulate, decode

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
VXLAN_SAMPLE = SAMPLES / "vxlan-mirror"
HAVE_TSHARK = shutil.which("tshark") is not None

MIRROR_SRC, MIRROR_DST = "198.18.200.1", "198.18.200.9"  # the mirror's source (switch) and collector
OUTER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:09")


def _analyse(capture: Path, keylog: Path | None, jobs: int = 1) -> dict:
    keys, info = load_keys([keylog] if keylog else [], [])
    if jobs == 1:
        a = analyze_paths([capture], keys, info)
    else:
        from analyzer.parallel import analyze_paths_parallel

        a = analyze_paths_parallel([capture], [keylog] if keylog else [], [], jobs)
    return json.loads(render_json(a, version=__version__))


def _sessions_text(doc: dict, udp_streams: bool = True) -> str:
    """The sessions of a document as text, times to the microsecond (a rewritten capture keeps each frame's time
    to the nanosecond: the last float bit may differ); ``udp_streams`` False: udp.stream numbers not compared (a
    VXLAN or GENEVE carrier is a udp.stream of its own, before the packet inside)."""
    def norm(x):
        if isinstance(x, float):
            return round(x, 6)
        if isinstance(x, str) and x.endswith((".pcap", ".pcapng")):
            return "CAPTURE"
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            return [norm(v) for v in x]
        return x
    text = json.dumps(norm(doc["sessions"]), sort_keys=True)
    return text if udp_streams else re.sub(r"udp\.stream \d+", "udp.stream N", text)


def _write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    """A nanosecond pcap of Ethernet frames."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for ts, data in frames:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, round((ts - sec) * 1e9), len(data), len(data)) + data)
    path.write_bytes(b"".join(out))


def _ip(frame: bytes):
    """The frame without its Ethernet header, as scapy's IP or IPv6 (the lab's frames are untagged)."""
    e = Ether(frame)
    return e.payload


# each wraps one captured Ethernet frame (bytes) of the lab into what a mirror or an overlay would deliver
def _erspan1(f):
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST) / GRE(proto=0x88BE) / Raw(f)


def _erspan2(f, n=[0]):  # noqa: B006 - the GRE sequence number runs on from frame to frame
    n[0] += 1
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST) / GRE(seqnum_present=1, sequence_number=n[0], proto=0x88BE) / \
        ERSPAN_II(session_id=300) / Raw(f)


def _erspan3(f):
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST) / GRE(seqnum_present=1, proto=0x22EB) / \
        ERSPAN_III(session_id=301) / Raw(f)


def _gretap(f):
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST) / GRE(key_present=1, key=77, proto=0x6558) / Raw(f)


def _gre_ip(f):
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST) / GRE(proto=0x0800 if f[12:14] == b"\x08\x00" else 0x86DD) / \
        Raw(f[14:])


def _ip_in_ip(f):
    return OUTER / IP(src=MIRROR_SRC, dst=MIRROR_DST, proto=4 if f[12:14] == b"\x08\x00" else 41) / Raw(f[14:])


def _vxlan_tagged(f, n=[0]):  # noqa: B006 - every other outer frame VLAN-tagged (not a plain frame: --jobs)
    n[0] += 1
    tag = Dot1Q(vlan=12) if n[0] % 2 else Raw(b"")
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:09", type=0x8100 if n[0] % 2 else 0x0800) / tag / \
        IP(src=MIRROR_SRC, dst=MIRROR_DST) / UDP(sport=49152 + n[0] % 7, dport=4789) / VXLAN(vni=5001) / Raw(f)


def _geneve(f):
    return OUTER / IPv6(src="2001:db8::1", dst="2001:db8::9") / UDP(sport=50000, dport=6081) / \
        GENEVE(vni=6001, proto=0x6558) / Raw(f)


def _mpls(f):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:09", type=0x8847) / MPLS(label=100, s=0) / \
        MPLS(label=200, s=1) / Raw(f[14:])


def _tag(ethertype: int, tag: bytes):
    def wrap(f):
        return Raw(f[:12] + struct.pack("!H", ethertype) + tag + f[12:])
    return wrap


_vntag = _tag(0x8926, b"\x80\x05\x00\x01")  # direction bit, destination and source VIFs
_cmd = _tag(0x8909, b"\x01\x01\x00\x01\x00\x2a")  # version 1, length 1, option SGT, SGT 42


def _nested(f):  # an ERSPAN session carried across a VXLAN fabric
    return OUTER / IP(src="198.18.201.1", dst="198.18.201.2") / UDP(sport=40000, dport=4789) / VXLAN(vni=7) / \
        _erspan2(f)


WRAPS = {"erspan-i": _erspan1, "erspan-ii": _erspan2, "erspan-iii": _erspan3, "gretap": _gretap, "gre-ip": _gre_ip,
         "ip-in-ip": _ip_in_ip, "vxlan-vlan": _vxlan_tagged, "geneve-ipv6": _geneve, "mpls": _mpls, "vn-tag": _vntag,
         "cmd-sgt": _cmd, "vxlan-erspan": _nested}
UDP_CARRIED = {"vxlan-vlan", "geneve-ipv6", "vxlan-erspan"}
ENCAP_KIND = {"erspan-i": ("erspan", None), "erspan-ii": ("erspan", 300), "erspan-iii": ("erspan", 301),
              "gretap": ("gre", 77), "gre-ip": ("gre", None), "ip-in-ip": ("ip-in-ip", None),
              "vxlan-vlan": ("vxlan", 5001), "geneve-ipv6": ("geneve", 6001), "vxlan-erspan": ("vxlan", 7)}


def _rewrite(sample: str, wrap, tmp: Path, name: str) -> Path:
    src = SAMPLES / sample / "capture.pcapng"
    frames = [(fr.ts, bytes(wrap(bytes(fr.data)))) for fr in iter_frames(src)]
    out = tmp / f"{sample}-{name}.pcap"
    _write_pcap(out, frames)
    return out


def _tshark_handshakes(path: Path) -> list[tuple]:
    """(frame, TLS handshake types, DTLS handshake types) of every frame tshark reads a handshake in."""
    p = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tls.handshake.type || dtls.handshake.type",
                        "-T", "fields", "-e", "frame.number", "-e", "tls.handshake.type", "-e", "dtls.handshake.type"],
                       capture_output=True, text=True, check=True)
    return [tuple(line.split("\t")) for line in p.stdout.splitlines()]


# -- the lab's VXLAN overlay ---------------------------------------------------------------------------------------

def test_the_vxlan_sample_reads_as_the_lab_session():
    facts = json.loads((VXLAN_SAMPLE / "facts.json").read_text())
    doc = _analyse(VXLAN_SAMPLE / "capture.pcapng", VXLAN_SAMPLE / "keys.log")
    [s] = doc["sessions"]
    assert s["verdict"]["outcome"] == "healthy"
    assert {p["phase"]: p["status"] for p in s["phases"]} == {
        "tls-handshake": "ok", "group-selection": "ok", "user-auth": "ok", "downloader": "absent",
        "cstp-connect": "ok", "dtls": "ok"}
    assert (s["client"], s["gateway"].split(":")[0]) == (facts["client_address"], facts["gateway_address"])
    assert f"200 CONNECTED: {facts['tunnel_address']}" in s["phases"][4]["summary"]
    # the pings went through the tunnel over DTLS (and whatever else the client's stack sent)
    assert s["tunnel"]["dtls"]["inner_packets"]["c2s"] >= sum(p["sent"] for p in facts["pings"]) > 0
    [enc] = [f for f in doc["findings"] if f["id"] == "CAPTURE_ENCAPSULATED"]
    assert enc["severity"] == "info"
    [e] = enc["evidence"]["encapsulations"]
    assert (e["kind"], e["id"], sorted(e["outer_addresses"])) == ("vxlan", 4242, ["198.19.250.1", "198.19.250.2"])


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_the_vxlan_sample_agrees_with_tshark():
    """Stream numbers as Wireshark gives them (its carrier's udp.stream first) and the frames inside VXLAN."""
    cap = VXLAN_SAMPLE / "capture.pcapng"
    facts = json.loads((VXLAN_SAMPLE / "facts.json").read_text())
    doc = _analyse(cap, VXLAN_SAMPLE / "keys.log")
    [s] = doc["sessions"]
    streams = {}
    for f in facts["vpn_flows"]:
        p = subprocess.run(["tshark", "-n", "-r", str(cap), "-Y", f"frame.number == {f['first_frame']}", "-T",
                            "fields", "-e", f"{f['transport']}.stream"], capture_output=True, text=True, check=True)
        streams[f["transport"]] = f"{f['transport']}.stream {p.stdout.strip().split(',')[-1]}"
    assert [c["connection"] for c in s["connections"]] == [streams["tcp"], streams["udp"]]
    assert streams["udp"] != "udp.stream 0"  # the carriers were numbered before it
    p = subprocess.run(["tshark", "-n", "-r", str(cap), "-Y", "vxlan && (ip.src == 198.18.0.0/24 || ipv6)"],
                       capture_output=True, text=True, check=True)
    [enc] = [f for f in doc["findings"] if f["id"] == "CAPTURE_ENCAPSULATED"]
    assert enc["evidence"]["encapsulated_frames"] == len(p.stdout.splitlines())


def test_the_vxlan_sample_without_keys_is_still_the_session():
    doc = _analyse(VXLAN_SAMPLE / "capture.pcapng", None)
    [s] = doc["sessions"]
    phases = {p["phase"]: p for p in s["phases"]}
    assert phases["tls-handshake"]["status"] == "ok" and phases["dtls"]["status"] == "undecrypted"
    assert phases["cstp-connect"]["inferred"]["status"] == "ok"
    assert "no anyconnect" not in s["verdict"]["text"].lower()


def test_before_decapsulation_the_vxlan_sample_was_no_session(monkeypatch):
    """What acflow said before (the carrier read as unrelated UDP): the reason the decoder reads inside."""
    import dissectors.packet as packet_mod

    monkeypatch.setattr(packet_mod, "decapsulate", lambda p: p)
    doc = _analyse(VXLAN_SAMPLE / "capture.pcapng", VXLAN_SAMPLE / "keys.log")
    assert doc["sessions"] == [] and {f["id"] for f in doc["findings"]} == {"NO_VPN_SESSION"}


# -- real sessions rewritten as each mirror or overlay delivers them ---------------------------------------------

@pytest.mark.parametrize("name", list(WRAPS))
def test_a_wrapped_capture_reads_as_the_capture_itself(tmp_path, name):
    for sample in ("baseline", "dtls-blocked"):
        wrapped = _rewrite(sample, WRAPS[name], tmp_path, name)
        keylog = SAMPLES / sample / "keys.log"
        plain = _analyse(SAMPLES / sample / "capture.pcapng", keylog)
        doc = _analyse(wrapped, keylog)
        udp = name not in UDP_CARRIED
        assert _sessions_text(doc, udp) == _sessions_text(plain, udp), (sample, name)
        found = [f for f in doc["findings"] if f["id"] == "CAPTURE_ENCAPSULATED"]
        if name in ENCAP_KIND:
            [f] = found
            kinds = [(e["kind"], e["id"]) for e in f["evidence"]["encapsulations"]]
            assert kinds[0] == ENCAP_KIND[name]
            # the frames with an IP packet inside (an ARP frame inside ERSPAN stays the ERSPAN packet; inside
            # VXLAN too, that ERSPAN packet is itself a packet inside)
            original = [decode(1, bytes(fr.data)) for fr in iter_frames(SAMPLES / sample / "capture.pcapng")]
            assert f["evidence"]["encapsulated_frames"] == (len(original) if name == "vxlan-erspan" else
                                                            sum(1 for p in original if p is not None))
        else:  # tags in the Ethernet header: no outer addresses, no finding
            assert not found
        assert {f["id"] for f in doc["findings"]} - {"CAPTURE_ENCAPSULATED"} == \
            {f["id"] for f in plain["findings"]}
        if HAVE_TSHARK and sample == "baseline":  # the oracle reads the same handshakes in the same frames
            assert _tshark_handshakes(wrapped) == _tshark_handshakes(SAMPLES / sample / "capture.pcapng"), name


def _without_frames(x):
    """``x`` without frame numbers (a capture whose frames were split has other numbers)."""
    if isinstance(x, dict):
        return {k: _without_frames(v) for k, v in x.items() if "frame" not in k}
    if isinstance(x, list):
        return [_without_frames(v) for v in x]
    return x


def test_outer_fragments_of_a_mirror_are_reassembled(tmp_path):
    """A mirror of full-size frames over a 1500-byte path: the outer packet is split into IP fragments."""
    def wrap(f):
        return [OUTER / frag for frag in fragment(_erspan2(f)[IP], fragsize=1200)]
    src = SAMPLES / "mtu" / "capture.pcapng"
    frames = [(fr.ts, bytes(p)) for fr in iter_frames(src) for p in wrap(bytes(fr.data))]
    assert len(frames) > sum(1 for _ in iter_frames(src))  # some were split
    out = tmp_path / "mtu-erspan-fragments.pcap"
    _write_pcap(out, frames)
    keylog = SAMPLES / "mtu" / "keys.log"
    plain, doc = _analyse(src, keylog), _analyse(out, keylog)
    for a, b in zip(plain["sessions"], doc["sessions"], strict=True):
        assert a["verdict"]["outcome"] == b["verdict"]["outcome"]
        assert [(p["phase"], p["status"]) for p in a["phases"]] == [(p["phase"], p["status"]) for p in b["phases"]]
        assert sorted(f["id"] for f in a["findings"]) == sorted(f["id"] for f in b["findings"])
        assert _without_frames(a["tunnel"]) == _without_frames(b["tunnel"])


def test_jobs_read_a_mirror_capture_as_one_process(tmp_path):
    """Half of the outer frames VLAN-tagged (not the plain frames the index pass classifies directly): every frame
    of a mirror session still lands in one shard, and the report is the same."""
    wrapped = _rewrite("baseline", _vxlan_tagged, tmp_path, "vxlan-vlan")
    keylog = SAMPLES / "baseline" / "keys.log"
    assert _analyse(wrapped, keylog, jobs=2) == _analyse(wrapped, keylog)


# -- what is not an encapsulation, or a damaged one ----------------------------------------------------------------

_INNER = bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=1000, dport=443) / Raw(b"\x17" * 20))


@pytest.mark.parametrize("outer", [
    IP(src="198.18.9.1", dst="198.18.9.2") / UDP(sport=1, dport=4789) / Raw(b"\x0c\x00\x00\x05\x00\x00\x07\x00"
                                                                         + _INNER),  # GPE: next protocol 5
    IP(src="198.18.9.1", dst="198.18.9.2") / UDP(sport=1, dport=4789) / Raw(b"\x00\x00\x00\x00\x00\x00\x07\x00"
                                                                         + _INNER),  # no VNI flag
    IP(src="198.18.9.1", dst="198.18.9.2") / UDP(sport=1, dport=8472) / Raw(b"application data on 8472"),
    IP(src="198.18.9.1", dst="198.18.9.2") / UDP(sport=1, dport=4789) / Raw(b"\x08\x00\x00\x00\x00\x00"),  # cut
    IP(src="198.18.9.1", dst="198.18.9.2") / GRE(routing_present=1, proto=0x0800) / Raw(_INNER[14:]),
    IP(src="198.18.9.1", dst="198.18.9.2") / GRE(version=1, proto=0x880B) / Raw(b"\x00" * 40),  # PPTP
    IP(src="198.18.9.1", dst="198.18.9.2") / GRE(proto=0x88BE, seqnum_present=1) / Raw(b"\x30" + b"\x00" * 30),
    IP(src="198.18.9.1", dst="198.18.9.2") / GRE(proto=0x22EB) / Raw(b"\x20" + b"\x00" * 9 + b"\x7c\x00" + _INNER),
    IP(src="198.18.9.1", dst="198.18.9.2") / UDP(sport=1, dport=6081) / Raw(b"\x80\x00\x65\x58" + b"\x00" * 4),
    IP(src="198.18.9.1", dst="198.18.9.2", proto=4) / Raw(b"\x45\x00"),
], ids=["vxlan-gpe-next-5", "vxlan-no-i-flag", "not-vxlan-8472", "vxlan-cut", "gre-routing", "pptp",
        "erspan-ii-version", "erspan-iii-ft", "geneve-version", "ipip-cut"])
def test_what_is_not_read_inside_stays_the_outer_packet(outer):
    p = decode(1, bytes(Ether() / outer))
    assert p is not None and p.encap is None and (p.src, p.dst) == ("198.18.9.1", "198.18.9.2")


def test_nesting_is_bounded():
    pk = IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=1000, dport=443) / Raw(b"x")
    for i in range(12):
        pk = IP(src=f"198.18.9.{i + 1}", dst="198.18.9.200") / UDP(sport=7, dport=4789) / VXLAN(vni=i) / \
            Ether() / pk
    p = decode(1, bytes(Ether() / pk))
    assert p is not None and p.encap[:4] == ("vxlan", "198.18.9.12", "198.18.9.200", 11)
    assert decapsulate(p) is not None  # at most 4 levels per call; never a loop


def test_truncated_mirror_frames_decode_as_far_as_captured():
    f = bytes(Ether() / _erspan2(bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") /
                                       UDP(sport=1000, dport=443) / Raw(b"\x17" * 600)))[IP])
    for cut in range(0, len(f) + 1, 7):
        p = decode(1, bytes(Ether())[:14] + f[:cut])
        assert p is None or p.encap is None or p.src == "198.18.0.2"


def test_a_macos_pktap_capture_reads_as_the_capture_itself(tmp_path):
    """macOS `tcpdump -k` / `-i pktap` writes LINKTYPE_PKTAP (258): Apple's header (its length, the frame's DLT,
    the interface's name, process data) before each frame. A lab capture rewritten so reads as itself, and tshark
    reads the same handshakes in it."""
    src = SAMPLES / "baseline" / "capture.pcapng"
    hdr = struct.pack("<III", 108, 1, 1) + b"en0".ljust(24, b"\0") + bytes(108 - 36)
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 258)]
    for fr in iter_frames(src):
        data = hdr + bytes(fr.data)
        sec = int(fr.ts)
        out.append(struct.pack("<IIII", sec, round((fr.ts - sec) * 1e9), len(data), len(data)) + data)
    cap = tmp_path / "pktap.pcap"
    cap.write_bytes(b"".join(out))
    keylog = SAMPLES / "baseline" / "keys.log"
    assert _sessions_text(_analyse(cap, keylog)) == _sessions_text(_analyse(src, keylog))
    if HAVE_TSHARK:
        assert _tshark_handshakes(cap) == _tshark_handshakes(src)
