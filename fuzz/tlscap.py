"""Build real TLS captures in memory: Python's ``ssl`` client and server talk through MemoryBIOs, the bytes they
exchange are wrapped in Ethernet/IPv4/TCP segments and written as pcapng, and the client's NSS key log comes
back with them. The TLS is real (OpenSSL on both ends), only the HTTP inside is whatever the caller scripts —
e.g. a gateway answering the aggregate-auth POST with a billion-laughs document.

``build_capture(messages) -> (pcapng bytes, key log text)``; ``messages`` is a list of ``(direction, bytes)``
sent through TLS, or ``("raw-c2s"|"raw-s2c", bytes)`` injected into the TCP stream as is (hostile TLS records
that no TLS library would write).
"""
from __future__ import annotations

import datetime as _dt
import os
import ssl
import struct
import tempfile
from functools import lru_cache

from dissectors.packet import internet_checksum

GATEWAY = ("198.18.0.1", 443)
CLIENT = ("198.18.0.2", 51000)
HOST = "vpn.acflow.test"
MSS = 1448


@lru_cache(maxsize=1)
def _pki() -> tuple[str, str]:
    """(cert PEM path, key PEM path) of a throw-away self-signed EC certificate for HOST."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    d = tempfile.mkdtemp(prefix="acflow-tlscap-")
    cp, kp = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(kp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cp, kp


def tls_session(messages, *, tls13: bool = True) -> tuple[list[tuple[str, bytes]], str]:
    """Run a real TLS session; returns the TCP payload chunks [(direction, bytes)] and the key log text."""
    cert, key = _pki()
    fd, keylog = tempfile.mkstemp(prefix="acflow-tlscap-", suffix=".keys")
    os.close(fd)
    try:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        cctx.keylog_filename = keylog
        if not tls13:
            for ctx in (sctx, cctx):
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        client = cctx.wrap_bio(c_in, c_out, server_hostname=HOST)
        server = sctx.wrap_bio(s_in, s_out, server_side=True)
        chunks: list[tuple[str, bytes]] = []

        def pump() -> bool:
            moved = False
            for src, dst, direction in ((c_out, s_in, "c2s"), (s_out, c_in, "s2c")):
                data = src.read()
                if data:
                    chunks.append((direction, data))
                    dst.write(data)
                    moved = True
            return moved

        for _ in range(50):
            done = 0
            for obj in (client, server):
                try:
                    obj.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            if not pump() and done == 2:
                break
        else:
            raise RuntimeError("TLS handshake did not complete")
        for direction, data in messages:
            if direction.startswith("raw-"):
                chunks.append((direction[4:], bytes(data)))
                continue
            src, dst = (client, server) if direction == "c2s" else (server, client)
            for i in range(0, len(data), 1 << 16):
                src.write(data[i:i + (1 << 16)])
                pump()
                while True:  # drain the receiver so that its buffers do not grow
                    try:
                        if not dst.read(1 << 20):
                            break
                    except ssl.SSLWantReadError:
                        if not pump():
                            break
                    except ssl.SSLError:
                        break
        for obj in (client, server):
            try:
                obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
            pump()
        with open(keylog) as f:
            return chunks, f.read()
    finally:
        os.unlink(keylog)


# --- packets and pcapng -----------------------------------------------------------------------------------

def _ip(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def tcp_packet(src, dst, seq: int, ack: int, flags: int, payload: bytes = b"", ip_id: int = 0) -> bytes:
    """Ethernet + IPv4 + TCP (no options) frame."""
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0)
    pseudo = _ip(src[0]) + _ip(dst[0]) + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                     _ip(src[0]), _ip(dst[0]))
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    return eth + ip + tcp + payload


def tcp_frames(chunks, t0: float = 1_800_000_000.0) -> list[tuple[float, bytes]]:
    """Frames of one TCP connection (handshake, the chunks in MSS-sized segments, FIN exchange)."""
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    c, s = CLIENT, GATEWAY
    cseq, sseq = 1_000_000, 2_000_000
    frames: list[tuple[float, bytes]] = []
    t = t0
    n = 0

    def add(pkt):
        nonlocal t, n
        n += 1
        frames.append((t, pkt))
        t += 0.0005

    add(tcp_packet(c, s, cseq, 0, SYN, ip_id=n))
    add(tcp_packet(s, c, sseq, cseq + 1, SYN | ACK, ip_id=n))
    cseq += 1
    sseq += 1
    add(tcp_packet(c, s, cseq, sseq, ACK, ip_id=n))
    for direction, data in chunks:
        for i in range(0, len(data), MSS):
            seg = data[i:i + MSS]
            if direction == "c2s":
                add(tcp_packet(c, s, cseq, sseq, ACK | PSH, seg, ip_id=n))
                cseq += len(seg)
            else:
                add(tcp_packet(s, c, sseq, cseq, ACK | PSH, seg, ip_id=n))
                sseq += len(seg)
    add(tcp_packet(c, s, cseq, sseq, FIN | ACK, ip_id=n))
    add(tcp_packet(s, c, sseq, cseq + 1, FIN | ACK, ip_id=n))
    add(tcp_packet(c, s, cseq + 1, sseq + 1, ACK, ip_id=n))
    return frames


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng(frames, *, linktype: int = 1, keylog: str | None = None) -> bytes:
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(0x00000001, struct.pack("<HHI", linktype, 0, 262144))]
    if keylog:
        secret = keylog.encode()
        out.append(_block(0x0000000A, struct.pack("<II", 0x544C534B, len(secret)) + secret))
    for ts, data in frames:
        us = round(ts * 1_000_000)
        out.append(_block(0x00000006, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
                          + data))
    return b"".join(out)


def build_capture(messages, *, tls13: bool = True, embed_keys: bool = False) -> tuple[bytes, str]:
    chunks, keylog = tls_session(messages, tls13=tls13)
    return pcapng(tcp_frames(chunks), keylog=keylog if embed_keys else None), keylog


# --- AnyConnect exchanges --------------------------------------------------------------------------------

def http_request(method: str, target: str, body: bytes = b"", headers=()) -> bytes:
    head = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", "User-Agent: Open AnyConnect VPN Agent v9.12",
            "Accept: */*", "X-Transcend-Version: 1", "X-Aggregate-Auth: 1", "X-Support-HTTP-Auth: true"]
    head += [f"{k}: {v}" for k, v in headers]
    if body or method == "POST":
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def http_response(status: str, body: bytes = b"", headers=(), content_length: int | str | None = None) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: text/xml", "X-Transcend-Version: 1", "X-Aggregate-Auth: 1"]
    head += [f"{k}: {v}" for k, v in headers]
    head.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


INIT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
        b'aggregate-auth-version="2"><version who="vpn">v9.12</version><device-id>linux-64</device-id>'
        b"<group-access>https://vpn.acflow.test</group-access></config-auth>")


def auth_reply(password: str) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" '
            b'aggregate-auth-version="2"><version who="vpn">v9.12</version><device-id>linux-64</device-id>'
            b"<auth><username>alice</username><password>" + password.encode() + b"</password></auth>"
            b"</config-auth>")


AUTH_REQUEST = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-request" '
                b'aggregate-auth-version="2"><auth id="main"><form><input type="text" name="username" '
                b'label="Username:"/><input type="password" name="password" label="Password:"/></form></auth>'
                b"</config-auth>")


def complete(token: str) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="complete" '
            b'aggregate-auth-version="2"><session-id>1</session-id><session-token>' + token.encode()
            + b"</session-token><auth id=\"success\"><message>ok</message></auth></config-auth>")
