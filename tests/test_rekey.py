"""A session longer than the gateway's rekey time (lab scenario rekey: real openconnect and ocserv, rekey-time 20 s,
rekey-method ssl). openconnect renews the CSTP channel's TLS 1.3 keys (a KeyUpdate: 'Renegotiated SSL') and the
DTLS channel's with a new handshake on the same flow ('DTLS rekey due'); the tunnel carries pings throughout. Read
as one healthy session, every record decrypted."""
from __future__ import annotations

import pytest

from .conftest import sample
from .helpers import doc
from .oracle import tshark_fields

NAME = "rekey"


def test_the_lab_made_what_it_says():
    log = (sample(NAME) / "client.log").read_text()
    assert "CSTP rekey due" in log and "Renegotiated SSL" in log and "DTLS rekey due" in log


@pytest.mark.tshark
def test_both_channels_rekeyed_and_read():
    (s,) = doc(NAME)["sessions"]
    assert s["verdict"]["outcome"] == "healthy"
    assert not [f for f in s["findings"] if f["severity"] != "info"]
    c = s["connections"][0]
    # the CSTP connection's keys after the KeyUpdate came from the key log too (generation 1)
    assert all(c["decryption"][d]["ok"] and "generation 1" in c["decryption"][d]["reason"] for d in ("c2s", "s2c"))
    (flow,) = next(p for p in s["phases"] if p["phase"] == "dtls")["details"]["flows"]
    assert flow["undecrypted_records"] == 0 and flow["client_hello_count"] == 2
    # two handshakes on the one flow, each side's Finished verified both times. tshark reads the first ClientHello
    # (epoch 0); the second runs protected under the first handshake's keys (epoch 1), which tshark cannot derive
    # (PSK-NEGOTIATE): it sees a handshake record of epoch 1 in that frame
    rows = tshark_fields(sample(NAME) / "capture.pcapng", ["frame.number", "dtls.record.epoch"],
                         "dtls.record.content_type == 22 && ip.src == 198.18.0.2")
    first, second = (h["frame"] for h in flow["client_hellos"])
    seen = [[int(r[0]), r[1]] for r in rows]
    assert [first, "0"] in seen and [second, "1"] in seen
    assert len(flow["finished"]["c2s"]["frames"]) == 2 and len(flow["finished"]["s2c"]["frames"]) == 2
    assert flow["finished"]["c2s"]["verified"] is True and flow["finished"]["s2c"]["verified"] is True
    assert s["tunnel"]["dtls"]["inner_packets"]["c2s"] >= 11  # the pings of all four runs


def test_without_keys_the_probes_after_the_rekey_are_probes():
    """openconnect probes the DTLS MTU again after the rekey's handshake (30 s into the flow): read without keys by
    record size, those are MTU probes too, not DATA (the probe period starts again at a new handshake) — the keyed
    analysis's two probes, and the same DATA counts."""
    (k,) = doc(NAME)["sessions"]
    (flow,) = next(p for p in k["phases"] if p["phase"] == "dtls")["details"]["flows"]
    probes = {d: sum(1 for m in flow["channel"]["mtu_probes"] if m["direction"] == d) for d in ("c2s",)}
    (s,) = doc(NAME, keys=False)["sessions"]
    (est,) = [f["estimate"] for f in next(p for p in s["phases"] if p["phase"] == "dtls")["details"]["flows"]]
    assert est["frame_classes"]["c2s"]["MTU_PROBE"] == probes["c2s"] == 2
    assert est["frame_classes"]["c2s"]["DATA"] == flow["channel"]["inner_packets"]["c2s"]
