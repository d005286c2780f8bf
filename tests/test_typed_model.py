"""The typed session model (analyzer/phases/) gives the very JSON document the untyped one gave.

Issue #11 item 2 replaced the phase `details` dicts by dataclasses; the JSON document is a public contract, so
every sample's document — with and without the sample's key log, secrets shown and redacted — must be the same,
byte for byte, as the one the code of `BASE` (the last commit before the typed model) writes. The "before"
documents are made by that commit's own code, extracted from git into a temporary directory (nothing is
committed); `ACFLOW_JSON_BEFORE=DIR` uses documents made earlier instead (`python tests/json_snapshot.py DIR`
run on the old code).

This test pins the document as it was at `BASE`: later changes may add keys (the contract allows additions), but
every key and value `BASE` wrote must still be there, unchanged.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from analyzer.phases.record import UNSET, Record

from . import json_snapshot

ROOT = Path(__file__).resolve().parent.parent
BASE = "6a80b4639dde550bc9895d35597716a7925769ff"  # issue #12 committed; untyped details


def _before(tmp: Path) -> Path:
    given = os.environ.get("ACFLOW_JSON_BEFORE")
    if given:
        return Path(given)
    if shutil.which("git") is None:
        pytest.skip("git is needed to extract the code of the commit before the typed model")
    src = tmp / "src"
    src.mkdir()
    archive = tmp / "base.tar"
    r = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), BASE, "analyzer", "dissectors",
                        "replay"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"commit {BASE[:10]} not in this checkout (shallow clone?): {r.stderr.strip()[:200]}")
    with tarfile.open(archive) as tf:
        tf.extractall(src, filter="data")
    out = tmp / "before"
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, str(ROOT / "tests" / "json_snapshot.py"), str(out), "samples"], cwd=ROOT,
                   env=env, check=True, timeout=1200)
    return out


def test_every_sample_document_is_unchanged(tmp_path):
    before = _before(tmp_path)
    after = tmp_path / "after"
    subprocess.run([sys.executable, str(ROOT / "tests" / "json_snapshot.py"), str(after), "samples"], cwd=ROOT,
                   check=True, timeout=1200)
    names = sorted(p.name for p in before.iterdir())
    assert names == sorted(p.name for p in after.iterdir())
    assert len(names) == 4 * len(list((ROOT / "samples").rglob("capture.pcapng")))
    # the contract: fields are only added, never renamed, removed or changed (docs/json-schema.md) — so every
    # key and value of the old document is in the new one, which may hold more
    changed = [n for n in names if _missing(*_newly_recognised(n, json.loads((before / n).read_text()),
                                                               json.loads((after / n).read_text())))]
    assert not changed, f"{len(changed)} document(s) lost or changed what commit {BASE[:10]} wrote: {changed[:8]}"


#: sentences for people: their wording may improve (ids, statuses, numbers and names may not change); and the
#: findings, which are the rules' behaviour, not the session model's (rules get fixed: test_findings.py pins them,
#: test_json_schema.py their format)
PROSE = {"message", "remedy", "summary", "findings"}
#: lists of reasons, to which a new kind of evidence may add items: every old item must still be there, in order
GROWING = {"evidence"}


def _missing(old, new, path="$") -> str | None:
    """Where ``new`` lacks or changes something of ``old`` (None when old ⊆ new: added keys are allowed)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return path
        for k, v in old.items():
            if k not in new:
                return f"{path}.{k}"
            if k in PROSE:
                continue
            if k in GROWING and isinstance(v, list) and isinstance(new[k], list):
                where = _lost_item(v, new[k], f"{path}.{k}")
            else:
                where = _missing(v, new[k], f"{path}.{k}")
            if where:
                return where
        return None
    if isinstance(old, list):
        if not isinstance(new, list) or len(old) != len(new):
            return path
        return next((w for i, (a, b) in enumerate(zip(old, new)) if (w := _missing(a, b, f"{path}[{i}]"))), None)
    return None if old == new or _username_shown(old, new) else path


def _lost_item(old: list, new: list, path: str) -> str | None:
    """Where the items of ``old`` are not found in ``new`` in the same order (items added anywhere are allowed)."""
    rest = iter(enumerate(new))
    for i, item in enumerate(old):
        if not any(_missing(item, b) is None for _j, b in rest):
            return f"{path}[{i}]"
    return None


