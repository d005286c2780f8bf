"""Property tests (hypothesis) on inputs derived from the real lab captures — a short, deterministic slice of what
``python -m fuzz`` does for minutes (same targets and invariants: :mod:`fuzz.targets`, same mutators:
:mod:`fuzz.mutate`).

What the existing per-dissector tests do not cover, and is here:

* the whole pipeline (``analyzer.analyze.analyze_paths`` + the JSON renderer) on real captures with bit flips,
  truncation, and pcapng blocks reordered / dropped / duplicated — never raises, always an ``Analysis``;
* the pcap/pcapng reader on *real* captures: events independent of how the file is chunked;
* packet decoding + reassembly on real frame sequences, mutated and reordered;
* TLS with the samples' real keys (the decryption paths run): mutated real streams never raise nor trip the
  last-resort guard, and the decrypted bytes of an intact stream do not depend on its segmentation;
* DTLS on the samples' datagrams with the keys their CONNECT exchanges carry;
* HTTP and CSTP on the samples' decrypted streams (chunking invariance, mutations, LZS/LZ4 framers);
* aggregate-auth XML from the samples, mutated structurally (DOCTYPE/entities, nesting, splices): parsing never
  raises and a password/session token never survives ``redact_xml``;
* the key log parser on the samples' key logs, mutated line-wise: round trip, and no error message echoes a
  secret.

Budget: ~50-150 examples per property, the file runs in well under a minute.
"""
from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import mutate as mut
from fuzz import targets
from fuzz.seeds import all_seeds, decode_items, encode_items, family_seeds

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
            "derandomize": True}


@functools.cache
def seeds(family: str) -> list[bytes]:
    return family_seeds(family)


def pick(family: str, i: int) -> bytes:
    pool = seeds(family)
    return pool[i % len(pool)]


def mutated(family: str, data: bytes, seed: int, rounds: int) -> bytes:
    rng = random.Random(seed)
    pool = seeds(family)
    for _ in range(rounds):
        data = mut.mutate(family, data, rng, pool, targets.MAX_LEN[family])
    return data


def seed_index(family: str):
    """An index into the family's seeds (taken modulo their number: no sample I/O at collection time)."""
    return st.integers(0, 1 << 16)


# --- whole pipeline ----------------------------------------------------------------------------------------

_TMP = Path(tempfile.mkdtemp(prefix="acflow-props-"))
atexit.register(shutil.rmtree, _TMP, True)  # (made at import: no fixture can own it; gone when the run ends)


@st.composite
def damaged_capture(draw):
    """A real capture with some of: bit flips, truncation, blocks reordered/dropped/duplicated."""
    caps = seeds("pipeline")
    data = caps[draw(st.integers(0, len(caps) - 1))]
    blocks = mut.split_blocks(data)
    ops = draw(st.lists(st.sampled_from(["flip", "truncate", "reorder", "drop", "dup", "structured"]),
                        min_size=1, max_size=4))
    for op in ops:
        if op in ("reorder", "drop", "dup") and blocks and len(blocks) > 3:
            i = draw(st.integers(2, len(blocks) - 1))  # keep SHB + IDB in front
            j = draw(st.integers(2, len(blocks) - 1))
            if op == "reorder":
                blocks[i], blocks[j] = blocks[j], blocks[i]
            elif op == "drop":
                del blocks[i]
            else:
                blocks.insert(j, blocks[i])
            data = b"".join(blocks)
        elif op == "flip" and data:  # (a truncation before may have left nothing to flip)
            b = bytearray(data)
            for _ in range(draw(st.integers(1, 16))):
                pos = draw(st.integers(0, len(b) - 1))
                b[pos] ^= 1 << draw(st.integers(0, 7))
            data = bytes(b)
            blocks = mut.split_blocks(data)
        elif op == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
            blocks = mut.split_blocks(data)
        else:
            data = mutated("pipeline", data, draw(st.integers(0, 2**32)), 1)
            blocks = mut.split_blocks(data)
    return data


@settings(max_examples=50, **SETTINGS)
@given(damaged_capture())
def test_pipeline_on_damaged_real_captures(data):
    from analyzer.analyze import InputError, analyze_paths
    from analyzer.model import Analysis
    from analyzer.report.json_report import render_json

    path = _TMP / "capture.pcapng"
    path.write_bytes(data)
    try:
        analysis = analyze_paths([path], targets.fresh_keys(), {})
    except InputError:
        assert len(data) < 4 or data[:4] not in (b"\x0a\x0d\x0d\x0a",) or len(data) < 12
        return
    assert isinstance(analysis, Analysis)
    assert not [f for s in analysis.sessions for f in s.findings if f.id == "ACFLOW_RULE_ERROR"]
    render_json(analysis, version="test")


