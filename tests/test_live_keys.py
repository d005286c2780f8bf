"""Keys that arrive late (live mode): records whose key the key log does not hold yet are parked by the TLS layer
(dissectors/tls/connection.py KeyWait) and decrypted when the key lines come; DTLS flows hold their datagrams
meanwhile. On the lab's real captures (TLS 1.3 + DTLS PSK, TLS 1.2 + legacy DTLS, TLS 1.2 RSA), the result with the
key log given late equals the one with the key log given first."""
from __future__ import annotations

import pytest

from analyzer import __version__
from analyzer.capture import read_capture_batches
from analyzer.driver import Analyzer
from analyzer.report.json_report import to_document
from dissectors.keylog import KeyStore
from dissectors.pcapfile import Frame
from dissectors.tls.connection import KeyWait

from .conftest import sample
from .helpers import doc


def _events(name: str) -> list:
    return [ev for batch in read_capture_batches(sample(name) / "capture.pcapng") for ev in batch]


def _late(name: str, at: float, limit: int = 32 << 20):
    """Analyse sample ``name`` with its key log given after the fraction ``at`` of its frames."""
    evs = _events(name)
    frames = [i for i, ev in enumerate(evs) if type(ev) is Frame]
    cut = frames[min(int(len(frames) * at), len(frames) - 1)] if at < 1 else len(evs)
    an = Analyzer(KeyStore(), key_wait=KeyWait(limit))
    an.start_capture(str(sample(name) / "capture.pcapng"))
    an.feed_events(evs[:cut])
    waiting = [c for c in an.pipeline.tcp.values() if c.tls.waiting_for_keys]
    n, errors = an.add_keylog((sample(name) / "keys.log").read_text())
    assert n > 0 and not errors
    assert not any(c.tls.waiting_for_keys for c in an.pipeline.tcp.values())
    an.feed_events(evs[cut:])
    return to_document(an.finish(), version=__version__, show_secrets=True), waiting, an


@pytest.mark.parametrize("name", ["baseline", "legacy-dtls", "tls12-rsa", "reconnect", "mixed-traffic"])
def test_late_keys_decrypt_everything(name):
    """The key log given after every 8th frame (before the handshake, during it, mid-tunnel, at the end)."""
    want = doc(name)
    n = sum(1 for ev in _events(name) if type(ev) is Frame)
    waited = 0
    for k in range(0, n + 8, 8):
        got, waiting, _ = _late(name, min(k / n, 1.0))
        waited += bool(waiting)
        assert got["sessions"] == want["sessions"], k
        assert got["other_traffic"] == want["other_traffic"], k
    assert waited, "the TLS connections waited for their keys"
    assert all(p["status"] != "undecrypted" for s in want["sessions"] for p in s["phases"])


def test_snapshot_while_waiting_then_decrypted():
    evs = _events("baseline")
    an = Analyzer(KeyStore(), key_wait=KeyWait())
    an.start_capture(str(sample("baseline") / "capture.pcapng"))
    an.feed_events(evs)
    snap = an.snapshot()
    # nothing decrypted yet: the connection waits (its records parked), the DTLS datagrams are held
    assert [c.client_hello.frame for c in an.pipeline.tcp.values() if c.tls.waiting_for_keys] == [8]
    assert an.pipeline.held_datagrams > 0
    assert all(p.status != "ok" for s in snap.sessions for p in s.phases[1:])
    an.add_keylog((sample("baseline") / "keys.log").read_text())
    snap = an.snapshot()
    want = [p["status"] for p in doc("baseline")["sessions"][0]["phases"]]
    assert [p.status for p in snap.sessions[0].phases] == want
    # the snapshot did not end the analysis: the final result is the same
    assert to_document(an.finish(), version=__version__, show_secrets=True)["sessions"] == doc("baseline")["sessions"]


def test_no_keys_ever_is_the_same_as_without_waiting():
    """Keys that never come: at the end the parked records are reported undecrypted, as without waiting."""
    evs = _events("legacy-dtls")
    an = Analyzer(KeyStore(), key_wait=KeyWait())
    an.start_capture(str(sample("legacy-dtls") / "capture.pcapng"))
    an.feed_events(evs)
    got = to_document(an.finish(), version=__version__, show_secrets=True)
    plain = Analyzer(KeyStore())
    plain.start_capture(str(sample("legacy-dtls") / "capture.pcapng"))
    plain.feed_events(evs)
    want = to_document(plain.finish(), version=__version__, show_secrets=True)
    assert got["sessions"] == want["sessions"]


def test_waiting_is_bounded():
    """Past the KeyWait limit the connection stops waiting: its records are reported without keys (and the key
    log given after that decrypts only what follows), and KEYS_MISSING says why."""
    got, waiting, an = _late("baseline", 1.0, limit=4000)
    assert an.pipeline.key_wait.overflows >= 1
    s = got["sessions"][0]
    km = [f for f in s["findings"] if f["id"] == "KEYS_MISSING"]
    assert km and km[0]["evidence"].get("keys_waited_past_limit") is True, s["findings"]
    assert "limit" in km[0]["message"]
