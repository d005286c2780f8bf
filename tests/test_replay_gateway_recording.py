"""`acflow replay gateway` (replay/from_recording.py, replay/replay_gateway.py): a recorded gateway served again.

* unit: the script built from the committed samples holds the recorded answers (CONNECT headers, auth forms, the
  complete document with a fresh token), DTLS as recorded (PSK-NEGOTIATE server, or a UDP sink) and the recorded
  gateway→client packets as timed actions; it round-trips through --script-out / --script;
* live (`lab` marker, root, openconnect): the recording served to a real openconnect in the lab's namespaces;
  openconnect's own log shows the recorded address, MTU and DTLS outcome; the replay's capture (keys from the
  gateway's and openconnect's key logs) diffed against the recording is the same; an edited script (another
  MTU, DTLS dropped) makes `acflow diff` say what changed.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analyzer.diff import diff_documents
from replay.from_recording import auth_request_xml, build_script, complete_xml, load_recorded, rewrite_destination
from replay.script import Script

from .conftest import ROOT, facts, sample
from .helpers import doc, phase, require

GW_OUTER = "198.18.0.1"  # the lab's gateway address (lab/netns.py)


def recorded(name: str):
    d = sample(name)
    return load_recorded(d / "capture.pcapng", [d / "keys.log"])


def _step(script: Script, method: str):
    return [s for s in script.steps if (s.expect.method or "").upper() == method]


# ----------------------------------------------------------------------------------------------------------------
# unit: the script built from a recording
# ----------------------------------------------------------------------------------------------------------------

def test_baseline_script_holds_the_recorded_gateway():
    rec = recorded("baseline")
    r = build_script(rec)
    s = r.script
    sess = doc("baseline")["sessions"][0]
    con = phase(sess, "cstp-connect")["details"]["connects"][0]
    (connect,) = _step(s, "CONNECT")
    sent = {k.lower(): v for k, v in connect.respond.headers}
    for name, value in con["response_headers"]:
        if name.lower() in ("x-dtls-app-id", "x-dtls-session-id"):
            assert sent[name.lower()] == "${dtls_session_id}"  # fresh, not the recorded secret
        else:
            assert sent[name.lower()] == value, name
    assert connect.expect.cookie == "${cookie}" and connect.respond.status == 200
    # the POSTs: matched by what they are, not by position
    posts = _step(s, "POST")
    assert [p.expect.body_contains for p in posts] == [['type="init"'], ['type="auth-reply"', "<username>"],
                                                       ['type="auth-reply"', "<password>"]]
    complete = posts[-1].respond
    recorded_xml = phase(sess, "user-auth")["details"]["complete_xml"]
    # ocserv's complete document carries no session token (the cookie is in Set-Cookie): the same document, and
    # the new cookie in Set-Cookie
    assert complete.body == recorded_xml and "<session-token>" not in recorded_xml
    assert any(k == "Set-Cookie" and v.startswith("webvpn=${cookie}") for k, v in complete.headers)
    rounds = phase(sess, "user-auth")["details"]["rounds"]
    assert f"<message>{rounds[0]['message']}</message>" in posts[1].respond.body
    # DTLS PSK-NEGOTIATE served on the recorded port, no HelloVerifyRequest (ocserv sends none)
    assert r.dtls == "psk-negotiate" and s.dtls is not None
    assert s.dtls.port == int(sent["x-dtls-port"]) and s.dtls.hello_verify is False
    # every recorded gateway→client packet, in order, on the channel it was recorded on
    s2c = [p for p in rec.inner if p[1] == "s2c"]
    data = [a for a in s.cstp.actions if a.send == "data"]
    assert len(data) == len(s2c) == sess["tunnel"]["inner_packets"]["s2c"] == r.packets
    assert [bytes.fromhex(a.payload_hex) for a in data] == [p[3] for p in s2c]
    assert [a.channel or "cstp" for a in data] == [p[2] for p in s2c]
    ats = [a.at for a in data]
    assert ats == sorted(ats) and ats[0] > 0
    assert not s.cstp.icmp_echo  # the recorded echo replies are re-driven, none invented


def test_dtls_blocked_is_dropped_and_auth_fail_stops_at_the_rejection():
    r = build_script(recorded("dtls-blocked"))
    assert r.dtls == "dropped" and r.script.dtls is None and r.script.udp_sinks == [443]
    assert all(a.channel == "" for a in r.script.cstp.actions if a.send == "data")  # recorded over CSTP
    r = build_script(recorded("auth-fail"))
    assert not _step(r.script, "CONNECT") and r.packets == 0
    last = _step(r.script, "POST")[-1].respond.body
    rounds = phase(doc("auth-fail")["sessions"][0], "user-auth")["details"]["rounds"]
    assert "Login failed." in last and rounds[-1]["rejected"]


@pytest.mark.parametrize("name", ["legacy-dtls09", "legacy-dtls"])
def test_legacy_dtls_is_served_in_the_recorded_version_and_suite(name):
    sess = doc(name)["sessions"][0]
    d = phase(sess, "dtls")["details"]
    heads = dict(phase(sess, "cstp-connect")["details"]["connects"][0]["response_headers"])
    r = build_script(recorded(name))
    assert r.script.dtls is not None and r.script.dtls.mode == "legacy"
    assert r.script.dtls.version == d["version"]
    assert r.script.dtls.suite == (heads.get("X-DTLS-CipherSuite") or heads["X-DTLS12-CipherSuite"])
    (connect,) = _step(r.script, "CONNECT")
    assert dict(connect.respond.headers)["X-DTLS-Session-ID"] == "${dtls_session_id}"


def test_dtls_answered_from_another_port_is_answered_so():
    r = build_script(recorded("scripted/dtls-source-mismatch"))
    flows = phase(doc("scripted/dtls-source-mismatch")["sessions"][0], "dtls")["details"]["flows"]
    (resp,) = r.script.udp_responders
    assert f"{GW_OUTER}:{resp.port}" in {f["gateway"] for f in flows if not f["hello_verify_requests"]}
    assert f"{GW_OUTER}:{resp.reply_from}" in {f["gateway"] for f in flows if f["hello_verify_requests"]}
    assert r.script.dtls is None and not r.script.udp_sinks


def test_speed_address_and_script_round_trip(tmp_path):
    rec = recorded("mtu")
    slow, fast = build_script(rec).script, build_script(rec, speed=4.0).script
    a0 = [a.at for a in slow.cstp.actions]
    assert [round(a * 4, 3) for a in (x.at for x in fast.cstp.actions)] == [round(a, 3) for a in a0]
    moved = build_script(rec, address="198.19.0.77").script
    (connect,) = _step(moved, "CONNECT")
    assert dict(connect.respond.headers)["X-CSTP-Address"] == "198.19.0.77"
    for a in (x for x in moved.cstp.actions if x.send == "data"):
        pkt = bytes.fromhex(a.payload_hex)
        if pkt[0] >> 4 == 4:
            assert pkt[16:20] == bytes([198, 19, 0, 77])
    out = tmp_path / "script.json"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "replay", "gateway",
                        str(sample("mtu") / "capture.pcapng"), "--keylog", str(sample("mtu") / "keys.log"),
                        "--script-out", str(out), "--no-serve"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert Script.load(out).to_dict() == slow.to_dict()


def test_late_answers_are_given_as_late():
    """The recorded gateway answered the credentials 20 s late (auth-mfa-slow), the CONNECT 8 s late (connect-slow):
    the script answers as late (its steps' delay; faster with --speed), as the scripted gateway's own log timed them;
    the baseline's prompt answers stay prompt."""
    for name, kind, step in (("scripted/auth-mfa-slow", "auth-reply", "auth"), ("scripted/connect-slow", "connect",
                                                                                  "connect")):
        ev = [json.loads(x) for x in (sample(name) / "gateway-events.jsonl").read_text().splitlines() if x.strip()]
        asked = next(e["t"] for e in ev if e["type"] == "request" and e.get("step") == kind)
        answered = next(e["t"] for e in ev if e["type"] == "response" and e.get("step") == kind)
        rec = recorded(name)
        late = [x for x in build_script(rec).script.steps if x.delay]
        assert [x.id.split("-")[0] for x in late] == [step]
        assert abs(late[0].delay - (answered - asked)) < 0.2, (late[0].delay, answered - asked)
        fast = [x.delay for x in build_script(rec, speed=4.0).script.steps if x.delay]
        assert len(fast) == 1 and abs(fast[0] * 4 - late[0].delay) < 0.01
    assert not any(x.delay for x in build_script(recorded("baseline")).script.steps)


def test_rebuilt_documents_parse_as_recorded():
    from dissectors.aggauth import parse_config_auth

    xml = auth_request_xml(auth_id="main", message="Login failed.\nPlease enter your password.", error=None,
                           fields=["password"], groups=[{"value": "eng", "label": "Engineering", "selected": True}])
    d = parse_config_auth(xml)
    assert d.type == "auth-request" and d.auth.id == "main"
    assert [f.name for f in d.auth.form.fields][:1] == ["password"]
    assert complete_xml("<session-token>SECRET</session-token><server-cert-hash>AB</server-cert-hash>${x}") == \
        "<session-token>${cookie}</session-token><server-cert-hash>${server_cert_sha1}</server-cert-hash>$&#123;x}"


def test_rewrite_destination_recomputes_checksums():
    from scapy.layers.inet import ICMP, IP

    pkt = bytes(IP(src="198.19.0.1", dst="198.19.0.50") / ICMP(id=7, seq=1) / b"abc")
    out = rewrite_destination(pkt, "198.19.0.9")
    ip = IP(out)
    assert ip.dst == "198.19.0.9" and ip[ICMP].id == 7
    assert IP(bytes(ip)).chksum == IP(out).chksum
    fresh = IP(src="198.19.0.1", dst="198.19.0.9") / ICMP(id=7, seq=1) / b"abc"
    assert out == bytes(fresh)


def test_unusable_inputs_exit_4(tmp_path):
    junk = tmp_path / "x.pcapng"
    junk.write_bytes(b"nope")
    bad = tmp_path / "s.json"
    bad.write_text('{"steps": []}')
    for args in ([str(junk)], ["--script", str(bad)], [str(sample("baseline") / "capture.pcapng")]):
        p = subprocess.run([sys.executable, "-m", "analyzer.cli", "replay", "gateway", *args, "--no-serve"],
                           capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 4, (args, p.stderr)
        assert "Traceback" not in p.stderr


# ----------------------------------------------------------------------------------------------------------------
# live: a real openconnect against the replayed gateway
# ----------------------------------------------------------------------------------------------------------------

def _prerequisites():
    from lab.netns import missing_tools

    require(os.geteuid() == 0, "needs root (network namespaces)")
    missing = missing_tools(("openconnect", "dumpcap", "ip", "ethtool"))
    require(not missing, f"not installed: {', '.join(missing)}")


def replay_live(name: str, work: Path, *, script: Path | None = None, hold: float = 2.0,
                outer_mtu: int | None = None, speed: float = 1.0, pings: bool = True,
                configured_wait: float = 16.0) -> dict:
    """Serve sample ``name`` (or ``script``) from the gateway namespace to openconnect in the client namespace,
    captured on the client's veth; the recorded client's pings (the sample's facts.json) run again through the
    tunnel (``pings``). Returns {"capture", "keys", "client_log", "gateway_log", "connected"}."""
    from lab.client import USER, USER_PASSWORD, openconnect_argv, start_openconnect, write_client_script
    from lab.netns import GW_OUTER, Lab
    from lab.scenarios import SCENARIOS
    from replay.replay_gateway import pin_sha256

    d = sample(name)
    gw_keys, cl_keys = work / "gw-keys.log", work / "client-keys.log"
    capture = work / "capture.pcapng"
    src = ["--script", str(script)] if script else [str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"),
                                                    "--speed", str(speed)]
    argv = [sys.executable, "-m", "analyzer.cli", "replay", "gateway", *src, "--listen", f"{GW_OUTER}:443",
            "--cert", str(d / "server-cert.pem"), "--key", str(d / "server-key.pem"), "--keylog-out", str(gw_keys),
            "--events", str(work / "events.jsonl")]
    connected = False
    # the recorded client, set up again: outer MTU, openconnect options, forced TUN MTU, password (lab scenarios;
    # the scripted cases' openconnect runs with the lab's defaults)
    sc = SCENARIOS.get(name)
    client_args = list(sc.client_args) if sc else []
    cenv = dict(os.environ, SSLKEYLOGFILE=str(cl_keys))
    if sc and sc.force_tun_mtu:
        cenv["ACFLOW_FORCE_MTU"] = str(sc.force_tun_mtu)
    with Lab(tag=f"rg{os.getpid() % 100000}") as lab:
        if outer_mtu or (sc and sc.outer_mtu):
            lab.set_outer_mtu(outer_mtu or sc.outer_mtu)
        dump = lab.start_capture(capture, work / "dumpcap.log")
        # every interface of the client namespace, openconnect's TUN included once it exists (Linux "any")
        anydump = lab.start(lab.client_ns, "dumpcap-any", ["dumpcap", "-q", "-i", "any", "-y", "LINUX_SLL", "-w",
                                                            str(work / "client-any.pcapng")], work / "dumpcap-any.log")
        # the gateway's own capture of the replay (on its side of the veth), keys embedded
        argv += ["--write", str(work / "own.pcapng"), "--interface", lab.gw_if]
        gw = lab.start(lab.gw_ns, "replay-gateway", argv, work / "gateway.log",
                       env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)), cwd=ROOT)
        assert gw.wait_for("[gw] listening", 30) is not None, gw.tail(20)
        vpnc = write_client_script(work)
        client = start_openconnect(lab, [*openconnect_argv(pin_sha256(d / "server-cert.pem")), *client_args],
                                   work, cenv, vpnc, auth_args=["-u", USER, "--passwd-on-stdin"],
                                   password=sc.password if sc else USER_PASSWORD)
        if client.wait_for("CSTP connected", 20) is not None:
            connected = True
            # with DTLS dropped, openconnect configures the TUN only once it gives up on DTLS (about 12 s)
            if configured_wait:
                client.wait_for("Configured as", configured_wait)
            time.sleep(0.5)
            for a in facts(name)["actions"] if pings else ():
                if a["action"] == "ping-start" and client.proc.poll() is None:
                    lab.ns_run(lab.client_ns, ["ping", "-n", "-c", str(a["count"]), "-i", "0.2", "-W", "1", "-s",
                                               str(a["size"]), *(["-M", "do"] if a.get("df") else []),
                                               a["target"]], check=False)
            time.sleep(hold)
            if client.proc.poll() is None:
                client.interrupt(15)
        else:
            try:
                client.proc.wait(20)
            except subprocess.TimeoutExpired:
                client.interrupt(5)
        time.sleep(0.5)
        gw.stop(timeout=15)  # SIGTERM: the gateway stops, ends its capture and embeds its keys
        dump.stop()
        anydump.stop()
    keys = work / "keys.log"
    keys.write_text("".join(p.read_text() for p in (gw_keys, cl_keys) if p.exists()))
    return {"capture": capture, "keys": keys, "own_capture": work / "own.pcapng", "any": work / "client-any.pcapng",
            "client_log": (work / "client.log").read_text(errors="replace"),
            "gateway_log": (work / "gateway.log").read_text(errors="replace"), "connected": connected}


