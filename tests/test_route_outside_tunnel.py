"""Connected, but traffic meant for the VPN leaves outside the tunnel (lab scenario route-outside-tunnel: real
openconnect and ocserv; the gateway routes 198.19.0.0/24 into the tunnel and its DNS at 198.19.0.1 answers
app.corp.acflow.test with 198.19.1.10; the client namespace has a route of its own network for 198.19.0.64/26 — a
home network using the VPN's addresses — and a default route). The client's TCP to 198.19.0.77 and, after the lookup
through the tunnel, to 198.19.1.10 go out of its own interface, in the clear.

Before: 'Healthy: logged in, tunnel 198.19.0.50 over DTLS' — the capture's plain traffic was other traffic, and
nothing compared it with the tunnel's routes."""
from __future__ import annotations

import ipaddress

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.phases.cstp_connect import TunnelParameters
from analyzer.phases.outside import Routes
from analyzer.report.json_report import to_document

from .conftest import facts, sample
from .helpers import doc
from .oracle import tshark_fields

NAME = "route-outside-tunnel"


def _actions(kind: str) -> list[dict]:
    return [a for a in facts(NAME)["actions"] if a["action"] == kind]


def test_the_lab_made_what_it_says():
    assert [a["prefix"] for a in _actions("client-route")] == ["198.19.0.64/26", "default"]
    tcp = {a["address"]: a for a in _actions("inner-tcp")}
    assert tcp["198.19.0.77"]["returncode"] == 28 and tcp["198.19.1.10"]["returncode"] == 28  # curl: timed out
    (dns,) = _actions("inner-dns")
    assert dns["returncode"] == 0 and "198.19.1.10" in dns["output"]


@pytest.mark.tshark
def test_traffic_outside_the_tunnel_read_against_tshark():
    (s,) = doc(NAME)["sessions"]
    got = {x["dst"]: x for x in s["tunnel"]["outside_traffic"]}
    assert set(got) == {"198.19.0.77", "198.19.1.10"}
    # the SYNs tshark sees in the clear, from the client's own address
    rows = tshark_fields(sample(NAME) / "capture.pcapng", ["frame.number", "ip.dst"],
                         "tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.src == 198.18.0.2 && tcp.dstport == 8080")
    want: dict[str, list[int]] = {}
    for fr, dst in rows:
        want.setdefault(dst, []).append(int(fr))
    for dst, x in got.items():
        assert x["frames"] == want[dst][:8] and x["protocol"] == "tcp" and x["port"] == 8080
        assert x["answer"] == "no answer" and x["connections"] == 1
    home, app = got["198.19.0.77"], got["198.19.1.10"]
    assert (home["why"], home["covered"], home["route"], home["name"]) == (
        "split-include", True, "198.19.0.0/24", None)
    # the name came back inside the tunnel (a DTLS record from the gateway, decrypted), before the connect
    assert (app["why"], app["covered"], app["name"]) == ("resolved-inside", False, "app.corp.acflow.test")
    dtls = next(p for p in s["phases"] if p["phase"] == "dtls")
    assert app["name_frame"] < app["frames"][0] and dtls["frames"][0] < app["name_frame"]
    (dns,) = _actions("inner-dns")
    assert dns["issued"] <= app["time"]


def test_the_findings_and_the_verdict():
    (s,) = doc(NAME)["sessions"]
    by = {f["id"]: f for f in s["findings"]}
    out, missing = by["TRAFFIC_OUTSIDE_TUNNEL"], by["SPLIT_TUNNEL_ROUTE_MISSING"]
    assert out["severity"] == missing["severity"] == "warning"
    assert [x["dst"] for x in out["evidence"]["outside"]] == ["198.19.0.77"]
    assert [x["dst"] for x in missing["evidence"]["outside"]] == ["198.19.1.10"]
    assert "198.18.0.2" in out["message"] and "X-CSTP-Split-Include 198.19.0.0/24" in out["message"]
    assert "app.corp.acflow.test" in missing["message"] and "198.19.0.0/255.255.255.0" in missing["message"]
    assert out["frames"] == s["tunnel"]["outside_traffic"][0]["frames"][:4]
    assert s["verdict"]["experienced"] == "Connected, but traffic meant for the VPN went outside the tunnel"
    assert s["verdict"]["outcome"] == "degraded"


def test_without_keys_nothing_is_claimed():
    """The routes are in the CONNECT answer: without keys the connects stay other traffic's, with no finding."""
    (s,) = doc(NAME, keys=False)["sessions"]
    assert "outside_traffic" not in (s.get("tunnel") or {})
    assert not {"TRAFFIC_OUTSIDE_TUNNEL", "SPLIT_TUNNEL_ROUTE_MISSING"} & {f["id"] for f in s["findings"]}


def _params(**kw) -> TunnelParameters:
    """The sample's own CONNECT answer, with the given headers changed."""
    (s,) = doc(NAME)["sessions"]
    p = dict(next(p for p in s["phases"] if p["phase"] == "cstp-connect")["details"]["parameters"])
    p.update(kw)
    return TunnelParameters(**p)


def _why(routes: Routes, address: str):
    a = ipaddress.ip_address(address)
    return None if routes.excluded(a) else routes.why(a)


