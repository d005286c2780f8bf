"""`acflow keys`: write a key log Wireshark/tshark can use for everything acflow could decrypt (I/O edge).

Contents, deduplicated: every usable line of the given key logs and of the capture's Decryption Secrets
Blocks; a `CLIENT_RANDOM` line for each TLS ≤ 1.2 session whose master secret acflow recovered another way (the
gateway's RSA key, session resumption); a `CLIENT_RANDOM <DTLS client random> <master secret>` line for every DTLS
handshake acflow derived the keys of (PSK-NEGOTIATE and legacy alike: Wireshark looks a DTLS master secret up by
the ClientHello random as for TLS, so the key log alone decrypts every DTLS session of the capture, a reconnect's
or a second user's included); for legacy DTLS also an `RSA Session-ID:<X-DTLS-Session-ID>
Master-Key:<X-DTLS-Master-Secret>` line. The PSK of each PSK-NEGOTIATE session is still printed as a
`-o dtls.psk:<hex>` option (tshark takes one only, so it is a fallback, not needed with the key log).

`--embed`: instead of a key log, write the capture itself with all those secrets in a pcapng Decryption Secrets
Block (as `editcap --inject-secrets` does), so one file carries everything. A pcap input becomes pcapng.

No usable key material (no key log line or RSA key that matches a session of the capture, nothing derived): a
warning on stderr, no file written, exit status 4.
"""
from __future__ import annotations

import struct
import sys

from .analyze import InputError, feed_capture, load_keys, stdin_problem
from .archive import ArchiveError, damage_errors, expand_archives, open_input
from .driver import Analyzer
from .outputs import AtomicFile, OutputError, check_outputs, is_stdio, say_interrupted

EXIT_OK = 0
EXIT_INPUT = 4

#: pcapng Decryption Secrets Block: block type, and the secrets type of an NSS key log
_DSB = 0x0000000A
_TLS_KEYLOG = 0x544C534B
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006


def collect(pipe, keys) -> tuple[list[str], list[str]]:
    """(key log lines, tshark options) for what the pipeline decrypted or derived."""
    lines: list[str] = list(keys.to_keylog_lines())
    seen = set(lines)
    options: list[str] = []

    def add(line: str) -> None:
        if line not in seen:
            seen.add(line)
            lines.append(line)

    for conn in pipe.tcp.values():
        tls = conn.tls
        if tls.master_secret and tls.client_random and not tls.tls13:
            add(f"CLIENT_RANDOM {tls.client_random.hex()} {tls.master_secret.hex()}")
    for info in pipe.dtls_keys.values():
        if info.mode == "legacy" and info.master_secret:
            add(f"RSA Session-ID:{info.session_id.hex()} Master-Key:{info.master_secret.hex()}")
        elif info.mode == "psk-negotiate" and info.psk:
            opt = f"dtls.psk:{info.psk.hex()}"
            if opt not in options:
                options.append(opt)
    for flow in pipe.udp.values():
        for client_random, master in flow.dtls.master_secrets():
            add(f"CLIENT_RANDOM {client_random.hex()} {master.hex()}")
    return lines, options


def _randoms(pipe) -> set[bytes]:
    """The ClientHello randoms of the capture's TLS and DTLS sessions."""
    out = {c.tls.client_random for c in pipe.tcp.values() if c.tls.client_random}
    for flow in pipe.udp.values():
        out |= {cr for cr, _ in flow.dtls.master_secrets()}
        if flow.dtls.client_random:
            out.add(flow.dtls.client_random)
    return out


def usable(pipe, keys) -> bool:
    """Does any key material apply to this capture: a key log entry for one of its ClientHellos, a TLS master
    secret acflow recovered, a DTLS key it derived?"""
    randoms = _randoms(pipe)
    if any(e.client_random in randoms for e in keys.entries() if e.client_random):
        return True
    if any(c.tls.master_secret for c in pipe.tcp.values()):
        return True
    if any(i.master_secret or i.psk for i in pipe.dtls_keys.values()):
        return True
    return any(flow.dtls.master_secrets() for flow in pipe.udp.values())


def run_keys(*, capture, keylogs, rsa_keys, output, embed: bool = False) -> int:
    problem = stdin_problem([capture])
    if embed and is_stdio(capture):
        problem = "--embed reads the capture twice (the analysis, then the copy): give a file, not '-'"
    if not problem and not is_stdio(capture):
        found = expand_archives([capture])
        if found.captures != [capture] or found.problem:  # an archive: one capture of it, named through it
            problem = found.problem or (f"{capture} is an archive: name one capture in it, "
                                        + " or ".join(str(c) for c in found.captures[:3]))
    if problem:
        print(f"acflow: {problem}", file=sys.stderr)
        return EXIT_INPUT
    try:
        check_outputs({"capture with embedded keys" if embed else "key log": output},
                      inputs=[capture, *(keylogs or ()), *(rsa_keys or ())])
    except OutputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        try:
            keys, info = load_keys(keylogs, rsa_keys)
            an = Analyzer(keys, key_info=info)
            feed_capture(an, capture)
        except InputError as e:
            print(f"acflow: {e}", file=sys.stderr)
            return EXIT_INPUT
        an.finish()
        pipe = an.pipeline
        lines, options = collect(pipe, keys)
        if not lines or not usable(pipe, keys):
            given = len(keylogs or ()) + len(rsa_keys or ())
            why = ("no key log or RSA key was given and the capture embeds none" if not given and not len(keys)
                   else f"the key material given ({len(keys)} entries) matches no TLS or DTLS session of "
                        f"{capture}")
            print(f"acflow keys: warning: no usable key material: {why}; nothing written to {output}",
                  file=sys.stderr)
            return EXIT_INPUT
        text = "".join(f"{line}\n" for line in lines)
        if embed:
            try:
                embed_secrets(capture, output, text.encode())
            except InputError as e:
                print(f"acflow: {e}", file=sys.stderr)
                return EXIT_INPUT
            print(f"acflow: wrote {capture} with {len(lines)} key log line(s) embedded to {output}",
                  file=sys.stderr)
            return EXIT_OK
        header = "# written by acflow keys: TLS and DTLS secrets for Wireshark/tshark (-o tls.keylog_file:FILE)\n"
        for opt in options:
            header += f"# PSK-NEGOTIATE DTLS, not needed with this file: tshark -o {opt}\n"
        with AtomicFile(output, "w") as f:
            f.write(header + text)
    except KeyboardInterrupt:
        return say_interrupted("keys")
    where = "standard output" if is_stdio(output) else output
    print(f"acflow: wrote {len(lines)} key log line(s) to {where}", file=sys.stderr)
    if not is_stdio(output):
        for opt in options:
            print(f"-o {opt}")
    return EXIT_OK