def _diff(name: str, run: dict, *ignore: str) -> subprocess.CompletedProcess:
    d = sample(name)
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "diff", str(d / "capture.pcapng"),
                           str(run["capture"]), "--keylog", str(d / "keys.log"), "--keylog-new", str(run["keys"]),
                           "--format", "json", *[a for i in ignore for a in ("--ignore", i)]],
                          capture_output=True, text=True, cwd=ROOT)


def _gateway_controls_sent(sess: dict) -> dict[tuple[str, str], int]:
    """{(cstp | dtls, DPD_REQ | KEEPALIVE): frames the gateway sent} of a session document (DTLS: all its flows;
    its padded DPD-REQs, MTU probes, not counted)."""
    out = {}
    chans = [("cstp", phase(sess, "cstp-connect")["details"]["channel"])]
    chans += [("dtls", f["channel"]) for f in (phase(sess, "dtls").get("details") or {}).get("flows") or ()]
    for name, ch in chans:
        for kind in ("DPD_REQ", "KEEPALIVE"):
            n = (ch["frames"]["s2c"].get(kind) or {}).get("count", 0)
            if kind == "DPD_REQ":
                n -= len([p for p in ch.get("mtu_probes") or () if p.get("direction") == "s2c"])
            out[(name, kind)] = out.get((name, kind), 0) + n
    return out


