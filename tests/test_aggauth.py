"""Aggregate-auth XML: realistic documents parse, hostile ones are refused, secrets are redacted."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dissectors import aggauth
from dissectors.aggauth import (
    AggAuthError,
    ConfigAuth,
    looks_like_config_auth,
    parse_config_auth,
    parse_post_auth_xml,
)
from dissectors.http import Headers, Request
from dissectors.redact import (
    REDACTED,
    redact,
    redact_body,
    redact_config_auth,
    redact_headers,
    redact_message,
    redact_xml,
)

# -- documents of the shapes the peers send (openconnect auth.c, ocserv worker-auth.c, ASA) ---------

OPENCONNECT_INIT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" aggregate-auth-version="2">'
    '<version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities>'
    '<auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method>'
    '</capabilities><group-access>https://vpn.acflow.test/</group-access></config-auth>\n')

CISCO_INIT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" aggregate-auth-version="2">\n'
    '<version who="vpn">5.1.2.42</version>\n'
    '<device-id computer-name="LAPTOP-7" device-type="VMware, Inc. VMware7,1" platform-version="10.0.19045 '
    '#1" unique-id="8A3F" unique-id-global="1D2C">win</device-id>\n'
    '<mac-address-list>\n<mac-address public-interface="true">00-0c-29-aa-bb-cc</mac-address>\n'
    '<mac-address>00-0c-29-aa-bb-cd</mac-address>\n</mac-address-list>\n'
    '<group-select>Employees</group-select>\n<group-access>https://asa.example.com/emp</group-access>\n'
    '<capabilities>\n<auth-method>single-sign-on</auth-method>\n<auth-method>multiple-cert</auth-method>\n'
    '</capabilities>\n</config-auth>')

OCSERV_ASK_USER_GROUPS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-request">\n'
    '<version who="sg">0.1(1)</version>\n<auth id="main">\n<message>Please enter your username.</message>\n'
    '<form method="post" action="/auth">\n<input type="text" name="username" label="Username:" />\n'
    '<select name="group_list" label="Group:">\n<option value="staff">Staff VPN</option>\n'
    '<option value="guests">Guests</option>\n</select>\n</form></auth>\n</config-auth>')

OCSERV_ASK_PASSWORD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-request">\n'
    '<version who="sg">0.1(1)</version>\n<auth id="main">\n<message>Please enter your password.</message>\n'
    '<form method="post" action="/auth">\n<input type="password" name="password" label="Password:" />\n'
    '</form></auth>\n</config-auth>')

OCSERV_COMPLETE_PROFILE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="complete">\n'
    '<version who="sg">0.1(1)</version>\n<auth id="success">\n<title>SSL VPN Service</title>'
    '<banner>Welcome to acflow</banner></auth>\n<config client="vpn" type="private"><vpn-profile-manifest>'
    '<vpn rev="1.0"><file type="profile" service-type="user"><uri>/profiles/profile.xml</uri>'
    '<hash type="sha1">A1B2C3D4E5F60718293A4B5C6D7E8F9012345678</hash></file></vpn></vpn-profile-manifest>\n'
    '</config></config-auth>')

ASA_AUTH_REQUEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">\n'
    '<opaque is-for="sg">\n<tunnel-group>VPN</tunnel-group>\n<aggauth-handle>864640002</aggauth-handle>\n'
    '<auth-method>multiple-cert</auth-method>\n<auth-method>single-sign-on</auth-method>\n'
    '<group-alias>TEST-VPN</group-alias>\n<config-hash>1517719014268</config-hash>\n</opaque>\n'
    '<auth id="main">\n<form>\n<input type="text" name="username" label="Username:"></input>\n'
    '<input type="password" name="password" label="Password:"></input>\n'
    '<select name="group_list" label="GROUP:">\n<option>OTHER-VPN</option>\n'
    '<option selected="true">TEST-VPN</option>\n</select>\n</form>\n</auth>\n</config-auth>')

ASA_AUTH_REPLY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">\n'
    '<version who="vpn">5.1.2.42</version>\n<device-id>win</device-id>\n'
    '<opaque is-for="sg">\n<tunnel-group>VPN</tunnel-group>\n<aggauth-handle>864640002</aggauth-handle>\n'
    '<auth-method>multiple-cert</auth-method>\n<auth-method>single-sign-on</auth-method>\n'
    '<group-alias>TEST-VPN</group-alias>\n<config-hash>1517719014268</config-hash>\n</opaque>\n'
    '<mac-address-list>\n<mac-address public-interface="true">00-0c-29-aa-bb-cc</mac-address>\n'
    '</mac-address-list>\n<auth>\n<username>alice</username>\n<password>S3cr3t&amp;pw</password>\n</auth>\n'
    '<group-select>TEST-VPN</group-select>\n<host-scan-token>TOKEN-0123</host-scan-token>\n</config-auth>')

ASA_LOGIN_FAILED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">\n'
    '<opaque is-for="sg"><tunnel-group>VPN</tunnel-group><config-hash>1517719014268</config-hash></opaque>\n'
    '<auth id="main">\n<title>Login</title>\n<message>Please enter your username and password.</message>\n'
    '<error id="98" param1="" param2="">Login failed.</error>\n<form>\n'
    '<input type="text" name="username" label="Username:"></input>\n'
    '<input type="password" name="password" label="Password:"></input>\n</form>\n</auth>\n</config-auth>')

ASA_COMPLETE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<config-auth client="vpn" type="complete" aggregate-auth-version="2">\n'
    '<session-id>101111</session-id>\n'
    '<session-token>8F7A6B5C4D3E2F10@12288@9D1C@0A1B2C3D4E5F60718293A4B5C6D7E8F901234567</session-token>\n'
    '<auth id="success">\n<message id="0" param1="" param2=""></message>\n</auth>\n'
    '<capabilities>\n<crypto-supported>ssl-dhe</crypto-supported>\n</capabilities>\n'
    '<config client="vpn" type="private">\n<vpn-base-config>\n<base-package-uri>/CACHE/stc/1</base-package-uri>\n'
    '<server-cert-hash>5C9A8B7D6E5F4A3B2C1D0E9F8A7B6C5D4E3F2A1B</server-cert-hash>\n</vpn-base-config>\n'
    '<opaque is-for="vpn-client"><service-profile-manifest>\n<ServiceProfiles rev="1.0">\n'
    '<Profile service-type="user">\n<FileName></FileName>\n<FileExtension>xml</FileExtension>\n'
    '</Profile>\n</ServiceProfiles>\n</service-profile-manifest>\n'
    '<vpn-client-pkg-version>\n<pkgversion>4,9,04053</pkgversion>\n</vpn-client-pkg-version>\n'
    '<vpn-core-manifest>\n<vpn rev="1.0">\n'
    '<file version="4.9.04053" id="VPNCore" is_core="yes" type="msi" action="install" os="win:6.1.7601">\n'
    '<uri>binaries/anyconnect-win-4.9.04053-core-vpn-webdeploy-k9.msi</uri>\n'
    '<display-name>AnyConnect Secure Mobility Client</display-name>\n</file>\n</vpn>\n</vpn-core-manifest>\n'
    '</opaque>\n<vpn-profile-manifest>\n<vpn rev="1.0">\n<file type="profile" service-type="user">\n'
    '<uri>/CACHE/stc/profiles/profile_test.xml</uri>\n<hash type="sha1">0123456789ABCDEF0123456789ABCDEF01234567'
    '</hash>\n</file>\n</vpn>\n</vpn-profile-manifest>\n</config>\n</config-auth>')


def parse(doc) -> ConfigAuth:
    ca = parse_config_auth(doc)
    assert isinstance(ca, ConfigAuth), ca
    return ca


def test_openconnect_init():
    ca = parse(OPENCONNECT_INIT)
    assert (ca.root, ca.client, ca.type, ca.aggregate_auth_version) == ("config-auth", "vpn", "init", "2")
    assert ca.version("vpn") == "v9.01-3" and ca.version("sg") is None
    assert ca.device_id.platform == "linux-64" and ca.device_id.unique_id is None
    assert ca.group_access == "https://vpn.acflow.test/" and ca.group_select is None
    assert ca.capabilities == (("auth-method", "single-sign-on-v2"),
                               ("auth-method", "single-sign-on-external-browser"))
    assert ca.auth is None and ca.opaque is None and ca.other == ()


def test_cisco_client_init():
    ca = parse(CISCO_INIT.encode())
    d = ca.device_id
    assert (d.platform, d.computer_name, d.unique_id, d.unique_id_global) == ("win", "LAPTOP-7", "8A3F", "1D2C")
    assert d.platform_version == "10.0.19045 #1" and d.device_type == "VMware, Inc. VMware7,1"
    assert ca.mac_addresses == ("00-0c-29-aa-bb-cc", "00-0c-29-aa-bb-cd")
    assert ca.group_select == "Employees" and ca.group_access == "https://asa.example.com/emp"


def test_ocserv_auth_request_with_groups():
    ca = parse(OCSERV_ASK_USER_GROUPS)
    assert ca.type == "auth-request" and ca.version("sg") == "0.1(1)"
    assert ca.auth.id == "main" and ca.auth.message.text == "Please enter your username."
    form = ca.auth.form
    assert (form.method, form.action) == ("post", "/auth")
    assert [(f.type, f.name, f.label) for f in form.fields] == [
        ("text", "username", "Username:"), ("select", "group_list", "Group:")]
    groups = ca.group_list
    assert [(o.value, o.label, o.selected) for o in groups.options] == [
        ("staff", "Staff VPN", False), ("guests", "Guests", False)]
    assert groups.selected.value == "staff"  # none marked: the first is what a client shows


def test_asa_auth_request():
    ca = parse(ASA_AUTH_REQUEST)
    assert ca.aggregate_auth_version == "2"
    op = ca.opaque
    assert (op.is_for, op.tunnel_group, op.aggauth_handle, op.group_alias, op.config_hash) == (
        "sg", "VPN", "864640002", "TEST-VPN", "1517719014268")
    assert op.auth_methods == ("multiple-cert", "single-sign-on")
    assert op.xml.startswith('<opaque is-for="sg">') and "<config-hash>1517719014268</config-hash>" in op.xml
    assert ca.auth.form.method is None  # the new <form> omits method/action
    assert [f.type for f in ca.auth.form.fields] == ["text", "password", "select"]
    assert ca.group_list.selected == aggauth.FormOption("TEST-VPN", "TEST-VPN", True, (("selected", "true"),))


def test_asa_auth_reply():
    ca = parse(ASA_AUTH_REPLY)
    assert ca.type == "auth-reply" and ca.opaque.config_hash == "1517719014268"
    assert ca.auth.id is None and ca.auth.values == (("username", "alice"), ("password", "S3cr3t&pw"))
    assert ca.group_select == "TEST-VPN" and ca.host_scan_token == "TOKEN-0123"


def test_asa_login_failed():
    ca = parse(ASA_LOGIN_FAILED)
    err = ca.auth.error
    assert (err.id, err.params, err.text, err.formatted) == ("98", ("", ""), "Login failed.", "Login failed.")
    assert ca.auth.title == "Login"
    assert aggauth.Message("1", ("alice",), "User %s locked").formatted == "User alice locked"


def test_asa_complete():
    ca = parse(ASA_COMPLETE)
    assert ca.type == "complete" and ca.session_id == "101111" and ca.session_token.startswith("8F7A")
    assert ca.auth.id == "success" and ca.capabilities == (("crypto-supported", "ssl-dhe"),)
    cfg = ca.config
    assert (cfg.client, cfg.type) == ("vpn", "private")
    assert cfg.server_cert_hash == "5C9A8B7D6E5F4A3B2C1D0E9F8A7B6C5D4E3F2A1B"
    assert cfg.base_package_uri == "/CACHE/stc/1" and cfg.pkg_version == "4,9,04053"
    (core,) = cfg.core_manifest
    assert (core.id, core.version, core.type, core.uri, core.display_name) == (
        "VPNCore", "4.9.04053", "msi", "binaries/anyconnect-win-4.9.04053-core-vpn-webdeploy-k9.msi",
        "AnyConnect Secure Mobility Client")
    assert ("os", "win:6.1.7601") in core.attrs
    (profile,) = cfg.profile_manifest
    assert (profile.type, profile.service_type, profile.uri, profile.hash_type, profile.hash) == (
        "profile", "user", "/CACHE/stc/profiles/profile_test.xml", "sha1",
        "0123456789ABCDEF0123456789ABCDEF01234567")


def test_ocserv_complete_with_profile_and_banner():
    ca = parse(OCSERV_COMPLETE_PROFILE)
    assert ca.auth.title == "SSL VPN Service" and ca.auth.banner == "Welcome to acflow"
    (profile,) = ca.config.profile_manifest
    assert profile.uri == "/profiles/profile.xml" and profile.hash.startswith("A1B2")
    assert ca.config.core_manifest == () and ca.session_token is None


def test_legacy_bare_auth_and_unknown_elements():
    ca = parse('<?xml version="1.0" encoding="UTF-8"?>\n<auth id="success">\n<title>SSL VPN Service</title></auth>\n')
    assert (ca.root, ca.type, ca.auth.id, ca.auth.title) == ("auth", None, "success", "SSL VPN Service")
    ca = parse('<config-auth client="vpn" type="complete"><future-thing/><client-cert-request/>'
               '<host-scan><host-scan-ticket>T</host-scan-ticket><host-scan-base-uri>/+CSCOH+/</host-scan-base-uri>'
               '</host-scan></config-auth>')
    assert ca.other == ("future-thing",) and ca.client_cert_request
    assert ca.host_scan == (("host-scan-ticket", "T"), ("host-scan-base-uri", "/+CSCOH+/"))


def test_post_auth_xml_header():
    value = ('<?xml version="1.0" encoding="UTF-8"?><config-auth client="vpn" type="complete" '
             'aggregate-auth-version="2"><session-token>AB@CD</session-token><auth id="success"/>'
             '<config client="vpn" type="private"><vpn-base-config><server-cert-hash>00FF</server-cert-hash>'
             '</vpn-base-config></config></config-auth>')
    ca = parse_post_auth_xml("  " + value + " ")
    assert isinstance(ca, ConfigAuth) and ca.session_token == "AB@CD" and ca.config.server_cert_hash == "00FF"
    assert parse_post_auth_xml("").kind == "empty"


def test_looks_like_config_auth():
    assert looks_like_config_auth(ASA_COMPLETE.encode())
    assert looks_like_config_auth(b"  <config-auth client='vpn'/>")
    assert not looks_like_config_auth(b"<html><body>hi</body></html>")


# -- hostile documents ------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<config-auth client="vpn" type="complete"><session-token>&lol9;</session-token></config-auth>"""


