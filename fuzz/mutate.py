"""Mutators: generic byte-level edits plus structure-aware ones per family (pcapng blocks, sequence items,
key log lines, XML). Used by the built-in engine and, as libFuzzer custom mutator, by the atheris engine.

All take a ``random.Random`` so that a run is reproducible from its seed.
"""
from __future__ import annotations

import random
import struct

from fuzz.seeds import decode_items, encode_items

INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF, 0x14, 0x15, 0x16, 0x17, 0x0A)
INTERESTING16 = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x4000, 0x0303, 0x0304, 0xFEFD, 0xFEFF, 0x0100, 0x3FFF, 16384 + 2048)
INTERESTING32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 0x0A0D0D0A, 0x1A2B3C4D, 0x10000000,
                 0x00010000, 12, 28, 32)


# --- generic -------------------------------------------------------------------------------------------------

def byte_mutate(data: bytes, rng: random.Random, pool=(), max_size: int = 1 << 20) -> bytes:
    b = bytearray(data)
    for _ in range(1 + min(rng.getrandbits(3), 6) if rng.random() < 0.5 else 1):
        op = rng.randrange(13)
        n = len(b)
        if n == 0:
            b += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
            continue
        pos = rng.randrange(n)
        if op == 0:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos] = rng.choice(INTERESTING8)
        elif op == 2:
            b[pos] = rng.getrandbits(8)
        elif op == 3 and pos + 2 <= n:
            struct.pack_into(rng.choice("<>") + "H", b, pos, rng.choice(INTERESTING16))
        elif op == 4 and pos + 4 <= n:
            struct.pack_into(rng.choice("<>") + "I", b, pos, rng.choice(INTERESTING32))
        elif op == 5:  # delete a range
            del b[pos:pos + rng.randint(1, min(64, n - pos))]
        elif op == 6:  # insert random bytes
            b[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        elif op == 7:  # duplicate a range
            k = rng.randint(1, min(256, n - pos))
            b[pos:pos] = b[pos:pos + k]
        elif op == 8:  # copy a range over another place
            src = rng.randrange(n)
            k = rng.randint(1, min(64, n - src))
            b[pos:pos + k] = b[src:src + k]
        elif op == 9:  # truncate
            del b[pos:]
        elif op == 10 and pool:  # splice with another input
            other = rng.choice(pool)
            if other:
                cut = rng.randrange(len(other))
                b = b[:pos] + bytearray(other[cut:cut + rng.randint(1, 4096)])
        elif op == 11:  # add/subtract a small number to a byte (length fields)
            b[pos] = (b[pos] + rng.choice((-2, -1, 1, 2, 4, 8))) & 0xFF
        elif op == 12:  # swap two ranges
            k = rng.randint(1, min(32, n - pos))
            q = rng.randrange(n)
            k = min(k, n - q)
            if k > 0 and (q + k <= pos or pos + k <= q):
                x, y = bytes(b[pos:pos + k]), bytes(b[q:q + k])
                b[pos:pos + k], b[q:q + k] = y, x
    return bytes(b[:max_size])


# --- pcapng blocks --------------------------------------------------------------------------------------------

def split_blocks(data: bytes) -> list[bytes] | None:
    """A little-endian pcapng file as its list of blocks (None if the structure does not hold)."""
    blocks = []
    pos = 0
    while pos + 12 <= len(data):
        (blen,) = struct.unpack_from("<I", data, pos + 4)
        if blen < 12 or blen % 4 or pos + blen > len(data):
            return None
        blocks.append(data[pos:pos + blen])
        pos += blen
    return blocks if pos == len(data) and blocks else None


def make_block(btype: int, body: bytes) -> bytes:
    body = body + b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _epb_payload(block: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(head 28 bytes, packet data, tail with options) of an EPB, else None."""
    if len(block) < 32 or struct.unpack_from("<I", block, 0)[0] != 6:
        return None
    caplen = struct.unpack_from("<I", block, 20)[0]
    if 28 + caplen > len(block) - 4:
        return None
    pad = -caplen % 4
    return block[:28], block[28:28 + caplen], block[28 + caplen + pad:-4]


def _rebuild_epb(head: bytes, pkt: bytes, opts: bytes) -> bytes:
    body = bytearray(head[8:28]) + pkt + b"\0" * (-len(pkt) % 4) + opts
    struct.pack_into("<I", body, 12, len(pkt))  # captured length
    struct.pack_into("<I", body, 16, max(len(pkt), struct.unpack_from("<I", body, 16)[0]))
    return make_block(6, bytes(body))


def to_classic_pcap(blocks: list[bytes], rng: random.Random) -> bytes:
    """Convert (the EPBs of) a pcapng to a classic pcap with a random magic/byte order/resolution."""
    order = rng.choice("<>")
    nano = rng.random() < 0.5
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    linktype = 1
    for b in blocks:
        if struct.unpack_from("<I", b, 0)[0] == 1 and len(b) >= 20:
            linktype = struct.unpack_from("<H", b, 8)[0]
            break
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
    for b in blocks:
        p = _epb_payload(b)
        if p is None:
            continue
        head, pkt, _ = p
        th, tl = struct.unpack_from("<II", head, 12)
        t = (th << 32) | tl  # microseconds (the samples use the default resolution)
        sec, frac = divmod(t, 1_000_000)
        if nano:
            frac *= 1000
        out += struct.pack(order + "IIII", sec & 0xFFFFFFFF, frac, len(pkt), len(pkt)) + pkt
    return bytes(out)


def _dsb(rng: random.Random, pool_text: str) -> bytes:
    lines = pool_text.splitlines() or ["CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48]
    text = "\n".join(rng.choice(lines) for _ in range(rng.randint(0, 6)))
    if rng.random() < 0.3:
        text += "\ngarbage " + "zz" * rng.randint(0, 40)
    secret = text.encode()
    body = struct.pack("<II", 0x544C534B if rng.random() < 0.9 else rng.getrandbits(32), len(secret)) + secret
    return make_block(0x0A, body)


def pcapng_mutate(data: bytes, rng: random.Random, pool=(), keylog_text: str = "", max_size: int = 1 << 20) -> bytes:
    blocks = split_blocks(data)
    if not blocks:
        return byte_mutate(data, rng, pool, max_size)
    op = rng.randrange(15)
    n = len(blocks)
    i = rng.randrange(n)
    if op == 0 and n > 1:  # drop a block
        del blocks[i]
    elif op == 1:  # duplicate a block (retransmission, duplicate SHB/IDB)
        blocks.insert(i, blocks[i])
    elif op == 2 and n > 2:  # reorder a window of blocks
        j = min(n, i + rng.randint(2, 8))
        window = blocks[i:j]
        rng.shuffle(window)
        blocks[i:j] = window
    elif op in (3, 4, 5):  # edit the packet inside one EPB, lengths kept consistent
        epbs = [k for k, b in enumerate(blocks) if _epb_payload(b)]
        if epbs:
            k = rng.choice(epbs)
            head, pkt, opts = _epb_payload(blocks[k])
            blocks[k] = _rebuild_epb(head, byte_mutate(pkt, rng, (), 65535), opts)
    elif op == 6:  # truncate at a block boundary or inside a block
        cut = sum(len(b) for b in blocks[:i])
        if rng.random() < 0.5:
            cut += rng.randrange(len(blocks[i]))
        return b"".join(blocks)[:cut]
    elif op == 7:  # a hostile length in a block header (or trailer)
        b = bytearray(blocks[i])
        where = rng.choice((4, len(b) - 4))
        struct.pack_into("<I", b, where, rng.choice(INTERESTING32 + (len(b) + 4, len(b) - 4, 0xFFFFFFF0)))
        blocks[i] = bytes(b)
    elif op == 8:  # hostile EPB fields: interface id, timestamps, captured/original lengths
        epbs = [k for k, b in enumerate(blocks) if _epb_payload(b)]
        if epbs:
            k = rng.choice(epbs)
            b = bytearray(blocks[k])
            off = rng.choice((8, 12, 16, 20, 24))
            struct.pack_into("<I", b, off, rng.choice(INTERESTING32 + (rng.getrandbits(32),)))
            blocks[k] = bytes(b)
    elif op == 9:  # insert a Decryption Secrets Block
        blocks.insert(rng.randint(1, n), _dsb(rng, keylog_text))
    elif op == 10:  # an IDB with a hostile if_tsresol / if_tsoffset / link type
        opts = b""
        if rng.random() < 0.7:
            resol = rng.choice((0, 3, 6, 9, 18, 19, 0x80, 0x8A, 0xBF, 0xFF))
            opts += struct.pack("<HH", 9, 1) + bytes([resol]) + b"\0" * 3
        if rng.random() < 0.5:
            opts += struct.pack("<HHq", 14, 8, rng.choice((0, -1, -(1 << 40), 1 << 40, (1 << 63) - 1, -(1 << 63))))
        opts += struct.pack("<HH", 0, 0)
        lt = rng.choice((1, 101, 113, 276, 0, 12, 228, 229, 147, 0xFFFF))
        idb = make_block(1, struct.pack("<HHI", lt, 0, rng.choice((0, 64, 262144))) + opts)
        idbs = [k for k, b in enumerate(blocks) if struct.unpack_from("<I", b, 0)[0] == 1]
        if idbs and rng.random() < 0.6:
            blocks[rng.choice(idbs)] = idb
        else:
            blocks.insert(rng.randint(1, n), idb)
    elif op == 11:  # a second section (SHB), possibly big-endian or with another version
        shb = make_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, rng.choice((1, 1, 2)), 0, -1))
        blocks.insert(rng.randint(1, n), shb)
    elif op == 12:
        return to_classic_pcap(blocks, rng)[:max_size]
    elif op == 13:  # swap the packets of two EPBs (a reordered capture)
        epbs = [k for k, b in enumerate(blocks) if _epb_payload(b)]
        if len(epbs) > 1:
            a, c = rng.sample(epbs, 2)
            blocks[a], blocks[c] = blocks[c], blocks[a]
    else:  # a generic byte edit inside one block, lengths untouched
        b = blocks[i]
        if len(b) > 12:
            blocks[i] = b[:8] + byte_mutate(b[8:-4], rng, (), len(b))[: len(b) - 12].ljust(len(b) - 12, b"\0") + b[-4:]
    return b"".join(blocks)[:max_size]


# --- sequences of items -----------------------------------------------------------------------------------------

def items_mutate(data: bytes, rng: random.Random, pool=(), max_size: int = 1 << 20, prefix: int = 0) -> bytes:
    head, body = data[:prefix], data[prefix:]
    items = decode_items(body)
    if not items:
        return head + byte_mutate(body, rng, pool, max_size)
    op = rng.randrange(10)
    n = len(items)
    i = rng.randrange(n)
    if op == 0 and n > 1:
        del items[i]
    elif op == 1:
        items.insert(i, items[i])
    elif op == 2 and n > 2:
        j = min(n, i + rng.randint(2, 6))
        w = items[i:j]
        rng.shuffle(w)
        items[i:j] = w
    elif op in (3, 4, 5):
        tag, d = items[i]
        items[i] = (tag, byte_mutate(d, rng, (), 65535))
    elif op == 6:  # re-chunk: split an item in two
        tag, d = items[i]
        if len(d) > 1:
            cut = rng.randrange(1, len(d))
            items[i:i + 1] = [(tag, d[:cut]), (tag, d[cut:])]
    elif op == 7 and i + 1 < n and items[i][0] == items[i + 1][0]:  # merge two pieces
        items[i:i + 2] = [(items[i][0], items[i][1] + items[i + 1][1])]
    elif op == 8:  # change the tag (direction, gap/close flags, link type)
        tag, d = items[i]
        items[i] = (tag ^ (1 << rng.randrange(8)), d)
    else:  # cut the item short (truncation mid-record)
        tag, d = items[i]
        items[i] = (tag, d[: rng.randrange(len(d) + 1)])
        if rng.random() < 0.5:
            del items[i + 1:]
    if prefix and rng.random() < 0.1:
        head = bytes([rng.getrandbits(8)]) + head[1:]
    return (head + encode_items(items))[:max_size]


# --- key logs ----------------------------------------------------------------------------------------------

LABELS = ("CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
          "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET", "RSA", "PMS_CLIENT_RANDOM",
          "CLIENT_TRAFFIC_SECRET_N", "#", "\ufeffCLIENT_RANDOM")


def keylog_mutate(data: bytes, rng: random.Random, pool=(), max_size: int = 1 << 20) -> bytes:
    lines = data.split(b"\n")
    op = rng.randrange(8)
    i = rng.randrange(len(lines))
    if op == 0 and len(lines) > 1:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:  # another label
        f = lines[i].split(b" ")
        f[0] = rng.choice(LABELS).encode()
        lines[i] = b" ".join(f)
    elif op == 3:  # a field of another length, or not hex
        f = lines[i].split(b" ")
        k = rng.randrange(len(f))
        f[k] = rng.choice((f[k][:-2], f[k] + b"ab", f[k].upper(), b"zz" + f[k][2:], b"", f[k] * 2,
                           b"Session-ID:" + f[k], b"Master-Key:" + f[k]))
        lines[i] = b" ".join(f)
    elif op == 4:  # separators
        lines[i] = lines[i].replace(b" ", rng.choice((b"\t", b"  ", b"\r", b"\x00", b" \r")))
    elif op == 5:  # two lines joined (a lost newline)
        if i + 1 < len(lines):
            lines[i:i + 2] = [lines[i] + lines[i + 1]]
    elif op == 6:  # huge line
        lines.insert(i, b"CLIENT_RANDOM " + b"a" * rng.choice((64, 5000, 70000)))
    else:
        return byte_mutate(data, rng, pool, max_size)
    return b"\n".join(lines)[:max_size]


# --- XML -------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE config-auth [\n<!ENTITY lol "lol">\n'
                  + b"".join(b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b"]>\n")
XXE = b'<?xml version="1.0"?>\n<!DOCTYPE config-auth [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
XML_SNIPPETS = (b"&lol9;", b"&xxe;", b"<![CDATA[x]]>", b"<!-- c -->", b"<?pi x?>", b"&#0;", b"&#x110000;",
                b"&amp;", b"<password>s3cret-pass</password>", b"<session-token>TOKEN-abcdef</session-token>",
                b'<input type="password" name="secondary_password" value="s3cret"/>', b"<auth id=\"main\">",
                b"</auth>", b'xmlns="http://x"', b'xmlns:a="urn:a"', b"<a:password>ns-secret</a:password>",
                b"\xff\xfe", b"\x00", b"<" * 3, b"</config-auth>")


def xml_mutate(data: bytes, rng: random.Random, pool=(), max_size: int = 1 << 20) -> bytes:
    op = rng.randrange(9)
    if op == 0:
        body = data.split(b"?>", 1)[-1] if data.startswith(b"<?xml") else data
        return (rng.choice((BILLION_LAUGHS, XXE)) + body)[:max_size]
    if op == 1:  # insert a snippet at a tag boundary
        cuts = [k for k in range(len(data)) if data[k:k + 1] in (b"<", b">")] or [0]
        k = rng.choice(cuts) + rng.randint(0, 1)
        return (data[:k] + rng.choice(XML_SNIPPETS) + data[k:])[:max_size]
    if op == 2:  # duplicate an element
        a = data.find(b"<", rng.randrange(max(len(data), 1)))
        b_ = data.find(b">", a)
        if a >= 0 and b_ > a:
            return (data[:a] + data[a:b_ + 1] * rng.randint(2, 50) + data[a:])[:max_size]
    if op == 3:  # deep nesting
        depth = rng.choice((100, 300, 3000))
        k = data.find(b"<config-auth")
        k = data.find(b">", k) + 1 if k >= 0 else 0
        return (data[:k] + b"<a>" * depth + b"</a>" * depth + data[k:])[:max_size]
    if op == 4:  # a long text
        k = data.find(b"</")
        if k > 0:
            return (data[:k] + b"x" * rng.choice((1000, 70000)) + data[k:])[:max_size]
    if op == 5:  # another encoding declaration
        enc = rng.choice((b"UTF-16", b"ISO-8859-1", b"x-nonsense", b"UTF-32", b"ascii"))
        body = data.split(b"?>", 1)[-1] if data.startswith(b"<?xml") else data
        return (b'<?xml version="1.0" encoding="' + enc + b'"?>' + body)[:max_size]
    if op == 6 and pool:  # splice elements of another document
        other = rng.choice(pool)
        a = other.find(b"<", rng.randrange(max(len(other), 1)))
        if a >= 0:
            k = data.find(b"<", rng.randrange(max(len(data), 1)))
            k = k if k >= 0 else len(data)
            return (data[:k] + other[a:a + rng.randint(10, 400)] + data[k:])[:max_size]
    return byte_mutate(data, rng, pool, max_size)


# --- dispatch ----------------------------------------------------------------------------------------------

ITEM_PREFIX = {"packet": 0, "tls": 0, "http": 0, "cstp": 1, "dtls": 1, "tls-inner": 1, "pipeline-inner": 1}


def mutate(family: str, data: bytes, rng: random.Random, pool=(), max_size: int = 1 << 20,
           keylog_text: str = "") -> bytes:
    """One structure-aware (or, a third of the time, plain byte-level) mutation of ``data``."""
    if rng.random() < 0.3:
        return byte_mutate(data, rng, pool, max_size)
    if family in ("pcap", "pipeline"):
        return pcapng_mutate(data, rng, pool, keylog_text, max_size)
    if family in ITEM_PREFIX:
        return items_mutate(data, rng, pool, max_size, ITEM_PREFIX[family])
    if family == "keylog":
        return keylog_mutate(data, rng, pool, max_size)
    if family == "aggauth":
        return xml_mutate(data, rng, pool, max_size)
    return byte_mutate(data, rng, pool, max_size)