@settings(max_examples=25, **SETTINGS)
@given(seed_index("pipeline"), st.integers(0, 2**32))
def test_pipeline_target_with_structured_mutations(i, seed):
    """The fuzz target itself (analysis + JSON, sometimes terminal/HTML, --export-inner sink)."""
    targets.prepare("pipeline")
    targets.target_pipeline(mutated("pipeline", pick("pipeline", i), seed, 2))


# --- capture reader -----------------------------------------------------------------------------------------

@settings(max_examples=60, **SETTINGS)
@given(seed_index("pcap"), st.integers(0, 2**32), st.integers(0, 3))
def test_pcap_reader_real_captures_any_chunking(i, seed, rounds):
    """Real captures, mutated (or not): frame numbers increase and the events do not depend on chunking."""
    targets.target_pcap(mutated("pcap", pick("pcap", i), seed, rounds))


def test_pcap_reader_every_chunk_size_on_a_real_capture():
    data = seeds("pcap")[0]
    _p, whole = targets._parse_pcap(data, len(data))
    for chunk in (1, 2, 3, 7, 8, 12, 28, 64, 1000, 4096):
        _p, split = targets._parse_pcap(data, chunk)
        assert split == whole


# --- packets, flows ------------------------------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(seed_index("packet"), st.integers(0, 2**32), st.integers(0, 4))
def test_packet_decode_and_reassembly_on_mutated_real_frames(i, seed, rounds):
    targets.target_packet(mutated("packet", pick("packet", i), seed, rounds))


# --- TLS ------------------------------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(seed_index("tls"), st.integers(0, 2**32), st.integers(1, 4))
def test_tls_with_real_keys_on_mutated_streams(i, seed, rounds):
    targets.target_tls(mutated("tls", pick("tls", i), seed, rounds))


@settings(max_examples=40, **SETTINGS)
@given(seed_index("tls"), st.lists(st.integers(1, 3000), min_size=1, max_size=8))
def test_tls_decryption_independent_of_segmentation(i, sizes):
    """An intact real stream, re-cut into arbitrary pieces, decrypts to the same bytes."""
    from dissectors.tls import ApplicationData, RecordError, TLSConnection

    items = decode_items(pick("tls", i))

    def run(pieces):
        conn = TLSConnection(targets.fresh_keys())
        out = {"c2s": b"", "s2c": b""}
        for direction, data in pieces:
            for e in conn.feed(direction, data):
                if isinstance(e, ApplicationData):
                    out[e.direction] += e.data
                assert not (isinstance(e, RecordError) and "internal" in e.message), e
        return out

    chunks = [("c2s" if t & 1 == 0 else "s2c", d) for t, d in items]
    recut = []
    k = 0
    for direction, data in chunks:
        pos = 0
        while pos < len(data):
            n = sizes[k % len(sizes)]
            k += 1
            recut.append((direction, data[pos:pos + n]))
            pos += n
    assert run(recut) == run(chunks)


# --- DTLS --------------------------------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(seed_index("dtls"), st.integers(0, 2**32), st.integers(0, 4))
def test_dtls_with_sample_keys_on_mutated_real_datagrams(i, seed, rounds):
    targets.target_dtls(mutated("dtls", pick("dtls", i), seed, rounds))


def test_dtls_sample_keys_decrypt_the_sample_datagrams():
    """Sanity of the property above: unmutated, the samples' DTLS flows decrypt with their keys."""
    from dissectors.dtls import DTLSApplicationData, DTLSConnection

    key_list = targets.dtls_key_list()
    decrypted = 0
    for data in seeds("dtls"):
        if data[0] >= len(key_list):
            continue
        conn = DTLSConnection(key_list[data[0]])
        for n, (tag, dgram) in enumerate(decode_items(data[1:]), 1):
            decrypted += sum(isinstance(e, DTLSApplicationData) for e in conn.feed(
                "c2s" if tag & 1 == 0 else "s2c", dgram, float(n), n))
    assert decrypted > 50


# --- HTTP, CSTP ---------------------------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(seed_index("http"), st.integers(0, 2**32), st.integers(1, 4))
def test_http_on_mutated_real_decrypted_streams(i, seed, rounds):
    targets.target_http(mutated("http", pick("http", i), seed, rounds))


def _http_events(items, split=None):
    from dissectors.http import HTTPStream

    stream = HTTPStream()
    events = []
    for tag, data in items:
        direction = "c2s" if tag & 1 == 0 else "s2c"
        cuts = [data] if split is None else [data[j:j + split] for j in range(0, len(data), split)] or [b""]
        for piece in cuts:
            events += stream.feed(direction, piece, 0.0, 0)
    events += stream.close()
    return [e for e in events if type(e).__name__ in ("Request", "Response", "CSTPFrame", "TunnelEstablished")]


@settings(max_examples=30, **SETTINGS)
@given(seed_index("http"), st.integers(1, 700))
def test_http_real_streams_independent_of_segmentation(i, split):
    def strip(e):
        fields = e.__dataclass_fields__
        return tuple(getattr(e, f) for f in fields if f not in ("ts", "frame", "end_frame", "first_frame"))

    items = decode_items(pick("http", i))
    assert [strip(e) for e in _http_events(items, split)] == [strip(e) for e in _http_events(items)]


@settings(max_examples=150, **SETTINGS)
@given(seed_index("cstp"), st.integers(0, 2**32), st.integers(0, 4), st.integers(0, 4))
def test_cstp_on_mutated_real_tunnels_every_encoding(i, seed, rounds, encoding):
    data = mutated("cstp", pick("cstp", i), seed, rounds)
    targets.target_cstp(bytes([encoding]) + data[1:])


# --- aggregate-auth XML --------------------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(seed_index("aggauth"), st.integers(0, 2**32), st.integers(1, 3))
def test_aggauth_mutated_real_documents_parse_safely_and_redact(i, seed, rounds):
    targets.target_aggauth(mutated("aggauth", pick("aggauth", i), seed, rounds))


@pytest.mark.parametrize("hostile", [mut.BILLION_LAUGHS, mut.XXE], ids=["billion-laughs", "xxe"])
def test_aggauth_real_auth_reply_with_dtd_still_redacted(hostile):
    """A real auth-reply (with its password) behind a DOCTYPE: refused by the parser, yet redacted by pattern."""
    from dissectors.aggauth import AggAuthError, parse_config_auth
    from dissectors.redact import REDACTED, redact_xml

    replies = [x for x in seeds("aggauth") if b"<password>" in x and b"auth-reply" in x]
    assert replies, "the samples have auth-reply documents with a password"
    for doc in replies:
        password = doc.split(b"<password>", 1)[1].split(b"</password>", 1)[0].decode()
        hostile_doc = hostile + doc.split(b"?>", 1)[-1]
        assert isinstance(parse_config_auth(hostile_doc), AggAuthError)
        out = redact_xml(hostile_doc)
        assert password not in out and REDACTED in out
        assert "lollol" not in out


# --- key logs ------------------------------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(seed_index("keylog"), st.integers(0, 2**32), st.integers(1, 5))
def test_keylog_mutated_real_logs_round_trip_and_never_echo_secrets(i, seed, rounds):
    targets.target_keylog(mutated("keylog", pick("keylog", i), seed, rounds))


@settings(max_examples=100, **SETTINGS)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["shift", "label", "cut", "join"])),
                min_size=1, max_size=6))
def test_keylog_error_messages_name_lines_not_secrets(edits):
    """Broken real lines (fields shifted, labels lost, cut, joined): errors give the line number, no secret."""
    from dissectors.keylog import parse_keylog

    text = "".join(s.keylog for s in all_seeds()[:4])
    lines = text.splitlines()
    for pos, kind in edits:
        k = pos % len(lines)
        f = lines[k].split()
        if len(f) != 3:
            continue
        if kind == "shift":
            lines[k] = f"{f[2]} {f[1]} {f[0]}"
        elif kind == "label":
            lines[k] = f"{f[1]} {f[2]}"
        elif kind == "cut":
            lines[k] = lines[k][: len(lines[k]) - 3]
        else:
            lines[k] = lines[k] + lines[(k + 1) % len(lines)]
    _entries, errors = parse_keylog("\n".join(lines))
    joined = "\n".join(errors)
    for s in all_seeds()[:4]:
        for line in s.keylog.splitlines():
            f = line.split()
            if len(f) == 3 and len(f[2]) >= 32:
                assert f[2][:16] not in joined, "a secret (or its beginning) is in an error message"
    for e in errors:
        assert e.startswith("line "), e


def test_item_encoding_round_trip():
    items = [(0, b"a" * 70000), (1, b""), (0x81, b"xyz")]
    enc = encode_items(items)
    dec = decode_items(enc)
    assert b"".join(d for t, d in dec if t == 0) == b"a" * 70000 and (1, b"") in dec and (0x81, b"xyz") in dec
    for cut in range(len(enc[:20])):
        decode_items(enc[:cut])


@settings(max_examples=100, **SETTINGS)
@given(seed_index("tls-inner"), st.integers(0, 2**32), st.integers(1, 4))
def test_tls13_mutated_plaintext_reencrypted_with_sample_keys(i, seed, rounds):
    """Hostile TLS 1.3 handshake/application plaintext, encrypted with the samples' real traffic keys, so that
    the parsers behind decryption see it (fuzz/tls13.py)."""
    targets.prepare("tls-inner")
    targets.TARGETS["tls-inner"](mutated("tls-inner", pick("tls-inner", i), seed, rounds))


def test_tls13_reencrypted_seeds_decrypt():
    """Sanity of the property above: the unmutated re-encrypted records decrypt to HTTP."""
    from dissectors.tls import ApplicationData, TLSConnection
    from fuzz import tls13

    conns = tls13._connections()
    assert len(conns) >= 10
    prefix, prot = conns[0]
    conn = TLSConnection(targets.fresh_keys())
    events = []
    for d, r in prefix:
        events += conn.feed(d, r)
    seq = dict.fromkeys(prot, 0)
    for tag, chunk in decode_items(seeds("tls-inner")[0][1:]):
        d = "c2s" if tag & 1 == 0 else "s2c"
        if tag & 0x80:
            events += conn.feed(d, chunk)
            continue
        k = f"{d}{(tag >> 1) & 1}"
        events += conn.feed(d, tls13._seal(prot[k], seq[k], chunk))
        seq[k] += 1
    app = b"".join(e.data for e in events if isinstance(e, ApplicationData))
    assert app.startswith(b"POST ") or b"HTTP/1.1" in app


def test_fuzz_driver_smoke(tmp_path):
    """`python -m fuzz` (what `make fuzz` runs) works end to end: a few seconds of one family with the built-in
    engine, the statistics table, exit 0; `--reproduce` on a regression input says it no longer crashes."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "fuzz", "--minutes", "0.05", "--family", "cstp", "--engine", "builtin",
                        "--work", str(tmp_path / "work"), "--crashes", str(tmp_path / "crashes")], cwd=root,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("cstp "))
    assert int(row.split()[1]) > 0 and row.split()[-1] == "0"
    reg = root / "tests" / "corpus" / "regressions" / "http" / "content-length-superscript-digit.bin"
    p = subprocess.run([sys.executable, "-m", "fuzz", "--reproduce", str(reg), "--family", "http"], cwd=root,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0 and "no crash" in p.stdout, p.stdout + p.stderr


HOSTILE_VALUES = ["", " ", "0", "-1", "99999999999999999999999", "9" * 5000, "\u00b2", "zz", "::::", "1e9", "nan",
                  "0x10", "a" * 3000, "\x00", "AB" * 10, "1400, 1400", "PSK-NEGOTIATE", "lzs", "oc-lz4", "gzip",
                  "<config-auth>", "webvpn=; webvpn=x", "\xff\xfe"]


@st.composite
def hostile_plaintext(draw):
    """A sample's TLS 1.3 connection with the *decrypted* application data edited: header values replaced by
    hostile ones, bytes flipped, records cut — re-encrypted with the sample keys (handshake untouched)."""
    data = pick("pipeline-inner", draw(st.integers(0, 1 << 16)))
    items = decode_items(data[1:])
    app = [k for k, (tag, _) in enumerate(items) if not tag & 0x80 and tag & 2 and len(items[k][1]) > 1]
    for _ in range(draw(st.integers(1, 4))):
        k = app[draw(st.integers(0, len(app) - 1))]
        tag, rec = items[k]
        content, ctype = rec[:-1], rec[-1:]
        lines = content.split(b"\r\n")
        header_lines = [j for j, ln in enumerate(lines) if b": " in ln]
        if header_lines and draw(st.booleans()):
            j = header_lines[draw(st.integers(0, len(header_lines) - 1))]
            name = lines[j].split(b": ", 1)[0]
            lines[j] = name + b": " + draw(st.sampled_from(HOSTILE_VALUES)).encode("latin-1")
            content = b"\r\n".join(lines)
        else:
            content = mut.byte_mutate(content, random.Random(draw(st.integers(0, 2**32))))
        items[k] = (tag, content + ctype)
    return data[:1] + encode_items(items)


@settings(max_examples=40, **SETTINGS)
@given(hostile_plaintext())
def test_pipeline_on_hostile_decrypted_http_and_cstp(data):
    """analyzer/ (connection trackers, sessions, rules, renderers) on hostile HTTP/XML/CONNECT/CSTP content that
    decrypts fine: never raises (the fuzz family pipeline-inner does this for minutes)."""
    targets.prepare("pipeline-inner")
    targets.TARGETS["pipeline-inner"](data)
