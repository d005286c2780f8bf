"""Key material for the VPN's DTLS channel, as announced in the CSTP CONNECT exchange.

* :meth:`DTLSKeys.legacy` — Cisco's scheme: the DTLS handshake is an abbreviated resumption of the
  session ``X-DTLS-Session-ID`` whose master secret the client chose (``X-DTLS-Master-Secret``).
* :meth:`DTLSKeys.psk` — openconnect/ocserv PSK-NEGOTIATE: a DTLS 1.2 PSK handshake (RFC 4279) with the
  PSK exported from the CSTP TLS session (see :mod:`dissectors.dtls.psk`) and identity "psk".

Pure data; the secrets are kept out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DTLSKeys", "parse_hex"]


def parse_hex(value: str | bytes | bytearray) -> bytes:
    """Bytes from a hex header value (case-insensitive, whitespace/colons ignored) or raw bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = "".join(value.split()).replace(":", "")
    return bytes.fromhex(text)


@dataclass(frozen=True, slots=True)
class DTLSKeys:
    mode: str  # "legacy" or "psk"
    session_id: bytes = b""
    master_secret: bytes = field(default=b"", repr=False)
    psk_secret: bytes = field(default=b"", repr=False)
    identity: bytes = b"psk"

    @classmethod
    def legacy(cls, session_id: bytes | str, master_secret: bytes | str) -> DTLSKeys:
        """Keys for a resumed session (hex strings are accepted, as found in the CONNECT headers)."""
        ms = parse_hex(master_secret)
        if len(ms) != 48:
            raise ValueError(f"a TLS master secret has 48 bytes, got {len(ms)}")
        return cls("legacy", session_id=parse_hex(session_id), master_secret=ms)

    @classmethod
    def psk(cls, psk: bytes | str, identity: bytes | str = b"psk") -> DTLSKeys:
        """Keys for a PSK handshake (RFC 4279 plain PSK key exchange)."""
        key = parse_hex(psk)
        if not key:
            raise ValueError("empty PSK")
        if isinstance(identity, str):
            identity = identity.encode()
        return cls("psk", psk_secret=key, identity=bytes(identity))

    @property
    def is_legacy(self) -> bool:
        return self.mode == "legacy"

    @property
    def is_psk(self) -> bool:
        return self.mode == "psk"
