"""SAML single sign-on read without keys: the browser's connections beside the client's login (scripted cases with
real openconnect and the lab's browser, samples/scripted/saml-*)."""
from __future__ import annotations

import pytest

from analyzer.analyze import analyze_paths, load_keys
from analyzer.phases.grouping import _keyless_tunnel

from .helpers import doc, sample, session
from .oracle import tshark_fields


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


# --- the browser's way to the identity provider (samples/scripted/saml-idp*: real openconnect, the lab's browser,
# a scripted identity provider at idp.acflow.test in the lab's DNS) --------------------------------------------------

#: the case -> the failure on the browser's way (rules/auth_sso.py path_failure) and what the capture shows of it
IDP_FAILURES = {
    "saml-idp-unknown": ("lookup", "udp.port == 53 && dns.flags.rcode == 3"),
    "saml-idp-unreachable": ("connect", "ip.dst == 198.18.0.6 && tcp.flags.syn == 1"),
    "saml-idp-untrusted": ("tls", "ip.dst == 198.18.0.6 && tls.alert_message"),
}


def _sso_finding(d: dict) -> dict:
    (s,) = d["sessions"]
    return next(f for f in s["findings"] if f["id"] == "AUTH_SSO_INCOMPLETE")


def _oracle_frames(name: str, display_filter: str) -> list[int]:
    rows = tshark_fields(sample(f"scripted/{name}") / "capture.pcapng", ["frame.number"], display_filter)
    return [int(r[0]) for r in rows]


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(IDP_FAILURES))
@pytest.mark.parametrize("keys", [True, False])
def test_where_the_browser_could_not_reach_the_identity_provider(name, keys):
    """With keys the gateway's redirect names the identity provider; without, the browser is told by its TLS
    fingerprint and the identity provider by the browser's next lookup and connection. Either way the finding and the
    verdict say where the way failed, on the frames tshark finds for it."""
    kind, flt = IDP_FAILURES[name]
    d = doc(f"scripted/{name}", keys=keys, gateway=None if keys else "198.18.0.1")
    f = _sso_finding(d)
    assert f["severity"] == "error" and f.get("inferred", False) is not keys
    ev = f["evidence"]
    assert ev["sign_in_failure"] == kind and ev["identity_provider_reached"] is False
    assert ev["identity_provider"] == "idp.acflow.test"
    oracle = _oracle_frames(name, flt)
    assert oracle and set(oracle) & set(f["frames"])
    v = d["sessions"][0]["verdict"]
    assert v["outcome"] == "failed" and v["text"].startswith(
        "Login not completed: the browser could not reach the identity provider idp.acflow.test")
    if keys:
        path = next(p for p in d["sessions"][0]["phases"] if p["phase"] == "user-auth")["details"]["sso"]["path"]
    else:
        ua = next(p for p in d["sessions"][0]["phases"] if p["phase"] == "user-auth")
        assert ua["inferred"]["status"] == "failed" and ua["inferred"]["sign_in"]["outcome"] == "gave-up"
        assert ua["inferred"]["sign_in"]["connections"] == ["tcp.stream 1"]  # the browser's, at the gateway
        path = ua["inferred"]["sign_in"]["path"]
        assert path["inferred"] is True
    if kind == "lookup":
        (lk,) = path["lookups"]
        assert lk["name"] == "idp.acflow.test" and lk["answer"] == "NXDOMAIN" and set(oracle) <= set(lk["frames"])
        assert path["connections"] == []
    else:
        assert path["lookups"][0]["addresses"] == ["198.18.0.6"]
        (c,) = path["connections"]
        assert c["server"] == "198.18.0.6:443" and c["name"] == "idp.acflow.test"
        if kind == "connect":
            assert c["outcome"] == "no-answer" and c["frames"] == oracle[:5]
            assert f"no answer to {len(oracle)} SYNs" in c["detail"]
        else:
            assert c["outcome"] == "alert" and "unknown_ca" in c["detail"] and c["frames"] == oracle


