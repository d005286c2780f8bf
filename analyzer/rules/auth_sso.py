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
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails

RULE_IDS = ("AUTH_SSO_INCOMPLETE",)


def check(session, ctx):
    p = session.phase("user-auth")
    d = p.details if isinstance(p.details, UserAuthDetails) else None
    sso = opt(d.sso) if d is not None else None
    if sso is None or sso.outcome == "token-returned":
        return []
    seen = sso.browser
    if seen:
        last = seen[-1]
        where = (f"the browser reached the gateway's sign-in page ({len(seen)} request(s), the last "
                 f"{last.target.split('?')[0]} answered {opt(last.status) or 'nothing'}, frame {last.frame})")
    else:
        where = ("no request of the browser reached the gateway in the capture (it was not opened, could not "
                 "reach the gateway, or its traffic is not in the capture)")
    idp = opt(sso.identity_provider)
    if idp:
        where += f"; it was sent to sign in at {idp}"
    methods = opt(sso.client_auth_methods) or []
    at_once = not seen and sso.outcome == "gave-up" and (opt(sso.waited) or 0) < 2.0
    if at_once:
        # the client closed at once, no browser reached the gateway: it had no browser to sign in with (openconnect
        # without a webview logs "No SSO handler" for the embedded mode)
        where = ("the client gave up at once, without opening a browser: it has none for single sign-on in "
                 f"{sso.browser_mode} mode")
        if sso.browser_mode != "external" and "single-sign-on-external-browser" in methods:
            where += " (it announced single-sign-on-external-browser in its init: it can use the system browser)"
    frames = [sso.offered_frame] + [b.frame for b in seen[:5]]
    evidence = {"browser_mode": sso.browser_mode, "login_url": sso.login_url, "waited": opt(sso.waited),
                "browser_requests": len(seen), "identity_provider": idp, "outcome": sso.outcome,
                "client_auth_methods": methods}
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
        remedy="Ask whether the user finished signing in (the identity provider's page, its second factor); check the "
               "identity provider's sign-in log for this user at this time, that the browser reaches the identity "
               "provider and the gateway (proxy, certificate warnings), the clocks (SAML assertions are valid for "
               "minutes), and the gateway's SAML configuration (the identity provider's certificate, its entity "
               "and URLs). " + ("With the external browser, the gateway sends the browser to "
                                "http://localhost:29786: a browser or security software that blocks local addresses "
                                "stops the token there." if sso.browser_mode == "external" else
                                "The embedded browser needs a client version that supports it."),
        evidence=evidence)]
