"""TLS key schedules (pure functions; all primitives from ``cryptography``).

* TLS 1.0/1.1 PRF (RFC 2246 §5 / RFC 4346 §5): P_MD5 xor P_SHA1 over the split secret.
* TLS 1.2 PRF (RFC 5246 §5): P_<hash> with the cipher suite's PRF hash (SHA-256 unless the suite says
  SHA-384).
* Master secret (RFC 5246 §8.1), extended master secret (RFC 7627 §4), key block (RFC 5246 §6.3).
* RFC 5705 exporter for TLS <= 1.2.
* TLS 1.3 HKDF schedule (RFC 8446 §7.1), traffic keys (§7.3), key update (§7.2), exporter (§7.5).
* PSK premaster (RFC 4279 §2) for the DTLS PSK modes.

Hash algorithms are named by lower-case strings: ``"md5"``, ``"sha1"``, ``"sha256"``, ``"sha384"``,
``"sha512"``.  DTLS shares everything here (DTLS 1.2 uses the TLS 1.2 PRF, DTLS 1.0 the TLS 1.0/1.1 one).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = [
    "HASHES",
    "TLS10",
    "TLS11",
    "TLS12",
    "TLS13",
    "derive_secret",
    "digest",
    "export_keying_material_12",
    "export_keying_material_13",
    "extended_master_secret",
    "finished_verify_data_13",
    "hash_len",
    "hkdf_expand",
    "hkdf_expand_label",
    "hkdf_extract",
    "hmac_digest",
    "key_block",
    "master_secret",
    "next_traffic_secret",
    "p_hash",
    "partition_key_block",
    "prf",
    "psk_premaster",
    "session_hash",
    "traffic_key_iv",
]

SSL30, TLS10, TLS11, TLS12, TLS13 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _alg(name: str) -> hashes.HashAlgorithm:
    return HASHES[name]()


def hash_len(name: str) -> int:
    return HASHES[name].digest_size


def digest(name: str, data: bytes) -> bytes:
    h = hashes.Hash(_alg(name))
    h.update(data)
    return h.finalize()


def hmac_digest(name: str, key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, _alg(name))
    h.update(data)
    return h.finalize()


# --- TLS 1.0 - 1.2 -------------------------------------------------------------------------------


def p_hash(name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + …
    with A(0) = seed, A(i) = HMAC(secret, A(i-1))."""
    base = hmac.HMAC(secret, _alg(name))  # keyed once, copied per block
    out = bytearray()
    a = seed
    while len(out) < length:
        h = base.copy()
        h.update(a)
        a = h.finalize()  # A(i)
        h = base.copy()
        h.update(a + seed)
        out += h.finalize()
    return bytes(out[:length])


