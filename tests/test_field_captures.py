"""Captures as they come from the field, not the lab: started mid-tunnel (a ring buffer's later file, a capture
started after the problem), filtered to UDP, cut by a snapshot length (tcpdump -s N, Windows pktmon's 128 bytes).

Mid-tunnel: a CSTP tunnel over TLS seen without its handshake — no ServerHello names the suite, so the records are
sized by the one protection they all fit (analyzer/keyless.py `guess_protection`); the session is recognised
(`cstp-record-pattern`) and its tunnel read as without keys (analyzer/inference.py `read_tunnel_before_capture`);
the same for a DTLS flow seen only mid-tunnel (`dtls-record-pattern`). Filtered to UDP: phases 1-5 `not-captured`.
Snapshot length: CAPTURE_TRUNCATED, the TLS and DTLS records read from the headers the cut packets kept.

The pieces are the lab's real captures cut with editcap the way a ring buffer (`-c N`) or a snapshot length (`-s N`)
cuts them, or filtered by tshark; the truth for each record is the keyed analysis of the whole capture.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from analyzer.agreement import _analyse, _keyed_classes
from analyzer.keyless import (
    ANSWER_WINDOW,
    CSTP_HEADER,
    DTLS_GUESS_CANDIDATES,
    DTLS_TYPE_BYTE,
    GUESS_CANDIDATES,
    Protection,
    TunnelEstimate,
    control_pattern,
    guess_protection,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
GATEWAY = ("198.18.0.1", 443)
#: samples whose tunnel runs over TLS with DPD and keepalives for long enough to be cut
TUNNELS = ["keepalive-dpd", "dpd-late-answer", "dtls-blocked", "nat-rebinding", "scripted/gateway-dpd-keepalive",
           "scripted/dtls-mtu-differs"]


def _editcap() -> str:
    e = shutil.which("editcap")
    if e is None:
        pytest.skip("editcap not installed")
    return e


def _pieces(name: str, every: int, tmp: Path) -> list[Path]:
    out = tmp / f"{name.replace('/', '_')}-{every}"
    out.mkdir()
    subprocess.run([_editcap(), "-c", str(every), str(SAMPLES / name / "capture.pcapng"), str(out / "ring.pcapng")],
                   check=True, capture_output=True)
    return sorted(out.glob("ring_*.pcapng"))


def _sizes(pattern: list[tuple[float, str, int]]) -> dict:
    out: dict = {"c2s": [], "s2c": []}
    for i, (ts, d, n) in enumerate(pattern):
        out[d].append((ts, n, i + 1))
    return out


def _tunnel(prot: Protection, start: float = 0.0) -> list[tuple[float, str, int]]:
    """A CSTP tunnel's records under ``prot``: DATA both ways, a DPD exchange, keepalives, more DPD."""
    ctl = prot.record_length(CSTP_HEADER)
    data = [prot.record_length(CSTP_HEADER + n) for n in (84, 52, 1400, 40)]
    recs = [(start + 0.1, "c2s", data[0]), (start + 0.12, "s2c", data[0]), (start + 1.0, "c2s", data[2]),
            (start + 1.01, "s2c", data[1]), (start + 10.0, "c2s", ctl), (start + 10.001, "s2c", ctl),
            (start + 16.0, "c2s", ctl), (start + 22.0, "c2s", ctl), (start + 30.0, "c2s", ctl),
            (start + 30.001, "s2c", ctl), (start + 31.0, "c2s", data[3])]
    return recs


# -- the guess, on record sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,prot", GUESS_CANDIDATES, ids=[n for n, _ in GUESS_CANDIDATES])
def test_each_protection_is_told_from_the_sizes_alone(name, prot):
    assert guess_protection(_sizes(_tunnel(prot))) == (name, prot)


def test_control_sizes_differ_between_candidates():
    sizes = [p.record_length(CSTP_HEADER) for _, p in GUESS_CANDIDATES]
    assert len(set(sizes)) == len(sizes) == 7
    sizes = [p.record_length(DTLS_TYPE_BYTE) for _, p in DTLS_GUESS_CANDIDATES]
    assert len(set(sizes)) == len(sizes) == 6


