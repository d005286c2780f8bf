"""The ``tls-inner`` family: mutate what is *inside* the TLS 1.3 encryption of the samples' connections.

The ``tls`` family mutates ciphertext, which only fails authentication; the parsers behind decryption
(EncryptedExtensions, Certificate, CertificateVerify, Finished, NewSessionTicket, KeyUpdate, alerts, the HTTP and
CSTP bytes) never see hostile input there. Here the seeds are the samples' TLS 1.3 records *decrypted* (inner
plaintext + content type), and the target re-encrypts each (mutated) record with the sample's real traffic keys
before feeding :class:`dissectors.tls.TLSConnection` — so the dissector decrypts hostile plaintext.

Input: byte 0 picks the connection (its cleartext ClientHello/ServerHello are replayed first), then items
(:func:`fuzz.seeds.decode_items`) whose tag is ``direction | phase << 1`` (phase 0: handshake traffic secret,
1: application traffic secret) or, with bit 7 set, a raw record fed as is.
"""
from __future__ import annotations

import functools
import struct

from fuzz.seeds import DIRS, decode_items, encode_items

_LABELS = {("c2s", 0): "CLIENT_HANDSHAKE_TRAFFIC_SECRET", ("s2c", 0): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
           ("c2s", 1): "CLIENT_TRAFFIC_SECRET_0", ("s2c", 1): "SERVER_TRAFFIC_SECRET_0"}


def _records(chunks):
    """[(direction, record bytes)] in capture order, from TCP payload chunks."""
    bufs = {"c2s": b"", "s2c": b""}
    out = []
    for direction, data in chunks:
        buf = bufs[direction] + data
        pos = 0
        while len(buf) - pos >= 5:
            n = struct.unpack_from("!H", buf, pos + 3)[0]
            if len(buf) - pos < 5 + n:
                break
            out.append((direction, buf[pos:pos + 5 + n]))
            pos += 5 + n
        bufs[direction] = buf[pos:]
    return out


def extract_connections(seeds, keys) -> list[dict]:
    """The samples' TLS 1.3 connections: cleartext prefix, suite, secrets, decrypted records (JSON-able)."""
    from dissectors.tls.ciphers import DecryptError, make_tls13_protection, suite_info

    conns = []
    for s in seeds:
        for chunks in s.tcp_streams:
            recs = _records(chunks)
            ch = next((r for d, r in recs if d == "c2s" and r[0] == 22 and len(r) > 43 and r[5] == 1), None)
            sh = next((r for d, r in recs if d == "s2c" and r[0] == 22 and len(r) > 45 and r[5] == 2), None)
            if ch is None or sh is None:
                continue
            cr = ch[11:43]
            sid_len = sh[43]
            suite_id = struct.unpack_from("!H", sh, 44 + sid_len)[0]
            secrets = {f"{d}{p}": keys.secret(lbl, cr) for (d, p), lbl in _LABELS.items()}
            if suite_id >> 8 != 0x13 or not all(secrets.values()):
                continue
            suite = suite_info(suite_id)
            prefix, items = [], []
            prot = {k: make_tls13_protection(suite, v) for k, v in secrets.items()}
            phase = {"c2s": 0, "s2c": 0}
            seq = {k: 0 for k in secrets}
            for d, r in recs:
                if r[0] != 23:
                    (prefix if not items else items).append((d, r) if not items else (0x80 | DIRS.index(d), r))
                    continue
                for p in (phase[d], 1):
                    k = f"{d}{p}"
                    try:
                        ctype, content = prot[k].decrypt(seq[k], r[:5], r[5:])
                    except DecryptError:
                        continue
                    seq[k] += 1
                    phase[d] = p
                    items.append((DIRS.index(d) | p << 1, content + bytes([ctype])))
                    break
                else:
                    items.append((0x80 | DIRS.index(d), r))
            conns.append({"prefix": [[d, r.hex()] for d, r in prefix], "suite": suite_id,
                          "secrets": {k: v.hex() for k, v in secrets.items()},
                          "seed": encode_items(items).hex()})
    return conns


@functools.lru_cache(maxsize=1)
def _connections():
    from dissectors.tls.ciphers import make_tls13_protection, suite_info
    from fuzz.seeds import key_context

    out = []
    for c in key_context().get("tls13", []):
        suite = suite_info(c["suite"])
        prot = {k: make_tls13_protection(suite, bytes.fromhex(v)) for k, v in c["secrets"].items()}
        out.append(([(d, bytes.fromhex(r)) for d, r in c["prefix"]], prot))
    return out


def _seal(prot, seq: int, inner: bytes) -> bytes:
    header = struct.pack("!BHH", 23, 0x0303, len(inner) + prot.tag_len)
    nonce = (prot._iv ^ seq).to_bytes(12, "big")
    return header + prot._aead.encrypt(nonce, inner, header)


def target_tls_inner(data: bytes) -> None:
    from dissectors.tls import RecordError, TLSConnection
    from fuzz.targets import Bug, fresh_keys

    conns = _connections()
    if not data or not conns:
        return
    prefix, prot = conns[data[0] % len(conns)]
    conn = TLSConnection(fresh_keys())
    events = []
    for d, r in prefix:
        events += conn.feed(d, r)
    seq = dict.fromkeys(prot, 0)
    for n, (tag, chunk) in enumerate(decode_items(data[1:]), 1):
        d = DIRS[tag & 1]
        if tag & 0x80:
            events += conn.feed(d, chunk, float(n), n)
            continue
        k = f"{d}{(tag >> 1) & 1}"
        if len(chunk) > (1 << 14) + 256:
            chunk = chunk[:(1 << 14) + 256]
        events += conn.feed(d, _seal(prot[k], seq[k], chunk), float(n), n)
        seq[k] += 1
    events += conn.close()
    for e in events:
        if isinstance(e, RecordError) and "internal error" in e.message:
            raise Bug(f"TLS guard fired: {e.message}")
    conn.export_keying_material(b"EXPORTER-openconnect-psk", None, 32)


def seeds() -> list[bytes]:
    from fuzz.seeds import key_context

    return [bytes([i]) + bytes.fromhex(c["seed"]) for i, c in enumerate(key_context().get("tls13", []))]


def build_stream(data: bytes) -> list[tuple[str, bytes]] | None:
    """The TCP payload chunks [(direction, bytes)] of a tls-inner input: cleartext hellos, then sealed records."""
    conns = _connections()
    if not data or not conns:
        return None
    prefix, prot = conns[data[0] % len(conns)]
    chunks = list(prefix)
    seq = dict.fromkeys(prot, 0)
    for tag, chunk in decode_items(data[1:]):
        d = DIRS[tag & 1]
        if tag & 0x80:
            chunks.append((d, chunk))
            continue
        k = f"{d}{(tag >> 1) & 1}"
        chunks.append((d, _seal(prot[k], seq[k], chunk[:(1 << 14) + 256])))
        seq[k] += 1
    return chunks


def target_pipeline_inner(data: bytes) -> None:
    """The whole analysis of a capture whose TLS 1.3 connection carries mutated (re-encrypted) plaintext: hostile
    HTTP headers, aggregate-auth XML, CONNECT headers and CSTP frames reach analyzer/ (sessions, rules)."""
    from fuzz import tlscap
    from fuzz.targets import pipeline_on_bytes

    chunks = build_stream(data)
    if chunks is None:
        return
    pipeline_on_bytes(tlscap.pcapng(tlscap.tcp_frames(chunks)), data)
