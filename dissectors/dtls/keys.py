"""Key material for the VPN's DTLS channel, as announced in the CSTP CONNECT exchange.

* :meth:`DTLSKeys.legacy` — Cisco's scheme: the DTLS handshake is an abbreviated resumption of the
  session ``X-DTLS-Session-ID`` whose master secret the client chose (``X-DTLS-Master-Secret``).
* :meth:`DTLSKeys.psk` — openconnect/ocserv PSK-NEGOTIATE: a DTLS 1.2 PSK handshake (RFC 4279) with the
  PSK exported from the CSTP TLS session (see :mod:`dissectors.dtls.psk`) and identity "psk".
* :meth:`DTLSKeys.from_keylog` — master secrets by client random, from an NSS key log
  (``CLIENT_RANDOM <client_random> <master_secret>``; GnuTLS writes one for every DTLS handshake when
  SSLKEYLOGFILE is set).  Works for any handshake (full, resumed, PSK).  :meth:`DTLSKeys.with_keylog`
  adds such entries to legacy/PSK keys; a matching entry takes precedence.

Pure data; the secrets are kept out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["DTLSKeys", "dtls_mode_from_connect", "keys_from_connect", "parse_hex"]


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
    keylog_masters: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)

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

    @classmethod
    def from_keylog(cls, masters: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> DTLSKeys:
        """Keys from (client_random, master_secret) pairs."""
        return cls("keylog", keylog_masters=_pairs(masters))

    def with_keylog(self, masters: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> DTLSKeys:
        return replace(self, keylog_masters=self.keylog_masters + _pairs(masters))

    def master_for(self, client_random: bytes) -> bytes | None:
        """The key-log master secret for a handshake's client random, if any."""
        for cr, ms in self.keylog_masters:
            if cr == client_random:
                return ms
        return None

    @property
    def is_keylog(self) -> bool:
        return self.mode == "keylog"

    @property
    def is_legacy(self) -> bool:
        return self.mode == "legacy"

    @property
    def is_psk(self) -> bool:
        return self.mode == "psk"


def _pairs(masters) -> tuple[tuple[bytes, bytes], ...]:
    items = masters.items() if isinstance(masters, Mapping) else masters
    out = []
    for cr, ms in items:
        cr, ms = parse_hex(cr), parse_hex(ms)
        if len(cr) != 32 or len(ms) != 48:
            raise ValueError("key log entries need a 32-byte client random and a 48-byte master secret")
        out.append((cr, ms))
    return tuple(out)


def dtls_mode_from_connect(response_headers) -> str | None:
    """"psk" (PSK-NEGOTIATE), "legacy" (resumption of X-DTLS-Session-ID) or None (no DTLS offered)
    from the gateway's CONNECT response headers (a mapping or (name, value) pairs)."""
    h = _lower(response_headers)
    suite = h.get("x-dtls-ciphersuite") or h.get("x-dtls12-ciphersuite") or ""
    if suite.strip().upper() == "PSK-NEGOTIATE":
        return "psk"
    if "x-dtls-session-id" in h:
        return "legacy"
    return None


def keys_from_connect(request_headers, response_headers, psk: bytes | None = None) -> DTLSKeys | None:
    """DTLS keys from a CSTP CONNECT exchange.

    Legacy: ``X-DTLS-Session-ID`` (response) + ``X-DTLS-Master-Secret`` (request).  PSK-NEGOTIATE
    (response ``X-DTLS-CipherSuite: PSK-NEGOTIATE``): ``psk`` must be given — the RFC 5705 exporter of the
    TLS session that carried the CONNECT (:mod:`dissectors.dtls.psk`).  None when the keys cannot be
    built (no DTLS, missing/malformed headers, PSK mode without ``psk``)."""
    mode = dtls_mode_from_connect(response_headers)
    try:
        if mode == "psk":
            return DTLSKeys.psk(psk) if psk else None
        if mode == "legacy":
            req = _lower(request_headers)
            resp = _lower(response_headers)
            if "x-dtls-master-secret" not in req:
                return None
            return DTLSKeys.legacy(resp["x-dtls-session-id"], req["x-dtls-master-secret"])
    except ValueError:
        return None
    return None


def _lower(headers) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).strip().lower(): str(v).strip() for k, v in items}
