"""Connected, but internal names do not resolve (lab scenario dns-outside-tunnel: real openconnect and ocserv; the
gateway gives DNS 198.19.0.1, default domain acflow.test, split DNS corp.acflow.test; the client's resolver stays
at a DNS server outside the tunnel that answers NXDOMAIN). The lookups go out of the tunnel — in the capture's own DNS.

Before: 'Healthy: logged in, tunnel … over DTLS'; the X-CSTP-Split-DNS header was not read."""
from __future__ import annotations

import pytest

from .conftest import facts, sample
from .helpers import doc
from .oracle import tshark_fields

NAME = "dns-outside-tunnel"


def test_the_lab_made_what_it_says():
    looked = [a for a in facts(NAME)["actions"] if a["action"] == "lookup"]
    assert [a["name"] for a in looked] == ["intranet.acflow.test", "files.corp.acflow.test"]
    assert all(a["returncode"] == 2 for a in looked)  # getent: not found


@pytest.mark.tshark
def test_lookups_of_the_vpns_names_outside_the_tunnel():
    (s,) = doc(NAME)["sessions"]
    params = next(p for p in s["phases"] if p["phase"] == "cstp-connect")["details"]["parameters"]
    assert params["split_dns"] == ["corp.acflow.test"] and params["default_domain"] == "acflow.test"
    got = s["tunnel"]["outside_lookups"]
    rows = tshark_fields(sample(NAME) / "capture.pcapng", ["frame.number", "dns.qry.name"], "dns")
    want = {}
    for fr, name in rows:
        want.setdefault(name, []).append(int(fr))
    assert [(x["name"], x["server"], x["answer"]) for x in got] == [
        ("intranet.acflow.test", "198.18.0.1", "NXDOMAIN"), ("files.corp.acflow.test", "198.18.0.1", "NXDOMAIN")]
    assert all(x["frames"] == want[x["name"]] for x in got)
    (f,) = [f for f in s["findings"] if f["id"] == "DNS_OUTSIDE_TUNNEL"]
    assert f["severity"] == "warning" and f["evidence"]["tunnel_dns"] == ["198.19.0.1"]
    assert s["verdict"]["experienced"] == "Connected, but the VPN's internal names do not resolve"


def test_without_keys_nothing_is_claimed():
    """The domains are in the CONNECT answer: without keys the lookups stay other traffic's, with no finding."""
    (s,) = doc(NAME, keys=False)["sessions"]
    assert not any(f["id"] == "DNS_OUTSIDE_TUNNEL" for f in s["findings"])
    assert "outside_lookups" not in (s.get("tunnel") or {})