def _analysed(run: dict) -> dict:
    """The JSON document of a replay's capture (its keys: the gateway's and openconnect's key logs)."""
    from analyzer import __version__
    from analyzer.analyze import analyze_paths, load_keys
    from analyzer.report.json_report import to_document

    keys, info = load_keys([run["keys"]], [])
    return to_document(analyze_paths([run["capture"]], keys, info), version=__version__, show_secrets=False)


def _tun_up_after_connect(work: Path) -> float:
    """Seconds from the replay's CONNECT answer (the gateway's tunnel-start event) to the vpnc-script's "connect"
    (openconnect's TUN configured and up)."""
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    start = next(e["t"] for e in events if e["type"] == "tunnel-start")
    configured = next(float(line.split("\t")[0]) for line in (work / "script.log").read_text().splitlines()
                      if line.split("\t")[1:2] == ["connect"])
    return configured - start


def _inner_packets_seen(capture: Path, wanted: list[bytes]) -> list[bytes]:
    """The IP packets of ``capture`` (Linux cooked capture of every interface) received by the client namespace
    (not sent: the SLL packet type is not 4, "outgoing") that are in ``wanted``, in order."""
    from scapy.utils import RawPcapNgReader

    want = set(wanted)
    out = []
    for raw, _meta in RawPcapNgReader(str(capture)):
        if len(raw) > 16 and raw[:2] != b"\x00\x04" and raw[14:16] in (b"\x08\x00", b"\x86\xdd") \
                and raw[16:] in want:
            out.append(raw[16:])
    return out


