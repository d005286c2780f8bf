"""A TLS-inspecting firewall between client and gateway (lab scenario tls-inspection: real openconnect and ocserv,
lab/inspect.py ending the client's TLS with a certificate of its own CA and relaying to ocserv over a TLS session
of its own; UDP untouched). The login and the tunnel work over the relayed TLS; DTLS (PSK-NEGOTIATE, keyed by each
end from its own TLS session) cannot: the gateway never accepts the client's Finished.

Before: 'Tunnel up over TLS only: DTLS did not come up (DTLS handshake answered but not completed); see the DTLS
findings' — and no DTLS finding."""
from __future__ import annotations

import pytest

from .conftest import facts, sample
from .helpers import doc
from .oracle import tshark_fields

NAME = "tls-inspection"


def _client_finished_frames() -> list[int]:
    """The client's protected DTLS handshake records (its Finished, epoch 1), as tshark reads them."""
    rows = tshark_fields(sample(NAME) / "capture.pcapng", ["frame.number"],
                         "dtls.record.epoch == 1 && ip.src == 198.18.0.2 && dtls.record.content_type == 22")
    return [int(r[0]) for r in rows]


def test_the_lab_made_what_it_says():
    f = facts(NAME)
    assert "tls-inspection" in [a["action"] for a in f["actions"]]
    assert f["dtls_mode"] == "psk-negotiate" and f["dtls_established"] is False
    log = (sample(NAME) / "client.log").read_text()
    assert "DTLS handshake timed out" in log and "CSTP connected" in log
    assert "relaying to 198.18.0.1:443" in (sample(NAME) / "inspect.log").read_text()


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
def test_the_gateway_never_accepted_the_clients_finished(keys):
    frames = _client_finished_frames()
    assert len(frames) == 4  # openconnect sent its flight at +0, +1, +3, +7 s
    (s,) = doc(NAME, keys=keys)["sessions"]
    (f,) = [f for f in s["findings"] if f["id"] == "DTLS_PSK_MISMATCH"]
    assert f["severity"] == "warning" and f.get("inferred", False) is not keys
    ev = f["evidence"]
    assert ev["finished_frames"] == frames and ev["finished_sent"] == 4
    assert ev["verified_with_client_tls_session"] is keys
    flow = next(p for p in s["phases"] if p["phase"] == "dtls")["details"]["flows"][0]
    assert flow["finished"]["c2s"]["frames"] == frames and "s2c" not in flow["finished"]
    assert flow["finished"]["c2s"]["verified"] is (True if keys else None)
    v = s["verdict"]
    assert v["outcome"] == "degraded" and "intercepts the TLS connection" in v["cause"]
    assert v["findings"][0] == "DTLS_PSK_MISMATCH"
    if keys:
        # the certificate the client got (decrypted TLS 1.3): the middlebox's CA, as tshark reads it too
        rows = tshark_fields(sample(NAME) / "capture.pcapng", ["x509sat.uTF8String"], "tls.handshake.type == 11",
                             keylog=sample(NAME) / "keys.log")
        assert "acflow lab inspection CA" in rows[0][0]
        assert "acflow lab inspection CA" in ev["certificate_issuer"]
    else:
        dt = next(p for p in s["phases"] if p["phase"] == "dtls")
        assert dt["inferred"]["status"] == "failed"


def test_a_dtls_handshake_that_completes_is_no_mismatch():
    """baseline (the same PSK-NEGOTIATE DTLS, no middlebox): both Finished messages, both verified with the key
    derived from the client's TLS session; no finding."""
    s = doc("baseline")["sessions"][0]
    flow = next(p for p in s["phases"] if p["phase"] == "dtls")["details"]["flows"][0]
    assert flow["finished"]["c2s"]["verified"] is True and flow["finished"]["s2c"]["verified"] is True
    assert not any(f["id"] == "DTLS_PSK_MISMATCH" for f in s["findings"])
