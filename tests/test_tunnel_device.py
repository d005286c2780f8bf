"""The capture support asks for: the client's network interface and its VPN adapter at the same time (lab scenario
inner-unreachable-adapter: real openconnect and ocserv; inner-unreachable — a blackhole and a prohibit route in the
gateway's namespace, no DNS server at the tunnel's DNS address — captured by dumpcap on the client's veth,
capture.pcapng, and on its tun0, tunnel-side.pcapng). Without keys, the adapter's packets are the only view of the
tunnel's inside (analyzer/tunnel_device.py).

Before: 'INCONCLUSIVE No problem seen without keys: TLS handshake ok, DTLS up' — the adapter's file was other
traffic, and what the client could not reach was not said."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.all import IP, RawPcapWriter, rdpcap

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document
from analyzer.tunnel_device import TunnelDevice

from .conftest import facts, sample
from .helpers import jobs_parallel as _parallel
from .helpers import jobs_serial as _serial
from .oracle import tshark_fields

NAME = "inner-unreachable-adapter"
D = sample(NAME)


def _doc(paths, keys: bool = False) -> dict:
    store, info = load_keys([D / "keys.log"] if keys else [], [])
    return to_document(analyze_paths(list(paths), store, info), version=__version__, show_secrets=True)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="module")
def merged(tmp_path_factory) -> Path:
    """One pcapng of both interfaces, as Wireshark writes a capture of two (mergecap: the frames in time order)."""
    out = tmp_path_factory.mktemp("adapter") / "both.pcapng"
    subprocess.run([_tool("mergecap"), "-w", str(out), str(D / "capture.pcapng"), str(D / "tunnel-side.pcapng")],
                   check=True, capture_output=True)
    return out


def test_the_lab_made_what_it_says():
    acts = {a["action"]: a for a in facts(NAME)["actions"]}
    assert acts["inner-tcp"]["returncode"] in (7, 28) and acts["inner-dns"]["returncode"] != 0
    rows = tshark_fields(D / "tunnel-side.pcapng", ["frame.interface_name", "ip.src"], "ip")
    assert {r[0] for r in rows} == {"tun0"}
    assert sum(r[1] == "198.19.0.50" for r in rows) >= len(rows) // 2


def _check_reading(s: dict, capture: str, frames_of):
    dev = s["tunnel"]["device"]
    assert (dev["interface"], dev["address"], dev["matched_by"]) == ("tun0", "198.19.0.50", "time")
    assert dev["capture"].endswith(capture)
    u = s["tunnel"]["unreachable"]
    assert u["read_from"] == "tunnel device tun0"
    by = {c["dst"]: c for c in u["connects"]}
    assert set(by) == {"198.19.0.77", "198.19.0.78"}
    assert by["198.19.0.77"]["answer"] == "none" and by["198.19.0.77"]["syn_frames"] == frames_of("198.19.0.77")
    assert by["198.19.0.78"]["answer"] == "icmp" and by["198.19.0.78"]["icmp"]["code"] == 13
    (lk,) = u["lookups"]
    assert (lk["name"], lk["server"]) == ("intranet.acflow.test", "198.19.0.1") and lk["answer"].startswith("ICMP")
    (f,) = [f for f in s["findings"] if f["id"] == "INNER_UNREACHABLE"]
    assert not f.get("inferred") and "from the VPN adapter's packets (tun0; the frames are those of" in f["message"]
    assert f["evidence"]["read_from"] == "tunnel device tun0"
    assert s["verdict"]["experienced"] == "Connected, but servers inside the tunnel did not answer"


def _syns(capture: Path, dst: str) -> list[int]:
    rows = tshark_fields(capture, ["frame.number"], f"tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.dst == {dst}")
    return [int(r[0]) for r in rows]


@pytest.mark.tshark
def test_without_keys_the_adapters_file_tells_what_the_client_could_not_reach():
    doc = _doc([D / "capture.pcapng", D / "tunnel-side.pcapng"])
    (s,) = doc["sessions"]
    _check_reading(s, "tunnel-side.pcapng", lambda dst: _syns(D / "tunnel-side.pcapng", dst))
    assert s["phases"][4]["status"] == "undecrypted"  # (no keys: the tunnel's own records were not read)
    # its failed connects are the session's, not the capture's
    assert not any(f["id"] in ("TCP_CONNECT_FAILED", "DNS_LOOKUP_FAILED") for f in doc["findings"])
    assert not (doc.get("other_traffic") or {}).get("failed_connects")


@pytest.mark.tshark
def test_one_capture_of_both_interfaces_reads_the_same(merged):
    (s,) = _doc([merged])["sessions"]
    _check_reading(s, "both.pcapng", lambda dst: _syns(merged, dst))


def test_jobs_read_the_adapter_as_one_process(merged):
    """The kept packets of each shard are put back in capture order: an ICMP error meets the SYN it quotes whichever
    shard each was in."""
    want = _serial([merged], [], [])
    for jobs in (2, 3):
        assert _parallel([merged], [], [], jobs) == want


def test_with_keys_the_tunnel_is_read_and_the_adapter_tied_by_its_address():
    (s,) = _doc([D / "capture.pcapng", D / "tunnel-side.pcapng"], keys=True)["sessions"]
    dev = s["tunnel"]["device"]
    assert (dev["address"], dev["matched_by"]) == ("198.19.0.50", "tunnel-address")
    u = s["tunnel"]["unreachable"]
    assert "read_from" not in u  # the decrypted tunnel's own reading comes first
    assert {c["dst"] for c in u["connects"]} == {"198.19.0.77", "198.19.0.78"}
    (keyless,) = _doc([D / "capture.pcapng", D / "tunnel-side.pcapng"])["sessions"]
    assert [(c["dst"], c["answer"], len(c["syn_frames"])) for c in u["connects"]] == [
        (c["dst"], c["answer"], len(c["syn_frames"])) for c in keyless["tunnel"]["unreachable"]["connects"]]


def test_a_pcap_of_the_tun_device_names_no_interface_and_is_read_by_its_packets(tmp_path):
    out = tmp_path / "tun.pcap"
    subprocess.run([_tool("editcap"), "-F", "pcap", str(D / "tunnel-side.pcapng"), str(out)], check=True,
                   capture_output=True)
    (s,) = _doc([D / "capture.pcapng", out])["sessions"]
    dev = s["tunnel"]["device"]
    assert dev["interface"] == "tun.pcap (raw IP packets, no interface name)" and dev["address"] == "198.19.0.50"
    assert {c["dst"] for c in s["tunnel"]["unreachable"]["connects"]} == {"198.19.0.77", "198.19.0.78"}
    # alone it is still no session: where it was taken is said (test_capture_point), nothing is tied
    alone = _doc([out])
    assert alone["sessions"] == [] and any(f["id"] == "NO_VPN_SESSION" for f in alone["findings"])


def test_a_raw_ip_capture_of_the_vpns_own_connection_is_no_adapter(tmp_path):
    """A pcap of raw IP packets that holds the session itself (a firewall's export, say): its one common address is
    the client's, and the file holds the session's flows — not the inside of the tunnel."""
    out = tmp_path / "raw.pcap"
    w = RawPcapWriter(str(out), linktype=101)
    for p in rdpcap(str(D / "capture.pcapng")):
        if IP in p:
            w.write(bytes(p[IP]))
    w.close()
    doc = _doc([out])
    (s,) = doc["sessions"]
    assert "device" not in s["tunnel"] and "unreachable" not in s["tunnel"]
    assert json.dumps(doc).count("raw IP packets, no interface name") == 0


def test_the_adapters_own_address_is_the_one_nearly_every_packet_has():
    """From the real adapter's packets: link-local and multicast packets (the system's, on any interface) are not
    counted; packets with no common address give none."""
    from dissectors.packet import decode  # noqa: PLC0415

    frames = rdpcap(str(D / "tunnel-side.pcapng"))
    dev = TunnelDevice(0, 0, "tun0")
    for n, p in enumerate(frames, 1):
        dev.note(decode(101, bytes(p)), float(p.time), n)
    assert dev.packets == len(frames) and dev.address == "198.19.0.50" and dev.counted < dev.packets
    # an adapter whose every packet is between the client and one server (pings and a lookup, all with 198.19.0.1:
    # lab scenario route-outside-tunnel-adapter): both addresses in every packet — the one that began the exchanges
    # (echo requests, the DNS query) is the client's
    tie = TunnelDevice(0, 0, "tun0")
    for n, p in enumerate(rdpcap(str(sample("route-outside-tunnel-adapter") / "tunnel-side.pcapng")), 1):
        tie.note(decode(101, bytes(p)), float(p.time), n)
    assert tie.addresses["198.19.0.1"] == tie.addresses["198.19.0.50"] == tie.counted
    assert tie.address == "198.19.0.50"
    other = TunnelDevice(0, 0, "x")
    for n, (a, b) in enumerate([("198.18.0.7", "198.18.0.8"), ("198.18.0.9", "198.18.0.10")] * 3, 1):
        other.note(decode(101, bytes(IP(src=a, dst=b) / b"x")), float(n), n)
    assert other.address is None and other.attempts() is None


def test_shards_of_one_adapter_merge_to_what_one_reading_gives():
    """`--jobs` shards split an adapter's packets by address pair (an Ethernet-framed adapter: Windows'): the ICMP
    error from 198.19.0.1 and the SYN to 198.19.0.78 it quotes fall in different shards, and merging puts them back
    in capture order."""
    from analyzer.phases.tunnel import unreachable_of  # noqa: PLC0415
    from dissectors.packet import decode  # noqa: PLC0415

    pkts = [(n, float(p.time), decode(101, bytes(p))) for n, p in enumerate(rdpcap(str(D / "tunnel-side.pcapng")), 1)]
    whole = TunnelDevice(0, 0, "tun0")
    for n, ts, p in pkts:
        whole.note(p, ts, n)
    # the later shard first, as the merge meets them: the ICMP errors' pair (198.19.0.1, the client) in one, the rest
    # in the other
    a, b = TunnelDevice(0, 0, "tun0"), TunnelDevice(0, 0, "tun0")
    for n, ts, p in pkts:
        (a if p.src == "198.19.0.1" else b).note(p, ts, n)
    a.merge(b)
    assert (a.packets, a.counted, a.address, a.first_frame, a.last_frame) == (
        whole.packets, whole.counted, whole.address, whole.first_frame, whole.last_frame)
    got, want = unreachable_of(a.attempts()), unreachable_of(whole.attempts())
    assert got == want and {c.answer for c in got.connects} == {"none", "icmp"}


ANY = sample("inner-unreachable-any")


@pytest.fixture(scope="module")
def any_v2(tmp_path_factory) -> Path:
    """The same "any" capture in Linux cooked capture v2 (tcpdump -y LINUX_SLL2, the newer tools' choice), which
    names each packet's interface by index: the veth 2, the tun device 5 (by their device types, ARPHRD_ETHER and
    ARPHRD_NONE)."""
    from scapy.all import CookedLinux, CookedLinuxV2, PcapWriter  # noqa: PLC0415

    out = tmp_path_factory.mktemp("any") / "any-sll2.pcap"
    w = PcapWriter(str(out), linktype=276, sync=True)
    for p in rdpcap(str(ANY / "capture.pcapng")):
        c = p[CookedLinux]
        v2 = CookedLinuxV2(proto=c.proto, ifindex=5 if c.lladdrtype == 0xFFFE else 2, lladdrtype=c.lladdrtype,
                           pkttype=c.pkttype, lladdrlen=c.lladdrlen, src=c.src) / c.payload
        v2.time = p.time
        w.write(v2)
    w.close()
    return out




@pytest.mark.tshark
@pytest.mark.parametrize("version", ["sll", "sll2"])
def test_a_linux_any_capture_holds_the_adapter_too(version, any_v2):
    """dumpcap -i any on the client (lab scenario inner-unreachable-any): one file, Linux cooked capture; the tun
    device's packets are ARPHRD_NONE (tshark: sll.hatype 65534) and read as the tunnel's inside, by themselves."""
    cap = ANY / "capture.pcapng" if version == "sll" else any_v2
    tun = tshark_fields(cap, ["frame.number", "sll.hatype", "sll.ifindex", "ip.src"], "sll.hatype == 65534")
    assert tun and {r[3] for r in tun} >= {"198.19.0.50"} and len({r[2] for r in tun}) == 1
    store, info = load_keys([], [])
    doc = to_document(analyze_paths([cap], store, info), version=__version__, show_secrets=True)
    (s,) = doc["sessions"]
    dev = s["tunnel"]["device"]
    assert dev["interface"] == ("the tun device in a Linux 'any' capture" if version == "sll" else
                                "the tun device with interface index 5 in a Linux 'any' capture")
    assert (dev["address"], dev["matched_by"], dev["packets"]) == ("198.19.0.50", "time", len(tun))
    assert (dev["first_frame"], dev["last_frame"]) == (int(tun[0][0]), int(tun[-1][0]))
    by = {c["dst"]: c for c in s["tunnel"]["unreachable"]["connects"]}
    assert by["198.19.0.77"]["syn_frames"] == _syns(cap, "198.19.0.77")
    assert by["198.19.0.78"]["answer"] == "icmp"
    assert s["verdict"]["experienced"] == "Connected, but servers inside the tunnel did not answer"
    # with the key log: the decrypted tunnel's own reading, the same destinations, the device tied by its address
    store, info = load_keys([ANY / "keys.log"], [])
    (k,) = to_document(analyze_paths([cap], store, info), version=__version__)["sessions"]
    assert k["tunnel"]["device"]["matched_by"] == "tunnel-address" and "read_from" not in k["tunnel"]["unreachable"]
    assert {c["dst"] for c in k["tunnel"]["unreachable"]["connects"]} == set(by)


def test_the_adapter_goes_to_the_session_it_spans_when_two_had_its_address(tmp_path):
    """Two sessions in one capture were given the same tunnel address one after the other (ocserv's predictable
    addresses; a user who connected again): the adapter's capture goes with the session its packets span — here the
    first one — not with the last one named by the address."""
    first = D / "capture.pcapng"
    later = tmp_path / "later.pcapng"
    t0 = float(subprocess.run([_tool("capinfos"), "-a", "-T", "-r", "-S", str(first)], check=True,
                              capture_output=True, text=True).stdout.strip().split("\t")[-1])
    t1 = float(subprocess.run([_tool("capinfos"), "-a", "-T", "-r", "-S", str(sample("baseline") / "capture.pcapng")],
                              check=True, capture_output=True, text=True).stdout.strip().split("\t")[-1])
    subprocess.run([_tool("editcap"), "-t", f"{t0 + 30.0 - t1:.9f}", str(sample("baseline") / "capture.pcapng"),
                    str(later)], check=True, capture_output=True)
    both = tmp_path / "both.pcapng"
    subprocess.run([_tool("mergecap"), "-w", str(both), str(first), str(later)], check=True, capture_output=True)
    store, info = load_keys([D / "keys.log", sample("baseline") / "keys.log"], [])
    doc = to_document(analyze_paths([both, D / "tunnel-side.pcapng"], store, info), version=__version__)
    a, b = doc["sessions"]
    addr = [next(p for p in s["phases"] if p["phase"] == "cstp-connect")["details"]["parameters"]["address"]
            for s in (a, b)]
    assert addr == ["198.19.0.50", "198.19.0.50"] and a["start"] < b["start"]
    assert a["tunnel"]["device"]["matched_by"] == "tunnel-address" and "device" not in b["tunnel"]


def test_an_adapter_capture_spanning_two_sessions_gives_each_its_own_time(tmp_path):
    """A user who connected twice, captured on both interfaces (two real lab runs one after the other: the veth files
    merged, the tun0 files merged, the second run 30 s after the first): without keys each session reads the
    adapter's packets of its own time — the first's unreachable servers, the second's lookup answered inside and the
    connection outside the tunnel — instead of neither."""
    two = sample("route-outside-tunnel-adapter")

    def first_of(p):
        out = subprocess.run([_tool("capinfos"), "-a", "-T", "-r", "-S", str(p)], check=True, capture_output=True,
                             text=True).stdout
        return float(out.strip().split("\t")[-1])

    shift = first_of(D / "capture.pcapng") + 30.0 - first_of(two / "capture.pcapng")
    files = {}
    for name in ("capture.pcapng", "tunnel-side.pcapng"):
        later = tmp_path / f"later-{name}"
        subprocess.run([_tool("editcap"), "-t", f"{shift:.9f}", str(two / name), str(later)], check=True,
                       capture_output=True)
        files[name] = tmp_path / f"both-{name}"
        subprocess.run([_tool("mergecap"), "-w", str(files[name]), str(D / name), str(later)], check=True,
                       capture_output=True)
    store, info = load_keys([], [])
    doc = to_document(analyze_paths([files["capture.pcapng"], files["tunnel-side.pcapng"]], store, info),
                      version=__version__)
    a, b = doc["sessions"]
    assert a["tunnel"]["device"]["shared_by"] == b["tunnel"]["device"]["shared_by"] == 2
    assert {c["dst"] for c in a["tunnel"]["unreachable"]["connects"]} == {"198.19.0.77", "198.19.0.78"}
    assert "unreachable" not in b["tunnel"]  # (the second's lookup was answered; its connect left outside)
    assert [x["dst"] for x in b["tunnel"]["outside_traffic"]] == ["198.19.1.10"]
    assert "outside_traffic" not in a["tunnel"]
    assert a["verdict"]["experienced"] == "Connected, but servers inside the tunnel did not answer"
    assert any(f["id"] == "SPLIT_TUNNEL_ROUTE_MISSING" and f["inferred"] for f in b["findings"])
