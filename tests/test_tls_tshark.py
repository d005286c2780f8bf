"""Differential tests of TLSConnection against tshark on the committed lab samples (openconnect <-> ocserv).

* TCP payload bytes come from tshark itself (``-z follow,tcp,raw``), so only the TLS layer is compared.
* The decrypted application data of every TCP stream must equal tshark's ``-z follow,tls,raw``.
* The openconnect DTLS PSK (RFC 5705 / RFC 8446 §7.5 exporter, label EXPORTER-openconnect-psk) derived by
  TLSConnection must let tshark decrypt the PSK-NEGOTIATE DTLS records (``-o dtls.psk:``); a wrong PSK must not.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dissectors.keylog import KeyStore, load_rsa_private_key
from dissectors.tls import ApplicationData, DecryptionStatus, RecordError, SessionCache, TLSConnection

from .conftest import HANDSHAKE_ONLY, facts, sample_dirs
from .oracle import BASE, tshark_follow_tls

pytestmark = pytest.mark.tshark

PSK_LABEL = b"EXPORTER-openconnect-psk"
SAMPLES = [d for d in sample_dirs() if (d / "capture.pcapng").exists() and (d / "keys.log").exists()]


def _tcp_streams(capture: Path) -> list[int]:
    out = subprocess.run([*BASE, "-r", str(capture), "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T",
                          "fields", "-e", "tcp.stream"], capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def _follow_tcp(capture: Path, stream: int) -> list[tuple[str, bytes]]:
    """TCP payload chunks of one stream in capture order, with direction (node 0 = the SYN sender)."""
    out = subprocess.run([*BASE, "-r", str(capture), "-q", "-z", f"follow,tcp,raw,{stream}"], capture_output=True,
                         text=True, check=True).stdout
    chunks: list[tuple[str, bytes]] = []
    in_body = False
    for line in out.splitlines():
        if line.startswith("Node 1:"):
            in_body = True
            continue
        if not in_body or line.startswith("=") or not line.strip():
            continue
        chunks.append(("s2c" if line.startswith("\t") else "c2s", bytes.fromhex(line.strip())))
    return chunks


def _after_proxy(chunks: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The chunks of a stream through an HTTP proxy from the first of each direction that starts a TLS record on:
    the CONNECT requests, the proxy's answers (and a 407's body) travel in segments of their own before."""
    started: set[str] = set()
    out = []
    for direction, data in chunks:
        if direction not in started and data[:2] == b"\x16\x03":
            started.add(direction)
        if direction in started:
            out.append((direction, data))
    return out


def _keys(d: Path, rsa_only: bool) -> KeyStore:
    keys = KeyStore()
    if rsa_only:
        keys.add_rsa_private_key(load_rsa_private_key((d / "server-key.pem").read_bytes()))
    else:
        assert keys.add_keylog_text((d / "keys.log").read_text()) == []
    return keys


def _decrypt_streams(d: Path, keys: KeyStore) -> list[tuple[int, TLSConnection, list]]:
    cache = SessionCache()
    out = []
    for stream in _tcp_streams(d / "capture.pcapng"):
        chunks = _follow_tcp(d / "capture.pcapng", stream)
        if chunks and chunks[0][1][:8] == b"CONNECT ":  # through an HTTP proxy: TLS after its exchange in the clear
            chunks = _after_proxy(chunks)
        if chunks and chunks[0][1][:1] != b"\x16":  # not TLS (mixed-traffic's plain HTTP on port 80)
            continue
        conn = TLSConnection(keys, session_cache=cache)
        events = []
        for i, (direction, data) in enumerate(chunks):
            events += conn.feed(direction, data, float(i), i + 1)
        events += conn.close()
        out.append((stream, conn, events))
    return out


def _data(events, direction: str) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ApplicationData) and e.direction == direction)


def _cases():
    cases = [pytest.param(d, False, id=d.name) for d in SAMPLES if d.name not in HANDSHAKE_ONLY]
    cases += [pytest.param(d, True, id=f"{d.name}-rsa-key-only") for d in SAMPLES
              if (d / "server-key.pem").exists() and facts(d.name).get("tls_version") == "TLS1.2"
              and all("(RSA)" in t["ciphersuite"] for t in facts(d.name).get("tls_sessions") or [{"ciphersuite": ""}])]
    return cases


@pytest.mark.parametrize("sample_dir,rsa_only", _cases())
def test_application_data_matches_tshark(tshark, sample_dir, rsa_only):
    cap = sample_dir / "capture.pcapng"
    results = _decrypt_streams(sample_dir, _keys(sample_dir, rsa_only))
    assert results
    decrypted_any = False
    for stream, conn, events in results:
        assert not [e for e in events if isinstance(e, RecordError)], (stream, events)
        assert not [e for e in events if isinstance(e, DecryptionStatus) and not e.ok], stream
        kw = {"rsa_key": sample_dir / "server-key.pem"} if rsa_only else {"keylog": sample_dir / "keys.log"}
        want_c, want_s = tshark_follow_tls(cap, stream, decode_as=facts(sample_dir.name).get("tshark_decode_as", ()),
                                           **kw)
        if not (want_c or want_s):
            # a connection that never carried application data (e.g. a reconnect attempt during a traffic block)
            assert not _data(events, "c2s") and not _data(events, "s2c"), stream
            continue
        decrypted_any = True
        for direction, want in (("c2s", want_c), ("s2c", want_s)):
            got = _data(events, direction)
            if got != want:
                # tshark 4.0's follow,tls sometimes drops a whole record (seen on client-cert-request, checked
                # by hand against tshark -x, which shows the record decrypted): then tshark's bytes must be ours
                # with whole pieces left out, never different bytes
                assert len(got) > len(want) and _is_subsequence(want, got), (stream, direction)
        assert conn.cipher_suite is not None and conn.sni
    assert decrypted_any, "tshark decrypted nothing in this sample: oracle broken?"


def _is_subsequence(small: bytes, big: bytes) -> bool:
    it = iter(big)
    return all(b in it for b in small)


@pytest.mark.parametrize("sample_dir", [d for d in SAMPLES if facts(d.name).get("dtls_mode") == "psk-negotiate"
                                        and facts(d.name).get("dtls_established")], ids=lambda d: d.name)
def test_dtls_psk_from_exporter_decrypts_in_tshark(tshark, sample_dir):
    results = _decrypt_streams(sample_dir, _keys(sample_dir, False))
    tunnel = [conn for _, conn, events in results if b"CONNECT /CSCOSSLC/tunnel " in _data(events, "c2s")]
    assert tunnel, "no TLS connection carries the CSTP CONNECT"
    psk = tunnel[-1].export_keying_material(PSK_LABEL, None, 32)
    assert psk is not None and len(psk) == 32

    def decrypted_records(key: bytes) -> int:
        out = subprocess.run([*BASE, "-r", str(sample_dir / "capture.pcapng"), "-o", f"dtls.psk:{key.hex()}",
                              "-Y", "dtls.record.content_type == 23", "-x"], capture_output=True, text=True,
                             check=True).stdout
        return out.count("Decrypted DTLS")

    assert decrypted_records(psk) > 0
    assert decrypted_records(bytes([psk[0] ^ 1]) + psk[1:]) == 0  # negative control
