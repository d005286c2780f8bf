"""A way back that drops the gateway's answers, captured on the gateway's side (lab scenario dtls-return-blocked:
nftables at the client's way in drops UDP from port 443; the TLS tunnel works). The gateway answers each DTLS
ClientHello with a ServerHello; the client, which never gets them, sends its ClientHello again and gives up on DTLS.

Before: 'Tunnel up over TLS only: DTLS did not come up (DTLS handshake answered but not completed); see the DTLS
findings' — and no DTLS finding said why. (The TCP case, return-path-blocked, is in tests/test_failed_connects.py.)"""
from __future__ import annotations

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import facts, sample
from .helpers import session
from .oracle import tshark_fields


def _session(keys: bool) -> dict:
    return session("dtls-return-blocked", keys=keys, show_secrets=False)


def test_the_client_never_got_dtls():
    f = facts("dtls-return-blocked")
    assert not f["dtls_established"] and f["cstp_connected_time"] is not None
    assert any(a["action"] == "path-fault" and a["how"] == "udp-in" for a in f["actions"])


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
def test_the_answers_are_named_lost(keys, tshark):
    cap = sample("dtls-return-blocked") / "capture.pcapng"
    server = [int(r[0]) for r in tshark_fields(cap, ["frame.number"], "dtls.handshake.type == 2")]
    client = [int(r[0]) for r in tshark_fields(cap, ["frame.number"], "dtls.handshake.type == 1")]
    assert len(server) >= 3 and len(client) == len(server)  # (each hello answered, by the capture's own reading)
    s = _session(keys)
    [flow] = s["phases"][5]["details"]["flows"]
    assert flow["server_hello_frames"] == server and not flow["established"]
    [f] = [f for f in s["findings"] if f["id"] == "DTLS_ANSWERS_LOST"]
    assert f["evidence"]["server_hello_frames"] == server
    assert f["evidence"]["client_hellos_after"] == [c for c in client if c > server[0]]
    assert "DTLS_NO_RESPONSE" not in {x["id"] for x in s["findings"]}
    v = s["verdict"]
    assert v["outcome"] == "degraded" and v["text"].startswith("Tunnel up over TLS only: the gateway answered")
    assert "DTLS_ANSWERS_LOST" in v["findings"]


def test_an_answered_handshake_is_no_loss():
    """baseline: one ClientHello, one ServerHello, DTLS up: no finding; dtls-blocked: nothing answered."""
    for name in ("baseline", "dtls-blocked"):
        d = sample(name)
        k, info = load_keys([d / "keys.log"], [])
        doc = to_document(analyze_paths([d / "capture.pcapng"], k, info), version=__version__)
        assert "DTLS_ANSWERS_LOST" not in {f["id"] for s in doc["sessions"] for f in s["findings"]}
