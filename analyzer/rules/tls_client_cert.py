"""TLS_CLIENT_CERT_REQUESTED (info) and TLS_CLIENT_CERT_MISSING (warning).

Fact: the seed document ("Client Certificate Request") — the gateway may request a client certificate, listing
the subject names of the CAs it trusts; the client should answer with a certificate issued by one of them. An
empty Certificate message (or none) means the client had no matching identity certificate. Every TLS connection
of the session is looked at (authentication, tunnel, downloader): a client may present its certificate on one
and not on another.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.inferred import reading
from ..phases.tls_handshake import TLSHandshakeDetails

RULE_IDS = ("TLS_CLIENT_CERT_REQUESTED", "TLS_CLIENT_CERT_MISSING")


def check(session, ctx):
    d = session.phase("tls-handshake").details
    per_conn = [x for x in (d.client_certificates if isinstance(d, TLSHandshakeDetails) else []) if x.requested]
    if not per_conn:
        return []
    out = []
    names = per_conn[0].ca_names

    def what(x):
        n = x.certificates_sent
        if n:
            return (f"{x.connection}: a {n}-certificate chain" + (" and CertificateVerify" if
                    x.certificate_verify_frame else ", no CertificateVerify"))
        return f"{x.connection}: " + ("an empty Certificate" if x.certificate_message else "no Certificate")

    out.append(Finding(
        id="TLS_CLIENT_CERT_REQUESTED", severity="info", phase="tls-handshake", time=per_conn[0].request_time,
        frames=[x.request_frame for x in per_conn if x.request_frame][:10],
        message=f"The gateway requested a client certificate on {len(per_conn)} TLS connection(s), from "
                f"{len(names)} CA(s): " + ("; ".join(names[:5]) if names else "any CA") + ". The client sent "
                + "; ".join(what(x) for x in per_conn[:6]) + ".",
        remedy="Nothing to do if certificate authentication is intended; the client must hold a certificate "
               "issued by one of these CAs.",
        evidence={"ca_names": names, "connections": [{"connection": x.connection,
                                                      "certificates_sent": x.certificates_sent,
                                                      "certificate_verify": bool(x.certificate_verify_frame)}
                                                     for x in per_conn]}))
    missing = [x for x in per_conn if not x.certificates_sent]
    if missing:
        sent_elsewhere = [x for x in per_conn if x.certificates_sent]
        # the certificate was presented on another connection and the tunnel came up: worth knowing, not a fault
        benign = bool(sent_elsewhere) and reading(session.phase("cstp-connect")) == "ok"
        out.append(Finding(
            id="TLS_CLIENT_CERT_MISSING", severity="info" if benign else "warning", phase="tls-handshake",
            time=missing[0].request_time,
            frames=[f for x in missing for f in (x.request_frame, x.certificate_frame) if f][:10],
            message="The gateway asked for a client certificate and the client sent none on "
                    + ", ".join(x.connection for x in missing)
                    + (f" (it sent one on {', '.join(x.connection for x in sent_elsewhere)})" if sent_elsewhere
                       else "") + ".",
            remedy=("If the tunnel's connection profile needs the certificate too, the client must present it on "
                    "every connection (AnyConnect does; openconnect only when given -c for that run); otherwise "
                    "nothing to do." if sent_elsewhere else
                    "If the connection profile requires certificate authentication, install a user/machine "
                    "certificate issued by one of the requested CAs on the client (and check the client can read "
                    "its private key); otherwise make the certificate optional on the gateway."),
            evidence={"ca_names": names, "connections": [x.connection for x in missing],
                      "client_certificate_message": [bool(x.certificate_message) for x in missing]}))
    return out
