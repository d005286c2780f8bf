"""DNS_SLOW on a real capture: openconnect resolving the gateway's name through a DNS server that answers its A query
and drops its AAAA query (lab scenario dns-slow-aaaa, lab.dnsish noaaaa): glibc waits for the AAAA answer, asks
again, gives up, and only then connects. tshark (the oracle) gives the queries, the answers and the first SYN."""
from __future__ import annotations

import subprocess

import pytest

from .conftest import every_sample, sample
from .helpers import doc

NAME = "dns-slow-aaaa"


def _wire() -> tuple[list[tuple[int, float, str, bool]], float]:
    """(frame, time, type, is an answer) of the DNS messages for the gateway's name, and the first SYN's time."""
    p = subprocess.run(["tshark", "-n", "-r", str(sample(NAME) / "capture.pcapng"), "-Y",
                        "dns.qry.name == \"vpn.acflow.test\" || (tcp.flags.syn == 1 && tcp.flags.ack == 0)",
                        "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch", "-e", "dns.qry.type",
                        "-e", "dns.flags.response", "-e", "tcp.flags.syn"], capture_output=True, text=True, check=True)
    dns, syn = [], None
    for line in p.stdout.splitlines():
        frame, ts, qtype, response, is_syn = (line.split("\t") + [""] * 5)[:5]
        if is_syn and syn is None:
            syn = float(ts)
        elif qtype:
            dns.append((int(frame), float(ts), {"1": "A", "28": "AAAA"}.get(qtype, qtype), response in ("1", "True")))
    return dns, syn


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
def test_unanswered_aaaa_delays_the_connection(keys, tshark):
    dns, syn = _wire()
    first = dns[0]
    d = doc(NAME, keys=keys)
    [s] = d["sessions"]
    f = next(x for x in s["findings"] if x["id"] == "DNS_SLOW")
    assert f["severity"] == "info" and f["evidence"]["name"] == "vpn.acflow.test"
    assert abs(f["evidence"]["waited"] - (syn - first[1])) < 0.05, (f["evidence"], syn - first[1])
    assert f["evidence"]["unanswered"] == ["AAAA"]
    aaaa = [fr for fr, _t, q, answer in dns if q == "AAAA" and not answer]
    assert not any(answer for _fr, _t, q, answer in dns if q == "AAAA")
    assert f"AAAA query never got an answer (sent {len(aaaa)} times" in f["message"]
    assert f"its first query frame {first[0]}" in f["message"]
    assert s["verdict"]["outcome"] == ("healthy" if keys else "inconclusive")


def test_no_slow_lookup_elsewhere():
    """The other samples that resolve the gateway's name (captive portal, NXDOMAIN, unanswered) are not held back by
    a slow answer: no DNS_SLOW anywhere else."""
    for name in every_sample():
        if name == NAME:
            continue
        for keys in (True, False):
            assert not any(x["id"] == "DNS_SLOW" for s in doc(name, keys=keys)["sessions"] for x in s["findings"]), \
                (name, keys)


def test_a_lookup_answered_at_once_is_not_slow(tmp_path, tshark):
    """The gateway's name answered at once, the connection 20 s later (the user clicked Connect then): the wait is
    not the lookup's — no DNS_SLOW. (gateway-name-unknown's lookups, answered NXDOMAIN at once, moved to 20 s before
    the baseline session: the same client and name.)"""
    dns, base = sample("gateway-name-unknown") / "capture.pcapng", sample("baseline") / "capture.pcapng"

    def first(cap) -> float:
        return float(subprocess.run(["tshark", "-n", "-r", str(cap), "-c", "1", "-T", "fields", "-e",
                                     "frame.time_epoch"], capture_output=True, text=True, check=True).stdout)

    shifted, merged = tmp_path / "dns.pcapng", tmp_path / "merged.pcapng"
    subprocess.run(["editcap", "-t", str(first(base) - first(dns) - 20), str(dns), str(shifted)], check=True,
                   capture_output=True)
    subprocess.run(["mergecap", "-w", str(merged), str(shifted), str(base)], check=True, capture_output=True)
    from analyzer import __version__
    from analyzer.analyze import analyze_paths, load_keys
    from analyzer.report.json_report import to_document

    d = to_document(analyze_paths([merged], *load_keys([sample("baseline") / "keys.log"], [])), version=__version__)
    [s] = d["sessions"]
    assert not any(x["id"] == "DNS_SLOW" for x in s["findings"])
    assert d["other_traffic"]["dns"]["lookups"] >= 2  # (the lookups are there, read)