# the client's own traffic (the lab's pings) is not the gateway's doing: not replayed, not compared
CLIENT_TRAFFIC = "traffic.*c2s"


# sample, seconds held after the pings, --speed (dtls-blocked's downstream packets span 13 s: played 4× faster);
# scripted/terminate: the recorded gateway ends the session with a TERMINATE 4 s after CONNECT;
# scripted/connect-unavailable: CONNECT answered 503 with an X-Reason
# scripted/dtls-cookie: PSK-NEGOTIATE behind a HelloVerifyRequest (RFC 6347 cookie), as a Cisco gateway does;
# legacy-dtls09: legacy DTLS 0x0100 (AES128-SHA) resumed from the client's X-DTLS-Master-Secret
# scripted/dtls-mtu-differs: the recorded gateway sent a DPD-REQ over CSTP 2 s after CONNECT (legacy DTLS to a
# black-hole port: the tunnel stays on CSTP); scripted/gateway-dpd-keepalive: the recorded gateway sent KEEPALIVE
# and DPD-REQ over CSTP, then over DTLS (PSK-NEGOTIATE), up to 6.5 s after CONNECT; scripted/connect-slow: the
# recorded gateway answered the CONNECT 8 s late (the replay does too: CONNECT_SLOW on both sides of the diff)
LIVE = [("baseline", 1.0, 1.0), ("dtls-blocked", 1.0, 4.0), ("mtu", 1.0, 1.0), ("auth-fail", 0.0, 1.0),
        ("scripted/terminate", 4.0, 1.0), ("scripted/connect-unavailable", 0.0, 1.0),
        ("scripted/dtls-cookie", 1.0, 1.0), ("legacy-dtls09", 1.0, 1.0), ("scripted/dtls-mtu-differs", 1.0, 1.0),
        ("scripted/gateway-dpd-keepalive", 6.0, 1.0), ("scripted/session-timeout-remaining", 7.0, 1.0),
        ("scripted/connect-slow", 1.0, 1.0)]