def xxe(path: str) -> str:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE config-auth [ <!ENTITY xxe SYSTEM "file://{path}"> ]>\n'
            '<config-auth client="vpn" type="auth-request"><auth id="main"><message>&xxe;</message></auth>'
            '</config-auth>')


@pytest.mark.parametrize("doc", [
    BILLION_LAUGHS,
    xxe("/etc/passwd"),
    ('<?xml version="1.0"?>\n<!DOCTYPE config-auth SYSTEM "http://127.0.0.1:9/config-auth.dtd">\n'
     '<config-auth client="vpn" type="init"/>'),
    '<!DOCTYPE config-auth SYSTEM "config-auth.dtd"><config-auth client="vpn" type="init"/>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><config-auth/>',
    '<?xml version="1.0"?>\n<!doctype config-auth><config-auth/>',
], ids=["billion-laughs", "xxe-passwd", "external-dtd-http", "external-dtd-draft-style", "parameter-entity",
        "lowercase-doctype"])
def test_doctype_and_entities_are_refused(doc):
    start = time.monotonic()
    result = parse_config_auth(doc)
    assert isinstance(result, AggAuthError) and result.kind == "doctype"
    assert "DOCTYPE" in result.message and "root:" not in result.message
    assert time.monotonic() - start < 1.0
    assert isinstance(parse_config_auth(doc.encode()), AggAuthError)


