"""DTLS dissector on the committed lab samples, with tshark as the differential oracle.

Keys are derived here the way the analyzer will: legacy mode from the CONNECT headers
(X-DTLS-Session-ID + X-DTLS-Master-Secret); PSK-NEGOTIATE from the key log of the CSTP TLS session
(TLS 1.3 EXPORTER_SECRET, or the TLS 1.2 CLIENT_RANDOM master secret) + the hello randoms / suite read
from the capture's TCP ClientHello/ServerHello.  Which TLS session carried the CONNECT is found by trying
each one: exactly one PSK must make both DTLS Finished messages verify.
"""
from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from analyzer.capture import iter_frames
from dissectors.cstp import CSTPType, inner_packet_summary, parse_dtls_payload
from dissectors.dtls import (
    DTLSApplicationData,
    DTLSClientHello,
    DTLSConnection,
    DTLSFinished,
    DTLSKeys,
    DTLSRecordError,
    DTLSServerHello,
    DTLSUndecrypted,
    dtls_mode_from_connect,
    keys_from_connect,
    psk_from_tls12_master_secret,
    psk_from_tls13_exporter_secret,
    wireshark_keylog_line,
    wireshark_options,
    wireshark_psk_hex,
)
from dissectors.dtls.psk import tls13_suite_hash
from dissectors.packet import decode
from dissectors.tls.ciphers import suite_info
from tests.conftest import facts, sample
from tests.oracle import tshark_fields

DECRYPTABLE = ["baseline", "legacy-dtls", "legacy-dtls09", "tls12-rsa", "mtu", "group-select", "downloader"]
ORACLE = ["baseline", "legacy-dtls", "legacy-dtls09", "tls12-rsa", "mtu", "group-select"]


# --- helpers ---------------------------------------------------------------------------------------


def headers(f: dict, which: str) -> dict[str, str]:
    return {k.lower(): v for k, v in f["connects"][0][which]}


def dtls_port(f: dict) -> int:
    return int(headers(f, "response_headers").get("x-dtls-port", "443"))


def udp_datagrams(name: str):
    """(direction, client (addr, port), payload, ts, frame) for the UDP datagrams to/from the gateway's
    DTLS port."""
    f = facts(name)
    gw, port = f["gateway_address"], dtls_port(f)
    for fr in iter_frames(sample(name) / "capture.pcapng"):
        p = decode(fr.linktype, fr.data)
        if p is None or p.proto != 17:
            continue
        if p.dst == gw and p.dport == port:
            yield "c2s", (p.src, p.sport), p.payload, fr.ts, fr.number
        elif p.src == gw and p.sport == port:
            yield "s2c", (p.dst, p.dport), p.payload, fr.ts, fr.number


def tls_hellos(name: str) -> dict[bytes, tuple[bytes, int]]:
    """{client_random: (server_random, cipher_suite)} of the TCP TLS sessions (hello records are the first
    record of the first segment in each direction in these captures)."""
    ch: dict[tuple, bytes] = {}
    sh: dict[tuple, tuple[bytes, int]] = {}
    for fr in iter_frames(sample(name) / "capture.pcapng"):
        p = decode(fr.linktype, fr.data)
        if p is None or p.proto != 6 or len(p.payload) < 46:
            continue
        d = p.payload
        if d[0] != 0x16 or d[1] != 3 or d[5] not in (1, 2):
            continue
        rnd = bytes(d[11:43])
        if d[5] == 1:
            ch[(p.src, p.sport, p.dst, p.dport)] = rnd
        else:
            sid_len = d[43]
            sh[(p.dst, p.dport, p.src, p.sport)] = (rnd, int.from_bytes(d[44 + sid_len:46 + sid_len], "big"))
    return {cr: sh[k] for k, cr in ch.items() if k in sh}


def keylog(name: str) -> dict[str, dict[bytes, bytes]]:
    out: dict[str, dict[bytes, bytes]] = defaultdict(dict)
    for line in (sample(name) / "keys.log").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            out[parts[0]][bytes.fromhex(parts[1])] = bytes.fromhex(parts[2])
    return out


