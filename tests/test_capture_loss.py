"""Captures that lost packets themselves: a busy host's capture buffer overflowed (dumpcap 'packets dropped'), a
ring buffer's or a SPAN port's drops. What the capture missed is not what the network lost — the peers got those
packets (the other side acknowledges them) — so a missing answer is not a failed login, a missing ChangeCipherSpec
does not make the rest undecryptable, and a record read after the hole keeps its own time.

Real lab captures (samples/) with chosen frames deleted by editcap; tshark (with the key log) names the frames.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from analyzer.analyze import analyze_paths, load_keys
from dissectors.tls.connection import TLSConnection
from dissectors.tls.events import EncryptedRecord

from .conftest import sample


def _frames(tshark: str, cap: Path, keylog: Path | None, display_filter: str) -> list[int]:
    opts = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    out = subprocess.run([tshark, "-n", "-r", str(cap), *opts, "-Y", display_filter, "-T", "fields", "-e",
                          "frame.number"], capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def _without(cap: Path, frames: list[int], out: Path) -> Path:
    subprocess.run(["editcap", str(cap), str(out), *map(str, frames)], check=True, capture_output=True)
    return out


def _analysed(cap: Path, keylog: Path | None):
    keys, info = load_keys([keylog] if keylog else [], [])
    (s,) = analyze_paths([cap], keys, info).sessions
    return s


def _ids(s) -> set[str]:
    return {f.id for f in s.findings}


def test_a_lost_login_answer_is_not_a_failed_login(tshark, tmp_path):
    """The capture missed the client's last login POST and the gateway's answer to it (the success): the tunnel
    that came up after says the login succeeded — before, 'Connected after a rejected login' and AUTH_FAILED (error)
    quoting the previous round's 'Please enter your password'. The session is healthy; its verdict says the
    capture's hole."""
    d = sample("baseline")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    posts = _frames(tshark, cap, keylog, 'http.request.method == "POST"')
    answers = _frames(tshark, cap, keylog, "http.response")
    last_post = posts[-1]
    answer = min(f for f in answers if f > last_post)
    s = _analysed(_without(cap, [last_post, answer], tmp_path / "lost.pcapng"), keylog)
    auth = s.phase("user-auth")
    assert auth.status == "ok" and "told by the tunnel that came up (CONNECT answered 200)" in auth.summary
    assert "AUTH_FAILED" not in _ids(s) and "CAPTURE_GAP" in _ids(s)
    assert s.phase("cstp-connect").status == "ok" and s.phase("dtls").status == "ok"
    assert s.verdict.outcome == "healthy" and "but the capture misses" in s.verdict.text
    # without the tunnel's proof (the capture ends before the CONNECT): the outcome is not in the capture
    connect = _frames(tshark, cap, keylog, 'http.request.method == "CONNECT"')[0]
    last = int(subprocess.run(["capinfos", "-c", "-M", str(cap)], capture_output=True, text=True,
                              check=True).stdout.split()[-1])
    s = _analysed(_without(cap, [last_post, answer, *range(connect, last + 1)], tmp_path / "cut.pcapng"), keylog)
    assert s.phase("user-auth").status == "incomplete" and "AUTH_FAILED" not in _ids(s)


def test_a_missed_tls12_change_cipher_spec_is_recovered(tshark, tmp_path):
    """TLS 1.2 (RSA key exchange): the capture missed the gateway's ChangeCipherSpec and Finished. Its records after
    are decrypted all the same (the keys are the handshake's, the sequence number found from 1): the same phases as
    the whole capture — before, the login read 'failed: no answer' and the CONNECT 'no answer in the capture'."""
    d = sample("tls12-rsa")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    ccs = _frames(tshark, cap, None, "tls.record.content_type == 20 && tcp.srcport == 443")
    assert len(ccs) == 1
    whole, lost = _analysed(cap, keylog), _analysed(_without(cap, ccs, tmp_path / "lost.pcapng"), keylog)
    for name in ("group-selection", "user-auth", "cstp-connect", "dtls"):
        assert (lost.phase(name).status, lost.phase(name).summary) == (whole.phase(name).status,
                                                                       whole.phase(name).summary)
    assert _ids(lost) - _ids(whole) == {"CAPTURE_GAP"}


