"""Cipher suite parameters and record protection (decryption) for TLS and DTLS.

Record protections (all primitives from ``cryptography``):

* :class:`AEADExplicitNonce` — TLS/DTLS 1.2 AES-GCM (RFC 5288 §3) and AES-CCM (RFC 6655 §3):
  nonce = 4-byte salt (client/server_write_IV) || 8-byte explicit nonce carried in the record.
* :class:`AEADXorNonce` — TLS/DTLS 1.2 ChaCha20-Poly1305 (RFC 7905 §2): nonce = 12-byte IV XOR the
  64-bit sequence number (for DTLS the caller passes epoch << 48 | sequence).
* For both: additional_data = seq_num(8) || type(1) || version(2) || plaintext length(2) (RFC 5246 §6.2.3.3).
* :class:`CBCProtection` — block ciphers with HMAC, MAC-then-encrypt (RFC 5246 §6.2.3.2) or
  encrypt-then-MAC (RFC 7366 §3); explicit per-record IV for TLS >= 1.1/DTLS, chained IV for TLS 1.0.
* :class:`TLS13Protection` — TLS 1.3 AEAD (RFC 8446 §5.2/§5.3): nonce = IV XOR seq, additional data =
  the 5-byte record header, plaintext = content || ContentType || zero padding.

All ``decrypt`` methods raise :class:`DecryptError` on failure; nothing else escapes for well-typed input.
``open(seq, header, fragment) -> (content type, content)`` is the same for every TLS protection, from the 5-byte
record header (TLS 1.3: the inner content type; before: the header's). The TLS/DTLS <= 1.2 protections'
``decrypt(seq, content_type, version, fragment, start=0, end=None)`` decrypts ``fragment[start:end]``: a caller
holding the record inside a larger buffer passes the buffer and the offsets, and the fragment is copied at most
once (AES-GCM/CCM take the explicit nonce and the ciphertext apart as slices of the buffer).
AEAD objects are created once per key and reused for every record. ``repeatable``: decrypting a record leaves
nothing behind that changes the next decryption (every protection but TLS 1.0's chained CBC IV), so a record may
be decrypted again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from . import keyschedule as ks
from .names import CIPHER_SUITE_NAMES, cipher_suite_name

try:  # cryptography >= 43 keeps 3DES in the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = getattr(algorithms, "TripleDES", None)

__all__ = [
    "AEADExplicitNonce",
    "AEADXorNonce",
    "CBCProtection",
    "CipherSuite",
    "DecryptError",
    "TLS13Protection",
    "make_tls12_protection",
    "make_tls13_protection",
    "suite_info",
    "tls12_protections",
]


class DecryptError(Exception):
    """A record failed to decrypt/authenticate."""


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """Parameters of a cipher suite, derived from its IANA name.

    ``kex``: "RSA", "ECDHE_RSA", "DHE_PSK", … or "TLS13"; ``cipher``: "AES_128_GCM", "AES_256_CBC",
    "CHACHA20_POLY1305", "AES_128_CCM_8", "3DES_EDE_CBC", …; ``kind``: "aead", "cbc" or "" (not
    decryptable here); ``mac``: HMAC hash for CBC suites; ``prf_hash``: PRF (TLS 1.2) / HKDF (TLS 1.3) hash.
    """

    id: int
    name: str
    kex: str
    cipher: str
    kind: str
    key_len: int = 0
    fixed_iv_len: int = 0  # AEAD salt/IV from the key block (4 for GCM/CCM, 12 for ChaCha20)
    block_len: int = 0  # CBC block size
    mac: str | None = None
    mac_len: int = 0
    tag_len: int = 0
    prf_hash: str = "sha256"

    @property
    def supported(self) -> bool:
        return bool(self.kind)

    @property
    def tls13(self) -> bool:
        return self.kex == "TLS13"

    @property
    def rsa_key_exchange(self) -> bool:
        return self.kex == "RSA"

    def __str__(self) -> str:
        return self.name


_SUITE_CACHE: dict[int, CipherSuite] = {}

_MAC = {"SHA": "sha1", "SHA256": "sha256", "SHA384": "sha384", "MD5": "md5"}


def _parse_suite(suite_id: int, name: str) -> CipherSuite:
    body = name.removeprefix("TLS_")
    if "_WITH_" in body:
        kex, rest = body.split("_WITH_", 1)
    elif suite_id >> 8 == 0x13:  # RFC 8446 §B.4: TLS 1.3 suites name only the AEAD and the HKDF hash
        kex, rest = "TLS13", body
    else:  # signalling values (SCSV)
        return CipherSuite(suite_id, name, "", "", "")
    parts = rest.split("_")
    prf_hash = "sha256"
    if parts and parts[-1] in ("SHA256", "SHA384") and "CBC" not in parts:
        prf_hash = _MAC[parts[-1]]
        parts = parts[:-1]
    cipher = "_".join(parts)
    base = {"id": suite_id, "name": name, "kex": kex, "cipher": cipher, "prf_hash": prf_hash}
    if cipher in ("AES_128_GCM", "AES_256_GCM"):
        return CipherSuite(kind="aead", key_len=16 if "128" in cipher else 32, fixed_iv_len=4, tag_len=16, **base)
    if cipher in ("AES_128_CCM", "AES_256_CCM", "AES_128_CCM_8", "AES_256_CCM_8"):
        return CipherSuite(kind="aead", key_len=16 if "128" in cipher else 32, fixed_iv_len=4,
                           tag_len=8 if cipher.endswith("_8") else 16, **base)
    if cipher == "CHACHA20_POLY1305":
        return CipherSuite(kind="aead", key_len=32, fixed_iv_len=12, tag_len=16, **base)
    if "CBC" in parts:
        i = parts.index("CBC")
        bulk = "_".join(parts[: i + 1])
        mac = _MAC.get("_".join(parts[i + 1:]))
        if mac and bulk in ("AES_128_CBC", "AES_256_CBC", "3DES_EDE_CBC"):
            if bulk == "3DES_EDE_CBC" and _TripleDES is None:
                return CipherSuite(kind="", **base)
            # RFC 5246 §5: suites ending in _SHA384 use SHA-384 for the PRF, all other TLS 1.2 suites SHA-256.
            prf = "sha384" if mac == "sha384" else "sha256"
            base.update(cipher=bulk, prf_hash=prf)
            return CipherSuite(kind="cbc", key_len={"AES_128_CBC": 16, "AES_256_CBC": 32}.get(bulk, 24),
                               block_len=8 if bulk.startswith("3DES") else 16, mac=mac,
                               mac_len=ks.hash_len(mac), **base)
    return CipherSuite(kind="", **base)


def suite_info(suite_id: int) -> CipherSuite:
    """Parameters for a cipher suite id (unknown ids give an unsupported CipherSuite named "0x....")."""
    cs = _SUITE_CACHE.get(suite_id)
    if cs is None:
        name = CIPHER_SUITE_NAMES.get(suite_id)
        cs = _parse_suite(suite_id, name) if name else CipherSuite(suite_id, cipher_suite_name(suite_id), "", "", "")
        _SUITE_CACHE[suite_id] = cs
    return cs


_AAD12 = struct.Struct("!QBHH")  # seq_num, type, version, length (RFC 5246 §6.2.3.3)
_MAC_HDR = struct.Struct("!QBHH")  # same layout for the CBC MAC input (RFC 5246 §6.2.3.1)


class AEADExplicitNonce:
    """TLS/DTLS 1.2 AES-GCM (RFC 5288) / AES-CCM (RFC 6655): 8-byte explicit nonce per record."""

    __slots__ = ("_aead", "_gcm", "_key", "_salt", "min_len", "tag_len")
    explicit_len = 8
    repeatable = True

    def __init__(self, key: bytes, salt: bytes, tag_len: int = 16, ccm: bool = False) -> None:
        self._key = bytes(key)
        self._salt = bytes(salt)
        self._gcm = not ccm
        self.tag_len = tag_len
        self._aead = AESCCM(self._key, tag_length=tag_len) if ccm else AESGCM(self._key)
        self.min_len = 8 + tag_len

    def decrypt(self, seq: int, content_type: int, version: int, fragment, start: int = 0,
                end: int | None = None) -> bytes:
        if end is None:
            end = len(fragment)
        n = end - start - self.min_len
        if n < 0:
            raise DecryptError(f"record too short for AEAD ({end - start} bytes)")
        # RFC 5288 §3: nonce = salt(4) || nonce_explicit(8); slices, not memoryviews: faster for record sizes
        try:
            return self._aead.decrypt(self._salt + fragment[start:start + 8], fragment[start + 8:end],
                                      _AAD12.pack(seq, content_type, version, n))
        except InvalidTag:
            raise DecryptError("bad record MAC (AEAD authentication tag mismatch)") from None

    def open(self, seq: int, header, fragment) -> tuple[int, bytes]:
        """``(content type, content)`` of a TLS record with this 5-byte ``header``."""
        ct = header[0]
        return ct, self.decrypt(seq, ct, (header[1] << 8) | header[2], fragment)

    @property
    def can_skip_integrity(self) -> bool:
        """Plaintext can be recovered without the sequence number (GCM via CTR; not CCM)."""
        return self._gcm

    def seq_hint(self, fragment) -> int | None:
        """The explicit nonce as an integer: most stacks (OpenSSL, GnuTLS, NSS) put the record sequence
        number there, which lets us recover the sequence number after a gap."""
        if len(fragment) < 8:
            return None
        return int.from_bytes(bytes(fragment[:8]), "big")

    def decrypt_unverified(self, fragment) -> bytes | None:
        """GCM without authentication (CTR mode from counter 2, NIST SP 800-38D §7.1); used only to
        deliver data after a gap when the sequence number (part of the AAD) cannot be found."""
        n = len(fragment) - 8 - self.tag_len
        if not self._gcm or n < 0:
            return None
        counter = self._salt + bytes(fragment[:8]) + b"\x00\x00\x00\x02"
        dec = Cipher(algorithms.AES(self._key), modes.CTR(counter)).decryptor()
        return dec.update(bytes(fragment[8:8 + n])) + dec.finalize()


class AEADXorNonce:
    """TLS/DTLS 1.2 ChaCha20-Poly1305 (RFC 7905 §2): nonce = IV XOR padded 64-bit sequence number."""

    __slots__ = ("_aead", "_iv", "min_len", "tag_len")
    explicit_len = 0
    can_skip_integrity = False  # the nonce depends on the sequence number
    repeatable = True

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = ChaCha20Poly1305(bytes(key))
        self._iv = int.from_bytes(iv, "big")
        self.tag_len = 16
        self.min_len = 16

    def decrypt(self, seq: int, content_type: int, version: int, fragment, start: int = 0,
                end: int | None = None) -> bytes:
        if start or end is not None:
            fragment = fragment[start:end]
        n = len(fragment) - 16
        if n < 0:
            raise DecryptError(f"record too short for AEAD ({len(fragment)} bytes)")
        nonce = (self._iv ^ seq).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, fragment, _AAD12.pack(seq, content_type, version, n))
        except InvalidTag:
            raise DecryptError("bad record MAC (AEAD authentication tag mismatch)") from None

    def open(self, seq: int, header, fragment) -> tuple[int, bytes]:
        """``(content type, content)`` of a TLS record with this 5-byte ``header``."""
        ct = header[0]
        return ct, self.decrypt(seq, ct, (header[1] << 8) | header[2], fragment)

    def seq_hint(self, fragment) -> int | None:
        return None

    def decrypt_unverified(self, fragment) -> bytes | None:
        return None


class CBCProtection:
    """Block cipher + HMAC (RFC 5246 §6.2.3.2 MAC-then-encrypt, or RFC 7366 encrypt-then-MAC).

    ``explicit_iv``: TLS >= 1.1 and DTLS carry a per-record IV as the first block; TLS 1.0 chains the IV
    (the last ciphertext block of the previous record; the first one from the key block).
    """

    __slots__ = ("_dec", "_hmac", "block", "etm", "explicit_iv", "mac_len", "min_len", "repeatable")
    can_skip_integrity = True  # decryption does not involve the sequence number

    def __init__(self, cipher: str, key: bytes, mac: str, mac_key: bytes, *, explicit_iv: bool = True,
                 iv: bytes | None = None, etm: bool = False) -> None:
        if cipher.startswith("3DES"):
            if _TripleDES is None:
                raise ValueError("3DES not available")
            alg, self.block = _TripleDES(bytes(key)), 8
        else:
            alg, self.block = algorithms.AES(bytes(key)), 16
        # One CBC decryption context for the whole direction (creating one costs far more than decrypting a
        # small record).  CBC decryption of a block only depends on the block before it: with explicit IVs
        # the record's IV block is fed too, its own output (garbage) is dropped and the rest decrypts
        # exactly; for TLS 1.0 the context's running state *is* the chained IV (RFC 2246 §6.2.3.2).
        first_iv = bytes(iv) if (iv and not explicit_iv) else bytes(self.block)
        self._dec = Cipher(alg, modes.CBC(first_iv[: self.block])).decryptor()
        self._hmac = hmac.HMAC(bytes(mac_key), ks.HASHES[mac]())  # keyed once, copied per record
        self.mac_len = ks.hash_len(mac)
        self.explicit_iv = explicit_iv
        # the context's running state only reaches the record's IV block, whose output is dropped; TLS 1.0's
        # chained IV *is* that state
        self.repeatable = explicit_iv
        self.etm = etm
        # smallest plausible fragment: (IV) + one block holding at least MAC + padding byte
        blocks = (self.mac_len + 1 + self.block - 1) // self.block
        if etm:
            self.min_len = (self.block if explicit_iv else 0) + self.block + self.mac_len
        else:
            self.min_len = (self.block if explicit_iv else 0) + blocks * self.block

    def _mac(self, seq: int, content_type: int, version: int, data) -> bytes:
        h = self._hmac.copy()
        # RFC 5246 §6.2.3.1: MAC(MAC_write_key, seq_num + type + version + length + content)
        h.update(_MAC_HDR.pack(seq, content_type, version, len(data)))
        h.update(data)
        return h.finalize()

    def _cbc_decrypt(self, fragment) -> bytes:
        """CBC-decrypt ``fragment`` (IV handling per mode) and strip/check TLS padding."""
        bs = self.block
        if len(fragment) % bs or len(fragment) < (2 * bs if self.explicit_iv else bs):
            raise DecryptError(f"CBC record length {len(fragment)} is not a positive multiple of {bs}")
        pt = self._dec.update(fragment)
        if self.explicit_iv:
            pt = pt[bs:]
        pad = pt[-1]
        # RFC 5246 §6.2.3.2: every padding byte (and the length byte) holds padding_length
        if pad + 1 > len(pt) or pt[-1 - pad:] != bytes([pad]) * (pad + 1):
            raise DecryptError("bad CBC padding (wrong key?)")
        return pt[: len(pt) - pad - 1]

    def open_mte(self, fragment) -> tuple[bytes, bytes]:
        """MAC-then-encrypt: decrypt and split into (content, received MAC) without checking the MAC."""
        pt = self._cbc_decrypt(fragment)
        if len(pt) < self.mac_len:
            raise DecryptError("CBC record shorter than its MAC")
        cut = len(pt) - self.mac_len
        return pt[:cut], pt[cut:]

    def decrypt(self, seq: int, content_type: int, version: int, fragment, start: int = 0,
                end: int | None = None) -> bytes:
        if start or end is not None:
            fragment = fragment[start:end]
        if self.etm:
            # RFC 7366 §3: MAC(MAC_write_key, seq_num + type + version + length + IV + ENC(content+padding))
            if len(fragment) < self.mac_len + self.block:
                raise DecryptError("encrypt-then-MAC record too short")
            cut = len(fragment) - self.mac_len
            mv = memoryview(fragment)
            if not constant_time.bytes_eq(self._mac(seq, content_type, version, mv[:cut]), bytes(mv[cut:])):
                if not self.explicit_iv and cut % self.block == 0:
                    self._dec.update(mv[:cut])  # keep the TLS 1.0 IV chain in step
                raise DecryptError("bad record MAC (encrypt-then-MAC)")
            return self._cbc_decrypt(mv[:cut])
        content, mac = self.open_mte(fragment)
        if not constant_time.bytes_eq(self._mac(seq, content_type, version, content), mac):
            raise DecryptError("bad record MAC")
        return content

    def open(self, seq: int, header, fragment) -> tuple[int, bytes]:
        """``(content type, content)`` of a TLS record with this 5-byte ``header``."""
        ct = header[0]
        return ct, self.decrypt(seq, ct, (header[1] << 8) | header[2], fragment)

    def search(self, seqs, content_type: int, version: int, fragment) -> tuple[int | None, bytes]:
        """Decrypt once and find which sequence number makes the MAC verify (gap recovery).
        Returns (seq or None, content); raises DecryptError when the padding is bad."""
        if self.etm:
            cut = len(fragment) - self.mac_len
            if cut < self.block:
                raise DecryptError("encrypt-then-MAC record too short")
            mv = memoryview(fragment)
            want = bytes(mv[cut:])
            content = self._cbc_decrypt(mv[:cut])
            for s in seqs:
                if constant_time.bytes_eq(self._mac(s, content_type, version, mv[:cut]), want):
                    return s, content
            return None, content
        content, mac = self.open_mte(fragment)
        for s in seqs:
            if constant_time.bytes_eq(self._mac(s, content_type, version, content), mac):
                return s, content
        return None, content

    def seq_hint(self, fragment) -> int | None:
        return None

    def decrypt_unverified(self, fragment) -> bytes | None:
        try:
            if self.etm:
                return self._cbc_decrypt(memoryview(fragment)[: len(fragment) - self.mac_len])
            return self.open_mte(fragment)[0]
        except DecryptError:
            return None


class TLS13Protection:
    """TLS 1.3 record protection for one traffic secret (RFC 8446 §5.2, §5.3, keys per §7.3)."""

    __slots__ = ("_aead", "_iv", "min_len", "secret", "suite", "tag_len")
    can_skip_integrity = False
    repeatable = True

    def __init__(self, suite: CipherSuite, secret: bytes) -> None:
        key, iv = ks.traffic_key_iv(suite.prf_hash, secret, suite.key_len, 12)
        if suite.cipher == "CHACHA20_POLY1305":
            self._aead = ChaCha20Poly1305(key)
        elif "CCM" in suite.cipher:
            self._aead = AESCCM(key, tag_length=suite.tag_len)
        else:
            self._aead = AESGCM(key)
        self._iv = int.from_bytes(iv, "big")
        self.tag_len = suite.tag_len
        self.min_len = suite.tag_len + 1  # at least the inner content type
        self.secret = bytes(secret)
        self.suite = suite

    def decrypt(self, seq: int, header: bytes, fragment) -> tuple[int, bytes]:
        """Returns (inner content type, content).  ``header`` is the 5-byte record header (the AAD)."""
        # RFC 8446 §5.3: nonce = client/server_write_iv XOR (seq padded to iv_length)
        nonce = (self._iv ^ seq).to_bytes(12, "big")
        try:
            inner = self._aead.decrypt(nonce, fragment, header)
        except InvalidTag:
            raise DecryptError("bad record MAC (AEAD authentication tag mismatch)") from None
        # RFC 8446 §5.4: strip zero padding; the last non-zero byte is the real content type
        if inner and inner[-1]:  # no padding (the common case: no length computed)
            return inner[-1], inner[:-1]
        end = len(inner.rstrip(b"\x00"))
        if end == 0:
            raise DecryptError("decrypted record has no content type (all zero)")
        return inner[end - 1], inner[: end - 1]

    open = decrypt  # the header is the additional data; the content type is inside

    def seq_hint(self, fragment) -> int | None:
        return None

    def next_generation(self) -> TLS13Protection:
        """Keys after a KeyUpdate (RFC 8446 §7.2)."""
        return TLS13Protection(self.suite, ks.next_traffic_secret(self.suite.prf_hash, self.secret))


def _explicit_iv(version: int) -> bool:
    # SSL 3.0 and TLS 1.0 chain the CBC IV; TLS 1.1+ (RFC 4346 §6.2.3.2), DTLS (all versions, including
    # Cisco's 0x0100) carry it explicitly.
    return version not in (ks.SSL30, ks.TLS10)


def make_tls12_protection(suite: CipherSuite, version: int, key: bytes, iv: bytes, mac_key: bytes = b"",
                          etm: bool = False):
    """Record protection for one direction of a TLS <= 1.2 / DTLS <= 1.2 connection."""
    if suite.kind == "aead":
        if suite.cipher == "CHACHA20_POLY1305":
            return AEADXorNonce(key, iv)
        return AEADExplicitNonce(key, iv, suite.tag_len, ccm="CCM" in suite.cipher)
    if suite.kind == "cbc":
        return CBCProtection(suite.cipher, key, suite.mac or "sha1", mac_key, explicit_iv=_explicit_iv(version),
                             iv=iv, etm=etm)
    raise ValueError(f"cipher suite {suite.name} is not supported for decryption")


def tls12_protections(suite: CipherSuite, version: int, master: bytes, client_random: bytes,
                      server_random: bytes, etm: bool = False):
    """(client_write, server_write) protections from the master secret: key block per RFC 5246 §6.3."""
    if suite.kind == "aead":
        mac_len, iv_len = 0, suite.fixed_iv_len
    else:
        mac_len, iv_len = suite.mac_len, suite.block_len
    total = 2 * (mac_len + suite.key_len + iv_len)
    block = ks.key_block(version, suite.prf_hash, master, client_random, server_random, total)
    cmac, smac, ckey, skey, civ, siv = ks.partition_key_block(block, mac_len, suite.key_len, iv_len)
    return (make_tls12_protection(suite, version, ckey, civ, cmac, etm),
            make_tls12_protection(suite, version, skey, siv, smac, etm))


def make_tls13_protection(suite: CipherSuite, secret: bytes) -> TLS13Protection:
    return TLS13Protection(suite, secret)