def candidate_keys(name: str) -> list[DTLSKeys]:
    f = facts(name)
    req, resp = f["connects"][0]["request_headers"], f["connects"][0]["response_headers"]
    if dtls_mode_from_connect(resp) == "legacy":
        return [keys_from_connect(req, resp)]
    assert keys_from_connect(req, resp) is None  # PSK mode needs the exporter
    hellos = tls_hellos(name)
    kl = keylog(name)
    psks = []
    for cr, secret in kl.get("EXPORTER_SECRET", {}).items():
        if cr in hellos:
            psks.append(psk_from_tls13_exporter_secret(secret, tls13_suite_hash(hellos[cr][1])))
    for cr, master in kl.get("CLIENT_RANDOM", {}).items():
        if cr in hellos:  # TLS 1.2 sessions (the DTLS session's own line has no TCP hello)
            sr, suite = hellos[cr]
            psks.append(psk_from_tls12_master_secret(master, cr, sr, suite_info(suite).prf_hash))
    return [keys_from_connect(req, resp, psk) for psk in psks]


def run(name: str, keys: DTLSKeys | None):
    conns: dict[tuple, DTLSConnection] = {}
    events = []
    for direction, client, payload, ts, frame in udp_datagrams(name):
        conn = conns.setdefault(client, DTLSConnection(keys))
        events += conn.feed(direction, payload, ts, frame)
    return conns, events


_KEYS_CACHE: dict[str, DTLSKeys] = {}


def sample_keys(name: str) -> DTLSKeys:
    """The keys that make the DTLS handshake's Finished messages verify (exactly one candidate must)."""
    if name not in _KEYS_CACHE:
        good = []
        for keys in candidate_keys(name):
            conns, _ = run(name, keys)
            if conns and all(c.finished_verified == {"c2s": True, "s2c": True} for c in conns.values()):
                good.append(keys)
        assert len(good) == 1, f"{name}: {len(good)} candidate keys verify"
        _KEYS_CACHE[name] = good[0]
    return _KEYS_CACHE[name]


def app_payloads_by_frame(events) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = defaultdict(list)
    for e in events:
        if isinstance(e, DTLSApplicationData):
            out[e.frame].append(e.data)
    return dict(out)


# --- decryption of the real captures ---------------------------------------------------------------


@pytest.mark.parametrize("name", DECRYPTABLE)
def test_sample_decrypts_and_parses_as_vpn_frames(name):
    f = facts(name)
    conns, events = run(name, sample_keys(name))
    assert len(conns) == 1
    conn = next(iter(conns.values()))
    assert conn.handshake_complete
    assert not conn.full_handshake
    assert not [e for e in events if isinstance(e, DTLSUndecrypted | DTLSRecordError)]
    version = {"DTLS1.2": 0xFEFD, "DTLS0.9": 0x0100, "DTLS1.0": 0xFEFF}[f["dtls_version"]]
    assert conn.version == version
    hello = next(e for e in events if isinstance(e, DTLSClientHello))
    resp = headers(f, "response_headers")
    if f["dtls_mode"] == "legacy":
        assert conn.resumed is True
        assert hello.session_id.hex() == resp["x-dtls-session-id"].lower()
    else:
        assert conn.resumed is False
        assert "PSK" in conn.cipher_suite_name
        assert conn.psk_identity == b"psk"
        assert hello.session_id.hex() == resp["x-dtls-app-id"].lower()
    # the cipher in facts, e.g. "(DTLS1.2)-(PSK)-(AES-256-GCM)" / "(DTLS0.9)-(RSA)-(AES-128-CBC)-(SHA1)"
    cipher = f["dtls_ciphersuite"].split(")-(")[2].rstrip(")").replace("-", "_")
    assert cipher in conn.cipher_suite_name

    counts: Counter = Counter()
    for e in events:
        if isinstance(e, DTLSApplicationData):
            parsed = parse_dtls_payload(e.data)
            assert parsed is not None
            ptype, payload = parsed
            assert ptype in (CSTPType.DATA, CSTPType.DPD_REQ, CSTPType.DPD_RESP, CSTPType.KEEPALIVE), ptype
            if ptype == CSTPType.DATA:
                inner = inner_packet_summary(payload)
                assert inner is not None and inner.ip_version in (4, 6)
            counts[(e.direction, ptype)] += 1
    assert counts[("c2s", CSTPType.DATA)] == f["inner_packets"]["client_sent_dtls"]
    assert counts[("s2c", CSTPType.DATA)] == f["inner_packets"]["client_received_dtls"]
    assert counts[("c2s", CSTPType.DPD_REQ)] >= 1  # MTU probe / DPD after the handshake