def test_a_missed_dtls_client_hello_is_said(tshark, tmp_path):
    """The capture missed the DTLS ClientHello: its random goes into the channel's keys, so no key log helps —
    KEYS_MISSING says the capture's loss, not 'supply a key log'."""
    d = sample("baseline")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    (hello,) = _frames(tshark, cap, None, "dtls.handshake.type == 1")
    s = _analysed(_without(cap, [hello], tmp_path / "lost.pcapng"), keylog)
    assert s.phase("dtls").status == "undecrypted"
    (f,) = [f for f in s.findings if f.id == "KEYS_MISSING"]
    assert f.message.startswith("The capture misses the DTLS ClientHello") and "Supply" not in f.remedy
    assert f.evidence["dtls_client_hello_captured"] is False


def test_a_missed_fin_is_not_a_byte_of_data(tshark, tmp_path):
    """The capture missed the client's FIN: the gateway's ACK of it counts one sequence number past the data — not a
    byte the capture missed (no CAPTURE_GAP)."""
    d = sample("baseline")
    cap = d / "capture.pcapng"
    fins = _frames(tshark, cap, None, "tcp.flags.fin == 1 && tcp.dstport == 443")
    s = _analysed(_without(cap, fins, tmp_path / "nofin.pcapng"), d / "keys.log")
    assert "CAPTURE_GAP" not in _ids(s)


@pytest.mark.parametrize("tls13", [True, False])
def test_a_record_read_after_missing_data_keeps_its_time(tls13):
    """Without keys, after missing data the reader finds the next record by its header and waits for the one after
    to trust it: the record comes out with the later segment, but keeps the time and frame of its own."""
    conn = TLSConnection()
    version = b"\x03\x03"

    def record(n: int) -> bytes:
        return b"\x17" + version + n.to_bytes(2, "big") + bytes(n)

    events = conn.feed("c2s", record(40), 1.0, 1)
    conn.gap("c2s", 500, 3.0, 3)
    events += conn.feed("c2s", record(1147), 2.5, 2)  # delivered after the hole was given up on
    events += conn.feed("c2s", record(43), 9.0, 9)
    recs = [(e.length, e.ts, e.frame) for e in events if isinstance(e, EncryptedRecord)]
    assert (1147, 2.5, 2) in recs and (43, 9.0, 9) in recs


def test_dtls_hellos_the_capture_missed_are_counted_in_the_backoff(tshark, tmp_path):
    """openconnect's DTLS retries while UDP is blocked (dtls-blocked): the capture missed one retry of each
    attempt. Their record numbers skip, so the intervals around them are held to the retries they span: still
    openconnect's schedule (info), the missed hellos counted — before, 'fits neither schedule' (warning)."""
    d = sample("dtls-blocked")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    hellos = _frames(tshark, cap, None, "dtls.handshake.type == 1")
    whole = next(f for f in _analysed(cap, keylog).findings if f.id == "DTLS_BACKOFF")
    per_attempt = [len(a) for a in whole.evidence["attempts"]]
    assert whole.evidence["fits"] == "openconnect" and all(n >= 3 for n in per_attempt)
    drop = [hellos[1], hellos[per_attempt[0] + 1]]  # the first retry of the first two attempts
    s = _analysed(_without(cap, drop, tmp_path / "lost.pcapng"), keylog)
    (f,) = [f for f in s.findings if f.id == "DTLS_BACKOFF"]
    assert f.severity == "info" and f.evidence["fits"] == "openconnect" and f.evidence["hellos_missed"] == 2
    assert "The capture misses 2 of the client's hellos" in f.message
    rows = [r for att in f.evidence["openconnect"]["intervals"] for r in att if r.get("hellos_missed")]
    assert [r["expected"] for r in rows] == [3.0, 3.0]