@pytest.mark.parametrize("name,prot", DTLS_GUESS_CANDIDATES, ids=[n for n, _ in DTLS_GUESS_CANDIDATES])
def test_each_dtls_protection_is_told_from_the_sizes_alone(name, prot):
    ctl = prot.record_length(DTLS_TYPE_BYTE)
    data = [prot.record_length(DTLS_TYPE_BYTE + n) for n in (84, 1400, 60)]
    recs = [(0.1, "c2s", data[0]), (0.11, "s2c", data[0]), (1.0, "s2c", data[1]), (10.0, "c2s", ctl),
            (10.001, "s2c", ctl), (20.0, "c2s", ctl), (20.001, "s2c", ctl), (21.0, "c2s", data[2])]
    assert guess_protection(_sizes(recs), DTLS_GUESS_CANDIDATES, DTLS_TYPE_BYTE) == (name, prot)
    # two control packets only (one DPD exchange): not enough
    assert guess_protection(_sizes(recs[:5]), DTLS_GUESS_CANDIDATES, DTLS_TYPE_BYTE) is None


def test_webrtc_data_channel_sizes_are_not_a_dtls_tunnel():
    """SCTP over DTLS (a WebRTC data channel): heartbeats and their acks are 16+ bytes of plaintext, never the
    AnyConnect channel's one-byte control packet."""
    gcm = DTLS_GUESS_CANDIDATES[0][1]
    recs = [(t, d, gcm.record_length(n)) for k in range(10)
            for t, d, n in ((3.0 * k, "c2s", 12 + 44), (3.0 * k + 0.01, "s2c", 12 + 44), (3.0 * k + 1, "c2s", 28))]
    assert guess_protection(_sizes(recs), DTLS_GUESS_CANDIDATES, DTLS_TYPE_BYTE) is None


@pytest.mark.parametrize("what,records", [
    # an idle HTTP/2 connection: PING (9-byte frame header + 8) answered by its ACK, every 15 s, TLS 1.3
    ("h2-ping", [(t, d, 17 + 17) for k in range(6) for t, d in ((15.0 * k, "c2s"), (15.0 * k + 0.01, "s2c"))]),
    # ... with SETTINGS ACKs (a 9-byte frame) both ways
    ("h2-settings", [(t, d, 9 + 17) for k in range(6) for t, d in ((15.0 * k, "c2s"), (15.0 * k + 0.01, "s2c"))]),
    # XMPP whitespace keepalives over TLS 1.2 AES-GCM: one byte, 25-byte records, from the client only
    ("xmpp-whitespace", [(60.0 * k, "c2s", 1 + 24) for k in range(8)] + [(1.0, "s2c", 400 + 24)]),
    # MQTT PINGREQ/PINGRESP (2 bytes each) over TLS 1.2 AES-GCM
    ("mqtt-ping", [(t, d, 2 + 24) for k in range(6) for t, d in ((30.0 * k, "c2s"), (30.0 * k + 0.02, "s2c"))]),
    # a bulk HTTPS download: 16 KiB records with small requests in between
    ("bulk", [(0.5 * k, "s2c", 16384 + 17) for k in range(40)] + [(0.0, "c2s", 25), (5.0, "c2s", 25),
                                                                   (5.001, "s2c", 25), (9.0, "c2s", 25)]),
])
def test_other_long_lived_tls_is_not_read_as_a_tunnel(what, records):
    assert guess_protection(_sizes(sorted(records))) is None


def test_keepalives_from_one_side_alone_are_not_enough_to_guess():
    prot = GUESS_CANDIDATES[0][1]
    ctl = prot.record_length(CSTP_HEADER)
    recs = [(6.0 * k, "c2s", ctl) for k in range(6)] + [(3.0, "s2c", prot.record_length(CSTP_HEADER + 60))]
    sizes = _sizes(sorted(recs))
    assert control_pattern(sizes, ctl, 3) is not None  # the known-suite pattern: keepalives spaced >= 5 s
    assert guess_protection(sizes) is None  # a guessed one also needs a DPD exchange


