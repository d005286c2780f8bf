"""KEYS_MISSING says why the key material given did not help: a key log for other sessions, an RSA key that is
not the gateway certificate's (issue #17), instead of the generic "supply keys" advice."""
from __future__ import annotations

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import sample
from .oracle import tshark_fields


def keys_missing(capture, keylogs=(), rsa_keys=()) -> dict:
    keys, info = load_keys(list(keylogs), list(rsa_keys))
    doc = to_document(analyze_paths([capture], keys, info), version=__version__)
    (s,) = doc["sessions"]
    (f,) = [f for f in s["findings"] if f["id"] == "KEYS_MISSING"]
    return f


def test_a_key_log_of_other_sessions_is_named_as_such(tshark):
    d = sample("baseline")
    other = sample("reconnect") / "keys.log"
    n = sum(1 for line in other.read_text().splitlines() if line.strip() and not line.startswith("#"))
    f = keys_missing(d / "capture.pcapng", keylogs=[other])
    # the session's ClientHello random, per tshark
    ((random, frame),) = tshark_fields(d / "capture.pcapng", ["tls.handshake.random", "frame.number"],
                                       "tls.handshake.type == 1")
    want = f"the key log has {n} entries, none for this session's ClientHello random {random.replace(':', '')} " \
           f"(frame {frame})"
    assert want.lower() in f["message"].lower()
    assert "written during this connection" not in f["remedy"] and "the one given is for other TLS sessions" \
        in f["remedy"]
    assert f["evidence"]["keylog_entries"] == n and f["evidence"]["keylog_has_client_random"] is False
    # the right key log: nothing missing
    keys, info = load_keys([d / "keys.log"], [])
    doc = to_document(analyze_paths([d / "capture.pcapng"], keys, info), version=__version__)
    assert not [f for s in doc["sessions"] for f in s["findings"] if f["id"] == "KEYS_MISSING"]


def test_an_rsa_key_of_another_certificate_is_named_as_such(tshark):
    d = sample("tls12-rsa")
    wrong = sample("baseline") / "server-key.pem"  # a real RSA key, of another lab gateway
    f = keys_missing(d / "capture.pcapng", rsa_keys=[wrong])
    ((cert_frame,),) = tshark_fields(d / "capture.pcapng", ["frame.number"], "tls.handshake.type == 11")
    assert f"The RSA key {wrong} does not match the certificate in frame {cert_frame}" in f["message"]
    assert f"private key of the certificate the gateway sent in frame {cert_frame}" in f["remedy"]
    assert f["evidence"]["rsa_key_matches_certificate"] is False
    assert f["evidence"]["certificate_frame"] == int(cert_frame)
    # no key at all: the generic advice, no claim about a key that was not given
    f = keys_missing(d / "capture.pcapng")
    assert "does not match" not in f["message"] and "entries" not in f["message"]
    assert "--rsa-key" in f["remedy"]
