"""Wireshark-usable forms of the DTLS keys (for a user who wants to look at the capture in Wireshark).

* legacy: a key log line ``RSA Session-ID:<hex> Master-Key:<hex>`` (Wireshark finds the master secret
  of the resumed session by its id); use with ``-o tls.keylog_file:FILE``.
* PSK: the hex string for ``-o dtls.psk:<hex>``.

These strings are secrets: callers must redact them unless the user asked for secrets.
"""

from __future__ import annotations

from .keys import DTLSKeys

__all__ = ["wireshark_keylog_line", "wireshark_options", "wireshark_psk_hex"]


def wireshark_keylog_line(keys: DTLSKeys) -> str:
    """The key log line for legacy keys (no trailing newline)."""
    if not keys.is_legacy:
        raise ValueError("only legacy (resumption) keys have a key log line; use wireshark_psk_hex")
    return f"RSA Session-ID:{keys.session_id.hex()} Master-Key:{keys.master_secret.hex()}"


def wireshark_psk_hex(keys: DTLSKeys) -> str:
    """The value of Wireshark's ``dtls.psk`` preference for PSK keys."""
    if not keys.is_psk:
        raise ValueError("only PSK keys have a dtls.psk value; use wireshark_keylog_line")
    return keys.psk_secret.hex()


def wireshark_options(keys: DTLSKeys, keylog_path: str | None = None) -> list[str]:
    """Command-line options for tshark/wireshark: ``["-o", "dtls.psk:<hex>"]`` for PSK keys, or
    ``["-o", "tls.keylog_file:<keylog_path>"]`` for legacy keys (the caller writes
    :func:`wireshark_keylog_line` into that file)."""
    if keys.is_psk:
        return ["-o", f"dtls.psk:{wireshark_psk_hex(keys)}"]
    if keylog_path is None:
        raise ValueError("legacy keys need a key log file path")
    return ["-o", f"tls.keylog_file:{keylog_path}"]