def test_a_sign_in_through_an_identity_provider():
    """The completed sign-in: the browser reached the identity provider (two TLS connections, their SNI), and its
    POST of the SAML response to the gateway's assertion consumer service is the browser's, not a login round."""
    s = session("scripted/saml-idp")
    ua = next(p for p in s["phases"] if p["phase"] == "user-auth")
    sso = ua["details"]["sso"]
    assert sso["outcome"] == "token-returned" and sso["identity_provider"] == "idp.acflow.test"
    assert [(b.get("method", "GET"), b["target"].split("?")[0]) for b in sso["browser"]] == [
        ("GET", "/+CSCOE+/saml/sp/login"), ("POST", "/+CSCOE+/saml/sp/acs"), ("GET", "/+CSCOE+/saml_ac_login.html")]
    assert sso["path"]["reached"] is True and "problem" not in sso["path"] or sso["path"]["problem"] is None
    assert [c["outcome"] for c in sso["path"]["connections"]] == ["reached", "reached"]
    assert not any(f["id"] in ("AUTH_MULTI_ROUND", "AUTH_SSO_INCOMPLETE") for f in s["findings"])
    assert [r["type"] for r in ua["details"]["rounds"]] == ["auth-reply"]  # the token's, no browser POST
    # without keys: one session, the browser's connections beside the client's, the identity provider named
    (k,) = doc("scripted/saml-idp", keys=False, gateway="198.18.0.1")["sessions"]
    assert [c["connection"] for c in k["connections"]] == [f"tcp.stream {i}" for i in (0, 1, 4, 5)]
    inf = next(p for p in k["phases"] if p["phase"] == "user-auth")["inferred"]
    assert inf["status"] == "ok" and inf["sign_in"]["outcome"] == "went-on"
    assert inf["sign_in"]["path"]["identity_provider"] == "idp.acflow.test" and inf["sign_in"]["single_sign_on"]
    assert "went on to idp.acflow.test" in inf["basis"]
    dl = next(p for p in k["phases"] if p["phase"] == "downloader")
    assert dl["inferred"]["status"] == "absent"  # the browser's connections are not the downloader's


def test_a_host_scan_is_no_sign_in():
    """The host scan's script (curl: another TLS fingerprint) connects to the gateway while the client waits, as a
    browser would; it goes nowhere else, so no sign-in failure is claimed without keys. The client then asks for the
    wait page every second until the user gives up: HOSTSCAN_INCOMPLETE, inferred, on the very requests the keyed
    analysis reads as the wait page's (and no refused CONNECT, no login rounds)."""
    keyed = session("scripted/hostscan-stalled")
    waits = [r["frame"] for r in next(p for p in keyed["phases"] if p["phase"] == "user-auth")["details"]
             ["host_scan"]["requests"] if "wait" in r["target"]]
    (s,) = doc("scripted/hostscan-stalled", keys=False, gateway="198.18.0.1")["sessions"]
    assert not any(f["id"] == "AUTH_SSO_INCOMPLETE" for f in s["findings"])
    ph = {p["phase"]: p for p in s["phases"]}
    inf = ph["user-auth"]["inferred"]
    si = inf["sign_in"]
    assert not si["single_sign_on"] and si["connections"] == ["tcp.stream 1", "tcp.stream 2"]
    assert inf["status"] == "failed" and si["polls"] == len(waits) and si["poll_frames"] == waits
    assert 0.9 < si["poll_interval"] < 1.1  # openconnect refreshes the wait page after 1 second
    assert ph["cstp-connect"]["inferred"]["status"] == "absent"  # was 'failed': a refused CONNECT, most likely
    assert ph["downloader"]["inferred"]["status"] == "absent"
    (f,) = [f for f in s["findings"] if f["id"] == "HOSTSCAN_INCOMPLETE"]
    assert f["inferred"] is True and f["severity"] == "error" and set(waits[:6]) <= set(f["frames"])
    assert not any(f["id"] == "AUTH_MULTI_ROUND" for f in s["findings"])
    assert s["verdict"]["text"].startswith("Login not completed: the host scan did not finish")
    # the completed host scan: the same polling, then the login went on to a tunnel — no finding
    (ok,) = doc("scripted/hostscan", keys=False)["sessions"]
    assert not any(f["id"] in ("HOSTSCAN_INCOMPLETE", "AUTH_SSO_INCOMPLETE") for f in ok["findings"])
    assert next(p for p in ok["phases"] if p["phase"] == "cstp-connect")["inferred"]["status"] == "ok"