_USERNAME = re.compile(r"(<username>)[^<]*(</username>)")


def _username_shown(old, new) -> bool:
    """Issue #17: a username is not a secret, so the redacted auth-reply XML shows it where BASE wrote
    «redacted»; nothing else of the string may differ."""
    return (isinstance(old, str) and isinstance(new, str) and "<username>«redacted»</username>" in old
            and _USERNAME.sub(r"\1«redacted»\2", new) == old)


#: samples cut (lab/cuts.py) to show what `BASE` read wrongly, and where: their sessions are pinned by the tests of
#: the fix instead (the rest of the document is compared)
FIXED_SINCE = {
    "scripted__web-portal-first": "a browser's visit to the web portal before the client read as the session's "
                                  "downloader, login round and TLS handshake: tests/test_portal.py",
    "cut__baseline-snaplen-128": "a snapshot length read as a failed handshake and DTLS ('no ServerHello', '0 "
                                 "ClientHellos unanswered'): tests/test_field_captures.py, CAPTURE_TRUNCATED",
    "cut__baseline-udp-only": "a capture filtered to UDP read as 'No tunnel', phases 1-5 absent: "
                              "tests/test_field_captures.py, not-captured",
    "cut__keepalive-dpd-mid-tunnel": "a CSTP tunnel over TLS seen mid-tunnel read as no session: "
                                     "tests/test_field_captures.py, guess_protection",
    "http-proxy": "a session through an HTTP proxy read as no session (the flow starts with CONNECT in the clear): "
                  "tests/test_field_captures.py",
    "http-proxy-auth": "the same, the proxy asking for credentials first (407): tests/test_field_captures.py",
    "scripted__saml-external-browser": "a completed SAML single sign-on read as a failed downloader (the browser's "
                                       "GET of /+CSCOE+/saml/sp/login answered 302): tests/test_sso.py",
    "scripted__saml-browser-stalled": "a SAML sign-in that never came back read as 'user-auth absent, no CONNECT': "
                                      "tests/test_sso.py, AUTH_SSO_INCOMPLETE",
    "scripted__saml-no-browser": "the same for a client without a browser for the mode asked: tests/test_sso.py",
    "scripted__saml-idp": "a SAML sign-in through an identity provider: the browser's requests (its POST of the SAML "
                          "response to the assertion consumer service too) read as the downloader and a login round: "
                          "tests/test_sso_keyless.py",
    "scripted__saml-idp-unknown": "a SAML sign-in whose browser could not reach the identity provider read as "
                                  "'user-auth absent, no CONNECT': tests/test_sso_keyless.py, AUTH_SSO_INCOMPLETE",
    "scripted__saml-idp-unreachable": "the same, the identity provider's address not answering: "
                                      "tests/test_sso_keyless.py",
    "scripted__saml-idp-untrusted": "the same, its certificate refused by the browser: tests/test_sso_keyless.py",
    "client-roams": "a client that moved to another address read as two sessions, the first with the gateway's "
                    "packets to the old address as loss: tests/test_roaming.py",
    "scripted__load-balancer-redirect": "a load-balancing director's redirect read as a failed session of its own "
                                        "('group-selection failed'): tests/test_redirect.py",
    "scripted__hostscan": "a host scan's requests read as the downloader: tests/test_hostscan.py",
    "scripted__hostscan-stalled": "a host scan never evaluated read as no login: tests/test_hostscan.py",
    "vxlan-mirror": "a capture of packets inside VXLAN (a cloud's traffic mirror) read as no session: "
                    "tests/test_encapsulation.py",
    "dpd-loss": "the client's reconnect attempts whose SYNs got no answer left no trace (TCP connections without "
                "data were dropped): tests/test_failed_connects.py, TCP_CONNECT_FAILED",
    "dpd-late-answer": "the same, its first reconnect attempt timed out: tests/test_failed_connects.py",
    "middlebox-reset": "a reset forged by a device in between read as the gateway's own: "
                       "tests/test_middlebox_reset.py, TCP_RESET_INJECTED",
    "two-users-one-address": "two users behind one address logging in at the same moment read without keys as one "
                             "session with a false RECONNECT: tests/test_shared_address.py",
    "scripted__auth-client-gives-up": "a login whose credentials were never answered (the client gave up waiting) "
                                      "read as rejected (result failure, 'no answer', AUTH_FAILED): "
                                      "tests/test_auth_slow.py, AUTH_NO_ANSWER",
    "both-sides-reset": "a reconnect whose first SYN a firewall reset, read with an MTU_MISMATCH for a grant above the "
                        "request (dropped in issue #17) and without its TCP_CONNECT_FAILED (session 12); without keys, "
                        "the client's keepalives before the reset read as DPD requests to a dead gateway "
                        "(keyless.MIN_DPD_SILENCE): tests/test_both_sides.py",
}