def test_utf16_doctype_is_refused():
    doc = xxe("/etc/passwd").replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    result = parse_config_auth(doc.encode("utf-16"))
    assert isinstance(result, AggAuthError) and result.kind == "doctype"


def test_parser_itself_never_resolves_entities(tmp_path):
    """Defence in depth: even past the DOCTYPE refusal, the lxml parser settings resolve nothing."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    root = etree.fromstring(xxe(str(secret)).encode(), aggauth._parser())
    assert "TOP-SECRET-MARKER" not in etree.tostring(root, encoding="unicode")
    try:
        root = etree.fromstring(BILLION_LAUGHS.encode(), aggauth._parser())
    except etree.XMLSyntaxError:  # libxml2's own amplification guard may refuse it first
        return
    assert len(etree.tostring(root)) < 10_000


def test_undeclared_entity_reference_is_malformed():
    result = parse_config_auth('<config-auth client="vpn"><session-token>&secret;</session-token></config-auth>')
    assert isinstance(result, AggAuthError) and result.kind == "malformed"


def test_ten_megabytes_is_refused_by_size_before_parsing():
    doc = '<config-auth client="vpn" type="complete"><banner>' + "A" * (10 * 1024 * 1024) + "</banner></config-auth>"
    start = time.monotonic()
    result = parse_config_auth(doc)
    assert isinstance(result, AggAuthError) and result.kind == "too-large" and "1048576" in result.message
    assert time.monotonic() - start < 1.0
    small = parse_config_auth(doc[:200] + "</banner></config-auth>", max_bytes=1024)
    assert isinstance(small, ConfigAuth)


def test_size_bound_is_configurable():
    assert parse_config_auth(ASA_COMPLETE, max_bytes=100).kind == "too-large"
    assert isinstance(parse_config_auth(ASA_COMPLETE, max_bytes=len(ASA_COMPLETE)), ConfigAuth)


def test_deep_nesting_is_an_error_not_a_crash():
    doc = "<config-auth>" + "<a>" * 300_000 + "</a>" * 300_000 + "</config-auth>"
    result = parse_config_auth(doc, max_bytes=4 * 1024 * 1024)
    assert isinstance(result, AggAuthError) and result.kind == "malformed"


@pytest.mark.parametrize("doc, kind", [
    ("", "empty"),
    ("   \n", "empty"),
    ("<config-auth", "malformed"),
    ("<html><body/></html>", "unexpected-root"),
    ("not xml at all", "malformed"),
    ('<?xml version="1.0" encoding="x-nonsense"?><config-auth/>', "malformed"),
])
def test_other_errors(doc, kind):
    result = parse_config_auth(doc)
    assert isinstance(result, AggAuthError) and result.kind == kind, result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_fuzz_never_raises(doc):
    result = parse_config_auth(doc)
    assert isinstance(result, (ConfigAuth, AggAuthError))
    assert isinstance(redact_xml(doc), str)


# -- redaction ------------------------------------------------------------------------------------

def test_redact_auth_reply_xml():
    out = redact_xml(ASA_AUTH_REPLY)
    assert "S3cr3t" not in out and "TOKEN-0123" not in out
    assert f"<password>{REDACTED}</password>" in out and "<username>alice</username>" in out
    assert "<config-hash>1517719014268</config-hash>" in out and "<aggauth-handle>864640002" in out
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert isinstance(parse_config_auth(out), ConfigAuth)  # still a valid document


def test_redact_complete_xml_keeps_session_id():
    out = redact_xml(ASA_COMPLETE.encode())
    assert "8F7A6B5C" not in out and f"<session-token>{REDACTED}</session-token>" in out
    assert "<session-id>101111</session-id>" in out and "5C9A8B7D6E5F" in out


def test_redact_extra_secret_fields_and_request_forms():
    reply = ('<config-auth client="vpn" type="auth-reply"><auth><username>bob</username>'
             '<secondary_password>123456</secondary_password><answer>blue</answer><otpcode>999</otpcode>'
             '</auth></config-auth>')
    out = redact_xml(reply, secret_fields=["otpcode"])
    assert "123456" not in out and "blue" not in out and "999" not in out and "bob" in out
    # an auth-request carries no secret: nothing changes but the serialisation
    assert "Password:" in redact_xml(OCSERV_ASK_PASSWORD)
    hidden = '<auth id="main"><form><input type="password" name="p" value="prefilled"/></form></auth>'
    assert "prefilled" not in redact_xml(hidden)


def test_redact_malformed_or_hostile_xml_by_pattern():
    broken = '<config-auth><auth><username>u</username><password>hunter2</password></auth><oops>'
    out = redact_xml(broken)
    assert "hunter2" not in out and "<username>u</username>" in out
    out = redact_xml(BILLION_LAUGHS.replace("&lol9;", "tok123"))
    assert "tok123" not in out


def test_redact_config_auth_object():
    ca = redact_config_auth(parse(ASA_AUTH_REPLY))
    assert ca.auth.values == (("username", "alice"), ("password", REDACTED))
    assert ca.host_scan_token == REDACTED and ca.opaque.config_hash == "1517719014268"
    done = redact(parse(ASA_COMPLETE))
    assert done.session_token == REDACTED and done.session_id == "101111"


def test_redact_headers():
    headers = Headers([
        ("Cookie", "webvpn=AKGOor8uBQVsRW9Q; webvpncontext=AAAA; webvpnlang=en"),
        ("Set-Cookie", "webvpn=AKGOor8u=; Secure; HttpOnly"),
        ("Set-Cookie", "webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure"),
        ("Set-Cookie", "webvpnc=bu:/&p:t&iu:1/&sh:D18CC61E; path=/; Secure"),
        ("X-DTLS-Master-Secret", "4D8C27F428A5FC84"),
        ("X-DTLS-Session-ID", "00112233"),
        ("Authorization", "Basic YWxpY2U6cHc="),
        ("X-CSTP-Post-Auth-XML", ('<?xml version="1.0" encoding="UTF-8"?><config-auth client="vpn" '
                                  'type="complete"><session-token>TOKEN</session-token></config-auth>')),
        ("X-CSTP-Address", "198.19.0.50"),
    ])
    out = redact_headers(headers)
    text = repr(out)
    for secret in ("AKGOor8u", "webvpncontext=AAAA", "4D8C27F4", "YWxpY2U6cHc", "TOKEN<"):
        assert secret not in text
    assert out.get("cookie") == f"webvpn={REDACTED}; webvpncontext={REDACTED}; webvpnlang=en"
    assert out.get_all("set-cookie") == (f"webvpn={REDACTED}; Secure; HttpOnly", headers[2][1], headers[3][1])
    assert out.get("authorization") == f"Basic {REDACTED}"
    assert out.get("x-dtls-session-id") == "00112233" and out.get("x-cstp-address") == "198.19.0.50"
    assert f"<session-token>{REDACTED}</session-token>" in out.get("x-cstp-post-auth-xml")
    assert [n for n, _ in out] == [n for n, _ in headers]


def test_redact_message_and_bodies():
    req = Request("POST", "/auth", "HTTP/1.1",
                  Headers([("Cookie", "webvpncontext=SID"), ("Content-Type", "application/xml")]),
                  ASA_AUTH_REPLY.encode(), 1.0, 3, 3)
    red = redact_message(req)
    assert b"S3cr3t" not in red.body and b"alice" in red.body and "SID" not in red.headers.get("cookie")
    assert (red.frame, red.target) == (3, "/auth")
    form = redact_body(b"username=alice&password=hunter2&group_list=TEST", "application/x-www-form-urlencoded")
    assert b"hunter2" not in form and b"username=alice" in form and b"group_list=TEST" in form
    assert redact_body(b"\x00binary", "application/octet-stream") == b"\x00binary"