def test_records_before_the_first_control_frame_may_be_http():
    """A capture that starts between a reconnect's handshake and its CONNECT: the CONNECT and its answer first."""
    prot = GUESS_CANDIDATES[1][1]
    recs = [(0.0, "c2s", 700 + 24), (0.01, "s2c", 12 + 24), (0.02, "s2c", 900 + 24)] + _tunnel(prot, 1.0)
    assert guess_protection(_sizes(recs)) == (GUESS_CANDIDATES[1][0], prot)


def test_dead_peer_needs_capture_after_the_requests():
    """An idle client's keepalive, then its DPD request, then the capture stops: no dead peer; the same requests
    followed by 5 s of capture without an answer: a dead peer."""
    prot = GUESS_CANDIDATES[0][1]
    ctl = prot.record_length(CSTP_HEADER)

    def estimate(until):
        est = TunnelEstimate(CSTP_HEADER, prot)
        for ts, d, n in [(0.0, "c2s", ctl), (0.001, "s2c", ctl), (6.0, "c2s", ctl), (10.0, "c2s", ctl)]:
            est.add(d, n, ts, int(ts * 1000))
        est.finish(until)
        return est

    assert estimate(10.0).dead_peer == []
    assert estimate(10.0 + ANSWER_WINDOW - 0.5).dead_peer == []
    assert [r["requests"] for r in estimate(15.0).dead_peer] == [2]
    assert [r["requests"] for r in estimate(None).dead_peer] == [2]  # no capture end given: as before


# -- real captures cut like a ring buffer --------------------------------------------------------------------------

def _keyed(name: str) -> dict:
    """(client, direction, frame) -> classes of every control frame of the keyed analysis of the whole capture."""
    _a, pipe = _analyse(SAMPLES / name / "capture.pcapng", SAMPLES / name / "keys.log")
    out: dict = {}
    for c in pipe.tcp.values():
        if c.tunnel is not None:
            for (d, fr), cls in _keyed_classes(c.tunnel, False).items():
                out[(c.client, d, fr)] = cls
    return out


@pytest.mark.parametrize("every", [30, 50])
def test_pieces_of_a_tunnel_over_tls_are_read_without_their_handshake(tmp_path, every):
    agree = total = guessed_pieces = 0
    whole_ids = {}
    for name in TUNNELS:
        keyed = _keyed(name)
        whole, _p = _analyse(SAMPLES / name / "capture.pcapng", SAMPLES / name / "keys.log")
        whole_ids[name] = {f.id for s in whole.sessions for f in s.findings}
        for k, piece in enumerate(_pieces(name, every, tmp_path)):
            if k == 0:
                continue  # the first piece has the handshake: read as before
            analysis, pipe = _analyse(piece, None)
            off = k * every
            truth = {key: v for key, v in keyed.items() if off < key[2] <= off + every}
            for c in pipe.tcp.values():
                if c.guessed_protection is None:
                    continue
                assert c.started_before_capture and c.server_hello is None
                assert (c.server[0], c.server[1]) == GATEWAY
                assert c.guessed_protection == "TLS 1.3 AEAD"  # what ocserv and openconnect negotiate here
                guessed_pieces += 1
                s = next(s for s in analysis.sessions if any(e["code"] == "cstp-record-pattern" for e in s.evidence))
                cstp = s.phase("cstp-connect")
                assert cstp.status == "before-capture" and cstp.inferred is not None
                assert cstp.inferred.tunnels[0].connection == f"tcp.stream {c.index}"
                for e in c.cstp_estimate.controls:
                    if (c.client, e[0], e[1] + off) in truth:
                        total += 1
                        agree += e[3] in truth[(c.client, e[0], e[1] + off)]
            # nothing the keyed analysis of the whole capture does not say (a dead peer, a reconnect)
            for s in analysis.sessions:
                assert not {f.id for f in s.findings if f.inferred and f.severity in ("warning", "error")} - \
                    whole_ids[name], (name, k)
    assert guessed_pieces >= 5
    # measured: 46/46 cut every 30 frames, 37/39 every 50 (dpd-late-answer and dtls-blocked each have a gateway
    # DPD answer, seconds late, read as a keepalive)
    assert total >= 35 and agree / total >= 0.9, (agree, total)


