"""Generate the hostile-input corpus of ``tests/corpus/`` from the real lab samples.

``python -m fuzz.make_corpus [--out DIR] [--big]``

Writes ``DIR/<group>/<name>`` files and ``DIR/MANIFEST.json``: for each file the key log / RSA key to pass, what
it is, and what ``acflow analyze`` must do with it (``expect``):

=============== ==============================================================================================
ok              exit 0, a report, no CAPTURE_DAMAGED (a valid capture in another form: pcap, gzip, …)
report          exit 0, a report (the damage is inside the packets: the phases/findings say what they can)
damaged         exit 0, a report with a CAPTURE_DAMAGED finding (truncated or broken capture file)
limit           exit 0, a report with an ANALYSIS_LIMIT finding (a safety bound was hit)
not-a-capture   exit 4, one line on stderr naming the file
=============== ==============================================================================================

Whatever the expectation: no traceback, bounded time and memory (``tests/test_corpus.py``).

Groups: ``trunc`` (truncated at/inside pcapng blocks and mid TLS record), ``flip`` (random bit flips, seeded),
``linktype`` (wrong link type), ``len`` (zero and huge length fields: 4 GB-claimed pcapng block/packet/pcap
record/secrets, a 16 MB-claimed TLS handshake message, 64 KB TLS records, a 4 GB HTTP Content-Length, a huge
chunk size, a 64 KB CSTP frame claim), ``xml`` (billion laughs, external entities, deep nesting, an XML body over
the 1 MiB bound — in real TLS sessions built by :mod:`fuzz.tlscap`), ``keylog`` (key logs with garbage lines),
``notcap`` (not captures at all), ``format`` (pcap/gzip variants of a sample). ``--big`` adds what is too large to
commit (an HTTP response with 100 000 headers, ~0.6 MB); the tests generate those into a temporary directory.

The sample-derived files are deterministic (fixed seeds); the TLS-built ones carry fresh keys on each run.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import struct
from pathlib import Path

from fuzz.mutate import make_block, split_blocks, to_classic_pcap
from fuzz.seeds import ROOT, SAMPLES

DEFAULT_OUT = ROOT / "tests" / "corpus" / "generated"
SECRET_PASSWORD = "corpus-pass-7Qx9"  # the password in the TLS-built captures: must never be printed
SECRET_TOKEN = "CORPUS-TOKEN-5F3A9C"


class Corpus:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.entries: list[dict] = []

    def add(self, name: str, data: bytes | str, expect: str, what: str, *, keylog: str | None = None,
            rsa_key: str | None = None, keylog_data: str | None = None, secrets: list[str] | None = None) -> None:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        entry = {"file": name, "expect": expect, "what": what}
        if keylog_data is not None:
            kpath = path.with_name(path.name + ".keys")
            kpath.write_text(keylog_data)
            entry["keylog"] = str(kpath.relative_to(self.out))
        elif keylog:
            entry["keylog"] = keylog  # relative to the repository root when it starts with samples/
        if rsa_key:
            entry["rsa_key"] = rsa_key
        if secrets:
            entry["secrets"] = secrets
        self.entries.append(entry)

    def write_manifest(self) -> None:
        (self.out / "MANIFEST.json").write_text(json.dumps({"files": self.entries}, indent=1) + "\n")


def _sample(name: str) -> tuple[bytes, list[bytes], str]:
    d = SAMPLES / name
    data = (d / "capture.pcapng").read_bytes()
    return data, split_blocks(data), f"samples/{name}/keys.log"


def _btype(b: bytes) -> int:
    return struct.unpack_from("<I", b, 0)[0]


def _epb_indexes(blocks) -> list[int]:
    return [i for i, b in enumerate(blocks) if _btype(b) == 6]


def _tls_app_epb(blocks) -> int:
    """Index of the first EPB whose TCP payload starts with a TLS application-data record (Ethernet/IPv4)."""
    for i in _epb_indexes(blocks):
        pkt = blocks[i][28:28 + struct.unpack_from("<I", blocks[i], 20)[0]]
        if len(pkt) > 14 + 20 + 20 + 5 and pkt[12:14] == b"\x08\x00" and pkt[23] == 6:
            ihl = (pkt[14] & 0x0F) * 4
            doff = (pkt[14 + ihl + 12] >> 4) * 4
            payload = pkt[14 + ihl + doff:]
            if payload[:3] == b"\x17\x03\x03" and len(payload) > 40:
                return i
    raise LookupError("no TLS application data frame")


def _set_u32(block: bytes, off: int, value: int) -> bytes:
    b = bytearray(block)
    struct.pack_into("<I", b, off, value)
    return bytes(b)


def _epb_with_packet(block: bytes, pkt: bytes) -> bytes:
    body = bytearray(block[8:28]) + pkt
    struct.pack_into("<II", body, 12, len(pkt), len(pkt))
    return make_block(6, bytes(body))


# --- groups ------------------------------------------------------------------------------------------------

def gen_trunc(c: Corpus) -> None:
    data, blocks, keylog = _sample("baseline")
    offs = [0]
    for b in blocks:
        offs.append(offs[-1] + len(b))
    c.add("trunc/baseline-10-bytes.pcapng", data[:10], "damaged", "cut inside the section header block",
          keylog=keylog)
    c.add("trunc/baseline-after-shb.pcapng", data[:offs[1]], "report", "only the section header block",
          keylog=keylog)
    c.add("trunc/baseline-after-idb.pcapng", data[:offs[2]], "report", "headers, no packet", keylog=keylog)
    for frac in (4, 2):
        k = len(blocks) // frac
        c.add(f"trunc/baseline-at-block-{k}.pcapng", data[:offs[k]], "report",
              f"cut exactly after block {k} (a shorter but valid capture)", keylog=keylog)
    for k, where in ((len(blocks) // 3, 4), (len(blocks) // 2, 30), (2 * len(blocks) // 3, -2)):
        cut = offs[k] + (where if where > 0 else len(blocks[k]) + where)
        c.add(f"trunc/baseline-inside-block-{k}-at-{where}.pcapng", data[:cut], "damaged",
              f"cut inside block {k} ({'header' if where == 4 else 'trailer' if where < 0 else 'packet data'})",
              keylog=keylog)
    i = _tls_app_epb(blocks)
    caplen = struct.unpack_from("<I", blocks[i], 20)[0]
    c.add("trunc/baseline-mid-tls-record-file-cut.pcapng", data[:offs[i] + 28 + caplen - 20], "damaged",
          "file cut inside a frame that carries a TLS application-data record", keylog=keylog)
    pkt = blocks[i][28:28 + caplen]
    cut_blocks = blocks[:i] + [_epb_with_packet(blocks[i], pkt[:-20])]
    c.add("trunc/baseline-mid-tls-record-last-frame.pcapng", b"".join(cut_blocks), "report",
          "valid capture whose last frame stops inside a TLS record (snaplen-like)", keylog=keylog)
    _rsa, rblocks, _rkeys = _sample("tls12-rsa")
    j = _tls_app_epb(rblocks)
    c.add("trunc/tls12-rsa-mid-record.pcapng", b"".join(rblocks[:j]) + rblocks[j][:60], "damaged",
          "TLS 1.2 RSA sample cut in the first application-data frame", rsa_key="samples/tls12-rsa/server-key.pem")


def gen_flip(c: Corpus) -> None:
    for name, nflips, seed in (("baseline", 1, 1), ("baseline", 8, 2), ("baseline", 64, 3), ("baseline", 512, 4),
                               ("legacy-dtls", 8, 5), ("dtls-blocked", 16, 6), ("tls12-rsa", 8, 7),
                               ("downloader", 16, 8)):
        data, _blocks, keylog = _sample(name)
        rng = random.Random(seed)
        b = bytearray(data)
        for _ in range(nflips):
            pos = rng.randrange(28, len(b))  # after the SHB header: still recognisably a pcapng
            b[pos] ^= 1 << rng.randrange(8)
        c.add(f"flip/{name}-{nflips}-flips.pcapng", bytes(b), "report", f"{nflips} random bit flip(s), seed {seed}",
              keylog=keylog, rsa_key="samples/tls12-rsa/server-key.pem" if name == "tls12-rsa" else None)
    # flips confined to the packet bytes of the TLS frames (the file structure stays valid)
    data, blocks, keylog = _sample("baseline")
    rng = random.Random(9)
    out = list(blocks)
    for i in _epb_indexes(blocks):
        caplen = struct.unpack_from("<I", blocks[i], 20)[0]
        if caplen > 80 and rng.random() < 0.5:
            b = bytearray(blocks[i])
            pos = 28 + rng.randrange(54, caplen)
            b[pos] ^= 1 << rng.randrange(8)
            out[i] = bytes(b)
    c.add("flip/baseline-payload-flips.pcapng", b"".join(out), "report",
          "one bit flipped in the TCP payload of half the frames (valid file)", keylog=keylog)
    # a reordered capture: frames of the TLS connection shuffled within windows
    out = list(blocks)
    epbs = _epb_indexes(blocks)
    for k in range(0, len(epbs) - 4, 5):
        w = [out[x] for x in epbs[k:k + 4]]
        rng.shuffle(w)
        for x, blk in zip(epbs[k:k + 4], w):
            out[x] = blk
    c.add("flip/baseline-reordered.pcapng", b"".join(out), "report", "frames shuffled in windows of 4",
          keylog=keylog)


def gen_linktype(c: Corpus) -> None:
    _data, blocks, keylog = _sample("baseline")
    for lt, what in ((0, "BSD loopback"), (101, "raw IP (the data is Ethernet)"), (147, "user-defined"),
                     (0xFFFF, "unknown"), (113, "Linux cooked")):
        idb = bytearray(blocks[1])
        struct.pack_into("<H", idb, 8, lt)
        c.add(f"linktype/baseline-linktype-{lt}.pcapng", b"".join([blocks[0], bytes(idb)] + blocks[2:]), "report",
              f"interface link type {lt} ({what})", keylog=keylog)


def gen_len(c: Corpus) -> None:
    _data, blocks, keylog = _sample("baseline")
    e = _epb_indexes(blocks)[5]
    head, tail = b"".join(blocks[:e]), b"".join(blocks[e + 1:])
    blk = blocks[e]
    for name, value, what in (("block-len-zero", 0, "pcapng block total length 0"),
                              ("block-len-4gb", 0xFFFFFFFC, "pcapng block claiming 4 GB"),
                              ("block-len-12", 12, "pcapng block length 12 (shorter than its content)"),
                              ("block-len-unaligned", len(blk) + 1, "pcapng block length not a multiple of 4")):
        c.add(f"len/baseline-{name}.pcapng", head + _set_u32(blk, 4, value) + tail, "damaged", what, keylog=keylog)
    c.add("len/baseline-block-trailer-mismatch.pcapng", head + _set_u32(blk, len(blk) - 4, len(blk) + 8) + tail,
          "damaged", "pcapng block trailing length differs from the leading one", keylog=keylog)
    c.add("len/baseline-epb-caplen-4gb.pcapng", head + _set_u32(blk, 20, 0xFFFFFFFF) + tail, "damaged",
          "enhanced packet block claiming 4 GB of captured data", keylog=keylog)
    c.add("len/baseline-epb-caplen-zero.pcapng", head + _epb_with_packet(blk, b"") + tail, "report",
          "enhanced packet block with 0 captured bytes (valid)", keylog=keylog)
    c.add("len/baseline-epb-iface-99.pcapng", head + _set_u32(blk, 8, 99) + tail, "damaged",
          "enhanced packet block naming an interface that does not exist", keylog=keylog)
    c.add("len/baseline-epb-origlen-4gb.pcapng", head + _set_u32(blk, 24, 0xFFFFFFFF) + tail, "report",
          "original length 4 GB (only informative)", keylog=keylog)
    dsb_huge = struct.pack("<II", 0x0A, 32) + struct.pack("<II", 0x544C534B, 0xFFFFFFF0) + b"\0" * 12 + struct.pack(
        "<I", 32)
    c.add("len/baseline-dsb-secrets-len-4gb.pcapng", b"".join(blocks[:2]) + dsb_huge + b"".join(blocks[2:]),
          "damaged", "decryption secrets block claiming 4 GB of secrets", keylog=keylog)
    garbage = b"CLIENT_RANDOM nothex\n\x00\xff\xfe garbage\nRSA 01 02\n" + b"A" * 5000
    dsb = make_block(0x0A, struct.pack("<II", 0x544C534B, len(garbage)) + garbage)
    c.add("len/baseline-dsb-garbage.pcapng", b"".join(blocks[:2]) + dsb + b"".join(blocks[2:]), "damaged",
          "decryption secrets block holding garbage key log lines", keylog=keylog)
    idb = bytearray(blocks[1])
    # if_tsresol option with a length that overruns the block, then an absurd resolution
    opt = struct.pack("<HH", 9, 200) + b"\x7f\0\0\0"
    bad_idb = make_block(1, bytes(idb[8:16]) + opt)
    c.add("len/baseline-idb-option-overrun.pcapng", blocks[0] + bad_idb + b"".join(blocks[2:]), "damaged",
          "interface option longer than its block", keylog=keylog)
    tsres = make_block(1, bytes(idb[8:16]) + struct.pack("<HH", 9, 1) + b"\xff\0\0\0" + struct.pack("<HHq", 14, 8,
                                                                                                      -(1 << 62))
                       + struct.pack("<HH", 0, 0))
    c.add("len/baseline-idb-tsresol-2pow127-tsoffset-huge.pcapng", blocks[0] + tsres + b"".join(blocks[2:]), "report",
          "if_tsresol 2^-127 s and a hostile if_tsoffset: absurd timestamps", keylog=keylog)
    # classic pcap records
    pcap = to_classic_pcap(blocks, random.Random(0))
    hdr, rec = pcap[:24], pcap[24:]
    order = "<" if pcap[:4] == b"\xd4\xc3\xb2\xa1" or pcap[:4] == b"\x4d\x3c\xb2\xa1" else ">"
    first_len = struct.unpack_from(order + "I", rec, 8)[0]
    second = rec[16 + first_len:]
    for name, value, expect in (("4gb", 0xFFFFFFFF, "damaged"), ("255mb", (255 << 20), "damaged"),
                                ("zero", 0, "damaged")):  # zero: the record's data is then read as headers
        bad = bytearray(second)
        struct.pack_into(order + "I", bad, 8, value)
        c.add(f"len/baseline-pcap-record-incl-len-{name}.pcap", hdr + rec[:16 + first_len] + bytes(bad), expect,
              f"classic pcap record claiming {value} captured bytes", keylog=keylog)
    bad_hdr = bytearray(hdr)
    struct.pack_into(order + "H", bad_hdr, 4, 3)
    c.add("len/baseline-pcap-version-3.pcap", bytes(bad_hdr) + rec, "damaged", "pcap file header version 3.4",
          keylog=keylog)
    gen_len_tls(c)


def _aggauth_prefix():
    from fuzz import tlscap as t

    return [("c2s", t.http_request("POST", "/", t.INIT))]


def gen_len_tls(c: Corpus) -> None:
    from fuzz import tlscap as t

    pre = _aggauth_prefix()
    ok_answer = [("s2c", t.http_response("200 OK", t.AUTH_REQUEST))]
    cases = [
        ("tls-record-len-zero", pre + [("raw-s2c", b"\x17\x03\x03\x00\x00")] + ok_answer, "report",
         "a zero-length TLS application-data record"),
        ("tls-record-len-64k", pre + [("raw-s2c", b"\x17\x03\x03\xff\xff" + b"\xaa" * 300)] + ok_answer, "report",
         "a TLS record claiming 65535 bytes (more than TLS allows), 300 sent"),
        ("tls-handshake-len-16mb", pre + [("raw-s2c", b"\x16\x03\x03\x00\x08\x01\xff\xff\xff\x03\x03\x00\x00")]
         + ok_answer, "report", "a plaintext handshake record whose message claims 16 MB"),
        ("http-content-length-4gb", pre + [("s2c", t.http_response("200 OK", t.AUTH_REQUEST,
                                                                   content_length=1 << 32))], "limit",
         "an HTTP answer claiming a 4 GB body (Content-Length: 4294967296)"),
        ("http-content-length-superscript-digit",
         pre + [("s2c", b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                        b"Content-Length: \xb2\xb9\r\n\r\n" + t.AUTH_REQUEST)],
         "report", ("Content-Length: '\\xb2\\xb9' (latin-1 superscript digits: str.isdigit() but not int(); "
                    "crashed dissectors/http.py)")),
        ("http-content-length-5000-digits", pre + [("s2c", t.http_response("200 OK", t.AUTH_REQUEST,
                                                                          content_length="9" * 5000))],
         "report", "a Content-Length of 5000 digits (int() refuses more than 4300; crashed dissectors/http.py)"),
        ("http-chunk-size-huge", pre + [("s2c", b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: "
                                                b"chunked\r\n\r\nffffffffffffffff\r\n" + t.AUTH_REQUEST)], "limit",
         "a chunked HTTP answer whose chunk claims 2^64-1 bytes"),
        ("http-header-100k-line", pre + [("s2c", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
                                                 b"Content-Length: 0\r\n\r\n")], "limit",
         "an HTTP answer with one 100 KB header line"),
        ("cstp-frame-len-64k", [("c2s", t.http_request("CONNECT", "/CSCOSSLC/tunnel", headers=[
            ("Cookie", "webvpn=" + SECRET_TOKEN), ("X-CSTP-MTU", "1400")])),
            ("s2c", b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.19.0.50\r\nX-CSTP-MTU: 1400\r\n\r\n"),
            ("s2c", b"STF\x01\xff\xff\x00\x00" + b"\x45" * 200), ("c2s", b"STF\x01\x00\x00\x07\x00")], "report",
         "a CSTP frame claiming 65535 bytes of payload, 200 sent"),
        ("connect-dtls-master-secret-10-bytes", [("c2s", t.http_request("CONNECT", "/CSCOSSLC/tunnel", headers=[
            ("X-DTLS-Master-Secret", "AB" * 10), ("X-CSTP-MTU", "1400")])),
            ("s2c", b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.19.0.50\r\nX-CSTP-MTU: 1400\r\nX-DTLS-Session-ID: "
                    + b"11" * 32 + b"\r\nX-DTLS-Port: 443\r\nX-DTLS-CipherSuite: AES128-SHA\r\n\r\n")], "report",
         "legacy DTLS with a 10-byte X-DTLS-Master-Secret (DTLSKeys.legacy raised: crashed analyzer/pipeline.py)"),
        ("cstp-lzs-bomb", [("c2s", t.http_request("CONNECT", "/CSCOSSLC/tunnel", headers=[
            ("X-CSTP-Accept-Encoding", "lzs")])),
            ("s2c", (b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.19.0.50\r\nX-CSTP-MTU: 1400\r\n"
                     b"X-CSTP-Content-Encoding: lzs\r\n\r\n")),
            ("s2c", b"STF\x01\x04\x00\x08\x00" + b"\xff" * 1024)], "report",
         "a compressed CSTP frame of 1 KB of LZS back-references"),
    ]
    for name, msgs, expect, what in cases:
        cap, keylog = t.build_capture(msgs)
        c.add(f"len/{name}.pcapng", cap, expect, what, keylog_data=keylog)


def gen_xml(c: Corpus) -> None:
    from fuzz import tlscap as t
    from fuzz.mutate import BILLION_LAUGHS, XXE

    body = t.AUTH_REQUEST.split(b"?>", 1)[1]
    docs = [
        ("billion-laughs", BILLION_LAUGHS + body.replace(b'label="Username:"', b'label="&lol9;"'),
         "the gateway's auth-request declares nested entities (billion laughs)"),
        ("xxe-file", XXE + body.replace(b'label="Username:"', b'label="&xxe;"'),
         "an external entity naming file:///etc/passwd"),
        ("xxe-parameter-network", b'<?xml version="1.0"?>\n<!DOCTYPE config-auth [<!ENTITY % p SYSTEM '
                                  b'"http://127.0.0.1:9/evil.dtd"> %p;]>\n' + body,
         "an external parameter entity on the network"),
        ("deep-nesting", b'<?xml version="1.0"?>\n<config-auth client="vpn" type="auth-request">' + b"<a>" * 20000
         + b"</a>" * 20000 + b"</config-auth>", "20 000 nested elements"),
    ]
    for name, doc, what in docs:
        msgs = _aggauth_prefix() + [("s2c", t.http_response("200 OK", doc)),
                                    ("c2s", t.http_request("POST", "/", t.auth_reply(SECRET_PASSWORD))),
                                    ("s2c", t.http_response("200 OK", t.complete(SECRET_TOKEN),
                                                            headers=[("Set-Cookie",
                                                                      f"webvpn={SECRET_TOKEN}; Secure")]))]
        cap, keylog = t.build_capture(msgs)
        c.add(f"xml/{name}.pcapng", cap, "report", what, keylog_data=keylog, secrets=[SECRET_PASSWORD, SECRET_TOKEN])
    # the hostile document in the client's POST too (an auth-reply with a DTD)
    msgs = [("c2s", t.http_request("POST", "/", XXE + t.auth_reply(SECRET_PASSWORD).split(b"?>", 1)[1]
                                   .replace(b"<username>alice", b"<username>&xxe;"))),
            ("s2c", t.http_response("200 OK", t.complete(SECRET_TOKEN)))]
    cap, keylog = t.build_capture(msgs)
    c.add("xml/xxe-in-auth-reply.pcapng", cap, "report", "the client's auth-reply (with a password) declares an "
          "external entity: redaction must still hide the password", keylog_data=keylog,
          secrets=[SECRET_PASSWORD, SECRET_TOKEN])


def gen_keylog(c: Corpus) -> None:
    data, _blocks, _ = _sample("baseline")
    text = (SAMPLES / "baseline" / "keys.log").read_text()
    lines = text.splitlines()
    junk = ["", "# comment", "\ufeffCLIENT_RANDOM", "CLIENT_RANDOM zz zz", "NOT_A_LABEL " + "00" * 32 + " " + "11" * 32,
            "CLIENT_RANDOM " + "00" * 31 + " " + "11" * 48, "\x00\x01\x02 binary \xff", "A" * 100_000,
            "RSA Session-ID:zz Master-Key:00", "CLIENT_TRAFFIC_SECRET_0\t" + "ab" * 32 + "\t" + "cd" * 31 + "\r",
            "SERVER_TRAFFIC_SECRET_0 " + "ab" * 32]
    mixed = []
    for i, line in enumerate(lines):
        mixed.append(junk[i % len(junk)])
        mixed.append(line)
    mixed += junk
    c.add("keylog/baseline-garbage-lines.pcapng", data, "ok", "the baseline capture with a key log full of garbage "
          "lines between the real ones (must still decrypt)", keylog_data="\r\n".join(mixed))
    rng = random.Random(11)
    c.add("keylog/baseline-binary-keylog.pcapng", data, "ok", "a key log of random bytes",
          keylog_data=bytes(rng.getrandbits(8) for _ in range(4096)).decode("latin-1"))
    c.add("keylog/baseline-truncated-keylog.pcapng", data, "ok", "the key log cut in the middle of a secret",
          keylog_data=text[: len(text) // 2])


def gen_notcap(c: Corpus) -> None:
    data, _blocks, keylog = _sample("baseline")
    rng = random.Random(12)
    c.add("notcap/empty.pcapng", b"", "not-a-capture", "an empty file")
    c.add("notcap/three-bytes.pcapng", data[:3], "not-a-capture", "3 bytes of a pcapng")
    c.add("notcap/text.pcapng", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not-a-capture", "a text file")
    c.add("notcap/keylog.pcapng", (SAMPLES / "baseline" / "keys.log").read_bytes(), "not-a-capture",
          "a key log given as the capture")
    c.add("notcap/random.bin", bytes(rng.getrandbits(8) for _ in range(5000)), "not-a-capture", "random bytes")
    c.add("notcap/zstd.pcapng.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 64, "not-a-capture", "a zstd file")
    c.add("notcap/gzip-of-text.gz", gzip.compress(b"hello world\n" * 10, mtime=0), "not-a-capture",
          "gzip of a text file")
    c.add("notcap/pcap-kuznetzov.pcap", b"\x34\xcd\xb2\xa1" + b"\0" * 60, "not-a-capture", "modified pcap magic")
    c.add("notcap/bad-byte-order-magic.pcapng", data[:8] + b"\x00\x00\x00\x00" + data[12:], "damaged",
          "pcapng magic but a bad byte-order magic in the section header")
    c.add("notcap/truncated-gzip.pcapng.gz", gzip.compress(data, mtime=0)[:6000], "damaged",
          "gzip-compressed capture cut short", keylog=keylog)


def gen_format(c: Corpus) -> None:
    data, blocks, keylog = _sample("baseline")
    for seed in range(4):  # the four pcap variants: µs/ns, little/big endian (chosen by the seed)
        pcap = to_classic_pcap(blocks, random.Random(seed))
        variant = {b"\xd4\xc3\xb2\xa1": "us-le", b"\xa1\xb2\xc3\xd4": "us-be", b"\x4d\x3c\xb2\xa1": "ns-le",
                   b"\xa1\xb2\x3c\x4d": "ns-be"}[pcap[:4]]
        name = f"format/baseline-{variant}.pcap"
        if any(e["file"] == name for e in c.entries):
            continue
        c.add(name, pcap, "ok", f"the baseline sample as classic pcap ({variant})", keylog=keylog)
    c.add("format/baseline.pcapng.gz", gzip.compress(data, mtime=0), "ok", "the baseline sample, gzip-compressed",
          keylog=keylog)


def gen_big(c: Corpus) -> None:
    from fuzz import tlscap as t

    headers = b"".join(b"X%d: 1\r\n" % i for i in range(100_000))
    msgs = _aggauth_prefix() + [("s2c", b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n" + headers
                                 + b"Content-Length: %d\r\n\r\n" % len(t.AUTH_REQUEST) + t.AUTH_REQUEST)]
    cap, keylog = t.build_capture(msgs)
    c.add("big/http-100k-headers.pcapng", cap, "limit", "an HTTP answer with 100 000 headers", keylog_data=keylog)
    doc = (b'<?xml version="1.0"?>\n<config-auth client="vpn" type="auth-request"><message>' + b"x" * (1 << 20)
           + b"</message></config-auth>")
    cap, keylog = t.build_capture(_aggauth_prefix() + [("s2c", t.http_response("200 OK", doc))])
    c.add("big/xml-body-over-1mib.pcapng", cap, "report", "a 1 MiB+ XML document (over the XML bound)",
          keylog_data=keylog)


def gen_cert(c: Corpus) -> None:
    """The tls12-rsa sample (its Certificate message is in clear) with the gateway certificate's issuer damaged in
    place: the DER still loads, but its issuer does not parse (cryptography parses names lazily)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = (SAMPLES / "tls12-rsa" / "capture.pcapng").read_bytes()
    cert = x509.load_pem_x509_certificate((SAMPLES / "tls12-rsa" / "server-cert.pem").read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    at, issuer = data.find(der), der.find(cert.issuer.public_bytes())
    if at < 0 or issuer < 0:
        raise LookupError("the certificate is not in one piece in the capture")
    found: dict[str, tuple[int, int]] = {}
    for pos in range(issuer, issuer + len(cert.issuer.public_bytes())):  # first byte change of each kind
        for value in (0x80, 0xFF):
            b = bytearray(der)
            b[pos] = value
            try:
                bad = x509.load_der_x509_certificate(bytes(b))
            except ValueError:
                continue
            try:
                _ = bad.issuer
            except Exception as exc:  # noqa: BLE001 - KeyError / ValueError: what acflow must survive
                found.setdefault(type(exc).__name__, (pos, value))
    for name, kind, what in (("unknown-string-tag", "KeyError", "an issuer string of unknown ASN.1 type"),
                             ("invalid-value", "ValueError", "an issuer string with an invalid value")):
        if kind not in found:  # this cryptography version parses (or rejects) such names differently
            continue
        pos, value = found[kind]
        b = bytearray(data)
        b[at + pos] = value
        c.add(f"cert/tls12-rsa-issuer-{name}.pcapng", bytes(b), "report", f"gateway certificate with {what} "
              f"(byte {pos} of the DER set to 0x{value:02x}; cryptography raises {kind} on .issuer)",
              rsa_key="samples/tls12-rsa/server-key.pem")


def gen_filter(c: Corpus) -> None:
    """Captures filtered to one protocol, as `dumpcap -f udp` or `tshark -Y tcp` would leave them."""
    for name in ("dtls-blocked", "nat-rebinding", "baseline"):
        _data, blocks, keylog = _sample(name)
        for proto, num in (("udp", 17), ("tcp", 6)):
            keep = []
            for b in blocks:
                if _btype(b) == 6:
                    pkt = b[28:28 + struct.unpack_from("<I", b, 20)[0]]
                    if len(pkt) > 23 and pkt[12:14] == b"\x08\x00" and pkt[23] != num:
                        continue
                keep.append(b)
            c.add(f"filter/{name}-{proto}-only.pcapng", b"".join(keep), "report",
                  f"the {name} sample with only its {proto.upper()} frames (a DTLS-only capture used to crash "
                  "analyzer/sessions.py when it held two DTLS flows)" if proto == "udp" else
                  f"the {name} sample with only its TCP frames", keylog=keylog)


GROUPS = {"trunc": gen_trunc, "flip": gen_flip, "linktype": gen_linktype, "len": gen_len, "xml": gen_xml,
          "keylog": gen_keylog, "notcap": gen_notcap, "format": gen_format, "cert": gen_cert,
          "filter": gen_filter}


def generate(out: Path, *, big: bool = False, small: bool = True) -> list[dict]:
    c = Corpus(out)
    if small:
        for gen in GROUPS.values():
            gen(c)
    if big:
        gen_big(c)
    c.write_manifest()
    return c.entries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.make_corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--big", action="store_true", help="also the inputs too large to commit")
    a = ap.parse_args(argv)
    if a.out.exists():
        for p in sorted(a.out.rglob("*"), reverse=True):
            if p.is_file():
                p.unlink()
    entries = generate(a.out, big=a.big)
    size = sum((a.out / e["file"]).stat().st_size for e in entries)
    print(f"{len(entries)} files, {size / 1024:.0f} KiB in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
