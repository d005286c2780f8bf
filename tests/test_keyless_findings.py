"""Keyed findings given without keys too (session 14), on every committed capture where the keyed analysis gives
them, and nowhere else.

DTLS_NOT_OFFERED: a tunnel that ran over TLS only, read without keys (analyzer/rules/dtls_handshake.py
`_not_offered_inferred`, analyzer/rules/dtls_path.py): the CONNECT answer that would say "no X-DTLS-Port" is
encrypted, but a client that is offered DTLS sends its DTLS ClientHello within a second of it — none at all while
the tunnel ran on means none was offered, most likely. Through an HTTP proxy no DTLS is tried: DTLS_FALLBACK_TLS, as
with keys. Before: nothing was said without keys on the 15 committed captures where the keyed analysis gives
DTLS_NOT_OFFERED (real openconnect against the scripted Cisco-like gateway, and a real ocserv without a UDP port),
and the two HTTP-proxy captures gave no
DTLS_FALLBACK_TLS.

TCP_RETRANSMISSIONS: the TCP counts are facts without keys; only which connection is the tunnel is read from the
records (cstp-connect `inferred.tunnels`). Before: given only with keys (samples dpd-loss, dpd-late-answer)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.evidence import GatewaySpec
from analyzer.report.json_report import to_document

from .conftest import SAMPLES, sample
from .helpers import doc


def _ids(d: dict, fid: str) -> list[dict]:
    return [f for s in d["sessions"] for f in s["findings"] if f["id"] == fid]


def _keyed_samples() -> list[str]:
    return sorted(str(p.parent.relative_to(SAMPLES)) for p in SAMPLES.rglob("facts.json")
                  if (p.parent / "capture.pcapng").exists() and (p.parent / "keys.log").exists())


@pytest.mark.parametrize("name", _keyed_samples())
def test_without_keys_where_and_only_where_the_keyed_analysis_says_so(name):
    keyed, keyless = doc(name), doc(name, keys=False)
    want = _ids(keyed, "DTLS_NOT_OFFERED")
    got = _ids(keyless, "DTLS_NOT_OFFERED")
    # (a session the keyless reading does not recognise — docs/keyless-agreement.md — has no findings to agree on)
    assert bool(got) == (bool(want) and bool(keyless["sessions"]))
    for f in got:
        assert f["inferred"] is True and f["severity"] == "info" and f["evidence"]["tunnel_up_seconds"] >= 2.0
    # the frames it names are the CONNECT round the keyed analysis reads as the CONNECT
    if got:
        (s,) = keyed["sessions"]
        connect = next(p for p in s["phases"] if p["phase"] == "cstp-connect")["details"]["connects"][0]
        assert got[0]["frames"][0] == connect["frame"]


@pytest.mark.parametrize("name", _keyed_samples())
def test_tcp_retransmissions_without_keys_as_with_them(name):
    keyed, keyless = doc(name), doc(name, keys=False)
    want, got = _ids(keyed, "TCP_RETRANSMISSIONS"), _ids(keyless, "TCP_RETRANSMISSIONS")
    assert len(got) == (len(want) if keyless["sessions"] else 0)
    for w, g in zip(want, got):
        assert g["inferred"] is True and g["frames"] == w["frames"] and g["time"] == w["time"]
        assert {k: g["evidence"][k] for k in ("retransmissions", "segments", "dtls_established")} == {
            k: w["evidence"][k] for k in ("retransmissions", "segments", "dtls_established")}


def test_a_real_gateway_without_dtls():
    """ocserv with no udp-port (lab scenario dtls-not-offered): the CONNECT answer has no X-DTLS-Port."""
    keyed, keyless = doc("dtls-not-offered"), doc("dtls-not-offered", keys=False)
    (s,) = keyed["sessions"]
    params = next(p for p in s["phases"] if p["phase"] == "cstp-connect")["details"]["parameters"]
    assert params["dtls_port"] is None and _ids(keyed, "DTLS_NOT_OFFERED")
    (k,) = keyless["sessions"]
    (f,) = _ids(keyless, "DTLS_NOT_OFFERED")
    assert f["inferred"] and f["evidence"]["tunnel_up_seconds"] > 5 and f["evidence"]["udp_in_capture"] is False
    assert "no UDP at all" in f["message"]
    assert k["verdict"]["text"].startswith("No problem seen without keys: TLS handshake ok, tunnel over TLS only")


def test_through_an_http_proxy_the_reason_is_the_proxy():
    for name in ("http-proxy", "http-proxy-auth"):
        keyless = doc(name, keys=False)
        (f,) = _ids(keyless, "DTLS_FALLBACK_TLS")
        assert f["inferred"] is True and f["severity"] == "info" and f["evidence"]["proxy"] == "vpn.acflow.test:443"
        assert _ids(doc(name), "DTLS_FALLBACK_TLS")[0]["severity"] == "info"
        assert not _ids(keyless, "DTLS_NOT_OFFERED")


@pytest.mark.parametrize("after, said", [(1.5, False), (3.0, True)])
def test_a_capture_that_ends_too_soon_after_the_connect_says_nothing(tmp_path, after, said):
    """The same capture cut 1.5 s after the CONNECT answer: a DTLS hello could still have come (cut at 3 s it could
    not). Named by --gateway: a tunnel this short shows none of what recognises a session without it."""
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    d = sample("scripted/profile-missing")
    (f,) = _ids(doc("scripted/profile-missing", keys=False), "DTLS_NOT_OFFERED")
    out = tmp_path / "cut.pcapng"
    subprocess.run([editcap, "-B", _iso(f["time"] + after), str(d / "capture.pcapng"), str(out)], check=True,
                   capture_output=True)
    store, info = load_keys([], [])
    cut = to_document(analyze_paths([out], store, info, gateways=[GatewaySpec.parse("198.18.0.1")]),
                      version=__version__)
    (s,) = cut["sessions"]
    assert next(p for p in s["phases"] if p["phase"] == "cstp-connect")["inferred"]["status"] == "ok"
    assert bool(_ids(cut, "DTLS_NOT_OFFERED")) is said


def _iso(t: float) -> str:
    import datetime  # noqa: PLC0415

    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
