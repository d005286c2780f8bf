"""Lab PKI: a throw-away CA and gateway certificate made with `cryptography`.

The lab gateway's key and certificate are generated fresh for each scenario run and written next to the capture
(the private key is needed to decrypt the TLS 1.2 RSA key-exchange scenario). Nothing here is secret: it exists
only inside the lab's network namespaces.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LabPKI:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    pin_sha256: str  # openconnect --servercert value ("pin-sha256:<base64>")
    sha1_hex: str  # hash of the DER certificate, as ocserv's server-cert-hash reports it


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acflow lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory: Path, hostname: str, ip: str, *, key_bits: int = 2048,
             not_after_days: int = 365, not_before_days: int = -1, cn: str | None = None,
             san_dns: tuple[str, ...] | None = None, san_ip: bool = True) -> LabPKI:
    """Create CA + server certificate under `directory`.

    The server certificate's subject CN is `cn` (default `hostname`); its SANs are the DNS names `san_dns`
    (default: `hostname` alone) and, if `san_ip`, the address `ip`. Validity runs from now + `not_before_days` to
    now + `not_after_days` (both negative: an expired certificate).
    """
    import base64

    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder()
          .subject_name(_name("acflow lab CA")).issuer_name(_name("acflow lab CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn or hostname)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + _dt.timedelta(days=not_before_days))
            .not_valid_after(now + _dt.timedelta(days=not_after_days))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in (san_dns if san_dns is not None else (hostname,))] +
                ([x509.IPAddress(ipaddress.ip_address(ip))] if san_ip else [])), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    sha1 = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return LabPKI(ca_path, cert_path, key_path, pin, sha1)
