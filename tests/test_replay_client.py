"""`acflow replay client` (issue #14, first increment): real replays of samples/baseline against a real ocserv.

The live tests build the lab's two namespaces (lab.netns.Lab: gateway 198.18.0.1, client 198.18.0.2), start ocserv
there with the `baseline` scenario's configuration (lab.runner.prepare_gateway/start_gateway, a fresh lab PKI), and
run the replay as a separate process in the client namespace (`nsenter --net=…`, which changes only the network
namespace, so the replay's own namespace appears in /run/netns like any other). The replay makes its own private
namespace for the TUN; the tests check that none is left behind, after a normal run and after SIGINT mid-replay.
They need root and ocserv: skipped otherwise, failed in CI (tests/helpers.require), like tests/test_lab_live.py.

The tests without the lab check the pieces: argument errors, the refusal without root, the packet rewrite and
answer matching, the recorded exchange of the baseline sample.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import ROOT, sample
from .helpers import require as _require

CAPTURE = ROOT / "samples" / "baseline" / "capture.pcapng"
KEYS = ROOT / "samples" / "baseline" / "keys.log"


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=kw.pop("timeout", 60), **kw)


def _replay_netns() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir() if p.name.startswith("acflow-rp-")} if d.is_dir() else set()


# -- without the lab ------------------------------------------------------------------------------------------

def test_other_replay_modes_say_not_built():
    p = _cli("replay", "proxy", "x.pcapng")  # client and gateway are built; any other mode says it is not
    assert p.returncode == 3 and "not implemented yet" in p.stderr and p.stdout == ""


@pytest.mark.parametrize("extra, needle", [
    (["--password-stdin", "--reuse-credentials"], "exclude each other"),
    (["--speed", "2", "--no-timing"], "exclude each other"),
    (["--cafile", "x.pem", "--servercert", "sha1:" + "ab" * 20], "exclude each other"),
    (["--servercert", "12345"], "servercert"),
])
def test_usage_errors(extra, needle):
    p = _cli("replay", "client", str(CAPTURE), "--keylog", str(KEYS), "--gateway", "https://198.18.0.1/", *extra)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr


def test_refuses_without_root_clearly():
    args = [sys.executable, "-m", "analyzer.cli", "replay", "client", str(CAPTURE), "--keylog", str(KEYS),
            "--gateway", "https://198.18.0.1/", "--reuse-credentials"]
    if os.geteuid() == 0 and shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"],
                                                                      capture_output=True).returncode == 0:
        # as root, wherever the checkout is (under /root, mode 700, nobody could not read it): in a new user
        # namespace without a mapping the process runs as the overflow uid with no capabilities after exec (CapEff
        # 0), while files are still checked against root's own credentials, so the checkout and venv stay readable
        args = ["unshare", "--user", *args]
    elif os.geteuid() == 0:
        _require(shutil.which("setpriv") is not None, "setpriv missing")
        args = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", *args]
    before = _replay_netns()
    p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.returncode == 5, p.stderr
    assert "needs root (CAP_NET_ADMIN)" in p.stderr and "nothing was done" in p.stderr
    assert p.stdout == ""
    assert _replay_netns() == before


def test_without_keys_the_capture_is_unusable(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    p = _cli("replay", "client", str(CAPTURE), "--gateway", "https://198.18.0.1/", "--reuse-credentials")
    assert p.returncode == 4
    assert "nothing of its HTTP exchange was decrypted" in p.stderr


def test_rewrite_and_matching():
    from scapy.layers.inet import ICMP, IP

    from replay.client import answer_key, request_key, rewrite_source

    req = bytes(IP(src="198.19.0.50", dst="198.19.0.1", id=7) / ICMP(type=8, id=0x1234, seq=3) / (b"x" * 56))
    new = rewrite_source(req, "198.19.0.77")
    p = IP(new)
    assert p.src == "198.19.0.77" and p.dst == "198.19.0.1" and p[ICMP].id == 0x1234 and p[ICMP].seq == 3
    # checksums are right: scapy recomputes the same values from a copy without them
    q = IP(new)
    del q.chksum
    del q[ICMP].chksum
    q = IP(bytes(q))
    assert (q.chksum, q[ICMP].chksum) == (p.chksum, p[ICMP].chksum)
    reply = bytes(IP(src="198.19.0.1", dst="198.19.0.77") / ICMP(type=0, id=0x1234, seq=3) / (b"x" * 56))
    assert answer_key(reply) == request_key(new)
    other = bytes(IP(src="198.19.0.1", dst="198.19.0.77") / ICMP(type=0, id=0x1234, seq=4))
    assert answer_key(other) != request_key(new)


def test_baseline_recording_read_through_the_json_document():
    from replay.client import recorded_exchange
    from replay.recording import load_recording

    rec = load_recording(CAPTURE, [KEYS])
    assert rec.session_id == "s1"
    assert [r.fields for r in rec.rounds] == [["username"], ["password"]]
    assert rec.recorded_value("password") is not None  # in memory only
    assert rec.connect_params["mtu"] == 1434 and rec.connect_params["address"] == "198.19.0.50"
    names = [k.lower() for k, _ in rec.connect_headers]
    assert "x-cstp-mtu" in names and "x-dtls-ciphersuite" in names
    assert recorded_exchange(rec) == {"sent": 5, "answered": 5, "not_ipv4_skipped": 1, "channels": {"dtls": 5}}


def test_servercert_parsing():
    from replay.gatewayconn import parse_servercert

    assert parse_servercert("sha256:" + "AB" * 32) == ("sha256", "ab" * 32)
    assert parse_servercert("AB:" * 19 + "AB") == ("sha1", "ab" * 20)
    with pytest.raises(ValueError):
        parse_servercert("sha256:abcd")


# -- live: the lab's namespaces and a real ocserv ---------------------------------------------------------------

def _lab_prerequisites():
    from lab.netns import missing_tools

    _require(os.geteuid() == 0, "needs root")
    missing = missing_tools(("ocserv", "ip", "openssl", "nsenter", "ethtool"))
    _require(not missing, f"not installed: {', '.join(missing)}")


class _Gateway:
    """A lab with ocserv running the baseline configuration (plus `overrides`) in its gateway namespace."""

    def __init__(self, work: Path, overrides: dict | None = None, sample_pki: bool = True,
                 scenario: str = "baseline"):
        from lab.netns import Lab
        from lab.runner import prepare_gateway, start_gateway
        from lab.scenarios import SCENARIOS

        sc = SCENARIOS[scenario]
        self.sample = ROOT / "samples" / scenario
        if overrides:
            sc = dataclasses.replace(sc, gateway={**sc.gateway, **overrides})
        self.lab = Lab(tag=f"r{os.getpid() % 10000}")
        self.lab.__enter__()
        try:
            if sc.outer_mtu:  # the recorded network, as lab.runner made it
                self.lab.set_outer_mtu(sc.outer_mtu)
            if sc.block_udp:
                self.lab.block_udp_443()
            self.pki = prepare_gateway(sc, work)
            if sample_pki:  # the recorded gateway's own certificate and key (committed with the sample)
                for name in ("server-cert.pem", "server-key.pem", "ca.pem"):
                    shutil.copyfile(self.sample / name, work / name)
                    os.chmod(work / name, 0o644)
            self.gw = start_gateway(self.lab, work, work / "gateway-keys.log", debug=2)
        except BaseException:
            self.lab.close()
            raise
        self.work = work

    def replay_argv(self, *extra: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.lab.client_ns}", sys.executable, "-m", "analyzer.cli", "replay",
                "client", str(self.sample / "capture.pcapng"), "--keylog", str(self.sample / "keys.log"), "--gateway", "https://vpn.acflow.test/",
                "--resolve", "vpn.acflow.test:198.18.0.1", "--cafile", str(self.pki.ca_cert),
                "--reuse-credentials", "--format", "json", *extra]

    def close(self):
        self.lab.close()


@pytest.fixture
def gateway():
    """make(overrides, sample_pki=True) → a running _Gateway; all are closed (and their work removed) after the test."""
    from lab.runs import work_dir

    _lab_prerequisites()
    made = []

    def make(overrides=None, sample_pki=True, scenario="baseline"):
        work = work_dir("acflow-replay-test-")  # readable by ocserv's workers (nobody), unlike pytest's tmp_path
        made.append((work, None))
        g = _Gateway(work, overrides, sample_pki, scenario)
        made[-1] = (work, g)
        return g

    yield make
    for work, g in made:
        if g is not None:
            g.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.lab
def test_replay_baseline_same(gateway):
    sample("baseline")
    g = gateway()
    before = _replay_netns()
    t0 = time.monotonic()
    p = subprocess.run(g.replay_argv(), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert time.monotonic() - t0 < 60
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr + "\ngateway: " + g.gw.tail(30)
    doc = json.loads(p.stdout)
    assert doc["result"] == "same", doc["differences"]
    status = {ph["phase"]: ph["replayed"] for ph in doc["phases"]}
    assert status == {"tls-handshake": "ok", "group-selection": "ok", "user-auth": "ok", "downloader": "absent",
                      "cstp-connect": "ok", "dtls": "ok"}
    assert doc["not_replayed"] == []
    # PSK-NEGOTIATE DTLS (GnuTLS client, PSK from this replay's TLS exporter) with ocserv, as recorded
    dtls = doc["dtls"]
    assert (dtls["mode"], dtls["version"], dtls["cipher_suite"]) == (
        "psk-negotiate", "DTLS 1.2", "TLS_PSK_WITH_AES_256_GCM_SHA384"), dtls
    got = {i["what"]: i for i in doc["comparisons"]}
    assert got["dtls mode"]["same"] and got["dtls cipher suite"]["same"]
    inner = doc["inner"]
    assert inner["recorded"]["answered"] == 5
    assert inner["replayed"]["sent"] == 5 and inner["replayed"]["seen_on_tun"] == 5
    assert inner["replayed"]["answered"] == 5
    assert inner["replayed"]["channels"] == {"dtls": 5} == inner["recorded"]["channels"]
    assert dtls["counts"]["data_sent"] == 5 and dtls["counts"]["data_received"] >= 5
    assert dtls["mtu_probe"] == {"size": 1434, "answered": True}  # as openconnect: a DPD-REQ of the tunnel MTU
    assert doc["timing"]["within_bound"], doc["timing"]
    assert doc["tunnel"]["address"] == "198.19.0.50"
    # DTLS offered as recorded: the same grant, and the TUN gets it
    mtu = got["tunnel mtu"]
    assert mtu["same"] and mtu["replayed"] == 1434 and "note" not in mtu, mtu
    assert doc["tunnel"]["mtu"] == 1434
    assert "webvpn=" not in p.stdout and "acflow-pass-1" not in p.stdout  # no secret in the report
    assert _replay_netns() == before, "the replay left its namespace behind"
    assert doc["cleanup"] == ["TUN acrp0", f"namespace {doc['tunnel']['namespace']}"]
    for ns in (f"--net=/run/netns/{g.lab.client_ns}", "--net=/proc/1/ns/net"):
        links = subprocess.run(["nsenter", ns, "ip", "-o", "link"], capture_output=True, text=True).stdout
        assert "acrp0" not in links


@pytest.mark.lab
def test_replay_reports_a_changed_mtu(gateway):
    g = gateway({"mtu": "1100"})
    before = _replay_netns()
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["result"] == "differs"
    mtu = next(i for i in doc["comparisons"] if i["what"] == "tunnel mtu")
    assert mtu["recorded"] == 1434 and mtu["same"] is False, mtu
    assert doc["tunnel"]["mtu"] < 1100  # the TUN got the new, smaller MTU
    assert set(doc["differences"]) == {"tunnel mtu", "tunnel base mtu"}, doc["differences"]  # ocserv: base MTU = mtu
    assert doc["inner"]["replayed"]["answered"] == 5  # the pings still go through
    assert _replay_netns() == before


def _start_mid_replay(g, before: set[str], *extra: str) -> subprocess.Popen:
    """The replay started with the packets slowed down (--speed 0.1: the first ping ~6 s after the tunnel comes
    up), returned once its namespace exists and its tunnel is up."""
    proc = subprocess.Popen(g.replay_argv("--speed", "0.1", *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.poll() is None:
        made = _replay_netns() - before
        if made:
            addrs = subprocess.run(["nsenter", f"--net=/run/netns/{made.pop()}", "ip", "-o", "-4", "addr"],
                                   capture_output=True, text=True).stdout
            if "acrp0" in addrs and "198.19.0.50" in addrs:  # the tunnel is up, its TUN configured
                break
        time.sleep(0.05)
    else:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"the replay's TUN never came up: {err}")
    time.sleep(0.5)
    return proc


@pytest.mark.lab
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_replay_interrupted_mid_replay_cleans_up(gateway, sig):
    """Ctrl-C / SIGTERM with the tunnel up (and, with --write, the capture running): the namespace, the TUN, the
    DTLS socket, dumpcap and the temporary key log / capture directories are all gone; the capture so far is kept,
    its keys embedded (a Decryption Secrets Block right after the section header)."""
    g = gateway()
    before = _replay_netns()
    temp_before = set(Path(tempfile.gettempdir()).glob("acflow-rp-*"))
    out_file = g.work / "interrupted.pcapng"
    proc = _start_mid_replay(g, before, "--write", str(out_file))
    try:
        os.kill(proc.pid, sig)  # by PID (nsenter execs the replay: same process)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    assert "interrupted; removed:" in err and "namespace acflow-rp-" in err and "TUN acrp0" in err, err
    assert _replay_netns() == before, "namespace left behind after the signal"
    links = subprocess.run(["nsenter", f"--net=/run/netns/{g.lab.client_ns}", "ip", "-o", "link"],
                           capture_output=True, text=True).stdout
    assert "acrp0" not in links
    assert set(Path(tempfile.gettempdir()).glob("acflow-rp-*")) == temp_before
    assert not [ln for ln in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                if "dumpcap" in ln and "acflow-rp-cap-" in ln]
    data = out_file.read_bytes()
    shb_len = int.from_bytes(data[4:8], "little")
    assert data[shb_len:shb_len + 4] == (0x0A).to_bytes(4, "little") and b"EXPORTER_SECRET" in data


@pytest.mark.lab
def test_replay_interrupted_while_setting_up_its_namespace(gateway):
    """SIGINT the moment the namespace appears (the TUN being made and configured, partly in pyroute2's forked
    helpers): the signal is held until the set-up is done, then everything is removed."""
    g = gateway()
    before = _replay_netns()
    proc = subprocess.Popen(g.replay_argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None and not (_replay_netns() - before):
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    assert "interrupted; removed:" in err and "namespace acflow-rp-" in err, err
    assert _replay_netns() == before


@pytest.mark.lab
def test_replay_gateway_closing_mid_replay(gateway):
    g = gateway()
    before = _replay_netns()
    proc = _start_mid_replay(g, before)
    try:
        g.gw.stop()  # ocserv ended by its PID: its worker goes, and the TLS connection with it
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 1, out + err
    doc = json.loads(out)
    end = next(i for i in doc["comparisons"] if i["what"] == "tunnel ended by")
    assert end["same"] is False and end["recorded"] == "DISCONNECT from the client"
    assert "gateway" in end["replayed"], end
    assert doc["inner"]["replayed"]["answered"] < 5
    assert _replay_netns() == before


@pytest.mark.lab
def test_replay_in_a_given_namespace_keeps_it(gateway):
    from pyroute2 import netns

    g = gateway()
    name = f"acflow-rp-given-{os.getpid()}"
    netns.create(name)
    try:
        p = subprocess.run(g.replay_argv("--no-timing", "--netns", name), capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr
        doc = json.loads(p.stdout)
        assert doc["tunnel"]["namespace"] == name and doc["tunnel"]["namespace_created"] is False
        assert doc["cleanup"] == ["TUN acrp0"]
        assert name in netns.listnetns()  # not ours to remove
        links = subprocess.run(["nsenter", f"--net=/run/netns/{name}", "ip", "-o", "link"], capture_output=True,
                               text=True).stdout
        assert "acrp0" not in links
    finally:
        netns.remove(name)


@pytest.mark.lab
def test_new_certificate_is_a_difference(gateway):
    """The same gateway with a new certificate (a fresh lab PKI instead of the recorded one): exit 1, and that is
    the only difference."""
    g = gateway(sample_pki=False)
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["differences"] == ["gateway certificate sha256"], doc["differences"]
    assert doc["inner"]["replayed"]["answered"] == 5


@pytest.mark.lab
@pytest.mark.parametrize("setting, speed, sent, answered", [("dpd", "0.1", "dpd_req_sent", "dpd_resp_received"),
                                                             ("keepalive", "0.25", "keepalives_sent", None)])
def test_replay_dpd_and_keepalive_as_the_gateway_asks(gateway, setting, speed, sent, answered):
    """Gateway `dpd = 2`: with the pings slowed down (--speed 0.1: ~2 s apart, the first ~6 s after the tunnel
    comes up, past the gateway's own first packets) the replay sends DPD-REQ when the gateway has been silent for
    2 s and gets DPD-RESP. Gateway `keepalive = 2`: a KEEPALIVE when the replay has sent nothing for 2 s (--speed
    0.25: the first ping ~2.5 s after the tunnel comes up). Both on CSTP and on DTLS. The changed setting is the one
    difference."""
    g = gateway({setting: "2"})
    p = subprocess.run(g.replay_argv("--speed", speed), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["differences"] == [f"tunnel {setting}"], doc["differences"]
    # each channel on its own timers (ocserv's dpd/keepalive apply to both: X-CSTP- and X-DTLS-DPD/-Keepalive)
    for counts in (doc["tunnel"]["cstp"], doc["dtls"]["counts"]):
        assert counts[sent] >= 1, counts
        if answered:
            assert counts[answered] == counts[sent], counts
    assert doc["inner"]["replayed"]["answered"] == 5 and doc["inner"]["replayed"]["channels"] == {"dtls": 5}
    assert doc["timing"]["within_bound"], doc["timing"]


@pytest.mark.lab
@pytest.mark.parametrize("password, status", [("acflow-pass-1", 0), ("not-the-password", 1)])
def test_replay_with_typed_credentials(gateway, password, status):
    """--user and --password-stdin instead of the recorded values: the lab user's password (lab/client.py) gives
    the recorded session; a wrong one is a failed user-auth, reported with the gateway's answer, and no tunnel."""
    from lab.client import USER, USER_PASSWORD

    assert password != "acflow-pass-1" or password == USER_PASSWORD
    g = gateway()
    argv = [a for a in g.replay_argv("--no-timing") if a != "--reuse-credentials"]
    p = subprocess.run([*argv, "--user", USER, "--password-stdin"], input=password + "\n", capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == status, p.stdout[-2000:] + p.stderr
    assert password not in p.stdout
    doc = json.loads(p.stdout)
    phases = {ph["phase"]: ph["replayed"] for ph in doc["phases"]}
    if status == 0:
        assert phases["user-auth"] == "ok" and doc["inner"]["replayed"]["answered"] == 5
    else:
        assert phases["user-auth"] == "failed" and phases["cstp-connect"] == "not reached"
        assert "auth result" in doc["differences"] and "phase user-auth" in doc["differences"]
        assert doc["cleanup"] == []  # no tunnel, so no namespace was made


@pytest.mark.lab
def test_replay_group_select_same(gateway):
    """samples/group-select against its own configuration: the init POST, the re-selection POST for the recorded
    group (as openconnect made it), then username and password with that group — the same as recorded."""
    g = gateway(scenario="group-select")
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    got = {i["what"]: i["replayed"] for i in doc["comparisons"]}
    assert got["group-selection POSTs"] == 2 and got["group selected"] == "engineering"
    assert doc["inner"]["replayed"]["answered"] == doc["inner"]["recorded"]["answered"] > 0


@pytest.mark.lab
def test_replay_group_removed_is_a_difference(gateway):
    """The user's recorded group no longer offered by the gateway: the group list and the group differ (exit 1)."""
    g = gateway({"select-group": ["sales[Sales Team]", "ops[Operations]"]}, scenario="group-select")
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert "group list" in doc["differences"] and "group selected" in doc["differences"], doc["differences"]
    gl = next(i for i in doc["comparisons"] if i["what"] == "group list")
    assert "engineering" in gl["recorded"] and "engineering" not in gl["replayed"]


@pytest.mark.lab
def test_replay_downloader_sample_connects_on_a_new_connection(gateway):
    """samples/downloader (openconnect --authenticate, curl's profile GET on its own TLS connection, then a cookie
    connect on a new TLS connection): the profile GET again on a new connection with the new cookie — status and
    content (SHA-1) as recorded — then the CONNECT on a new TLS connection as recorded."""
    g = gateway(scenario="downloader")
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    dl = next(ph for ph in doc["phases"] if ph["phase"] == "downloader")
    assert dl["recorded"] == dl["replayed"] == "ok" and dl["same"] is True
    assert doc["not_replayed"] == []
    got = {i["what"]: i for i in doc["comparisons"]}
    assert got["downloader GETs"]["replayed"] == ["/profiles/acflow-profile.xml"]
    assert got["GET /profiles/acflow-profile.xml status"]["replayed"] == 200
    sha1 = got["GET /profiles/acflow-profile.xml sha1"]
    assert sha1["same"] and len(sha1["replayed"]) == 40
    assert doc["tunnel"]["connect_connection"] == "a new TLS connection (as recorded)"
    assert doc["inner"]["replayed"]["answered"] == 5


@pytest.mark.lab
def test_replay_downloader_profile_changed_is_a_difference(gateway):
    """The gateway now serves another profile file under the recorded URI: the GET's SHA-1 differs (exit 1)."""
    g = gateway(scenario="downloader")
    prof = g.work / "acflow-profile.xml"
    prof.write_text(prof.read_text().replace("acflow lab", "acflow lab (changed)"))
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["differences"] == ["GET /profiles/acflow-profile.xml sha1"], doc["differences"]


@pytest.mark.lab
@pytest.mark.parametrize("scenario, mode, version, suite", [
    ("legacy-dtls", "legacy", "DTLS 1.2", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("legacy-dtls09", "legacy-0x0100", "DTLS 0x0100", "TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("dtls-blocked", None, None, None),
    ("tls12-rsa", "psk-negotiate", "DTLS 1.2", "TLS_PSK_WITH_AES_256_GCM_SHA384"),
])
def test_replay_other_samples_same(gateway, scenario, mode, version, suite):
    """Samples with legacy DTLS (X-DTLS-Master-Secret resumption: DTLS 1.2 AES-256-GCM, Cisco's 0x0100 AES128-SHA)
    with DTLS blocked (UDP 443 dropped at the gateway, as recorded), and TLS 1.2 with RSA key exchange (the
    recorded ClientHello's TLS 1.2 suites offered, so RSA key exchange is there as recorded; the PSK from the TLS 1.2
    exporter: master secret and both hello randoms): replayed against their own gateway
    configuration, the same as recorded — the DTLS channel (GnuTLS resuming the session the CONNECT set up) in the
    recorded mode, version and suite carrying the pings, or, blocked, DTLS failed and the pings over CSTP."""
    g = gateway(scenario=scenario)
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    inner = doc["inner"]
    assert inner["replayed"]["answered"] == inner["recorded"]["answered"] == inner["recorded"]["sent"] > 0
    assert inner["replayed"]["channels"] == inner["recorded"]["channels"]
    mtu = next(i for i in doc["comparisons"] if i["what"] == "tunnel mtu")
    assert mtu["same"] and mtu["recorded"] == mtu["replayed"]
    got = {i["what"]: i for i in doc["comparisons"]}
    assert got["tls version"]["same"] and got["tls cipher suite"]["same"], (got["tls version"],
                                                                          got["tls cipher suite"])
    phase = next(ph for ph in doc["phases"] if ph["phase"] == "dtls")
    if mode is None:
        assert phase["recorded"] == phase["replayed"] == "failed"
        assert inner["replayed"]["channels"] == {"cstp": inner["recorded"]["sent"]}
    else:
        assert phase["recorded"] == phase["replayed"] == "ok"
        assert (doc["dtls"]["mode"], doc["dtls"]["version"], doc["dtls"]["cipher_suite"]) == (mode, version, suite)
        assert doc["dtls"]["resumed"] is mode.startswith("legacy")  # legacy: an abbreviated resumption


def test_dtls_record_overhead():
    from replay.report import dtls_record_overhead

    assert dtls_record_overhead("TLS_PSK_WITH_AES_256_GCM_SHA384") == 38  # 13 + 8 + 16 + 1
    assert dtls_record_overhead("AES256-GCM-SHA384") == 38
    assert dtls_record_overhead("OC2-DTLS1_2-CHACHA20-POLY1305") == 30  # 13 + 16 + 1
    assert dtls_record_overhead("TLS_RSA_WITH_AES_128_CBC_SHA") == 66  # 13 + 16 + 20 + 16 + 1
    assert dtls_record_overhead("AES128-SHA") == 66
    assert dtls_record_overhead("PSK-NEGOTIATE") is None


def test_fit_mtu_as_the_kernel_would():
    from scapy.layers.inet import ICMP, IP

    from replay.client import SentPacket, fit_mtu

    big_df = bytes(IP(src="198.19.0.50", dst="198.19.0.1", flags="DF") / ICMP() / (b"x" * 1300))
    sp = SentPacket(index=1, intended=0.0)
    assert fit_mtu(big_df, 1072, sp) == [] and "EMSGSIZE" in sp.error
    big = bytes(IP(src="198.19.0.50", dst="198.19.0.1") / ICMP() / (b"x" * 1300))
    sp = SentPacket(index=2, intended=0.0)
    pieces = fit_mtu(big, 1072, sp)
    assert len(pieces) == 2 and all(len(x) <= 1072 for x in pieces) and sp.error is None
    assert sum(len(x) - 20 for x in pieces) == len(big) - 20
    assert fit_mtu(big, None, sp) == [big] and fit_mtu(big, 1500, sp) == [big]


def test_restore_length_of_a_cut_packet():
    from scapy.layers.inet import ICMP, IP

    from replay.client import restore_length

    whole = bytes(IP(src="198.19.0.50", dst="198.19.0.1", flags="DF") / ICMP() / (b"x" * 1300))
    cut = whole[:1034]
    back, note = restore_length(cut)
    assert len(back) == 1328 and back[:1034] == cut and back[1034:] == bytes(294) and "1034 of its 1328" in note
    assert restore_length(whole) == (whole, None) and restore_length(b"\x60" + bytes(39)) == (b"\x60" + bytes(39), None)


@pytest.mark.lab
def test_replay_mtu_sample_differs_in_what_is_sent(gateway):
    """samples/mtu (outer MTU 1300, gateway mtu 1100, the recorded client's TUN forced to MTU 1400): its three big DF
    pings were 1328-byte packets whose DTLS records carried only the first 1034 bytes (the tunnel MTU), unanswered.
    The replay restores them to their header's length (zeros for the missing bytes) and, on a TUN of the granted
    MTU 1034, does what the kernel does for an application: a DF packet that big is not sent (EMSGSIZE). So the
    pings answered are the same (5), what was sent differs (8 → 5): reported, exit 1."""
    g = gateway(scenario="mtu")
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["differences"] == ["inner packets sent", "inner packets channels"], doc["differences"]
    inner = doc["inner"]
    assert inner["recorded"] == {"sent": 8, "answered": 5, "not_ipv4_skipped": 1, "channels": {"dtls": 8}}
    rp = inner["replayed"]
    assert rp["sent"] == 5 and rp["answered"] == 5 and rp["channels"] == {"dtls": 5}
    assert len(rp["errors"]) == 3 and all("1328 bytes with DF set" in e and "EMSGSIZE" in e for e in rp["errors"])
    assert len(rp["notes"]) == 3 and all("recorded 1034 of its 1328 bytes" in n for n in rp["notes"])
    assert doc["tunnel"]["mtu"] == 1034


@pytest.mark.lab
def test_replay_compression_switched_on_is_a_difference(gateway):
    """The gateway now compresses (`compression = true`; the recorded X-CSTP-Accept-Encoding offered oc-lz4,lzs):
    the content encoding is the one difference, the pings still answered (COMPRESSED DATA would be expanded by
    dissectors.cstp's framer)."""
    g = gateway({"compression": "true"})
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["differences"] == ["tunnel content encoding"], doc["differences"]
    enc = next(i for i in doc["comparisons"] if i["what"] == "tunnel content encoding")
    assert enc["recorded"] is None and enc["replayed"] in ("oc-lz4", "lzs")
    assert doc["inner"]["replayed"]["answered"] == 5


def _replay_like_the_recording(rec):
    """A Replay object as a faithful replay of ``rec`` would leave it (no gateway needed)."""
    from replay.client import Replay, SentPacket, request_key

    rp = Replay(gateway="https://vpn.acflow.test/")
    for name, ph in rec.phases.items():
        rp.phases[name] = dict(ph)
    rp.dtls = {k: rec.dtls[k] for k in ("status", "mode", "version", "cipher_suite")}
    rp.tls = {"version": rec.tls_version, "cipher_suite": rec.tls_cipher, "cert_sha256": rec.cert_sha256}
    rp.init_posts = [{"target": "/"}] * len(rec.init_posts)
    rp.group_list, rp.group_selected = list(rec.group_list), rec.group_selected
    rp.rounds = [{"fields": r.fields, "message": r.message, "error": r.error, "form_fields": r.form_fields,
                  "response_type": r.response_type} for r in rec.rounds]
    rp.auth_result, rp.connect_status = rec.auth_result, rec.connect_status
    rp.connect_params = dict(rec.connect_params)
    for i, p in enumerate(rec.client_packets()):
        rp.packets.append(SentPacket(index=i + 1, intended=0.1 * i, actual=0.1 * i, seen_on_tun=0.1 * i,
                                     answered=0.1 * i + 0.001, key=request_key(p.data), channel=p.channel))
    rp.end = "DISCONNECT from the replay client over CSTP"
    rp.timing = {"drift_ms": {"p50": 0.1, "p99": 0.2, "max": 0.2}, "tun_lag_ms": {"p50": 0.1, "max": 0.1},
                 "bound_ms": 50.0, "mode": "recorded", "speed": 1.0}
    return rp


def test_compare_same_and_differs_without_a_gateway():
    from replay.client import Options
    from replay.recording import load_recording
    from replay.report import compare, render_json, render_terminal

    rec = load_recording(CAPTURE, [KEYS])
    opts = Options(capture=CAPTURE, keylogs=(KEYS,), gateway="https://vpn.acflow.test/")
    rp = _replay_like_the_recording(rec)
    doc = compare(rec, rp, opts)
    assert doc["result"] == "same" and doc["differences"] == [], doc["differences"]
    text = render_terminal(doc)
    assert "result: SAME" in text and "DTLS: ok" not in text  # no DTLS line without a tunnel namespace
    assert rec.recorded_value("password") not in render_json(doc) + text
    rp.connect_params["dns"] = ["198.19.0.53"]
    rp.packets[-1].answered = None
    doc = compare(rec, rp, opts)
    assert doc["result"] == "differs"
    assert doc["differences"] == ["tunnel dns", "inner packets answered"], doc["differences"]
    assert "← DIFFERS" in render_terminal(doc)


@pytest.mark.lab
@pytest.mark.parametrize("scenario", ["baseline", "legacy-dtls09"])
def test_replay_write_capture_analyzed_alone(gateway, scenario):
    """--write: the replay's own capture (dumpcap on the client's veth, keys in a pcapng DSB) read by `acflow
    analyze` with no key log shows the six phases as recorded — DTLS decrypted in the recorded mode — and the
    replay report compares that analysis (phases, findings) with the recording: the same."""
    g = gateway(scenario=scenario)
    out = g.work / "replay.pcapng"
    p = subprocess.run(g.replay_argv("--no-timing", "--write", str(out)), capture_output=True, text=True, cwd=ROOT,
                       timeout=90)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert doc["capture"]["file"] == str(out) and doc["capture"]["key_log_lines"] >= 2, doc["capture"]
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # it holds the replay's secrets
    got = {i["what"]: i for i in doc["comparisons"]}
    assert all(got[f"analysed phase {ph}"]["same"] for ph in
               ("tls-handshake", "group-selection", "user-auth", "downloader", "cstp-connect", "dtls"))
    assert got["findings"]["same"], got["findings"]
    a = _cli("analyze", str(out), "--format", "json")
    assert a.returncode in (0, 1), a.stderr
    analysed = json.loads(a.stdout)
    (s,) = analysed["sessions"]
    status = {ph["phase"]: ph["status"] for ph in s["phases"]}
    recorded = {ph["phase"]: ph["recorded"] for ph in doc["phases"]}
    assert status == recorded, (status, recorded)
    dtls = next(ph for ph in s["phases"] if ph["phase"] == "dtls")["details"]
    assert dtls["mode"] == doc["recorded_dtls"]["mode"] and dtls["cipher_suite"] == doc["recorded_dtls"]["cipher_suite"]
    # the capture process and its temporary directory are gone
    assert not [ln for ln in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                if "dumpcap" in ln and "acflow-rp-cap-" in ln]


@pytest.mark.lab
def test_replay_dtls_disabled_is_a_difference(gateway):
    """The gateway no longer offers DTLS (no udp-port): the DTLS phase (ok → absent) and the channel of the pings
    (DTLS → CSTP) differ, exit 1; the pings are still answered, over CSTP."""
    g = gateway({"udp-port": []})
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert "phase dtls" in doc["differences"] and "inner packets channels" in doc["differences"], doc["differences"]
    assert "dtls mode" in doc["differences"]
    phase = next(ph for ph in doc["phases"] if ph["phase"] == "dtls")
    assert (phase["recorded"], phase["replayed"]) == ("ok", "absent")
    assert doc["inner"]["replayed"]["answered"] == 5 and doc["inner"]["replayed"]["channels"] == {"cstp": 5}


@pytest.mark.lab
def test_replay_dtls_blocked_now_is_a_difference(gateway):
    """UDP 443 now dropped at the gateway (the baseline recording had DTLS): the replay's DTLS hellos go
    unanswered, the pings recorded over DTLS wait for it (DTLS_WAIT, 5 s), then go over CSTP and are answered;
    the DTLS phase (ok → failed) and the channels differ, exit 1."""
    g = gateway()
    g.lab.block_udp_443()
    p = subprocess.run(g.replay_argv("--no-timing"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    phase = next(ph for ph in doc["phases"] if ph["phase"] == "dtls")
    assert (phase["recorded"], phase["replayed"]) == ("ok", "failed"), phase
    assert "no answer" in phase["replayed_summary"]
    assert doc["inner"]["replayed"]["answered"] == 5 and doc["inner"]["replayed"]["channels"] == {"cstp": 5}
    assert set(doc["differences"]) == {"phase dtls", "dtls mode", "dtls version", "dtls cipher suite",
                                       "inner packets channels"}, doc["differences"]


@pytest.mark.lab
def test_replay_no_dtls_option(gateway):
    """--no-dtls: no DTLS offered (X-DTLS-* request headers left out), the pings over CSTP; what DTLS would have
    changed is not counted as a difference (the DTLS phase not replayed, the channels not compared; the MTU
    granted without DTLS compared net of the recorded suite's record overhead)."""
    g = gateway()
    p = subprocess.run(g.replay_argv("--no-timing", "--no-dtls"), capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    doc = json.loads(p.stdout)
    assert not any(h.lower().startswith("x-dtls") for h in doc["tunnel"]["connect_headers_sent"])
    assert next(ph for ph in doc["phases"] if ph["phase"] == "dtls")["replayed"] == "not replayed"
    assert doc["inner"]["replayed"]["channels"] == {"cstp": 5} and doc["inner"]["replayed"]["answered"] == 5
    mtu = next(i for i in doc["comparisons"] if i["what"] == "tunnel mtu")
    assert mtu["same"] and "38-byte DTLS record overhead" in mtu["note"], mtu


def test_dtls_offer_and_answer_tables():
    """What the replay offers from a recorded X-DTLS-CipherSuite / X-DTLS12-CipherSuite and how it reads the
    gateway's choice: PSK-NEGOTIATE, legacy DTLS 1.2 and Cisco's 0x0100 suites; anything else left out, said so."""
    from email.message import Message

    from replay.dtls_client import suite_for_answer, supported_offer

    offer, left = supported_offer("X-DTLS-CipherSuite", "PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-"
                                  "POLY1305:DHE-RSA-AES256-SHA:AES256-SHA:AES128-SHA")
    assert offer == "PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:AES256-SHA:AES128-SHA"
    assert left == ["OC2-DTLS1_2-CHACHA20-POLY1305", "DHE-RSA-AES256-SHA"]
    offer, left = supported_offer("X-DTLS12-CipherSuite", "PSK-NEGOTIATE:ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA")
    assert offer == "ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA" and left == ["PSK-NEGOTIATE"]

    def answer(**h):
        m = Message()
        for k, v in h.items():
            m[k.replace("_", "-")] = v
        return m

    assert suite_for_answer(answer(X_DTLS_Port="443", X_DTLS_CipherSuite="PSK-NEGOTIATE"))[0] == "psk-negotiate"
    mode, suite, name = suite_for_answer(answer(X_DTLS_Port="443", X_DTLS_CipherSuite="AES128-SHA"))
    assert (mode, suite.version, suite.cipher, name) == ("legacy", "DTLS0.9", "AES-128-CBC", "AES128-SHA")
    mode, suite, _ = suite_for_answer(answer(X_DTLS_Port="443", X_DTLS12_CipherSuite="AES256-GCM-SHA384"))
    assert (mode, suite.version, suite.mac) == ("legacy", "DTLS1.2", "AEAD")
    assert suite_for_answer(answer(X_DTLS_Port="443", X_DTLS_CipherSuite="RC4-MD5"))[0] == "unsupported"
    assert suite_for_answer(answer(X_DTLS_CipherSuite="PSK-NEGOTIATE"))[0] == "none"  # no port: no DTLS


def test_embedded_keys_make_a_capture_readable_alone(tmp_path):
    """replay.capture.embed_keys (the --write file's DSB): samples/baseline with its key log embedded analyses
    alone like the capture with --keylog — TLS decrypted, PSK-NEGOTIATE DTLS decrypted from the derived key."""
    from analyzer.analyze import analyze_paths, load_keys
    from replay.capture import embed_keys

    out = tmp_path / "with-keys.pcapng"
    out.write_bytes(embed_keys(CAPTURE.read_bytes(), KEYS.read_text()))
    keys, info = load_keys([], [])
    alone = analyze_paths([out], keys, key_info=info)
    keys, info = load_keys([KEYS], [])
    given = analyze_paths([CAPTURE], keys, key_info=info)
    from analyzer.report.json_report import to_document

    a, b = (to_document(x, version="t")["sessions"][0] for x in (alone, given))
    assert [(p["phase"], p["status"]) for p in a["phases"]] == [(p["phase"], p["status"]) for p in b["phases"]]
    assert all(p["status"] in ("ok", "absent") for p in a["phases"])
    with pytest.raises(Exception, match="not a pcapng"):
        embed_keys(b"\xd4\xc3\xb2\xa1" + bytes(40), "")


def test_openssl_cipher_list_keeps_the_recorded_order():
    from replay.gatewayconn import _iana_name, openssl_cipher_list

    names, left = openssl_cipher_list(["TLS_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384",
                                       "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_NOT_A_SUITE_WITH_X"])
    assert names == "AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA" and left == ["TLS_NOT_A_SUITE_WITH_X"]
    assert _iana_name("ECDHE-RSA-AES128-SHA") == "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