def test_a_piece_of_keepalive_dpd_reads_as_a_healthy_tunnel_over_tls(tmp_path):
    piece = _pieces("keepalive-dpd", 30, tmp_path)[3]  # the last 19 frames: DPD, a keepalive, the DISCONNECT
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "acflow") if (ROOT / ".venv" / "bin" / "acflow").exists()
                        else "acflow", "analyze", str(piece), "--format", "json"], capture_output=True, text=True,
                       check=True)
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "acflow-report.schema.json").read_text()))
    (s,) = doc["sessions"]
    assert [e["code"] for e in s["evidence"]] == ["cstp-record-pattern"]
    assert "TLS 1.3 AEAD" in s["evidence"][0]["text"]
    assert s["verdict"]["outcome"] == "healthy"
    assert "over TLS (no DTLS in the capture)" in s["verdict"]["text"]  # the CONNECT that would say: not seen
    cstp = next(p for p in s["phases"] if p["phase"] == "cstp-connect")
    assert cstp["status"] == "before-capture"
    (t,) = cstp["inferred"]["tunnels"]
    assert t["basis"] == ["before-capture"]
    assert t["connect_time"] is None and t["connect_frame"] is None and t["established_time"] is None
    assert t["ended_by"] == "DISCONNECT"
    classes = {k: t["estimate"]["frame_classes"]["c2s"].get(k, 0) + t["estimate"]["frame_classes"]["s2c"].get(k, 0)
               for k in ("DPD_REQ", "DPD_RESP", "KEEPALIVE", "DISCONNECT")}
    assert classes == {"DPD_REQ": 2, "DPD_RESP": 2, "KEEPALIVE": 1, "DISCONNECT": 1}
    assert [f["id"] for f in s["findings"] if f.get("inferred")] == ["SESSION_DISCONNECT"]


def test_other_traffic_cut_mid_stream_stays_other_traffic(tmp_path):
    """The mixed-traffic sample's unrelated TLS (gnutls-serv, openssl s_server, curl) cut into pieces: no guess
    on any of their connections."""
    for every in (20, 35):
        for piece in _pieces("mixed-traffic", every, tmp_path):
            _a, pipe = _analyse(piece, None)
            for c in list(pipe.tcp.values()) + list(pipe.udp.values()):
                if c.guessed_protection is not None:
                    assert (c.server[0], c.server[1]) == GATEWAY, piece.name


# -- a capture filtered to UDP: the DTLS channel without its TLS connection ------------------------------------------

#: samples whose DTLS channel comes up, and the verdict of their whole capture
DTLS_UP = ["baseline", "legacy-dtls", "legacy-dtls09", "mtu", "reconnect", "dpd-loss", "nat-rebinding"]


