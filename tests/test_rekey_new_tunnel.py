"""A gateway that rekeys with X-CSTP-Rekey-Method new-tunnel (the ASA's way; ocserv rekey-method = new-tunnel, lab
scenario rekey-new-tunnel, real ocserv and openconnect): at each rekey time the client drops its TLS connection and
sets the tunnel up again with its cookie ('CSTP rekey due' in openconnect's log). A scheduled event, not a lost
connection.

Before: 'DEGRADED Tunnel dropped at +20.7 s and came back … look at what ended the first connection (a reset, loss
on the path)', with keys and without."""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import render_json
from analyzer.rules import reconnect

from .conftest import SAMPLES, sample


@cache
def _doc(cap: str, keyed: bool) -> dict:
    p = Path(cap)
    k, info = load_keys([p.parent / "keys.log"] if keyed else [], [])
    return json.loads(render_json(analyze_paths([p], k, info), version=__version__))


def _rekeys_logged(name: str) -> list[float]:
    """When openconnect logged that a rekey was due (its client.log)."""
    return [float(m[1]) for m in re.finditer(r"^([\d.]+)\tCSTP rekey due$", (sample(name) / "client.log").read_text(),
                                              re.M)]


@pytest.mark.parametrize("keyed", [True, False])
def test_a_new_tunnel_rekey_is_no_dropped_tunnel(keyed):
    due = _rekeys_logged("rekey-new-tunnel")
    assert len(due) >= 2
    [s] = _doc(str(sample("rekey-new-tunnel") / "capture.pcapng"), keyed)["sessions"]
    rc = [f for f in s["findings"] if f["id"] == "RECONNECT"]
    assert len(rc) == len(due) and all(f["evidence"]["rekey"] is True for f in rc)
    for f, t in zip(rc, due):  # each one where openconnect's rekey came due (its new connection follows at once)
        assert 0 <= f["time"] - t < 0.5
    assert s["verdict"]["outcome"] == ("healthy" if keyed else "inconclusive")
    assert "dropped" not in s["verdict"]["text"]
    if keyed:
        assert {f["evidence"]["rekey_time"] for f in rc} == {20}
        assert "at the rekey time the gateway announced there (X-CSTP-Rekey-Time 20 s" in rc[0]["message"]
    else:
        assert rc[0]["inferred"] and "what a rekey the gateway asks for" in rc[0]["message"]


def _captures():
    for cap in SAMPLES.rglob("capture.pcapng"):
        yield cap.parent.relative_to(SAMPLES).as_posix()
    for cap in SAMPLES.rglob("gateway-side.pcapng"):
        yield cap.parent.relative_to(SAMPLES).as_posix() + "#gateway-side"


@pytest.mark.parametrize("name", sorted(_captures()))
def test_only_the_rekey_sample_has_rekeys(name):
    """Every other reconnect of the samples — a reset, a dead peer, a sleep (whose client closes the dead connection
    and gets a reset back), a move — stays a reconnect, with keys and without."""
    base, _, which = name.partition("#")
    cap = SAMPLES / base / ("gateway-side.pcapng" if which else "capture.pcapng")
    for keyed in (True, False):
        if keyed and not (cap.parent / "keys.log").exists():
            continue
        got = [f for s in _doc(str(cap), keyed)["sessions"] for f in s["findings"]
               if f["id"] == "RECONNECT" and f["evidence"].get("rekey")]
        assert bool(got) == (base == "rekey-new-tunnel"), (keyed, got)


def _exchange(t: float, method: str | None = "new-tunnel", rekey: int | None = 20, address: str = "198.19.0.50"):
    p = SimpleNamespace(rekey_method=method, rekey_time=rekey, address=address)
    return SimpleNamespace(time=t, response_time=t + 0.01, parameters=p)


@pytest.mark.parametrize("after, method, address, expect", [
    (20.5, "new-tunnel", "198.19.0.50", 20),
    (20.5, "ssl", "198.19.0.50", None),  # keys renewed in place: a new connection then is no rekey
    (20.5, None, "198.19.0.50", None),
    (20.5, "new-tunnel", "198.19.0.51", None),  # another address: not the same tunnel set up again
    (20 + reconnect.REKEY_LATE + 1, "new-tunnel", "198.19.0.50", None),
    (20 - reconnect.REKEY_EARLY - 1, "new-tunnel", "198.19.0.50", None),
])
def test_rekey_bounds(after, method, address, expect):
    prev = _exchange(100.0, method)
    cur = _exchange(100.01 + after, address=address)
    assert reconnect._rekey(prev, cur) == expect
