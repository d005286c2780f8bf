"""Seeds for the fuzz targets, taken from the real lab captures under ``samples/`` (and ``samples/scripted/``).

Everything is extracted with acflow's own dissectors, once per process (cached):

* capture files (pcap family, pipeline family) — the bytes of every ``capture.pcapng``;
* frames (packet family) — ``(linktype, data)`` of every frame;
* TCP byte streams (tls family) — the reassembled segments of every TCP connection, in capture order;
* decrypted TLS application data (http family), CSTP frames after CONNECT (cstp family), config-auth XML
  bodies and ``X-CSTP-Post-Auth-XML`` headers (aggauth family);
* DTLS datagrams of every UDP flow (dtls family) with the keys the CONNECT exchanges carry;
* key logs (keylog family).

Sequence inputs (packet, tls, dtls, http, cstp) are encoded as items ``tag (1 byte) | length (2 bytes, big
endian) | data``; :func:`decode_items` never fails (a short or overlong item takes what is left), so any byte
string is a valid input and mutations of the length fields stay meaningful.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

MAX_ITEM = 0xFFFF


def sample_dirs() -> list[Path]:
    """Every sample directory with a capture (samples/<scenario>/ and samples/scripted/<case>/)."""
    return sorted(p.parent for p in SAMPLES.glob("**/capture.pcapng") if (p.parent / "keys.log").exists())


# --- item encoding -----------------------------------------------------------------------------------------

def encode_items(items) -> bytes:
    """[(tag, data)] -> bytes; data longer than 65535 bytes is split into several items with the same tag."""
    out = bytearray()
    for tag, data in items:
        data = bytes(data)
        for i in range(0, max(len(data), 1), MAX_ITEM):
            part = data[i:i + MAX_ITEM]
            out += bytes([tag & 0xFF]) + struct.pack("!H", len(part)) + part
    return bytes(out)


def decode_items(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        if end - pos < 3:
            out.append((tag, data[pos + 1:]))
            break
        n = (data[pos + 1] << 8) | data[pos + 2]
        out.append((tag, data[pos + 3:pos + 3 + n]))
        pos += 3 + n
    return out


DIRS = ("c2s", "s2c")


def direction_tag(direction: str) -> int:
    return 0 if direction == "c2s" else 1


# --- extraction ----------------------------------------------------------------------------------------------

@dataclass
class SampleSeeds:
    name: str
    capture: bytes
    keylog: str
    frames: list = field(default_factory=list)  # (linktype, data)
    tcp_streams: list = field(default_factory=list)  # [[(direction, bytes)]] per TCP connection
    app_streams: list = field(default_factory=list)  # [[(direction, bytes)]] decrypted, per TLS connection
    cstp_streams: list = field(default_factory=list)  # [[(direction, bytes)]] rebuilt CSTP frames
    cstp_encodings: list = field(default_factory=list)
    xml: list = field(default_factory=list)  # config-auth documents (bytes)
    udp_flows: list = field(default_factory=list)  # [[(direction, datagram)]]
    dtls_keys: list = field(default_factory=list)  # DTLSKeys objects
    rsa_key_pem: bytes | None = None


def _read_frames(data: bytes):
    from dissectors.pcapfile import Frame, PcapParser, Secrets

    p = PcapParser()
    frames, secrets = [], []
    for ev in p.feed(data) + p.close():
        if type(ev) is Frame:
            frames.append(ev)
        elif type(ev) is Secrets:
            secrets.append(ev)
    return frames, secrets


def extract(d: Path) -> SampleSeeds:
    from dissectors import flows as flows_mod
    from dissectors import packet as packet_mod
    from dissectors.cstp import CSTPFrame, build_cstp_frame
    from dissectors.http import HTTPStream, Request, Response, TunnelEstablished
    from dissectors.keylog import KeyStore, load_rsa_private_key
    from dissectors.tls import ApplicationData, TLSConnection

    cap = (d / "capture.pcapng").read_bytes()
    keylog = (d / "keys.log").read_text(errors="replace")
    s = SampleSeeds(name=str(d.relative_to(SAMPLES)), capture=cap, keylog=keylog)
    keys = KeyStore()
    keys.add_keylog_text(keylog)
    pem = d / "server-key.pem"
    if pem.exists():
        s.rsa_key_pem = pem.read_bytes()
        try:
            keys.add_rsa_private_key(load_rsa_private_key(s.rsa_key_pem))
        except (ValueError, TypeError):
            pass
    frames, _secrets = _read_frames(cap)
    flows = flows_mod.FlowTable()
    defrag = packet_mod.IPv4Defragmenter()
    tcp: dict[int, list] = {}
    udp: dict[int, list] = {}
    for fr in frames:
        s.frames.append((fr.linktype, fr.data))
        pkt = packet_mod.decode(fr.linktype, fr.data)
        if pkt is None:
            continue
        if pkt.is_fragment:
            pkt = defrag.feed(pkt, fr.ts, fr.number)
            if pkt is None:
                continue
        for flow, ev in flows.feed(pkt, fr.ts, fr.number):
            if type(ev) is flows_mod.StreamData:
                tcp.setdefault(flow.index, []).append((ev.direction, ev.data))
            elif type(ev) is flows_mod.Datagram:
                udp.setdefault(ev.flow_index, []).append((ev.direction, ev.data))
    for flow, ev in flows.flush():
        if type(ev) is flows_mod.StreamData:
            tcp.setdefault(flow.index, []).append((ev.direction, ev.data))
    s.tcp_streams = [v for _, v in sorted(tcp.items())]
    s.udp_flows = [v for _, v in sorted(udp.items()) if v and v[0][1][:1] in (b"\x16", b"\x17", b"\x15", b"\x14")]
    for chunks in s.tcp_streams:
        conn = TLSConnection(keys)
        app = []
        for direction, data in chunks:
            for ev in conn.feed(direction, data):
                if type(ev) is ApplicationData:
                    app.append((ev.direction, ev.data))
        if not app:
            continue
        s.app_streams.append(app)
        http = HTTPStream()
        cstp: list = []
        encoding = None
        for direction, data in app:
            for ev in http.feed(direction, data, 0.0, 0):
                if type(ev) is Request or type(ev) is Response:
                    if ev.body and b"<config-auth" in ev.body:
                        s.xml.append(bytes(ev.body))
                    pax = ev.headers.get("X-CSTP-Post-Auth-XML")
                    if pax:
                        s.xml.append(pax.encode())
                    if type(ev) is Response and ev.headers.get("X-CSTP-Content-Encoding"):
                        encoding = ev.headers.get("X-CSTP-Content-Encoding")
                elif type(ev) is CSTPFrame:
                    cstp.append((ev.direction, build_cstp_frame(int(ev.type), ev.payload)))
                elif type(ev) is TunnelEstablished:
                    pass
        if cstp:
            s.cstp_streams.append(cstp)
            s.cstp_encodings.append(encoding)
    return s


def _dtls_keys(d: Path) -> list:
    """The DTLS keys acflow derives from this sample's CONNECT exchanges (legacy or PSK-NEGOTIATE)."""
    from analyzer.analyze import feed_capture, load_keys
    from analyzer.driver import Analyzer

    keys, info = load_keys([d / "keys.log"], [])
    an = Analyzer(keys, key_info=info)
    feed_capture(an, d / "capture.pcapng")
    an.finish()
    return [i.keys for i in an.pipeline.dtls_keys.values() if i.keys]


