"""TLS_CLIENT_CERT_REQUESTED (info) and TLS_CLIENT_CERT_MISSING (warning).

Fact: the seed document ("Client Certificate Request") — the gateway may request a client certificate, listing
the subject names of the CAs it trusts; the client should answer with a certificate issued by one of them. An
empty Certificate message (or none) means the client had no matching identity certificate.
"""
from __future__ import annotations

from ..model import Finding

RULE_IDS = ("TLS_CLIENT_CERT_REQUESTED", "TLS_CLIENT_CERT_MISSING")


def check(session, ctx):
    tls = session.phase("tls-handshake")
    d = tls.details or {}
    cr = d.get("certificate_request")
    if not cr:
        return []
    names = cr.get("ca_names") or []
    out = [Finding(id="TLS_CLIENT_CERT_REQUESTED", severity="info", phase="tls-handshake", time=cr.get("time"),
                   frames=[cr["frame"]] if cr.get("frame") else [],
                   message=f"The gateway requested a client certificate, from {len(names)} CA(s): "
                           + ("; ".join(names[:5]) if names else "any CA") + ".",
                   remedy="Nothing to do if certificate authentication is intended; the client must hold a "
                          "certificate issued by one of these CAs.",
                   evidence={"ca_names": names})]
    cc = d.get("client_certificate")
    if not cc or not cc.get("count"):
        out.append(Finding(
            id="TLS_CLIENT_CERT_MISSING", severity="warning", phase="tls-handshake", time=cr.get("time"),
            frames=[f for f in ([cr.get("frame")] + ([cc.get("frame")] if cc else [])) if f],
            message="The gateway asked for a client certificate and the client sent none.",
            remedy="If the connection profile requires certificate authentication, install a user/machine "
                   "certificate issued by one of the requested CAs on the client (and check the client can read "
                   "its private key); otherwise make the certificate optional on the gateway.",
            evidence={"ca_names": names, "client_certificate_message": bool(cc)}))
    return out
