"""Shared test fixtures: the lab samples committed under samples/ and the tshark oracle."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


#: lab samples where the client never got a TCP connection to the gateway (its SYNs dropped, reset, rejected by
#: ICMP): no TLS at all (tests/test_failed_connects.py)
NEVER_CONNECTED = frozenset({"gateway-unreachable", "gateway-refused", "gateway-filtered", "return-path-blocked"})
#: lab samples where the client could not resolve the gateway's name: DNS only (tests/test_dns_lookups.py)
NEVER_RESOLVED = frozenset({"gateway-name-unknown", "dns-unanswered"})

#: lab samples where a captive portal held the client (lab/portal.py): the connectivity check's plain HTTP, then the
#: portal's TLS (its DNS sent the gateway's name to it) or the client's unanswered SYNs (tests/test_captive_portal.py)
CAPTIVE_PORTAL = frozenset({"captive-portal", "captive-portal-firewall"})

#: lab samples without an AnyConnect-protocol session or any application data: the client ended the TLS handshake
#: (cert-chain-missing: it refused the certificate; tests/test_cert_refused.py reads it with --gateway), the server's
#: handshake never arrived (path-mtu-blackhole and its -gateway-side capture: tests/test_tls_stalled.py), or never
#: connected (NEVER_CONNECTED)
HANDSHAKE_ONLY = frozenset({"cert-chain-missing", "path-mtu-blackhole", "path-mtu-blackhole-gateway-side"}) \
    | NEVER_CONNECTED | NEVER_RESOLVED | CAPTIVE_PORTAL


#: lab samples of several clients at once (Scenario.second_client: two users behind one address): their facts.json
#: describes the first client (its client.log), and the capture holds a session per client — the tests that hold one
#: sample's facts to one session leave them to tests/test_shared_address.py
SEVERAL_CLIENTS = frozenset({"two-users-one-address"})


def sample_dirs() -> list[Path]:
    return sorted(p.parent for p in SAMPLES.glob("*/facts.json"))


def every_sample() -> list[str]:
    """Every committed capture's sample name (lab, scripted and cut: "scripted/NAME", "cut/NAME")."""
    return sorted(str(p.parent.relative_to(SAMPLES)) for p in SAMPLES.rglob("facts.json")
                  if (p.parent / "capture.pcapng").exists())


def sample(name: str) -> Path:
    d = SAMPLES / name
    if not (d / "facts.json").exists():
        pytest.fail(f"sample {name} missing: run 'python -m lab {name}'")
    return d


def facts(name: str) -> dict:
    return json.loads((sample(name) / "facts.json").read_text())


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is required in CI (the test oracle); .ci/run installs it")
        pytest.skip("tshark not installed")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium for the HTML tests (Debian package `chromium`; skipped when missing, except in CI)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (Debian package 'chromium') to check the HTML report renders")
    pytest.skip("chromium not installed (apt-get install chromium)")