@functools.lru_cache(maxsize=1)
def all_seeds() -> tuple[SampleSeeds, ...]:
    out = []
    for d in sample_dirs():
        s = extract(d)
        try:
            s.dtls_keys = _dtls_keys(d)
        except Exception:  # noqa: BLE001 - a seed source that fails is a bug the pipeline family will find
            s.dtls_keys = []
        out.append(s)
    return tuple(out)


# --- key material, also from a cache file (the atheris worker must not import acflow before instrumenting it)

_context: dict | None = None


def key_context() -> dict:
    """The key material of every sample as plain data (JSON-able): key log texts, RSA key PEMs, DTLS keys, the
    TLS 1.3 connections of the tls-inner family."""
    if _context is not None:
        return _context
    return _key_context()


@functools.lru_cache(maxsize=1)
def _key_context() -> dict:
    seeds = all_seeds()
    dtls = []
    for s in seeds:
        for k in s.dtls_keys:
            item = [k.mode, k.session_id.hex(), k.master_secret.hex(), k.psk_secret.hex(), k.identity.hex()]
            if item not in dtls:
                dtls.append(item)
    from dissectors.keylog import KeyStore
    from fuzz.tls13 import extract_connections

    ks = KeyStore()
    for s in seeds:
        ks.add_keylog_text(s.keylog)
    return {"keylogs": [s.keylog for s in seeds], "rsa_pems": sorted({s.rsa_key_pem.decode() for s in seeds
                                                                      if s.rsa_key_pem}), "dtls_keys": dtls,
            "tls13": extract_connections(seeds, ks)}