def _udp_only(tshark: str, name: str, tmp: Path) -> Path:
    out = tmp / f"{name}-udp.pcapng"
    subprocess.run([tshark, "-r", str(SAMPLES / name / "capture.pcapng"), "-Y", "udp", "-w", str(out)], check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize("name", DTLS_UP)
@pytest.mark.parametrize("keyed", [False, True])
def test_the_dtls_channel_alone_is_a_session_whose_tls_was_not_captured(tshark, tmp_path, name, keyed):
    """Phases 1-5 are `not-captured` (before: `absent`, and the verdict 'No tunnel: the capture shows no CONNECT'),
    the tunnel is up over DTLS, the whole capture's DTLS troubles are still told, KEYS_MISSING says why no key log
    helps; with or without the key log (it cannot be used without the CONNECT)."""
    cap = _udp_only(tshark, name, tmp_path)
    args = ["--keylog", str(SAMPLES / name / "keys.log")] if keyed else []
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "acflow") if (ROOT / ".venv" / "bin" / "acflow").exists()
                        else "acflow", "analyze", str(cap), *args, "--format", "json"], capture_output=True,
                       text=True, check=True)
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "acflow-report.schema.json").read_text()))
    whole, _pipe = _analyse(SAMPLES / name / "capture.pcapng", SAMPLES / name / "keys.log")
    assert len(doc["sessions"]) == len(whole.sessions) >= 1
    for s, w in zip(doc["sessions"], whole.sessions):
        status = {p["phase"]: p["status"] for p in s["phases"]}
        assert [status[p] for p in ("tls-handshake", "group-selection", "user-auth", "downloader",
                                    "cstp-connect")] == ["not-captured"] * 5
        assert status["dtls"] in ("undecrypted", "before-capture"), status
        assert s["verdict"]["outcome"] != "failed"
        if w.verdict.outcome == "healthy":
            assert s["verdict"]["outcome"] == "healthy"
            assert s["verdict"]["text"].startswith("Healthy: tunnel up (its TLS connection is not in the capture), "
                                                   "over DTLS")
        if w.verdict.outcome == "tunnel-lost":  # DPD over DTLS unanswered, NAT rebinding: read from the DTLS side
            assert s["verdict"]["outcome"] == "tunnel-lost"
        (km,) = [f for f in s["findings"] if f["id"] == "KEYS_MISSING"]
        assert "DTLS channel but not its TLS connection" in km["message"]
        assert km["evidence"]["tls_captured"] is False


def test_the_dtls_channel_alone_seen_mid_tunnel_is_read(tshark, tmp_path):
    """Pieces of captures filtered to UDP, cut every 15 frames: a DTLS flow seen only mid-tunnel is sized by the
    protection its records fit (DTLS 1.2 AES-GCM here) once three control packets with a DPD exchange show the
    pattern; its per-record classes against the keyed analysis of the whole capture."""
    agree = total = guessed = 0
    for name in ("dpd-late-answer", "dpd-loss", "nat-rebinding", "keepalive-dpd", "baseline"):
        whole = _udp_only(tshark, name, tmp_path)
        _a, kp = _analyse(SAMPLES / name / "capture.pcapng", SAMPLES / name / "keys.log")
        # frame numbers of the UDP-only capture: the keyed flows' classes by (client, direction, time)
        truth = {}
        for f in kp.udp.values():
            if f.keys_source is not None:
                for (d, fr), cls in _keyed_classes(f.channel, True).items():
                    truth[(f.client, d, fr)] = cls
        out = tmp_path / f"{name}-udp-pieces"
        out.mkdir()
        subprocess.run([_editcap(), "-c", "15", str(whole), str(out / "p.pcapng")], check=True, capture_output=True)
        frames = subprocess.run([tshark, "-r", str(SAMPLES / name / "capture.pcapng"), "-Y", "udp", "-T", "fields",
                                 "-e", "frame.number"], capture_output=True, text=True, check=True).stdout.split()
        for k, piece in enumerate(sorted(out.glob("p_*.pcapng"))):
            analysis, pipe = _analyse(piece, None)
            for f in pipe.udp.values():
                if f.guessed_protection is None:
                    continue
                assert f.up_before_capture and (f.server[0], f.server[1]) == GATEWAY
                assert f.guessed_protection == "DTLS 1.2 AES-GCM"
                guessed += 1
                (s,) = [s for s in analysis.sessions if any(e["code"] == "dtls-record-pattern" for e in s.evidence)]
                assert s.phase("dtls").status == "before-capture"
                for e in f.estimate.controls:
                    key = (f.client, e[0], int(frames[k * 15 + e[1] - 1]))
                    if key in truth:
                        total += 1
                        agree += e[3] in truth[key] or (e[3], truth[key]) == ("DPD_REQ", ["MTU_PROBE"])
    # measured: 12/14 (two unanswered DPD requests on nat-rebinding's abandoned flow read as keepalives: without
    # keys nothing tells them apart there, README "Reading without keys")
    assert guessed >= 3
    assert total >= 10 and agree / total >= 0.8, (agree, total)


