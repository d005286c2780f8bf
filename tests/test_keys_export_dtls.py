"""`acflow keys` and DTLS: the exported key log alone lets tshark decrypt every DTLS application record of every
VPN DTLS session, PSK-NEGOTIATE included, however many there are (a reconnect, a NAT rebinding, two users);
`keys --embed` puts the same secrets into the capture; no usable key material writes nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import sample
from .oracle import tshark_fields

# samples whose VPN sessions bring up DTLS (PSK-NEGOTIATE unless named), some with several DTLS handshakes
DTLS_SAMPLES = ["baseline", "reconnect", "dpd-loss", "nat-rebinding", "mixed-traffic", "legacy-dtls09",
                "legacy-dtls", "tls12-rsa", "scripted/dtls-cookie"]


def acflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)


def key_args(d) -> list[str]:
    return ["--keylog", str(d / "keys.log")] if (d / "keys.log").exists() else ["--rsa-key", str(d / "server-key.pem")]


def tls_only_keylog(d, tmp_path):
    """The sample's key log without the lines GnuTLS wrote for DTLS handshakes (their ClientHello randoms, read by
    tshark): what a client that logs only its TLS secrets gives. The DTLS secrets must then come from acflow."""
    src = d / "keys.log"
    if not src.exists():
        return None
    rows = tshark_fields(d / "capture.pcapng", ["dtls.handshake.random"], "dtls.handshake.type == 1")
    dtls_randoms = {r for row in rows for r in row[0].split("|") if r}
    out = tmp_path / "tls-only.log"
    kept = [line for line in src.read_text().splitlines()
            if not (line.startswith("CLIENT_RANDOM ") and line.split()[1] in dtls_randoms)]
    out.write_text("\n".join(kept) + "\n")
    return out


def vpn_dtls_streams(d, keyargs) -> dict[int, int]:
    """{udp.stream: application records acflow decrypted} for the VPN sessions' DTLS flows that begin with a
    handshake in the capture (a flow continued after a NAT rebinding has none: no key log can name it)."""
    p = acflow("analyze", str(d / "capture.pcapng"), *keyargs, "--format", "json", "--show-secrets")
    assert p.returncode == 0, p.stderr
    out = {}
    for s in json.loads(p.stdout)["sessions"]:
        for ph in s["phases"]:
            if ph["phase"] != "dtls" or not isinstance(ph.get("details"), dict):
                continue
            for fl in ph["details"].get("flows", []):
                if (fl.get("first_record") or {}).get("content_type") != 22:
                    continue
                frames = fl["channel"]["frames"]
                n = sum(v["count"] for direction in frames.values() for v in direction.values())
                out[int(fl["connection"].split()[-1])] = n
    return out


def app_records(capture, streams, keylog=None) -> tuple[int, int]:
    """(DTLS application-data records, of which decrypted) on ``streams``, per tshark."""
    rows = tshark_fields(capture, ["udp.stream", "dtls.record.content_type", "data.len"], "dtls", keylog=keylog)
    total = decrypted = 0
    for stream, types, data in rows:
        if int(stream) not in streams:
            continue
        n = types.split("|").count("23")
        total += n
        decrypted += len([x for x in data.split("|") if x]) if data else 0
    return total, decrypted


@pytest.mark.parametrize("name", DTLS_SAMPLES)
def test_exported_keylog_alone_decrypts_every_dtls_record(tshark, tmp_path, name):
    d = sample(name)
    given = tls_only_keylog(d, tmp_path)
    keyargs = ["--keylog", str(given)] if given else key_args(d)
    out = tmp_path / "wireshark.keys"
    p = acflow("keys", str(d / "capture.pcapng"), *keyargs, "-o", str(out))
    assert p.returncode == 0, p.stderr
    streams = vpn_dtls_streams(d, keyargs)
    assert streams, "the sample has a VPN DTLS flow with its handshake"
    total, decrypted = app_records(d / "capture.pcapng", streams, keylog=out)
    # tshark, with no option but the exported key log, decrypts every application record of those flows …
    assert total > 0 and decrypted == total, (total, decrypted)
    # … and they are the records acflow decrypted itself
    assert sum(streams.values()) == total


def test_several_psk_negotiate_sessions_need_the_keylog_lines(tshark, tmp_path):
    """The reconnect sample has two PSK-NEGOTIATE DTLS sessions (two PSKs): a single `-o dtls.psk:` cannot
    decrypt both, the exported key log does."""
    d = sample("reconnect")
    given = tls_only_keylog(d, tmp_path)
    out = tmp_path / "wireshark.keys"
    p = acflow("keys", str(d / "capture.pcapng"), "--keylog", str(given), "-o", str(out))
    assert p.returncode == 0, p.stderr
    psks = [line.split()[1] for line in p.stdout.splitlines() if line.startswith("-o dtls.psk:")]
    assert len(psks) == 2
    streams = vpn_dtls_streams(d, ["--keylog", str(given)])
    rows = tshark_fields(d / "capture.pcapng", ["udp.stream", "dtls.record.content_type", "data.len"], "dtls",
                         keylog=given, extra=["-o", psks[0]])
    total = sum(r[1].split("|").count("23") for r in rows if int(r[0]) in streams)
    with_one_psk = sum(len([x for x in r[2].split("|") if x]) for r in rows if int(r[0]) in streams and r[2])
    assert 0 < with_one_psk < total
    assert app_records(d / "capture.pcapng", streams, keylog=out) == (total, total)
    dtls_lines = [line for line in out.read_text().splitlines()
                  if line.startswith("CLIENT_RANDOM ") and line not in given.read_text()]
    assert len(dtls_lines) >= 2


@pytest.mark.parametrize("name", ["reconnect", "tls12-rsa"])
def test_embed_puts_every_secret_into_the_capture(tshark, tmp_path, name):
    d = sample(name)
    given = tls_only_keylog(d, tmp_path)
    keyargs = ["--keylog", str(given)] if given else key_args(d)
    out = tmp_path / "with-keys.pcapng"
    p = acflow("keys", "--embed", str(d / "capture.pcapng"), *keyargs, "-o", str(out))
    assert p.returncode == 0, p.stderr
    # tshark with no key option at all reads the secrets from the file
    streams = vpn_dtls_streams(d, keyargs)
    total, decrypted = app_records(out, streams)
    assert total > 0 and decrypted == total
    reqs = tshark_fields(out, ["http.request.method"], "http.request")
    assert ["CONNECT"] in reqs
    # acflow reads the embedded secrets too: the same analysis without any key option
    a = acflow("analyze", str(out), "--format", "json")
    b = acflow("analyze", str(d / "capture.pcapng"), *keyargs, "--format", "json")
    sa, sb = json.loads(a.stdout)["sessions"], json.loads(b.stdout)["sessions"]
    assert [p["status"] for s in sa for p in s["phases"]] == [p["status"] for s in sb for p in s["phases"]]
    # frames are the same ones, in order
    n_in = len(tshark_fields(d / "capture.pcapng", ["frame.number"]))
    assert len(tshark_fields(out, ["frame.number"])) == n_in


def test_embed_converts_a_pcap(tshark, tmp_path):
    d = sample("baseline")
    pcap = tmp_path / "baseline.pcap"
    subprocess.run(["editcap", "-F", "pcap", str(d / "capture.pcapng"), str(pcap)], check=True, capture_output=True)
    out = tmp_path / "with-keys.pcapng"
    p = acflow("keys", "--embed", str(pcap), "--keylog", str(d / "keys.log"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    times_in = tshark_fields(pcap, ["frame.time_epoch", "frame.len"])
    assert tshark_fields(out, ["frame.time_epoch", "frame.len"]) == times_in
    assert ["CONNECT"] in tshark_fields(out, ["http.request.method"], "http.request")


@pytest.mark.parametrize("embed", [False, True])
def test_no_usable_key_material_writes_nothing(tmp_path, embed):
    d = sample("baseline")
    other = sample("reconnect") / "keys.log"  # a real key log, of another capture
    out = tmp_path / "out"
    for keyargs in ([], ["--keylog", str(other)]):
        p = acflow("keys", *(["--embed"] if embed else []), str(d / "capture.pcapng"), *keyargs, "-o", str(out))
        assert p.returncode == 4, p.stderr
        assert "no usable key material" in p.stderr and "Traceback" not in p.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == []
