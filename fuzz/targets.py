"""Fuzz targets: one function per parser family, ``target(data: bytes) -> None``.

A target raises when acflow misbehaves on ``data``: any exception escaping a dissector whose contract is "never
raises" (see docs/architecture.md), a last-resort guard that fired (``internal error`` events: they hide a bug),
or :class:`Bug` for a broken invariant checked here (chunking changes the result, a secret survives redaction,
a rule crashed, …). Expected, documented outcomes (a ``CaptureError`` event, ``InputError`` for not-a-capture,
``AggAuthError``) are not failures.

Targets are deterministic: everything "random" (chunk sizes, linktype, encoding) is derived from ``data``.
"""
from __future__ import annotations

import atexit
import functools
import os
import tempfile
import zlib

from fuzz.seeds import DIRS, all_keys, decode_items

LINKTYPES = (1, 101, 113, 276, 0, 12, 108, 228, 229)
CSTP_ENCODINGS = (None, "lzs", "oc-lz4", "lz4", "deflate")


class Bug(AssertionError):
    """acflow broke an invariant on this input (not a Python exception from the code under test)."""


def _check_no_internal(events, attr="message") -> None:
    for e in events:
        msg = getattr(e, attr, None)
        if isinstance(msg, str) and "internal" in msg and "error" in msg:
            raise Bug(f"last-resort guard fired: {msg}")


# --- pcap ------------------------------------------------------------------------------------------------

def _parse_pcap(data: bytes, chunk: int):
    from dissectors.pcapfile import PcapParser

    p = PcapParser()
    events = []
    for i in range(0, len(data), chunk):
        events += p.feed(data[i:i + chunk])
    events += p.close()
    return p, events


def target_pcap(data: bytes) -> None:
    from dissectors.keylog import KeyStore
    from dissectors.pcapfile import CaptureError, Frame, Interface, InterfaceStatistics, Secrets

    whole_p, whole = _parse_pcap(data, max(len(data), 1))
    _check_no_internal(whole)
    last = 0
    for e in whole:
        t = type(e)
        if t is Frame:
            if e.number <= last:
                raise Bug(f"frame numbers not increasing: {e.number} after {last}")
            last = e.number
            if not isinstance(e.data, bytes) or not isinstance(e.ts, float):
                raise Bug("frame fields of the wrong type")
        elif t is Secrets:
            KeyStore().add_keylog_text(e.data.decode("utf-8", "replace"))
        elif t is Interface:
            if not (e.name is None or isinstance(e.name, str) and len(e.name) <= 256) or \
                    not (e.description is None or isinstance(e.description, str) and len(e.description) <= 256):
                raise Bug(f"interface names unbounded or of the wrong type: {e!r}")
        elif t is InterfaceStatistics:
            counters = (e.received, e.dropped, e.os_dropped)
            if not isinstance(e.interface, int) or all(c is None for c in counters) or \
                    not all(c is None or isinstance(c, int) and 0 <= c < 1 << 64 for c in counters):
                raise Bug(f"interface statistics of the wrong type or without a counter: {e!r}")
        elif t is not CaptureError:
            raise Bug(f"unexpected event {e!r}")
    # the parser accepts any split of the file: the events must not depend on it
    chunk = 1 + (data[-1] if data else 0) % 97
    _p, split = _parse_pcap(data, chunk)
    if [_key(e) for e in split] != [_key(e) for e in whole]:
        raise Bug(f"events differ when the input is fed in {chunk}-byte chunks")
    if whole_p.unrecognized != _p.unrecognized:
        raise Bug("'unrecognized' depends on chunking")


def _key(e):
    from dissectors.pcapfile import CaptureError

    if type(e) is CaptureError:  # offsets/messages of a truncation may legitimately name the same place
        return ("error", e.offset)
    return e


# --- packet / IP / TCP / UDP + reassembly ----------------------------------------------------------------

def target_packet(data: bytes) -> None:
    from dissectors import flows as flows_mod
    from dissectors import packet as packet_mod

    # small bounds so that eviction and buffer relief run too
    flows = flows_mod.FlowTable(max_flows=8, max_total_buffer=1 << 16)
    defrag = packet_mod.IPv4Defragmenter(max_pending=8, max_fragments=16)
    events = []
    ts = 0.0
    for n, (tag, frame) in enumerate(decode_items(data), 1):
        ts += (tag >> 4) * 0.25
        pkt = packet_mod.decode(LINKTYPES[tag % len(LINKTYPES)], frame)
        if pkt is None:
            continue
        if not isinstance(pkt, packet_mod.Packet):
            raise Bug(f"decode returned {type(pkt).__name__}")
        if pkt.is_fragment:
            pkt = defrag.feed(pkt, ts, n)
            if pkt is None:
                continue
        events += flows.feed(pkt, ts, n)
    events += flows.flush()
    ok = (flows_mod.StreamData, flows_mod.Gap, flows_mod.StreamClosed, flows_mod.Retransmission, flows_mod.Duplicate,
          flows_mod.Datagram, flows_mod.FlowEvicted)
    for _flow, ev in events:
        if not isinstance(ev, ok):
            raise Bug(f"unexpected flow event {ev!r}")
        if type(ev) is flows_mod.StreamData and (not ev.data or ev.direction not in DIRS):
            raise Bug(f"bad StreamData {ev.direction!r} {len(ev.data)} bytes")
        if type(ev) is flows_mod.Gap and ev.length is not None and ev.length < 0:
            raise Bug(f"negative gap {ev!r}")


# --- TLS ---------------------------------------------------------------------------------------------------

def fresh_keys():
    """A new KeyStore with every sample's keys (the dissectors add derived secrets to it, so each input gets
    its own copy; copied slot by slot because re-adding the RSA keys compares every modulus)."""
    from dissectors.keylog import KeyStore

    base = all_keys()
    ks = KeyStore()
    for slot in ("_secrets", "_sessions", "_rsa_pms", "_order"):
        getattr(ks, slot).update(getattr(base, slot))
    ks._rsa_keys.extend(base._rsa_keys)
    return ks


def target_tls(data: bytes) -> None:
    from dissectors.tls import RecordError, TLSConnection

    conn = TLSConnection(fresh_keys())
    events = []
    for n, (tag, chunk) in enumerate(decode_items(data), 1):
        direction = DIRS[tag & 1]
        if tag & 0x80:  # a gap, of a length taken from the chunk (or unknown)
            length = int.from_bytes(chunk[:3], "big") if chunk else None
            events += conn.gap(direction, length, float(n), n) or []
            chunk = chunk[3:]
        events += conn.feed(direction, chunk, float(n), n)
    events += conn.close(float(len(data)), 0)
    for e in events:
        if isinstance(e, RecordError) and "internal error" in e.message:
            raise Bug(f"TLS guard fired: {e.message}")
    for label in (b"EXPORTER-openconnect-psk", b"EXPERIMENTAL-x"):
        out = conn.export_keying_material(label, None if label[0] == 69 else b"ctx", 32)
        if out is not None and len(out) != 32:
            raise Bug("exporter returned the wrong length")
    _ = (conn.version_name, conn.decrypting, conn.tls13)


# --- DTLS --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def dtls_key_list() -> list:
    """The samples' DTLS keys (by index: the first input byte picks one; beyond the list: no keys) + 2 fakes."""
    from dissectors.dtls import DTLSKeys
    from fuzz.seeds import dtls_keys_from_context

    return dtls_keys_from_context() + [DTLSKeys.legacy(b"\x01" * 32, b"\x02" * 48), DTLSKeys.psk(b"\x03" * 32)]


def target_dtls(data: bytes) -> None:
    from dissectors.dtls import DTLSConnection, DTLSRecordError

    if not data:
        return
    key_list = dtls_key_list()
    k = data[0]
    keys = key_list[k] if k < len(key_list) else None
    conn = DTLSConnection(keys)
    events = []
    for n, (tag, dgram) in enumerate(decode_items(data[1:]), 1):
        events += conn.feed(DIRS[tag & 1], dgram, float(n), n)
        if tag & 0x40 and keys is None:  # keys learnt late (the CONNECT answer came after the hello)
            keys = key_list[tag % len(key_list)]
            events += conn.set_keys(keys)
    for e in events:
        if isinstance(e, DTLSRecordError) and "internal error" in e.message:
            raise Bug(f"DTLS guard fired: {e.message}")
    _ = (conn.version, conn.cipher_suite, conn.cipher_suite_name, conn.resumed, conn.full_handshake,
         conn.handshake_complete, conn.key_error, conn.finished_verified, conn.established, conn.psk_identity)


# --- HTTP --------------------------------------------------------------------------------------------------

def target_http(data: bytes) -> None:
    from dissectors.cstp import CSTPError, CSTPFrame
    from dissectors.http import HTTPError, HTTPStream, Request, Response, TunnelEstablished
    from dissectors.redact import redact_message

    items = decode_items(data)
    small = bool(data) and data[0] & 0x20
    stream = (HTTPStream(max_header_bytes=512, max_headers=16, max_body=4096, max_pending=1024) if small
              else HTTPStream())
    events = []
    for n, (tag, chunk) in enumerate(items, 1):
        events += stream.feed(DIRS[tag & 1], chunk, float(n), n)
        if tag & 0x80:
            events += stream.close(DIRS[tag & 1])
    events += stream.close()
    for e in events:
        t = type(e)
        if t is Request or t is Response:
            redact_message(e)
            if e.headers.get("X-CSTP-Content-Encoding"):
                pass
        elif t not in (HTTPError, TunnelEstablished, CSTPFrame, CSTPError):
            raise Bug(f"unexpected HTTP event {e!r}")


# --- CSTP --------------------------------------------------------------------------------------------------

def target_cstp(data: bytes) -> None:
    from dissectors.cstp import (
        CSTPError,
        CSTPFrame,
        CSTPFramer,
        inner_packet_summary,
        parse_disconnect_reason,
        parse_dtls_payload,
    )

    if not data:
        return
    framer = CSTPFramer(CSTP_ENCODINGS[data[0] % len(CSTP_ENCODINGS)], max_decompressed=1 << 16)
    events = []
    for n, (tag, chunk) in enumerate(decode_items(data[1:]), 1):
        events += framer.feed(DIRS[tag & 1], chunk, float(n), n)
        if tag & 0x80:
            parse_dtls_payload(chunk)
    events += framer.close()
    for e in events:
        if type(e) is CSTPFrame:
            parse_disconnect_reason(e.payload)
            inner_packet_summary(e.payload)
            if e.packet is not None:
                inner_packet_summary(e.packet)
        elif type(e) is not CSTPError:
            raise Bug(f"unexpected CSTP event {e!r}")


# --- aggregate-auth XML ------------------------------------------------------------------------------------

def target_aggauth(data: bytes) -> None:
    from dissectors.aggauth import AggAuthError, ConfigAuth, parse_config_auth, parse_post_auth_xml
    from dissectors.redact import REDACTED, is_secret_field, redact_body, redact_config_auth, redact_xml

    result = parse_config_auth(data)
    if not isinstance(result, (ConfigAuth, AggAuthError)):
        raise Bug(f"parse_config_auth returned {type(result).__name__}")
    red = redact_xml(data)
    if not isinstance(red, str):
        raise Bug("redact_xml did not return text")
    redact_body(data, "text/xml")
    redact_body(data, "application/x-www-form-urlencoded")
    parse_post_auth_xml(data)
    if isinstance(result, ConfigAuth):
        redacted = redact_config_auth(result)
        if result.session_token and redacted.session_token != REDACTED:
            raise Bug("session token not redacted")
        # every secret value the parser found must be gone from the redacted XML — unless the same text
        # also appears in a place that is not secret (then it is not a leak of this field)
        text = data.decode("utf-8", "replace")
        secrets = [v for k, v in (result.auth.values if result.auth else ()) if is_secret_field(k) and v]
        if result.session_token:
            secrets.append(result.session_token)
        for v in secrets:
            v = v.strip()
            if len(v) >= 6 and text.count(v) == 1 and v not in REDACTED and v in red:
                raise Bug(f"secret value {v[:12]!r}… survives redact_xml")


# --- key log -----------------------------------------------------------------------------------------------

def target_keylog(data: bytes) -> None:
    from dissectors.keylog import KeyStore, parse_keylog

    text = data.decode("utf-8", "replace")
    entries, errors = parse_keylog(text)
    entries_b, errors_b = parse_keylog(data)  # bytes are accepted too
    if len(entries) != len(entries_b) or errors != errors_b:
        raise Bug("parse_keylog(bytes) differs from parse_keylog(text)")
    ks = KeyStore(entries)
    again, errs2 = parse_keylog("\n".join(ks.to_keylog_lines()))
    if errs2:
        raise Bug(f"key log written by KeyStore does not parse again: {errs2[:2]}")
    if KeyStore(again).to_keylog_lines() != ks.to_keylog_lines():
        raise Bug("key log round trip changed the entries")
    # an error message names the line, never its secret — wherever a damaged line put it (any hex field)
    joined = "\n".join(errors)
    for line in text.split("\n"):
        for f in line.split():
            f = f.split(":", 1)[-1]
            if len(f) >= 16 and all(c in "0123456789abcdefABCDEF" for c in f) and f[:16] in joined:
                raise Bug("a key log error message echoes a secret field")


# --- whole pipeline ----------------------------------------------------------------------------------------

_TMP: dict = {}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _scratch() -> str:
    path = _TMP.get(os.getpid())
    if path is None:
        base = os.environ.get("ACFLOW_FUZZ_SCRATCH_DIR")  # the fuzz workers: their work dir (cleaned by the driver)
        if base is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            base = "/dev/shm"
        fd, path = tempfile.mkstemp(prefix="acflow-fuzz-", suffix=".pcapng", dir=base)
        os.close(fd)
        _TMP[os.getpid()] = path
        atexit.register(_remove, path)
    return path


def target_pipeline(data: bytes) -> None:
    pipeline_on_bytes(data, data)


def pipeline_on_bytes(capture: bytes, data: bytes) -> None:
    """The analysis driver on ``capture`` read as a file, as `acflow analyze` reads it (with every sample's keys and
    an --export-inner sink), then the renderers (which ones: chosen by ``data``, so that a crash reproduces)."""
    from analyzer.analyze import InputError, feed_capture
    from analyzer.driver import Analyzer
    from analyzer.model import Analysis
    from analyzer.report import render
    from analyzer.report.inner_pcap import InnerPcapWriter

    path = _scratch()
    with open(path, "wb") as f:
        f.write(capture)
    writer = InnerPcapWriter(os.devnull)
    an = Analyzer(fresh_keys(), key_info={"keylog_files": ["fuzz"]}, inner_sink=writer.write)
    try:
        try:
            feed_capture(an, path)
        except InputError:
            return  # not a capture at all: the documented exit 4
        analysis = an.finish()
    finally:
        writer.close()
    if not isinstance(analysis, Analysis):
        raise Bug(f"Analyzer.finish returned {type(analysis).__name__}")
    if an.stats()["fast_frames"]:
        # fast lanes took frames: the general path alone must come to the same analysis (docs/architecture.md)
        _same_without_lanes(path, analysis)
    for f in [f for s in analysis.sessions for f in s.findings] + analysis.findings:
        if f.id == "ACFLOW_RULE_ERROR":
            raise Bug(f"a rule crashed: {f.message}")
    # the renderers: JSON always (both modes), the slower terminal (rich) and HTML for a quarter of the inputs
    # each, chosen by the input so that a crash reproduces
    pick = zlib.crc32(data) & 7
    jobs = [("json", False), ("json", True)] + [("terminal", pick & 1 == 0)] * (pick < 2) + [("html", True)] * (
        pick in (2, 3))
    for fmt, show in jobs:
        out = render(analysis, fmt, version="fuzz", verbose=True, show_secrets=show)
        if not isinstance(out, str):
            raise Bug(f"{fmt} renderer returned {type(out).__name__}")


def _same_without_lanes(path: str, analysis) -> None:
    import json

    from analyzer.analyze import analyze_paths
    from analyzer.report.json_report import to_document

    slow = analyze_paths([path], fresh_keys(), {"keylog_files": ["fuzz"]}, fast_lanes=False)
    a, b = (json.dumps(to_document(x, version="fuzz", show_secrets=True), sort_keys=True, default=str)
            for x in (analysis, slow))
    if a != b:
        raise Bug("the analysis with fast lanes differs from the general path's")


def target_tls_inner(data: bytes) -> None:
    from fuzz.tls13 import target_tls_inner as target

    target(data)


def target_pipeline_inner(data: bytes) -> None:
    from fuzz.tls13 import target_pipeline_inner as target

    target(data)


TARGETS = {
    "pcap": target_pcap,
    "packet": target_packet,
    "tls": target_tls,
    "tls-inner": target_tls_inner,
    "dtls": target_dtls,
    "http": target_http,
    "cstp": target_cstp,
    "aggauth": target_aggauth,
    "keylog": target_keylog,
    "pipeline": target_pipeline,
    "pipeline-inner": target_pipeline_inner,
}

#: libFuzzer -max_len per family (captures are up to ~60 KB; key logs and XML are small)
MAX_LEN = {"pcap": 131072, "pipeline": 131072, "packet": 131072, "tls": 131072, "tls-inner": 131072,
           "pipeline-inner": 131072, "dtls": 65536,
           "http": 65536, "cstp": 65536, "aggauth": 32768, "keylog": 16384}


def prepare(family: str) -> None:
    """Imports and key loading done once, outside the per-input time limit."""
    if family in ("tls", "tls-inner", "pipeline", "pipeline-inner"):
        all_keys()
    if family in ("tls-inner", "pipeline-inner"):
        from fuzz.tls13 import _connections

        _connections()
    if family == "dtls":
        dtls_key_list()
    if family in ("pipeline", "pipeline-inner"):
        import analyzer.analyze
        import analyzer.report.html
        import analyzer.report.inner_pcap
        import analyzer.report.json_report
        import analyzer.report.terminal  # noqa: F401
        from analyzer.rules import load_rules

        load_rules()