# -- a capture with a snapshot length: packets cut short -------------------------------------------------------------

def _snapped(name: str, snaplen: int, tmp: Path) -> Path:
    out = tmp / f"{name.replace('/', '_')}-s{snaplen}.pcapng"
    subprocess.run([_editcap(), "-s", str(snaplen), str(SAMPLES / name / "capture.pcapng"), str(out)], check=True,
                   capture_output=True)
    return out


def _doc(cap: Path, *args: str) -> dict:
    acflow = ROOT / ".venv" / "bin" / "acflow"
    r = subprocess.run([str(acflow) if acflow.exists() else "acflow", "analyze", str(cap), *args, "--format", "json"],
                       capture_output=True, text=True, check=True)
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "acflow-report.schema.json").read_text()))
    return doc


#: what the DTLS record headers a cut capture keeps still tell (the whole capture's verdict, read from the DTLS side)
CUT_VERDICTS = {"baseline": ("inconclusive", "No problem seen in what the capture kept: DTLS up"),
                "reconnect": ("inconclusive", "No problem seen in what the capture kept: DTLS up"),
                "dtls-blocked": ("degraded", "Tunnel up over TLS only: UDP 443 is blocked"),
                "keepalive-dpd": ("degraded", "Tunnel up over TLS only: UDP 443 is blocked"),
                "nat-rebinding": ("tunnel-lost", "Tunnel died at")}


@pytest.mark.parametrize("snaplen", [96, 128, 400])
@pytest.mark.parametrize("name", sorted(CUT_VERDICTS))
def test_a_capture_cut_by_a_snapshot_length_is_read_from_what_it_kept(tmp_path, name, snaplen):
    """editcap -s N cuts every packet as tcpdump -s N or pktmon (128 bytes by default) would: before, the TLS
    handshake was 'failed: no ServerHello', DTLS 'failed: 0 ClientHellos unanswered', the verdict 'Tunnel up over TLS
    only' and KEYS_MISSING asked for keys. Now the TLS phases are not-captured, the DTLS channel is read from the
    record headers the cut datagrams kept (hellos, protected records by size: UDP blocked, a NAT rebinding, DPD
    unanswered), and the verdict says what that shows — with or without keys (no key helps)."""
    cap = _snapped(name, snaplen, tmp_path)
    for args in ((), ("--keylog", str(SAMPLES / name / "keys.log"))):
        doc = _doc(cap, *args)
        (s,) = doc["sessions"]
        ids = [f["id"] for f in s["findings"]]
        assert "CAPTURE_TRUNCATED" in ids and "KEYS_MISSING" not in ids and "CAPTURE_GAP" not in ids, ids
        (cut,) = [f for f in s["findings"] if f["id"] == "CAPTURE_TRUNCATED"]
        assert cut["evidence"]["snaplen"] == snaplen
        outcome, text = CUT_VERDICTS[name]
        assert (s["verdict"]["outcome"], s["verdict"]["text"][:len(text)]) == (outcome, text), s["verdict"]
        status = {p["phase"]: p["status"] for p in s["phases"]}
        # the TLS records read through the cuts (their headers, sized by the protection they fit) are read as
        # without keys (undecrypted); when not even that, not-captured
        assert "failed" not in [status[p] for p in list(status)[:5]], status
        assert status["cstp-connect"] in ("not-captured", "undecrypted"), status
        whole = {p.phase: p.status for p in _analyse(SAMPLES / name / "capture.pcapng", None)[0].sessions[0].phases}
        assert status["dtls"] == whole["dtls"], (status, whole)  # undecrypted (up), or failed (blocked)
        assert [c.get("snaplen") for c in s["connections"] if c.get("truncated_frames")] and all(
            c["snaplen"] == snaplen for c in s["connections"] if c.get("truncated_frames"))
        assert not [f for f in doc["findings"] if f["id"] == "CAPTURE_TRUNCATED"]  # the session tells it


