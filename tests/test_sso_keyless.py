"""SAML single sign-on read without keys: the browser's connections beside the client's login (scripted cases with
real openconnect and the lab's browser, samples/scripted/saml-*)."""
from __future__ import annotations

from analyzer.analyze import analyze_paths, load_keys
from analyzer.phases.grouping import _keyless_tunnel

from .helpers import doc, sample


def _pipeline(name: str):
    store, info = load_keys([], [])
    pipes = []
    analyze_paths([sample(name) / "capture.pcapng"], store, info, on_pipeline=pipes.append)
    return pipes[0]


def test_a_tls13_handshake_is_no_tunnel_frame():
    """TLS 1.3 hides EncryptedExtensions in an application-data record: the browser's (no ALPN asked, 27 bytes) has a
    CSTP DISCONNECT's size. Without keys it was read as the tunnel's end, the browser's connection as the tunnel and
    the client's own login connection as 'another program before the client connected'."""
    pipe = _pipeline("scripted/saml-browser-stalled")
    browser = next(c for c in pipe.tcp.values() if c.index == 1)
    assert browser.record_sizes["s2c"][0][1] == 27  # the EncryptedExtensions record, as tshark shows it
    assert not _keyless_tunnel(browser)
    est = browser.cstp_estimate
    assert est.dirs["s2c"].disconnect == 0 and est.dirs["c2s"].disconnect == 0
    # the gateway's flight and the client's Finished are not counted: 3 answers (2 tickets, the page), 1 request
    assert (est.dirs["c2s"].records, est.dirs["s2c"].records) == (1, 3)
    assert [w[3] for w in browser.estimate_withheld] == [27, 27, 27, 27, 29]
    s = doc("scripted/saml-browser-stalled", keys=False, gateway="198.18.0.1")["sessions"]
    assert len(s) == 1
    assert [c["connection"] for c in s[0]["connections"]][:1] == ["tcp.stream 0"]
    assert not any("another program" in n for n in s[0].get("notes", []))