def set_context(ctx: dict) -> None:
    global _context
    _context = ctx
    all_keys.cache_clear()



@functools.lru_cache(maxsize=1)
def all_keys():
    """One KeyStore with every sample's key log and RSA key (client randoms differ between samples)."""
    from dissectors.keylog import KeyStore, load_rsa_private_key

    ctx = key_context()
    ks = KeyStore()
    for text in ctx["keylogs"]:
        ks.add_keylog_text(text)
    for pem in ctx["rsa_pems"]:
        try:
            ks.add_rsa_private_key(load_rsa_private_key(pem.encode()))
        except (ValueError, TypeError):
            pass
    return ks


def dtls_keys_from_context() -> list:
    from dissectors.dtls import DTLSKeys

    out = []
    for mode, sid, ms, psk, ident in key_context()["dtls_keys"]:
        if mode == "legacy":
            out.append(DTLSKeys.legacy(bytes.fromhex(sid), bytes.fromhex(ms)))
        else:
            out.append(DTLSKeys.psk(bytes.fromhex(psk), bytes.fromhex(ident)))
    return out


def keylog_text() -> str:
    return "".join(key_context()["keylogs"])


# --- seed inputs per family ------------------------------------------------------------------------------

def _chunks_items(chunks) -> bytes:
    return encode_items((direction_tag(dr), data) for dr, data in chunks)


def family_seeds(family: str) -> list[bytes]:
    """The seed inputs of a family (encoded as its target expects them)."""
    seeds = all_seeds()
    out: list[bytes] = []
    if family in ("pcap", "pipeline"):
        out = [s.capture for s in seeds]
    elif family == "packet":
        from fuzz.targets import LINKTYPES

        for s in seeds:
            items = [(LINKTYPES.index(lt) if lt in LINKTYPES else 0, data) for lt, data in s.frames]
            out.append(encode_items(items))
    elif family == "tls":
        out = [_chunks_items(c) for s in seeds for c in s.tcp_streams]
    elif family == "http":
        out = [_chunks_items(c) for s in seeds for c in s.app_streams]
    elif family == "cstp":
        from fuzz.targets import CSTP_ENCODINGS

        for s in seeds:
            for chunks, enc in zip(s.cstp_streams, s.cstp_encodings):
                idx = CSTP_ENCODINGS.index(enc) if enc in CSTP_ENCODINGS else 0
                out.append(bytes([idx]) + _chunks_items(chunks[:200]))
    elif family == "dtls":
        ctx_keys = key_context()["dtls_keys"]
        for s in seeds:
            for flow in s.udp_flows:
                idx = [ctx_keys.index(k) for k in ([x.mode, x.session_id.hex(), x.master_secret.hex(),
                                                    x.psk_secret.hex(), x.identity.hex()] for x in s.dtls_keys)
                       if k in ctx_keys]
                out.append(bytes([idx[0] if idx else 255]) + _chunks_items(flow[:60]))
    elif family == "aggauth":
        out = sorted({x for s in seeds for x in s.xml})
    elif family == "keylog":
        out = sorted({s.keylog.encode() for s in seeds})
    elif family in ("tls-inner", "pipeline-inner"):
        from fuzz.tls13 import seeds as tls13_seeds

        out = tls13_seeds()
    else:
        raise ValueError(f"unknown family {family!r}")
    return [x for x in out if x]


def write_cache(family: str, directory: Path) -> None:
    """Seeds and key material for a worker: <dir>/seeds/*.bin and <dir>/context.json."""
    import hashlib
    import json

    d = directory / "seeds"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*.bin"):
        old.unlink()
    for x in family_seeds(family):
        (d / (hashlib.sha1(x).hexdigest()[:16] + ".bin")).write_bytes(x)
    (directory / "context.json").write_text(json.dumps(key_context()))


def read_cache(directory: Path) -> list[bytes]:
    import json

    set_context(json.loads((directory / "context.json").read_text()))
    return [p.read_bytes() for p in sorted((directory / "seeds").glob("*.bin"))]