def test_a_snapshot_shorter_than_the_record_headers_cannot_tell(tmp_path):
    """50 bytes: not even a TLS or DTLS record header is kept, so nothing shows the protocol: no session, and the
    capture-wide CAPTURE_TRUNCATED says why."""
    doc = _doc(_snapped("baseline", 50, tmp_path))
    assert not doc["sessions"]
    (cut,) = [f for f in doc["findings"] if f["id"] == "CAPTURE_TRUNCATED"]
    assert cut["evidence"]["snaplen"] == 50 and "may not be recognised" in cut["message"]


def test_a_few_packets_cut_short_do_not_make_the_verdict(tmp_path):
    """Snapshot length 1400: only the largest packets are cut; the session is read as before (with keys healthy),
    CAPTURE_TRUNCATED is listed, and it is not what the verdict says."""
    cap = _snapped("baseline", 1400, tmp_path)
    doc = _doc(cap, "--keylog", str(SAMPLES / "baseline" / "keys.log"))
    (s,) = doc["sessions"]
    assert "CAPTURE_TRUNCATED" in [f["id"] for f in s["findings"]]
    assert s["verdict"]["outcome"] == "healthy", s["verdict"]
    assert "CAPTURE_TRUNCATED" not in (s["verdict"].get("findings") or [])


def test_a_capture_cut_short_without_a_session_says_so(tmp_path):
    doc = _doc(_snapped("auth-fail", 128, tmp_path))
    assert not doc["sessions"]
    ids = [f["id"] for f in doc["findings"]]
    assert ids[:1] == ["CAPTURE_TRUNCATED"] and "NO_VPN_SESSION" in ids
    (cut,) = [f for f in doc["findings"] if f["id"] == "CAPTURE_TRUNCATED"]
    assert cut["evidence"] == {"truncated_frames": cut["evidence"]["truncated_frames"], "snaplen": 128}
    assert cut["evidence"]["truncated_frames"] > 0 and "pktmon" in cut["remedy"]


def test_the_record_reader_stays_in_step_across_cut_segment_ends():
    """RecordReader.gap(length, cut=True): bytes the capture cut inside the record being read leave the reader in
    step — the record comes out cut (its length, no fragment) once its last bytes went by; a cut that runs past
    the record (into the next header) or a plain loss resynchronises as before."""
    from dissectors.tls.record import RecordReader

    def record(n: int, fill: int) -> bytes:
        return bytes([23, 3, 3]) + n.to_bytes(2, "big") + bytes([fill]) * n

    r = RecordReader()
    r.feed(record(100, 1)[:30])  # a segment of one record, cut after 30 bytes
    r.gap(75, cut=True)
    rec = r.next()
    assert rec.cut == 100 and not rec.fragment and r.synced and r.in_step
    r.feed(record(40, 2))
    rec = r.next()
    assert not rec.cut and bytes(rec.fragment) == bytes([2]) * 40 and rec.offset == 105
    # a record over two segments, both cut: the second's kept bytes are the record's middle, skipped
    r.feed(record(1000, 3)[:50])
    r.gap(400, cut=True)
    assert r.next() is None and not r.in_step
    r.feed(bytes(60))
    r.gap(495, cut=True)
    rec = r.next()
    assert rec.cut == 1000 and rec.offset == 150 and r.synced
    r.feed(record(8, 4))
    assert bytes(r.next().fragment) == bytes([4]) * 8
    # a cut past the record's end, and a plain loss: resynchronise
    r.feed(record(100, 5)[:30])
    r.gap(200, cut=True)
    assert not r.synced
    r2 = RecordReader()
    r2.feed(record(100, 6)[:30])
    r2.gap(75)
    assert not r2.synced