def test_which_destinations_the_routes_are_for():
    r = Routes(_params())
    assert _why(r, "198.19.0.77") == ("split-include", "198.19.0.0/24")
    assert _why(r, "198.19.0.1") == ("tunnel-dns", None)
    assert _why(r, "198.19.1.10") is None and not r.full(ipaddress.ip_address("198.19.1.10"))
    # a split-exclude inside an include keeps its addresses outside, where they belong
    r = Routes(_params(split_include=["198.19.0.0/255.255.0.0"], split_exclude=["198.19.0.64/26"]))
    assert _why(r, "198.19.0.77") is None and _why(r, "198.19.1.10") == ("split-include", "198.19.0.0/16")
    # no include: a full tunnel (the tunnel's own network still named); Cisco's local-LAN marker excludes nothing else
    r = Routes(_params(split_include=[], split_exclude=["0.0.0.0/255.255.255.255"]))
    assert r.full(ipaddress.ip_address("203.0.113.9")) and _why(r, "203.0.113.9") is None
    assert _why(r, "198.19.0.200") == ("tunnel-network", "198.19.0.0/24")
    # IPv6: X-CSTP-Split-Include-IP6 prefixes; without a tunnel address for IPv6, IPv6 is not the tunnel's at all
    r = Routes(_params(split_include_ip6=["2001:2:0:1::/64"], address_ip6="2001:2::50/64"))
    assert _why(r, "2001:2:0:1::7") == ("split-include", "2001:2:0:1::/64")
    assert _why(r, "2001:2::9") == ("tunnel-network", "2001:2::/64")
    assert not Routes(_params()).full(ipaddress.ip_address("2001:db8::1"))
    # a header that is no network is left out, not fatal
    assert Routes(_params(split_include=["not-a-network", "198.19.0.0/24"])).include == [
        ipaddress.ip_network("198.19.0.0/24")]


ADAPTER = "route-outside-tunnel-adapter"


@pytest.mark.tshark
def test_without_keys_the_adapters_capture_tells_the_route_is_missing():
    """The same run captured on the veth and on tun0 (lab scenario route-outside-tunnel-adapter), no keys: the tunnel
    DNS's answer for app.corp.acflow.test is in the adapter's file, the connection to 198.19.1.10 outside the tunnel
    in the veth's. The routes are not known (the CONNECT answer is encrypted): SPLIT_TUNNEL_ROUTE_MISSING inferred,
    the local route named as the other possibility; 198.19.0.77 (no name behind it) is not claimed."""
    d = sample(ADAPTER)
    store, info = load_keys([], [])
    doc = to_document(analyze_paths([d / "capture.pcapng", d / "tunnel-side.pcapng"], store, info),
                      version=__version__)
    (s,) = doc["sessions"]
    (x,) = s["tunnel"]["outside_traffic"]
    assert (x["dst"], x["port"], x["why"], x["covered"], x["inferred"]) == ("198.19.1.10", 8080, "resolved-inside",
                                                                               False, True)
    assert x["name"] == "app.corp.acflow.test"
    answers = tshark_fields(d / "tunnel-side.pcapng", ["frame.number", "dns.a"], "dns.flags.response == 1")
    assert [(int(fr), a) for fr, a in answers] == [(x["name_frame"], "198.19.1.10")]
    syns = tshark_fields(d / "capture.pcapng", ["frame.number"],
                         "tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.dst == 198.19.1.10")
    assert x["frames"] == [int(r[0]) for r in syns][:8]
    (f,) = [f for f in s["findings"] if f["id"] == "SPLIT_TUNNEL_ROUTE_MISSING"]
    assert f["inferred"] is True and f["severity"] == "warning" and "local route" in f["remedy"]
    # (the answer's frame is the adapter file's, the connection's the veth file's: the message says which is which)
    assert f"(frame {x['name_frame']} of {d / 'tunnel-side.pcapng'})" in f["message"]
    assert not any(f["id"] == "TRAFFIC_OUTSIDE_TUNNEL" for f in s["findings"])
    # with the key log: the routes read, both findings as on route-outside-tunnel
    store, info = load_keys([d / "keys.log"], [])
    (k,) = to_document(analyze_paths([d / "capture.pcapng", d / "tunnel-side.pcapng"], store, info),
                       version=__version__)["sessions"]
    assert {f["id"] for f in k["findings"]} >= {"TRAFFIC_OUTSIDE_TUNNEL", "SPLIT_TUNNEL_ROUTE_MISSING"}
    assert not any(f.get("inferred") for f in k["findings"] if f["id"] == "SPLIT_TUNNEL_ROUTE_MISSING")


def test_a_connect_the_adapter_saw_went_into_the_tunnel(tmp_path):
    """In a Linux 'any' capture a packet the client sends from its own address into its tun (the kernel picks the
    tun's route, the socket kept the outer address) is the tun device's, not the physical interface's: the SYN to
    198.19.0.77 of this sample, shown on a tun device (cooked capture, ARPHRD_NONE) at the same moment, is no
    traffic outside the tunnel; the one to 198.19.1.10 still is."""
    from scapy.all import IP, TCP, CookedLinux, PcapWriter, rdpcap  # noqa: PLC0415

    cap = sample(NAME) / "capture.pcapng"
    syn = next(p for p in rdpcap(str(cap)) if IP in p and p[IP].dst == "198.19.0.77" and TCP in p)
    tun = tmp_path / "tun.pcap"
    w = PcapWriter(str(tun), linktype=113, sync=True)
    pkt = CookedLinux(pkttype=4, lladdrtype=0xFFFE, lladdrlen=0, src=b"", proto=0x0800) / syn[IP]
    pkt.time = syn.time
    w.write(pkt)
    w.close()
    store, info = load_keys([sample(NAME) / "keys.log"], [])
    (s,) = to_document(analyze_paths([cap, tun], store, info), version=__version__)["sessions"]
    assert [x["dst"] for x in s["tunnel"]["outside_traffic"]] == ["198.19.1.10"]
    assert not any(f["id"] == "TRAFFIC_OUTSIDE_TUNNEL" for f in s["findings"])
