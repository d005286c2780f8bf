"""IPsec named, not analysed (dissectors/ike.py, analyzer/ipsec.py): real IKEv2 between two strongSwan daemons in
the lab's namespaces (samples/ipsec, made by `python -m lab.ipsec`; the lab's kernel has no IPsec SA support, so the
captures hold IKE only), and ESP in UDP built with scapy.

Before: 'No AnyConnect-protocol session found', other traffic 'UDP/500, UDP/4500' — nothing said of IPsec, while
Cisco's client may run over IKEv2/IPsec."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.capture import iter_frames
from analyzer.report.json_report import render_json
from dissectors.ike import Esp, IkeMessage, read_ike

ROOT = Path(__file__).resolve().parent.parent
IPSEC = ROOT / "samples" / "ipsec"


def _doc(capture: Path, jobs: int = 1) -> dict:
    keys, info = load_keys([], [])
    if jobs > 1:
        from analyzer.parallel import analyze_paths_parallel

        a = analyze_paths_parallel([capture], [], [], jobs)
    else:
        a = analyze_paths([capture], keys, info)
    return json.loads(render_json(a, version=__version__))


def _facts(name: str) -> dict:
    return json.loads((IPSEC / name / "ipsec.json").read_text())


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", ["ikev2", "ikev1", "ikev2-no-proposal"])
def test_every_ike_message_is_read_as_tshark_reads_it(name):
    cap = IPSEC / name / "capture.pcapng"
    p = subprocess.run(["tshark", "-n", "-r", str(cap), "-Y", "isakmp", "-T", "fields", "-e", "frame.number", "-e",
                        "isakmp.exchangetype", "-e", "isakmp.ispi", "-e", "isakmp.rspi"],
                       capture_output=True, text=True, check=True)
    theirs = {int(r.split("\t")[0]): r.split("\t")[1:] for r in p.stdout.splitlines()}
    names = {"34": "IKE_SA_INIT", "35": "IKE_AUTH", "36": "CREATE_CHILD_SA", "37": "INFORMATIONAL",
             "2": "Main Mode", "4": "Aggressive Mode", "5": "Informational", "32": "Quick Mode"}
    ours = {}
    for fr in iter_frames(cap):
        e = Ether(bytes(fr.data))
        if UDP in e:
            m = read_ike(bytes(e[UDP].payload), e[UDP].sport, e[UDP].dport)
            if m is not None:
                ours[fr.number] = m
    assert set(ours) == set(theirs) and theirs
    for n, m in ours.items():
        ex, spi_i, spi_r = theirs[n]
        assert isinstance(m, IkeMessage) and names[ex] == m.exchange
        assert (m.spi_i, m.spi_r) == (spi_i.replace(":", ""), spi_r.replace(":", ""))


def test_ikev2_is_named_in_place_of_a_session():
    f = _facts("ikev2")
    assert f["ike_sa_established"] and f["child_sa_failed"]
    doc = _doc(IPSEC / "ikev2" / "capture.pcapng")
    assert doc["sessions"] == []
    items = doc["other_traffic"]["ipsec"]
    assert {(i["client"], i["gateway"]) for i in items} == {(f["client"], f["gateway"])}  # the initiator: client
    assert {i["gateway_port"] for i in items} == {500, 4500} and any(i["nat_t"] for i in items)
    assert any(i["ike_sa_answered"] for i in items) and not any(i["errors"] for i in items)
    assert items[0]["exchanges"] == {"IKE_SA_INIT": 2}
    assert items[0]["vendor_ids"]  # strongSwan's (send_vendor_id = yes), in the clear in IKE_SA_INIT
    [no] = [x for x in doc["findings"] if x["id"] == "NO_VPN_SESSION"]
    assert "IPsec, not the SSL VPN protocol: IKEv2 between 198.18.0.2 and 198.18.0.1" in no["message"]
    # the rows keep their UDP label (the public contract): the IPsec is told beside them
    assert {r["protocol"] for r in doc["other_traffic"]["by_protocol"]} == {"UDP"}


def test_a_refused_proposal_is_quoted():
    assert _facts("ikev2-no-proposal")["ike_proposal_refused"]
    doc = _doc(IPSEC / "ikev2-no-proposal" / "capture.pcapng")
    [item] = doc["other_traffic"]["ipsec"]
    assert [e["notify"] for e in item["errors"]] == ["NO_PROPOSAL_CHOSEN"]
    assert item["errors"][0]["from"] == "responder" and not item["ike_sa_answered"]
    [no] = [x for x in doc["findings"] if x["id"] == "NO_VPN_SESSION"]
    assert "the gateway refused: NO_PROPOSAL_CHOSEN" in no["message"]


def _write_pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_800_000_000 + i, 0, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def test_esp_in_udp_is_counted(tmp_path):
    """The lab's IKE, then ESP packets on UDP 4500 (SPI, sequence number, ciphertext) as NAT traversal sends them."""
    frames = [bytes(fr.data) for fr in iter_frames(IPSEC / "ikev2" / "capture.pcapng")]
    esp = [bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4500, dport=4500)
                 / (struct.pack("!II", 0xC0FFEE01, n) + bytes(48))) for n in range(1, 6)]
    esp.append(bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4500, dport=4500) / b"\xff"))
    cap = tmp_path / "esp.pcap"
    _write_pcap(cap, frames + esp)
    items = _doc(cap)["other_traffic"]["ipsec"]
    assert sum(i["esp_packets"] for i in items) == 5  # the NAT keepalive is none
    assert isinstance(read_ike(struct.pack("!II", 0xC0FFEE01, 1) + bytes(8), 4500, 4500), Esp)


def test_jobs_read_it_the_same():
    cap = IPSEC / "ikev2" / "capture.pcapng"
    assert _doc(cap, jobs=2) == _doc(cap)


@pytest.mark.parametrize("data, ports", [
    (b"", (500, 500)), (bytes(28), (500, 500)), (b"\x01" * 8 + bytes(8) + b"\x21\x20\x22\x08" + bytes(8), (500, 500)),
    (bytes(4) + b"\x01" * 30, (4500, 4500)), (b"\x01" * 100, (500, 500)), (b"\x00\x00\x00\x05" + bytes(4), (4500, 1)),
])
def test_garbage_is_not_ike(data, ports):
    assert read_ike(data, *ports) is None


def test_the_html_report_names_it_too():
    from analyzer.report.html import render_html

    keys, info = load_keys([], [])
    a = analyze_paths([IPSEC / "ikev2-no-proposal" / "capture.pcapng"], keys, info)
    assert "IPsec, not the SSL VPN protocol: IKEv2 between 198.18.0.2 and 198.18.0.1 (the gateway refused: " \
           "NO_PROPOSAL_CHOSEN" in render_html(a, version=__version__)


def test_ikev1_is_named_as_such():
    f = _facts("ikev1")
    assert f["ike_sa_established"] and f["child_sa_failed"]
    doc = _doc(IPSEC / "ikev1" / "capture.pcapng")
    [item] = doc["other_traffic"]["ipsec"]
    assert item["ike_version"] == 1 and item["exchanges"]["Main Mode"] == 6 and "Quick Mode" in item["exchanges"]
    assert item["vendor_ids"]  # Main Mode's Vendor IDs, in the clear
    [no] = [x for x in doc["findings"] if x["id"] == "NO_VPN_SESSION"]
    assert "IKEv1 between 198.18.0.2 and 198.18.0.1" in no["message"] and "legacy Cisco VPN Client" in no["message"]
