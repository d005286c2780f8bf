"""TLS_CERT_UNTRUSTED (error/warning) and TLS_CERT_HASH_MISMATCH (error): the gateway's certificate.

Facts: the seed document ("Server Certificate") — AnyConnect blocks a gateway whose certificate fails strict
validation, by default. Verdicts (analyzer/certs.py): self-signed, expired or not yet valid at capture time, name
not matching the host the client asked for (SNI, else the group-access URL), RSA key < 2048 bits. acflow has no
trust store of the client, so "issued by an unknown CA" cannot be judged from a capture; a chain without its
issuer is shown as a fact, not flagged. Phase 3's `<server-cert-hash>` (SHA-1 of the certificate, cached by
AnyConnect in preferences.xml) must equal the certificate seen in phase 1.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.tls_handshake import TLSHandshakeDetails
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("TLS_CERT_UNTRUSTED", "TLS_CERT_HASH_MISMATCH")
_ERRORS = {"expired", "not-yet-valid", "name-mismatch", "self-signed", "unparseable"}


def check(session, ctx):
    out = []
    tls = session.phase("tls-handshake")
    d = tls.details if isinstance(tls.details, TLSHandshakeDetails) else None
    verdicts = d.certificate_verdicts if d is not None else []
    if verdicts:
        leaf = (d.certificates or [{}])[0]
        severe = any(v["verdict"] in _ERRORS for v in verdicts)
        out.append(Finding(
            id="TLS_CERT_UNTRUSTED", severity="error" if severe else "warning", phase="tls-handshake",
            time=tls.start, frames=sorted(set(tls.frames))[:4],
            message="The gateway certificate fails strict validation: " + "; ".join(v["message"] for v in verdicts)
                    + ".",
            remedy="Install a certificate issued by a CA the clients trust, valid now, whose SAN names the host the "
                   "users connect to (the group-url/SNI host). AnyConnect blocks such a gateway by default; users "
                   "who allowed it see a warning on every connection.",
            evidence={"verdicts": [v["verdict"] for v in verdicts], "subject": leaf.get("subject"),
                      "issuer": leaf.get("issuer"), "host": d.certificate_host, "sans": leaf.get("sans")}))
    auth = session.phase("user-auth").details
    if isinstance(auth, UserAuthDetails) and auth.server_cert_hash_matches is False:
        leaf = ((d.certificates if d is not None else None) or [{}])[0]
        out.append(Finding(
            id="TLS_CERT_HASH_MISMATCH", severity="error", phase="user-auth", time=session.phase("user-auth").end,
            frames=sorted(set(session.phase("user-auth").frames))[-1:],
            message=f"The server-cert-hash in the auth reply ({auth.server_cert_hash}) is not the hash of the "
                    f"certificate the gateway presented (SHA-1 {leaf.get('sha1')}).",
            remedy="Something between client and gateway presents another certificate (TLS inspection proxy, load "
                   "balancer with a different certificate) or the gateway's configuration is inconsistent: find "
                   "which device terminates TLS.",
            evidence={"server_cert_hash": auth.server_cert_hash, "certificate_sha1": leaf.get("sha1")}))
    return out