@pytest.mark.parametrize("name", [n for n in DECRYPTABLE if facts(n)["dtls_mode"] == "psk-negotiate"])
def test_psk_master_secret_matches_gnutls_key_log(name):
    """GnuTLS logs the DTLS session's master secret (CLIENT_RANDOM line): our PSK-derived one matches."""
    conns, _ = run(name, sample_keys(name))
    conn = next(iter(conns.values()))
    assert conn.master_secret == keylog(name)["CLIENT_RANDOM"][conn.client_random]
    # and the key log alone (DTLSKeys.from_keylog) decrypts the same
    _, kl_events = run(name, DTLSKeys.from_keylog(keylog(name)["CLIENT_RANDOM"]))
    _, events = run(name, sample_keys(name))
    assert app_payloads_by_frame(kl_events) == app_payloads_by_frame(events)


def test_tls12_exporter_psk_from_key_log():
    """tls12-rsa: the PSK comes from the TLS 1.2 exporter (TLS master secret from the CLIENT_RANDOM line)."""
    keys = sample_keys("tls12-rsa")
    hellos = tls_hellos("tls12-rsa")
    assert len(hellos) == 1
    (cr, (sr, suite)), = hellos.items()
    assert suite_info(suite).prf_hash == "sha384"  # TLS_RSA_WITH_AES_256_GCM_SHA384
    master = keylog("tls12-rsa")["CLIENT_RANDOM"][cr]
    assert keys.psk_secret == psk_from_tls12_master_secret(master, cr, sr, "sha384")
    assert len(keys.psk_secret) == 32


@pytest.mark.parametrize("name", DECRYPTABLE)
def test_no_keys_then_late_keys_decrypts_backlog(name):
    """The CONNECT carrying the keys may be parsed after the first DTLS datagrams."""
    _, with_keys = run(name, sample_keys(name))
    conns, events = run(name, None)
    conn = next(iter(conns.values()))
    assert conn.handshake_complete  # CCS + encrypted Finished seen both ways
    assert conn.key_error == "no keys"
    undecrypted = [e for e in events if isinstance(e, DTLSUndecrypted)]
    assert undecrypted and all(e.reason == "no keys" for e in undecrypted)
    assert not [e for e in events if isinstance(e, DTLSApplicationData)]
    late = conn.set_keys(sample_keys(name))
    assert conn.backlog_size == 0
    assert app_payloads_by_frame(late) == app_payloads_by_frame(with_keys)
    fins = [e for e in late if isinstance(e, DTLSFinished)]
    assert [f.verified for f in fins] == [True, True]


def test_wrong_keys_give_undecrypted_events():
    wrong = DTLSKeys.psk(b"\x01" * 32)
    conns, events = run("baseline", wrong)
    bad = [e for e in events if isinstance(e, DTLSUndecrypted)]
    assert bad and not [e for e in events if isinstance(e, DTLSApplicationData)]
    assert all("wrong keys" in e.reason for e in bad)
    # correcting the keys afterwards recovers everything
    conn = next(iter(conns.values()))
    late = conn.set_keys(sample_keys("baseline"))
    _, good = run("baseline", sample_keys("baseline"))
    assert app_payloads_by_frame(late) == app_payloads_by_frame(good)


def test_legacy_keys_with_wrong_master_secret():
    f = facts("legacy-dtls")
    resp = headers(f, "response_headers")
    keys = DTLSKeys.legacy(resp["x-dtls-session-id"], b"\x00" * 48)
    conns, events = run("legacy-dtls", keys)
    assert [e for e in events if isinstance(e, DTLSUndecrypted)]
    assert not [e for e in events if isinstance(e, DTLSApplicationData)]
    assert next(iter(conns.values())).resumed is True


