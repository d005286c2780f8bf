"""AUTH_SLOW, AUTH_NO_ANSWER and CONNECT_SLOW on real captures: openconnect against the scripted gateway, which
answers the credentials only after its `delay` (an ASA waiting for its authentication server: a multi-factor push
approved on the phone) — 20 s later (samples/scripted/auth-mfa-slow), or not before the user gives up after 13 s
(samples/scripted/auth-client-gives-up, as AnyConnect before 4.8.02045 gives up after 12 s); and the CONNECT 8 s
late (samples/scripted/connect-slow: an address from a slow DHCP server). The truth is the gateway's own log
(gateway-events.jsonl: when it read the request, when it answered) and the lab's actions."""
from __future__ import annotations

import json

import pytest

from .conftest import every_sample, facts, sample
from .helpers import doc, phase

SLOW, GAVE_UP, CONNECT = "scripted/auth-mfa-slow", "scripted/auth-client-gives-up", "scripted/connect-slow"


def _events(name: str) -> list[dict]:
    return [json.loads(x) for x in (sample(name) / "gateway-events.jsonl").read_text().splitlines() if x.strip()]


def _gateway_times(name: str, step: str = "auth-reply") -> tuple[float, float | None]:
    """When the gateway read the credentials (the request of ``step``), and when it answered them (None: never)."""
    ev = _events(name)
    asked = next(e["t"] for e in ev if e["type"] == "request" and e.get("step") == step)
    answered = next((e["t"] for e in ev if e["type"] == "response" and e.get("step") == step), None)
    return asked, answered


def _finding(d: dict, fid: str) -> dict:
    [s] = d["sessions"]
    return next(x for x in s["findings"] if x["id"] == fid)


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
def test_slow_login(keys):
    """The gateway's 20 s: the finding's wait is the gateway's own (from reading the credentials to answering them),
    warned of (the older client gives up at 12 s); the user connected after a slow login."""
    asked, answered = _gateway_times(SLOW)
    d = doc(SLOW, keys=keys, gateway=None if keys else "198.18.0.1")
    f = _finding(d, "AUTH_SLOW")
    assert f["severity"] == "warning" and f.get("inferred", False) is (not keys)
    assert abs(f["evidence"]["waited"] - (answered - asked)) < 0.5, (f["evidence"], answered - asked)
    assert "4.8.02045" in f["message"] and "multi-factor push" in f["message"]
    v = d["sessions"][0]["verdict"]
    assert v["text"].startswith("Connected after a slow login") and v["findings"] == ["AUTH_SLOW"]
    assert v["outcome"] == "degraded"
    assert not any(x["id"] == "AUTH_NO_ANSWER" for x in d["sessions"][0]["findings"])


def test_slow_login_same_frames_without_keys():
    keyed = _finding(doc(SLOW), "AUTH_SLOW")
    keyless = _finding(doc(SLOW, keys=False, gateway="198.18.0.1"), "AUTH_SLOW")
    assert keyed["frames"] == keyless["frames"]
    assert abs(keyed["evidence"]["waited"] - keyless["evidence"]["waited"]) < 0.01


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
def test_client_gave_up(keys):
    """The user gave up 13 s after starting: the credentials were never answered and the client closed the
    connection — no rejection (no AUTH_FAILED), no tunnel (the unanswered request is not read as a tunnel's first
    packet without keys), the verdict says the login was never answered."""
    asked, answered = _gateway_times(GAVE_UP)
    assert answered is None
    gave_up = next(a["time"] for a in facts(GAVE_UP)["actions"] if a["action"] == "user-gives-up")
    d = doc(GAVE_UP, keys=keys, gateway=None if keys else "198.18.0.1")
    [s] = d["sessions"]
    f = _finding(d, "AUTH_NO_ANSWER")
    assert f["severity"] == "error" and f["evidence"]["ended_by"] == "client"
    assert abs(f["evidence"]["waited"] - (gave_up - asked)) < 0.5, (f["evidence"], gave_up - asked)
    assert "gave up" in f["message"] and "never rejected" in f["message"]
    assert not any(x["id"] in ("AUTH_FAILED", "AUTH_SLOW") for x in s["findings"])
    v = s["verdict"]
    assert v["outcome"] == "failed" and v["findings"] == ["AUTH_NO_ANSWER"]
    assert v["text"].startswith("Login not completed: the gateway never answered it: the client gave up after")
    ua, cx = phase(s, "user-auth"), phase(s, "cstp-connect")
    if keys:
        assert ua["status"] == "failed" and "gave up" in ua["summary"]
        assert ua["details"]["unanswered"]["ended_by"] == "client"
        assert cx["status"] == "absent"
    else:
        assert ua["inferred"]["status"] != "ok" and ua["inferred"]["rounds"][-1]["response_time"] is None
        assert cx["inferred"]["status"] == "absent"


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
def test_slow_connect(keys):
    """The CONNECT answered 8 s late (a slow DHCP server for the address): the gateway's own 8 s, information; the
    session stays healthy (keyed) or unremarkable (keyless)."""
    asked, answered = _gateway_times(CONNECT, "connect")
    d = doc(CONNECT, keys=keys, gateway=None if keys else "198.18.0.1")
    f = _finding(d, "CONNECT_SLOW")
    assert f["severity"] == "info" and f.get("inferred", False) is (not keys)
    assert abs(f["evidence"]["waited"] - (answered - asked)) < 0.5, (f["evidence"], answered - asked)
    assert "DHCP" in f["message"]
    assert "CONNECT_SLOW" not in d["sessions"][0]["verdict"]["findings"]
    assert not any(x["id"] in ("AUTH_SLOW", "AUTH_NO_ANSWER") for x in d["sessions"][0]["findings"])
    if not keys:
        assert f["frames"] == _finding(doc(CONNECT), "CONNECT_SLOW")["frames"]


def test_no_slow_answer_elsewhere():
    """No other sample shows a slow or unanswered login or a slow CONNECT, with keys or without."""
    for name in every_sample():
        if name in (SLOW, GAVE_UP, CONNECT):
            continue
        for keys in (True, False):
            got = doc(name, keys=keys)
            ids = {x["id"] for s in got["sessions"] for x in s["findings"]}
            assert not ids & {"AUTH_SLOW", "AUTH_NO_ANSWER", "CONNECT_SLOW"}, (name, keys)
