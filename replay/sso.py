"""The SAML single sign-on token an AnyConnect gateway hands an *external* browser (sans-I/O).

With `<sso-v2-browser-mode>external</sso-v2-browser-mode>` the client opens the system browser at the gateway's
`sso-v2-login` URL and listens on http://localhost:29786/. Once the identity provider has vouched for the user, the
gateway sends the browser to `http://localhost:29786/api/sso/<blob>?return=<final page>`: the blob carries the
session's SSO token encrypted to the key the client announced in its `X-AnyConnect-STRAP-DH-Pubkey` header (a
P-256 public key, DER SubjectPublicKeyInfo in base64), so that only that client can read it. The client decrypts it
and posts it back in its auth-reply as `<sso-token>`.

The blob, as openconnect reads it: the 16-bit value 1, then TLVs (16-bit tag, 16-bit length, value): 1 the
gateway's ephemeral P-256 public key (SubjectPublicKeyInfo DER), 2 the AES-GCM tag cut to 12 bytes, 3 the
ciphertext, 4 the 12-byte IV; base64 of it all. Key: the ECDH shared secret's x coordinate, through HKDF-SHA256
(no salt, info "AC_ECIES") to 32 bytes, for AES-256-GCM.

Used by the scripted gateway (replay.gateway: the `${sso_blob}` placeholder) so that the lab can record a real
openconnect completing a SAML login.
"""
from __future__ import annotations

import base64
import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["INFO", "open_blob", "seal_token"]

INFO = b"AC_ECIES"
_TAG_LEN = 12


def _key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret)


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack("!HH", tag, len(value)) + value


def seal_token(client_dh_pubkey_b64: str, token: str, *, ephemeral: ec.EllipticCurvePrivateKey | None = None,
               iv: bytes | None = None) -> str:
    """The base64 blob carrying ``token`` (alphanumeric) to the client whose STRAP DH public key is given."""
    peer = serialization.load_der_public_key(base64.b64decode(client_dh_pubkey_b64))
    if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != "secp256r1":
        raise ValueError("the client's DH key is not a P-256 public key")
    eph = ephemeral or ec.generate_private_key(ec.SECP256R1())
    key = _key(eph.exchange(ec.ECDH(), peer))
    iv = iv or os.urandom(12)
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    ct = enc.update(token.encode("ascii")) + enc.finalize()
    spki = eph.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob = struct.pack("!H", 1) + _tlv(1, spki) + _tlv(2, enc.tag[:_TAG_LEN]) + _tlv(3, ct) + _tlv(4, iv)
    return base64.b64encode(blob).decode("ascii")


def open_blob(client_dh_private: ec.EllipticCurvePrivateKey, blob_b64: str) -> str:
    """The token in a blob, read with the client's private key (the client's side, for tests)."""
    data = base64.b64decode(blob_b64)
    if data[:2] != b"\x00\x01":
        raise ValueError("not an SSO token blob")
    pos, fields = 2, {}
    while pos < len(data):
        tag, n = struct.unpack_from("!HH", data, pos)
        fields[tag] = data[pos + 4:pos + 4 + n]
        pos += 4 + n
    peer = serialization.load_der_public_key(fields[1])
    key = _key(client_dh_private.exchange(ec.ECDH(), peer))
    dec = Cipher(algorithms.AES(key), modes.GCM(fields[4], fields[2], min_tag_length=_TAG_LEN)).decryptor()
    return (dec.update(fields[3]) + dec.finalize()).decode("ascii")
