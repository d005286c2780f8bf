"""`acflow keys`: write a key log Wireshark/tshark can use for everything acflow could decrypt (I/O edge).

Contents, deduplicated: every usable line of the given key logs and of the capture's Decryption Secrets
Blocks; a `CLIENT_RANDOM` line for each TLS ≤ 1.2 session whose master secret acflow recovered another way (the
gateway's RSA key, session resumption); for legacy DTLS an `RSA Session-ID:<X-DTLS-Session-ID>
Master-Key:<X-DTLS-Master-Secret>` line (the form tshark accepts for the resumed DTLS session). PSK-NEGOTIATE
DTLS cannot be expressed in a key log: the command prints the `-o dtls.psk:<hex>` option to use (and writes it as
a comment in the file).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .analyze import InputError, feed_capture, load_keys
from .driver import Analyzer


def collect(pipe, keys) -> tuple[list[str], list[str]]:
    """(key log lines, tshark options) for what the pipeline decrypted or derived."""
    lines: list[str] = list(keys.to_keylog_lines())
    options: list[str] = []
    for conn in pipe.tcp.values():
        tls = conn.tls
        if tls.master_secret and tls.client_random and not tls.tls13:
            line = f"CLIENT_RANDOM {tls.client_random.hex()} {tls.master_secret.hex()}"
            if line not in lines:
                lines.append(line)
    for info in pipe.dtls_keys.values():
        if info.mode == "legacy" and info.master_secret:
            line = f"RSA Session-ID:{info.session_id.hex()} Master-Key:{info.master_secret.hex()}"
            if line not in lines:
                lines.append(line)
        elif info.mode == "psk-negotiate" and info.psk:
            opt = f"dtls.psk:{info.psk.hex()}"
            if opt not in options:
                options.append(opt)
    return lines, options


def run_keys(*, capture, keylogs, rsa_keys, output) -> int:
    try:
        keys, info = load_keys(keylogs, rsa_keys)
        an = Analyzer(keys, key_info=info)
        feed_capture(an, capture)
    except InputError as e:
        print(f"acflow: {e}", file=sys.stderr)
        return 4
    an.finish()
    lines, options = collect(an.pipeline, keys)
    text = "# written by acflow keys: TLS and legacy-DTLS secrets for Wireshark/tshark\n"
    for opt in options:
        text += f"# PSK-NEGOTIATE DTLS: tshark -o {opt}\n"
    text += "\n".join(lines) + ("\n" if lines else "")
    Path(output).write_text(text)
    print(f"acflow: wrote {len(lines)} key log line(s) to {output}", file=sys.stderr)
    for opt in options:
        print(f"-o {opt}")
    return 0