@pytest.mark.lab
@pytest.mark.parametrize(("name", "hold", "speed"), LIVE, ids=[c[0] for c in LIVE])
def test_live_recording_replayed_is_the_same(tmp_path, name, hold, speed):
    _prerequisites()
    sess = doc(name)["sessions"][0]
    run = replay_live(name, tmp_path, hold=hold, speed=speed)
    log = run["client_log"]
    connect = phase(sess, "cstp-connect")
    if connect["status"] == "ok":
        # openconnect's own log: the recorded address and MTU, and the recorded DTLS outcome
        assert run["connected"], log[-2000:]
        params = connect["details"]["parameters"]
        assert f"Configured as {params['address']}" in log
        assert f"X-CSTP-MTU: {params['mtu']}" in log
        assert f"CSTP connected. DPD {params['dpd']}, Keepalive {params['keepalive']}" in log
        assert ("Established DTLS connection" in log) == (phase(sess, "dtls")["status"] == "ok")
        hvr = sum(f.get("hello_verify_requests") or 0 for f in phase(sess, "dtls")["details"].get("flows") or ())
        assert ("dtls-hello-verify-request" in run["gateway_log"]) == (hvr > 0)
        if speed == 1.0:
            # the recorded gateway→client packets reached the client's TUN, byte for byte and in order: those
            # recorded once the replay's TUN was up (openconnect brings it up after the DTLS handshake, which
            # takes up to 0.1 s more in the replay; at least 0.5 s after the CONNECT answer), when not played
            # faster (with DTLS dropped, openconnect waits ~12 s before it does)
            # IPv4 only: the recorded IPv6 packets are link-local multicast (MLD, router solicitations) that the
            # replay's client kernel may send itself, byte for byte (a stable link-local address)
            t0 = connect["details"]["connects"][0]["response_time"]
            up = max(0.5, _tun_up_after_connect(tmp_path) + 0.05)
            want = [pkt for ts, direction, _, pkt in recorded(name).inner
                    if direction == "s2c" and ts - t0 >= up and pkt[0] >> 4 == 4]
            assert want and _inner_packets_seen(run["any"], want) == want
        # the gateway's own DPD requests and keepalives, as recorded: openconnect got them, and the replay's
        # capture holds as many on each channel as the recording (the script sends them at the recorded times)
        sent = _gateway_controls_sent(sess)
        for (channel, kind), n in sent.items():
            if n:
                what = {"DPD_REQ": "DPD request", "KEEPALIVE": "Keepalive"}[kind]
                assert f"Got {channel.upper()} {what}" in log
        if any(sent.values()):
            assert _gateway_controls_sent(_analysed(run)["sessions"][0]) == sent
        end = sess["tunnel"].get("end") or {}
        if end.get("direction") == "s2c" and end.get("type") == "TERMINATE":
            assert "received server terminate packet" in log
        if end.get("direction") == "s2c" and end.get("type") == "DISCONNECT":  # the gateway's, with its reason
            assert "Received server disconnect" in log and (end.get("reason") or "") in log
    elif phase(sess, "user-auth")["status"] == "failed":
        assert not run["connected"]
        rejection = phase(sess, "user-auth")["details"]["failure_message"]
        assert rejection and rejection in log
    else:  # the CONNECT refused as recorded
        assert not run["connected"]
        con = connect["details"]["connects"][0]
        assert con["status"] != 200 and f"reason: {con['x_reason']}" in log
    p = _diff(name, run, CLIENT_TRAFFIC)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr
    # the gateway's own capture, with no key log but the keys it embedded (pcapng DSB): the same verdict
    d = sample(name)
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "diff", str(d / "capture.pcapng"),
                        str(run["own_capture"]), "--keylog", str(d / "keys.log"), "--keylog-new", os.devnull,
                        "--ignore", CLIENT_TRAFFIC], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr


@pytest.mark.lab
def test_live_edited_script_differs(tmp_path):
    """Another MTU and DTLS dropped in the script: the replay differs from the recording, and diff says how."""
    _prerequisites()
    d = sample("baseline")
    script = tmp_path / "script.json"
    subprocess.run([sys.executable, "-m", "analyzer.cli", "replay", "gateway", str(d / "capture.pcapng"),
                    "--keylog", str(d / "keys.log"), "--script-out", str(script), "--no-serve"], check=True,
                   cwd=ROOT, capture_output=True)
    s = json.loads(script.read_text())
    connect = next(st for st in s["steps"] if st["expect"].get("method") == "CONNECT")
    connect["respond"]["headers"] = [[k, "1300" if k == "X-CSTP-MTU" else v] for k, v in connect["respond"]["headers"]]
    s["udp_sinks"] = [s.pop("dtls")["port"]]
    script.write_text(json.dumps(s))
    run = replay_live("baseline", tmp_path, script=script, hold=1.5, configured_wait=0, pings=False)
    assert run["connected"], run["client_log"][-2000:]
    assert "X-CSTP-MTU: 1300" in run["client_log"] and "Established DTLS connection" not in run["client_log"]
    p = _diff("baseline", run, CLIENT_TRAFFIC)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    changes = {c["field"]: c for c in json.loads(p.stdout)["pairs"][0]["changes"]}
    assert changes["cstp.response.X-CSTP-MTU"]["new"] == "1300"
    assert changes["tunnel.mtu"]["new"] == 1300
    assert changes["phase.dtls"]["baseline"] == "ok" and changes["phase.dtls"]["new"] != "ok"
    assert changes["dtls.established"]["new"] is False


