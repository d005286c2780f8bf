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
from ..phases.record import UNSET
from ..phases.tls_handshake import TLSHandshakeDetails
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("TLS_CERT_UNTRUSTED", "TLS_CERT_HASH_MISMATCH", "TLS_CERT_REFUSED")
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
    gone = d.client_closed if d is not None and d.client_closed is not UNSET else None
    if gone is not None and gone.get("after_certificate"):
        leaf = (d.certificates or [{}])[0]
        missing = d.chain_includes_issuer is False and leaf.get("issuer") != leaf.get("subject")
        why = (f" The gateway sent its certificate without the CA that issued it ({leaf.get('issuer')}): a client "
               "that does not already hold that intermediate CA cannot build the chain to a root it trusts."
               if missing else "")
        out.append(Finding(
            id="TLS_CERT_REFUSED", severity="error", phase="tls-handshake", time=gone["time"],
            frames=sorted({x.get("frame") for x in (d.certificates or [])[:1] if x.get("frame")} | {gone["frame"]}),
            message=f"The client closed the connection ({gone['reason']}) right after the gateway's certificate, "
                    f"without an alert: it refused the certificate ({leaf.get('subject')}, issued by "
                    f"{leaf.get('issuer')})." + why,
            remedy=("Install the certificate with its chain on the gateway (ASA: the trustpoint's intermediate CA "
                    "certificates; ocserv: the intermediates appended to server-cert)." if missing else
                    "Make the gateway present a certificate the clients trust (issued by a CA in their trust store, "
                    "valid, naming the host they connect to), or find what intercepts TLS on the way."),
            evidence={"chain_includes_issuer": d.chain_includes_issuer, "subject": leaf.get("subject"),
                      "issuer": leaf.get("issuer"), "closed": gone["reason"]}))
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