# -- a client behind an HTTP proxy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.parametrize("name", ["http-proxy", "http-proxy-auth"])
def test_a_session_through_an_http_proxy(keyed, name):
    """The lab's http-proxy samples (real openconnect --proxy through lab/proxy.py to a real ocserv): before, 'No
    AnyConnect-protocol session found' even with keys — the TCP flow to the proxy starts with 'CONNECT host:port' in
    the clear, not a TLS record. Now the TLS connection inside is read; the proxy, its CONNECT and answer are in the
    connection's summary; no DTLS through a proxy is not a blocked path."""
    args = ("--keylog", str(SAMPLES / name / "keys.log")) if keyed else ()
    doc = _doc(SAMPLES / name / "capture.pcapng", *args)
    (s,) = doc["sessions"]
    assert s["gateway"] == "198.18.0.1:3128"
    (c,) = [c for c in s["connections"] if c.get("proxy")]
    assert c["proxy"]["target"] == "vpn.acflow.test:443" and c["proxy"]["status"] == 200
    assert c["proxy"]["request"].startswith("CONNECT vpn.acflow.test:443 ")
    # http-proxy-auth: the proxy's 407 first (its body skipped), then the CONNECT again on the same connection
    assert [r["status"] for r in c["proxy"].get("refused", [])] == ([407] if name == "http-proxy-auth" else [])
    status = {p["phase"]: p["status"] for p in s["phases"]}
    if keyed:
        assert s["confidence"] == "confirmed"
        assert [status[p] for p in ("tls-handshake", "group-selection", "user-auth", "cstp-connect")] == ["ok"] * 4
        assert status["dtls"] == "absent"
        assert s["verdict"]["outcome"] == "healthy"
        assert "over TLS only (through an HTTP proxy: no DTLS)" in s["verdict"]["text"]
        (f,) = [f for f in s["findings"] if f["id"] == "DTLS_FALLBACK_TLS"]
        assert f["severity"] == "info" and "HTTP proxy" in f["message"]
    else:
        assert s["verdict"]["outcome"] == "inconclusive"
        assert not [f for f in s["findings"] if f["severity"] in ("warning", "error")]


def test_a_proxy_answering_thousands_of_refusals_in_one_segment_is_read_without_recursion():
    """Hostile or broken proxies: 5000 '407' answers with bodies in one segment, then 200 — read in a loop (no
    recursion), the refusals noted up to 10, the bytes after the 200 handed on as the TLS stream."""
    from analyzer.tcptracker import TCPTracker

    t = TCPTracker.__new__(TCPTracker)  # the proxy reading alone (no flow, keys or host needed)
    t.proxy, t._proxy_head, t._proxy_skip = {"frame": 1, "time": 0.0}, {"c2s": bytearray(), "s2c": bytearray()}, 0
    assert t._proxy_header("c2s", b"CONNECT vpn.example:443 HTTP/1.1\r\nHost: vpn.example\r\n\r\n", 0.0, 1) == b""
    wire = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno" * 5000
    assert t._proxy_header("s2c", wire + b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03", 0.1, 2) == b"\x16\x03\x03"
    assert t.proxy["status"] == 200 and len(t.proxy["refused"]) == 10 and t.proxy["target"] == "vpn.example:443"


def test_the_html_report_names_the_proxy(tmp_path):
    out = tmp_path / "r.html"
    acflow = ROOT / ".venv" / "bin" / "acflow"
    subprocess.run([str(acflow) if acflow.exists() else "acflow", "analyze", "--keylog",
                    str(SAMPLES / "http-proxy-auth" / "keys.log"), str(SAMPLES / "http-proxy-auth" / "capture.pcapng"),
                    "--format", "html", "-o", str(out)], check=True, capture_output=True)
    html = out.read_text()
    assert "<dt>HTTP proxy</dt><dd>198.18.0.1:3128 is the proxy the client went through: CONNECT " \
           "vpn.acflow.test:443 HTTP/1.1 → HTTP/1.1 200 Connection established; before: HTTP/1.1 407" in html