def _newly_recognised(name: str, old: dict, new: dict) -> tuple[dict, dict]:
    """Keyless reading (issue #13) recognises sessions that `BASE` left in "other traffic" (a tunnel connection
    ending with a CSTP DISCONNECT-sized record, analyzer/evidence.py `cstp-disconnect-shape`): for a document
    without keys in which `BASE` found no session, the new sessions and the other-traffic summary they left are
    not compared (everything else is). A session `BASE` found keeps being compared in full."""
    if name.split("--", 1)[0] in FIXED_SINCE or "--keys-0--" in name and not old.get("sessions") and new.get(
            "sessions"):
        old = {k: v for k, v in old.items() if k not in ("sessions", "other_traffic")}
        new = {k: v for k, v in new.items() if k not in ("sessions", "other_traffic")}
    return old, new


def test_document_comparison_allows_only_additions():
    assert _missing({"a": 1, "b": [{"c": 2}]}, {"a": 1, "b": [{"c": 2, "d": 3}], "e": 4}) is None
    assert _missing({"a": 1}, {"a": 2}) == "$.a"
    assert _missing({"b": [{"c": 2}]}, {"b": [{}]}) == "$.b[0].c"
    assert _missing({"b": [1, 2]}, {"b": [1]}) == "$.b"
    assert _missing({"evidence": [{"c": 1}, {"c": 2}]}, {"evidence": [{"c": 0}, {"c": 1}, {"c": 2}]}) is None
    assert _missing({"evidence": [{"c": 1}, {"c": 2}]}, {"evidence": [{"c": 2}, {"c": 1}]}) == "$.evidence[1]"
    assert _missing({"evidence": [{"c": 1}]}, {"evidence": [{"c": 3}]}) == "$.evidence[0]"
    assert _missing({"message": "old words"}, {"message": "new words"}) is None
    xml = "<auth><username>{}</username><password>«redacted»</password></auth>"
    assert _missing({"xml": xml.format("«redacted»")}, {"xml": xml.format("alice")}) is None
    assert _missing({"xml": xml.format("«redacted»")}, {"xml": xml.format("alice").replace("«redacted»", "pw")})


def test_snapshot_variants_cover_keys_and_secrets():
    v = list(json_snapshot.variants(ROOT / "samples"))
    assert {(k, s) for _, _, k, s in v} == {(True, True), (True, False), (False, True), (False, False)}


def test_unset_fields_are_left_out_and_secrets_redacted():
    from analyzer.model import Redactable, Secret
    from analyzer.phases.downloader import DownloaderGet

    g = DownloaderGet(time=1.0, frame=2, connection="tcp.stream 0", target="/CACHE/x", cookie=Secret("abc"))
    assert isinstance(g, Record)
    assert g.to_json() == {"time": 1.0, "frame": 2, "connection": "tcp.stream 0", "target": "/CACHE/x",
                           "cookie": "«redacted»"}
    assert g.to_json(show_secrets=True)["cookie"] == "abc"
    g.status = 200
    assert list(g.to_json())[-1] == "status" and g.size is UNSET and not g.size
    r = Redactable([["Cookie", "webvpn=abc"]], [["Cookie", "webvpn=«redacted»"]])
    from analyzer.phases.group_selection import InitPost

    p = InitPost(time=1.0, frame=1, target="/", group_select=None, aggregate_auth_version="2", group_access=None,
                 client_version=None, device_id=None, headers=r)
    assert p.to_json()["headers"] == [["Cookie", "webvpn=«redacted»"]]