def test_a_host_scan_that_finished_is_read_as_one():
    """Was 'another program connected …: a browser signing in, most likely', and its wait pages counted as login
    rounds: the rounds the keyed analysis reads as the wait page's are the polls; the login rounds are the rest."""
    keyed = session("scripted/hostscan")
    ua = next(p for p in keyed["phases"] if p["phase"] == "user-auth")
    waits = [r["frame"] for r in ua["details"]["host_scan"]["requests"] if "wait" in r["target"]]
    (ok,) = doc("scripted/hostscan", keys=False)["sessions"]
    inf = next(p for p in ok["phases"] if p["phase"] == "user-auth")["inferred"]
    si = inf["sign_in"]
    assert inf["status"] == "ok" and si["polls"] == len(waits) == 3 and si["poll_frames"] == waits
    assert 0.9 < si["poll_interval"] < 1.1 and not si["single_sign_on"]
    assert "host scan (posture assessment) that finished" in inf["basis"] and "browser" not in inf["basis"]
    assert inf["auth_rounds"] == len(inf["rounds"]) - len(waits)
    # a browser's sign-in is still one (no refreshed page after it)
    (sso,) = doc("scripted/saml-idp", keys=False, gateway="198.18.0.1")["sessions"]
    si = next(p for p in sso["phases"] if p["phase"] == "user-auth")["inferred"]["sign_in"]
    assert "polls" not in si and si["single_sign_on"]


def test_a_stalled_sign_in_without_keys():
    """The browser fetched the gateway's sign-in page and stopped (no identity provider in this case): user-auth
    failed after the wait, read without keys; no claim about an identity provider."""
    (s,) = doc("scripted/saml-browser-stalled", keys=False, gateway="198.18.0.1")["sessions"]
    ph = {p["phase"]: p for p in s["phases"]}
    assert ph["group-selection"]["inferred"]["status"] == "ok"
    inf = ph["user-auth"]["inferred"]
    assert inf["status"] == "failed" and inf["sign_in"]["outcome"] == "gave-up"
    assert 7.5 < inf["sign_in"]["waited"] < 9.0  # the user gave up 8 s after the browser opened
    assert not inf["sign_in"]["single_sign_on"] and "path" not in inf["sign_in"]
    assert not any(f["id"] == "AUTH_SSO_INCOMPLETE" for f in s["findings"])


def _client_keys_only(name: str, tmp_path) -> object:
    """The case's key log cut to the client's own TLS secrets (the connection that got the sign-in URL): what an
    engineer has when only the VPN client logged its keys, not the browser."""
    rows = tshark_fields(sample(f"scripted/{name}") / "capture.pcapng", ["tls.handshake.random"],
                         "tls.handshake.type == 1 && tcp.stream == 0")
    rnd = rows[0][0].lower()
    keep = [line for line in (sample(f"scripted/{name}") / "keys.log").read_text().splitlines() if rnd in line.lower()]
    out = tmp_path / "client.keys"
    out.write_text("\n".join(keep) + "\n")
    return out


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(IDP_FAILURES))
def test_only_the_clients_keys(name, tmp_path):
    """Keys for the client but not the browser: the sign-in is read from the client's decrypted login, the browser's
    connections are told by their TLS ClientHello, and its way to the identity provider as without keys — the same
    failure, the verdict naming the identity provider the browser went on to."""
    from analyzer import __version__
    from analyzer.report.json_report import to_document

    store, info = load_keys([_client_keys_only(name, tmp_path)], [])
    d = to_document(analyze_paths([sample(f"scripted/{name}") / "capture.pcapng"], store, info),
                    version=__version__)
    (s,) = d["sessions"]
    sso = next(p for p in s["phases"] if p["phase"] == "user-auth")["details"]["sso"]
    assert sso["browser"] == [] and sso["browser_undecrypted"] == ["tcp.stream 1"]
    assert sso["path"]["identity_provider"] == "idp.acflow.test"
    f = _sso_finding(d)
    assert f["evidence"]["sign_in_failure"] == IDP_FAILURES[name][0] and "inferred" not in f
    assert "The browser reached the gateway (tcp.stream 1" in f["message"]
    assert s["verdict"]["text"].startswith(
        "Login not completed: the browser could not reach the identity provider idp.acflow.test")