def test_diff_of_the_recording_and_its_own_document_is_the_same():
    # the JSON form of a recording and the recording itself: what the live tests compare replays against
    a = doc("baseline", show_secrets=False)
    assert not diff_documents(a, json.loads(json.dumps(a))).differs


@contextlib.contextmanager
def local_gateway(script: Script, tmp_path: Path, name: str = "baseline"):
    """``script`` served by a ScriptedGateway on 127.0.0.1 (no DTLS server: only its HTTP side); yields a function
    ``ask(method, target, body=b"", headers=())`` → (status line, headers, body) over one TLS connection."""
    import io
    import socket
    import ssl

    from replay.gateway import ScriptedGateway

    d = sample(name)
    script.dtls = None  # no DTLS server on the host's UDP 443
    gw = ScriptedGateway(script, d / "server-cert.pem", d / "server-key.pem", host="127.0.0.1", port=0,
                         events=tmp_path / "events.jsonl", out=io.StringIO())
    gw.start()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port), timeout=5),
                             server_hostname="vpn.acflow.test") as sock:
            def ask(method: str, target: str, body: bytes = b"", headers=()):
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
                sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
                             .encode() + body)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += sock.recv(65536)
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("iso-8859-1").split("\r\n")
                heads = [tuple(x.strip() for x in h.split(":", 1)) for h in lines[1:]]
                length = int(next(v for k, v in heads if k.lower() == "content-length"))
                while len(rest) < length:
                    rest += sock.recv(65536)
                return lines[0], heads, rest

            yield ask
    finally:
        gw.stop()


def test_unexpected_request_gets_the_nearest_recorded_answer(tmp_path):
    """A request no step matches (here an auth-reply with a field the recorded client never sent) is answered as
    the recorded gateway answered the next exchange with that method and path; a path never recorded gets 404."""
    script = build_script(recorded("baseline")).script
    with local_gateway(script, tmp_path) as ask:
        answers = [ask("POST", target, body)[::2] for target, body in (
            ("/", b'<config-auth type="init"/>'),
            ("/auth", b'<config-auth type="auth-reply"><auth><otp>1</otp></auth></config-auth>'),
            ("/nowhere", b"x"))]
    posts = _step(script, "POST")
    assert answers[0] == ("HTTP/1.1 200 OK", posts[0].respond.body.encode())
    assert answers[1] == ("HTTP/1.1 200 OK", posts[1].respond.body.encode())  # the next recorded POST /auth's answer
    assert answers[2][0].startswith("HTTP/1.1 404")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["nearest"] for e in events if e["type"] == "request"] == [False, True, False]


@pytest.mark.parametrize("name", ["downloader", "scripted/profile-hash-mismatch", "scripted/profile-missing"])
def test_downloader_gets_the_recorded_files(tmp_path, name):
    """The downloader's GETs are answered with the recorded status, headers and body: the bytes a client fetches
    from the replay have the SHA-1 the recording's session model gives (a 404 with the recorded 404 page)."""
    import hashlib

    gets = phase(doc(name)["sessions"][0], "downloader")["details"]["gets"]
    assert gets
    script = build_script(recorded(name)).script
    assert Script.from_dict(json.loads(json.dumps(script.to_dict()))).to_dict() == script.to_dict()
    with local_gateway(script, tmp_path, name) as ask:
        for g in gets:
            status, heads, body = ask("GET", g["target"], headers=[("Cookie", "webvpn=x")])
            assert status.split()[1] == str(g["status"])
            assert (len(body), hashlib.sha1(body).hexdigest().upper()) == (g["size"], g["sha1"])
            assert "text/" in dict((k.lower(), v) for k, v in heads)["content-type"]  # as recorded, not generic


def test_usage_errors_exit_2(tmp_path):
    cap = str(sample("baseline") / "capture.pcapng")
    for args in ([], [cap, "--script", str(tmp_path / "s.json")], [cap, "--speed", "0"], [cap, "--cert", cap],
                 [cap, "--write", str(tmp_path / "w.pcapng")]):
        p = subprocess.run([sys.executable, "-m", "analyzer.cli", "replay", "gateway", *args], capture_output=True,
                           text=True, cwd=ROOT)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr


def _form(xml: bytes | str):
    """(auth id, message, [(name, type, label, [(value, label, selected)…])…]) of an auth-request's form."""
    from dissectors.aggauth import parse_config_auth

    d = parse_config_auth(xml)
    assert d.type == "auth-request" and d.auth is not None and d.auth.form is not None
    return (d.auth.id, d.auth.message.formatted if d.auth.message else None,
            [(f.name, f.type, f.label, [(o.value, o.label, o.selected) for o in f.options])
             for f in d.auth.form.fields])


@pytest.mark.parametrize("name", ["group-select", "baseline", "auth-fail", "scripted/login-retry-asa"])
def test_served_forms_are_the_recorded_ones(tmp_path, name):
    """Every auth-request the replay serves has the recorded form field by field — name, type, label, a select's
    options — (and the recorded auth id and message): compared with the recorded gateway's answers as the capture
    holds them (the HTTP exchanges of the analysis, parsed again here), not with the session model."""
    from analyzer.analyze import analyze_paths, load_keys

    d = sample(name)
    keys, info = load_keys([d / "keys.log"], [])
    pipes: list = []
    analyze_paths([d / "capture.pcapng"], keys, info, on_pipeline=pipes.append)
    exchanges = sorted((ex for t in pipes[0].tcp.values() for ex in t.exchanges
                        if ex.request.method == "POST" and ex.response is not None
                        and b'type="auth-request"' in ex.response.body), key=lambda ex: ex.request.ts)
    want = [_form(ex.response.body) for ex in exchanges]
    assert want and any(f[1] for f in want)
    script = build_script(recorded(name)).script
    served = []
    with local_gateway(script, tmp_path, name) as ask:
        for step in _step(script, "POST"):
            status, _, body = ask("POST", step.expect.path, "".join(step.expect.body_contains).encode())
            assert status.split()[1] == str(step.respond.status)
            if b'type="auth-request"' in body:
                served.append(_form(body))
    assert served == want


def test_gateway_dpd_and_keepalives_are_scripted_at_their_recorded_times():
    """The gateway's own DPD-REQs and KEEPALIVEs (scripted/gateway-dpd-keepalive: over CSTP, then over DTLS) become
    actions at their recorded offsets from the CONNECT answer, on the channel recorded; beyond the 50 the model
    lists, the rest follow at the median recorded interval (here: the listed series cut to two)."""
    import copy

    from replay.from_recording import gateway_controls

    name = "scripted/gateway-dpd-keepalive"
    rec = recorded(name)
    sess = rec.session
    t0 = phase(sess, "cstp-connect")["details"]["connects"][0]["response_time"]
    want = []
    cstp = phase(sess, "cstp-connect")["details"]["channel"]
    flows = phase(sess, "dtls")["details"]["flows"]
    for channel, ch in [("", cstp)] + [("dtls", f["channel"]) for f in flows]:
        want += [(round(e["ts"] - t0, 6), "dpd-req", channel) for e in ch["dpd"]["exchanges"]
                 if e["direction"] == "s2c"]
        want += [(round(t - t0, 6), "keepalive", channel) for t in ch["keepalive_times"]["s2c"]]
    assert {(w[1], w[2]) for w in want} == {("dpd-req", ""), ("keepalive", ""), ("dpd-req", "dtls"),
                                            ("keepalive", "dtls")}
    got = [(a.at, a.send, a.channel) for a in build_script(rec).script.cstp.actions if a.send != "data"]
    assert sorted(got) == sorted(want)
    # a longer recording than the model lists: the DTLS series cut to their first two, the rest re-made
    (dtls,) = [f["channel"] for f in flows if f["channel"]["dpd"]["requests"]["s2c"]]
    cut = copy.deepcopy(dtls)
    cut["dpd"]["exchanges"] = [e for e in cut["dpd"]["exchanges"] if e["direction"] == "s2c"][:2]
    cut["keepalive_times"]["s2c"] = cut["keepalive_times"]["s2c"][:2]
    full = sorted(gateway_controls(dtls, t0, float("inf")), key=lambda x: x[1])
    remade = sorted(gateway_controls(cut, t0, float("inf")), key=lambda x: x[1])
    assert [k for k, _ in remade] == [k for k, _ in full] and len(full) == 6
    assert all(abs(a[1] - b[1]) < 0.05 for a, b in zip(remade, full, strict=True))
