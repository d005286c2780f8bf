"""Certificate facts and verdicts for phase 1 (the gateway's chain as sent in the TLS handshake).

Verdicts are what AnyConnect's strict certificate check cares about (see the seed document, "Server
Certificate"): self-signed, issuer not in the chain (unknown to us — acflow has no trust store of the user's
machine), expired / not yet valid at the time of the capture, name mismatch with the host the client asked for
(SNI or group-access URL), weak key.
"""
from __future__ import annotations

import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

WEAK_RSA_BITS = 2048


_OID_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
              "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC", "1.2.840.113549.1.9.1": "emailAddress",
              "0.9.2342.19200300.100.1.1": "UID"}


def _der(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, start of content, end of content) of the DER TLV at `pos`, or None."""
    if pos + 2 > len(data):
        return None
    tag, ln = data[pos], data[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            return None
        ln = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + ln > len(data):
        return None
    return tag, pos, pos + ln


def _oid(b: bytes) -> str:
    if not b:
        return ""
    parts = [b[0] // 40, b[0] % 40]
    v = 0
    for x in b[1:]:
        v = (v << 7) | (x & 0x7F)
        if not x & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def dn_from_der(der: bytes) -> str:
    """An X.501 DistinguishedName (as in a CertificateRequest's CA list) as an RFC 4514-like string.

    A small DER walk (Name = SEQUENCE OF SET OF SEQUENCE {type OID, value}); unparseable input gives its hex.
    """
    top = _der(der, 0)
    if top is None or top[0] != 0x30:
        return der.hex()
    rdns = []
    pos = top[1]
    try:
        while pos < top[2]:
            st = _der(der, pos)
            if st is None or st[0] != 0x31:
                return der.hex()
            p2 = st[1]
            while p2 < st[2]:
                seq = _der(der, p2)
                oid = _der(der, seq[1]) if seq else None
                val = _der(der, oid[2]) if oid else None
                if val is None:
                    return der.hex()
                raw = der[val[1]:val[2]]
                text = raw.decode("utf-16-be" if val[0] == 0x1E else "utf-8", "replace")
                key = _OID_NAMES.get(_oid(der[oid[1]:oid[2]]), _oid(der[oid[1]:oid[2]]))
                rdns.append(f"{key}={text}")
                p2 = seq[2]
            pos = st[2]
    except (TypeError, IndexError):
        return der.hex()
    return ",".join(reversed(rdns))


def _name(n: x509.Name) -> str:
    try:
        return n.rfc4514_string()
    except Exception:  # noqa: BLE001 - odd encodings: still say something
        return repr(n)


def describe(der: bytes) -> dict:
    """Subject, issuer, validity, SANs, key type/size, hashes of one DER certificate (never raises)."""
    out: dict = {"sha1": hashlib.sha1(der).hexdigest().upper(), "sha256": hashlib.sha256(der).hexdigest().upper()}
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as e:  # noqa: BLE001
        out["error"] = f"cannot parse certificate: {e}"
        return out
    # cryptography parses names lazily: a malformed one raises here, not at load time
    for key, get in (("subject", lambda: cert.subject), ("issuer", lambda: cert.issuer)):
        try:
            out[key] = _name(get())
        except Exception as e:  # noqa: BLE001 - hostile certificate: say so, keep going
            out[key] = f"(unparseable {key}: {type(e).__name__})"
    try:
        out["serial"] = format(cert.serial_number, "x")
    except Exception:  # noqa: BLE001
        out["serial"] = None
    try:
        out["not_before"] = cert.not_valid_before_utc.timestamp()
        out["not_after"] = cert.not_valid_after_utc.timestamp()
    except Exception:  # noqa: BLE001
        pass
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [f"DNS:{v}" for v in ext.get_values_for_type(x509.DNSName)]
        sans += [f"IP:{v}" for v in ext.get_values_for_type(x509.IPAddress)]
    except Exception:  # noqa: BLE001 - no SAN extension
        pass
    out["sans"] = sans
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            out["key"] = f"RSA {key.key_size}"
            out["key_bits"] = key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            out["key"] = f"EC {key.curve.name}"
            out["key_bits"] = key.curve.key_size
        elif isinstance(key, dsa.DSAPublicKey):
            out["key"] = f"DSA {key.key_size}"
            out["key_bits"] = key.key_size
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            out["key"] = type(key).__name__.replace("PublicKey", "")
        else:
            out["key"] = type(key).__name__
    except Exception as e:  # noqa: BLE001
        out["key"] = f"unreadable ({e})"
    try:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        out["cn"] = cn[0].value if cn else None
    except Exception:  # noqa: BLE001
        out["cn"] = None
    return out


def _host_matches(host: str, cert: dict) -> bool:
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    names = [s[4:].lower() for s in cert.get("sans", []) if s.startswith("DNS:")]
    ips = [s[3:] for s in cert.get("sans", []) if s.startswith("IP:")]
    if ip is not None:
        return str(ip) in ips
    if not names and cert.get("cn"):
        names = [str(cert["cn"]).lower()]
    for n in names:
        if n == host:
            return True
        if n.startswith("*.") and "." in host and host.split(".", 1)[1] == n[2:]:
            return True
    return False


def _day(ts: float) -> str:
    import datetime as _dt  # noqa: PLC0415

    try:
        return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts:.0f}"


def _ago(seconds: float) -> str:
    days = seconds / 86400
    if days >= 2:
        return f"{days:.0f} days"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours >= 1 else f"{seconds / 60:.0f} minutes"


def verdicts(chain: list[dict], at: float | None, host: str | None) -> list[dict]:
    """Problems with the gateway's chain: [{"verdict", "message"}] (empty when nothing is wrong).

    A chain that does not include the leaf's issuer is not a problem by itself (gateways often send only the
    leaf when a root CA issued it) and acflow does not know the client's trust store: that is not judged here.
    """
    out: list[dict] = []
    if not chain:
        return out
    leaf = chain[0]
    if "error" in leaf:
        return [{"verdict": "unparseable", "message": leaf["error"]}]
    if leaf.get("subject") == leaf.get("issuer"):
        out.append({"verdict": "self-signed", "message": f"the gateway certificate is self-signed ({leaf['subject']})"})
    if at is not None:
        if leaf.get("not_after") is not None and at > leaf["not_after"]:
            out.append({"verdict": "expired",
                        "message": f"the gateway certificate expired on {_day(leaf['not_after'])} (not-after), "
                                   f"{_ago(at - leaf['not_after'])} before the capture"})
        if leaf.get("not_before") is not None and at < leaf["not_before"]:
            out.append({"verdict": "not-yet-valid",
                        "message": f"the gateway certificate is valid only from {_day(leaf['not_before'])} "
                                   f"(not-before), {_ago(leaf['not_before'] - at)} after the capture: check the "
                                   "clocks"})
    if host and not _host_matches(host, leaf):
        out.append({"verdict": "name-mismatch",
                    "message": f"the certificate does not name {host!r} "
                               f"(SANs: {', '.join(leaf.get('sans', [])) or 'none'})"})
    bits = leaf.get("key_bits")
    if leaf.get("key", "").startswith("RSA") and bits and bits < WEAK_RSA_BITS:
        out.append({"verdict": "weak-key", "message": f"RSA key of {bits} bits (< {WEAK_RSA_BITS})"})
    return out
