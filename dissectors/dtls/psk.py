"""The PSK of openconnect/ocserv PSK-NEGOTIATE mode: an RFC 5705 exporter of the CSTP TLS session.

label ``EXPORTER-openconnect-psk``, no context, 32 bytes (openconnect protocol draft; facts only):

* TLS 1.3 (RFC 8446 §7.5): HKDF-Expand-Label(Derive-Secret(exporter_master_secret, label, ""),
  "exporter", Hash(""), 32) — the NSS key log line ``EXPORTER_SECRET`` holds exporter_master_secret;
  the hash is the TLS 1.3 cipher suite's (SHA-384 for TLS_AES_256_GCM_SHA384, else SHA-256).
* TLS 1.2 (RFC 5705 §4): PRF(master_secret, label, client_random + server_random)[32] with the TLS 1.2
  PRF of the session's cipher suite (SHA-256, SHA-384 for *_SHA384 suites).

The primitives are those of :mod:`dissectors.tls.keyschedule`.
"""

from __future__ import annotations

from dissectors.tls import keyschedule as ks

__all__ = [
    "PSK_LABEL",
    "PSK_LENGTH",
    "psk_from_tls12_master_secret",
    "psk_from_tls13_exporter_secret",
    "tls13_suite_hash",
]

PSK_LABEL = b"EXPORTER-openconnect-psk"
PSK_LENGTH = 32

_TLS13_SUITE_HASH = {0x1301: "sha256", 0x1302: "sha384", 0x1303: "sha256", 0x1304: "sha256", 0x1305: "sha256"}


def tls13_suite_hash(suite: int) -> str:
    """The HKDF hash of a TLS 1.3 cipher suite ("sha256"/"sha384")."""
    return _TLS13_SUITE_HASH.get(suite, "sha256")


def _hash_name(hash_name: str) -> str:
    name = hash_name.lower().replace("-", "").replace("_", "")
    if name not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"unsupported exporter hash {hash_name!r}")
    return name


def psk_from_tls13_exporter_secret(exporter_secret: bytes, hash_name: str = "sha256") -> bytes:
    """PSK from a TLS 1.3 EXPORTER_SECRET (``hash_name``: the TLS suite's hash, e.g. "sha384")."""
    name = _hash_name(hash_name)
    return ks.export_keying_material_13(name, bytes(exporter_secret), PSK_LABEL, None, PSK_LENGTH)


def psk_from_tls12_master_secret(master_secret: bytes, client_random: bytes, server_random: bytes,
                                 hash_name: str = "sha256") -> bytes:
    """PSK from a TLS 1.2 session's master secret and hello randoms (``hash_name``: the suite's PRF hash,
    "sha384" for *_SHA384 suites)."""
    name = _hash_name(hash_name)
    return ks.export_keying_material_12(ks.TLS12, name, bytes(master_secret), bytes(client_random),
                                        bytes(server_random), PSK_LABEL, None, PSK_LENGTH)
