"""Key schedules and record protection: published vectors (RFC 8448, the IETF TLS 1.2 PRF vectors) and
cross-checks against small independent re-implementations written here with the standard library."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from dissectors.tls import keyschedule as ks
from dissectors.tls.ciphers import (
    AEADExplicitNonce,
    AEADXorNonce,
    CBCProtection,
    DecryptError,
    TLS13Protection,
    suite_info,
    tls12_protections,
)


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# --- TLS 1.2 PRF -------------------------------------------------------------------------------------


def test_prf_sha256_vector():
    out = ks.prf(ks.TLS12, "sha256", h("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"), b"test label",
                 h("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"), 100)
    assert out == h("""e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e
        db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b
        ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
        87 34 7b 66""")


def test_prf_sha384_vector():
    out = ks.prf(ks.TLS12, "sha384", h("b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df"), b"test label",
                 h("cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65"), 148)
    assert out == h("""7b 0c 18 e9 ce d4 10 ed 18 04 f2 cf a3 4a 33 6a 1c 14 df fb 49 00 bb 5f d7 94 21 07 e8 1c
        83 cd e9 ca 0f aa 60 be 9f e3 4f 82 b1 23 3c 91 46 a0 e5 34 cb 40 0f ed 27 00 88 4f 9d c2 36 f8 0e
        dd 8b fa 96 11 44 c9 e8 d7 92 ec a7 22 a7 b3 2f c3 d4 16 d4 73 eb c2 c5 fd 4a bf da d0 5d 91 84 25
        9b 5b f8 cd 4d 90 fa 0d 31 e2 de c4 79 e4 f1 a2 60 66 f2 ee a9 a6 92 36 a3 e5 26 55 c9 e9 ae e6 91
        c8 f3 a2 68 54 30 8d 5e aa 3b e8 5e 09 90 70 3d 73 e5 6f""")


def _p_hash_stdlib(name: str, secret: bytes, seed: bytes, n: int) -> bytes:
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, name).digest()
        out += hmac.new(secret, a + seed, name).digest()
    return out[:n]


@pytest.mark.parametrize("secret_len", [47, 48, 1, 0])
def test_tls10_prf_matches_independent_formula(secret_len):
    secret = os.urandom(secret_len)
    seed = os.urandom(64)
    half = (secret_len + 1) // 2
    want = bytes(a ^ b for a, b in zip(_p_hash_stdlib("md5", secret[:half], b"key expansion" + seed, 104),
                                       _p_hash_stdlib("sha1", secret[secret_len - half:], b"key expansion" + seed, 104),
                                       strict=True))
    assert ks.prf(ks.TLS10, "sha256", secret, b"key expansion", seed, 104) == want
    assert ks.prf(0xFEFF, "sha256", secret, b"key expansion", seed, 104) == want  # DTLS 1.0 too


def test_master_secret_ems_key_block_exporter_independent():
    pms, cr, sr = os.urandom(48), os.urandom(32), os.urandom(32)
    assert ks.master_secret(ks.TLS12, "sha384", pms, cr, sr) == _p_hash_stdlib("sha384", pms,
                                                                                b"master secret" + cr + sr, 48)
    transcript = os.urandom(500)
    sh = ks.session_hash(ks.TLS12, "sha256", transcript)
    assert sh == hashlib.sha256(transcript).digest()
    assert ks.session_hash(ks.TLS11, "sha256", transcript) == hashlib.md5(transcript).digest() + hashlib.sha1(
        transcript).digest()
    assert ks.extended_master_secret(ks.TLS12, "sha256", pms, sh) == _p_hash_stdlib(
        "sha256", pms, b"extended master secret" + sh, 48)
    ms = os.urandom(48)
    assert ks.key_block(ks.TLS12, "sha256", ms, cr, sr, 72) == _p_hash_stdlib("sha256", ms,
                                                                              b"key expansion" + sr + cr, 72)
    # RFC 5705: the openconnect PSK, no context; and with a context (length-prefixed)
    assert ks.export_keying_material_12(ks.TLS12, "sha256", ms, cr, sr, b"EXPORTER-openconnect-psk", None, 32) == \
        _p_hash_stdlib("sha256", ms, b"EXPORTER-openconnect-psk" + cr + sr, 32)
    assert ks.export_keying_material_12(ks.TLS12, "sha256", ms, cr, sr, b"L", b"", 16) == \
        _p_hash_stdlib("sha256", ms, b"L" + cr + sr + b"\x00\x00", 16)
    assert ks.export_keying_material_12(ks.TLS12, "sha256", ms, cr, sr, b"L", b"ab", 16) == \
        _p_hash_stdlib("sha256", ms, b"L" + cr + sr + b"\x00\x02ab", 16)


def test_partition_key_block():
    block = bytes(range(100))
    cmac, smac, ckey, skey, civ, siv = ks.partition_key_block(block, 20, 16, 4)
    assert cmac == block[:20] and smac == block[20:40] and ckey == block[40:56] and skey == block[56:72]
    assert civ == block[72:76] and siv == block[76:80]


def test_psk_premaster_rfc4279():
    assert ks.psk_premaster(b"\x01\x02") == b"\x00\x02\x00\x00\x00\x02\x01\x02"
    assert ks.psk_premaster(b"k", b"dh") == b"\x00\x02dh\x00\x01k"


# --- TLS 1.3 (RFC 8448 §3 "Simple 1-RTT Handshake") --------------------------------------------------

R8448_CH = h("""010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113031302
    010000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400230000
    003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b0003020304000d00
    20001e040305030603020308040805080604010501060102010402050206020202002d00020101001c00024001""")
R8448_SH = h("""020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e0033
    0024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304""")
R8448_ECDHE = h("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d")
R8448_C_HS = h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
R8448_S_HS = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
R8448_S_AP = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
R8448_C_AP = h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
# {client} send handshake record: the client Finished, encrypted under the client handshake keys
R8448_CLIENT_FINISHED_RECORD = h("""17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51
    7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46""")
R8448_CLIENT_FINISHED = h("""14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9
    85 27 b6 42 f2 ed d5 ce 61""")
# {server} send application_data record: payload 00 01 02 … 31 (50 octets), after the NewSessionTicket
R8448_SERVER_APP_RECORD = h("""17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0
    5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32
    54 0d d0 32 e1 67 c2 95 5d""")


def test_rfc8448_key_schedule():
    sha = "sha256"
    empty = hashlib.sha256(b"").digest()
    early = ks.hkdf_extract(sha, None, None)
    assert early == h("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
    derived = ks.derive_secret(sha, early, "derived", empty)
    assert derived == h("6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba")
    hs = ks.hkdf_extract(sha, derived, R8448_ECDHE)
    assert hs == h("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac")
    th = hashlib.sha256(R8448_CH + R8448_SH).digest()
    assert ks.derive_secret(sha, hs, "c hs traffic", th) == R8448_C_HS
    assert ks.derive_secret(sha, hs, "s hs traffic", th) == R8448_S_HS
    derived2 = ks.derive_secret(sha, hs, "derived", empty)
    assert derived2 == h("43de77e0c77713859a944db9db2590b53190a65b3ee2e4f12dd7a0bb7ce254b4")
    master = ks.hkdf_extract(sha, derived2, None)
    assert master == h("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919")
    # traffic keys (RFC 8446 §7.3)
    assert ks.traffic_key_iv(sha, R8448_S_HS, 16) == (h("3fce516009c21727d0f2e4e86ee403bc"),
                                                      h("5d313eb2671276ee13000b30"))
    assert ks.traffic_key_iv(sha, R8448_C_HS, 16) == (h("dbfaa693d1762c5b666af5d950258d01"),
                                                      h("5bd3c71b836e0b76bb73265f"))
    assert ks.traffic_key_iv(sha, R8448_S_AP, 16) == (h("9f02283b6c9c07efc26bb9f2ac92e356"),
                                                      h("cf782b88dd83549aadf1e984"))
    assert ks.traffic_key_iv(sha, R8448_C_AP, 16) == (h("17422dda596ed5d9acd890e3c63f5051"),
                                                      h("5b78923dee08579033e523d9"))


def test_rfc8448_resumption_and_early_secrets():
    sha = "sha256"
    resumption_master = h("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c")
    # RFC 8446 §4.6.1: PSK = HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce, Hash.length)
    psk = ks.hkdf_expand_label(sha, resumption_master, "resumption", b"\x00\x00", 32)
    assert psk == h("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3")
    # RFC 8448 §4 (resumed 0-RTT): early secret from that PSK
    assert ks.hkdf_extract(sha, None, psk) == h("9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c")
    # RFC 8448 §4: client early traffic keys
    c_e = h("3fbbe6a60deb66c30a32795aba0eff7eaa10105586e7be5c09678d63b6caab62")
    assert ks.traffic_key_iv(sha, c_e, 16) == (h("920205a5b7bf2115e6fc5c2942834f54"), h("6d475f0993c8e564610db2b9"))


def test_rfc8448_record_decryption():
    suite = suite_info(0x1301)
    # client Finished record, seq 0 under client_handshake_traffic_secret
    p = TLS13Protection(suite, R8448_C_HS)
    rec = R8448_CLIENT_FINISHED_RECORD
    assert p.decrypt(0, rec[:5], rec[5:]) == (22, R8448_CLIENT_FINISHED)
    with pytest.raises(DecryptError):
        p.decrypt(1, rec[:5], rec[5:])
    with pytest.raises(DecryptError):  # the header is authenticated
        p.decrypt(0, b"\x17\x03\x01" + rec[3:5], rec[5:])
    # server application data: seq 1 (the NewSessionTicket record was seq 0)
    p = TLS13Protection(suite, R8448_S_AP)
    rec = R8448_SERVER_APP_RECORD
    assert p.decrypt(1, rec[:5], rec[5:]) == (23, bytes(range(50)))


def _hkdf_expand_label_stdlib(secret: bytes, label: bytes, context: bytes, n: int, name: str = "sha256") -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!H", n) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(secret, t + info + bytes([i]), name).digest()
        out += t
        i += 1
    return out[:n]


@pytest.mark.parametrize("name", ["sha256", "sha384"])
def test_tls13_exporter_and_key_update_independent(name):
    secret = os.urandom(hashlib.new(name).digest_size)
    n = len(secret)
    # RFC 8446 §7.5
    derived = _hkdf_expand_label_stdlib(secret, b"EXPORTER-openconnect-psk", hashlib.new(name, b"").digest(), n, name)
    want = _hkdf_expand_label_stdlib(derived, b"exporter", hashlib.new(name, b"").digest(), 32, name)
    assert ks.export_keying_material_13(name, secret, b"EXPORTER-openconnect-psk", None, 32) == want
    assert ks.export_keying_material_13(name, secret, b"EXPORTER-openconnect-psk", b"", 32) == want
    ctx_want = _hkdf_expand_label_stdlib(derived, b"exporter", hashlib.new(name, b"abc").digest(), 17, name)
    assert ks.export_keying_material_13(name, secret, b"EXPORTER-openconnect-psk", b"abc", 17) == ctx_want
    # RFC 8446 §7.2
    assert ks.next_traffic_secret(name, secret) == _hkdf_expand_label_stdlib(secret, b"traffic upd", b"", n, name)


def test_tls13_padding_and_content_type():
    suite = suite_info(0x1303)
    secret = os.urandom(32)
    key, iv = ks.traffic_key_iv("sha256", secret, 32)
    aead = ChaCha20Poly1305(key)
    p = TLS13Protection(suite, secret)
    for seq, inner, want in ((0, b"hello\x17", (23, b"hello")), (5, b"\x15\x02\x28\x15" + bytes(9), None),
                             (7, b"\x16" + bytes(30), (22, b""))):
        ct = aead.encrypt((int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big"), inner,
                          b"\x17\x03\x03" + struct.pack("!H", len(inner) + 16))
        hdr = b"\x17\x03\x03" + struct.pack("!H", len(ct))
        assert p.decrypt(seq, hdr, ct) == (want or (21, b"\x15\x02\x28"))
    ct = aead.encrypt(iv, bytes(5), b"\x17\x03\x03\x00\x15")
    with pytest.raises(DecryptError):  # all-zero plaintext has no content type
        p.decrypt(0, b"\x17\x03\x03\x00\x15", ct)
    assert p.next_generation().secret == ks.next_traffic_secret("sha256", secret)


# --- TLS 1.2 record protection ----------------------------------------------------------------------


def _aad(seq, ct, ver, n):
    return struct.pack("!QBHH", seq, ct, ver, n)


@pytest.mark.parametrize("ccm,tag", [(False, 16), (True, 16), (True, 8)])
def test_aead_explicit_nonce(ccm, tag):
    key, salt = os.urandom(16), os.urandom(4)
    aead = AESCCM(key, tag_length=tag) if ccm else AESGCM(key)
    p = AEADExplicitNonce(key, salt, tag, ccm=ccm)
    explicit = (1234).to_bytes(8, "big")
    frag = explicit + aead.encrypt(salt + explicit, b"payload", _aad(7, 23, 0x0303, 7))
    assert p.decrypt(7, 23, 0x0303, frag) == b"payload"
    assert p.decrypt(7, 23, 0x0303, bytearray(frag)) == b"payload"
    assert p.seq_hint(frag) == 1234
    for seq, ctype, ver in ((8, 23, 0x0303), (7, 21, 0x0303), (7, 23, 0x0301)):
        with pytest.raises(DecryptError):
            p.decrypt(seq, ctype, ver, frag)
    with pytest.raises(DecryptError):
        p.decrypt(0, 23, 0x0303, b"short")
    assert p.decrypt_unverified(frag) == (None if ccm else b"payload")


def test_chacha20_rfc7905_nonce():
    key, iv = os.urandom(32), os.urandom(12)
    p = AEADXorNonce(key, iv)
    seq = 0x0102030405060708
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
    frag = ChaCha20Poly1305(key).encrypt(nonce, b"data", _aad(seq, 23, 0x0303, 4))
    assert p.decrypt(seq, 23, 0x0303, frag) == b"data"
    with pytest.raises(DecryptError):
        p.decrypt(seq + 1, 23, 0x0303, frag)


def _cbc_record(key, mac_key, seq, ctype, ver, content, *, etm=False, iv=None, mac="sha1", block=16,
                explicit=True, pad_extra=0):
    iv = iv or os.urandom(block)
    if etm:
        body = content
    else:
        body = content + hmac.new(mac_key, _aad(seq, ctype, ver, len(content)) + content, mac).digest()
    pad = block - (len(body) + 1) % block + pad_extra * block
    body += bytes([pad % 256]) * (pad + 1)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = (iv if explicit else b"") + enc.update(body) + enc.finalize()
    if etm:
        ct += hmac.new(mac_key, _aad(seq, ctype, ver, len(ct)) + ct, mac).digest()
    return ct


@pytest.mark.parametrize("etm", [False, True])
@pytest.mark.parametrize("mac", ["sha1", "sha256", "sha384"])
def test_cbc_mac_then_encrypt_and_encrypt_then_mac(etm, mac):
    key, mac_key = os.urandom(32), os.urandom(hashlib.new(mac).digest_size)
    p = CBCProtection("AES_256_CBC", key, mac, mac_key, explicit_iv=True, etm=etm)
    for content, extra in ((b"", 0), (b"x" * 31, 0), (b"hello world", 3)):
        rec = _cbc_record(key, mac_key, 42, 23, 0x0303, content, etm=etm, mac=mac, pad_extra=extra)
        assert p.decrypt(42, 23, 0x0303, rec) == content
        with pytest.raises(DecryptError):
            p.decrypt(43, 23, 0x0303, rec)
        assert p.search(range(30, 50), 23, 0x0303, rec) == (42, content)
        assert p.search(range(10), 23, 0x0303, rec) == (None, content)
        assert p.decrypt_unverified(rec) == content
    with pytest.raises(DecryptError):
        p.decrypt(0, 23, 0x0303, b"\x00" * 17)
    # wrong keys: both of them (with encrypt-then-MAC and the right MAC key, a wrong cipher key passes the MAC and
    # only the padding check is left, which random plaintext passes about once in 200 tries)
    wrong = CBCProtection("AES_256_CBC", os.urandom(32), mac, os.urandom(len(mac_key)), etm=etm)
    rec = _cbc_record(key, mac_key, 1, 23, 0x0303, b"secret stuff" * 5, etm=etm, mac=mac)
    with pytest.raises(DecryptError):
        wrong.decrypt(1, 23, 0x0303, rec)


def test_cbc_tls10_chained_iv():
    key, mac_key, iv0 = os.urandom(16), os.urandom(20), os.urandom(16)
    p = CBCProtection("AES_128_CBC", key, "sha1", mac_key, explicit_iv=False, iv=iv0)
    r1 = _cbc_record(key, mac_key, 0, 22, 0x0301, b"finished", iv=iv0, explicit=False)
    r2 = _cbc_record(key, mac_key, 1, 23, 0x0301, b"GET /", iv=r1[-16:], explicit=False)
    assert p.decrypt(0, 22, 0x0301, r1) == b"finished"
    assert p.decrypt(1, 23, 0x0301, r2) == b"GET /"


def test_tls12_protections_from_master_secret():
    suite = suite_info(0xC02F)
    ms, cr, sr = os.urandom(48), os.urandom(32), os.urandom(32)
    block = ks.key_block(ks.TLS12, "sha256", ms, cr, sr, 40)
    ckey, skey, civ, siv = block[:16], block[16:32], block[32:36], block[36:40]
    cw, sw = tls12_protections(suite, ks.TLS12, ms, cr, sr)
    explicit = os.urandom(8)
    frag = explicit + AESGCM(skey).encrypt(siv + explicit, b"srv", _aad(3, 23, 0x0303, 3))
    assert sw.decrypt(3, 23, 0x0303, frag) == b"srv"
    frag = explicit + AESGCM(ckey).encrypt(civ + explicit, b"cli", _aad(0, 22, 0x0303, 3))
    assert cw.decrypt(0, 22, 0x0303, frag) == b"cli"
    with pytest.raises(ValueError):
        tls12_protections(suite_info(0x0005), ks.TLS12, ms, cr, sr)  # RC4: not supported


def test_suite_table():
    s = suite_info(0xC030)
    assert (s.name, s.kex, s.cipher, s.kind, s.key_len, s.prf_hash) == (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE_RSA", "AES_256_GCM", "aead", 32, "sha384")
    s = suite_info(0x0035)
    assert (s.kex, s.cipher, s.mac, s.mac_len, s.prf_hash, s.rsa_key_exchange) == (
        "RSA", "AES_256_CBC", "sha1", 20, "sha256", True)
    assert suite_info(0xC028).prf_hash == "sha384" and suite_info(0xC028).mac == "sha384"
    assert suite_info(0x1303).tls13 and suite_info(0x1303).cipher == "CHACHA20_POLY1305"
    assert suite_info(0x1305).tag_len == 8
    assert not suite_info(0x00FF).supported and not suite_info(0x0005).supported
    assert suite_info(0x0A0A).name == "GREASE" and suite_info(0xABCD).name == "0xABCD"
    assert suite_info(0x000A).kind == "cbc" and suite_info(0x000A).block_len == 8