def prf(version: int, hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) for the protocol ``version`` (TLS or the DTLS wire value).

    TLS 1.2 / DTLS 1.2 (RFC 5246 §5): P_<hash_name>(secret, label + seed).
    TLS 1.0/1.1 / DTLS 1.0 (RFC 2246 §5): the secret is split into halves S1, S2 (sharing the middle
    byte when its length is odd); PRF = P_MD5(S1, label + seed) XOR P_SHA1(S2, label + seed).
    """
    if _is_tls12_prf(version):
        return p_hash(hash_name, secret, label + seed, length)
    half = (len(secret) + 1) // 2
    s1, s2 = secret[:half], secret[len(secret) - half:]
    md5 = p_hash("md5", s1, label + seed, length)
    sha = p_hash("sha1", s2, label + seed, length)
    return bytes(a ^ b for a, b in zip(md5, sha, strict=True))


def _is_tls12_prf(version: int) -> bool:
    # TLS 1.2 = 0x0303; DTLS 1.2 = 0xFEFD. Everything older uses the MD5/SHA1 PRF
    # (DTLS 1.0 = 0xFEFF and Cisco's pre-standard 0x0100).
    return version == TLS12 or version == 0xFEFD


def master_secret(version: int, hash_name: str, premaster: bytes, client_random: bytes,
                  server_random: bytes) -> bytes:
    """RFC 5246 §8.1: master_secret = PRF(pre_master_secret, "master secret",
    ClientHello.random + ServerHello.random)[0..47]."""
    return prf(version, hash_name, premaster, b"master secret", client_random + server_random, 48)


def session_hash(version: int, hash_name: str, handshake_messages: bytes) -> bytes:
    """RFC 7627 §3: session_hash = Hash(handshake_messages) up to and including ClientKeyExchange.
    The hash is the PRF hash for TLS 1.2, MD5(…) || SHA1(…) for TLS 1.0/1.1."""
    if _is_tls12_prf(version):
        return digest(hash_name, handshake_messages)
    return digest("md5", handshake_messages) + digest("sha1", handshake_messages)


def extended_master_secret(version: int, hash_name: str, premaster: bytes, session_hash_value: bytes) -> bytes:
    """RFC 7627 §4: master_secret = PRF(pre_master_secret, "extended master secret", session_hash)[0..47]."""
    return prf(version, hash_name, premaster, b"extended master secret", session_hash_value, 48)


def key_block(version: int, hash_name: str, master: bytes, client_random: bytes, server_random: bytes,
              length: int) -> bytes:
    """RFC 5246 §6.3: key_block = PRF(SecurityParameters.master_secret, "key expansion",
    SecurityParameters.server_random + SecurityParameters.client_random)  (note: server random first)."""
    return prf(version, hash_name, master, b"key expansion", server_random + client_random, length)


def partition_key_block(block: bytes, mac_len: int, key_len: int, iv_len: int) -> tuple[bytes, ...]:
    """RFC 5246 §6.3 order: client_write_MAC_key, server_write_MAC_key, client_write_key,
    server_write_key, client_write_IV, server_write_IV."""
    sizes = (mac_len, mac_len, key_len, key_len, iv_len, iv_len)
    out = []
    pos = 0
    for n in sizes:
        out.append(block[pos:pos + n])
        pos += n
    return tuple(out)


def export_keying_material_12(version: int, hash_name: str, master: bytes, client_random: bytes,
                              server_random: bytes, label: bytes, context: bytes | None, length: int) -> bytes:
    """RFC 5705 §4: PRF(SecurityParameters.master_secret, label, client_random + server_random
    [+ context_value_length(uint16) + context_value])[length].  "No context" and "empty context" differ."""
    seed = client_random + server_random
    if context is not None:
        if len(context) > 0xFFFF:
            raise ValueError("exporter context longer than 65535 bytes")
        seed += len(context).to_bytes(2, "big") + context
    return prf(version, hash_name, master, label, seed, length)


def psk_premaster(psk: bytes, other_secret: bytes | None = None) -> bytes:
    """RFC 4279 §2: premaster = uint16(len(other_secret)) + other_secret + uint16(len(psk)) + psk.
    Plain PSK: other_secret is N zero bytes, N = len(psk).  DHE/ECDHE_PSK (RFC 4279 §3, RFC 5489 §2):
    other_secret = the (EC)DH shared secret.  RSA_PSK (§4): the 48-byte RSA premaster."""
    if other_secret is None:
        other_secret = bytes(len(psk))
    return len(other_secret).to_bytes(2, "big") + other_secret + len(psk).to_bytes(2, "big") + psk


# --- TLS 1.3 -------------------------------------------------------------------------------------


def hkdf_extract(hash_name: str, salt: bytes | None, ikm: bytes | None) -> bytes:
    """RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); absent salt/IKM are Hash.length zero bytes
    (RFC 8446 §7.1 uses 0 for both in the Early Secret when there is no PSK)."""
    n = hash_len(hash_name)
    return hmac_digest(hash_name, salt if salt else bytes(n), ikm if ikm else bytes(n))


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3."""
    return HKDFExpand(_alg(hash_name), length, info).derive(prk)


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes | str, context: bytes, length: int) -> bytes:
    """RFC 8446 §7.1: HKDF-Expand(Secret, HkdfLabel, Length) with
    struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>; } HkdfLabel."""
    if isinstance(label, str):
        label = label.encode("ascii")
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return hkdf_expand(hash_name, secret, info, length)


def derive_secret(hash_name: str, secret: bytes, label: bytes | str, transcript_hash: bytes) -> bytes:
    """RFC 8446 §7.1: Derive-Secret(Secret, Label, Messages) = HKDF-Expand-Label(Secret, Label,
    Transcript-Hash(Messages), Hash.length).  Takes the transcript *hash* (callers hash the messages)."""
    return hkdf_expand_label(hash_name, secret, label, transcript_hash, hash_len(hash_name))


def traffic_key_iv(hash_name: str, secret: bytes, key_len: int, iv_len: int = 12) -> tuple[bytes, bytes]:
    """RFC 8446 §7.3: [sender]_write_key = HKDF-Expand-Label(Secret, "key", "", key_length);
    [sender]_write_iv = HKDF-Expand-Label(Secret, "iv", "", iv_length)."""
    return (hkdf_expand_label(hash_name, secret, b"key", b"", key_len),
            hkdf_expand_label(hash_name, secret, b"iv", b"", iv_len))


def next_traffic_secret(hash_name: str, secret: bytes) -> bytes:
    """RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(application_traffic_secret_N,
    "traffic upd", "", Hash.length)."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", hash_len(hash_name))


def finished_verify_data_13(hash_name: str, base_key: bytes, transcript_hash: bytes) -> bytes:
    """RFC 8446 §4.4.4: finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length);
    verify_data = HMAC(finished_key, Transcript-Hash(…))."""
    fk = hkdf_expand_label(hash_name, base_key, b"finished", b"", hash_len(hash_name))
    return hmac_digest(hash_name, fk, transcript_hash)


def export_keying_material_13(hash_name: str, exporter_secret: bytes, label: bytes, context: bytes | None,
                              length: int) -> bytes:
    """RFC 8446 §7.5: TLS-Exporter(label, context_value, key_length) =
    HKDF-Expand-Label(Derive-Secret(Secret, label, ""), "exporter", Hash(context_value), key_length).
    A missing context is the same as an empty one in TLS 1.3."""
    empty_hash = digest(hash_name, b"")
    derived = hkdf_expand_label(hash_name, exporter_secret, label, empty_hash, hash_len(hash_name))
    return hkdf_expand_label(hash_name, derived, b"exporter", digest(hash_name, context or b""), length)