def test_dtls_blocked_only_client_hellos():
    f = facts("dtls-blocked")
    conns, events = run("dtls-blocked", None)
    hellos = [e for e in events if isinstance(e, DTLSClientHello)]
    assert len(hellos) == len(f["oracle_tshark"]["dtls_client_hello_times"])
    assert not [e for e in events if isinstance(e, DTLSServerHello)]
    assert not [e for e in events if isinstance(e, DTLSRecordError)]
    assert [round(h.ts, 3) for h in hellos] == [round(t, 3) for t in f["oracle_tshark"]["dtls_client_hello_times"]]
    # each attempt: a first hello then retransmissions (same random, same body)
    firsts = [h for h in hellos if not h.retransmission]
    retrans = [h for h in hellos if h.retransmission]
    assert len(firsts) >= 1 and len(retrans) >= 1
    for h in retrans:
        assert any(p.random == h.random and p.ts < h.ts for p in firsts)
    assert len({h.random for h in hellos}) == len(firsts)
    app_id = headers(f, "response_headers")["x-dtls-app-id"].lower()
    assert all(h.session_id.hex() == app_id for h in hellos)
    for conn in conns.values():
        assert not conn.handshake_complete and conn.version is None


@pytest.mark.parametrize("name", DECRYPTABLE + ["dtls-blocked"])
def test_dtls_mode_from_connect(name):
    f = facts(name)
    mode = dtls_mode_from_connect(f["connects"][0]["response_headers"])
    assert mode == {"legacy": "legacy", "psk-negotiate": "psk"}[f["dtls_mode"]]


def test_keyexport_forms():
    f = facts("legacy-dtls")
    req, resp = headers(f, "request_headers"), headers(f, "response_headers")
    keys = DTLSKeys.legacy(resp["x-dtls-session-id"], req["x-dtls-master-secret"])
    line = wireshark_keylog_line(keys)
    assert line == (f"RSA Session-ID:{resp['x-dtls-session-id'].lower()} "
                    f"Master-Key:{req['x-dtls-master-secret'].lower()}")
    psk = DTLSKeys.psk(bytes(range(32)))
    assert wireshark_psk_hex(psk) == bytes(range(32)).hex()
    assert wireshark_options(psk) == ["-o", f"dtls.psk:{bytes(range(32)).hex()}"]
    with pytest.raises(ValueError):
        wireshark_psk_hex(keys)
    with pytest.raises(ValueError):
        wireshark_keylog_line(psk)
    assert "master_secret" not in repr(keys) and req["x-dtls-master-secret"].lower() not in repr(keys).lower()


# --- tshark as the oracle --------------------------------------------------------------------------


def tshark_app_data(name: str, keys: DTLSKeys, tmp: Path) -> dict[int, list[bytes]]:
    capture = sample(name) / "capture.pcapng"
    if keys.is_legacy:
        keyfile = tmp / "dtls.keys"
        keyfile.write_text(wireshark_keylog_line(keys) + "\n")
        rows = tshark_fields(capture, ["frame.number", "data.data"], "dtls", keylog=keyfile)
    else:
        rows = tshark_fields(capture, ["frame.number", "data.data"], "dtls", extra=wireshark_options(keys))
    out: dict[int, list[bytes]] = {}
    for row in rows:
        if len(row) > 1 and row[1]:
            out[int(row[0])] = [bytes.fromhex(x) for x in row[1].split("|")]
    return out


@pytest.mark.tshark
@pytest.mark.parametrize("name", ORACLE)
def test_decrypted_payloads_match_tshark(name, tshark):
    keys = sample_keys(name)
    _, events = run(name, keys)
    ours = app_payloads_by_frame(events)
    with tempfile.TemporaryDirectory() as tmp:
        theirs = tshark_app_data(name, keys, Path(tmp))
    assert theirs, "tshark decrypted nothing"
    assert ours == theirs
    directions = {e.direction for e in events if isinstance(e, DTLSApplicationData)}
    assert directions == {"c2s", "s2c"}
