"""A path MTU black hole: the gateway's TCP segments longer than 1200 bytes are lost on the way to the client
without an ICMP 'fragmentation needed' (nftables in the lab). The TCP connection comes up, the ClientHello arrives,
the gateway's ServerHello (small) arrives — its certificate flight (the first full-size segment) never does;
openconnect waits in 'SSL negotiation' until the lab stops it. Two captures of it: the client's side
(path-mtu-blackhole: the loss at the gateway's way out) and the gateway's (path-mtu-blackhole-gateway-side: the loss
at the client's way in; the gateway's flight leaves and is sent again, never acknowledged).

Before: 'No AnyConnect-protocol session found'; with --gateway the client side read 'the client closed the
connection before finishing the handshake', and the gateway side TLS_CERT_REFUSED — 'the client refused the
certificate … without the intermediate CA' — for a certificate the client never received."""
from __future__ import annotations

from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.evidence import GatewaySpec
from analyzer.report.json_report import to_document

from .conftest import facts, sample
from .helpers import doc
from .oracle import tshark_fields

SIDES = ("path-mtu-blackhole", "path-mtu-blackhole-gateway-side")


def _doc(name: str, keys: bool, gateway: str | None = None) -> dict:
    return doc(name, show_secrets=False, keys=keys, gateway=gateway)


@pytest.mark.parametrize("name", SIDES)
def test_the_client_waited_in_the_handshake(name):
    log = (sample(name) / "client.log").read_text().strip().splitlines()
    assert log[-1].endswith("SSL negotiation with vpn.acflow.test")
    assert any(a["action"] == "client-did-not-exit" for a in facts(name)["actions"])


def _full_size_from_gateway(capture: Path) -> list[tuple[int, int]]:
    """tshark: (frame, TCP payload length) of the gateway's segments longer than 1200 bytes of payload."""
    rows = tshark_fields(capture, ["frame.number", "tcp.len"], "ip.src == 198.18.0.1 && tcp.len > 1000 && !icmp")
    return [(int(a), int(b)) for a, b in rows]


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
@pytest.mark.parametrize("name", SIDES)
def test_with_the_gateway_named_the_stall_is_the_cause(name, keys, tshark):
    [s] = _doc(name, keys, "198.18.0.1")["sessions"]
    phases = {p["phase"]: p for p in s["phases"]}
    tls = phases["tls-handshake"]
    assert tls["status"] == "failed"
    assert all(p["status"] == "absent" for n, p in phases.items() if n != "tls-handshake")
    st = tls["details"]["server_stalled"]
    hello = int(tshark_fields(sample(name) / "capture.pcapng", ["frame.number"], "tls.handshake.type == 2")[0][0])
    assert st["server_hello"] is True and st["since_frame"] == hello and st["waited"] > 30
    full = _full_size_from_gateway(sample(name) / "capture.pcapng")
    if name.endswith("gateway-side"):  # the flight left, and was sent again
        assert len(full) >= 3 and st["retransmitted"] == len(full) - 1
    else:  # the client's side never sees a full-size segment of the gateway's
        assert full == [] and st["retransmitted"] == 0
    ids = [f["id"] for f in s["findings"]]
    assert "TLS_HANDSHAKE_STALLED" in ids and "TLS_CERT_REFUSED" not in ids
    v = s["verdict"]
    assert v["outcome"] == "failed" and v["text"].startswith("Could not connect: the gateway's TLS handshake never")
    assert "path MTU black hole" in v["text"] and v["findings"] == ["TLS_HANDSHAKE_STALLED"]


@pytest.mark.parametrize("name", SIDES)
def test_without_the_gateway_named_the_stall_is_pointed_at(name):
    doc = _doc(name, True)
    assert doc["sessions"] == []
    [no] = [f for f in doc["findings"] if f["id"] == "NO_VPN_SESSION"]
    assert "never reached the client" in no["message"] and "--gateway 198.18.0.1:443" in no["message"]
    assert "refuse" not in no["message"]  # (the client received no certificate to refuse)


def test_a_refused_certificate_is_still_one():
    """cert-chain-missing: the client received the flight (it acknowledged it) and closed: no stall."""
    d = sample("cert-chain-missing")
    k, info = load_keys([d / "keys.log"], [])
    [s] = to_document(analyze_paths([d / "capture.pcapng"], k, info, gateways=[GatewaySpec.parse("198.18.0.1")]),
                      version=__version__)["sessions"]
    ids = [f["id"] for f in s["findings"]]
    assert "TLS_CERT_REFUSED" in ids and "TLS_HANDSHAKE_STALLED" not in ids