def test_a_lost_answer_does_not_take_the_next_one(tshark, tmp_path):
    """The capture missed only the gateway's answer to the last login POST. Its hole reaches HTTP (the decrypted
    stream has one too): the next answer read — the CONNECT's 200 — answers the CONNECT, not the POST before it
    (clients send a request once the previous one is answered). Before, the POST took the CONNECT's answer, the
    CONNECT had none: 'No tunnel: the capture shows no CONNECT' and the DTLS keys never derived."""
    d = sample("baseline")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    last_post = _frames(tshark, cap, keylog, 'http.request.method == "POST"')[-1]
    answers = _frames(tshark, cap, keylog, "http.response")
    lost = min(f for f in answers if f > last_post)
    connect_answer = min(f for f in answers if f > lost)
    s = _analysed(_without(cap, [lost], tmp_path / "lost.pcapng"), keylog)
    auth, cstp = s.phase("user-auth"), s.phase("cstp-connect")
    assert auth.status == "ok" and not isinstance(auth.details.rounds[-1].response_frame, int)
    assert cstp.status == "ok" and cstp.summary.startswith("200 CONNECTED: 198.19.0.50")
    (ex,) = cstp.details.connects
    assert ex.response_frame == connect_answer - 1  # (one frame fewer before it in the edited capture)
    assert s.phase("dtls").status == "ok" and s.verdict.outcome == "healthy"


def test_a_downloader_answer_the_capture_missed_is_no_failure(tshark, tmp_path):
    """The capture missed the gateway's answer to the downloader's GET of the profile: not 'GET … → no answer'
    (DOWNLOADER_FAILED) and 'did not fetch the profile' (PROFILE_MISSING) — its answer may be in the hole. The
    phase is incomplete, the GET marked answer_missed."""
    d = sample("downloader")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    (get,) = _frames(tshark, cap, keylog, 'http.request.method == "GET"')
    stream = subprocess.run([tshark, "-n", "-r", str(cap), "-Y", f"frame.number == {get}", "-T", "fields", "-e",
                             "tcp.stream"], capture_output=True, text=True, check=True).stdout.strip()
    answer = [f for f in _frames(tshark, cap, None, f"tcp.stream == {stream} && tcp.srcport == 443 && tcp.len > 0")
              if f > get]  # every segment of the gateway's after the GET
    s = _analysed(_without(cap, answer, tmp_path / "lost.pcapng"), keylog)
    dl = s.phase("downloader")
    assert dl.status == "incomplete" and dl.details.gets[0].answer_missed is True
    assert not _ids(s) & {"DOWNLOADER_FAILED", "PROFILE_MISSING"}
    assert s.verdict.outcome == "healthy"


def _reordered(cap: Path, out: Path) -> tuple[Path, int]:
    """``cap`` with neighbouring frames less than 2 ms apart swapped, pair by pair (what a capture with
    several receive queues, `tcpdump -i any` or merged files does: a peer's ACK before the segment it
    acknowledges, an answer before its request)."""
    from scapy.utils import rdpcap, wrpcap  # noqa: PLC0415

    pk = list(rdpcap(str(cap)))
    swaps, i = 0, 0
    while i < len(pk) - 1:
        if abs(float(pk[i + 1].time) - float(pk[i].time)) < 0.002:
            pk[i], pk[i + 1] = pk[i + 1], pk[i]
            swaps += 1
            i += 2
        else:
            i += 1
    wrpcap(str(out), pk)
    return out, swaps


@pytest.mark.parametrize("name", ["baseline", "nat-rebinding", "mixed-traffic", "tls12-rsa"])
def test_frames_out_of_order_change_nothing(name, tmp_path):
    """Neighbouring frames swapped: the ACK of a segment before the segment, the gateway's answer before the
    request it answers. Nothing the capture missed — the same phases and findings as in order. Before, such an
    ACK declared the segment missing (CAPTURE_GAP) and the segment a retransmission: nat-rebinding lost its
    DPD_TIMEOUT, answers were read before their requests."""
    d = sample(name)
    keylog = d / "keys.log"
    cap, swaps = _reordered(d / "capture.pcapng", tmp_path / "reordered.pcap")
    assert swaps >= 5
    for keys in (keylog, None):
        whole, shuffled = _analysed(d / "capture.pcapng", keys), _analysed(cap, keys)
        assert _ids(shuffled) == _ids(whole)
        assert [(p.phase, p.status) for p in shuffled.phases] == [(p.phase, p.status) for p in whole.phases]