# -- --embed: the capture with a Decryption Secrets Block ------------------------------------------------

def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _block(order: str, btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def _dsb(order: str, keylog: bytes) -> bytes:
    return _block(order, _DSB, struct.pack(order + "II", _TLS_KEYLOG, len(keylog)) + _pad4(keylog))


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    return data if data is not None else b""


def embed_secrets(capture, output, keylog: bytes) -> None:
    """Write ``capture`` (pcapng or pcap, plain or compressed, or an archive member) to ``output`` as pcapng with
    ``keylog`` in a Decryption Secrets Block right after the first Section Header Block (before any packet that needs
    it). pcapng blocks are copied as they are (comments, interfaces, other secrets kept); a pcap's records become
    Enhanced Packet Blocks of one interface with the file's link type, snap length and timestamp resolution."""
    try:  # a file or an archive member, compressed or not (analyzer/archive.py)
        with open_input(capture) as (src, _compression):
            head = _read_exact(src, 24)
            with AtomicFile(output, "wb") as out:
                if head[:4] == b"\x0a\x0d\x0d\x0a":
                    _embed_pcapng(src, head, out, keylog, capture)
                elif len(head) == 24:
                    _embed_pcap(src, head, out, keylog, capture)
                else:
                    raise InputError(f"{capture}: not a pcap/pcapng capture")
    except ArchiveError as e:
        raise InputError(f"cannot read {capture}: {e}") from e
    except damage_errors() as e:
        raise InputError(f"cannot read {capture}: {getattr(e, 'strerror', None) or e}") from e


def _embed_pcapng(src, head: bytes, out, keylog: bytes, capture) -> None:
    bom = head[8:12]
    order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
    if order is None:
        raise InputError(f"{capture}: pcapng section header with an unknown byte-order magic")
    (shb_len,) = struct.unpack(order + "I", head[4:8])
    if shb_len < 28 or shb_len % 4:
        raise InputError(f"{capture}: damaged pcapng section header (length {shb_len})")
    shb = head + _read_exact(src, shb_len - len(head))
    if len(shb) != shb_len:
        raise InputError(f"{capture}: truncated pcapng section header")
    out.write(shb)
    out.write(_dsb(order, keylog))
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            break
        out.write(chunk)


_PCAP = {
    b"\xd4\xc3\xb2\xa1": ("<", 6), b"\xa1\xb2\xc3\xd4": (">", 6),
    b"\x4d\x3c\xb2\xa1": ("<", 9), b"\xa1\xb2\x3c\x4d": (">", 9),
}


def _embed_pcap(src, head: bytes, out, keylog: bytes, capture) -> None:
    fmt = _PCAP.get(head[:4])
    if fmt is None:
        raise InputError(f"{capture}: not a pcap/pcapng capture")
    order, resol = fmt
    _maj, _min, _zone, _sig, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:24])
    linktype &= 0x0FFFFFFF  # the upper bits carry FCS information in newer pcap files
    w = "<"  # the new file is little-endian whatever the source
    shb_opts = struct.pack(w + "HH", 4, 11) + _pad4(b"acflow keys") + struct.pack(w + "HH", 0, 0)
    out.write(_block(w, _SHB, struct.pack(w + "IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts))
    idb_opts = (struct.pack(w + "HHB", 9, 1, resol) + b"\x00" * 3) + struct.pack(w + "HH", 0, 0)
    out.write(_block(w, _IDB, struct.pack(w + "HHI", linktype, 0, snaplen) + idb_opts))
    out.write(_dsb(w, keylog))
    scale = 10 ** resol
    while True:
        rec = _read_exact(src, 16)
        if len(rec) < 16:
            break  # end of file (a partial record header at the end is dropped, as readers do)
        sec, frac, incl, orig = struct.unpack(order + "IIII", rec)
        if incl > 256 * 1024 * 1024:
            raise InputError(f"{capture}: damaged pcap record (length {incl})")
        data = _read_exact(src, incl)
        if len(data) < incl:
            break
        ts = sec * scale + frac
        body = struct.pack(w + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, incl, orig) + _pad4(data)
        out.write(_block(w, _EPB, body))
