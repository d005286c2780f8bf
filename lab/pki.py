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
             san_dns: tuple[str, ...] | None = None, san_ip: bool = True, intermediate: str | None = None,
             ca_name: str = "acflow lab CA") -> LabPKI:
    """Create CA + server certificate under `directory`.

    The server certificate's subject CN is `cn` (default `hostname`); its SANs are the DNS names `san_dns`
    (default: `hostname` alone) and, if `san_ip`, the address `ip`. Validity runs from now + `not_before_days` to
    now + `not_after_days` (both negative: an expired certificate). `intermediate`: the server certificate is issued
    by an intermediate CA of that name (issued by the CA); "chain" writes it after the server certificate in
    server-cert.pem, "missing" leaves it out (a gateway installed without its intermediate: clients that trust only
    the root cannot build the chain). ``ca_name``: the CA's subject (two PKIs a client trusts at once need two).
    """
    import base64

    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder()
          .subject_name(_name(ca_name)).issuer_name(_name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    signer, signer_key, chain = ca, ca_key, b""
    if intermediate is not None:
        signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signer = (x509.CertificateBuilder()
                  .subject_name(_name("acflow lab intermediate CA")).issuer_name(ca.subject)
                  .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=1825))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .sign(ca_key, hashes.SHA256()))
        if intermediate == "chain":
            chain = signer.public_bytes(serialization.Encoding.PEM)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn or hostname)).issuer_name(signer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + _dt.timedelta(days=not_before_days))
            .not_valid_after(now + _dt.timedelta(days=not_after_days))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in (san_dns if san_dns is not None else (hostname,))] +
                ([x509.IPAddress(ipaddress.ip_address(ip))] if san_ip else [])), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(signer_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + chain)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    sha1 = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return LabPKI(ca_path, cert_path, key_path, pin, sha1)


@dataclass(frozen=True)
class ClientPKI:
    root_ca: Path  # the trust anchor the gateway is given (ocserv ca-cert)
    chain: Path  # PEM: leaf, the intermediates (issuing CA first), the root — what openconnect is given with -c
    key: Path  # the leaf's private key (-k)
    subjects: tuple[str, ...]  # RFC 4514 subjects in the order of `chain`


def make_self_signed(directory: Path, name: str, *, days: int = 30) -> tuple[Path, Path]:
    """A self-signed server certificate (CN and SAN `name`, no CA behind it) and its key: `<name>.pem`,
    `<name>.key` under `directory`. For the lab's unrelated servers, whose certificates nobody trusts."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_client_pki(directory: Path, user: str, *, intermediates: int = 2) -> ClientPKI:
    """A client PKI: a root CA, `intermediates` CAs below it (the last one issues) and a client certificate for
    `user` (CN, extended key usage clientAuth). Files client-root-ca.pem, client-chain.pem, client-key.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    names = ["acflow lab client root CA"] + [
        "acflow lab client issuing CA" if i == intermediates - 1 else f"acflow lab client policy CA {i + 1}"
        for i in range(intermediates)]
    if intermediates == 2:
        names[1] = "acflow lab client policy CA"
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(intermediates + 2)]
    certs = []
    for i, cn in enumerate(names):  # the CAs, root first
        issuer_key = keys[i - 1] if i else keys[0]
        issuer = _name(names[i - 1] if i else cn)
        certs.append(x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer)
                     .public_key(keys[i].public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=3650 - i))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=intermediates - i), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(issuer_key, hashes.SHA256()))
    leaf_key = keys[-1]
    leaf = (x509.CertificateBuilder().subject_name(_name(user)).issuer_name(certs[-1].subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(keys[-2], hashes.SHA256()))
    chain = [leaf, *reversed(certs)]
    root_path, chain_path, key_path = (directory / "client-root-ca.pem", directory / "client-chain.pem",
                                       directory / "client-key.pem")
    root_path.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    chain_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_path.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                serialization.NoEncryption()))
    return ClientPKI(root_path, chain_path, key_path, tuple(c.subject.rfc4514_string() for c in chain))