def test_an_answer_whose_request_the_capture_missed_still_tells_the_session(tshark, tmp_path):
    """The capture missed the client's first login POST (the init), not the gateway's answer to it: that answer is
    aggregate-auth XML all the same — the session is recognised (it read 'No AnyConnect-protocol session found') and
    its SAML sign-in read as with the whole capture."""
    d = sample("scripted/saml-idp-unreachable")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    init = _frames(tshark, cap, keylog, 'http.request.method == "POST"')[0]
    keys, info = load_keys([keylog], [])
    whole = analyze_paths([cap], keys, info)
    lost = analyze_paths([_without(cap, [init], tmp_path / "lost.pcapng")], keys, info)
    assert len(lost.sessions) == len(whole.sessions) == 1
    s, w = lost.sessions[0], whole.sessions[0]
    assert (s.verdict.experienced, s.verdict.findings) == (w.verdict.experienced, w.verdict.findings)
    assert s.phase("group-selection").summary.startswith("no aggregate-auth init POST in the capture")
    assert {f.id for f in s.findings if f.severity != "info"} - {"CAPTURE_GAP"} == {
        f.id for f in w.findings if f.severity != "info"}


def test_a_sso_token_round_the_capture_missed(tshark, tmp_path):
    """SAML single sign-on (scripted/saml-idp): the capture missed the client's POST of the token and the gateway's
    answer. The tunnel that came up after says the token came back — not AUTH_SSO_INCOMPLETE ('no token came back;
    the client gave up'), which it read before."""
    d = sample("scripted/saml-idp")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    posts = _frames(tshark, cap, keylog, 'http.request.method == "POST" && tcp.stream == 0')
    answer = min(f for f in _frames(tshark, cap, keylog, "http.response && tcp.stream == 0") if f > posts[-1])
    s = _analysed(_without(cap, [posts[-1], answer], tmp_path / "lost.pcapng"), keylog)
    auth = s.phase("user-auth")
    assert auth.status == "ok" and "the token came back, told by the tunnel that came up" in auth.summary
    assert auth.details.sso.outcome == "token-returned"
    assert "AUTH_SSO_INCOMPLETE" not in _ids(s) and s.verdict.outcome == "healthy"


def test_a_connect_the_capture_missed_is_told_by_its_answer(tshark, tmp_path):
    """The capture missed the client's CONNECT, not the gateway's 200 with the X-CSTP-* headers: that answer hands
    out the tunnel all the same — the CONNECT phase and the CSTP channel after it read as with the whole capture
    (before: no CONNECT, the client's CSTP frames read as broken HTTP)."""
    d = sample("baseline")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    (connect,) = _frames(tshark, cap, keylog, 'http.request.method == "CONNECT"')
    whole, s = _analysed(cap, keylog), _analysed(_without(cap, [connect], tmp_path / "lost.pcapng"), keylog)
    cstp = s.phase("cstp-connect")
    assert cstp.status == "ok" and cstp.summary == whole.phase("cstp-connect").summary
    assert s.phase("dtls").status == "ok" and s.verdict.outcome == "healthy"
    assert _ids(s) - {"CAPTURE_GAP"} == _ids(whole)


def test_keyless_login_rounds_across_a_hole_are_a_floor(tshark, tmp_path):
    """Without keys, login rounds are counted from record sizes; when the capture missed bytes before the CONNECT,
    rounds may be in them: the count is said as a floor and the confidence is medium, not high."""
    d = sample("baseline")
    cap, keylog = d / "capture.pcapng", d / "keys.log"
    last_post = _frames(tshark, cap, keylog, 'http.request.method == "POST"')[-1]
    whole = _analysed(cap, None).phase("user-auth").inferred
    inf = _analysed(_without(cap, [last_post], tmp_path / "lost.pcapng"), None).phase("user-auth").inferred
    assert whole.confidence == "high" and "or more" not in whole.basis
    assert inf.status == "ok" and inf.confidence == "medium" and "(or more: the capture misses" in inf.basis
