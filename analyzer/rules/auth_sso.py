"""AUTH_SSO_INCOMPLETE (error; info while the capture ends waiting): phase 3, SAML single sign-on that never brought
a token back.

Fact (what the gateway and openconnect do, recorded in the lab: samples/scripted/saml-*): a tunnel group with SAML
answers the client's init with an auth-request holding `<sso-v2-login>` (the sign-in URL) and a form whose only field
is `<input type="sso" name="sso-token">` — no credentials. The client opens a browser there (its own, embedded, or
the system's with `<sso-v2-browser-mode>external</sso-v2-browser-mode>`); the identity provider signs the user in
and the gateway hands the browser the token (a cookie named by `sso-v2-token-cookie-name`, or, external, a redirect
to the client's http://localhost:29786/api/sso/<token sealed to its STRAP DH key>). The client then posts an
auth-reply with `<sso-token>`. When no such auth-reply follows, the sign-in did not finish: the user closed the
browser or did not complete the identity provider's page (or its second factor), the browser could not reach the
identity provider or the gateway, the identity provider refused the user, or (external browser) the redirect to
port 29786 did not reach the client. The capture holds only what passed where it was taken: the gateway's SAML
pages when the browser reached them (their TLS connections, decrypted with the browser's keys), the identity
provider's traffic not at all unless captured on the laptop.

The browser's way to the identity provider (`SingleSignOn.path`, analyzer/phases/sign_in.py: the client's DNS lookups
and connections meanwhile) names the first failure on it when the capture holds one — the identity provider's name
not resolved, its address not answering, its TLS handshake ended by the browser (a certificate it does not trust) —
and the remedy is that failure's (`PATH_REMEDY`).

Without keys (`inferred`): the client waited after the gateway's answer to its first request while another program
on its machine connected to the gateway and went on to another server, or a lookup near its requests failed
(`InferredSignIn.single_sign_on`: a browser at an identity provider), and the client closed its connection without
going on (or the capture ended). A host scan's script connects to the gateway only: without the way to another
server it is no sign-in, and no finding.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("AUTH_SSO_INCOMPLETE",)

#: what to do about the first failure on the browser's way to the identity provider (`SignInPath.problem`), by the
#: kind of failure
PATH_REMEDY = {
    "lookup": "The user's machine cannot resolve the identity provider's name: check the DNS servers it uses there "
              "(a name that only the internal DNS knows, or one reached only through the tunnel, cannot serve a "
              "login made before the tunnel is up).",
    "connect": "Nothing let the browser reach the identity provider: check the network's firewall or proxy for that "
               "address and port, and any policy on the machine that blocks traffic until the VPN is connected "
               "(the identity provider's names must stay reachable).",
    "tls": "The browser did not accept the identity provider's TLS handshake: a certificate it does not trust (TLS "
           "inspection by a proxy or security software, a missing root CA, a wrong clock), or a protocol it refused. "
           "Open the identity provider's page in a browser on that machine to see the error.",
}


def path_failure(path) -> str | None:
    """The kind of the first failure on the way (a key of `PATH_REMEDY`), or None."""
    if path is None or path.reached or not path.problem:
        return None
    if any(x.answer != "resolved" for x in path.lookups):
        return "lookup"
    c = next((x for x in path.connections if x.outcome != "reached"), None)
    if c is None:
        return None
    return "connect" if c.outcome in ("no-answer", "reset", "unacknowledged", "icmp") else "tls"


def _frames(path) -> str:
    fr = list(opt(path.problem_frames) or [])
    return f" (frame{'s' if len(fr) != 1 else ''} {', '.join(str(f) for f in fr)})" if fr else ""


def _path_evidence(path) -> dict:
    return {"identity_provider_reached": path.reached, "sign_in_problem": path.problem,
            "sign_in_failure": path_failure(path)}


def check(session, ctx):
    p = session.phase("user-auth")
    d = p.details if isinstance(p.details, UserAuthDetails) else None
    sso = opt(d.sso) if d is not None else None
    if sso is None and p.status == "undecrypted":
        return _inferred(p)
    if sso is None or sso.outcome == "token-returned":
        return []
    seen = sso.browser
    if seen:
        last = seen[-1]
        where = (f"the browser reached the gateway's sign-in page ({len(seen)} request(s), the last "
                 f"{last.target.split('?')[0]} answered {opt(last.status) or 'nothing'}, frame {last.frame})")
    elif opt(sso.browser_undecrypted):
        where = (f"the browser reached the gateway ({', '.join(sso.browser_undecrypted[:4])}, told by its TLS "
                 "ClientHello: its requests are not decrypted, its secrets not being in the key log)")
    else:
        where = ("no request of the browser reached the gateway in the capture (it was not opened, could not "
                 "reach the gateway, or its traffic is not in the capture)")
    idp = opt(sso.identity_provider)
    path = opt(sso.path)
    failure = path_failure(path)
    if idp:
        where += f"; it was sent to sign in at {idp}"
    elif path is not None and path.identity_provider:
        # the browser's own traffic not decrypted (the key log is the client's): its way read as without keys
        idp = path.identity_provider
        where += f"; its next lookup and connection were for {idp}"
    if failure is not None:
        where += f", and on its way there {path.problem}{_frames(path)}"
    elif path is not None and path.reached:
        where += (f"; the browser reached {path.identity_provider or 'the identity provider'} "
                  f"({', '.join(c.connection for c in path.connections if c.outcome == 'reached')[:60]})")
    methods = opt(sso.client_auth_methods) or []
    at_once = not seen and not opt(sso.browser_undecrypted) and sso.outcome == "gave-up" and \
        (opt(sso.waited) or 0) < 2.0
    if at_once:
        # the client closed at once, no browser reached the gateway: it had no browser to sign in with (openconnect
        # without a webview logs "No SSO handler" for the embedded mode)
        where = ("the client gave up at once, without opening a browser: it has none for single sign-on in "
                 f"{sso.browser_mode} mode")
        if sso.browser_mode != "external" and "single-sign-on-external-browser" in methods:
            where += " (it announced single-sign-on-external-browser in its init: it can use the system browser)"
    frames = [sso.offered_frame] + [b.frame for b in seen[:5]] + (list(opt(path.problem_frames) or [])
                                                                   if failure is not None else [])
    evidence = {"browser_mode": sso.browser_mode, "login_url": sso.login_url, "waited": opt(sso.waited),
                "browser_requests": len(seen), "identity_provider": idp, "outcome": sso.outcome,
                "client_auth_methods": methods}
    if path is not None:
        evidence |= _path_evidence(path)
    if opt(sso.browser_undecrypted):
        evidence["browser_undecrypted"] = list(sso.browser_undecrypted)
    if at_once:
        return [Finding(
            id="AUTH_SSO_INCOMPLETE", severity="error", phase="user-auth", time=sso.offered_time, frames=frames,
            message=f"SAML single sign-on ({sso.browser_mode} browser) was not completed: {where}.",
            remedy=("Configure the connection profile's SAML for the external browser (the client offers it), or use "
                    "a client with an embedded browser." if sso.browser_mode != "external" and
                    "single-sign-on-external-browser" in methods else
                    "Use a client that supports SAML single sign-on in this browser mode (openconnect: "
                    "--external-browser, or a build with a webview), or a connection profile without it."),
            evidence=evidence)]
    if sso.outcome == "capture-ended":
        return [Finding(
            id="AUTH_SSO_INCOMPLETE", severity="info", phase="user-auth", time=sso.offered_time, frames=frames,
            message=f"SAML single sign-on ({sso.browser_mode} browser) was still waiting for its token when the "
                    f"capture ended, {opt(sso.waited) or 0:.1f} s after the gateway gave the sign-in URL: {where}.",
            remedy="Capture until the login ends (the user may still have been signing in).",
            evidence=evidence)]
    return [Finding(
        id="AUTH_SSO_INCOMPLETE", severity="error", phase="user-auth", time=sso.offered_time, frames=frames,
        message=f"SAML single sign-on ({sso.browser_mode} browser) was not completed: the gateway gave the sign-in "
                f"URL and no token came back; the client gave up after {opt(sso.waited) or 0:.1f} s. {where[0].upper()}"
                f"{where[1:]}.",
        remedy=PATH_REMEDY[failure] if failure is not None else (
            "Ask whether the user finished signing in (the identity provider's page, its second factor); check the "
            "identity provider's sign-in log for this user at this time, that the browser reaches the identity "
            "provider and the gateway (proxy, certificate warnings), the clocks (SAML assertions are valid for "
            "minutes), and the gateway's SAML configuration (the identity provider's certificate, its entity "
            "and URLs). " + ("With the external browser, the gateway sends the browser to "
                             "http://localhost:29786: a browser or security software that blocks local addresses "
                             "stops the token there." if sso.browser_mode == "external" else
                             "The embedded browser needs a client version that supports it.")),
        evidence=evidence)]


def _inferred(p) -> list[Finding]:
    """Without keys: a sign-in in a browser that went to another server (an identity provider) or failed on its way
    there, after which the client gave up or the capture ended (the module's docstring)."""
    inf = p.inferred
    si = opt(inf.sign_in) if inf is not None else None
    if si is None or not si.single_sign_on or si.outcome == "went-on":
        return []
    path = opt(si.path)
    failure = path_failure(path)
    streams = ", ".join(si.connections[:4])
    where = f"a browser connected to the gateway ({streams})"
    if path is not None and path.identity_provider:
        where += f" and went on to {path.identity_provider}" if path.connections else \
            f" and looked up {path.identity_provider}"
    if failure is not None:
        where += f"; on its way there {path.problem}{_frames(path)}"
    elif path is not None and path.reached:
        where += " and reached it"
    frames = [si.since_frame] + (list(opt(path.problem_frames) or []) if failure is not None else [])
    evidence = {"inferred": True, "waited": si.waited, "outcome": si.outcome, "browser_connections": si.connections,
                "identity_provider": path.identity_provider if path is not None else None}
    if path is not None:
        evidence |= _path_evidence(path)
    if si.outcome == "capture-ended":
        return [Finding(
            id="AUTH_SSO_INCOMPLETE", severity="info", phase="user-auth", time=si.since, frames=frames,
            message=f"A browser sign-in (SAML single sign-on, most likely) was still going on when the capture ended, "
                    f"{si.waited:.1f} s after the gateway answered the client's first request: {where} (read without "
                    "keys from the connections' TLS fingerprints and the client's DNS).",
            remedy="Capture until the login ends (the user may still have been signing in).",
            evidence=evidence, inferred=True)]
    return [Finding(
        id="AUTH_SSO_INCOMPLETE", severity="error", phase="user-auth", time=si.since, frames=frames,
        message=f"A browser sign-in (SAML single sign-on, most likely) was not completed: after the gateway answered "
                f"the client's first request, {where}; the client waited {si.waited:.1f} s and closed its connection "
                "without another request (read without keys from the connections' TLS fingerprints and the client's "
                "DNS).",
        remedy=PATH_REMEDY[failure] if failure is not None else
        "Supply the key log (--keylog) to read the sign-in; ask whether the user finished signing in at the identity "
        "provider, and check its sign-in log for this user at this time.",
        evidence=evidence, inferred=True)]
